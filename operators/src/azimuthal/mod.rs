//! Azimuthal (radial) integration of a 2-D detector image into q or radius bins.
//!
//! The geometry follows pyFAI's conventions for an unrotated flat detector so that results
//! can be compared with `AzimuthalIntegrator.integrate1d` directly: pixel `(i, j)` has its
//! centre at `((i + 0.5)·p₁, (j + 0.5)·p₂)` from the detector corner; the point of normal
//! incidence (PONI) is at `(poni₁, poni₂)`; `2θ = atan(r / distance)`; `q = 4π sin θ / λ`
//! in nm⁻¹. [`AzimuthalMap::new`] computes every pixel's bin once; [`AzimuthalMap::integrate`]
//! is then one pass over the pixels (a gather-add into the bins), with no per-frame
//! trigonometry. Pixels are not split between bins (pyFAI's `("no", "histogram", ...)`).

mod kernels;
mod split;

use serde::{Deserialize, Serialize};

use kernels::{scatter, scatter_u16};
pub use split::SplitMap;

use crate::geometry::{Detector, Vec3};
use crate::Pixel;

/// Radial unit of the bins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Radial {
    /// Scattering vector q in nm⁻¹ (pyFAI `q_nm^-1`).
    QInvNm,
    /// Distance from the PONI in the detector plane, mm (pyFAI `r_mm`).
    RadiusMm,
    /// Scattering angle 2θ in degrees (pyFAI `2th_deg`).
    TwoThetaDeg,
}

/// A flat, unrotated detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Sample–detector distance, m.
    pub distance: f64,
    /// PONI along the slow axis (rows), m from the detector corner.
    pub poni1: f64,
    /// PONI along the fast axis (columns), m.
    pub poni2: f64,
    /// Pixel size along rows, m.
    pub pixel1: f64,
    /// Pixel size along columns, m.
    pub pixel2: f64,
    /// Photon energy, keV.
    pub energy_kev: f64,
}

impl Geometry {
    /// Wavelength in nm (hc = 1.239841984 keV·nm).
    pub fn wavelength_nm(&self) -> f64 {
        1.239_841_984_332_002_6 / self.energy_kev
    }

    /// The beam centre in pixel coordinates (row, column), as users often give it.
    pub fn with_center(mut self, row: f64, col: f64) -> Geometry {
        self.poni1 = row * self.pixel1;
        self.poni2 = col * self.pixel2;
        self
    }

    /// Radial position and azimuth (radians, atan2(row, col) offset from the PONI) of the
    /// centre of pixel `(i, j)`.
    pub fn position(&self, i: usize, j: usize, unit: Radial) -> (f64, f64) {
        let d1 = (i as f64 + 0.5) * self.pixel1 - self.poni1;
        let d2 = (j as f64 + 0.5) * self.pixel2 - self.poni2;
        let r = (d1 * d1 + d2 * d2).sqrt();
        let two_theta = r.atan2(self.distance);
        let radial = match unit {
            Radial::QInvNm => {
                4.0 * std::f64::consts::PI * (two_theta / 2.0).sin() / self.wavelength_nm()
            }
            Radial::RadiusMm => r * 1e3,
            Radial::TwoThetaDeg => two_theta.to_degrees(),
        };
        (radial, d1.atan2(d2))
    }
}

/// Why a map cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AzimuthalError {
    /// Zero bins or sectors, or an empty range.
    #[error("azimuthal integration needs at least one bin and sector and lo < hi (got {0})")]
    Bins(String),
    /// The mask does not have the image's shape.
    #[error("mask shape {mask:?} differs from the image shape {image:?}")]
    Mask {
        /// Mask shape.
        mask: (usize, usize),
        /// Image shape.
        image: (usize, usize),
    },
}

/// A precomputed pixel → bin map.
///
/// # Examples
///
/// ```
/// use ndarray::Array2;
/// use shotflow_operators::azimuthal::{AzimuthalMap, Geometry, Radial};
///
/// let geometry = Geometry { distance: 0.1, poni1: 0.0, poni2: 0.0, pixel1: 1e-4, pixel2: 1e-4, energy_kev: 9.3 }
///     .with_center(32.0, 32.0);
/// let map = AzimuthalMap::new((64, 64), &geometry, Radial::RadiusMm, 16, Some((0.0, 3.2)), None, 1).unwrap();
/// let flat = Array2::<f32>::from_elem((64, 64), 2.0);
/// let profile = map.integrate(flat.view());
/// assert!(profile.iter().all(|v| (*v - 2.0).abs() < 1e-12)); // a flat image integrates flat
/// assert_eq!(map.centers().len(), 16);
/// ```
#[derive(Clone, Debug)]
pub struct AzimuthalMap {
    shape: (usize, usize),
    bins: usize,
    sectors: usize,
    lo: f64,
    hi: f64,
    /// Bin of each pixel (row-major); masked pixels and those out of range have the spare bin
    /// `bins × sectors`, so the kernels add them there without a test. Every value is at most
    /// `bins × sectors`: the kernels index their banks unchecked on that. Two bytes per pixel
    /// keep the map's memory traffic at the frame's (maps needing more bins use `wide`).
    index: Vec<u16>,
    /// The same for maps of 65535 bins or more.
    wide: Vec<u32>,
    /// Pixels per bin.
    counts: Vec<u32>,
    /// What each bin's sum is divided by: its pixels, or the sum of their corrections.
    norm: Vec<f64>,
    /// Each pixel's correction (empty: 1 for every pixel), for the norms of parts.
    weights: Vec<f64>,
}

impl AzimuthalMap {
    /// Maps every pixel of a `shape` image to one of `bins` radial bins over `range` (default:
    /// the image's full radial extent) × `sectors` equal azimuthal sectors over (-π, π].
    /// `mask[i, j] == true` excludes a pixel.
    pub fn new(
        shape: (usize, usize),
        geometry: &Geometry,
        unit: Radial,
        bins: usize,
        range: Option<(f64, f64)>,
        mask: Option<ndarray::ArrayView2<'_, bool>>,
        sectors: usize,
    ) -> Result<AzimuthalMap, AzimuthalError> {
        if bins == 0 || sectors == 0 {
            return Err(AzimuthalError::Bins(format!(
                "{bins} bins, {sectors} sectors"
            )));
        }
        if let Some(m) = &mask {
            if m.dim() != shape {
                return Err(AzimuthalError::Mask {
                    mask: m.dim(),
                    image: shape,
                });
            }
        }
        let mut positions = Vec::with_capacity(shape.0 * shape.1);
        for i in 0..shape.0 {
            for j in 0..shape.1 {
                positions.push(geometry.position(i, j, unit));
            }
        }
        let masked = |k: usize| mask.as_ref().is_some_and(|m| m[[k / shape.1, k % shape.1]]);
        AzimuthalMap::build(shape, &positions, None, bins, range, masked, sectors)
    }

    /// A map for every pixel of `detector` (data order, as a `(modules × rows, columns)`
    /// image), at `energy_kev`, with `corrections` folded into a per-bin normalisation: each
    /// bin is then Σ signal / Σ (solid angle × polarisation), pyFAI's `integrate1d`. Pixels
    /// outside the panels, on bad panels, in the geometry's bad regions or in `mask` (data
    /// order, `true` = excluded) are left out.
    ///
    /// ```
    /// use shotflow_operators::azimuthal::{AzimuthalMap, Corrections, Radial};
    /// use shotflow_operators::geometry;
    ///
    /// let poni = "Distance: 0.1\nPoni1: 0.003\nPoni2: 0.003\nRot1: 0.1\n\
    ///             PixelSize1: 1e-4\nPixelSize2: 1e-4\n";
    /// let detector = geometry::parse(poni, "tilted.poni", Some((60, 60))).unwrap();
    /// let corrections = Corrections { solid_angle: true, polarization: Some(0.99) };
    /// let map = AzimuthalMap::for_detector(&detector, 9.3, Radial::TwoThetaDeg, 20, None, 1,
    ///                                      corrections, None).unwrap();
    /// // A flat image, corrected: brighter where less solid angle and polarisation reached.
    /// let profile = map.integrate_slice(&vec![1.0f32; 3600]);
    /// assert!(profile.iter().all(|v| *v >= 1.0));
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn for_detector(
        detector: &Detector,
        energy_kev: f64,
        unit: Radial,
        bins: usize,
        range: Option<(f64, f64)>,
        sectors: usize,
        corrections: Corrections,
        mask: Option<&[bool]>,
    ) -> Result<AzimuthalMap, AzimuthalError> {
        let (modules, rows, columns) = detector.shape();
        let pixels = DetectorPixels::new(detector, energy_kev, unit, corrections, mask)?;
        let positions: Vec<(f64, f64)> =
            pixels.angles.iter().map(|&(r, _, chi)| (r, chi)).collect();
        let masked = |k: usize| pixels.excluded[k];
        AzimuthalMap::build(
            (modules * rows, columns),
            &positions,
            Some(pixels.weights),
            bins,
            range,
            masked,
            sectors,
        )
    }

    /// The map of pixels at `positions` (radial, azimuth; row-major over `shape`), each
    /// counting `weights[k]` (default 1) in its bin's normalisation.
    fn build(
        shape: (usize, usize),
        positions: &[(f64, f64)],
        weights: Option<Vec<f64>>,
        bins: usize,
        range: Option<(f64, f64)>,
        masked: impl Fn(usize) -> bool,
        sectors: usize,
    ) -> Result<AzimuthalMap, AzimuthalError> {
        if bins == 0 || sectors == 0 {
            return Err(AzimuthalError::Bins(format!(
                "{bins} bins, {sectors} sectors"
            )));
        }
        let (lo, hi) = range.unwrap_or_else(|| {
            let used = positions
                .iter()
                .enumerate()
                .filter(|(k, p)| !masked(*k) && !p.0.is_nan())
                .map(|(_, p)| p.0);
            let lo = used.clone().fold(f64::INFINITY, f64::min);
            let hi = used.fold(f64::NEG_INFINITY, f64::max);
            // Keep the outermost pixel inside the last bin.
            (lo, hi + (hi - lo) * 1e-9)
        });
        if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
            return Err(AzimuthalError::Bins(format!("range {lo}..{hi}")));
        }
        let width = (hi - lo) / bins as f64;
        let sector_width = 2.0 * std::f64::consts::PI / sectors as f64;
        let mut counts = vec![0u32; bins * sectors];
        let mut norm = vec![0.0f64; bins * sectors];
        let spare = bins * sectors;
        let index: Vec<u32> = positions
            .iter()
            .enumerate()
            .map(|(k, &(radial, azimuth))| {
                // NaN fails both comparisons, so test for it apart.
                if masked(k) || radial.is_nan() || radial < lo || radial >= hi {
                    return spare as u32;
                }
                let bin = (((radial - lo) / width) as usize).min(bins - 1);
                let sector =
                    (((azimuth + std::f64::consts::PI) / sector_width) as usize).min(sectors - 1);
                let b = sector * bins + bin;
                counts[b] += 1;
                norm[b] += weights.as_ref().map_or(1.0, |w| w[k]);
                b as u32
            })
            .collect();
        let (index, wide) = if spare < u16::MAX as usize {
            (index.iter().map(|&b| b as u16).collect(), Vec::new())
        } else {
            (Vec::new(), index)
        };
        Ok(AzimuthalMap {
            shape,
            bins,
            sectors,
            lo,
            hi,
            index,
            wide,
            counts,
            norm,
            weights: weights.unwrap_or_default(),
        })
    }

    /// Bin centres in the radial unit.
    pub fn centers(&self) -> Vec<f64> {
        bin_centers(self.lo, self.hi, self.bins)
    }

    /// Pixels per bin (sector-major).
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// What each bin's sum is divided by (sector-major): its pixels' count, or the sum of
    /// their corrections.
    pub fn norm(&self) -> &[f64] {
        &self.norm
    }

    /// The radial range the bins cover, `lo..hi` in the map's unit.
    pub fn range(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }

    /// [`AzimuthalMap::norm`] of the pixels at `offset..offset + len` in data order alone: what
    /// the bins of a part of the detector (one module) are divided by, so that an event missing
    /// a module is normalised by the modules it has.
    ///
    /// ```
    /// use shotflow_operators::azimuthal::{AzimuthalMap, Corrections, Radial};
    /// use shotflow_operators::geometry::AgipdLayout;
    ///
    /// let detector = AgipdLayout { modules: 2, module_shape: (64, 16), ..AgipdLayout::default() }
    ///     .detector().unwrap();
    /// let corrections = Corrections { solid_angle: true, polarization: Some(0.99) };
    /// let map = AzimuthalMap::for_detector(&detector, 9.3, Radial::QInvNm, 10, None, 1,
    ///                                      corrections, None).unwrap();
    /// let (a, b) = (map.norm_of_part(0, 1024), map.norm_of_part(1024, 1024));
    /// for ((x, y), all) in a.iter().zip(&b).zip(map.norm()) {
    ///     assert!((x + y - all).abs() <= 1e-12 * all);
    /// }
    /// ```
    ///
    /// # Panics
    ///
    /// If the part reaches beyond the map's pixels.
    pub fn norm_of_part(&self, offset: usize, len: usize) -> Vec<f64> {
        let mut norm = vec![0.0; self.norm.len()];
        for k in offset..offset + len {
            let bin = if self.wide.is_empty() {
                self.index[k] as usize
            } else {
                self.wide[k] as usize
            };
            if bin < norm.len() {
                norm[bin] += self.weights.get(k).copied().unwrap_or(1.0);
            }
        }
        norm
    }

    /// Mean intensity per bin (sector-major: `sectors × bins`), or Σ signal / Σ corrections
    /// with [`Corrections`]; `NaN` for empty bins.
    ///
    /// # Panics
    ///
    /// If the image shape differs from the map's.
    pub fn integrate<T: Pixel>(&self, image: ndarray::ArrayView2<'_, T>) -> Vec<f64> {
        let mut sums = vec![0.0f64; self.bins * self.sectors];
        self.accumulate(image, &mut sums);
        self.normalize(&sums)
    }

    /// [`AzimuthalMap::integrate`] of pixels in data order (all modules of an event, as
    /// [`AzimuthalMap::for_detector`] maps them).
    ///
    /// # Panics
    ///
    /// If the number of pixels differs from the map's.
    pub fn integrate_slice<T: Pixel>(&self, pixels: &[T]) -> Vec<f64> {
        let mut sums = vec![0.0f64; self.bins * self.sectors];
        self.accumulate_slice(pixels, &mut sums);
        self.normalize(&sums)
    }

    /// Per-bin sums (from [`AzimuthalMap::accumulate`], of any number of frames) divided by
    /// the bins' normalisation.
    pub fn normalize(&self, sums: &[f64]) -> Vec<f64> {
        sums.iter()
            .zip(&self.counts)
            .zip(&self.norm)
            .map(|((s, &c), n)| if c == 0 { f64::NAN } else { s / n })
            .collect()
    }

    /// Adds the image's pixels into `sums` (per-bin sums, for summing many frames).
    pub fn accumulate<T: Pixel>(&self, image: ndarray::ArrayView2<'_, T>, sums: &mut [f64]) {
        assert_eq!(
            image.dim(),
            self.shape,
            "image shape differs from the map's"
        );
        let owned;
        let pixels: &[T] = match image.as_slice() {
            Some(p) => p,
            None => {
                owned = image.iter().copied().collect::<Vec<T>>();
                &owned
            }
        };
        self.accumulate_slice(pixels, sums);
    }

    /// [`AzimuthalMap::accumulate`] of pixels in data order.
    ///
    /// # Panics
    ///
    /// If the number of pixels or sums differs from the map's.
    pub fn accumulate_slice<T: Pixel>(&self, pixels: &[T], sums: &mut [f64]) {
        assert_eq!(
            pixels.len(),
            self.shape.0 * self.shape.1,
            "pixel count differs from the map's"
        );
        self.accumulate_part(0, pixels, sums);
    }

    /// Adds a contiguous part of an event's pixels into `sums`: `pixels` are those at
    /// `offset..offset + pixels.len()` in data order. A multi-module event whose modules
    /// arrive as separate arrays (one per EXDF source) is integrated without stacking them
    /// first: module `m` of `(modules, rows, columns)` data starts at `m * rows * columns`.
    ///
    /// ```
    /// use shotflow_operators::azimuthal::{AzimuthalMap, Corrections, Radial};
    /// use shotflow_operators::geometry;
    ///
    /// let poni = "Distance: 0.1\nPoni1: 0.002\nPoni2: 0.002\nPixelSize1: 1e-4\n\
    ///             PixelSize2: 1e-4\nWavelength: 1e-10\n";
    /// let detector = geometry::parse(poni, "flat.poni", Some((40, 40))).unwrap();
    /// let map = AzimuthalMap::for_detector(&detector, 12.4, Radial::RadiusMm, 8, None, 1,
    ///                                      Corrections::default(), None).unwrap();
    /// let image: Vec<u16> = (0..1600).map(|k| (k % 97) as u16).collect();
    /// let mut sums = vec![0.0; 8];
    /// map.accumulate_part(0, &image[..700], &mut sums);
    /// map.accumulate_part(700, &image[700..], &mut sums);
    /// assert_eq!(map.normalize(&sums), map.integrate_slice(&image));
    /// ```
    ///
    /// # Panics
    ///
    /// If the part reaches beyond the map's pixels, or the sums are not the map's bins.
    pub fn accumulate_part<T: Pixel>(&self, offset: usize, pixels: &[T], sums: &mut [f64]) {
        let range = offset..offset + pixels.len();
        assert!(
            range.end <= self.shape.0 * self.shape.1,
            "pixels {range:?} lie beyond the map's {}",
            self.shape.0 * self.shape.1
        );
        assert_eq!(sums.len(), self.bins * self.sectors);
        if let (Some(raw), false) = (T::as_u16(pixels), self.index.is_empty()) {
            // Raw 16-bit frames: integer banks are exact and their adds have 1-cycle latency.
            // SAFETY: every bin of the map is at most bins × sectors, the sums' length.
            unsafe { scatter_u16(raw, &self.index[range], sums) };
        } else {
            let mut acc = self.accumulator();
            acc.add(offset, pixels);
            acc.finish(sums);
        }
    }

    /// The frame shape the map is for.
    pub fn shape(&self) -> (usize, usize) {
        self.shape
    }

    /// Bins × sectors: how many sums the map accumulates into.
    pub fn bins_total(&self) -> usize {
        self.bins * self.sectors
    }
}

/// Per-bin sums of one frame's pixels, added in parts in any order of parts: pixel `k` of the
/// frame adds into bank `k % 8` whichever part brings it, so a frame added whole and a frame
/// added block by block give the same bits.
///
/// ```
/// use shotflow_operators::azimuthal::{AzimuthalMap, Geometry, Radial};
///
/// let geometry = Geometry { distance: 0.1, poni1: 0.0, poni2: 0.0, pixel1: 1e-4, pixel2: 1e-4, energy_kev: 9.3 }
///     .with_center(8.0, 8.0);
/// let map = AzimuthalMap::new((16, 16), &geometry, Radial::RadiusMm, 6, None, None, 1).unwrap();
/// let image: Vec<f32> = (0..256).map(|k| (k % 13) as f32 * 0.37).collect();
/// let mut acc = map.accumulator();
/// acc.add(0, &image[..96]);
/// acc.add(96, &image[96..]);
/// let mut parts = vec![0.0; 6];
/// acc.finish(&mut parts);
/// let mut whole = vec![0.0; 6];
/// map.accumulate_slice(&image, &mut whole);
/// assert_eq!(parts, whole);
/// ```
pub struct Accumulator<'m> {
    map: &'m AzimuthalMap,
    banks: Vec<f64>,
}

impl AzimuthalMap {
    /// An empty [`Accumulator`] of this map.
    pub fn accumulator(&self) -> Accumulator<'_> {
        Accumulator {
            map: self,
            banks: vec![0.0; kernels::BANKS * (self.bins * self.sectors + 1)],
        }
    }
}

impl Accumulator<'_> {
    /// Adds `pixels`, those at `offset..offset + pixels.len()` of the frame.
    ///
    /// # Panics
    ///
    /// If the part reaches beyond the map's pixels.
    pub fn add<T: Pixel>(&mut self, offset: usize, pixels: &[T]) {
        let map = self.map;
        let range = offset..offset + pixels.len();
        assert!(
            range.end <= map.shape.0 * map.shape.1,
            "pixels {range:?} lie beyond the map's {}",
            map.shape.0 * map.shape.1
        );
        // SAFETY: every bin of the map is at most bins × sectors, the banks' spare bin.
        unsafe {
            if map.wide.is_empty() {
                scatter(pixels, &map.index[range], offset, &mut self.banks);
            } else {
                scatter(pixels, &map.wide[range], offset, &mut self.banks);
            }
        }
    }

    /// Adds the sums into `sums` (one per bin and sector).
    pub fn finish(self, sums: &mut [f64]) {
        let stride = sums.len() + 1;
        assert_eq!(
            self.banks.len(),
            kernels::BANKS * stride,
            "sums are not the map's bins"
        );
        for (s, bin) in sums.iter_mut().zip(self.banks.chunks_exact(kernels::BANKS)) {
            *s += bin.iter().sum::<f64>();
        }
    }
}

/// The centres of `bins` equal bins over `lo..hi`.
pub(crate) fn bin_centers(lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let width = (hi - lo) / bins as f64;
    (0..bins).map(|b| lo + (b as f64 + 0.5) * width).collect()
}

/// What every map needs of a detector's pixels (data order): each one's radial value, 2θ and
/// χ; whether it is left out (outside the panels, bad, masked); and its correction
/// (solid angle × polarisation, 1 without corrections).
pub(crate) struct DetectorPixels {
    pub angles: Vec<(f64, f64, f64)>,
    pub excluded: Vec<bool>,
    pub weights: Vec<f64>,
    pub wavelength_nm: f64,
}

impl DetectorPixels {
    pub fn new(
        detector: &Detector,
        energy_kev: f64,
        unit: Radial,
        corrections: Corrections,
        mask: Option<&[bool]>,
    ) -> Result<DetectorPixels, AzimuthalError> {
        if let Some(m) = mask {
            if m.len() != detector.pixels() {
                let (modules, rows, columns) = detector.shape();
                return Err(AzimuthalError::Mask {
                    mask: (m.len(), 1),
                    image: (modules * rows, columns),
                });
            }
        }
        let wavelength_nm = 1.239_841_984_332_002_6 / energy_kev;
        let angles: Vec<(f64, f64, f64)> = detector
            .pixel_positions()
            .into_iter()
            .map(|p| radial(p, unit, wavelength_nm))
            .collect();
        let mut excluded = detector.mask();
        for (k, out) in excluded.iter_mut().enumerate() {
            *out |= mask.is_some_and(|m| m[k]) || angles[k].0.is_nan();
        }
        let solid = corrections.solid_angle.then(|| detector.solid_angles());
        let weights = angles
            .iter()
            .enumerate()
            .map(|(k, &(_, two_theta, chi))| {
                let sa = solid.as_ref().map_or(1.0, |s| s[k]);
                let pol = corrections
                    .polarization
                    .map_or(1.0, |f| polarization(two_theta, chi, f));
                sa * pol
            })
            .collect();
        Ok(DetectorPixels {
            angles,
            excluded,
            weights,
            wavelength_nm,
        })
    }
}

/// What an integration corrects for, with pyFAI's definitions: the solid angle of each pixel
/// relative to one at normal incidence, and the polarisation of the beam (`factor` = (Ih −
/// Iv)/(Ih + Iv), 0.95–0.99 at an XFEL). Folded into each bin's normalisation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Corrections {
    /// Divide by the solid angle.
    pub solid_angle: bool,
    /// Divide by the polarisation factor with this `factor`.
    pub polarization: Option<f64>,
}

/// pyFAI's polarisation factor of a pixel at scattering angle `two_theta` and azimuth `chi`
/// (from the horizontal, radians): `(1 + cos²2θ − f cos 2χ sin²2θ) / 2`.
///
/// ```
/// use shotflow_operators::azimuthal::polarization;
/// assert_eq!(polarization(0.0, 1.0, 0.99), 1.0);
/// // At 2θ = 90° in the polarisation plane, almost nothing is scattered.
/// assert!((polarization(std::f64::consts::FRAC_PI_2, 0.0, 0.99) - 0.005).abs() < 1e-12);
/// ```
pub fn polarization(two_theta: f64, chi: f64, factor: f64) -> f64 {
    let cos2 = two_theta.cos().powi(2);
    0.5 * (1.0 + cos2 - factor * (2.0 * chi).cos() * (1.0 - cos2))
}

/// The radial coordinate of a lab position in `unit`, its 2θ and its azimuth χ (pyFAI's:
/// `atan2(y, x)`).
pub fn radial(p: Vec3, unit: Radial, wavelength_nm: f64) -> (f64, f64, f64) {
    let r = p[0].hypot(p[1]);
    let two_theta = r.atan2(p[2]);
    let value = match unit {
        Radial::QInvNm => 4.0 * std::f64::consts::PI * (two_theta / 2.0).sin() / wavelength_nm,
        Radial::RadiusMm => r * 1e3,
        Radial::TwoThetaDeg => two_theta.to_degrees(),
    };
    (value, two_theta, p[1].atan2(p[0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn a_ring_lands_in_its_bin() {
        let geometry = Geometry {
            distance: 0.2,
            poni1: 0.0,
            poni2: 0.0,
            pixel1: 2e-4,
            pixel2: 2e-4,
            energy_kev: 12.0,
        }
        .with_center(50.0, 50.0);
        let map = AzimuthalMap::new(
            (100, 100),
            &geometry,
            Radial::RadiusMm,
            50,
            Some((0.0, 10.0)),
            None,
            1,
        )
        .unwrap();
        // pixels whose centre is 4.0–4.2 mm from the centre: exactly bin 20
        let image = Array2::from_shape_fn((100, 100), |(i, j)| {
            let (r, _) = geometry.position(i, j, Radial::RadiusMm);
            if (4.0..4.2).contains(&r) {
                10.0f64
            } else {
                0.0
            }
        });
        let profile = map.integrate(image.view());
        for (b, v) in profile.iter().enumerate() {
            assert_eq!(*v, if b == 20 { 10.0 } else { 0.0 }, "bin {b}");
        }
    }

    #[test]
    fn sectors_and_masks() {
        let geometry = Geometry {
            distance: 0.1,
            poni1: 0.0,
            poni2: 0.0,
            pixel1: 1e-4,
            pixel2: 1e-4,
            energy_kev: 9.0,
        }
        .with_center(10.0, 10.0);
        let mut mask = Array2::from_elem((20, 20), false);
        mask.row_mut(0).fill(true);
        let map = AzimuthalMap::new(
            (20, 20),
            &geometry,
            Radial::QInvNm,
            5,
            None,
            Some(mask.view()),
            4,
        )
        .unwrap();
        assert_eq!(
            map.counts().iter().sum::<u32>(),
            380,
            "20 masked pixels of 400"
        );
        // Upper half (rows < 10) lies at negative d1: azimuth in (-π, 0), the first two sectors.
        let image = Array2::from_shape_fn((20, 20), |(i, _)| if i < 10 { 1.0f32 } else { 0.0 });
        let profile = map.integrate(image.view());
        let upper: Vec<f64> = profile[..10]
            .iter()
            .filter(|v| !v.is_nan())
            .copied()
            .collect();
        let lower: Vec<f64> = profile[10..]
            .iter()
            .filter(|v| !v.is_nan())
            .copied()
            .collect();
        assert!(upper.iter().all(|v| *v == 1.0) && lower.iter().all(|v| *v == 0.0));
        assert!(AzimuthalMap::new((20, 20), &geometry, Radial::QInvNm, 0, None, None, 1).is_err());
    }
}
