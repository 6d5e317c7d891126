"""extra-data and numpy as the reference for `shotflow extract --calibrate` of EuXFEL AGIPD.

usage: check_agipd_extract.py setup RUN_DIR
       check_agipd_extract.py setup-1m RUN_DIR
       check_agipd_extract.py check RUN_DIR OUTPUT.h5 LAUNCH CONSTANTS.h5 [CONSTANTS.h5 ...]

setup: writes extra-data's mock SPB run (make_spb_run) and fills the first FILLED trains of
modules 0 and 1's raw image.data (zeros in the mock, and left so after them) with analog and
gain values of mixed stages, keeping the mock's cell ids.

setup-1m: writes a small raw AGIPD 1M run with extra-data's mock writer (16 modules, 3 trains
of 8 pulses), every frame filled so; for `extract --geometry` of calibrated modules
(check_extract_azimuthal.py checks it).

check: for module k with the k-th CONSTANTS file, reads the module's frames and cell ids per
train with extra-data, corrects every frame in numpy with the published AGIPD algorithm
(check_agipd.correct) and the constants read from the file with h5py, and compares each
train's sum and mean of the corrected frames with shotflow's `<source>/image.data.sum` and
`.mean` in OUTPUT (float64 sums of the same float32 values: relative 1e-9).
"""
import glob
import os
import sys

import h5py
import numpy as np
from extra_data import RunDirectory
from extra_data.tests import make_examples
from extra_data.tests.mockdata import write_file
from extra_data.tests.mockdata.detectors import AGIPDModule

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_agipd import correct  # noqa: E402

FILLED = 4
MODULES = (0, 1)


def source(module):
    return f"SPB_DET_AGIPD1M-1/DET/{module}CH0:xtdf"


def fill(run_dir, modules, frames, rng):
    """Fills the first `frames` raw frames of each module's image.data with analog and gain
    values of mixed stages (about 90 % high gain)."""
    for module in modules:
        path = f"INSTRUMENT/{source(module)}/image/data"
        files = [f for f in glob.glob(os.path.join(run_dir, "*.h5")) if f"AGIPD{module:02}" in f]
        assert files, f"no module-{module} file in the mock run"
        for name in sorted(files):
            with h5py.File(name, "r+") as f:
                data = f[path]
                n = min(data.shape[0], frames)
                level = rng.choice([4700.0, 6000.0, 7600.0], size=(n, 512, 128), p=[0.9, 0.07, 0.03])
                gain = np.clip(level + rng.normal(0, 300, level.shape), 0, 65535).astype(np.uint16)
                analog = rng.integers(3800, 9000, size=(n, 512, 128)).astype(np.uint16)
                data[:n, 0] = analog
                data[:n, 1] = gain
        print(f"mock run, module {module} filled in {len(files)} file(s)")


def setup(run_dir):
    os.makedirs(run_dir, exist_ok=True)
    make_examples.make_spb_run(run_dir)
    fill(run_dir, MODULES, FILLED * 64, np.random.default_rng(15))


def setup_1m(run_dir):
    """A small raw AGIPD 1M run written by extra-data's mock writer: 16 modules, 3 trains of 8
    pulses (cells 0-7), every frame filled."""
    os.makedirs(run_dir, exist_ok=True)
    for m in range(16):
        write_file(os.path.join(run_dir, f"RAW-R0001-AGIPD{m:02}-S00000.h5"),
                   [AGIPDModule(f"SPB_DET_AGIPD1M-1/DET/{m}CH0", raw=True, frames_per_train=8)],
                   ntrains=3, chunksize=32)
    fill(run_dir, range(16), 3 * 8, np.random.default_rng(16))


def check_module(run_dir, module, constants, output, workers):
    src = source(module)
    with h5py.File(constants, "r") as f:
        assert f.attrs["detector"] in ("agipd", b"agipd"), f.attrs["detector"]
        thresholds, offset = f["thresholds"][:], f["offset"][:]
        relative_gain, bad = f["relative_gain"][:], f["bad"][:].astype(bool)
    run = RunDirectory(run_dir).select(src, "image.*")
    with h5py.File(output, "r") as f:
        sums = f[f"{src}/image.data.sum"][:]
        means = f[f"{src}/image.data.mean"][:]
        train_ids = f["timestamp"][:]
        assert f"{src}/image.cellId" not in f, "cell ids are read for the calibration only"
    frames, worst = 0, 0.0
    stages = np.zeros(4, np.int64)
    zero = {}  # frames of zeros depend on their cell only
    for row, (tid, data) in enumerate(run.trains()):
        assert train_ids[row] == tid, (train_ids[row], tid)
        raw = data[src]["image.data"]
        cells = data[src]["image.cellId"].reshape(-1)
        total = 0.0
        for k in range(raw.shape[0]):
            cell = int(cells[k])
            if not raw[k].any() and cell in zero:
                frame_sum, counts = zero[cell]
            else:
                out, stage = correct(raw[k, 0], raw[k, 1], cell, thresholds, offset, relative_gain, bad)
                frame_sum = out.astype(np.float64).sum()
                counts = np.bincount(np.minimum(stage.ravel(), 3), minlength=4)
                if not raw[k].any():
                    zero[cell] = (frame_sum, counts)
            total += frame_sum
            stages += counts
            frames += 1
        mean = total / (raw.shape[0] * 512 * 128)
        for ours, theirs in ((sums[row], total), (means[row], mean)):
            rel = abs(ours - theirs) / max(abs(theirs), 1e-12)
            worst = max(worst, rel)
            assert rel < 1e-9, (tid, ours, theirs)
    assert frames > 0 and stages[1] > 0 and stages[2] > 0, stages
    print(
        f"module {module}: {len(train_ids)} trains, {frames} frames ({frames * 512 * 128} pixels; stages {stages.tolist()}) "
        f"with {workers}: sums and means equal numpy's to {worst:.1e}"
    )


def check(run_dir, output, workers, *constants):
    assert len(constants) == len(MODULES), (constants, MODULES)
    for module, path in zip(MODULES, constants):
        check_module(run_dir, module, path, output, workers)


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2])
    elif sys.argv[1] == "setup-1m":
        setup_1m(sys.argv[2])
    else:
        check(*sys.argv[2:])
