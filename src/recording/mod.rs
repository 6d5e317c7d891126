//! Recordings: any event stream captured to files and replayed later as a source.
//!
//! A recording is a directory with one file per recording worker, `worker-<k>.sfrec`,
//! written without coordination. Each file is
//!
//! ```text
//! magic "SHOTFLOWREC\0" | u32 format version | u32 n | n bytes of JSON header
//!   (shotflow version, worker, peers, schema of the first batch's fields)
//! frames:  u8 1 | u64 batch | u64 ns since the recording started | u32 events
//!          | u64 payload length | u32 CRC-32 of the payload | payload (see `codec`)
//! end:     u8 2 | u64 frames written
//! ```
//!
//! all little-endian. Reading indexes every file's frames by batch; a file cut short (a crash
//! mid-write), a bad checksum or a missing end marker ends that file at its last intact frame
//! with a warning: a replay never hangs and never yields a half frame. timely's own capture
//! files would hang on truncation, so they are not the archive format.
//!
//! Replay is a source like any other, on any number of workers (batch `i` of the recording on
//! worker `i % peers`), as fast as possible or paced at the recorded rate, optionally scaled.

mod codec;
mod recorder;
mod replay;

pub use recorder::{RecordExt, Recorder};
pub use replay::{Pace, Recording, ReplaySource};

/// The file magic.
pub const MAGIC: &[u8; 12] = b"SHOTFLOWREC\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const FRAME: u8 = 1;
const END: u8 = 2;
/// Bytes of a frame header after its tag.
const FRAME_HEADER: usize = 8 + 8 + 4 + 8 + 4;

/// Why a recording could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a recording, or one of an unknown version.
    #[error("{path}: {message}")]
    Format {
        /// Path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The JSON header of a recording file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// shotflow version that wrote the file.
    pub shotflow: String,
    /// Recording worker.
    pub worker: usize,
    /// Recording workers in all.
    pub peers: usize,
    /// Fields of the first recorded event: name, dtype, shape.
    pub schema: Vec<(String, String, Vec<usize>)>,
}
