"""JUNGFRAU reference: PSI's aare (`aare.apply_calibration`, called, not re-implemented) on
synthetic constants and raw frames with every gain code, written with its inputs into one
HDF5 file for the Rust test to compare with.

usage: check_jungfrau_aare.py OUT.h5 [SEED]

aare takes a pedestal and a gain (ADU/keV) per stage and pixel, `(3, rows, cols)`, and gives
keV: `(adc - pedestal[stage]) / gain[stage]`, in float32 for float32 constants.
"""
import sys

import aare
import h5py
import numpy as np

ROWS, COLS, FRAMES = 512, 1024, 4


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 2027)
    shape = (3, ROWS, COLS)
    pedestal = np.stack([
        rng.normal(3000, 60, shape[1:]),
        rng.normal(14000, 300, shape[1:]),
        rng.normal(14500, 300, shape[1:]),
    ]).astype(np.float32)
    gain = np.stack([
        rng.normal(40, 1.5, shape[1:]),
        rng.normal(1.5, 0.05, shape[1:]),
        rng.normal(0.1, 0.004, shape[1:]),
    ]).astype(np.float32)
    # Stages 00 (90 %), 01, 11 and the invalid code 10 (aare reads it as stage 0).
    frames = (FRAMES, ROWS, COLS)
    codes = rng.choice([0, 1, 3, 2], size=frames, p=[0.9, 0.06, 0.03, 0.01])
    dark = pedestal[0][None] + rng.normal(0, 3, frames) + rng.poisson(0.05, frames) * gain[0][None] * 9.0
    adc = np.where(codes == 0, np.clip(np.rint(dark), 0, (1 << 14) - 1), rng.integers(0, 1 << 14, size=frames))
    raw = ((codes << 14) | adc.astype(np.int64)).astype(np.uint16)

    calibrated = aare.apply_calibration(raw, pd=pedestal, cal=gain, n_threads=1)
    assert calibrated.dtype == np.float32 and calibrated.shape == raw.shape

    with h5py.File(out, "w") as f:
        f["pedestal"] = pedestal
        f["gain"] = gain
        f["raw"] = raw
        f["aare"] = calibrated
        f.attrs["invalid"] = int((codes == 2).sum())
    print(f"{FRAMES} frames of {ROWS}x{COLS} calibrated by aare")


if __name__ == "__main__":
    main()
