"""AGIPD reference: the published correction written directly in numpy, on synthetic
per-cell constants and frames with mixed gain stages, written with its inputs into one HDF5
file for the Rust test to compare with.

usage: check_agipd.py OUT.h5 [SEED]

The algorithm (EuXFEL's AGIPD correction): the gain stage is 0 where the gain value is below
the pixel's first threshold, 1 below the second, else 2 (no value is below a NaN threshold);
the analog value minus the stage's offset, times the stage's relative gain, all per memory
cell and pixel, in float32; bad pixels of the cell are 0.
"""
import sys

import h5py
import numpy as np

CELLS, ROWS, COLS, FRAMES = 64, 512, 128, 8


def correct(analog, gain, cell, thresholds, offset, relative_gain, bad):
    t = thresholds[cell]
    stage = np.where(gain < t[0], 0, np.where(gain < t[1], 1, 2)).astype(np.uint8)
    off = np.take_along_axis(offset[cell], stage[None].astype(np.intp), 0)[0]
    rel = np.take_along_axis(relative_gain[cell], stage[None].astype(np.intp), 0)[0]
    out = (analog.astype(np.float32) - off) * rel
    out[bad[cell]] = 0
    stage[bad[cell]] = 255
    return out.astype(np.float32), stage


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 2026)
    pix = (CELLS, ROWS, COLS)
    thresholds = np.stack([rng.normal(5200, 40, pix), rng.normal(6800, 40, pix)], axis=1).astype(np.float32)
    # NaN thresholds, as constants files carry for broken pixels: no gain value is below one.
    thresholds[rng.random(thresholds.shape) < 0.002] = np.nan
    offset = np.stack([rng.normal(4000, 30, pix), rng.normal(5000, 30, pix), rng.normal(5500, 30, pix)], axis=1).astype(np.float32)
    relative_gain = np.stack([rng.normal(1.0, 0.02, pix), rng.normal(45, 1, pix), rng.normal(1000, 20, pix)], axis=1).astype(np.float32)
    bad = rng.random(pix) < 0.005

    cells = rng.integers(0, CELLS, FRAMES)
    # Gain values: 90 % around the high-gain level, the rest in medium and low.
    level = rng.choice([4700.0, 6000.0, 7600.0], size=(FRAMES, ROWS, COLS), p=[0.9, 0.07, 0.03])
    gain = np.clip(level + rng.normal(0, 300, level.shape), 0, 65535).astype(np.uint16)
    analog = rng.integers(3800, 9000, size=(FRAMES, ROWS, COLS)).astype(np.uint16)

    results = [correct(analog[f], gain[f], cells[f], thresholds, offset, relative_gain, bad) for f in range(FRAMES)]
    with h5py.File(out, "w") as f:
        f["thresholds"] = thresholds
        f["offset"] = offset
        f["relative_gain"] = relative_gain
        f["bad"] = bad.astype(np.uint8)
        f["cell"] = cells.astype(np.uint64)
        f["analog"] = analog
        f["gain"] = gain
        f["reference"] = np.stack([r[0] for r in results])
        f["stages"] = np.stack([r[1] for r in results])
    print(f"{FRAMES} AGIPD frames of {ROWS}x{COLS}, {CELLS} cells, corrected in numpy")


if __name__ == "__main__":
    main()
