//! Calibration of raw frames: pedestal subtraction, gain, common-mode correction and a
//! bad-pixel mask, in one pass into an `f32` frame.

use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::Pixel;

/// How to remove the common mode (a baseline shared by pixels read out together).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommonMode {
    /// No correction.
    None,
    /// Subtract, per row, the median of the row's unmasked pixels below `max_adu` (pixels
    /// holding photons would bias it).
    Row {
        /// Only pixels below this (after pedestal and gain) estimate the baseline.
        max_adu: f32,
    },
    /// Subtract, per rectangular bank of `rows × cols` pixels (an ASIC), the median of its
    /// unmasked pixels below `max_adu`.
    Bank {
        /// Bank height.
        rows: usize,
        /// Bank width.
        cols: usize,
        /// Only pixels below this estimate the baseline.
        max_adu: f32,
    },
}

/// Per-pixel constants of a detector module.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// Dark level per pixel, ADU.
    pub pedestal: Array2<f32>,
    /// Gain per pixel: calibrated = (raw − pedestal) × gain.
    pub gain: Array2<f32>,
    /// Bad pixels (true = bad): set to 0 and left out of the common mode.
    pub bad: Array2<bool>,
    /// Common-mode correction.
    pub common_mode: CommonMode,
    /// How the common mode's median is found.
    pub median: Median,
}

/// How a common-mode baseline (a median) is found.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Median {
    /// The exact median (a selection over the block's values).
    Exact,
    /// From a histogram of the values in bins of `bin` (in the calibrated unit) between
    /// `−max_adu` and `max_adu`: no sorting or selection of floats, at most `bin` from the exact
    /// median. Values below the window count in the ranks; a median that falls outside the
    /// window is taken exactly.
    Histogram {
        /// Bin width.
        bin: f32,
    },
}

/// The median of `values` (all below `hi`) estimated from a histogram of bins of `bin` from
/// `−hi` to `hi`, interpolated within the median's bin: within `bin` of the exact median
/// (the mean of the two middle values for an even count). `counts` is scratch space.
///
/// ```
/// use shotflow_operators::calibration::median_histogram;
///
/// let values = [-3.2f32, 0.4, 1.0, 1.6, 2.2, 7.5];
/// let m = median_histogram(&values, 10.0, 0.5, &mut Vec::new()).unwrap();
/// assert!((m - 1.3).abs() <= 0.5); // exact: (1.0 + 1.6) / 2
/// ```
pub fn median_histogram(values: &[f32], hi: f32, bin: f32, counts: &mut Vec<u32>) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let lo = -hi;
    let bins = (((hi - lo) / bin).ceil() as usize).max(1);
    counts.clear();
    counts.resize(bins, 0);
    let mut below = 0u32;
    for v in values {
        let k = (v - lo) / bin;
        if k < 0.0 {
            below += 1;
        } else {
            counts[(k as usize).min(bins - 1)] += 1;
        }
    }
    // The k-th smallest value (0-based), spread evenly over its bin: in the same bin as the
    // true one, so within `bin` of it. `None` below the window.
    let order = |k: usize| -> Option<f32> {
        if k < below as usize {
            return None;
        }
        let mut seen = below as usize;
        for (i, c) in counts.iter().enumerate() {
            let c = *c as usize;
            if seen + c > k {
                let within = ((k - seen) as f64 + 0.5) / c as f64;
                return Some(lo + ((i as f64 + within) as f32) * bin);
            }
            seen += c;
        }
        None
    };
    let n = values.len();
    if n % 2 == 1 {
        order(n / 2)
    } else {
        Some((order(n / 2 - 1)? + order(n / 2)?) / 2.0)
    }
}

fn median(values: &mut [f32]) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let (_, m, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    let upper = *m;
    if values.len() % 2 == 1 {
        Some(upper)
    } else {
        let lower = values[..mid]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        Some((lower + upper) / 2.0)
    }
}

impl Calibration {
    /// Constants for a `shape` module: pedestal 0, gain 1, no bad pixels, no common mode.
    pub fn identity(shape: (usize, usize)) -> Calibration {
        Calibration {
            pedestal: Array2::zeros(shape),
            gain: Array2::ones(shape),
            bad: Array2::from_elem(shape, false),
            common_mode: CommonMode::None,
            median: Median::Exact,
        }
    }

    /// The calibrated frame.
    ///
    /// # Examples
    ///
    /// ```
    /// use ndarray::array;
    /// use shotflow_operators::calibration::{Calibration, CommonMode};
    ///
    /// let mut cal = Calibration::identity((2, 3));
    /// cal.pedestal.fill(100.0);
    /// cal.gain.fill(0.5);
    /// cal.bad[[0, 2]] = true;
    /// cal.common_mode = CommonMode::Row { max_adu: 10.0 };
    /// let raw = array![[104u16, 106, 900], [102, 102, 160]];
    /// let out = cal.apply(raw.view());
    /// // row 0: (2, 3) → median 2.5 → (-0.5, 0.5), bad pixel 0
    /// assert_eq!(out.row(0).to_vec(), vec![-0.5, 0.5, 0.0]);
    /// // row 1: (1, 1, 30) → baseline from pixels below 10 ADU: 1 → (0, 0, 29)
    /// assert_eq!(out.row(1).to_vec(), vec![0.0, 0.0, 29.0]);
    /// ```
    pub fn apply<T: Pixel>(&self, raw: ArrayView2<'_, T>) -> Array2<f32> {
        assert_eq!(
            raw.dim(),
            self.pedestal.dim(),
            "frame and constants differ in shape"
        );
        let mut out = Array2::<f32>::zeros(raw.dim());
        ndarray::Zip::from(&mut out)
            .and(&raw)
            .and(&self.pedestal)
            .and(&self.gain)
            .and(&self.bad)
            .for_each(|o, r, p, g, b| *o = if *b { 0.0 } else { (r.to_f64() as f32 - p) * g });
        let mut scratch = Vec::new();
        let mut counts = Vec::new();
        let method = self.median;
        let mut correct =
            |block: ndarray::ArrayViewMut2<'_, f32>, bad: ArrayView2<'_, bool>, max_adu: f32| {
                scratch.clear();
                scratch.extend(
                    block
                        .iter()
                        .zip(bad.iter())
                        .filter(|(v, b)| !**b && **v < max_adu)
                        .map(|(v, _)| *v),
                );
                let estimate = match method {
                    Median::Histogram { bin } if max_adu.is_finite() && bin > 0.0 => {
                        median_histogram(&scratch, max_adu, bin, &mut counts)
                    }
                    _ => None,
                };
                if let Some(baseline) = estimate.or_else(|| median(&mut scratch)) {
                    let mut block = block;
                    ndarray::Zip::from(&mut block).and(&bad).for_each(|v, b| {
                        if !*b {
                            *v -= baseline
                        }
                    });
                }
            };
        match self.common_mode {
            CommonMode::None => {}
            CommonMode::Row { max_adu } => {
                for (row, bad) in out.axis_iter_mut(Axis(0)).zip(self.bad.axis_iter(Axis(0))) {
                    correct(row.insert_axis(Axis(0)), bad.insert_axis(Axis(0)), max_adu);
                }
            }
            CommonMode::Bank {
                rows,
                cols,
                max_adu,
            } => {
                let (h, w) = out.dim();
                for r0 in (0..h).step_by(rows.max(1)) {
                    for c0 in (0..w).step_by(cols.max(1)) {
                        let s = ndarray::s![r0..(r0 + rows).min(h), c0..(c0 + cols).min(w)];
                        correct(out.slice_mut(s), self.bad.slice(s), max_adu);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The histogram median is within one bin of the exact median, on noisy rows with photons
    /// and negative tails, for several bin widths; and exactly the exact path's where it
    /// falls back.
    #[test]
    fn histogram_median_is_within_a_bin_of_the_exact_one() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        let mut counts = Vec::new();
        let mut worst = 0f32;
        let mut compared = 0;
        for bin in [0.25f32, 1.0, 2.0] {
            for n in [1usize, 2, 3, 10, 64, 128, 1024] {
                for _ in 0..50 {
                    let offset = rng.gen_range(-20.0..20.0f32);
                    let values: Vec<f32> = (0..n)
                        .map(|_| {
                            let noise: f32 = (0..4).map(|_| rng.gen_range(-2.0..2.0f32)).sum();
                            offset + noise + if rng.gen::<f32>() < 0.05 { 35.0 } else { 0.0 }
                        })
                        .filter(|v| *v < 50.0)
                        .collect();
                    let mut exact = values.clone();
                    let (Some(e), Some(h)) = (
                        median(&mut exact),
                        median_histogram(&values, 50.0, bin, &mut counts),
                    ) else {
                        continue;
                    };
                    worst = worst.max((e - h).abs() / bin);
                    assert!(
                        (e - h).abs() <= bin,
                        "bin {bin}, {n} values: exact {e}, histogram {h}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 900, "{compared}");
        eprintln!("{compared} medians compared, worst {worst:.3} bins from the exact one");
        // A median below the window is left to the exact path.
        assert_eq!(
            median_histogram(&[-90.0, -80.0, 1.0], 50.0, 1.0, &mut counts),
            None
        );
    }

    #[test]
    fn bank_common_mode_matches_a_direct_reference() {
        let shape = (8, 12);
        let raw = Array2::from_shape_fn(shape, |(i, j)| {
            (100 + (i / 4) * 10 + (j / 6) * 3 + (i * j) % 3) as u16
        });
        let mut cal = Calibration::identity(shape);
        cal.pedestal.fill(100.0);
        cal.common_mode = CommonMode::Bank {
            rows: 4,
            cols: 6,
            max_adu: 1e9,
        };
        let out = cal.apply(raw.view());
        for (bi, bj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let mut values: Vec<f32> = Vec::new();
            for i in bi * 4..bi * 4 + 4 {
                for j in bj * 6..bj * 6 + 6 {
                    values.push(raw[[i, j]] as f32 - 100.0);
                }
            }
            let mut sorted = values.clone();
            sorted.sort_by(f32::total_cmp);
            let med = (sorted[11] + sorted[12]) / 2.0;
            for i in bi * 4..bi * 4 + 4 {
                for j in bj * 6..bj * 6 + 6 {
                    assert_eq!(out[[i, j]], raw[[i, j]] as f32 - 100.0 - med);
                }
            }
        }
    }
}
