//! Calibrate and reduce in one pass: a frame is calibrated a block of rows at a time into a
//! small buffer that stays in the L1 cache, and each block is reduced (photons, regions of
//! interest, azimuthal integration) before the next is calibrated. The calibrated `f32` frame
//! is never written to memory when only its reductions are kept.
//!
//! [`reduce_frame`] runs the same reductions over a frame that was calibrated first (the
//! unfused path), in the same blocks and the same order, so both give the same bits.
//!
//! ```
//! use ndarray::Array2;
//! use shotflow_operators::fused::{reduce, reduce_frame, Reductions};
//! use shotflow_operators::roi::Roi;
//! use shotflow_operators::simd::Isa;
//!
//! // A toy calibration: raw − 100.
//! let raw = Array2::<u16>::from_shape_fn((64, 32), |(y, x)| 100 + ((y * 31 + x * 7) % 50) as u16);
//! let reductions = Reductions {
//!     adu_per_photon: Some(10.0),
//!     rois: vec![(Roi::new(8..40, 0..16), Some(5.0))],
//!     azimuthal: None,
//!     azimuthal_at: 0,
//! };
//! let pixels = raw.as_slice().unwrap();
//! let fused = reduce(Isa::detect(), raw.dim(), 1, &reductions, &mut Vec::new(), |range, out| {
//!     for (o, &v) in out.iter_mut().zip(&pixels[range]) {
//!         *o = v as f32 - 100.0;
//!     }
//! });
//! let calibrated = raw.mapv(|v| v as f32 - 100.0);
//! assert_eq!(fused, reduce_frame(Isa::detect(), calibrated.view(), &reductions));
//! ```

use std::ops::Range;

use ndarray::ArrayView2;

use crate::azimuthal::{Accumulator, AzimuthalMap};
use crate::roi::{Roi, RoiStats};
use crate::simd::{self, Isa};

/// Pixels per block: 16 KiB of `f32`, well inside the L1 data cache beside what the
/// calibration reads.
const BLOCK_PIXELS: usize = 4096;

/// What a calibrated frame is reduced to.
#[derive(Clone, Debug, Default)]
pub struct Reductions<'a> {
    /// Count photons of this size (in the calibrated unit), rounding at half a photon.
    pub adu_per_photon: Option<f64>,
    /// Regions of interest, each with an optional threshold below which pixels count as 0.
    pub rois: Vec<(Roi, Option<f64>)>,
    /// Integrate azimuthally through this map (its sums; [`AzimuthalMap::normalize`] makes the
    /// profile).
    pub azimuthal: Option<&'a AzimuthalMap>,
    /// Where the frame's first pixel lies among the map's: 0 for a map of the frame alone,
    /// `m × rows × cols` for module `m` of a map of the whole detector.
    pub azimuthal_at: usize,
}

/// What [`reduce`] and [`reduce_frame`] give.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduced {
    /// Photons in the frame (0 without `adu_per_photon`).
    pub photons: u64,
    /// Per region, as [`crate::roi::roi_stats`] gives it.
    pub rois: Vec<RoiStats>,
    /// Per-bin sums of the azimuthal map (empty without one).
    pub azimuthal: Vec<f64>,
}

/// Running reductions of one frame, fed block by block.
struct Running<'r> {
    reductions: &'r Reductions<'r>,
    cols: usize,
    photons: u64,
    rois: Vec<(f64, u64, f32)>,
    accumulator: Option<Accumulator<'r>>,
}

impl<'r> Running<'r> {
    fn new(reductions: &'r Reductions<'r>, shape: (usize, usize)) -> Running<'r> {
        if let Some(map) = reductions.azimuthal {
            let (at, mapped) = (reductions.azimuthal_at, map.shape().0 * map.shape().1);
            assert!(
                at + shape.0 * shape.1 <= mapped,
                "frame pixels {at}..{} lie beyond the azimuthal map's {mapped}",
                at + shape.0 * shape.1
            );
        }
        Running {
            reductions,
            cols: shape.1,
            photons: 0,
            rois: vec![(0.0, 0, f32::NEG_INFINITY); reductions.rois.len()],
            accumulator: reductions.azimuthal.map(AzimuthalMap::accumulator),
        }
    }

    /// Adds rows `rows` of the calibrated frame, `block` (row-major).
    fn add(&mut self, isa: Isa, rows: Range<usize>, block: &[f32]) {
        if let Some(adu) = self.reductions.adu_per_photon {
            // The same constants as `count_photons` with a pedestal of 0, so the same counts.
            self.photons += simd::photons(isa, block, (1.0 / adu) as f32, 0.5);
        }
        for ((roi, threshold), acc) in self.reductions.rois.iter().zip(&mut self.rois) {
            let threshold = crate::roi::f32_threshold(*threshold);
            for r in rows.start.max(roi.rows.start)..rows.end.min(roi.rows.end) {
                let c = roi.cols.start.min(self.cols)..roi.cols.end.min(self.cols);
                let start = (r - rows.start) * self.cols;
                let (s, n, m) =
                    simd::sum_above_f32(isa, &block[start + c.start..start + c.end], threshold);
                acc.0 += s;
                acc.1 += n;
                acc.2 = acc.2.max(m);
            }
        }
        if let Some(acc) = self.accumulator.as_mut() {
            acc.add(self.reductions.azimuthal_at + rows.start * self.cols, block);
        }
    }

    fn finish(self, shape: (usize, usize)) -> Reduced {
        let rois = self
            .reductions
            .rois
            .iter()
            .zip(self.rois)
            .map(|((roi, _), (sum, count, max))| {
                crate::roi::stats(roi, shape, sum, count, max as f64)
            })
            .collect();
        let azimuthal = match (self.accumulator, self.reductions.azimuthal) {
            (Some(acc), Some(map)) => {
                let mut sums = vec![0.0; map.bins_total()];
                acc.finish(&mut sums);
                sums
            }
            _ => Vec::new(),
        };
        Reduced {
            photons: self.photons,
            rois,
            azimuthal,
        }
    }
}

/// Rows per block for frames `cols` wide: whole rows, a multiple of `align`.
fn block_rows(cols: usize, align: usize) -> usize {
    let align = align.max(1);
    (BLOCK_PIXELS / cols.max(1)).max(1).div_ceil(align) * align
}

/// Calibrates a `shape` frame block by block with `calibrate(pixels, out)` (pixels `pixels`
/// of the frame, in row-major order, into `out`) and reduces each block at once. Blocks hold
/// a multiple of `align` rows (a common mode per bank of rows needs whole banks). `scratch`
/// holds the block between the two and is reused across frames.
pub fn reduce(
    isa: Isa,
    shape: (usize, usize),
    align: usize,
    reductions: &Reductions<'_>,
    scratch: &mut Vec<f32>,
    mut calibrate: impl FnMut(Range<usize>, &mut [f32]),
) -> Reduced {
    let (rows, cols) = shape;
    let step = block_rows(cols, align);
    let mut running = Running::new(reductions, shape);
    for r0 in (0..rows).step_by(step) {
        let r1 = (r0 + step).min(rows);
        // `calibrate` writes every value of the block: no zeroing per block.
        scratch.resize((r1 - r0) * cols, 0.0);
        calibrate(r0 * cols..r1 * cols, scratch);
        running.add(isa, r0..r1, scratch);
    }
    running.finish(shape)
}

/// The same reductions as [`reduce`] over a frame calibrated beforehand, in the same blocks
/// and order (the same bits).
///
/// # Panics
///
/// If the frame is not contiguous in row-major order.
pub fn reduce_frame(isa: Isa, frame: ArrayView2<'_, f32>, reductions: &Reductions<'_>) -> Reduced {
    let shape = frame.dim();
    let pixels = frame
        .as_slice()
        .expect("a calibrated frame in row-major order");
    let step = block_rows(shape.1, 1);
    let mut running = Running::new(reductions, shape);
    for r0 in (0..shape.0).step_by(step) {
        let r1 = (r0 + step).min(shape.0);
        running.add(isa, r0..r1, &pixels[r0 * shape.1..r1 * shape.1]);
    }
    running.finish(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azimuthal::{Geometry, Radial};
    use crate::gain::agipd::{test_constants, test_frame};
    use crate::photons::count_photons;
    use crate::roi::roi_stats;
    use ndarray::Array2;
    use rand::SeedableRng;

    /// An AGIPD module with mixed stages through calibrate → photons → ROI → azimuthal: fused
    /// equals unfused bit for bit, on every instruction set, and both equal the reductions'
    /// own functions on the calibrated frame.
    #[test]
    fn fused_equals_unfused_and_the_plain_reductions() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(9);
        // 129 columns: blocks of 31 rows start at every offset modulo 4 of the banks.
        let (cells, rows, cols) = (4, 64, 129);
        let c = test_constants(&mut rng, (cells, rows, cols), 0.01);
        let geometry = Geometry {
            distance: 0.2,
            poni1: 0.0,
            poni2: 0.0,
            pixel1: 2e-4,
            pixel2: 2e-4,
            energy_kev: 9.3,
        }
        .with_center(20.0, 70.0);
        let map =
            AzimuthalMap::new((rows, cols), &geometry, Radial::QInvNm, 50, None, None, 1).unwrap();
        let rois = vec![
            (Roi::new(3..41, 5..77), Some(20.0)),
            (Roi::new(0..rows, 0..cols), None),
            (Roi::new(60..90, 100..200), Some(-5.0)),
        ];
        let reductions = Reductions {
            adu_per_photon: Some(60.0),
            rois: rois.clone(),
            azimuthal: Some(&map),
            azimuthal_at: 0,
        };
        let mut frames = 0;
        for cell in 0..cells {
            let (analog, gain) = test_frame(&mut rng, (rows, cols), 32);
            let mut frame = Array2::zeros((rows, cols));
            let counts = c
                .calibrate(analog.view(), gain.view(), cell, frame.view_mut(), None)
                .unwrap();
            let unfused = reduce_frame(Isa::baseline(), frame.view(), &reductions);
            // The reductions' own functions on the calibrated frame.
            assert_eq!(unfused.photons, count_photons(frame.view(), 0.0, 60.0));
            for ((roi, threshold), got) in rois.iter().zip(&unfused.rois) {
                let want = roi_stats(frame.view(), roi.clone(), *threshold);
                assert_eq!(
                    (got.sum.to_bits(), got.count, got.max.to_bits()),
                    (want.sum.to_bits(), want.count, want.max.to_bits())
                );
            }
            let mut sums = vec![0.0; 50];
            map.accumulate(frame.view(), &mut sums);
            assert_eq!(unfused.azimuthal, sums);
            for isa in Isa::available() {
                let (fused, fused_counts) = c
                    .calibrate_reduce(
                        isa,
                        analog.view(),
                        gain.view(),
                        cell,
                        &reductions,
                        &mut Vec::new(),
                    )
                    .unwrap();
                assert_eq!(fused, unfused, "{}", isa.name());
                assert_eq!(fused_counts, counts, "{}", isa.name());
                assert_eq!(reduce_frame(isa, frame.view(), &reductions), unfused);
                frames += 1;
            }
        }
        eprintln!(
            "{frames} frames of {rows}×{cols} compared: photons, {} regions, {} azimuthal bins",
            rois.len(),
            map.bins_total()
        );
    }
}
