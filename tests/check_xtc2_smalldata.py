"""h5py and psana as the reference for `shotflow extract` of an XTC2 run.

usage: check_xtc2_smalldata.py OUTPUT.h5 PSANA.json

PSANA.json is what check_xtc2.py wrote for the same run. Every row of OUTPUT.h5 (read with
h5py) must be psana's event: `timestamp`, and for every non-string field
`<det>/<alg>/<field>` psana's values, a detector's segments stacked in segment order when it
has several (as raw.raw combines them; the fill value where an event lacks a segment).
"""
import json
import sys

import h5py
import numpy as np

out, ref = sys.argv[1], sys.argv[2]
events = [e for r in json.load(open(ref))["runs"] for e in r["events"]]
segments = {}
for e in events:
    for name, segs in e["fields"].items():
        det_alg = tuple(name.split("/")[:2])
        segments.setdefault(det_alg, set()).update(int(s) for s in segs)
f = h5py.File(out, "r")
assert list(f["timestamp"][:]) == [e["timestamp"] for e in events], "timestamps"
compared = 0
for row, e in enumerate(events):
    for name, segs in e["fields"].items():
        if any(v["dtype"] == "str" for v in segs.values()):
            assert name not in f, f"{name}: a string dataset"
            continue
        ours = f[name][row]
        order = sorted(segments[tuple(name.split("/")[:2])])
        if len(order) == 1:
            v = next(iter(segs.values()))
            want = np.array(v["values"]).reshape(v["shape"])
        else:
            parts = []
            for s in order:
                v = segs[str(s)]
                parts.append(np.array(v["values"]).reshape(v["shape"]))
            want = np.stack(parts)
        np.testing.assert_array_equal(ours, want, err_msg=f"event {row}: {name}")
        compared += 1
print(f"{len(events)} rows, {compared} field values equal psana's")
print("ok")
