#!/usr/bin/env bash
# PSI's aare, the JUNGFRAU calibration reference (`aare.apply_calibration`), installed into
# PYTHON (default python3). The package index has only its source, and its build clones
# Minuit2, fmt, libzmq and pybind11 from GitHub and downloads nlohmann::json there; this
# builds aare's own source unchanged, with those taken from here instead:
#   * Minuit2: ROOT's sources in iminuit's source distribution (minuit2/CMakeLists.txt);
#   * fmt and nlohmann::json: Debian's libfmt-dev and nlohmann-json3-dev (json/);
#   * pybind11: the package index, as aare's build requirements ask;
#   * libzmq: not used by aare's code (zeromq/ says found).
set -euo pipefail
py=${1:-python3}
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
$py - "$work" <<'PY'
import json, sys, tarfile, urllib.parse, urllib.request
index = "https://pypi.org/pypi/iminuit/json"
with urllib.request.urlopen(index) as r:
    releases = json.load(r)["releases"]
sdist = next(u["url"] for u in releases["2.33.0"] if u["packagetype"] == "sdist")
with urllib.request.urlopen(urllib.parse.urljoin(index, sdist)) as r:
    tarfile.open(fileobj=r, mode="r|gz").extractall(sys.argv[1])
PY
root="$work/iminuit-2.33.0/extern/root"
$py -m pip install -q --no-deps --no-binary aare "aare==2026.9.30" \
    -C cmake.define.AARE_FETCH_FMT=OFF \
    -C cmake.define.AARE_FETCH_ZMQ=OFF \
    -C cmake.define.AARE_FETCH_PYBIND11=OFF \
    -C cmake.define.FETCHCONTENT_FULLY_DISCONNECTED=ON \
    -C cmake.define.FETCHCONTENT_SOURCE_DIR_MINUIT2="$here/minuit2" \
    -C cmake.define.MINUIT2_ROOT_SOURCES="$root" \
    -C cmake.define.FETCHCONTENT_SOURCE_DIR_JSON="$here/json" \
    -C cmake.define.ZeroMQ_DIR="$here/zeromq"
