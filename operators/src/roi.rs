//! Rectangular regions of interest: sum, mean and maximum, with an optional ADU threshold.

use std::ops::Range;

use ndarray::{s, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::simd::{self, Isa};
use crate::Pixel;

/// A rectangle `rows × columns` of a 2-D frame (half-open ranges, clipped to the frame).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roi {
    /// Row range.
    pub rows: Range<usize>,
    /// Column range.
    pub cols: Range<usize>,
}

impl Roi {
    /// A region from row and column ranges.
    pub fn new(rows: Range<usize>, cols: Range<usize>) -> Roi {
        Roi { rows, cols }
    }

    fn clip(&self, shape: (usize, usize)) -> (Range<usize>, Range<usize>) {
        let r = self.rows.start.min(shape.0)..self.rows.end.min(shape.0);
        let c = self.cols.start.min(shape.1)..self.cols.end.min(shape.1);
        (r, c)
    }
}

/// Sum, mean and maximum over a region.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoiStats {
    /// Sum of the counted pixels.
    pub sum: f64,
    /// Mean over all pixels of the region (pixels below the threshold count as 0).
    pub mean: f64,
    /// Maximum pixel of the region (`NaN` for an empty region).
    pub max: f64,
    /// Number of pixels at or above the threshold (all pixels without one).
    pub count: u64,
}

/// Statistics of `frame` over `roi`; with `threshold`, pixels below it are treated as zero
/// (the usual way to drop the noise floor before summing photons).
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use shotflow_operators::roi::{Roi, roi_stats};
///
/// let frame = array![[1u16, 50, 3], [70, 2, 90]];
/// let all = roi_stats(frame.view(), Roi::new(0..2, 0..3), None);
/// assert_eq!((all.sum, all.max, all.count), (216.0, 90.0, 6));
/// let bright = roi_stats(frame.view(), Roi::new(0..2, 0..3), Some(10.0));
/// assert_eq!((bright.sum, bright.count), (210.0, 3));
/// assert_eq!(bright.mean, 35.0);
/// ```
pub fn roi_stats<T: Pixel>(frame: ArrayView2<'_, T>, roi: Roi, threshold: Option<f64>) -> RoiStats {
    let (rows, cols) = roi.clip(frame.dim());
    let region = frame.slice(s![rows, cols]);
    if region
        .rows()
        .into_iter()
        .all(|row| row.as_slice().and_then(T::as_f32).is_some())
    {
        // Calibrated frames: per row on the CPU's best vector instructions, as the fused
        // calibrate-and-reduce pass does it (the same bits).
        let isa = Isa::detect();
        let t = f32_threshold(threshold);
        let (mut sum, mut count, mut max) = (0.0, 0, f32::NEG_INFINITY);
        for row in region.rows() {
            let values = row.as_slice().and_then(T::as_f32).expect("checked above");
            let (s, c, m) = simd::sum_above_f32(isa, values, t);
            sum += s;
            count += c;
            max = max.max(m);
        }
        return stats(&roi, frame.dim(), sum, count, max as f64);
    }
    if region
        .rows()
        .into_iter()
        .all(|row| row.as_slice().and_then(T::as_u16).is_some())
    {
        // Raw frames: integer sums, exact in any order.
        let isa = Isa::detect();
        let t = match threshold {
            Some(t) if t > 0.0 => t.ceil().min(65_536.0) as u32,
            _ => 0,
        };
        let (mut sum, mut count, mut max) = (0u64, 0, 0u16);
        for row in region.rows() {
            let values = row.as_slice().and_then(T::as_u16).expect("checked above");
            let (s, c, m) = simd::sum_above_u16(isa, values, t);
            sum += s;
            count += c;
            max = max.max(m);
        }
        return stats(&roi, frame.dim(), sum as f64, count, max as f64);
    }
    let n = region.len();
    let mut sum = 0.0;
    let mut max = f64::NEG_INFINITY;
    let mut count = 0u64;
    let threshold = threshold.unwrap_or(f64::NEG_INFINITY);
    for row in region.rows() {
        // Per-row accumulation keeps the inner loop free of the 2-D index arithmetic.
        for &px in row {
            let v = px.to_f64();
            if v >= threshold {
                sum += v;
                count += 1;
            }
            if v > max {
                max = v;
            }
        }
    }
    RoiStats {
        sum,
        mean: if n == 0 { f64::NAN } else { sum / n as f64 },
        max: if n == 0 { f64::NAN } else { max },
        count,
    }
}

/// The `f32` threshold that keeps the same `f32` values as `threshold` in `f64`: the smallest
/// `f32` at or above it (`−∞` without one).
pub(crate) fn f32_threshold(threshold: Option<f64>) -> f32 {
    let Some(t) = threshold else {
        return f32::NEG_INFINITY;
    };
    let rounded = t as f32;
    if (rounded as f64) < t {
        rounded.next_up()
    } else {
        rounded
    }
}

/// The statistics of `roi` of a `shape` frame from its sum, count and maximum.
pub(crate) fn stats(roi: &Roi, shape: (usize, usize), sum: f64, count: u64, max: f64) -> RoiStats {
    let (rows, cols) = roi.clip(shape);
    let n = rows.len() * cols.len();
    RoiStats {
        sum,
        mean: if n == 0 { f64::NAN } else { sum / n as f64 },
        max: if n == 0 { f64::NAN } else { max },
        count,
    }
}

/// Sum of the region along one axis: `axis = 0` gives one value per column (summing rows),
/// `axis = 1` one value per row. Pixels below `threshold` count as 0.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use shotflow_operators::roi::{projection, Roi};
///
/// let frame = array![[1u16, 2, 3], [4, 5, 6]];
/// assert_eq!(projection(frame.view(), Roi::new(0..2, 0..3), 0, None), vec![5.0, 7.0, 9.0]);
/// assert_eq!(projection(frame.view(), Roi::new(0..2, 1..3), 1, Some(3.0)), vec![3.0, 11.0]);
/// ```
pub fn projection<T: Pixel>(
    frame: ArrayView2<'_, T>,
    roi: Roi,
    axis: usize,
    threshold: Option<f64>,
) -> Vec<f64> {
    let (rows, cols) = roi.clip(frame.dim());
    let region = frame.slice(s![rows, cols]);
    let threshold = threshold.unwrap_or(f64::NEG_INFINITY);
    let keep = |v: f64| if v >= threshold { v } else { 0.0 };
    if axis == 0 {
        let mut out = vec![0.0; region.ncols()];
        for row in region.rows() {
            out.iter_mut()
                .zip(row)
                .for_each(|(o, px)| *o += keep(px.to_f64()));
        }
        out
    } else {
        region
            .rows()
            .into_iter()
            .map(|row| row.iter().map(|px| keep(px.to_f64())).sum())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn matches_a_direct_reference() {
        let frame = Array2::<u16>::from_shape_fn((37, 23), |(y, x)| {
            ((y * 7919 + x * 104_729) % 251) as u16
        });
        let roi = Roi::new(5..30, 2..19);
        let mut sum = 0.0;
        let mut max = 0.0f64;
        let mut count = 0;
        for y in 5..30 {
            for x in 2..19 {
                let v = frame[[y, x]] as f64;
                max = max.max(v);
                if v >= 100.0 {
                    sum += v;
                    count += 1;
                }
            }
        }
        let stats = roi_stats(frame.view(), roi, Some(100.0));
        assert_eq!(stats.sum, sum);
        assert_eq!(stats.count, count);
        assert_eq!(stats.max, max);
        assert_eq!(stats.mean, sum / (25.0 * 17.0));
    }

    #[test]
    fn regions_are_clipped_to_the_frame() {
        let frame = Array2::<f32>::ones((4, 4));
        assert_eq!(
            roi_stats(frame.view(), Roi::new(2..10, 3..10), None).sum,
            2.0
        );
        assert!(roi_stats(frame.view(), Roi::new(5..10, 0..1), None)
            .max
            .is_nan());
    }
}
