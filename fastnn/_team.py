"""A team of threads running one compiled program: the compiled step on every core.

The compiled training step (:mod:`fastnn.step`) can split its work between
``size`` threads: the caller's and ``size - 1`` workers started here. Each
thread runs the same compiled function with its own thread number and
meets the others at barriers inside it, so a step costs no Python hand-off
(a hand-off through Python threads was measured at about 45 us on the
2-core development machine; a barrier here costs well under a microsecond).
No threading layer is involved: numba's default one aborts when two Python
threads enter a parallel region at once, OpenMP's hangs in a forked child,
and TBB is a 100 MB dependency (bench/threading_layers.py measured them).

Protocol, on one array of int64 ``ctl`` (slots a cache line apart):

- the caller stores the step's inputs in arrays the workers also hold, then
  adds one to ``GENERATION`` (:func:`lead`); each worker spins until the
  generation changes, runs its share (:func:`_loop`) and spins again;
- a barrier (:func:`barrier`) counts arrivals in ``ARRIVED`` and waits
  until every thread has arrived as often as this one;
- an idle worker spins (``pause``), then yields the core, then goes to
  sleep on its :class:`threading.Event` after setting its ``ASLEEP`` slot;
  :func:`lead` swaps that slot back and tells the caller whom to wake. The
  worker re-reads the generation after announcing its sleep, so a step
  posted meanwhile is never missed.

The work itself must be the same on every thread up to the thread number,
pass the same barriers in the same order, and write disjoint memory
between barriers.
"""

import ctypes
import ctypes.util
import functools
import os
import threading
import weakref

import numpy as np

from ._jit import atomic_add, atomic_load, atomic_swap, call_c, cpu_relax, fused

# slots of ctl (int64 indices), each on its own 64-byte line
GENERATION, STOP, ARRIVED, YIELD = 0, 8, 16, 24
THREADS, PER_THREAD = 32, 24  # then, per thread: barriers passed, generation seen, asleep
PASSED, SEEN, ASLEEP = 0, 8, 16
SPINS_BEFORE_YIELD = 2_000  # pause instructions (about 0.1 ms) before yielding the core
SPINS_BEFORE_SLEEP = 20_000  # then yields (a few ms in all) before an idle worker sleeps


@fused(None, inline=True)
def _slot(ctl, index):
    return ctl.ctypes.data + 8 * index


@fused(None)
def _wait_until(ctl, index, value):
    """Spin (then yield the core) until ``ctl[index] >= value``."""
    spins = 0
    while atomic_load(_slot(ctl, index)) < value:
        spins += 1
        if spins < SPINS_BEFORE_YIELD:
            cpu_relax()
        else:
            call_c(ctl[YIELD], ())


@fused(None)
def barrier(ctl, tid, size):
    """Wait here until all ``size`` threads of the team have arrived (nothing for one)."""
    if size == 1:
        return
    mine = THREADS + tid * PER_THREAD + PASSED
    ctl[mine] += 1
    atomic_add(_slot(ctl, ARRIVED), 1)
    _wait_until(ctl, ARRIVED, ctl[mine] * size)


@fused(None)
def share(count, tid, size):
    """The part ``[start, stop)`` of ``range(count)`` that thread ``tid`` of ``size`` takes."""
    return count * tid // size, count * (tid + 1) // size


# The work the team runs is bound per program (fastnn._jit.specialized):
# this stand-in is never called.
def _work(tid, size, ctl, *args):
    raise TypeError("bound by Team")


@fused(None)
def lead(post, ctl, size, args):
    """The caller's share of one run of the work (thread 0).

    ``post``: first tell the workers (one more generation). Returns 1 without
    working when a worker was asleep: the caller wakes it, then calls again
    with ``post`` false. Returns 0 after its share.
    """
    if post:
        atomic_add(_slot(ctl, GENERATION), 1)
        asleep = 0
        for tid in range(1, size):
            if atomic_swap(_slot(ctl, THREADS + tid * PER_THREAD + ASLEEP), 0):
                asleep = 1
        if asleep:
            return 1
    _work(0, size, ctl, *args)
    return 0


@fused(None)
def _loop(tid, size, ctl, args):
    """A worker: run the work at every new generation; 1 when going to sleep, 0 at stop."""
    mine = THREADS + tid * PER_THREAD
    atomic_swap(_slot(ctl, mine + ASLEEP), 0)
    spins = 0
    while True:
        generation = atomic_load(_slot(ctl, GENERATION))
        if generation != ctl[mine + SEEN]:
            ctl[mine + SEEN] = generation
            if atomic_load(_slot(ctl, STOP)):
                return 0
            _work(tid, size, ctl, *args)
            spins = 0
        elif spins < SPINS_BEFORE_YIELD:
            spins += 1
            cpu_relax()
        elif spins < SPINS_BEFORE_SLEEP:
            spins += 1
            call_c(ctl[YIELD], ())
        else:
            atomic_swap(_slot(ctl, mine + ASLEEP), 1)
            if atomic_load(_slot(ctl, GENERATION)) == ctl[mine + SEEN]:
                return 1
            atomic_swap(_slot(ctl, mine + ASLEEP), 0)  # a step came meanwhile
            spins = 0


@functools.cache
def _sched_yield():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    return ctypes.cast(libc.sched_yield, ctypes.c_void_p).value


def control_block(size):
    """A fresh ``ctl`` array for a team of ``size`` threads."""
    ctl = np.zeros(THREADS + size * PER_THREAD, dtype=np.int64)
    ctl[YIELD] = _sched_yield()
    return ctl


class Team:
    """``size - 1`` worker threads that run ``work``'s share with the caller (see the module).

    ``lead_kernel`` and ``loop_kernel`` are :func:`lead` and :func:`_loop`
    compiled with ``_work`` bound to the work (:func:`fastnn._jit.specialized`);
    ``args`` the tuple of arrays the work reads (the same objects every
    run: the caller changes their contents, not the arrays). Workers are
    daemon threads; :meth:`close` stops them (also when the team is
    garbage-collected). After a fork the child has no workers: the first
    :meth:`run` there starts new ones.
    """

    def __init__(self, size, lead_kernel, loop_kernel, args):
        self.size = size
        self._lead, self._loop, self._args = lead_kernel, loop_kernel, args
        self._start()

    def _start(self):
        self.ctl = control_block(self.size)
        self._events = [threading.Event() for _ in range(self.size)]
        self._pid = os.getpid()
        self._threads = []
        for tid in range(1, self.size):
            thread = threading.Thread(target=_serve, name=f"fastnn-team-{tid}", daemon=True,
                                      args=(self._loop, tid, self.size, self.ctl, self._args,
                                            self._events[tid]))
            thread.start()
            self._threads.append(thread)
        self._finalizer = weakref.finalize(self, _stop, self.ctl, self._events, self._threads)

    def run(self):
        """Run the work once on every thread; returns when all have finished."""
        if self._pid != os.getpid():
            self._start()
        if self._lead(True, self.ctl, self.size, self._args):
            for event in self._events[1:]:
                event.set()
            self._lead(False, self.ctl, self.size, self._args)

    def close(self):
        """Stop the workers (idempotent)."""
        self._finalizer()


def _serve(loop, tid, size, ctl, args, event):
    while loop(tid, size, ctl, args):
        event.wait()
        event.clear()


def _stop(ctl, events, threads):
    if not threads or not threads[0].is_alive():
        return
    ctl[STOP] = 1
    ctl[GENERATION] += 1  # the workers read it atomically; no run is in flight
    for event in events[1:]:
        event.set()
    for thread in threads:
        thread.join(timeout=5)
