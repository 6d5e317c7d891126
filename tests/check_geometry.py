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
