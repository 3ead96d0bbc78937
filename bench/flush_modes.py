"""How to keep an optimizer update off subnormal floats: the two ways, measured.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.flush_modes

Times Adam's fused update (float32, one thread) on 134,794 and 2,913,290
parameters whose gradient is zero for two thirds of the entries and whose
first moment ``m`` there is subnormal (as after some hundred steps of
decay), four ways:

- ``no flush``: the loop as it was before fastnn flushed (state stays subnormal);
- ``select``: fastnn's own loop (``Adam._fused``), ``if abs(x) < tiny: x = 0`` on m and v;
- ``FTZ+DAZ``: the loop without the select, run with the CPU's flush-to-zero
  and denormals-are-zero bits set in MXCSR for its duration (x86 only);
- ``normal state``: the loop without the select on a state with no subnormal
  entry, the speed to get back to.

Then the select's own cost on a normal state, interleaved with the plain
loop. The MXCSR bits are set through LLVM intrinsics from numba (x86-64
only); this script is a measurement, not part of fastnn.
"""

import platform
import time

import numpy as np

from bench.common import machine_line
from fastnn import _jit, optimizers


def _kernels():
    from llvmlite import ir
    from numba import njit, types
    from numba.extending import intrinsic

    byte_ptr = ir.IntType(8).as_pointer()

    def mxcsr_call(builder, name, slot):
        fn = builder.module.declare_intrinsic(name, fnty=ir.FunctionType(ir.VoidType(),
                                                                          [byte_ptr]))
        builder.call(fn, [builder.bitcast(slot, byte_ptr)])

    @intrinsic
    def get_mxcsr(typingctx):
        def codegen(context, builder, sig, args):
            slot = builder.alloca(ir.IntType(32))
            mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
            return builder.load(slot)
        return types.uint32(), codegen

    @intrinsic
    def set_mxcsr(typingctx, value):
        def codegen(context, builder, sig, args):
            slot = builder.alloca(ir.IntType(32))
            builder.store(args[0], slot)
            mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
            return context.get_dummy_value()
        return types.void(types.uint32), codegen

    @njit("void(f4[::1], f4[::1], f4[::1], f4[::1], f4, f4, f4, f4, f4)", error_model="numpy")
    def plain(w, g, m, v, c1, c2, eps, step, unused):
        # Adam's fused loop as it was before fastnn flushed (revision 425e0b8)
        for i in range(w.size):
            gi = g[i]
            mi = m[i] + (gi - m[i]) * c1
            vi = v[i] + (gi * gi - v[i]) * c2
            m[i] = mi
            v[i] = vi
            w[i] -= mi / (np.sqrt(vi) + eps) * step

    @njit("void(f4[::1], f4[::1], f4[::1], f4[::1], f4, f4, f4, f4, u4)", error_model="numpy")
    def ftz_daz(w, g, m, v, c1, c2, eps, step, bits):
        old = get_mxcsr()
        set_mxcsr(old | bits)
        plain(w, g, m, v, c1, c2, eps, step, c1 - c1)
        set_mxcsr(old)

    # fastnn's own loop: the flush as a select; it reads its scalars from a
    # typed record, filled here inside compiled code so that the three
    # loops are called the same way
    adam = _jit.compiled(optimizers.Adam._fused, "float32")
    record_type = optimizers.record_dtype(optimizers.Adam._fields, "float32")

    @njit(error_model="numpy")
    def select(w, g, m, v, c1, c2, eps, step, tiny):
        record = np.empty(1, dtype=record_type)
        record[0].one_minus_beta1, record[0].one_minus_beta2 = c1, c2
        record[0].eps_scaled, record[0].c1 = eps, step  # c1: the step size
        record[0].c2, record[0].tiny = c1 - c1 + 1, tiny  # c2 = 1: no AdamW shrink
        adam(w, g, m, v, record)

    return plain, select, ftz_daz


def _best(fn, repeat=20):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(n, kernels, seed=0):
    """Print the four timings and the select's cost for ``n`` parameters."""
    plain, select, ftz_daz = kernels
    scalars = [np.float32(x) for x in (0.1, 0.001, 1e-8, 1e-3)]
    tiny = np.float32(np.finfo(np.float32).tiny)
    rng = np.random.default_rng(seed)
    dead = rng.random(n) < 2 / 3
    g = np.where(dead, 0, rng.standard_normal(n) * 1e-3).astype(np.float32)
    w = np.zeros(n, np.float32)

    def state(subnormal=True):
        live = (rng.standard_normal(n) * 1e-3).astype(np.float32)
        m = np.where(dead, np.float32(5e-40), live) if subnormal else live
        return m.astype(np.float32), np.full(n, 1e-8, np.float32)

    def timed(kernel, last, subnormal=True, repeat=20):
        m, v = state(subnormal)
        return _best(lambda: kernel(w, g, m, v, *scalars, last), repeat)

    rows = {"no flush": timed(plain, tiny), "select": timed(select, tiny),
            "FTZ+DAZ": timed(ftz_daz, np.uint32(0x8040)),
            "normal state": timed(plain, tiny, subnormal=False)}
    print(f"{n:,} parameters, m subnormal on 2/3 (best of 20): "
          + ", ".join(f"{k} {t * 1e6:.0f} us" for k, t in rows.items()))
    m, v = state(subnormal=False)
    a = b = float("inf")
    for _ in range(30):  # interleaved
        a = min(a, _best(lambda: plain(w, g, m, v, *scalars, tiny), 1))
        b = min(b, _best(lambda: select(w, g, m, v, *scalars, tiny), 1))
    print(f"{n:,} parameters, normal state (best of 30, interleaved): plain {a * 1e6:.0f} us, "
          f"select {b * 1e6:.0f} us ({b / a - 1:+.1%})")


def main():
    if platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit("FTZ/DAZ through MXCSR is x86-64 only")
    kernels = _kernels()
    print(machine_line())
    for n in (134_794, 2_913_290):
        measure(n, kernels)


if __name__ == "__main__":
    main()
