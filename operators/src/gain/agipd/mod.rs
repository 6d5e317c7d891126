//! AGIPD: every pixel records an analog value and a second "gain" value; the gain stage (high,
//! medium, low) follows from the gain value compared with two per-pixel thresholds, and the
//! constants are per memory cell (up to 352) and stage. The published correction (EuXFEL's
//! AGIPD correction):
//!
//! * stage 0 if `gain < threshold[0]`, 1 if `threshold[0] ≤ gain < threshold[1]`, else 2;
//! * `(analog − offset[stage]) × relative_gain[stage]`, all per cell and pixel, in float32;
//! * bad pixels (per cell) are set to 0 and counted.
//!
//! The constants are held cell-major, `(cells, stage, rows, cols)`, so that one frame's
//! constants are one contiguous block; a module of 512×128 pixels and 352 cells takes
//! 352 × 65 536 × (2 thresholds + 3 offsets + 3 gains) × 4 B ≈ 738 MB, plus 23 MB of bad-pixel
//! flags.

use ndarray::{Array3, Array4, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut2, Axis};

use super::jungfrau::StageCounts;
use super::GainError;
use crate::fused::{reduce, reduce_frame, Reduced, Reductions};
use crate::simd::{Isa, LANES};

mod kernel;

use kernel::calibrate_part;

/// The constants of one AGIPD module, checked, with what the kernels derive from them.
///
/// The kernels read as few bytes a frame as they can, since a module's constants for all its
/// cells are far larger than the caches: per block of [`LANES`] pixels, the lowest first
/// threshold (a block whose gain values all lie below it is in high gain, without reading
/// the thresholds), and per cell the list of its bad pixels (mended after the block
/// calibrated them, without reading a flag per pixel).
#[derive(Clone, Debug)]
pub struct AgipdConstants {
    thresholds: Array4<f32>,
    offset: Array4<f32>,
    relative_gain: Array4<f32>,
    bad: Array3<bool>,
    /// Per cell and block of [`LANES`] pixels, the lowest first threshold: `cells × blocks`
    /// (`−∞` for a block with a NaN first threshold, which no gain value is below).
    floor: Vec<f32>,
    /// Each cell's bad pixels in frame order: cell `k`'s are `bad_pixels[bad_at[k]..bad_at[k + 1]]`.
    bad_pixels: Vec<u32>,
    bad_at: Vec<usize>,
}

impl AgipdConstants {
    /// Constants from their arrays:
    /// * `thresholds`: per cell, the two thresholds on the gain value, `(cells, 2, rows, cols)`;
    /// * `offset`: per cell and stage, the offset (dark level) of the analog value,
    ///   `(cells, 3, rows, cols)`;
    /// * `relative_gain`: per cell and stage, what the offset-corrected value is multiplied by;
    /// * `bad`: per cell, bad pixels (true), `(cells, rows, cols)`.
    ///
    /// ```
    /// use ndarray::{Array3, Array4};
    /// use shotflow_operators::gain::agipd::AgipdConstants;
    ///
    /// let c = AgipdConstants::new(
    ///     Array4::zeros((2, 2, 4, 4)),
    ///     Array4::zeros((2, 3, 4, 4)),
    ///     Array4::ones((2, 3, 4, 4)),
    ///     Array3::from_elem((2, 4, 4), false),
    /// )
    /// .unwrap();
    /// assert_eq!(c.cells(), 2);
    /// assert!(AgipdConstants::new(
    ///     Array4::zeros((2, 2, 4, 4)),
    ///     Array4::zeros((2, 3, 4, 4)),
    ///     Array4::ones((2, 3, 4, 4)),
    ///     Array3::from_elem((1, 4, 4), false),
    /// )
    /// .is_err());
    /// ```
    pub fn new(
        thresholds: Array4<f32>,
        offset: Array4<f32>,
        relative_gain: Array4<f32>,
        bad: Array3<bool>,
    ) -> Result<AgipdConstants, GainError> {
        let (cells, two, rows, cols) = thresholds.dim();
        let staged = (cells, 3, rows, cols);
        if two != 2
            || offset.dim() != staged
            || relative_gain.dim() != staged
            || bad.dim() != (cells, rows, cols)
        {
            return Err(GainError::Shape(format!(
                "AGIPD thresholds {:?}, offsets {:?}, gains {:?}, bad pixels {:?}: expected \
                 (cells, 2, rows, cols), (cells, 3, rows, cols) twice and (cells, rows, cols)",
                thresholds.shape(),
                offset.shape(),
                relative_gain.shape(),
                bad.shape()
            )));
        }
        if u32::try_from(rows * cols).is_err() {
            return Err(GainError::Shape(format!(
                "AGIPD module of {rows}×{cols} pixels: at most 2^32"
            )));
        }
        // The kernels take each cell's planes as slices.
        let standard4 = |a: Array4<f32>| {
            if a.is_standard_layout() {
                a
            } else {
                a.as_standard_layout().into_owned()
            }
        };
        let (thresholds, offset, relative_gain) = (
            standard4(thresholds),
            standard4(offset),
            standard4(relative_gain),
        );
        let bad = if bad.is_standard_layout() {
            bad
        } else {
            bad.as_standard_layout().into_owned()
        };
        let pixels = rows * cols;
        let mut floor = Vec::with_capacity(cells * pixels.div_ceil(LANES));
        let mut bad_pixels = Vec::new();
        let mut bad_at = vec![0];
        for cell in 0..cells {
            let t0 = thresholds.slice(ndarray::s![cell, 0, .., ..]);
            let t0 = t0.as_slice().expect("standard layout");
            // `f32::min` passes over NaN, but a gain value is never below a NaN threshold (the
            // pixel is in medium or low gain, as numpy's `gain < t0` has it): such a block must
            // not look all high.
            floor.extend(t0.chunks(LANES).map(|c| {
                if c.iter().any(|t| t.is_nan()) {
                    f32::NEG_INFINITY
                } else {
                    c.iter().copied().fold(f32::INFINITY, f32::min)
                }
            }));
            let flags = bad.index_axis(Axis(0), cell);
            let flags = flags.as_slice().expect("standard layout");
            bad_pixels.extend(
                flags
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b)
                    .map(|(k, _)| k as u32),
            );
            bad_at.push(bad_pixels.len());
        }
        Ok(AgipdConstants {
            thresholds,
            offset,
            relative_gain,
            bad,
            floor,
            bad_pixels,
            bad_at,
        })
    }

    /// Per cell, the two thresholds on the gain value: `(cells, 2, rows, cols)`.
    pub fn thresholds(&self) -> ArrayView4<'_, f32> {
        self.thresholds.view()
    }

    /// Per cell and stage, the offset (dark level) of the analog value: `(cells, 3, rows, cols)`.
    pub fn offset(&self) -> ArrayView4<'_, f32> {
        self.offset.view()
    }

    /// Per cell and stage, the relative gain the offset-corrected value is multiplied by.
    pub fn relative_gain(&self) -> ArrayView4<'_, f32> {
        self.relative_gain.view()
    }

    /// Per cell, bad pixels (true): `(cells, rows, cols)`.
    pub fn bad(&self) -> ArrayView3<'_, bool> {
        self.bad.view()
    }

    /// Memory cells the constants have.
    pub fn cells(&self) -> usize {
        self.thresholds.shape()[0]
    }

    /// The module's shape, `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.thresholds.shape()[2], self.thresholds.shape()[3])
    }

    /// Calibrates one frame: `analog` and `gain` values recorded in memory cell `cell` (EXDF
    /// `image.cellId`) into `out`, and each pixel's stage into `stages` when given (bad pixels
    /// get 255). Returns the pixels per stage; bad pixels are counted as `invalid`.
    ///
    /// ```
    /// use ndarray::{array, Array2, Array3, Array4};
    /// use shotflow_operators::gain::agipd::AgipdConstants;
    ///
    /// let c = AgipdConstants::new(
    ///     Array4::from_shape_fn((1, 2, 1, 3), |(_, t, ..)| [5000.0f32, 6000.0][t]),
    ///     Array4::from_shape_fn((1, 3, 1, 3), |(_, s, ..)| [4000.0f32, 5000.0, 5500.0][s]),
    ///     Array4::from_shape_fn((1, 3, 1, 3), |(_, s, ..)| [1.0f32, 45.0, 1000.0][s]),
    ///     Array3::from_elem((1, 1, 3), false),
    /// ).unwrap();
    /// let analog = array![[4100u16, 5010, 5501]];
    /// let gain = array![[4000u16, 5500, 7000]];
    /// let mut out = Array2::zeros((1, 3));
    /// let mut stages = Array2::zeros((1, 3));
    /// let n = c.calibrate(analog.view(), gain.view(), 0, out.view_mut(), Some(stages.view_mut())).unwrap();
    /// assert_eq!(out, array![[100.0f32, 450.0, 1000.0]]);
    /// assert_eq!(stages, array![[0u8, 1, 2]]);
    /// assert_eq!(n.stages, [1, 1, 1]);
    /// ```
    pub fn calibrate(
        &self,
        analog: ArrayView2<'_, u16>,
        gain: ArrayView2<'_, u16>,
        cell: usize,
        mut out: ArrayViewMut2<'_, f32>,
        mut stages: Option<ArrayViewMut2<'_, u8>>,
    ) -> Result<StageCounts, GainError> {
        let mut arrays = vec![
            ("frame", analog.shape()),
            ("gain", gain.shape()),
            ("output", out.shape()),
        ];
        if let Some(s) = stages.as_ref() {
            arrays.push(("stage map", s.shape()));
        }
        self.check(&arrays, cell)?;
        if let (Some(a), Some(g), Some(o)) =
            (analog.as_slice(), gain.as_slice(), out.as_slice_mut())
        {
            let mut counts = [0u64; 4];
            let stages = match stages.as_mut() {
                Some(s) => Some(s.as_slice_mut().ok_or_else(|| {
                    GainError::Shape("AGIPD stage map not in row-major order".into())
                })?),
                None => None,
            };
            calibrate_part(
                Isa::detect(),
                &self.planes(cell),
                (a, g),
                0..a.len(),
                o,
                stages,
                &mut counts,
            );
            return Ok(AgipdConstants::counted(counts));
        }
        Ok(self.calibrate_scalar(analog, gain, cell, out, stages))
    }

    /// An error unless every named array has the constants' pixels and `cell` is one of theirs.
    fn check(&self, arrays: &[(&str, &[usize])], cell: usize) -> Result<(), GainError> {
        let pixels = &self.thresholds.shape()[2..];
        if arrays.iter().any(|(_, shape)| *shape != pixels) {
            let named: Vec<String> = arrays
                .iter()
                .map(|(name, shape)| format!("{name} {shape:?}"))
                .collect();
            return Err(GainError::Shape(format!(
                "AGIPD {} for constants of {pixels:?}",
                named.join(", ")
            )));
        }
        if cell >= self.cells() {
            return Err(GainError::Cell {
                cell,
                cells: self.cells(),
            });
        }
        Ok(())
    }

    /// [`AgipdConstants::calibrate`] pixel by pixel, for frames that are not contiguous (and
    /// as the reference the vector kernels are tested against).
    fn calibrate_scalar(
        &self,
        analog: ArrayView2<'_, u16>,
        gain: ArrayView2<'_, u16>,
        cell: usize,
        mut out: ArrayViewMut2<'_, f32>,
        mut stages: Option<ArrayViewMut2<'_, u8>>,
    ) -> StageCounts {
        let thresholds = self.thresholds.index_axis(Axis(0), cell);
        let offset = self.offset.index_axis(Axis(0), cell);
        let relative = self.relative_gain.index_axis(Axis(0), cell);
        let bad = self.bad.index_axis(Axis(0), cell);
        let mut counts = StageCounts::default();
        for ((r, c), o) in out.indexed_iter_mut() {
            let (a, g) = (analog[[r, c]] as f32, gain[[r, c]] as f32);
            let stage = if g < thresholds[[0, r, c]] {
                0
            } else if g < thresholds[[1, r, c]] {
                1
            } else {
                2
            };
            let code = if bad[[r, c]] {
                counts.invalid += 1;
                *o = 0.0;
                u8::MAX
            } else {
                counts.stages[stage] += 1;
                *o = (a - offset[[stage, r, c]]) * relative[[stage, r, c]];
                stage as u8
            };
            if let Some(s) = stages.as_mut() {
                s[[r, c]] = code;
            }
        }
        counts
    }
}

impl AgipdConstants {
    /// Calibrates a frame and reduces it in one pass ([`crate::fused`]): the calibrated frame
    /// is only ever a block of rows in `scratch`. The same bits as [`AgipdConstants::calibrate`]
    /// followed by [`crate::fused::reduce_frame`].
    ///
    /// ```
    /// use ndarray::{Array2, Array3, Array4};
    /// use shotflow_operators::fused::{reduce_frame, Reductions};
    /// use shotflow_operators::gain::agipd::AgipdConstants;
    /// use shotflow_operators::roi::Roi;
    /// use shotflow_operators::simd::Isa;
    ///
    /// let c = AgipdConstants::new(
    ///     Array4::from_elem((2, 2, 8, 16), 5000.0),
    ///     Array4::from_elem((2, 3, 8, 16), 4000.0),
    ///     Array4::ones((2, 3, 8, 16)),
    ///     Array3::from_elem((2, 8, 16), false),
    /// ).unwrap();
    /// let analog = Array2::from_shape_fn((8, 16), |(r, c)| 4000 + (r * c) as u16);
    /// let gain = Array2::from_elem((8, 16), 4500u16);
    /// let reductions = Reductions { adu_per_photon: Some(10.0), rois: vec![(Roi::new(0..4, 0..8), None)], ..Reductions::default() };
    /// let (fused, counts) = c
    ///     .calibrate_reduce(Isa::detect(), analog.view(), gain.view(), 1, &reductions, &mut Vec::new())
    ///     .unwrap();
    /// let mut frame = Array2::zeros((8, 16));
    /// c.calibrate(analog.view(), gain.view(), 1, frame.view_mut(), None).unwrap();
    /// assert_eq!(fused, reduce_frame(Isa::detect(), frame.view(), &reductions));
    /// assert_eq!(counts.stages[0], 128);
    /// ```
    pub fn calibrate_reduce(
        &self,
        isa: Isa,
        analog: ArrayView2<'_, u16>,
        gain: ArrayView2<'_, u16>,
        cell: usize,
        reductions: &Reductions<'_>,
        scratch: &mut Vec<f32>,
    ) -> Result<(Reduced, StageCounts), GainError> {
        let shape = analog.dim();
        self.check(&[("frame", analog.shape()), ("gain", gain.shape())], cell)?;
        let (Some(a), Some(g)) = (analog.as_slice(), gain.as_slice()) else {
            // Not contiguous: calibrate the whole frame, then reduce it.
            let mut frame = ndarray::Array2::zeros(shape);
            let counts = self.calibrate(analog, gain, cell, frame.view_mut(), None)?;
            return Ok((reduce_frame(isa, frame.view(), reductions), counts));
        };
        let planes = self.planes(cell);
        let mut counts = [0u64; 4];
        let reduced = reduce(isa, shape, 1, reductions, scratch, |range, out| {
            calibrate_part(isa, &planes, (a, g), range, out, None, &mut counts)
        });
        Ok((reduced, AgipdConstants::counted(counts)))
    }
}

/// Random constants of `(cells, rows, cols)` around typical levels, with a fraction `bad` of bad
/// pixels (for the tests here and of the fused passes).
#[cfg(test)]
pub(crate) fn test_constants(
    rng: &mut impl rand::Rng,
    (cells, rows, cols): (usize, usize, usize),
    bad: f32,
) -> AgipdConstants {
    AgipdConstants::new(
        Array4::from_shape_fn((cells, 2, rows, cols), |(_, t, ..)| {
            // A few NaN thresholds, as constants files carry for broken pixels.
            if rng.gen::<f32>() < 0.005 {
                f32::NAN
            } else {
                [5000.0, 6000.0][t] + rng.gen_range(-50.0..50.0f32)
            }
        }),
        Array4::from_shape_fn((cells, 3, rows, cols), |(_, s, ..)| {
            [4000.0, 5000.0, 5500.0][s] + rng.gen_range(-30.0..30.0f32)
        }),
        Array4::from_shape_fn((cells, 3, rows, cols), |(_, s, ..)| {
            [1.0, 45.0, 1000.0][s] * rng.gen_range(0.9..1.1f32)
        }),
        Array3::from_shape_fn((cells, rows, cols), |_| rng.gen::<f32>() < bad),
    )
    .unwrap()
}

/// A random frame `(analog, gain)` for [`test_constants`]: rows `..high` all in high gain (whole
/// blocks take the fast path), the others with stages at random.
#[cfg(test)]
pub(crate) fn test_frame(
    rng: &mut impl rand::Rng,
    (rows, cols): (usize, usize),
    high: usize,
) -> (ndarray::Array2<u16>, ndarray::Array2<u16>) {
    let gain = ndarray::Array2::from_shape_fn((rows, cols), |(r, _)| {
        if r < high {
            4500
        } else {
            [4500u16, 5500, 7000][rng.gen_range(0..3)]
        }
    });
    let analog = ndarray::Array2::from_shape_fn((rows, cols), |_| rng.gen_range(3900..9000u16));
    (analog, gain)
}
