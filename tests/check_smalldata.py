"""Reads a shotflow smalldata master with h5py, the way an analysis notebook would, and checks
it against values computed here from the rule the test wrote them with."""
import sys

import h5py
import numpy as np

path, n = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r") as f:
    ts = f["timestamp"][:]
    assert ts.dtype == np.int64 and ts.shape == (n,), (ts.dtype, ts.shape)
    assert np.all(np.diff(ts) > 0), "timestamps sorted"
    i = np.arange(n)
    assert f["counter"].dtype == np.int32
    np.testing.assert_array_equal(f["counter"][:], i)
    spectrum = f["spectrum"][:]
    assert spectrum.shape == (n, 8) and spectrum.dtype == np.float32
    np.testing.assert_array_equal(spectrum, (i[:, None] * 8 + np.arange(8)) * np.float32(0.5))
    roi = f["det"]["roi"]["sum"][:]
    np.testing.assert_array_equal(roi, np.where(i % 3 != 0, i, 65535).astype(np.uint16))
    late = f["late"][:]
    assert np.all(np.isnan(late[:2000])) and np.array_equal(late[2000:], i[2000:] * 2.0)
    small = f["small"][:]
    want = np.where(i % 5 == 0, -(i % 100), -128).astype(np.int8)
    np.testing.assert_array_equal(small, want)
    for name in ["counter", "spectrum", "det/roi/sum", "late", "small", "pulse_energy", "timestamp"]:
        d = f[name]
        assert d.is_virtual, name
        # every mapping's source file exists beside the master: no all-fill reads
        for m in d.virtual_sources():
            assert "/" not in m.file_name, m.file_name
            with h5py.File(f.filename.rsplit("/", 1)[0] + "/" + m.file_name, "r") as src:
                assert m.dset_name in src
    e = f["pulse_energy"][:]
    assert not np.any(np.isnan(e)) and abs(e.mean() - 1.0) < 0.05
    assert f["summary/pulse_energy/count"][()] == n
    np.testing.assert_allclose(f["summary/pulse_energy/sum"][()], e.sum(), rtol=1e-12)
    np.testing.assert_allclose(f["summary/spectrum/mean"][:], spectrum.astype(np.float64).mean(axis=0), rtol=1e-12)
    hist = f["summary/pulse_energy/histogram"][:]
    edges = f["summary/pulse_energy/edges"][:]
    inner, _ = np.histogram(e, bins=edges)
    np.testing.assert_array_equal(hist[1:-1], inner)
print("ok")
