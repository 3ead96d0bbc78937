"""The one place that imports numba: kernel selection and compilation.

fastnn has two kernel sets. ``numpy`` is the reference: every element-wise
step is a short sequence of in-place NumPy ufunc calls. ``numba`` compiles
each of those sequences into one loop (one pass over the memory instead of
several). The loops are written as plain Python functions beside the NumPy
code they replace (in activations.py, losses.py, optimizers.py) and marked
with :func:`fused`; they are compiled here, on first use, for one float
dtype at a time, and cached on disk.

Selection (:func:`resolve`): an explicit ``kernels=`` argument, else
``$FASTNN_KERNELS``, else ``auto``; ``auto`` is ``numba`` when numba imports
and ``numpy`` otherwise.

Compilation settings, and why:

- ``error_model="numpy"``: the default (Python) error model adds a
  division-by-zero check to every division, which stops vectorisation
  (a fused Adam loop measured 310 us instead of 31 us).
- no ``fastmath``: it would let the compiler assume there is no NaN or
  infinity, and divergence must still show.
- ``nogil=True``: the optimizers split large arrays across threads of their
  own; every kernel is element-wise or row-wise, so the result is the same
  bit for bit whatever the thread count.
- ``cache=True``: compiled once, loaded from disk afterwards. When the
  package directory is not writable the cache goes to a user directory
  (:func:`cache_dir`).
"""

import functools
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import types
from pathlib import Path

from .errors import ConfigError

ENV_VAR = "FASTNN_KERNELS"
CHOICES = ("auto", "numba", "numpy")
INSTALL_HINT = 'pip install "fastnn[fast]"'
_FLOAT = re.compile(r"\bF\b")


def fused(signature, inline=False, **records):
    """Mark a pure-Python loop as a fused kernel with a numba ``signature``.

    ``F`` in the signature stands for the float type (float32 or float64):
    ``"void(F[::1], F[::1], F)"``. Each keyword names a typed record in the
    signature and gives the function that makes its NumPy structured dtype
    for a float dtype: ``@fused("void(F[::1], S[::1])", S=settings_dtype)``
    takes a one-element record array whose fields the kernel reads by name.
    The function itself stays a plain Python function (importing fastnn
    never imports numba); :func:`compiled` turns it into machine code.
    ``inline``: a small helper (no signature) that numba inlines into each
    kernel that calls it, so that a loop calling it still vectorises.
    """
    def mark(func):
        func.numba_signature = signature
        func.numba_records = records
        func.numba_inline = inline
        return func

    return mark


def bind(func, name, **bindings):
    """A copy of the fused kernel ``func`` named ``name``, calling ``bindings`` by their names.

    ``func`` calls helpers it does not define (``_value(v, c)`` in the
    activations' loops); each activation binds its own, and the copy is
    compiled and cached on its own name like any fused kernel.
    """
    bound = types.FunctionType(func.__code__, {**func.__globals__, **bindings}, name,
                               func.__defaults__, func.__closure__)
    bound.__qualname__ = name
    bound.__module__ = func.__module__
    bound.__doc__ = func.__doc__
    for attr in ("numba_signature", "numba_records", "numba_inline"):
        if hasattr(func, attr):
            setattr(bound, attr, getattr(func, attr))
    return bound


@functools.cache
def numba_available():
    """Whether numba can be imported (checked once, by importing it)."""
    if importlib.util.find_spec("numba") is None:
        return False
    _set_cache_dir()
    try:
        import numba  # noqa: F401
    except Exception:  # noqa: BLE001 - e.g. numba built for another NumPy
        return False
    return True


def resolve(kernels=None):
    """The kernel set to run: ``'numba'`` or ``'numpy'``.

    Parameters
    ----------
    kernels : {'auto', 'numba', 'numpy'} or None
        None reads ``$FASTNN_KERNELS`` (default ``auto``). ``auto`` picks
        numba when it imports.

    Raises
    ------
    ConfigError
        An unknown name, or ``numba`` asked for when numba is not installed
        (the message names the extra to install).
    """
    source = "kernels"
    if kernels is None:
        kernels = os.environ.get(ENV_VAR) or "auto"
        source = ENV_VAR if ENV_VAR in os.environ else source
    key = str(kernels).lower()
    if key not in CHOICES:
        raise ConfigError(f"{source} must be one of {', '.join(CHOICES)}, got {kernels!r}")
    if key == "auto":
        return "numba" if numba_available() else "numpy"
    if key == "numba" and not numba_available():
        raise ConfigError(f"{source}='numba' needs numba, which is not installed "
                          f"(or does not import): {INSTALL_HINT}")
    return key


def _writable(path):
    """Whether files can be created in ``path`` (tried, not guessed from modes)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def user_cache_dir():
    """``$XDG_CACHE_HOME/fastnn/numba`` (default ``~/.cache/fastnn/numba``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastnn" / "numba"


def cache_dir():
    """Where compiled kernels are cached.

    ``$NUMBA_CACHE_DIR`` when set; else ``__pycache__`` beside fastnn's
    sources when that is writable (numba's default); else
    :func:`user_cache_dir` (e.g. a read-only system install).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    in_tree = Path(__file__).resolve().parent / "__pycache__"
    return in_tree if _writable(in_tree) else user_cache_dir()


def _set_cache_dir():
    # numba reads NUMBA_CACHE_DIR once, when it is first imported.
    if "numba" in sys.modules or os.environ.get("NUMBA_CACHE_DIR"):
        return
    where = cache_dir()
    if where != Path(__file__).resolve().parent / "__pycache__":
        os.environ["NUMBA_CACHE_DIR"] = str(where)


@functools.cache
def compiled(func, dtype_name):
    """``func`` (marked with :func:`fused`) compiled for ``dtype_name``.

    Compiles (or loads from the disk cache) at the first call for each
    (kernel, dtype) pair; later calls return the same dispatcher. Callers
    fetch their kernels when they are built, so nothing compiles inside a
    training step.
    """
    if not numba_available():
        raise ConfigError(f"the numba kernels need numba: {INSTALL_HINT}")
    import numba

    signature = _FLOAT.sub(dtype_name, func.numba_signature)
    records = getattr(func, "numba_records", None)
    if records:
        names = dict(vars(numba.types))
        names.update({key: numba.from_dtype(make(dtype_name))
                      for key, make in records.items()})
        signature = eval(signature, {"__builtins__": {}}, names)
    return numba.njit(signature, cache=True, nogil=True, error_model="numpy")(_rebound(func))


def _rebound(func, bindings=()):
    """``func`` with every fused kernel it calls (and ``call_c``) made a numba dispatcher.

    ``bindings`` (pairs of global name and fused kernel) first rebind names
    of ``func``'s globals: see :func:`specialized`. Returns ``func`` itself
    when nothing needs replacing.
    """
    bound = dict(bindings)
    names = {}
    for name in func.__code__.co_names:
        obj = bound.get(name, func.__globals__.get(name))
        if isinstance(obj, types.FunctionType) and obj in _INTRINSICS:
            names[name] = _INTRINSICS[obj]()
        elif getattr(obj, "numba_signature", False) is None:  # a composite: bind it too
            names[name] = _lazy(obj, bindings)
        elif hasattr(obj, "numba_signature"):
            names[name] = _lazy(obj)
    if not names:
        return func
    rebuilt = types.FunctionType(func.__code__, {**func.__globals__, **names}, func.__name__,
                                 func.__defaults__, func.__closure__)
    # The disk cache is keyed by the qualified name (not by the globals): each
    # binding needs its own, so it names every bound kernel in full.
    suffix = "".join(f"__{_ident(kernel)}" for _, kernel in bindings)
    if len(suffix) > 120:  # file names stay well below the 255 bytes a file system allows
        suffix = "__" + hashlib.sha1(suffix.encode()).hexdigest()[:16]
    rebuilt.__qualname__ = func.__qualname__ + suffix
    rebuilt.__module__ = func.__module__
    return rebuilt


@functools.cache
def _lazy(func, bindings=()):
    """``func`` as a numba dispatcher typed at its first compile, its kernel calls too.

    Every global that ``func`` calls and that is itself marked with
    :func:`fused` is replaced, in a copy of ``func``'s globals, by its own
    lazy dispatcher, so a composite kernel (the compiled training step) calls
    the very loops the Python step calls, compiled into one program.
    ``bindings`` (pairs of global name and fused kernel) first rebind names
    of ``func``'s globals: see :func:`specialized`.
    """
    import numba

    inline = "always" if getattr(func, "numba_inline", False) else "never"
    return numba.njit(cache=True, nogil=True, error_model="numpy",
                      inline=inline)(_rebound(func, bindings))


def _ident(func):
    """``module.Qual.name`` of ``func`` as one identifier (for a cache file name)."""
    return re.sub(r"\W+", "_", f"{func.__module__}.{func.__qualname__}").strip("_")


def specialized(func, args, **bindings):
    """``func`` with some of the kernels it calls chosen now, compiled for ``args``.

    ``bindings`` maps names that ``func`` calls as globals to fused kernels
    (for example the activation of one network, taken from its registry
    entry): the compiled program calls them directly, with no dispatch at
    run time, and is cached on disk apart from every other binding.
    """
    if not numba_available():
        raise ConfigError(f"the numba kernels need numba: {INSTALL_HINT}")
    import numba

    dispatcher = _lazy(func, tuple(sorted(bindings.items())))
    dispatcher.compile(tuple(numba.typeof(arg) for arg in args))
    return dispatcher


def call_c(address, args):
    """Call the C function at ``address`` (an int) with the tuple ``args``; compiled code only.

    In a composite kernel this becomes a direct call through the pointer,
    its C prototype read off the argument types: pass int32/int64 and
    float32/float64 values of exactly the C types, and pointers as
    ``array.ctypes.data``. Unlike a ctypes function object, an address
    costs nothing to pass into a compiled function (numba takes ~50 us to
    type a ctypes function argument at every call) and does not tie the
    disk cache to one process's memory layout.
    """
    raise TypeError("call_c only works inside a compiled kernel")


@functools.cache
def _call_c_intrinsic():
    from llvmlite import ir
    from numba import types as nb_types
    from numba.extending import intrinsic

    @intrinsic
    def call_c_intrinsic(typingctx, address, args):
        if not isinstance(address, nb_types.Integer) or not isinstance(args, nb_types.BaseTuple):
            return None

        def codegen(context, builder, sig, llargs):
            target, packed = llargs
            values = [builder.extract_value(packed, i) for i in range(len(args))]
            fnty = ir.FunctionType(ir.VoidType(), [v.type for v in values])
            builder.call(builder.inttoptr(target, fnty.as_pointer()), values)
            return context.get_dummy_value()

        return nb_types.void(address, args), codegen

    return call_c_intrinsic


def atomic_load(address):
    """The int64 at ``address``, read atomically (sequentially consistent); compiled code only.

    With :func:`atomic_add`, :func:`atomic_swap` and :func:`cpu_relax` these
    are what :mod:`fastnn._team` needs to run one compiled program on several
    threads: loads and stores the compiler may neither drop nor reorder.
    """
    raise TypeError("atomic_load only works inside a compiled kernel")


def atomic_add(address, value):
    """Add ``value`` to the int64 at ``address`` atomically; return the old value (compiled)."""
    raise TypeError("atomic_add only works inside a compiled kernel")


def atomic_swap(address, value):
    """Store ``value`` in the int64 at ``address`` atomically; return the old value (compiled)."""
    raise TypeError("atomic_swap only works inside a compiled kernel")


def cpu_relax():
    """The CPU's spin-wait hint (x86 ``pause``; nothing elsewhere); compiled code only."""
    raise TypeError("cpu_relax only works inside a compiled kernel")


@functools.cache
def _atomic_load_intrinsic():
    from llvmlite import ir
    from numba import types as nb_types
    from numba.extending import intrinsic

    @intrinsic
    def atomic_load_intrinsic(typingctx, address):
        if not isinstance(address, nb_types.Integer):
            return None

        def codegen(context, builder, sig, llargs):
            ptr = builder.inttoptr(llargs[0], ir.IntType(64).as_pointer())
            return builder.load_atomic(ptr, "seq_cst", 8)

        return nb_types.int64(address), codegen

    return atomic_load_intrinsic


def _rmw_intrinsic(op):
    from llvmlite import ir
    from numba import types as nb_types
    from numba.extending import intrinsic

    @intrinsic
    def rmw_intrinsic(typingctx, address, value):
        if not isinstance(address, nb_types.Integer) or not isinstance(value, nb_types.Integer):
            return None

        def codegen(context, builder, sig, llargs):
            i64 = ir.IntType(64)
            ptr = builder.inttoptr(llargs[0], i64.as_pointer())
            return builder.atomic_rmw(op, ptr, context.cast(builder, llargs[1], sig.args[1],
                                                            nb_types.int64), "seq_cst")

        return nb_types.int64(address, value), codegen

    return rmw_intrinsic


@functools.cache
def _atomic_add_intrinsic():
    return _rmw_intrinsic("add")


@functools.cache
def _atomic_swap_intrinsic():
    return _rmw_intrinsic("xchg")


@functools.cache
def _cpu_relax_intrinsic():
    import platform

    from llvmlite import ir
    from numba import types as nb_types
    from numba.extending import intrinsic

    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")

    @intrinsic
    def cpu_relax_intrinsic(typingctx):
        def codegen(context, builder, sig, llargs):
            if x86:
                from numba.core import cgutils

                pause = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
                builder.call(pause, [])
            return context.get_dummy_value()

        return nb_types.void(), codegen

    return cpu_relax_intrinsic


# stand-ins (plain Python functions that raise) -> the intrinsic compiled code calls
_INTRINSICS = {call_c: _call_c_intrinsic, atomic_load: _atomic_load_intrinsic,
               atomic_add: _atomic_add_intrinsic, atomic_swap: _atomic_swap_intrinsic,
               cpu_relax: _cpu_relax_intrinsic}


def kernel_dtype(dtype):
    """The dtype name the fused kernels are compiled for, or None if not supported."""
    name = getattr(dtype, "name", str(dtype))
    return name if name in ("float32", "float64") else None
