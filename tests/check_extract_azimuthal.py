"""extra-data, extra_geom and pyFAI as the reference for `shotflow extract --geometry`.

usage: check_extract_azimuthal.py RUN GEOM OUTPUT LO HI BINS ENERGY_KEV POLARIZATION [CONSTANTS]

Reads the run with extra-data and stacks each train's AGIPD modules with its
stack_detector_data; gives pyFAI the pixel corners extra_geom computes from the CrystFEL file
(to_distortion_array, beam at the origin); integrates every pulse with integrate1d (q in nm⁻¹,
LO..HI in BINS bins, solid angle and polarisation corrected, no pixel splitting) and averages
the pulses of a train. shotflow's `<detector>/azav` in OUTPUT (read with h5py) must equal it
train by train, bin by bin, to float32 rounding; the bins pyFAI's float32 positions move a
pixel into or out of are named and bounded, as in check_azimuthal_geometry.py.

With CONSTANTS (an AGIPD constants file, shotflow's layout, read with h5py) the run is raw
AGIPD: every module's frames are corrected first, each with its memory cell from the module's
image.cellId, by the published algorithm in numpy (check_agipd.correct), then stacked.
"""
import os
import sys

import h5py
import numpy as np
from extra_data import RunDirectory, stack_detector_data
from extra_geom import AGIPD_1MGeometry
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_agipd import correct  # noqa: E402

MODULES = "SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf"


def integrator(geom_file, energy):
    geom = AGIPD_1MGeometry.from_crystfel_geom(geom_file)
    corners = geom.to_distortion_array(allow_negative_xy=True)  # (16*512, 128, 4, 3), (z, y, x)
    detector = Detector(pixel1=2e-4, pixel2=2e-4, max_shape=corners.shape[:2])
    detector.set_pixel_corners(corners.astype(np.float32))
    wavelength = 12.398419843320026e-10 / energy  # m
    return AzimuthalIntegrator(dist=0.12, poni1=0.0, poni2=0.0, detector=detector, wavelength=wavelength)


def corrected_stack(data, constants):
    """(pulses, 16, 512, 128) float32: every module's raw frames corrected with its cells."""
    thresholds, offset, relative_gain, bad = constants
    modules = []
    for m in range(16):
        raw = data[MODULES.format(m)]["image.data"]  # (pulses, 2, 512, 128)
        cells = data[MODULES.format(m)]["image.cellId"].reshape(-1)
        modules.append([correct(raw[k, 0], raw[k, 1], int(cells[k]), thresholds, offset, relative_gain, bad)[0]
                        for k in range(raw.shape[0])])
    return np.stack(modules, axis=1)


def main(run_dir, geom_file, output, lo, hi, bins, energy, polarization, constants_file=None):
    lo, hi, bins = float(lo), float(hi), int(bins)
    energy, polarization = float(energy), float(polarization)
    ai = integrator(geom_file, energy)
    constants = None
    if constants_file is not None:
        with h5py.File(constants_file, "r") as f:
            constants = (f["thresholds"][:], f["offset"][:], f["relative_gain"][:], f["bad"][:].astype(bool))
    run = RunDirectory(run_dir).select("SPB_DET_AGIPD1M-1/DET/*CH0:xtdf", "image.*")
    with h5py.File(output, "r") as f:
        ours = f["SPB_DET_AGIPD1M-1/azav"][:]
        train_ids = f["timestamp"][:]
        pulses = f["SPB_DET_AGIPD1M-1/azav_pulses"][:]
        modules = f["SPB_DET_AGIPD1M-1/azav_modules"][:]
    assert ours.shape == (len(run.train_ids), bins), (ours.shape, len(run.train_ids), bins)
    assert (modules == 16).all(), modules

    worst, moved_bins, compared = 0.0, 0, 0
    for row, (tid, data) in enumerate(run.trains()):
        assert train_ids[row] == tid, (train_ids[row], tid)
        if constants is None:
            stacked = stack_detector_data(data, "image.data")  # (pulses, 16, 512, 128)
        else:
            stacked = corrected_stack(data, constants)
        assert pulses[row] == stacked.shape[0]
        profiles = []
        for image in stacked:
            r = ai.integrate1d(image.reshape(16 * 512, 128).astype(np.float64), bins, unit="q_nm^-1",
                               radial_range=(lo, hi), method=("no", "histogram", "cython"),
                               correctSolidAngle=True, polarization_factor=polarization,
                               dummy=np.nan)
            profiles.append(r.intensity)
        theirs = np.mean(profiles, axis=0)
        rel = np.abs(ours[row] - theirs) / np.maximum(np.abs(theirs), 1e-12)
        both = ~np.isnan(ours[row]) & ~np.isnan(theirs)
        assert (np.isnan(ours[row]) == np.isnan(theirs))[1:].all(), "the same bins are empty"
        # pyFAI places pixels in float32: of a million pixels, a few lie within float32 rounding
        # of a bin edge and land on its other side. Those bins (neighbours, in pairs) differ by
        # about one pixel's share of thousands (< 1e-3); every other bin agrees to float32
        # rounding.
        close = rel < 1e-5
        moved = both & ~close
        moved[0] = False  # pyFAI truncates towards zero: pixels just below the range land in bin 0
        assert moved.sum() <= bins * 0.15, f"train {tid}: {moved.sum()} bins differ: {np.nonzero(moved)[0]}"
        assert (rel[moved] < 1e-3).all(), f"train {tid}: bins {np.nonzero(moved)[0]} differ by {rel[moved]}"
        worst = max(worst, rel[both & close].max())
        moved_bins += int(moved.sum())
        compared += int(both.sum())
    what = "calibrated in numpy, " if constants is not None else ""
    print(f"{len(train_ids)} trains, {int(pulses.sum())} pulses of 16 modules ({what}integrated by pyFAI), "
          f"{compared} bins compared: max rel diff {worst:.1e}; {moved_bins} bins with a pixel on the "
          f"other side of an edge")
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
