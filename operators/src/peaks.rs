//! Hit finding with a peakfinder8-style peak finder (Cheetah / OnDA / psocake): a pixel is a
//! peak candidate when it stands `min_snr` standard deviations above the background of its
//! resolution ring and above `adc_threshold`; touching candidates form one peak; a peak is kept
//! if its pixel count is within limits and its background-subtracted intensity over the
//! local background noise is at least `min_snr`. A frame is a hit with at least `min_peaks`
//! peaks.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::Pixel;

/// Peak-finder parameters (peakfinder8's names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakFinder {
    /// Pixels at or below this ADU are never peak pixels.
    pub adc_threshold: f64,
    /// Minimum signal-to-noise, for pixels against their ring and for whole peaks.
    pub min_snr: f64,
    /// Smallest peak, pixels.
    pub min_pix_count: usize,
    /// Largest peak, pixels.
    pub max_pix_count: usize,
    /// Half-width of the square around a peak whose non-peak pixels give its local background.
    pub local_bg_radius: usize,
    /// Smallest radius (pixels from the beam centre) searched.
    pub min_res: f64,
    /// Largest radius searched.
    pub max_res: f64,
    /// Beam centre (row, column), pixels.
    pub center: (f64, f64),
    /// Peaks needed for a hit.
    pub min_peaks: usize,
}

/// One peak.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// Intensity-weighted row (background subtracted).
    pub row: f64,
    /// Intensity-weighted column.
    pub col: f64,
    /// Background-subtracted intensity, ADU.
    pub intensity: f64,
    /// Pixels.
    pub pixels: usize,
    /// Maximum pixel value above background.
    pub max: f64,
    /// Intensity over the local background noise.
    pub snr: f64,
}

/// Peaks of one frame and the hit decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peaks {
    /// The peaks, in row-major order of their first pixel.
    pub peaks: Vec<Peak>,
    /// At least `min_peaks` peaks.
    pub hit: bool,
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

impl PeakFinder {
    /// Finds the peaks of `frame`; `mask[i, j] == true` excludes a pixel.
    ///
    /// # Examples
    ///
    /// ```
    /// use ndarray::Array2;
    /// use shotflow_operators::peaks::PeakFinder;
    ///
    /// let mut frame = Array2::from_shape_fn((64, 64), |(i, j)| 10.0 + ((i * 7 + j * 3) % 5) as f32);
    /// frame[[20, 30]] += 300.0;
    /// frame[[20, 31]] += 150.0;
    /// let finder = PeakFinder { adc_threshold: 50.0, min_snr: 6.0, min_pix_count: 1, max_pix_count: 20,
    ///     local_bg_radius: 3, min_res: 0.0, max_res: 100.0, center: (32.0, 32.0), min_peaks: 1 };
    /// let found = finder.find(frame.view(), None);
    /// assert!(found.hit);
    /// assert_eq!(found.peaks.len(), 1);
    /// assert_eq!(found.peaks[0].pixels, 2);
    /// assert!((found.peaks[0].col - 30.33).abs() < 0.01);
    /// ```
    pub fn find<T: Pixel>(
        &self,
        frame: ArrayView2<'_, T>,
        mask: Option<ArrayView2<'_, bool>>,
    ) -> Peaks {
        let (rows, cols) = frame.dim();
        let value = |i: usize, j: usize| frame[[i, j]].to_f64();
        let masked = |i: usize, j: usize| mask.as_ref().is_some_and(|m| m[[i, j]]);
        let radius = |i: usize, j: usize| {
            ((i as f64 - self.center.0).powi(2) + (j as f64 - self.center.1).powi(2)).sqrt()
        };
        // Ring statistics: iteratively drop pixels above mean + snr·sd (the peaks themselves).
        let rings = radius(0, 0)
            .max(radius(rows - 1, 0))
            .max(radius(0, cols - 1))
            .max(radius(rows - 1, cols - 1)) as usize
            + 1;
        let mut members: Vec<Vec<f64>> = vec![Vec::new(); rings];
        for i in 0..rows {
            for j in 0..cols {
                if !masked(i, j) {
                    members[radius(i, j) as usize].push(value(i, j));
                }
            }
        }
        let thresholds: Vec<f64> = members
            .iter_mut()
            .map(|ring| {
                let mut cut = f64::INFINITY;
                for _ in 0..5 {
                    ring.retain(|v| *v < cut);
                    let (mean, sd) = mean_sd(ring);
                    cut = mean + self.min_snr * sd;
                }
                cut.max(self.adc_threshold)
            })
            .collect();
        let candidate = |i: usize, j: usize| {
            let r = radius(i, j);
            !masked(i, j)
                && r >= self.min_res
                && r <= self.max_res
                && value(i, j) > thresholds[r as usize]
        };
        // 8-connected flood fill of candidates.
        let mut seen = vec![false; rows * cols];
        let mut peaks = Vec::new();
        let mut stack = Vec::new();
        for i in 0..rows {
            for j in 0..cols {
                if seen[i * cols + j] || !candidate(i, j) {
                    continue;
                }
                let mut pixels = Vec::new();
                seen[i * cols + j] = true;
                stack.push((i, j));
                while let Some((a, b)) = stack.pop() {
                    pixels.push((a, b));
                    for da in -1i64..=1 {
                        for db in -1i64..=1 {
                            let (x, y) = (a as i64 + da, b as i64 + db);
                            if x < 0 || y < 0 || x >= rows as i64 || y >= cols as i64 {
                                continue;
                            }
                            let (x, y) = (x as usize, y as usize);
                            if !seen[x * cols + y] && candidate(x, y) {
                                seen[x * cols + y] = true;
                                stack.push((x, y));
                            }
                        }
                    }
                }
                if pixels.len() < self.min_pix_count || pixels.len() > self.max_pix_count {
                    continue;
                }
                // Local background: non-candidate, unmasked pixels in the square around the peak.
                let (r0, r1) = pixels
                    .iter()
                    .fold((usize::MAX, 0), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
                let (c0, c1) = pixels
                    .iter()
                    .fold((usize::MAX, 0), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
                let rr = self.local_bg_radius;
                let mut background = Vec::new();
                for x in r0.saturating_sub(rr)..(r1 + rr + 1).min(rows) {
                    for y in c0.saturating_sub(rr)..(c1 + rr + 1).min(cols) {
                        if !masked(x, y) && !candidate(x, y) {
                            background.push(value(x, y));
                        }
                    }
                }
                let (bg, noise) = mean_sd(&background);
                let mut total = 0.0;
                let (mut wr, mut wc, mut max) = (0.0, 0.0, f64::NEG_INFINITY);
                for &(x, y) in &pixels {
                    let v = value(x, y) - bg;
                    total += v;
                    wr += v * x as f64;
                    wc += v * y as f64;
                    max = max.max(v);
                }
                let snr = if noise > 0.0 {
                    total / (noise * (pixels.len() as f64).sqrt())
                } else {
                    f64::INFINITY
                };
                if snr < self.min_snr {
                    continue;
                }
                peaks.push(Peak {
                    row: wr / total,
                    col: wc / total,
                    intensity: total,
                    pixels: pixels.len(),
                    max,
                    snr,
                });
            }
        }
        Peaks {
            hit: peaks.len() >= self.min_peaks,
            peaks,
        }
    }
}
