"""bench.flush_modes as a plain test: its three loops compute the same update."""

import platform

import numpy as np
import pytest

pytest.importorskip("numba")
pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                reason="MXCSR is x86-64 only")


def test_the_three_loops_agree_and_flush_as_described():
    from bench.flush_modes import _kernels

    plain, select, ftz_daz = _kernels()
    scalars = [np.float32(x) for x in (0.1, 0.001, 1e-8, 1e-3)]
    tiny = np.float32(np.finfo(np.float32).tiny)
    rng = np.random.default_rng(0)
    g = (rng.standard_normal(1000) * 1e-3).astype(np.float32)
    g[::3] = 0
    m0 = (rng.standard_normal(1000) * 1e-3).astype(np.float32)
    m0[::3] = 5e-40  # subnormal where the gradient is zero
    out = {}
    for name, kernel, last in (("plain", plain, tiny), ("select", select, tiny),
                               ("ftz", ftz_daz, np.uint32(0x8040))):
        w, m, v = np.zeros(1000, np.float32), m0.copy(), np.full(1000, 1e-8, np.float32)
        kernel(w, g, m, v, *scalars, last)
        out[name] = (w, m)
    live = np.ones(1000, bool)
    live[::3] = False
    for name in ("select", "ftz"):
        np.testing.assert_array_equal(out[name][0][live], out["plain"][0][live])
        assert not np.any(out[name][1][~live])  # flushed
    assert np.all(out["plain"][1][~live] != 0)  # still subnormal without a flush
    # the MXCSR bits were restored: plain arithmetic still makes subnormals
    assert np.float32(1e-38) * np.float32(0.01) != 0
