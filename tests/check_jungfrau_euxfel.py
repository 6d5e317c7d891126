"""extra-data and psana as the reference for `shotflow extract --calibrate` of EuXFEL JUNGFRAU.

usage: check_jungfrau_euxfel.py setup RUN_DIR
       check_jungfrau_euxfel.py check RUN_DIR OUTPUT.h5 LAUNCH CONSTANTS.h5
       check_jungfrau_euxfel.py corrupt RUN_DIR

setup: writes a raw JUNGFRAU run with extra-data's mock writer (module JNGFR01 of
SPB_IRDA_JF4M, TRAINS trains of 16 frames), whose data.adc holds 14-bit ADC values, data.gain
each pixel's gain bits (0, 1, 3, and now and then 2, which names no stage) and data.memoryCell
each frame's storage cell (0-3, in another order every train), as EuXFEL's receiver writes
them.

check: reads every train with extra-data, puts each frame's gain bits over its ADC values
(the detector's 16-bit word), calibrates the frame with psana's own
UtilsJungfrau.calib_jungfrau through the stand-in detector of check_jungfrau.py, given the
constants of the frame's storage cell from CONSTANTS.h5, and compares each train's sum and
mean of the calibrated frames with shotflow's `data.adc.sum` and `.mean` in OUTPUT (float64
sums of the same float32 values: relative 1e-9), and the train's pixels of gain 2 with
`data.adc_invalid_pixels`.

corrupt: sets one ADC value of the second train beyond 14 bits, for the error test.
"""
import glob
import os
import sys

import h5py
import numpy as np
from extra_data import RunDirectory
from extra_data.tests.mockdata import write_file
from extra_data.tests.mockdata.jungfrau import JUNGFRAUModule

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_jungfrau import StandIn  # noqa: E402

import psana.detector.UtilsJungfrau as uj  # noqa: E402

SOURCE = "SPB_IRDA_JF4M/DET/JNGFR01:daqOutput"
TRAINS = 3
CELLS = 4


def setup(run_dir):
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "RAW-R0001-JNGFR01-S00000.h5")
    write_file(path, [JUNGFRAUModule("SPB_IRDA_JF4M/DET/JNGFR01", raw=True)], ntrains=TRAINS, chunksize=1)
    rng = np.random.default_rng(17)
    with h5py.File(path, "r+") as f:
        group = f[f"INSTRUMENT/{SOURCE}/data"]
        shape = group["adc"].shape
        assert shape == (TRAINS, 16, 512, 1024), shape
        group["gain"][:] = rng.choice([0, 1, 3, 2], size=shape, p=[0.9, 0.06, 0.039, 0.001]).astype(np.uint8)
        group["adc"][:] = rng.integers(1000, 1 << 14, size=shape).astype(np.uint16)
        group["memoryCell"][:] = np.array([rng.permutation(16) % CELLS for _ in range(TRAINS)], np.uint8)
    print(f"mock JUNGFRAU run: {TRAINS} trains of 16 frames, cells 0-{CELLS - 1}")


def corrupt(run_dir):
    """Sets one ADC value of the second train to 20000, which 14 bits cannot hold."""
    with h5py.File(glob.glob(os.path.join(run_dir, "*.h5"))[0], "r+") as f:
        f[f"INSTRUMENT/{SOURCE}/data/adc"][1, 5, 7, 9] = 20000


def check(run_dir, output, launch, constants):
    with h5py.File(constants, "r") as c:
        assert c.attrs["detector"] in ("jungfrau", b"jungfrau"), c.attrs["detector"]
        pedestal, gain, mask = c["pedestal"][:], c["gain"][:], c["mask"][:]
    # psana's constants are (3, segments, rows, cols): one segment, the frame's cell.
    detectors = {}

    def detector(cell):
        if cell not in detectors:
            peds = pedestal[:, cell : cell + 1]
            detectors[cell] = StandIn(peds, gain[:, cell : cell + 1], np.zeros_like(peds), mask[None])
        return detectors[cell]

    run = RunDirectory(run_dir).select(SOURCE, "data.*")
    with h5py.File(output, "r") as f:
        sums = f[f"{SOURCE}/data.adc.sum"][:]
        means = f[f"{SOURCE}/data.adc.mean"][:]
        invalid = f[f"{SOURCE}/data.adc_invalid_pixels"][:]
        train_ids = f["timestamp"][:]
        for read in ("data.gain", "data.memoryCell"):
            assert f"{SOURCE}/{read}" not in f, f"{read} is read for the calibration only"
    assert len(train_ids) == TRAINS, train_ids
    frames, worst, codes_2 = 0, 0.0, 0
    for row, (tid, data) in enumerate(run.trains()):
        assert train_ids[row] == tid, (train_ids[row], tid)
        adc = data[SOURCE]["data.adc"]
        bits = data[SOURCE]["data.gain"]
        cells = data[SOURCE]["data.memoryCell"]
        words = (bits.astype(np.uint16) << 14) | adc
        total = 0.0
        for k in range(words.shape[0]):
            calibrated = uj.calib_jungfrau(detector(int(cells[k])), words[k][None])
            assert calibrated.dtype == np.float32, calibrated.dtype
            total += calibrated.astype(np.float64).sum()
            frames += 1
        mean = total / words.size
        for ours, theirs in ((sums[row], total), (means[row], mean)):
            rel = abs(ours - theirs) / max(abs(theirs), 1e-12)
            worst = max(worst, rel)
            assert rel < 1e-9, (tid, ours, theirs)
        expected = int((bits == 2).sum())
        assert int(invalid[row]) == expected, (tid, invalid[row], expected)
        codes_2 += expected
    assert codes_2 > 0, "no pixel of gain 2 in the run"
    print(
        f"{len(train_ids)} trains, {frames} frames ({frames * 512 * 1024} pixels, {len(detectors)} cells, "
        f"{codes_2} of gain 2) with {launch}: sums and means equal psana's to {worst:.1e}, invalid pixels counted alike"
    )


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2])
    elif sys.argv[1] == "corrupt":
        corrupt(sys.argv[2])
    else:
        check(*sys.argv[2:])
