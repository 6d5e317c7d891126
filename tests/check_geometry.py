"""References for detector geometry, written by the facilities' and pyFAI's own code.

usage: check_geometry.py DIR

Writes into DIR, for each multi-module detector extra_geom models:
  <name>.geom            its CrystFEL geometry file, written by extra_geom
  <name>.h5              `positions` (modules, ss, fs, 3): extra_geom's pixel centres (m),
                         read back from that file, and the file's `clen` as an attribute;
                         `assembled`: position_modules of data whose values are their index
                         in data order (NaN where no pixel lands), and its `centre` (y, x)
and for a tilted flat panel:
  tilted.poni            a PONI file written by pyFAI (rot1, rot2, rot3 all non-zero)
  tilted.h5              pyFAI's 2θ, χ, solid angle (relative) and polarisation (0.95) per pixel
"""
import os
import sys

import h5py
import numpy as np

import extra_geom
import pyFAI
from pyFAI.azimuthalIntegrator import AzimuthalIntegrator
from pyFAI.detectors import Detector

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

CLEN = 0.12
detectors = {
    "agipd": extra_geom.AGIPD_1MGeometry.from_quad_positions(
        quad_pos=[(-525, 625), (-550, -10), (520, -160), (542.5, 475)]
    ),
    "lpd": extra_geom.LPD_1MGeometry.from_quad_positions(
        quad_pos=[(11.4, 299), (-11.5, 8), (254.5, -16), (278.5, 275)]
    ),
    "jungfrau": extra_geom.JUNGFRAUGeometry.from_module_positions(
        offsets=[(-81, -19), (-81, 23), (-81, 65), (-81, 107), (1, -107), (1, -65), (1, -23), (1, 19)],
        orientations=[(-1, -1)] * 4 + [(1, 1)] * 4,
    ),
    "epix10k": extra_geom.Epix10KGeometry.from_origin(),
}
for name, geometry in detectors.items():
    path = os.path.join(out, f"{name}.geom")
    geometry.write_crystfel_geom(path, photon_energy=9300, clen=CLEN, adu_per_ev=0.0075)
    back = type(geometry).from_crystfel_geom(path)
    positions = back.get_pixel_positions()
    if positions.ndim == 3:  # single-module detectors: (ss, fs, 3)
        positions = positions[np.newaxis]
    # An image assembled from data whose every value is its index in data order.
    data = np.arange(np.prod(back.expected_data_shape), dtype=np.float32).reshape(back.expected_data_shape)
    assembled, centre = back.position_modules(data)
    with h5py.File(os.path.join(out, f"{name}.h5"), "w") as f:
        f["positions"] = positions
        f["assembled"] = assembled
        f["centre"] = np.asarray(centre, dtype=np.int64)
        f.attrs["clen"] = CLEN
    print(f"{name}: {positions.shape[:-1]} pixels from extra_geom {extra_geom.__version__}")

# Two panels at different distances (coffset), as a CrystFEL file, and pyFAI's solid angle for
# the same pixel corners: pyFAI takes each pixel relative to normal incidence at its own plane.
res, clen = 1000.0, 0.1
panels = [("a", 0, 5.0, 10.0, 0.0), ("b", 1, 5.0, 14.0, 0.01)]  # name, module, corner x, y, coffset
lines = [f"res = {res}", f"clen = {clen}", ""]
corners = np.zeros((8, 4, 4, 3))
for name, module, x0, y0, coffset in panels:
    lines += [f"{name}/dim1 = {module}", f"{name}/min_fs = 0", f"{name}/max_fs = 3",
              f"{name}/min_ss = 0", f"{name}/max_ss = 3", f"{name}/fs = +1.0x", f"{name}/ss = +1.0y",
              f"{name}/corner_x = {x0}", f"{name}/corner_y = {y0}", f"{name}/coffset = {coffset}", ""]
    for ss in range(4):
        for fs in range(4):
            x, y = (x0 + fs) / res, (y0 + ss) / res
            square = [(y, x), (y + 1 / res, x), (y + 1 / res, x + 1 / res), (y, x + 1 / res)]
            for k, (cy, cx) in enumerate(square):
                corners[module * 4 + ss, fs, k] = (coffset, cy, cx)
with open(os.path.join(out, "stepped.geom"), "w") as f:
    f.write("\n".join(lines))
stepped = Detector(pixel1=1 / res, pixel2=1 / res, max_shape=(8, 4))
stepped.set_pixel_corners(corners.astype(np.float32))
ai = AzimuthalIntegrator(dist=clen, poni1=0, poni2=0, detector=stepped, wavelength=1e-10)
with h5py.File(os.path.join(out, "stepped.h5"), "w") as f:
    f["solid_angle"] = ai.solidAngleArray((8, 4), absolute=False)
print("stepped panels: 2 × 4×4 pixels, 10 mm apart in z")

# A tilted panel, calibrated as pyFAI writes it.
shape = (180, 240)
detector = Detector(pixel1=75e-6, pixel2=100e-6, max_shape=shape)
ai = AzimuthalIntegrator(
    dist=0.085, poni1=0.0061, poni2=0.0137, rot1=0.12, rot2=-0.07, rot3=0.31,
    detector=detector, wavelength=1.0e-10,
)
ai.save(os.path.join(out, "tilted.poni"))
with h5py.File(os.path.join(out, "tilted.h5"), "w") as f:
    f["tth"] = ai.center_array(shape, unit="2th_rad", scale=False)
    f["chi"] = ai.center_array(shape, unit="chi_rad", scale=False)
    f["solid_angle"] = ai.solidAngleArray(shape, absolute=False)
    f["polarization"] = ai.polarization(shape, factor=0.95)
print(f"tilted panel: {shape} pixels from pyFAI {pyFAI.version}")
