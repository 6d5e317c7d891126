//! European XFEL run directories (EXDF): the HDF5 layout that `extra-data` reads.
//!
//! A run is a directory of files `RAW-R0001-AGIPD00-S00000.h5`: one aggregator (a detector
//! module, or a group of slow sources) split into sequence files. [`ExdfRun::open`] reads
//! every file's METADATA and INDEX (formats 0.5, 1.0, 1.2; 0.1's first/last/status too) and
//! joins all sources by **train id**, because sequence boundaries of different aggregators do
//! not line up. Padding rows (train id 0) are ignored; trains a file lists out of order or
//! twice are skipped as suspect, with a warning and a count, as extra-data does.
//!
//! [`ExdfSource::exdf`] turns the selected keys into a stream of events, one per train
//! (event id = train id, field `"<source>/<key>"`). Batches of trains go to workers
//! round-robin; each worker opens the files it needs and reads one slab per key and file per
//! batch. Only selected datasets are ever read. A train that a source has no data for lacks
//! that source's fields (the smalldata sink fills them).
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//! use shotflow::exdf::{ExdfRun, ExdfSource, Selector};
//!
//! let run = Arc::new(ExdfRun::open("raw/r0348".as_ref()).unwrap());
//! let selected = Arc::new(run.select(&[Selector::parse("*/DET/*:image.data").unwrap()]).unwrap());
//! timely::example(move |scope| {
//!     scope.exdf(Arc::clone(&run), Arc::clone(&selected), 4);
//! });
//! ```

pub mod explode;
pub mod file;
pub mod modules;
mod run;
pub mod simulate;
mod source;

pub use explode::ExplodePulses;
pub use file::{FileInfo, SourceKind};
pub use run::{dtype_of, ExdfRun, KeyInfo, Selected, SourceInfo};
pub use source::ExdfSource;

use std::fmt;
use std::path::Path;

/// Why a run could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExdfError {
    /// An HDF5 call failed (a missing, truncated or corrupt file, a missing dataset).
    #[error("{file}: {what}: {source}")]
    Hdf5 {
        /// File.
        file: String,
        /// Dataset or operation.
        what: String,
        /// The library's error.
        source: hdf5::Error,
    },
    /// The file does not follow the EXDF layout.
    #[error("{file}: {message}")]
    Format {
        /// File.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A selection matched nothing or is malformed.
    #[error("{0}")]
    Select(String),
}

impl ExdfError {
    pub(crate) fn hdf5(file: &Path, what: &str, source: hdf5::Error) -> ExdfError {
        ExdfError::Hdf5 {
            file: file.display().to_string(),
            what: what.to_string(),
            source,
        }
    }
}

/// A `SOURCE_GLOB:KEY_GLOB` selection, as extra-data's `select(source, key)` takes it.
///
/// Source names contain `:` themselves (`SA1_XTD2_XGM/DOOCS/MAIN:output`), so the key is what
/// follows the last `:`; a pattern without a key selects every key of the matching sources.
///
/// # Examples
///
/// ```
/// use shotflow::exdf::Selector;
///
/// let s = Selector::parse("SPB_DET_AGIPD1M-1/DET/*CH0:xtdf:image.data").unwrap();
/// assert!(s.source.matches("SPB_DET_AGIPD1M-1/DET/3CH0:xtdf"));
/// assert!(s.key.matches("image.data"));
/// let all = Selector::parse("SA1_XTD2_XGM/DOOCS/MAIN").unwrap();
/// assert!(all.key.matches("beamPosition.ixPos.value"));
/// // "...:xtdf" may be a key or the channel of a source: both are tried
/// let module = Selector::parse("SPB_DET_AGIPD1M-1/DET/*CH0:xtdf").unwrap();
/// assert!(module.whole.unwrap().matches("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"));
/// // a source glob without '/' still takes a key
/// let cells = Selector::parse("*AGIPD*:image.cellId").unwrap();
/// assert!(cells.source.matches("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"));
/// assert!(cells.key.matches("image.cellId") && !cells.key.matches("image.data"));
/// ```
#[derive(Clone, Debug)]
pub struct Selector {
    /// Pattern for source names.
    pub source: glob::Pattern,
    /// Pattern for keys.
    pub key: glob::Pattern,
    /// When the text after the last `:` might be a channel name (`...:xtdf`), the whole text
    /// as a source pattern, tried if the split matches nothing.
    pub whole: Option<glob::Pattern>,
    text: String,
}

impl Selector {
    /// The one key `key` of the one source `source`, names taken literally.
    ///
    /// ```
    /// use shotflow::exdf::Selector;
    ///
    /// let s = Selector::exact("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", "image.cellId");
    /// assert!(s.source.matches("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"));
    /// assert!(!s.source.matches("SPB_DET_AGIPD1M-1/DET/10CH0:xtdf"));
    /// ```
    pub fn exact(source: &str, key: &str) -> Selector {
        let literal = |text: &str| {
            glob::Pattern::new(&glob::Pattern::escape(text)).expect("an escaped pattern")
        };
        Selector {
            source: literal(source),
            key: literal(key),
            whole: None,
            text: format!("{source}:{key}"),
        }
    }

    /// Parses `SOURCE_GLOB[:KEY_GLOB]`.
    pub fn parse(text: &str) -> Result<Selector, ExdfError> {
        let bad = |e: glob::PatternError| ExdfError::Select(format!("--select {text:?}: {e}"));
        // A key never contains '/', a source always does (or is a glob that may span one, as
        // `*AGIPD*`): that tells which ':' may separate them. `...:xtdf` may still be a channel
        // name: then the whole text is kept as a source pattern to try when the split matches
        // nothing.
        let glob = |part: &str| part.contains(['*', '?', '[']);
        let (source, key, whole) = match text.rsplit_once(':') {
            Some((source, key)) if (source.contains('/') || glob(source)) && !key.contains('/') => {
                let whole = if key.contains('.') {
                    None
                } else {
                    Some(glob::Pattern::new(text).map_err(bad)?)
                };
                (source, key, whole)
            }
            _ => (text, "*", None),
        };
        Ok(Selector {
            source: glob::Pattern::new(source).map_err(bad)?,
            key: glob::Pattern::new(key).map_err(bad)?,
            whole,
            text: text.to_string(),
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--select {:?}", self.text)
    }
}
