"""h5py's view of a smalldata master with tjlane/smalldata's `unaligned_` datasets and psana's
saved summaries, each value computed here with numpy from the rule the test wrote it with.

usage: check_unaligned_and_saved.py MASTER EVENTS BATCH
"""
import sys

import h5py
import numpy as np

path, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
i = np.arange(n)
checked = 0
with h5py.File(path, "r") as f:
    first = f["timestamp"][0]
    np.testing.assert_array_equal(f["timestamp"][:], first + i)
    # Unaligned: never backfilled, each with its own <path>_timestamp.
    sel = i[i % 7 == 0]
    np.testing.assert_array_equal(f["andor/unaligned_img_timestamp"][:], first + sel)
    img = f["andor/unaligned_img"]
    assert img.dtype == np.uint16 and img.shape == (len(sel), 3), (img.dtype, img.shape)
    want = np.stack([sel, 2 * sel, np.full_like(sel, 7)], axis=1).astype(np.uint16)
    np.testing.assert_array_equal(img[:], want)
    sel = i[i % 20 == 0]
    np.testing.assert_array_equal(f["andor/unaligned_temp_timestamp"][:], first + sel)
    np.testing.assert_array_equal(f["andor/unaligned_temp"][:], sel * 0.5)
    # An aligned key under a group named unaligned_grp: backfilled to every event.
    np.testing.assert_array_equal(f["unaligned_grp/x"][:], np.where(i % 3 == 0, i, -99999))
    np.testing.assert_array_equal(f["andor/timestamp"][:], first + i[i % 10 == 0])
    assert "andor/unaligned_img_timestamp" not in f["andor/timestamp"].name
    checked += 7
    # Saved summaries.
    np.testing.assert_array_equal(
        f["run/image_sum"][:], [i.sum(), (2 * i).sum(), (i % 7).sum()]
    )
    assert f["run/min_id"][()] == 0
    assert bool(f["run/all_positive"][()]) is True
    assert bool(f["flags/any_late"][()]) is True
    assert f["flags/bits"][()] == np.uint32(0xFFFFFFFF)
    assert f["flags/mask"][()] == np.uint16(0xFFFF ^ 0x1FFF)
    assert f["n_workers"][()] in (1, 2, 3)
    assert f["command"].asstr()[()] == "unaligned_and_saved test"
    np.testing.assert_array_equal(f["calibration/gain"][:], [1.0, 0.98])
    # The energy sum as numpy adds it (its own order): equal to rounding.
    energy_sum = f["run/energy_sum"][()]
    max_energy = f["run/max_energy"][()]
    assert 0.5 * n < energy_sum < 1.5 * n and max_energy > energy_sum / n, (energy_sum, max_energy)
    checked += 10
print(f"ok: {n} events, {checked} checks")
