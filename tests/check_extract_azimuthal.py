"""extra-data, extra_geom and pyFAI as the reference for `shotflow extract --geometry`.

usage: check_extract_azimuthal.py RUN GEOM OUTPUT LO HI BINS ENERGY_KEV POLARIZATION [CONSTANTS]

Reads the run with extra-data and stacks each train's AGIPD modules with its
stack_detector_data; gives pyFAI the pixel corners extra_geom computes from the CrystFEL file
(to_distortion_array, beam at the origin); integrates every pulse with integrate1d (q in nm⁻¹,
LO..HI in BINS bins, solid angle and polarisation corrected, no pixel splitting) and averages
the pulses of a train. shotflow's `<detector>/azav` in OUTPUT (read with h5py) must equal it
train by train, bin by bin, to float32 rounding; the bins pyFAI's float32 positions move a
pixel into or out of are named and bounded, as in check_azimuthal_geometry.py.

With CONSTANTS (a constants file in shotflow's layout, read with h5py) the run is raw and
every module's frames are calibrated first, each with its memory cell, then stacked:
- AGIPD (`detector` attribute "agipd"): the module's image.cellId, the published algorithm in
  numpy (check_agipd.correct);
- JUNGFRAU ("jungfrau"): EuXFEL's data.adc, data.gain and data.memoryCell of modules JNGFR01…,
  psana's calib_jungfrau with the frame's storage cell (check_jungfrau_euxfel.calibrator).
"""
import os
import sys

import h5py
import numpy as np
from extra_data import RunDirectory, stack_detector_data
from extra_geom import AGIPD_1MGeometry, JUNGFRAUGeometry
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_agipd import correct  # noqa: E402

MODULES = "SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf"


class Agipd:
    name = "SPB_DET_AGIPD1M-1"
    select = ("SPB_DET_AGIPD1M-1/DET/*CH0:xtdf", "image.*")
    geometry = AGIPD_1MGeometry
    pixel = 2e-4

    def __init__(self, constants_file):
        self.constants = None
        if constants_file is not None:
            with h5py.File(constants_file, "r") as f:
                self.constants = (f["thresholds"][:], f["offset"][:], f["relative_gain"][:],
                                  f["bad"][:].astype(bool))

    def stack(self, data, modules):
        """(pulses, modules, rows, cols): the train's modules, corrected with their cells."""
        if self.constants is None:
            return stack_detector_data(data, "image.data")
        thresholds, offset, relative_gain, bad = self.constants
        stacked = []
        for m in range(modules):
            raw = data[MODULES.format(m)]["image.data"]  # (pulses, 2, 512, 128)
            cells = data[MODULES.format(m)]["image.cellId"].reshape(-1)
            stacked.append([correct(raw[k, 0], raw[k, 1], int(cells[k]), thresholds, offset, relative_gain, bad)[0]
                            for k in range(raw.shape[0])])
        return np.stack(stacked, axis=1)


class Jungfrau:
    name = "SPB_IRDA_JF4M"
    select = ("SPB_IRDA_JF4M/DET/JNGFR*:daqOutput", "data.*")
    geometry = JUNGFRAUGeometry
    pixel = 75e-6

    def __init__(self, constants_file):
        from check_jungfrau_euxfel import calibrator, words
        self.calibrate, self.words = calibrator(constants_file), words

    def stack(self, data, modules):
        stacked = []
        for m in range(modules):
            raw, cells, _ = self.words(data, m + 1)  # modules from JNGFR01
            stacked.append([self.calibrate(raw[k], int(cells[k])) for k in range(raw.shape[0])])
        return np.stack(stacked, axis=1)


def kind(constants_file):
    if constants_file is None:
        return Agipd(None)
    with h5py.File(constants_file, "r") as f:
        detector = f.attrs["detector"]
    detector = detector.decode() if isinstance(detector, bytes) else detector
    return {"agipd": Agipd, "jungfrau": Jungfrau}[detector](constants_file)


def integrator(geom, pixel, energy):
    corners = geom.to_distortion_array(allow_negative_xy=True)  # (modules*rows, cols, 4, 3), (z, y, x)
    detector = Detector(pixel1=pixel, pixel2=pixel, max_shape=corners.shape[:2])
    detector.set_pixel_corners(corners.astype(np.float32))
    wavelength = 12.398419843320026e-10 / energy  # m
    return AzimuthalIntegrator(dist=0.12, poni1=0.0, poni2=0.0, detector=detector, wavelength=wavelength)


def main(run_dir, geom_file, output, lo, hi, bins, energy, polarization, constants_file=None):
    lo, hi, bins = float(lo), float(hi), int(bins)
    energy, polarization = float(energy), float(polarization)
    det = kind(constants_file)
    geom = det.geometry.from_crystfel_geom(geom_file)
    n_modules = geom.n_modules
    ai = integrator(geom, det.pixel, energy)
    run = RunDirectory(run_dir).select(*det.select)
    with h5py.File(output, "r") as f:
        ours = f[f"{det.name}/azav"][:]
        train_ids = f["timestamp"][:]
        pulses = f[f"{det.name}/azav_pulses"][:]
        modules = f[f"{det.name}/azav_modules"][:]
    assert ours.shape == (len(run.train_ids), bins), (ours.shape, len(run.train_ids), bins)
    assert (modules == n_modules).all(), modules

    worst, moved_bins, compared = 0.0, 0, 0
    for row, (tid, data) in enumerate(run.trains()):
        assert train_ids[row] == tid, (train_ids[row], tid)
        stacked = det.stack(data, n_modules)  # (pulses, modules, rows, cols)
        assert pulses[row] == stacked.shape[0]
        profiles = []
        for image in stacked:
            flat = image.reshape(-1, image.shape[-1]).astype(np.float64)
            r = ai.integrate1d(flat, bins, unit="q_nm^-1",
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
    what = f"{type(det).__name__} calibrated, " if constants_file is not None else ""
    print(f"{len(train_ids)} trains, {int(pulses.sum())} pulses of {n_modules} modules ({what}integrated by pyFAI), "
          f"{compared} bins compared: max rel diff {worst:.1e}; {moved_bins} bins with a pixel on the "
          f"other side of an edge")
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
