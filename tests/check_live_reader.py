"""A notebook's view of a run in progress: reopen the master with h5py again and again until it
is complete. Every look must be a prefix of the final (reference) result: the same rows in the
same order, no fill value among them, `complete` false until the end.

usage: check_live_reader.py MASTER REFERENCE
"""
import os
import sys
import time

import h5py
import numpy as np

master, reference = sys.argv[1], sys.argv[2]
with h5py.File(reference, "r") as f:
    ref = {k: f[k][()] for k in ("timestamp", "photons", "pulse_energy", "azav")}

deadline = time.time() + 150
lengths = []
looks = 0
complete = False
while time.time() < deadline and not complete:
    if not os.path.exists(master):
        time.sleep(0.01)
        continue
    with h5py.File(master, "r") as f:
        complete = bool(f.attrs["complete"])
        n = f["timestamp"].shape[0]
        assert n == f["shotflow"].attrs["committed_events"], "rows = committed events"
        for key, want in ref.items():
            got = f[key][()]
            assert got.shape[0] == n, (key, got.shape, n)
            assert got.dtype == want.dtype and got.tobytes() == want[:n].tobytes(), f"look {looks}: {key} is not the reference's first {n} rows"
        assert not np.any(f["photons"][()] == np.iinfo(np.uint64).max), "fill value in a committed row"
        assert not np.any(np.isnan(f["pulse_energy"][()])), "fill value in a committed row"
    looks += 1
    if not lengths or lengths[-1] != n:
        assert not lengths or n > lengths[-1], f"the prefix shrank: {lengths[-1]} -> {n}"
        lengths.append(n)
    time.sleep(0.05)

assert complete, f"the master was not complete within the deadline ({looks} looks)"
assert lengths[-1] == ref["timestamp"].shape[0]
print(f"{looks} looks, rows seen: {lengths}")
print(f"distinct prefixes: {len(lengths)}")
