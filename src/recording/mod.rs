//! Recordings: any event stream captured to files and replayed later as a source.
//!
//! A recording is a directory with one file per recording worker, `worker-<k>.sfrec`,
//! written without coordination. Each file is
//!
//! ```text
//! magic "SHOTFLOWREC\0" | u32 format version | u32 n | n bytes of JSON header
//!   (shotflow version, recording id, worker, peers, schema of the first batch's fields)
//! frames:  u8 1 | u64 batch | u64 ns since the recording started | u32 events
//!          | u64 payload length | u32 CRC-32 of the payload
//!          | u32 CRC-32 of the 32 header bytes before it (format 2) | payload (see `codec`)
//! end:     u8 2 | u64 frames written | u64 batch the sources stopped before (format 2;
//!          u64::MAX when they ran to their end) | u32 n | n bytes of JSON: the events the
//!          worker's sources lost, `[[batch, source, reason, events], …]` (format 3)
//! ```
//!
//! Every frame-header field is checksummed (format 2; format 1 files are still read): one
//! flipped bit in a batch number or a timestamp ends the file's intact frames there instead of
//! pacing a replay by a timestamp 146 years away. `record` also writes `recording.json` when it
//! finishes ([`Manifest`]): with it, a replay refuses a recording with missing, stale or
//! foreign worker files; without it (a recorder that did not finish) it warns with counts.
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
/// The format version this build writes (it reads 1 to 3).
pub const FORMAT_VERSION: u32 = 3;
const FRAME: u8 = 1;
const END: u8 = 2;
/// Bytes of a frame header after its tag, in format 1.
const FRAME_HEADER_V1: usize = 8 + 8 + 4 + 8 + 4;
/// Bytes of a frame header after its tag: format 1's and the CRC-32 of those.
const FRAME_HEADER: usize = FRAME_HEADER_V1 + 4;
/// The manifest file of a finished recording.
pub const MANIFEST: &str = "recording.json";

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
    /// The recording this file belongs to (empty in format 1).
    #[serde(default)]
    pub recording: String,
    /// Recording worker.
    pub worker: usize,
    /// Recording workers in all.
    pub peers: usize,
    /// Fields of the first recorded event: name, dtype, shape.
    pub schema: Vec<(String, String, Vec<usize>)>,
}

/// `recording.json`: what `record` is writing (`complete` false, zero counts, until it
/// finishes) or wrote.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The recording id every worker file's header carries.
    pub recording: String,
    /// Recording workers: files `worker-0000.sfrec` up to this.
    pub workers: usize,
    /// Batches and events written.
    pub batches: u64,
    /// Events written.
    pub events: u64,
    /// The source ran to its end (false: the recording was stopped).
    pub complete: bool,
    /// What was recorded (the source and its options).
    pub source: String,
    /// Fields of the first event: name, dtype, shape.
    pub schema: Vec<(String, String, Vec<usize>)>,
    /// The files of a resumed recording and the batch each one's frames are valid below
    /// (empty: `worker-0000.sfrec` up to `workers`, all valid).
    #[serde(default)]
    pub files: Vec<(String, u64)>,
    /// Events the recorded sources dropped or skipped: source, reason, events. A replay counts
    /// them again, with their batches, so an output made from it says what the run lost.
    #[serde(default)]
    pub losses: Vec<(String, String, u64)>,
}

impl Manifest {
    /// Writes the manifest into `dir` (temporary name, then renamed).
    pub fn write(&self, dir: &std::path::Path) -> Result<(), RecordingError> {
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!(".{MANIFEST}.tmp"));
        let json = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        std::fs::write(&tmp, json)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| RecordingError::Io {
                path: path.display().to_string(),
                source,
            })
    }

    /// The manifest in `dir`, if the recorder finished.
    pub fn read(dir: &std::path::Path) -> Result<Option<Manifest>, RecordingError> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RecordingError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RecordingError::Format {
                path: path.display().to_string(),
                message: format!("not a recording manifest: {e}"),
            })
    }
}
