//! The smalldata HDF5 sink: per-event rows and run summaries in the layout psana2's
//! `SmallData` writes, read afterwards with h5py and pandas.
//!
//! ```text
//! rows ─▶ tag with batch ─▶ exchange: batch b to writer b % W ─▶ part writer (per writer worker)
//!                                                                 │ per batch: rows sorted by id,
//!                                                                 │ appended; summary partials
//!                                                                 ▼
//!                                          worker 0: master file (VDS per key, summaries)
//! ```
//!
//! Writer `k` of `W` (default: one per process, since HDF5 takes one lock per process) writes
//! `<stem>_part<k>.h5`: the batches it owns, in batch order, each sorted by event id, as soon as
//! the frontier says the batch is complete. When the run ends, worker 0 writes `<stem>.h5`: one
//! virtual dataset per key whose rows are in event-id order (batch order, then id order),
//! `timestamp` (event id, int64), and `summary/<key>/...`. Missing values hold the key's fill
//! value ([`column::Fill`]) in part rows, in the HDF5 fill property and in the VDS fill alike.
//!
//! Rows may belong to an alignment group ([`Row::in_group`], psana's `align_group`): the
//! group's keys live under `<group>/` with their own `<group>/timestamp`, aligned among the
//! group's events only. Keys with a `var_` path component are ragged: values are concatenated
//! along their first axis, with an aligned `<var_parent>_len` (psana's layout).
//!
//! # Examples
//!
//! ```
//! use shotflow::prelude::*;
//! use shotflow::smalldata::{SmallData, SmallDataExt};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let output = SmallData::new(dir.path().join("run.h5")).stats("pulse_energy");
//! let result = output.result();
//! let config = Synthetic { events: 1000, frame: None, ..Synthetic::default() };
//! execute(&Launch::threads(2), move |worker| {
//!     let output = output.clone();
//!     worker.dataflow(|scope| scope.synthetic(&config).smalldata(output));
//!     Ok::<_, std::convert::Infallible>(())
//! })
//! .unwrap();
//! let result = result.lock().unwrap().clone().expect("worker 0 wrote the master");
//! assert_eq!(result.rows, 1000);
//! let file = hdf5::File::open(dir.path().join("run.h5")).unwrap();
//! let ids = file.dataset("timestamp").unwrap().read_raw::<i64>().unwrap();
//! assert!(ids.windows(2).all(|w| w[0] < w[1]));
//! ```

pub mod column_cache;
mod part_file;
mod row;
mod run_summary;
mod virtual_master;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use timely::dataflow::StreamVec;

pub use column_cache::SchemaError;
pub use part_file::{GroupCounts, GroupSchema, KeySchema, PartSchema};
pub use row::Row;
pub use run_summary::{histogram_with_flows, Reduced, Summary};

use crate::event::Event;
use crate::flow::Batch;
use crate::sink::{in_order, SinkExt};
use writer::{MasterWriter, PartWriter};

/// Why the smalldata output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SmallDataError {
    /// An HDF5 call failed.
    #[error("{file}: {what}: {source}")]
    Hdf5 {
        /// File.
        file: String,
        /// Dataset or operation.
        what: String,
        /// The library's error.
        source: hdf5::Error,
    },
    /// A value does not match its key's schema.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// Event ids within a writer's stream went backwards or repeated.
    #[error("{file}: event {event} after event {previous}: event ids must increase (a source numbered its batches out of event order, or an id repeats)")]
    Order {
        /// Part file.
        file: String,
        /// The offending id.
        event: u64,
        /// The id before it.
        previous: u64,
    },
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Fields under one `var_` parent have different lengths in one event.
    #[error("event {event}: {key:?} has {entries} entries but {other:?} has {other_entries}; fields under one var_ parent must have equal lengths")]
    RaggedLengths {
        /// The event.
        event: u64,
        /// The field.
        key: String,
        /// Its length.
        entries: usize,
        /// The field it disagrees with.
        other: String,
        /// That field's length.
        other_entries: usize,
    },
    /// Appending to a part file failed; what it held before stays readable.
    #[error(
        "{source}; {part} stays readable and holds what was written before the error ({kept})"
    )]
    Append {
        /// The part file.
        part: String,
        /// What it holds (events and last id per group).
        kept: String,
        /// The cause.
        source: Box<SmallDataError>,
    },
    /// A batch was routed to a worker that writes no part file.
    #[error("batch {batch} reached worker {worker}, which writes no part file")]
    NoWriter {
        /// The batch.
        batch: Batch,
        /// The worker.
        worker: usize,
    },
    /// Some writers did not finish their part files.
    #[error("part files {missing:?} were not finished; no master written")]
    Unfinished {
        /// The writers whose parts are missing.
        missing: Vec<usize>,
    },
    /// Two part files hold one key with different types or shapes.
    #[error("key {key:?} is {first} in {first_part} but {then} in {then_part}")]
    PartsDisagree {
        /// The key.
        key: String,
        /// Its type in the first part.
        first: String,
        /// The first part.
        first_part: String,
        /// Its type in the other part.
        then: String,
        /// The other part.
        then_part: String,
    },
    /// A part file holds another number of rows than its batches reported.
    #[error("part file {part} holds {rows} rows of group {group:?} but its batches account for {accounted}")]
    RowsUnaccounted {
        /// The part file.
        part: String,
        /// The group.
        group: Option<String>,
        /// Rows in the file.
        rows: u64,
        /// Rows the batches reported.
        accounted: u64,
    },
}

impl SmallDataError {
    pub(crate) fn hdf5(file: &Path, what: &str, source: hdf5::Error) -> SmallDataError {
        SmallDataError::Hdf5 {
            file: file.display().to_string(),
            what: what.to_string(),
            source,
        }
    }
}

/// What the run wrote, available on worker 0 when the run ends.
#[derive(Clone, Debug)]
pub struct SmallDataResult {
    /// The master file.
    pub master: PathBuf,
    /// Rows (events).
    pub rows: u64,
    /// The summaries, in the order they were requested.
    pub summaries: Vec<(Summary, Reduced)>,
}

/// Configuration of a smalldata output.
#[derive(Clone)]
pub struct SmallData {
    path: PathBuf,
    writers: Option<usize>,
    cache_bytes: usize,
    summaries: Vec<Summary>,
    result: Arc<Mutex<Option<SmallDataResult>>>,
}

impl SmallData {
    /// Output to `path` (the master; parts are `<stem>_part<k>.h5` beside it).
    pub fn new(path: impl Into<PathBuf>) -> SmallData {
        SmallData {
            path: path.into(),
            writers: None,
            cache_bytes: part_file::CACHE_BYTES,
            summaries: Vec::new(),
            result: Arc::default(),
        }
    }

    /// Number of part-file writers (default: one per process).
    pub fn writers(mut self, writers: usize) -> SmallData {
        self.writers = Some(writers.max(1));
        self
    }

    /// Bytes each writer caches before writing to its part file (default 4 MiB): memory is
    /// bounded by this, whatever the run length.
    pub fn cache_bytes(mut self, bytes: usize) -> SmallData {
        self.cache_bytes = bytes;
        self
    }

    /// Adds sum/min/max/mean/count of `key` to the summaries.
    pub fn stats(mut self, key: &str) -> SmallData {
        self.summaries.push(Summary::Stats(key.to_string()));
        self
    }

    /// Adds a histogram of `key` with `bins` bins over `[lo, hi)`.
    pub fn histogram(mut self, key: &str, lo: f64, hi: f64, bins: usize) -> SmallData {
        self.summaries.push(Summary::Histogram {
            key: key.to_string(),
            lo,
            hi,
            bins: bins.max(1),
        });
        self
    }

    /// Where worker 0 puts the result when the run ends.
    pub fn result(&self) -> Arc<Mutex<Option<SmallDataResult>>> {
        Arc::clone(&self.result)
    }

    /// The path of part file `k`.
    pub fn part_path(&self, k: usize) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "smalldata".into());
        self.path.with_file_name(format!("{stem}_part{k}.h5"))
    }
}

/// Attaches a smalldata output to a stream of events or [`Row`]s.
pub trait SmallDataExt {
    /// Writes every item as one row of the smalldata output.
    fn smalldata(self, config: SmallData);
}

impl SmallDataExt for StreamVec<'_, Batch, Event> {
    fn smalldata(self, config: SmallData) {
        use timely::dataflow::operators::vec::Map;
        self.map(Row::from).smalldata(config)
    }
}

impl SmallDataExt for StreamVec<'_, Batch, Row> {
    fn smalldata(self, config: SmallData) {
        let scope = self.scope();
        let peers = scope.peers();
        let local = crate::runtime::workers_per_process().unwrap_or(peers);
        let writers = config
            .writers
            .unwrap_or(peers / local.max(1))
            .clamp(1, peers);
        // Writer k on the first worker of its share, so one-per-process lands on each process.
        let writer_worker = move |k: usize| k * peers / writers;
        let me = scope.index();
        let part = (0..writers)
            .find(|&k| writer_worker(k) == me)
            .map(|k| (k, config.part_path(k)));
        let reports = in_order(
            self,
            "SmallDataWriter",
            Arc::new(move |batch| writer_worker((batch % writers as u64) as usize)),
            PartWriter::new(part, me, &config),
        );
        reports.sink_in_order(
            "SmallDataMaster",
            MasterWriter::new(me == 0, writers, config),
        );
    }
}
