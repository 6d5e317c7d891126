"""JUNGFRAU reference: psana's own calibration (psana.detector.UtilsJungfrau.calib_jungfrau,
called, not re-implemented) on synthetic constants and raw frames with mixed gain stages,
written with its inputs into one HDF5 file for the Rust test to compare with.

usage: check_jungfrau.py OUT.h5 [SEED]

psana reads constants through a detector object; `StandIn` is the smallest such object: it
carries the synthetic constants as psana's calibration database would give them.
"""
import sys

import h5py
import numpy as np

import psana.detector.UtilsJungfrau as uj

SEGMENTS, ROWS, COLS, FRAMES = 2, 512, 1024, 3


class StandIn:
    """What calib_jungfrau asks of a psana detector."""

    def __init__(self, peds, gains, offsets, mask):
        meta = {"ctype": "", "experiment": "synthetic", "run": 1, "detname": "jungfrau"}
        self._det_name = "jungfrau_synthetic"
        self._sorted_segment_inds = list(range(peds.shape[1]))
        self._calibconst = {
            "pedestals": (peds, dict(meta, ctype="pedestals")),
            "pixel_gain": (gains, dict(meta, ctype="pixel_gain")),
            "pixel_offset": (offsets, dict(meta, ctype="pixel_offset")),
        }
        self._odc = None
        self._the_mask = mask

    def raw(self, evt, copy=True):
        return evt

    def _mask(self, **kwa):
        return self._the_mask


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 2026)
    shape = (3, SEGMENTS, ROWS, COLS)
    peds = np.stack([
        rng.normal(3000, 60, shape[1:]),
        rng.normal(14000, 300, shape[1:]),
        rng.normal(14500, 300, shape[1:]),
    ]).astype(np.float32)
    offsets = rng.normal(0, 5, shape).astype(np.float32)
    gains = np.stack([
        rng.normal(40, 1.5, shape[1:]),
        rng.normal(1.5, 0.05, shape[1:]),
        rng.normal(0.1, 0.004, shape[1:]),
    ]).astype(np.float32)
    # Some pixels without a gain: psana's gain factor is 0 there.
    gains[rng.random(shape) < 0.001] = 0
    mask = (rng.random(shape[1:]) > 0.01).astype(np.uint8)

    # Stages 00 (90 %), 01, 11 and the invalid code 10. High-gain pixels read their pedestal,
    # noise, a common-mode offset per row of each 64-column bank and now and then photons (as
    # a dark-dominated frame does); the others any 14-bit value.
    frames = (FRAMES,) + shape[1:]
    codes = rng.choice([0, 1, 3, 2], size=frames, p=[0.9, 0.06, 0.03, 0.01])
    common = np.repeat(rng.normal(0, 25, (FRAMES, SEGMENTS, ROWS, COLS // 64)), 64, axis=3)
    photons = rng.poisson(0.05, frames) * gains[0][None] * 9.0
    dark = peds[0][None] + offsets[0][None] + rng.normal(0, 3, frames) + common + photons
    adc = np.where(codes == 0, np.clip(np.rint(dark), 0, (1 << 14) - 1), rng.integers(0, 1 << 14, size=frames))
    raw = ((codes << 14) | adc.astype(np.int64)).astype(np.uint16)

    def calibrate(cmpars):
        det = StandIn(peds, gains, offsets, mask)  # psana caches its constants per detector
        kwa = {} if cmpars is None else {"cmpars": cmpars}
        return np.stack([uj.calib_jungfrau(det, raw[f], **kwa) for f in range(FRAMES)])

    calibrated = calibrate(None)
    assert calibrated.dtype == np.float32 and calibrated.shape == raw.shape
    with_common_mode = {mode: calibrate((7, mode, cormax, 10)) for mode, cormax in ((3, 200.0), (7, 100.0))}

    with h5py.File(out, "w") as f:
        f["pedestals"] = peds
        f["offsets"] = offsets
        f["gains"] = gains
        f["mask"] = mask
        f["raw"] = raw
        f["psana"] = calibrated
        for mode, values in with_common_mode.items():
            f[f"psana_cm{mode}"] = values
        for stage, code in enumerate([0, 1, 3]):
            f.attrs[f"stage{stage}"] = int((codes == code).sum())
        f.attrs["invalid"] = int((codes == 2).sum())
    print(f"{FRAMES} frames of {SEGMENTS} segments of {ROWS}x{COLS} calibrated by psana")


if __name__ == "__main__":
    main()
