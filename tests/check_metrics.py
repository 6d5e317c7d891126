"""Parses Prometheus text (a /metrics body) with the official Python client's parser and
prints its samples as JSON: {sample name: [[labels, value], ...]}. A body the parser rejects
fails here, with the parser's message.

usage: check_metrics.py FILE
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = {}
types = {}
with open(sys.argv[1]) as f:
    text = f.read()
for family in text_string_to_metric_families(text):
    types[family.name] = family.type
    for s in family.samples:
        samples.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps({"types": types, "samples": samples}))
