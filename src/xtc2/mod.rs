//! LCLS-II XTC2 runs: single files, or runs of several streams and chunks with their
//! `smalldata/*.smd.xtc2` files, read as event streams that match psana's, event for event.
//!
//! An event is the set of L1Accept datagrams, one per stream at most, that share a timestamp;
//! its id is the timestamp (`sec << 32 | nsec`). Its fields are `<det>/<alg>/<field>`; a
//! detector of several segments has its segments stacked along a first axis, in segment order,
//! as psana's `Detector(det).raw.raw(evt)` combines them. Step (BeginStep) and slow (EPICS,
//! SlowUpdate) values reach the events that follow them. The byte layout is in
//! `format`; `../shared/xtc2/xtc2-format.md` describes it in full.

mod decode;
mod event;
mod format;
mod names;
mod run;
mod select;
mod simulate;
mod source;
pub mod write;

pub use decode::Block;
pub use event::EventBuilder;
pub use format::{DataType, Dgram, Transition, Xtc, XtcKind};
pub use names::{Field, Names, NamesTable};
pub use run::{Context, Entry, Part, Stream, TransitionEntry, Xtc2Run};
pub use select::Xtc2Selector;
pub use simulate::Xtc2Simulation;
pub use source::Xtc2Source;

use std::path::Path;

/// Why an XTC2 run cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Xtc2Error {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A datagram is malformed.
    #[error("{path}, datagram at byte {offset}{}: {message}", .timestamp.map(|t| format!(" (timestamp {t:#x})")).unwrap_or_default())]
    Corrupt {
        /// The file.
        path: String,
        /// The datagram's first byte.
        offset: u64,
        /// Its timestamp, when its header was read.
        timestamp: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// The run's files do not make a run, or a selection matches nothing.
    #[error("{path}: {message}")]
    Run {
        /// The file or directory.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Xtc2Error {
    fn io(path: &Path, source: std::io::Error) -> Xtc2Error {
        Xtc2Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn corrupt(path: &Path, offset: u64, timestamp: Option<u64>, message: String) -> Xtc2Error {
        Xtc2Error::Corrupt {
            path: path.display().to_string(),
            offset,
            timestamp,
            message,
        }
    }
}
