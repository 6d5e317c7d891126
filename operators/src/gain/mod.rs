//! Calibration of detectors that switch gain on their own, pixel by pixel: each pixel's stage
//! picks its own pedestal and gain (per memory or storage cell where the detector has them).
//!
//! * [`jungfrau`]: the stage in the top two bits of each raw value (psana's algorithm).
//! * [`epix10ka`]: seven gain ranges from the pixels' configuration bits and data bit 14
//!   (psana's algorithm).
//! * [`agipd`]: the stage from a second gain value and per-pixel thresholds, constants per
//!   memory cell (EuXFEL's correction).
//!
//! The single-gain calibration (one pedestal and gain per pixel, common mode) is
//! [`crate::calibration`].

pub mod agipd;
pub mod epix10ka;
pub mod jungfrau;

/// Constants or frames that do not fit together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GainError {
    /// Shapes that disagree, named.
    #[error("{0}")]
    Shape(String),
    /// A cell the constants do not have.
    #[error("storage cell {cell} of a frame, but constants for {cells} cells")]
    Cell {
        /// The frame's cell.
        cell: usize,
        /// Cells the constants have.
        cells: usize,
    },
}

use ndarray::{ArrayView2, ArrayViewD, ArrayViewMut2, Axis, Ix2};

use crate::fused::{reduce_frame, Reduced, Reductions};
use crate::simd::Isa;

/// A pixel's constant for its stage: `low` when in low gain, else `medium` when in medium gain,
/// else `high`. Every stage's constant is read and one is kept by its bits: written as a choice
/// between three loads, the compiler made it one load through a chosen address and vectorised
/// that as gathers under AVX-512 (two gathers per 8 pixels: a fifth of AGIPD's calibration time
/// on a Skylake-SP core).
#[inline(always)]
pub(crate) fn of_stage(in_medium: bool, in_low: bool, [high, medium, low]: [f32; 3]) -> f32 {
    let (m, l) = (
        0u32.wrapping_sub(in_medium as u32),
        0u32.wrapping_sub(in_low as u32),
    );
    let not_low = (medium.to_bits() & m) | (high.to_bits() & !m);
    f32::from_bits((low.to_bits() & l) | (not_low & !l))
}

/// `raw` as a 2-D frame, or an error naming its shape.
fn frame<'a>(raw: ArrayViewD<'a, u16>) -> Result<ArrayView2<'a, u16>, GainError> {
    let shape = raw.shape().to_vec();
    raw.into_dimensionality::<Ix2>().map_err(|_| {
        GainError::Shape(format!(
            "a frame of shape {shape:?} where (rows, cols) was expected"
        ))
    })
}

/// The constants of one module of any gain-switching detector, for code that calibrates
/// whichever detector a run has.
#[derive(Clone, Debug)]
pub enum ModuleConstants {
    /// A JUNGFRAU module.
    Jungfrau(jungfrau::JungfrauConstants),
    /// An ePix10ka segment.
    Epix10ka(epix10ka::Epix10kaConstants),
    /// An AGIPD module.
    Agipd(agipd::AgipdConstants),
}

impl ModuleConstants {
    /// The detector's name, as constants files give it.
    pub fn detector(&self) -> &'static str {
        match self {
            ModuleConstants::Jungfrau(_) => "jungfrau",
            ModuleConstants::Epix10ka(_) => "epix10ka",
            ModuleConstants::Agipd(_) => "agipd",
        }
    }

    /// The calibrated frame's shape `(rows, cols)`.
    pub fn pixels(&self) -> (usize, usize) {
        match self {
            ModuleConstants::Jungfrau(c) => (c.pedestal.shape()[2], c.pedestal.shape()[3]),
            ModuleConstants::Epix10ka(c) => c.config.dim(),
            ModuleConstants::Agipd(c) => c.shape(),
        }
    }

    /// Calibrates one module's raw data recorded in memory or storage cell `cell` into `out`:
    /// a `(rows, cols)` frame for JUNGFRAU and ePix10ka, `(2, rows, cols)` for AGIPD (analog
    /// and gain values, as EuXFEL's raw data holds them). Returns the pixels that had no valid
    /// stage (JUNGFRAU's gain code `10`, ePix10ka's unmatched bits, AGIPD's bad pixels).
    ///
    /// ```
    /// use ndarray::{Array2, Array3, Array4};
    /// use shotflow_operators::gain::{agipd::AgipdConstants, ModuleConstants};
    ///
    /// let c = ModuleConstants::Agipd(AgipdConstants::new(
    ///     Array4::from_elem((1, 2, 2, 2), 5000.0),
    ///     Array4::from_elem((1, 3, 2, 2), 100.0),
    ///     Array4::ones((1, 3, 2, 2)),
    ///     Array3::from_elem((1, 2, 2), false),
    /// ).unwrap());
    /// let raw = Array3::from_shape_fn((2, 2, 2), |(k, ..)| if k == 0 { 150u16 } else { 10 });
    /// let mut out = Array2::zeros((2, 2));
    /// assert_eq!(c.calibrate(raw.view().into_dyn(), 0, out.view_mut()).unwrap(), 0);
    /// assert!(out.iter().all(|v| *v == 50.0));
    /// ```
    pub fn calibrate(
        &self,
        raw: ArrayViewD<'_, u16>,
        cell: usize,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<u64, GainError> {
        match self {
            ModuleConstants::Jungfrau(c) => Ok(c.calibrate(frame(raw)?, cell, out)?.invalid),
            ModuleConstants::Epix10ka(c) => Ok(c.calibrate(frame(raw)?, out)?.unmatched),
            ModuleConstants::Agipd(c) => {
                let (analog, gain) = agipd_planes(raw)?;
                Ok(c.calibrate(analog, gain, cell, out, None)?.invalid)
            }
        }
    }

    /// Calibrates one module's raw data, as [`ModuleConstants::calibrate`] takes them, and
    /// reduces the calibrated frame at once ([`crate::fused`]): the same bits as
    /// [`ModuleConstants::calibrate`] followed by [`reduce_frame`], without the frame written
    /// out (ePix10ka, which has no fused pass yet, is calibrated into `scratch` and reduced).
    /// Returns the reductions and the pixels that had no valid stage.
    ///
    /// ```
    /// use ndarray::{Array2, Array3, Array4};
    /// use shotflow_operators::fused::{reduce_frame, Reductions};
    /// use shotflow_operators::gain::{agipd::AgipdConstants, ModuleConstants};
    /// use shotflow_operators::simd::Isa;
    ///
    /// let c = ModuleConstants::Agipd(AgipdConstants::new(
    ///     Array4::from_elem((1, 2, 4, 8), 5000.0),
    ///     Array4::from_elem((1, 3, 4, 8), 100.0),
    ///     Array4::ones((1, 3, 4, 8)),
    ///     Array3::from_elem((1, 4, 8), false),
    /// ).unwrap());
    /// let raw = Array3::from_shape_fn((2, 4, 8), |(k, r, x)| if k == 0 { 100 + (r * x) as u16 } else { 10 });
    /// let reductions = Reductions { adu_per_photon: Some(4.0), ..Reductions::default() };
    /// let (fused, invalid) = c
    ///     .calibrate_reduce(Isa::detect(), raw.view().into_dyn(), 0, &reductions, &mut Vec::new())
    ///     .unwrap();
    /// let mut frame = Array2::zeros((4, 8));
    /// c.calibrate(raw.view().into_dyn(), 0, frame.view_mut()).unwrap();
    /// assert_eq!(fused, reduce_frame(Isa::detect(), frame.view(), &reductions));
    /// assert_eq!(invalid, 0);
    /// ```
    pub fn calibrate_reduce(
        &self,
        isa: Isa,
        raw: ArrayViewD<'_, u16>,
        cell: usize,
        reductions: &Reductions<'_>,
        scratch: &mut Vec<f32>,
    ) -> Result<(Reduced, u64), GainError> {
        match self {
            ModuleConstants::Jungfrau(c) => {
                let (reduced, counts) =
                    c.calibrate_reduce(isa, frame(raw)?, cell, reductions, scratch)?;
                Ok((reduced, counts.invalid))
            }
            ModuleConstants::Agipd(c) => {
                let (analog, gain) = agipd_planes(raw)?;
                let (reduced, counts) =
                    c.calibrate_reduce(isa, analog, gain, cell, reductions, scratch)?;
                Ok((reduced, counts.invalid))
            }
            ModuleConstants::Epix10ka(_) => {
                let shape = self.pixels();
                // `calibrate` writes every pixel: no zeroing.
                scratch.resize(shape.0 * shape.1, 0.0);
                let mut out = ArrayViewMut2::from_shape(shape, scratch.as_mut_slice())
                    .expect("scratch sized to the frame");
                let invalid = self.calibrate(raw, cell, out.view_mut())?;
                Ok((reduce_frame(isa, out.view(), reductions), invalid))
            }
        }
    }
}

/// AGIPD's `(2, rows, cols)` raw data as its analog and gain frames.
fn agipd_planes(
    raw: ArrayViewD<'_, u16>,
) -> Result<(ArrayView2<'_, u16>, ArrayView2<'_, u16>), GainError> {
    if raw.ndim() != 3 || raw.shape()[0] != 2 {
        return Err(GainError::Shape(format!(
            "AGIPD data of shape {:?} where (2, rows, cols) (analog, gain) was expected",
            raw.shape()
        )));
    }
    let (analog, gain) = (
        raw.clone().index_axis_move(Axis(0), 0),
        raw.index_axis_move(Axis(0), 1),
    );
    Ok((frame(analog)?, frame(gain)?))
}
