"""`shotflow extract --calibrate` of an XTC2 run's JUNGFRAU frames against psana's own
calibration (UtilsJungfrau.calib_jungfrau through the stand-in detector of
check_jungfrau.py) of the same raw frames, extracted without calibration, with the constants
read from the same constants file.

usage: check_jungfrau_extract.py RAW.h5 CALIBRATED.h5 CONSTANTS.h5

Prints one JSON line with what it compared; exits non-zero on the first difference.
"""
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_jungfrau import StandIn  # noqa: E402

import psana.detector.UtilsJungfrau as uj  # noqa: E402

FIELD = "jungfrau/raw/raw"


def main():
    raw_path, calibrated_path, constants_path = sys.argv[1:4]
    with h5py.File(constants_path, "r") as c:
        assert c.attrs["detector"] == "jungfrau"
        pedestal = c["pedestal"][:]  # (3, cells, rows, cols): pedestal + offset
        gain = c["gain"][:]
        mask = c["mask"][:]
    # psana's constants are (3, segments, rows, cols); one segment, storage cell 0, offsets 0.
    peds = pedestal[:, :1]
    det = StandIn(peds, gain[:, :1], np.zeros_like(peds), mask[None])
    with h5py.File(raw_path, "r") as r, h5py.File(calibrated_path, "r") as k:
        raw = r[FIELD][:]
        ids = r["timestamp"][:]
        calibrated = k[FIELD][:]
        invalid = k[FIELD + "_invalid_pixels"][:]
        assert np.array_equal(ids, k["timestamp"][:]), "the two extracts hold other events"
    assert calibrated.dtype == np.float32 and calibrated.shape == raw.shape, (calibrated.dtype, calibrated.shape, raw.shape)
    for e in range(raw.shape[0]):
        expected = uj.calib_jungfrau(det, raw[e])
        if not np.array_equal(expected.view(np.uint32), calibrated[e].view(np.uint32)):
            bad = np.argwhere(expected != calibrated[e])[0]
            sys.exit(f"event {ids[e]}: pixel {tuple(bad)} is {calibrated[e][tuple(bad)]}, psana says {expected[tuple(bad)]}")
        codes = (raw[e] >> 14) == 2
        if int(codes.sum()) != int(invalid[e]):
            sys.exit(f"event {ids[e]}: {invalid[e]} invalid pixels counted, {codes.sum()} gain codes 10")
    print(json.dumps({"events": int(raw.shape[0]), "pixels": int(raw.size), "invalid": int(invalid.sum())}))


main()
