"""ePix10ka reference: psana's own calibration (psana.detector.UtilsEpix10ka.calib_epix10ka_any,
with its gain maps from gain_maps_epix10ka_any_alg and cbits_config_and_data_detector_alg,
called, not re-implemented) on synthetic constants, pixel configurations mixing all seven gain
ranges, and raw frames with and without data bit 14, written with its inputs into one HDF5
file for the Rust test to compare with.

usage: check_epix10ka.py OUT.h5 [SEED]
"""
import sys

import h5py
import numpy as np

import psana.detector.UtilsEpix10ka as ue

SEGMENTS, ROWS, COLS, FRAMES = 4, 352, 384, 3


class StandInRaw:
    """What calib_epix10ka_any asks of a psana `det.raw`: constants as psana's calibration
    database gives them, the pixels' configuration bits, and the raw frame."""

    def __init__(self, peds, gains, mask, cbits):
        self._det_name = "epix10ka_synthetic"
        self._peds, self._gains, self._the_mask, self._cbits = peds, gains, mask, cbits
        self._store_ = None
        self._data_bit_mask = ue.M14
        self._data_gain_bit = ue.B14
        self._gain_bit_shift = ue.gain_bitshift("epix10ka")
        self.frame = None

    def raw(self, evt, copy=True):
        return self.frame

    def _gain(self):
        return self._gains

    def _pedestals(self):
        return self._peds

    def _shape_as_daq(self):
        return self._peds.shape[1:]

    def _mask(self, **kwa):
        return self._the_mask

    def _common_mode(self):
        return None

    def _cbits_config_detector(self):
        return self._cbits

    def _cbits_config_and_data_detector(self, evt=None):
        return ue.cbits_config_and_data_detector_alg(
            self.raw(evt), self._cbits_config_detector(), self._data_gain_bit, self._gain_bit_shift
        )


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 2026)
    shape = (7, SEGMENTS, ROWS, COLS)
    peds = rng.normal(1500, 80, shape).astype(np.float32)
    gains = np.stack([rng.normal(g, g * 0.03, shape[1:]) for g in (16.4, 5.5, 0.16, 16.4, 5.5, 0.16, 0.16)]).astype(np.float32)
    gains[rng.random(shape) < 0.001] = 0
    mask = (rng.random(shape[1:]) > 0.01).astype(np.uint8)
    # Configuration bits per pixel: g (4), ga (8), trbit (16), and the test and mask bits
    # (1, 2) that the gain maps ignore: every fixed and auto-switching mode appears.
    choices = np.array([28, 12, 8, 24, 16, 0, 4, 20], dtype=np.uint8)
    cbits = (choices[rng.integers(0, len(choices), shape[1:])] | rng.integers(0, 4, shape[1:])).astype(np.uint8)
    adc = rng.integers(0, 1 << 14, size=(FRAMES,) + shape[1:])
    switched = rng.random(adc.shape) < 0.2
    raw = (adc | (switched << 14)).astype(np.uint16)

    det = StandInRaw(peds, gains, mask, cbits)
    calibrated = []
    for f in range(FRAMES):
        det.frame = raw[f]
        calibrated.append(np.asarray(ue.calib_epix10ka_any(det, None), dtype=np.float32))
    calibrated = np.stack(calibrated)
    assert calibrated.shape == raw.shape

    ranges = []
    for f in range(FRAMES):
        det.frame = raw[f]
        maps = ue.gain_maps_epix10ka_any(det, None)
        ranges.append([int(m.sum()) for m in maps])
    with h5py.File(out, "w") as h:
        h["pedestals"] = peds
        h["gains"] = gains
        h["mask"] = mask
        h["config"] = cbits
        h["raw"] = raw
        h["psana"] = calibrated
        h["ranges"] = np.array(ranges, dtype=np.int64)
    print(f"{FRAMES} frames of {SEGMENTS} segments of {ROWS}x{COLS} calibrated by psana")


main()
