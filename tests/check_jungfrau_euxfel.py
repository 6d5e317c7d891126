"""extra-data and psana as the reference for `shotflow extract --calibrate` of EuXFEL JUNGFRAU.

usage: check_jungfrau_euxfel.py setup RUN_DIR [MODULES]
       check_jungfrau_euxfel.py check RUN_DIR OUTPUT.h5 LAUNCH CONSTANTS.h5
       check_jungfrau_euxfel.py corrupt RUN_DIR

setup: writes a raw JUNGFRAU run with extra-data's mock writer (modules JNGFR01 to
JNGFR<MODULES> of SPB_IRDA_JF4M, default 1, TRAINS trains of 16 frames), whose data.adc holds
14-bit ADC values, data.gain each pixel's gain bits (0, 1, 3, and now and then 2, which names
no stage) and data.memoryCell each frame's storage cell (0-3, in another order every train),
as EuXFEL's receiver writes them.

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

TRAINS = 3
CELLS = 4


def source(module):
    """Module `module` (from 1, as EuXFEL and extra-data number JUNGFRAU modules)."""
    return f"SPB_IRDA_JF4M/DET/JNGFR{module:02}:daqOutput"


def setup(run_dir, modules=1):
    """Modules 1..MODULES, each in its own file, as the mock writer names them."""
    os.makedirs(run_dir, exist_ok=True)
    rng = np.random.default_rng(17)
    for m in range(1, int(modules) + 1):
        path = os.path.join(run_dir, f"RAW-R0001-JNGFR{m:02}-S00000.h5")
        write_file(path, [JUNGFRAUModule(f"SPB_IRDA_JF4M/DET/JNGFR{m:02}", raw=True)], ntrains=TRAINS, chunksize=1)
        with h5py.File(path, "r+") as f:
            group = f[f"INSTRUMENT/{source(m)}/data"]
            shape = group["adc"].shape
            assert shape == (TRAINS, 16, 512, 1024), shape
            group["gain"][:] = rng.choice([0, 1, 3, 2], size=shape, p=[0.9, 0.06, 0.039, 0.001]).astype(np.uint8)
            group["adc"][:] = rng.integers(1000, 1 << 14, size=shape).astype(np.uint16)
            group["memoryCell"][:] = np.array([rng.permutation(16) % CELLS for _ in range(TRAINS)], np.uint8)
    print(f"mock JUNGFRAU run: {modules} module(s), {TRAINS} trains of 16 frames, cells 0-{CELLS - 1}")


def calibrator(constants):
    """`calibrate(words, cell)`: psana's calib_jungfrau of one frame's raw words (rows, cols)
    with the constants of its storage cell, from a constants file in shotflow's layout."""
    with h5py.File(constants, "r") as c:
        assert c.attrs["detector"] in ("jungfrau", b"jungfrau"), c.attrs["detector"]
        pedestal, gain, mask = c["pedestal"][:], c["gain"][:], c["mask"][:]
    # psana's constants are (3, segments, rows, cols): one segment, the frame's cell; psana
    # caches them per detector, so one stand-in per cell.
    detectors = {}

    def calibrate(words, cell):
        if cell not in detectors:
            peds = pedestal[:, cell : cell + 1]
            detectors[cell] = StandIn(peds, gain[:, cell : cell + 1], np.zeros_like(peds), mask[None])
        calibrated = uj.calib_jungfrau(detectors[cell], words[None])
        assert calibrated.dtype == np.float32, calibrated.dtype
        return calibrated[0]

    calibrate.cells = detectors
    return calibrate


def words(data, module=1):
    """A train's raw words of `module` (frames, rows, cols), gain bits over ADC values, and
    its frames' storage cells."""
    adc = data[source(module)]["data.adc"]
    bits = data[source(module)]["data.gain"]
    return (bits.astype(np.uint16) << 14) | adc, data[source(module)]["data.memoryCell"], bits


def corrupt(run_dir):
    """Sets one ADC value of the second train to 20000, which 14 bits cannot hold."""
    with h5py.File(glob.glob(os.path.join(run_dir, "*.h5"))[0], "r+") as f:
        f[f"INSTRUMENT/{source(1)}/data/adc"][1, 5, 7, 9] = 20000


def check(run_dir, output, launch, constants):
    calibrate = calibrator(constants)
    src = source(1)
    run = RunDirectory(run_dir).select(src, "data.*")
    with h5py.File(output, "r") as f:
        sums = f[f"{src}/data.adc.sum"][:]
        means = f[f"{src}/data.adc.mean"][:]
        invalid = f[f"{src}/data.adc_invalid_pixels"][:]
        train_ids = f["timestamp"][:]
        for read in ("data.gain", "data.memoryCell"):
            assert f"{src}/{read}" not in f, f"{read} is read for the calibration only"
    assert len(train_ids) == TRAINS, train_ids
    frames, worst, codes_2 = 0, 0.0, 0
    for row, (tid, data) in enumerate(run.trains()):
        assert train_ids[row] == tid, (train_ids[row], tid)
        raw, cells, bits = words(data)
        total = 0.0
        for k in range(raw.shape[0]):
            total += calibrate(raw[k], int(cells[k])).astype(np.float64).sum()
            frames += 1
        mean = total / raw.size
        for ours, theirs in ((sums[row], total), (means[row], mean)):
            rel = abs(ours - theirs) / max(abs(theirs), 1e-12)
            worst = max(worst, rel)
            assert rel < 1e-9, (tid, ours, theirs)
        expected = int((bits == 2).sum())
        assert int(invalid[row]) == expected, (tid, invalid[row], expected)
        codes_2 += expected
    assert codes_2 > 0, "no pixel of gain 2 in the run"
    print(
        f"{len(train_ids)} trains, {frames} frames ({frames * 512 * 1024} pixels, {len(calibrate.cells)} cells, "
        f"{codes_2} of gain 2) with {launch}: sums and means equal psana's to {worst:.1e}, invalid pixels counted alike"
    )


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(*sys.argv[2:])
    elif sys.argv[1] == "corrupt":
        corrupt(sys.argv[2])
    else:
        check(*sys.argv[2:])
