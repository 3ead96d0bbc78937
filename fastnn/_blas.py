"""NumPy's own BLAS, reachable from compiled code (ctypes only; no numba here).

The compiled training step (:func:`fastnn.network._train_step_fused`) runs
its matrix products through the BLAS library NumPy itself is linked
against, called by address with ctypes, rather than through numba's
``np.dot`` (which calls SciPy's BLAS, a second OpenBLAS with its own thread
pool). Measured on the 2-core development machine (AMD EPYC, OpenBLAS
Haswell kernel, 1 thread): the forward product 16x784 @ 784x128 took 45 us
this way, 47 us through ``np.dot`` from Python and 98 us through numba's
``np.dot``; and the results are the same bit for bit as NumPy's, so the
compiled step and the Python step agree exactly on every product.

:func:`gemm` and :func:`gemv` return ``None`` when NumPy's BLAS cannot be
found or does not export the CBLAS symbols (e.g. a NumPy built without
BLAS); the caller then keeps the step in Python.
"""

import ctypes
import functools
from pathlib import Path

import numpy as np

# CBLAS enums
ROW_MAJOR = 101
NO_TRANS = 111
TRANS = 112

# (symbol prefix, symbol suffix, integer type): NumPy's PyPI wheels bundle
# scipy-openblas64 (ILP64: 64-bit integers, prefixed and suffixed names).
# The compiled step passes 64-bit integers, so a NumPy linked to a 32-bit
# integer (LP64) CBLAS keeps its step in Python.
_FLAVOURS = (
    ("scipy_cblas_", "64_", ctypes.c_int64),
    ("cblas_", "64_", ctypes.c_int64),
)
_CTYPE = {"float32": ctypes.c_float, "float64": ctypes.c_double}


def _candidate_libraries():
    """Shared libraries NumPy loaded for BLAS (threadpoolctl tells), most likely first."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return []
    numpy_dir = Path(np.__file__).resolve().parent
    paths = [Path(info["filepath"]) for info in threadpool_info()
             if info.get("user_api") == "blas" and info.get("filepath")]
    # NumPy's own library first (numpy.libs/ or numpy/.dylibs beside the package)
    return sorted(paths, key=lambda p: numpy_dir.parent not in p.resolve().parents)


@functools.cache
def _library():
    """(CDLL, prefix, suffix, int type) of the library NumPy's products use, or None."""
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        for prefix, suffix, int_type in _FLAVOURS:
            if hasattr(lib, f"{prefix}sgemm{suffix}") and hasattr(lib, f"{prefix}dgemv{suffix}"):
                found = (lib, prefix, suffix, int_type)
                if _agrees_with_numpy(found):
                    return found
    return None


def _function(found, name, dtype_name):
    lib, prefix, suffix, int_type = found
    letter = "s" if dtype_name == "float32" else "d"
    func = getattr(lib, f"{prefix}{letter}{name}{suffix}")
    real, ptr, enum = _CTYPE[dtype_name], ctypes.c_void_p, ctypes.c_int
    if name == "gemm":
        # order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc
        func.argtypes = [enum, enum, enum, int_type, int_type, int_type, real, ptr, int_type,
                         ptr, int_type, real, ptr, int_type]
    else:
        # order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy
        func.argtypes = [enum, enum, int_type, int_type, real, ptr, int_type, ptr, int_type,
                         real, ptr, int_type]
    func.restype = None
    return func


def _agrees_with_numpy(found):
    """Whether a small product through ``found`` equals NumPy's (guards the int width)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 3))
    b = rng.standard_normal((3, 4))
    c = np.zeros((5, 4))
    func = _function(found, "gemm", "float64")
    func(ROW_MAJOR, NO_TRANS, NO_TRANS, 5, 4, 3, 1.0, a.ctypes.data, 3, b.ctypes.data, 4,
         0.0, c.ctypes.data, 4)
    return bool(np.allclose(c, a @ b, rtol=1e-12, atol=1e-12))


def gemm(dtype_name):
    """Address of ``cblas_?gemm`` (64-bit integers) in NumPy's BLAS, or None."""
    return _address("gemm", dtype_name)


def gemv(dtype_name):
    """Address of ``cblas_?gemv`` (64-bit integers) in NumPy's BLAS, or None."""
    return _address("gemv", dtype_name)


def _address(name, dtype_name):
    found = _library()
    if found is None:
        return None
    return ctypes.cast(_cached(found, name, dtype_name), ctypes.c_void_p).value


@functools.cache
def _cached(found, name, dtype_name):
    return _function(found, name, dtype_name)
