//! Calibration of raw frames: pedestal subtraction, gain, common-mode correction and a
//! bad-pixel mask, in one pass into an `f32` frame.

use std::ops::Range;

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::fused::{reduce, Reduced, Reductions};
use crate::simd::Isa;
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
    /// By bisection of `[−max_adu, max_adu)` down to intervals of `within` (in the calibrated
    /// unit): counts of values below a point, no sorting or selection of floats, on the CPU's
    /// best vector instructions; within `within / 2` of the exact median. A median below the
    /// window is taken exactly. See [`median_bisection`].
    Bisection {
        /// Width of the last interval.
        within: f32,
    },
}

crate::dispatched! {
    /// `out = (raw − pedestal) × gain`, 0 for bad pixels, element by element.
    fn calibrate_part[T: Pixel](
        raw: &[T],
        pedestal: &[f32],
        gain: &[f32],
        bad: &[bool],
        out: &mut [f32],
    ) -> () => calibrate_kernel;
}

#[inline(always)]
fn calibrate_kernel<T: Pixel>(
    raw: &[T],
    pedestal: &[f32],
    gain: &[f32],
    bad: &[bool],
    out: &mut [f32],
) {
    let n = out.len();
    let (raw, pedestal, gain, bad) = (&raw[..n], &pedestal[..n], &gain[..n], &bad[..n]);
    for k in 0..n {
        let value = (raw[k].to_f64() as f32 - pedestal[k]) * gain[k];
        out[k] = if bad[k] { 0.0 } else { value };
    }
}

crate::dispatched! {
    /// Good pixels of `values` below `m`.
    fn count_below(values: &[f32], bad: &[bool], m: f32) -> u32 => count_below_kernel;
}

#[inline(always)]
fn count_below_kernel(values: &[f32], bad: &[bool], m: f32) -> u32 {
    let bad = &bad[..values.len()];
    values
        .iter()
        .zip(bad)
        .map(|(&v, &b)| ((v < m) & !b) as u32)
        .sum()
}

crate::dispatched! {
    /// Subtracts `baseline` from the good pixels.
    fn subtract(values: &mut [f32], bad: &[bool], baseline: f32) -> () => subtract_kernel;
}

#[inline(always)]
fn subtract_kernel(values: &mut [f32], bad: &[bool], baseline: f32) {
    let bad = &bad[..values.len()];
    for (v, &b) in values.iter_mut().zip(bad) {
        *v = if b { *v } else { *v - baseline };
    }
}

/// The median of the good values below `hi` of a block given as row segments
/// (`(values, bad)`), found by bisection of `[−hi, hi)` down to intervals of `within`: only
/// counts of values below a point, no sorting or selection of floats. Within `within / 2` of
/// the exact median (the mean of the two middle values for an even count). `None` when the
/// block has no such values or its median lies below `−hi` (left to the exact median).
///
/// ```
/// use shotflow_operators::calibration::median_bisection;
/// use shotflow_operators::simd::Isa;
///
/// let values = [-3.2f32, 0.4, 1.0, 1.6, 2.2, 7.5, 40.0];
/// let bad = [false, false, false, false, false, false, false];
/// let m = median_bisection(Isa::detect(), &[(&values, &bad)], 10.0, 0.1).unwrap();
/// assert!((m - 1.3).abs() <= 0.05); // exact, of the six below 10: (1.0 + 1.6) / 2
/// ```
pub fn median_bisection(
    isa: Isa,
    segments: &[(&[f32], &[bool])],
    hi: f32,
    within: f32,
) -> Option<f32> {
    bisect(
        |m| {
            segments
                .iter()
                .map(|(values, bad)| count_below(isa, values, bad, m) as usize)
                .sum()
        },
        hi,
        within,
    )
}

/// [`median_bisection`] of the values that `below(m)` counts below `m`.
fn bisect(below: impl Fn(f32) -> usize, hi: f32, within: f32) -> Option<f32> {
    let n = below(hi);
    if n == 0 || within.is_nan() || within <= 0.0 || !hi.is_finite() {
        return None;
    }
    // The k-th smallest good value lies in [lo, up) while below(lo) ≤ k < below(up).
    let order = |k: usize, mut lo: f32| -> Option<(f32, f32)> {
        let mut up = hi;
        if below(lo) > k {
            return None;
        }
        while up - lo > within {
            let mid = lo + (up - lo) / 2.0;
            if below(mid) <= k {
                lo = mid;
            } else {
                up = mid;
            }
        }
        Some((lo, up))
    };
    let middle = |(lo, up): (f32, f32)| lo + (up - lo) / 2.0;
    if n % 2 == 1 {
        return order(n / 2, -hi).map(middle);
    }
    let lower = order(n / 2 - 1, -hi)?;
    // The upper middle value is most often in the same last interval; otherwise above it.
    let upper = if below(lower.1) > n / 2 {
        lower
    } else {
        order(n / 2, lower.1)?
    };
    Some((middle(lower) + middle(upper)) / 2.0)
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
        let mut out = Array2::<f32>::zeros(raw.dim());
        let rows = raw.nrows();
        let pixels = out
            .as_slice_mut()
            .expect("a new array is in row-major order");
        self.apply_rows(Isa::detect(), raw, 0..rows, pixels);
        out
    }

    /// Calibrates `raw` and reduces it in one pass ([`crate::fused`]): the calibrated frame is
    /// only ever a block of rows in `scratch`. The same bits as [`Calibration::apply`] followed
    /// by [`crate::fused::reduce_frame`].
    ///
    /// ```
    /// use ndarray::Array2;
    /// use shotflow_operators::calibration::{Calibration, CommonMode};
    /// use shotflow_operators::fused::{reduce_frame, Reductions};
    /// use shotflow_operators::simd::Isa;
    ///
    /// let mut cal = Calibration::identity((64, 32));
    /// cal.pedestal.fill(100.0);
    /// cal.common_mode = CommonMode::Row { max_adu: 20.0 };
    /// let raw = Array2::from_shape_fn((64, 32), |(r, c)| 100 + ((r * 7 + c * 3) % 40) as u16);
    /// let reductions = Reductions { adu_per_photon: Some(12.0), ..Reductions::default() };
    /// let fused = cal.calibrate_reduce(Isa::detect(), raw.view(), &reductions, &mut Vec::new());
    /// let unfused = reduce_frame(Isa::detect(), cal.apply(raw.view()).view(), &reductions);
    /// assert_eq!(fused, unfused);
    /// ```
    pub fn calibrate_reduce<T: Pixel>(
        &self,
        isa: Isa,
        raw: ArrayView2<'_, T>,
        reductions: &Reductions<'_>,
        scratch: &mut Vec<f32>,
    ) -> Reduced {
        let cols = raw.ncols();
        let align = match self.common_mode {
            CommonMode::Bank { rows, .. } => rows,
            _ => 1,
        };
        reduce(isa, raw.dim(), align, reductions, scratch, |range, out| {
            self.apply_rows(
                isa,
                raw,
                range.start / cols.max(1)..range.end / cols.max(1),
                out,
            )
        })
    }

    /// Calibrates rows `rows` of `raw` into `out` (those rows, row-major) with the kernels
    /// built for `isa`: what [`Calibration::apply`] does for the whole frame, and what the
    /// fused calibrate-and-reduce pass ([`crate::fused`]) does block by block. With common mode
    /// per bank, `rows` start on a bank's first row and end on a bank's last (or the frame's).
    ///
    /// ```
    /// use ndarray::array;
    /// use shotflow_operators::calibration::{Calibration, CommonMode};
    /// use shotflow_operators::simd::Isa;
    ///
    /// let mut cal = Calibration::identity((2, 3));
    /// cal.pedestal.fill(100.0);
    /// cal.common_mode = CommonMode::Row { max_adu: 10.0 };
    /// let raw = array![[104u16, 106, 900], [102, 102, 160]];
    /// let mut second = vec![0.0; 3];
    /// cal.apply_rows(Isa::detect(), raw.view(), 1..2, &mut second);
    /// assert_eq!(second, cal.apply(raw.view()).row(1).to_vec());
    /// ```
    ///
    /// # Panics
    ///
    /// If the frame and the constants differ in shape, or `out` is not `rows` rows long.
    pub fn apply_rows<T: Pixel>(
        &self,
        isa: Isa,
        raw: ArrayView2<'_, T>,
        rows: Range<usize>,
        out: &mut [f32],
    ) {
        assert_eq!(
            raw.dim(),
            self.pedestal.dim(),
            "frame and constants differ in shape"
        );
        let cols = raw.ncols();
        assert_eq!(out.len(), rows.len() * cols, "output of the wrong size");
        let standard = |a: ArrayView2<'_, f32>| a.is_standard_layout();
        let owned;
        let (pedestal, gain, bad) = if standard(self.pedestal.view())
            && standard(self.gain.view())
            && self.bad.is_standard_layout()
        {
            (self.pedestal.view(), self.gain.view(), self.bad.view())
        } else {
            owned = (
                self.pedestal.as_standard_layout().into_owned(),
                self.gain.as_standard_layout().into_owned(),
                self.bad.as_standard_layout().into_owned(),
            );
            (owned.0.view(), owned.1.view(), owned.2.view())
        };
        let row_of = |r: usize| r * cols..(r + 1) * cols;
        let (p, g, b) = (
            pedestal.as_slice().expect("standard layout"),
            gain.as_slice().expect("standard layout"),
            bad.as_slice().expect("standard layout"),
        );
        let mut copy = Vec::new();
        for (i, r) in rows.clone().enumerate() {
            let raw_row = raw.row(r);
            let values: &[T] = match raw_row.as_slice() {
                Some(v) => v,
                None => {
                    copy.clear();
                    copy.extend(raw_row.iter().copied());
                    &copy
                }
            };
            let o = &mut out[i * cols..(i + 1) * cols];
            calibrate_part(isa, values, &p[row_of(r)], &g[row_of(r)], &b[row_of(r)], o);
        }
        // Blocks that share a baseline, as (first row, rows, first column, columns).
        let (max_adu, bank_rows, bank_cols) = match self.common_mode {
            CommonMode::None => return,
            CommonMode::Row { max_adu } => (max_adu, 1, cols),
            CommonMode::Bank {
                rows,
                cols: width,
                max_adu,
            } => (max_adu, rows.max(1), width.max(1)),
        };
        let mut scratch = Vec::new();
        for r0 in rows.clone().step_by(bank_rows) {
            let r1 = (r0 + bank_rows).min(rows.end);
            for c0 in (0..cols).step_by(bank_cols) {
                let c1 = (c0 + bank_cols).min(cols);
                let local = |r: usize| (r - rows.start) * cols + c0..(r - rows.start) * cols + c1;
                let global = |r: usize| r * cols + c0..r * cols + c1;
                // The block's rows are counted where they lie: no list of them per block.
                let below = |m: f32| -> usize {
                    (r0..r1)
                        .map(|r| count_below(isa, &out[local(r)], &b[global(r)], m) as usize)
                        .sum()
                };
                let estimate = match self.median {
                    Median::Bisection { within } => bisect(below, max_adu, within),
                    Median::Exact => None,
                };
                let baseline = estimate.or_else(|| {
                    scratch.clear();
                    for r in r0..r1 {
                        scratch.extend(
                            out[local(r)]
                                .iter()
                                .zip(&b[global(r)])
                                .filter(|(v, b)| !**b && **v < max_adu)
                                .map(|(v, _)| *v),
                        );
                    }
                    median(&mut scratch)
                });
                if let Some(baseline) = baseline {
                    for r in r0..r1 {
                        subtract(isa, &mut out[local(r)], &b[global(r)], baseline);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bisection median is within half its last interval of the exact median, on noisy
    /// blocks with photons and negative tails, for several intervals, on every instruction
    /// set (the same value on each); bad pixels are left out; a median below the window is
    /// left to the exact path.
    #[test]
    fn bisection_median_is_within_half_an_interval_of_the_exact_one() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        let mut worst = 0f32;
        let mut compared = 0;
        for within in [0.25f32, 1.0, 2.0] {
            for n in [1usize, 2, 3, 10, 64, 128, 1024] {
                for _ in 0..50 {
                    let offset = rng.gen_range(-20.0..20.0f32);
                    let values: Vec<f32> = (0..n)
                        .map(|_| {
                            let noise: f32 = (0..4).map(|_| rng.gen_range(-2.0..2.0f32)).sum();
                            offset + noise + if rng.gen::<f32>() < 0.05 { 70.0 } else { 0.0 }
                        })
                        .collect();
                    let bad: Vec<bool> = (0..n).map(|_| rng.gen::<f32>() < 0.03).collect();
                    let mut exact: Vec<f32> = values
                        .iter()
                        .zip(&bad)
                        .filter(|(v, b)| !**b && **v < 50.0)
                        .map(|(v, _)| *v)
                        .collect();
                    let e = median(&mut exact);
                    let estimates: Vec<Option<f32>> = Isa::available()
                        .into_iter()
                        .map(|isa| median_bisection(isa, &[(&values, &bad)], 50.0, within))
                        .collect();
                    assert!(estimates.iter().all(|m| *m == estimates[0]));
                    let (Some(e), Some(m)) = (e, estimates[0]) else {
                        assert!(e.is_none() || e.unwrap() < -50.0, "{e:?}");
                        continue;
                    };
                    worst = worst.max((e - m).abs() / within);
                    assert!(
                        (e - m).abs() <= within / 2.0,
                        "interval {within}, {n} values: exact {e}, bisection {m}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 900, "{compared}");
        eprintln!(
            "{compared} medians compared on {} instruction sets, worst {worst:.3} intervals from \
             the exact one",
            Isa::available().len()
        );
        assert_eq!(
            median_bisection(
                Isa::detect(),
                &[(&[-90.0, -80.0, 1.0], &[false; 3])],
                50.0,
                1.0
            ),
            None
        );
    }

    /// The vectorised pass with common mode gives, on every instruction set, the bits of a
    /// plain per-pixel loop with the exact median.
    #[test]
    fn every_instruction_set_calibrates_like_a_plain_loop() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(11);
        let shape = (24, 40);
        let mut cal = Calibration::identity(shape);
        cal.pedestal = Array2::from_shape_fn(shape, |_| rng.gen_range(90.0..110.0));
        cal.gain = Array2::from_shape_fn(shape, |_| rng.gen_range(0.8..1.2));
        cal.bad = Array2::from_shape_fn(shape, |_| rng.gen::<f32>() < 0.05);
        cal.common_mode = CommonMode::Bank {
            rows: 8,
            cols: 10,
            max_adu: 30.0,
        };
        let raw = Array2::from_shape_fn(shape, |(i, j)| {
            (100 + (i / 8) * 5 + (j / 10) * 2 + rng.gen_range(0..6)) as u16
        });
        // The plain loop: calibrate, then per bank the exact median of the good pixels below
        // max_adu, subtracted from the good pixels.
        let mut plain = Array2::from_shape_fn(shape, |(i, j)| {
            if cal.bad[[i, j]] {
                0.0
            } else {
                (raw[[i, j]] as f32 - cal.pedestal[[i, j]]) * cal.gain[[i, j]]
            }
        });
        for bi in 0..3 {
            for bj in 0..4 {
                let cells: Vec<(usize, usize)> = (bi * 8..bi * 8 + 8)
                    .flat_map(|i| (bj * 10..bj * 10 + 10).map(move |j| (i, j)))
                    .filter(|&(i, j)| !cal.bad[[i, j]] && plain[[i, j]] < 30.0)
                    .collect();
                let mut values: Vec<f32> = cells.iter().map(|&c| plain[c]).collect();
                let m = median(&mut values).unwrap();
                for i in bi * 8..bi * 8 + 8 {
                    for j in bj * 10..bj * 10 + 10 {
                        if !cal.bad[[i, j]] {
                            plain[[i, j]] -= m;
                        }
                    }
                }
            }
        }
        for isa in Isa::available() {
            let mut out = vec![0.0; shape.0 * shape.1];
            cal.apply_rows(isa, raw.view(), 0..shape.0, &mut out);
            assert_eq!(out, plain.as_slice().unwrap(), "{}", isa.name());
            // Blocks of whole banks give the same.
            let mut half = vec![0.0; 16 * shape.1];
            cal.apply_rows(isa, raw.view(), 8..24, &mut half);
            assert_eq!(
                half,
                plain.as_slice().unwrap()[8 * shape.1..],
                "{}",
                isa.name()
            );
        }
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
