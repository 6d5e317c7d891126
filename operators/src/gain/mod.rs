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
