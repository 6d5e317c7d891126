//! # shotflow-operators
//!
//! The per-shot reductions XFEL scientists run on detector frames, as pure functions on
//! [`ndarray`] views: no I/O, no dataflow, no allocation on the per-frame path where it can be
//! avoided. The engine crate (`shotflow`) wraps them for timely streams.
//!
//! ```
//! use ndarray::Array2;
//! use shotflow_operators::roi::{Roi, roi_stats};
//!
//! let frame = Array2::<u16>::from_shape_fn((4, 4), |(y, x)| (y * 4 + x) as u16);
//! let stats = roi_stats(frame.view(), Roi::new(1..3, 1..3), None);
//! assert_eq!(stats.sum, (5 + 6 + 9 + 10) as f64);
//! ```

#![warn(missing_docs)]

pub mod azimuthal;
pub mod binning;
pub mod calibration;
pub mod droplets;
pub mod fused;
pub mod gain;
pub mod geometry;
pub mod histogram;
pub mod normalize;
pub mod peaks;
pub mod photons;
pub mod pixel;
pub mod roi;
pub mod simd;

pub use pixel::Pixel;
