"""extra-data as the reference for stacking a multi-module detector's sources.

usage: check_stacked_modules.py RUN_DIR FILE MODULES

FILE (written by tests/exdf.rs) holds shotflow's per-pulse `ids` (train << 16 | pulse id) and
`stacked` (events, modules, rows, columns). extra-data reads the run and stacks each train's
module sources with `stack_detector_data`; every pulse must equal shotflow's.
"""
import sys

import h5py
import numpy as np
from extra_data import RunDirectory, stack_detector_data

run_dir, path, modules = sys.argv[1], sys.argv[2], int(sys.argv[3])
with h5py.File(path, "r") as f:
    ids = f["ids"][:]
    stacked = f["stacked"][:]
ours = {int(i): stacked[k] for k, i in enumerate(ids)}
run = RunDirectory(run_dir).select("*/DET/*", "image.*")
compared = 0
for train_id, data in run.trains():
    frames = stack_detector_data(data, "image.data", modules=modules, fillvalue=0)
    first = sorted(s for s in data if "/DET/" in s)[0]
    pulses = np.asarray(data[first]["image.pulseId"]).reshape(-1)
    for j, pulse in enumerate(pulses):
        event = (int(train_id) << 16) | int(pulse)
        assert event in ours, f"train {train_id} pulse {pulse}: no stacked event"
        assert ours[event].dtype == frames.dtype, (ours[event].dtype, frames.dtype)
        assert np.array_equal(ours[event], frames[j]), f"train {train_id} pulse {pulse} differs"
        compared += 1
assert compared == len(ours), f"{compared} pulses from extra-data, {len(ours)} from shotflow"
print(f"{compared} pulses × {modules} modules equal extra-data's stack_detector_data")
