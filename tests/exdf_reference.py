"""extra-data as the reference reader for tests/exdf.rs.

  make DIR            write extra-data's mock runs (make_examples) into DIR/<name>, then fill
                      chosen datasets with known values (the mock leaves them as zeros)
  compare RUN DUMP SELECTOR...
                      read the selected keys with extra-data and compare them, train by
                      train and row by row, with DUMP, the file shotflow's reader wrote
  validate RUN        extra-data-validate's checks on a run directory
"""
import os
import sys

import h5py
import numpy as np


def fill(path, names):
    """Deterministic, row-dependent values: shifting rows or mixing trains changes them."""
    with h5py.File(path, "r+") as f:
        seq = int(path.rsplit("-S", 1)[1][:5])
        for name in names:
            if name not in f:
                continue
            d = f[name]
            n = int(np.prod(d.shape))
            values = (np.arange(n, dtype=np.int64) * 7 + seq * 1_000_003) % 65_521
            if d.dtype.kind == "f":
                values = values.astype(np.float64) / 8.0
            d[...] = values.reshape(d.shape).astype(d.dtype)


RUNS = {
    # name: (make_examples function, [(file glob part, [datasets to fill])])
    "spb": ("make_spb_run", [("DA01", [
        "CONTROL/SA1_XTD2_XGM/DOOCS/MAIN/beamPosition/ixPos/value",
        "INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output/data/intensityTD",
        "INSTRUMENT/SPB_XTD9_XGM/DOOCS/MAIN:output/data/intensityTD",
    ]), ("DA02", [])]),
    "rspb": ("make_reduced_spb_run", [("AGIPD03", ["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/3CH0:xtdf/image/data"])]),
    "scs": ("make_scs_run", [("DSSC00", [
        "INSTRUMENT/SCS_DET_DSSC1M-1/DET/0CH0:xtdf/image/cellId",
        "INSTRUMENT/SCS_DET_DSSC1M-1/DET/0CH0:xtdf/header/pulseCount",
    ])]),
    "fxe": ("make_fxe_run", [("DA01", [
        "INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output/data/intensityTD",
        "CONTROL/SA1_XTD2_XGM/DOOCS/MAIN/beamPosition/iyPos/value",
    ])]),
    "proc": ("make_modern_spb_proc_run", [("AGIPD01", [
        "INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/1CH0:output/image/cellId",
        "INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/1CH0:output/header/pulseCount",
    ])]),
    "jungfrau": ("make_jungfrau_run", [("JNGFR02", [
        "INSTRUMENT/SPB_IRDA_JF4M/DET/JNGFR02:daqOutput/data/frameNumber",
        "INSTRUMENT/SPB_IRDA_JF4M/DET/JNGFR02:daqOutput/data/memoryCell",
    ])]),
}


def make(root):
    from extra_data.tests import make_examples

    for name, (function, fills) in RUNS.items():
        out = os.path.join(root, name)
        os.makedirs(out, exist_ok=True)
        getattr(make_examples, function)(out)
        for part, names in fills:
            for fname in sorted(os.listdir(out)):
                if f"-{part}-" in fname:
                    fill(os.path.join(out, fname), names)


def compare(run_dir, dump, selectors):
    from extra_data import RunDirectory

    run = RunDirectory(run_dir)
    checked = 0
    # The test wrote and closed the dump before starting this script; HDF5's file lock was
    # seen (1 run in ~6, under the full suite) still held by the test process for a moment,
    # failing the open. Reading needs no lock here: damaged data would fail the comparison.
    with h5py.File(dump, "r", locking=False) as f:
        for sel in selectors:
            source, key = sel.rsplit(":", 1) if ":" in sel else (sel, "*")
            if "/" in key or not any(True for s in run.all_sources if __import__("fnmatch").fnmatch(s, source)):
                source, key = sel, "*"
            elif "." not in key and not any(__import__("fnmatch").fnmatch(k, key) for s in run.all_sources if __import__("fnmatch").fnmatch(s, source) for k in run[s].keys()):
                source, key = sel, "*"
            sub = run.select(source, key)
            for src in sorted(sub.all_sources):
                for k in sorted(sub[src].keys()):
                    kd = sub[src, k]
                    if kd.dtype.kind not in "biuf":
                        continue
                    field = f"{src}/{k}"
                    assert field in f, f"shotflow did not read {field}"
                    want = kd.ndarray()
                    want_trains = kd.train_id_coordinates()
                    got = f[field]["data"][:]
                    got_trains = f[field]["trains"][:]
                    np.testing.assert_array_equal(got_trains, want_trains, err_msg=field)
                    assert got.dtype == want.dtype, (field, got.dtype, want.dtype)
                    np.testing.assert_array_equal(got, want, err_msg=field)
                    checked += 1
    assert checked > 0, "nothing compared"
    print(f"ok: {checked} keys equal")


def validate(run_dir):
    from extra_data.validation import RunValidator
    from extra_data import RunDirectory

    problems = RunValidator(run_dir).run_checks() if hasattr(RunValidator, "run_checks") else None
    if problems:
        raise SystemExit(f"extra-data-validate: {problems}")
    RunDirectory(run_dir)
    print("ok")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2])
    elif cmd == "compare":
        compare(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "validate":
        validate(sys.argv[2])
