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

use ndarray::{Array3, Array4, ArrayView2, ArrayViewMut2, Axis};

use super::jungfrau::StageCounts;
use super::GainError;

/// The constants of one AGIPD module.
#[derive(Clone, Debug)]
pub struct AgipdConstants {
    /// Per cell, the two thresholds on the gain value: `(cells, 2, rows, cols)`.
    pub thresholds: Array4<f32>,
    /// Per cell and stage, the offset (dark level) of the analog value: `(cells, 3, rows, cols)`.
    pub offset: Array4<f32>,
    /// Per cell and stage, the relative gain the offset-corrected value is multiplied by.
    pub relative_gain: Array4<f32>,
    /// Per cell, bad pixels (true): `(cells, rows, cols)`.
    pub bad: Array3<bool>,
}

impl AgipdConstants {
    /// Checks that the constants fit together.
    ///
    /// ```
    /// use ndarray::{Array3, Array4};
    /// use shotflow_operators::gain::agipd::AgipdConstants;
    ///
    /// let c = AgipdConstants {
    ///     thresholds: Array4::zeros((2, 2, 4, 4)),
    ///     offset: Array4::zeros((2, 3, 4, 4)),
    ///     relative_gain: Array4::ones((2, 3, 4, 4)),
    ///     bad: Array3::from_elem((2, 4, 4), false),
    /// };
    /// assert!(c.check().is_ok());
    /// ```
    pub fn check(&self) -> Result<(), GainError> {
        let (cells, two, rows, cols) = self.thresholds.dim();
        let staged = (cells, 3, rows, cols);
        if two != 2
            || self.offset.dim() != staged
            || self.relative_gain.dim() != staged
            || self.bad.dim() != (cells, rows, cols)
        {
            return Err(GainError::Shape(format!(
                "AGIPD thresholds {:?}, offsets {:?}, gains {:?}, bad pixels {:?}: expected \
                 (cells, 2, rows, cols), (cells, 3, rows, cols) twice and (cells, rows, cols)",
                self.thresholds.shape(),
                self.offset.shape(),
                self.relative_gain.shape(),
                self.bad.shape()
            )));
        }
        Ok(())
    }

    /// Memory cells the constants have.
    pub fn cells(&self) -> usize {
        self.thresholds.shape()[0]
    }

    /// Calibrates one frame: `analog` and `gain` values recorded in memory cell `cell` (EXDF
    /// `image.cellId`) into `out`, and each pixel's stage into `stages` when given (bad pixels
    /// get 255). Returns the pixels per stage; bad pixels are counted as `invalid`.
    ///
    /// ```
    /// use ndarray::{array, Array2, Array3, Array4};
    /// use shotflow_operators::gain::agipd::AgipdConstants;
    ///
    /// let c = AgipdConstants {
    ///     thresholds: Array4::from_shape_fn((1, 2, 1, 3), |(_, t, ..)| [5000.0f32, 6000.0][t]),
    ///     offset: Array4::from_shape_fn((1, 3, 1, 3), |(_, s, ..)| [4000.0f32, 5000.0, 5500.0][s]),
    ///     relative_gain: Array4::from_shape_fn((1, 3, 1, 3), |(_, s, ..)| [1.0f32, 45.0, 1000.0][s]),
    ///     bad: Array3::from_elem((1, 1, 3), false),
    /// };
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
        self.check()?;
        let pixels = &self.thresholds.shape()[2..];
        let fits = |shape: &[usize]| shape == pixels;
        if !fits(analog.shape())
            || !fits(gain.shape())
            || !fits(out.shape())
            || stages.as_ref().is_some_and(|s| !fits(s.shape()))
        {
            return Err(GainError::Shape(format!(
                "AGIPD frame {:?}, gain {:?}, output {:?} for constants of {pixels:?}",
                analog.shape(),
                gain.shape(),
                out.shape()
            )));
        }
        if cell >= self.cells() {
            return Err(GainError::Cell {
                cell,
                cells: self.cells(),
            });
        }
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
        Ok(counts)
    }
}
