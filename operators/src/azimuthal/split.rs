//! Azimuthal integration with pixel splitting: each pixel's radial extent (pyFAI's "bbox":
//! its centre ± the largest distance to one of its corners, in the radial unit) is shared
//! among the bins it overlaps, in proportion to the overlap, as pyFAI's
//! `integrate1d(..., method=("bbox", "histogram", ...))` shares it. Profiles of coarse bins
//! then no longer show the comb that whole pixels falling into one bin or the next make.

use super::{bin_centers, radial, AzimuthalError, Corrections, DetectorPixels, Radial};
use crate::geometry::Detector;
use crate::Pixel;

/// A precomputed split: for every pixel, the bins it feeds and with which fraction.
///
/// # Examples
///
/// ```
/// use shotflow_operators::azimuthal::{Corrections, Radial, SplitMap};
/// use shotflow_operators::geometry;
///
/// let poni = "Distance: 0.1\nPoni1: 0.003\nPoni2: 0.003\nPixelSize1: 1e-4\nPixelSize2: 1e-4\n";
/// let detector = geometry::parse(poni, "flat.poni", Some((60, 60))).unwrap();
/// let map = SplitMap::for_detector(&detector, 9.3, Radial::RadiusMm, 40, Some((0.0, 4.0)),
///                                  Corrections::default(), None).unwrap();
/// // A flat image integrates flat, whatever the splitting.
/// let profile = map.integrate_slice(&vec![3.0f32; 3600]);
/// assert!(profile.iter().all(|v| v.is_nan() || (v - 3.0).abs() < 1e-12));
/// ```
#[derive(Clone, Debug)]
pub struct SplitMap {
    bins: usize,
    lo: f64,
    hi: f64,
    /// Per pixel, the range of `entries` that holds its (bin, fraction) pairs.
    starts: Vec<u32>,
    entries: Vec<(u32, f32)>,
    /// Σ fraction × correction per bin.
    norm: Vec<f64>,
}

impl SplitMap {
    /// The split of `detector`'s pixels over `bins` bins of `range` (default: the pixels'
    /// full extent), with `corrections` folded into the normalisation and `mask` (data order,
    /// `true` = excluded) and the geometry's bad pixels left out.
    pub fn for_detector(
        detector: &Detector,
        energy_kev: f64,
        unit: Radial,
        bins: usize,
        range: Option<(f64, f64)>,
        corrections: Corrections,
        mask: Option<&[bool]>,
    ) -> Result<SplitMap, AzimuthalError> {
        if bins == 0 {
            return Err(AzimuthalError::Bins("0 bins".into()));
        }
        let detector_pixels = DetectorPixels::new(detector, energy_kev, unit, corrections, mask)?;
        let corners = detector.pixel_corners();
        // Per pixel: centre, half-width, correction; NaN centre for pixels left out.
        let pixels: Vec<(f64, f64, f64)> = detector_pixels
            .angles
            .iter()
            .zip(&corners)
            .enumerate()
            .map(|(k, (&(value, _, _), corner))| {
                if detector_pixels.excluded[k] {
                    return (f64::NAN, 0.0, 0.0);
                }
                let delta = corner
                    .iter()
                    .map(|&p| (radial(p, unit, detector_pixels.wavelength_nm).0 - value).abs())
                    .fold(0.0, f64::max);
                (value, delta, detector_pixels.weights[k])
            })
            .collect();
        let (lo, hi) = range.unwrap_or_else(|| {
            let used = pixels.iter().filter(|p| !p.0.is_nan());
            let lo = used
                .clone()
                .map(|p| p.0 - p.1)
                .fold(f64::INFINITY, f64::min);
            let hi = used.map(|p| p.0 + p.1).fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        });
        if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
            return Err(AzimuthalError::Bins(format!("range {lo}..{hi}")));
        }
        let width = (hi - lo) / bins as f64;
        let mut starts = Vec::with_capacity(pixels.len() + 1);
        let mut entries: Vec<(u32, f32)> = Vec::with_capacity(pixels.len() * 2);
        let mut norm = vec![0.0f64; bins];
        for &(value, delta, weight) in &pixels {
            starts.push(entries.len() as u32);
            if value.is_nan() || value + delta < lo || value - delta >= hi {
                continue;
            }
            // Fractional bin numbers of the pixel's extent; the parts outside the range are
            // dropped with their share, as pyFAI drops them.
            let (a, b) = ((value - delta - lo) / width, (value + delta - lo) / width);
            let (first, last) = (a.max(0.0) as usize, (b.max(0.0) as usize).min(bins - 1));
            if b - a <= 0.0 || first == last && a >= 0.0 && b < bins as f64 {
                entries.push((first as u32, 1.0));
                norm[first] += weight;
                continue;
            }
            let share = 1.0 / (b - a);
            for (bin, total) in norm.iter_mut().enumerate().take(last + 1).skip(first) {
                let overlap = (b.min(bin as f64 + 1.0) - a.max(bin as f64)).max(0.0);
                if overlap > 0.0 {
                    // The stored fraction, rounded, weighs the signal and the normalisation alike.
                    let fraction = (overlap * share) as f32;
                    entries.push((bin as u32, fraction));
                    *total += fraction as f64 * weight;
                }
            }
        }
        starts.push(entries.len() as u32);
        Ok(SplitMap {
            bins,
            lo,
            hi,
            starts,
            entries,
            norm,
        })
    }

    /// Bin centres in the radial unit.
    pub fn centers(&self) -> Vec<f64> {
        bin_centers(self.lo, self.hi, self.bins)
    }

    /// Σ fraction × correction per bin: the normalisation (pyFAI's `count` with corrections
    /// folded in).
    pub fn norm(&self) -> &[f64] {
        &self.norm
    }

    /// Adds the pixels (data order) into per-bin `sums`.
    ///
    /// # Panics
    ///
    /// If the number of pixels or sums differs from the map's.
    pub fn accumulate_slice<T: Pixel>(&self, pixels: &[T], sums: &mut [f64]) {
        assert_eq!(
            pixels.len() + 1,
            self.starts.len(),
            "pixel count differs from the map's"
        );
        assert_eq!(sums.len(), self.bins);
        for (k, value) in pixels.iter().enumerate() {
            let (from, to) = (self.starts[k] as usize, self.starts[k + 1] as usize);
            let v = value.to_f64();
            for &(bin, fraction) in &self.entries[from..to] {
                sums[bin as usize] += v * fraction as f64;
            }
        }
    }

    /// Σ signal / Σ normalisation per bin; `NaN` where no pixel reaches.
    pub fn integrate_slice<T: Pixel>(&self, pixels: &[T]) -> Vec<f64> {
        let mut sums = vec![0.0; self.bins];
        self.accumulate_slice(pixels, &mut sums);
        sums.iter()
            .zip(&self.norm)
            .map(|(s, n)| if *n > 0.0 { s / n } else { f64::NAN })
            .collect()
    }
}
