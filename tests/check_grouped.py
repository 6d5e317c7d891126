"""h5py view of a grouped smalldata master: an align_group with its own timestamps, psana's
var_ ragged layout, and merged rows, computed here from the rule the test wrote them with."""
import sys

import h5py
import numpy as np

path, n = sys.argv[1], int(sys.argv[2])
i = np.arange(n)
with h5py.File(path, "r") as f:
    first = f["timestamp"][0]
    np.testing.assert_array_equal(f["timestamp"][:], first + i)
    np.testing.assert_array_equal(f["extra"][:], i.astype(np.uint32))
    lens = f["var_peaks_len"][:]
    np.testing.assert_array_equal(lens, i % 4)
    x = f["var_peaks"]["x"][:]
    assert x.shape == (lens.sum(),), x.shape
    # psana's recipe: split the concatenated values by the per-event lengths
    per_event = np.split(x, np.cumsum(lens)[:-1])
    for k in (0, 1, 2, 3, 7, n - 1):
        np.testing.assert_array_equal(per_event[k], (k * 10 + np.arange(k % 4)).astype(np.float32))
    andor = f["andor"]
    np.testing.assert_array_equal(andor["timestamp"][:], first + i[i % 10 == 0])
    assert andor["spectrum"].shape == ((n + 9) // 10, 4)
    np.testing.assert_array_equal(andor["spectrum"][:, 0], i[i % 10 == 0].astype(np.uint16))
    np.testing.assert_array_equal(f["summary/andor/spectrum/sum"][:], np.full(4, float(i[i % 10 == 0].sum())))
print("ok")
