"""scipy.ndimage as the reference for droplets: label (4- and 8-connectivity), then per-label
sum, size and centre of mass, compared with shotflow's droplets."""
import sys

import h5py
import numpy as np
from scipy import ndimage

with h5py.File(sys.argv[1], "r") as f:
    frame = f["frame"][:].astype(np.float64)
    threshold = f.attrs["threshold"]
    for conn, structure in (("four", None), ("eight", np.ones((3, 3)))):
        labels, n = ndimage.label(frame > threshold, structure=structure)
        ours = f[conn][:]  # rows of (adu, pixels, row, col), in label order
        assert ours.shape[0] == n, (conn, ours.shape[0], n)
        index = np.arange(1, n + 1)
        adu = ndimage.sum(frame, labels, index)
        size = ndimage.sum(np.ones_like(frame), labels, index)
        com = np.array(ndimage.center_of_mass(frame, labels, index))
        np.testing.assert_allclose(ours[:, 0], adu, rtol=1e-12)
        np.testing.assert_array_equal(ours[:, 1], size)
        np.testing.assert_allclose(ours[:, 2:], com, rtol=1e-12, atol=1e-9)
        print(f"{conn}: {n} droplets equal")
print("ok")
