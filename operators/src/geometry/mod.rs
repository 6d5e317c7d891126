//! Detector geometry: every pixel of a detector of any number of modules and panels placed in
//! the lab frame, loaded from CrystFEL `.geom` or pyFAI `.poni` files.
//!
//! ```
//! use shotflow_operators::geometry::{self, Detector};
//!
//! let text = "Distance: 0.1\nPoni1: 0.005\nPoni2: 0.005\nRot1: 0.02\n\
//!             PixelSize1: 1e-4\nPixelSize2: 1e-4\nWavelength: 1e-10\n";
//! let detector: Detector = geometry::parse(text, "tilted.poni", Some((100, 100))).unwrap();
//! assert_eq!(detector.shape(), (1, 100, 100));
//! ```

mod agipd;
mod assemble;
mod crystfel;
mod detector;
mod poni;

use std::path::Path;

pub use agipd::AgipdLayout;
pub use assemble::{AssembleError, Assembly};
pub use detector::{Detector, DetectorError, Panel, Vec3};
pub use poni::{rotate, Poni};

/// Why a geometry file cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    /// A line of the file is wrong.
    #[error("{file}:{line}: {message}")]
    Line {
        /// The file.
        file: String,
        /// Its line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file lacks something it must give.
    #[error("{file}: no {what}")]
    Missing {
        /// The file.
        file: String,
        /// What.
        what: String,
    },
    /// The panels do not make a detector.
    #[error("{file}: {source}")]
    Detector {
        /// The file.
        file: String,
        /// Why.
        source: DetectorError,
    },
    /// A PONI file without a detector shape, and none given.
    #[error("the PONI file gives no detector shape (Detector_config max_shape): give one")]
    Shape,
    /// The file cannot be read, or its extension names no format.
    #[error("{file}: {message}")]
    File {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses geometry text; the extension of `file` decides the format (`.geom`: CrystFEL,
/// `.poni`: pyFAI). `shape` (rows, columns) is the detector's when a PONI file does not say.
pub fn parse(
    text: &str,
    file: &str,
    shape: Option<(usize, usize)>,
) -> Result<Detector, GeometryError> {
    match Path::new(file).extension().and_then(|e| e.to_str()) {
        Some("geom") => crystfel::parse(text, file),
        Some("poni") => poni::parse(text, file)?.detector(shape),
        _ => Err(GeometryError::File {
            file: file.to_string(),
            message: "the extension names no geometry format (.geom for CrystFEL, .poni for pyFAI)"
                .into(),
        }),
    }
}

/// Reads and parses a geometry file ([`parse`]).
pub fn load(path: &Path, shape: Option<(usize, usize)>) -> Result<Detector, GeometryError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| GeometryError::File {
        file: file.clone(),
        message: e.to_string(),
    })?;
    parse(&text, &file, shape)
}

/// Parses a PONI file's text into its values ([`Poni`]).
pub fn parse_poni(text: &str, file: &str) -> Result<Poni, GeometryError> {
    poni::parse(text, file)
}
