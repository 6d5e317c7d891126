"""psana 4.3.4 as the reference for shotflow's XTC2 reader: dumps what psana reads.

usage: check_xtc2.py PATH OUT.json

PATH is a run directory (<exp>-r<run>-s<stream>-c<chunk>.xtc2 files with smalldata/; read in
psana's exp/run mode with the logbook lookup switched off) or a single .xtc2 file (files=
mode). For every event of every run, OUT.json holds psana's timestamp, which streams
contributed (evt._dgrams), every field of every stream's datagram per detector, segment and
algorithm (dtype, shape, values; strings as text, enums as their int32 value), psana's
Detector(det).raw.raw(evt) for detectors that have it, and the step and EPICS values psana
attaches to the event (run.Detector(name)(evt)).
"""
import json
import os
import re
import sys

os.environ["PS_PARALLEL"] = "none"
import numpy as np
from psana.psexp import ds_base

# Offline: psana asks the LCLS logbook for the run's files and then scans dir/smalldata.
ds_base.DataSourceBase._get_file_info_from_db = lambda self, runnum: {}
from psana import DataSource  # noqa: E402


def encode(v):
    if isinstance(v, str):
        return {"dtype": "str", "shape": [], "values": v}
    if isinstance(v, np.ndarray):
        return {"dtype": v.dtype.str, "shape": list(v.shape), "values": v.ravel().tolist()}
    if isinstance(v, (np.generic,)):
        return {"dtype": np.asarray(v).dtype.str, "shape": [], "values": [v.item()]}
    if isinstance(v, bool):
        return {"dtype": "bool", "shape": [], "values": [v]}
    if isinstance(v, int):
        return {"dtype": "int", "shape": [], "values": [v]}
    if isinstance(v, float):
        return {"dtype": "float", "shape": [], "values": [v]}
    if hasattr(v, "value") and hasattr(v, "names"):  # an enum Container
        return {"dtype": "enum", "shape": [], "values": [int(v.value)]}
    return None


def fields(dgram):
    out = {}
    for det, segments in vars(dgram).items():
        if det.startswith("_") or not isinstance(segments, dict):
            continue
        for seg, algs in segments.items():
            for alg, container in vars(algs).items():
                if alg.startswith("_"):
                    continue
                for name, v in vars(container).items():
                    if name.startswith("_"):
                        continue
                    e = encode(v)
                    if e is not None:
                        out.setdefault(f"{det}/{alg}/{name}", {})[str(seg)] = e
    return out


path, out = sys.argv[1], sys.argv[2]
if os.path.isdir(path):
    name = next(f for f in sorted(os.listdir(path)) if f.endswith(".xtc2"))
    m = re.match(r"(.*)-r(\d+)-s\d+-c\d+\.xtc2$", name)
    ds = DataSource(exp=m.group(1), run=int(m.group(2)), dir=path, skip_calib_load="all")
else:
    ds = DataSource(files=path, skip_calib_load="all")
runs = []
for run in ds.runs():
    env = {}
    for key in list(run.epicsinfo.keys()) + list(run.scaninfo.keys()):
        try:
            env[key[0]] = run.Detector(key[0])
        except Exception:
            pass
    raws = {}
    for (det, alg), attrs in run.detinfo.items():
        if alg == "raw" and "raw" in attrs:
            raws[det] = run.Detector(det)
    events = []
    for evt in run.events():
        record = {
            "timestamp": evt.timestamp,
            "streams": [d is not None for d in evt._dgrams],
            "fields": {},
            "raw": {},
            "env": {},
        }
        for d in evt._dgrams:
            if d is not None:
                for k, segs in fields(d).items():
                    record["fields"].setdefault(k, {}).update(segs)
        for det, detector in raws.items():
            try:
                r = detector.raw.raw(evt)
            except Exception as e:  # psana raises where only some segments arrived
                r = None
                record["raw"][det] = {"error": type(e).__name__}
            if r is not None:
                record["raw"][det] = encode(r)
        for name, detector in env.items():
            record["env"][name] = encode(detector(evt)) if detector(evt) is not None else None
        events.append(record)
    runs.append({"runnum": run.runnum, "expt": run.expt, "events": events})
with open(out, "w") as f:
    json.dump({"runs": runs}, f)
print(f"psana: {sum(len(r['events']) for r in runs)} events in {len(runs)} run(s)")
