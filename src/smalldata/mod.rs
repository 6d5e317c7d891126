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
//! the batches it owns, in batch order, each sorted by event id, as soon as the frontier says
//! the batch is complete, into segment files that it closes and renames at every commit (every
//! few seconds). Worker 0 then rewrites `<stem>.h5`, which maps every committed segment: one
//! virtual dataset per key whose rows are in event-id order (batch order, then id order),
//! `timestamp` (event id, int64), `summary/<key>/...`, the root attribute `complete`, and
//! `shotflow/` (run metadata). A notebook that reopens the master during the run sees a growing,
//! consistent prefix of the final result. Missing values hold the key's fill value
//! ([`column_cache::Fill`]) in segment rows, in the HDF5 fill property and in the VDS fill
//! alike.
//!
//! **Nothing lost.** A later run never destroys a complete result: its master goes to
//! `<stem>.partial.h5` until it completes. A run stopped by a signal writes a partial master
//! that covers exactly the committed batches, a prefix `0..k`; a crashed run leaves the last
//! one it committed. [`SmallData::resume`] continues either to a result whose datasets are
//! byte-identical to an uninterrupted run's. The files are described in the `layout` module's terms in
//! the README.
//!
//! Rows may belong to an alignment group ([`Row::in_group`], psana's `align_group`): the
//! group's keys live under `<group>/` with their own `<group>/timestamp`, aligned among the
//! group's events only. Keys with a `var_` path component are ragged: values are concatenated
//! along their first axis, with an aligned `<var_parent>_len` (psana's layout). Keys whose last
//! path component starts with `unaligned_` (tjlane/smalldata's) are never backfilled: one row
//! per event that carried them, event ids at `<path>_timestamp`.
//!
//! Saved summaries (psana's `save_summary`) are named values at their own paths: given up
//! front ([`SmallData::save`]) or contributed from the stream ([`Row::saved`],
//! [`SavePerBatch`]) and reduced per batch in batch order.
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
pub mod compaction;
mod layout;
mod manifest;
mod part_file;
mod row;
mod run_summary;
mod save_per_batch;
mod saved;
mod virtual_master;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use timely::dataflow::StreamVec;

pub use column_cache::SchemaError;
pub use compaction::Compaction;
pub use part_file::{GroupCounts, GroupSchema, KeySchema, PartSchema};
pub use row::Row;
pub use run_summary::{histogram_with_flows, Reduced, Summary};
pub use save_per_batch::SavePerBatch;
pub use saved::{Reduce, Saved, SavedError, SavedTotal};

use crate::event::{Event, EventId};
use crate::flow::read_ahead::SourcesEnded;
use crate::flow::Batch;
use crate::sink::{in_order, SinkExt};
use layout::{Layout, Prepared};
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
    /// An `unaligned_` key under a `var_` path: a ragged key is aligned through its `_len`.
    #[error(
        "key {key:?} is both unaligned (unaligned_) and ragged (var_); it can be one or the other"
    )]
    UnalignedRagged {
        /// The key's path.
        key: String,
    },
    /// An alignment group has the path of an `unaligned_` key.
    #[error("{name:?} names both an alignment group and an unaligned_ key; rename one")]
    UnalignedClash {
        /// The path.
        name: String,
    },
    /// Contributions to a saved summary cannot be combined.
    #[error(transparent)]
    Saved(#[from] SavedError),
    /// A saved summary's path is taken.
    #[error("saved summary {name:?} collides with {other}; give it another name")]
    SavedCollides {
        /// The saved summary.
        name: String,
        /// What has that path (or one above or below it).
        other: String,
    },
    /// Appending to a segment failed. The segment is not committed; the output keeps what was.
    #[error(
        "{source} (writing {part}, which held {kept}); the output keeps what it committed before"
    )]
    Append {
        /// The segment file.
        part: String,
        /// What it held (events and last id per group).
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
    /// Some workers ended without saying where their sources stopped.
    #[error(
        "workers {missing:?} did not report the end of their sources; no final master written"
    )]
    Unfinished {
        /// The workers.
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
    /// A master's manifest cannot be used.
    #[error("{master}: {problem}")]
    Manifest {
        /// The master.
        master: String,
        /// What is wrong.
        problem: String,
    },
    /// `--resume` cannot continue the output.
    #[error("cannot resume {master}: {problem}")]
    Resume {
        /// The master.
        master: String,
        /// Why.
        problem: String,
    },
    /// Another run is writing the output.
    #[error("{output} is being written by another run (it holds {lock}); wait for it or choose another output")]
    InUse {
        /// The output.
        output: String,
        /// Its lock file.
        lock: String,
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

/// What the run committed, available on worker 0 after each master it writes: the last one
/// when the run ends (complete, or partial when it was stopped).
#[derive(Clone, Debug)]
pub struct SmallDataResult {
    /// The master file.
    pub master: PathBuf,
    /// Rows (events) of the root group in the master.
    pub rows: u64,
    /// The summaries, in the order they were requested.
    pub summaries: Vec<(Summary, Reduced)>,
    /// The saved summaries contributed during the run ([`Row::saved`]), in order of first
    /// contribution.
    pub saved: Vec<SavedTotal>,
    /// Every batch of the run is in the master.
    pub complete: bool,
    /// Batches `0..batches` are committed (`Batch::MAX` when complete).
    pub batches: Batch,
    /// The last committed event id.
    pub last_event: Option<EventId>,
    /// The files the master maps (names in its directory): segments and compacted files.
    pub files: Vec<String>,
    /// Batches before this were committed by the interrupted run this one resumed.
    pub resumed_from: Batch,
    /// Committed batches that the sources produced again (0 when the sources skip them).
    pub recomputed: u64,
    /// Events dropped or skipped in the committed batches: source, reason, events (reason
    /// [`crate::flow::losses::MISSING_FIELDS`]: events that lack that source's fields).
    pub losses: Vec<(String, String, u64)>,
}

/// Default for [`SmallData::commit_interval`].
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest [`SmallData::commit_interval`].
pub const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Configuration of a smalldata output.
#[derive(Clone)]
pub struct SmallData {
    path: PathBuf,
    writers: Option<usize>,
    cache_bytes: usize,
    summaries: Vec<Summary>,
    saved: Vec<(String, Saved)>,
    commit_interval: Duration,
    durable: bool,
    compaction: Compaction,
    resume: bool,
    fingerprint: Vec<(String, String)>,
    prepared: Arc<OnceLock<Result<Arc<Prepared>, String>>>,
    result: Arc<Mutex<Option<SmallDataResult>>>,
}

impl std::fmt::Debug for SmallData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmallData")
            .field("path", &self.path)
            .field("writers", &self.writers)
            .field("summaries", &self.summaries)
            .field("resume", &self.resume)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl SmallData {
    /// Output to `path` (the master; segment files are written beside it).
    pub fn new(path: impl Into<PathBuf>) -> SmallData {
        SmallData {
            path: path.into(),
            writers: None,
            cache_bytes: part_file::CACHE_BYTES,
            summaries: Vec::new(),
            saved: Vec::new(),
            commit_interval: COMMIT_INTERVAL,
            durable: false,
            compaction: Compaction::default(),
            resume: false,
            fingerprint: Vec::new(),
            prepared: Arc::default(),
            result: Arc::default(),
        }
    }

    /// How often the run commits (default [`COMMIT_INTERVAL`]): writers close their segments
    /// and worker 0 rewrites the master that maps the committed batches. A crash costs at most
    /// the batches since the last commit. The master's rewrite is kept below a tenth of the
    /// run's time, whatever this says, and commits are never closer than
    /// [`MIN_COMMIT_INTERVAL`] (each one closes a segment file per writer).
    pub fn commit_interval(mut self, interval: Duration) -> SmallData {
        self.commit_interval = interval.max(MIN_COMMIT_INTERVAL);
        self
    }

    /// Survive the loss of the node, not only of the process: fsync every segment and master
    /// before it is renamed, and the directory after.
    pub fn durable(mut self, durable: bool) -> SmallData {
        self.durable = durable;
        self
    }

    /// When the run copies committed segments into fewer, larger files, so that the master
    /// and its readers stay fast however long the run (default: [`Compaction::default`]).
    /// Compaction changes which files hold the rows, never the datasets read through the
    /// master.
    pub fn compaction(mut self, policy: Compaction) -> SmallData {
        self.compaction = policy;
        self
    }

    /// Continue the partial result at the output path (or at `<stem>.partial.h5`) instead of
    /// replacing it. Refused when the fingerprint or the summaries differ from the run that
    /// wrote it. Give the run's sources [`SmallData::prepare`]'s batch as
    /// [`Settings::start`](crate::flow::Settings) so that they skip what is committed.
    pub fn resume(mut self, resume: bool) -> SmallData {
        self.resume = resume;
        self
    }

    /// What produced the data (inputs, selection, options) as `name = value` pairs: stored in
    /// the master, compared by [`SmallData::resume`].
    pub fn fingerprint<N: Into<String>, V: ToString>(
        mut self,
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> SmallData {
        self.fingerprint = pairs
            .into_iter()
            .map(|(n, v)| (n.into(), v.to_string()))
            .collect();
        self
    }

    /// Looks at what is at the output path before the run, once per process (`process`: this
    /// process's index; process 0 writes the master, takes the output's lock and removes files
    /// of abandoned runs). Returns the batch the sources should start at: the end of the
    /// committed prefix when resuming, else 0. The sink prepares itself if this is not called.
    ///
    /// # Examples
    ///
    /// An interrupted run resumed: the second run starts at the first uncommitted batch.
    ///
    /// ```
    /// use shotflow::prelude::*;
    /// use shotflow::flow::Settings;
    /// use shotflow::runtime::{execute_with, request_stop, Plan, StopReason};
    /// use shotflow::smalldata::{SmallData, SmallDataExt};
    /// use timely::dataflow::operators::Inspect;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("run.h5");
    /// let config = Synthetic { events: 2000, batch_size: 100, frame: None, ..Synthetic::default() };
    /// let run = |output: SmallData, stop_at: Option<u64>| {
    ///     let settings = Settings { start: output.prepare(0).unwrap(), ..Settings::default() };
    ///     let config = config.clone();
    ///     let result = output.result();
    ///     let _ = execute_with(&Plan::Process { workers: 2 }, settings, move |worker| {
    ///         let output = output.clone();
    ///         worker.dataflow(|scope| {
    ///             scope.synthetic(&config)
    ///                 .inspect(move |e| if Some(e.id) == stop_at { request_stop(StopReason::Requested); })
    ///                 .smalldata(output)
    ///         });
    ///         Ok::<_, std::convert::Infallible>(())
    ///     });
    ///     let result = result.lock().unwrap().clone().unwrap();
    ///     result
    /// };
    /// let first = run(SmallData::new(&path).fingerprint([("seed", 1)]), Some(config.first_id + 1050));
    /// assert!(!first.complete && first.batches >= 1 && first.batches < 20);
    /// let second = run(SmallData::new(&path).fingerprint([("seed", 1)]).resume(true), None);
    /// assert!(second.complete);
    /// assert_eq!((second.rows, second.resumed_from, second.recomputed), (2000, first.batches, 0));
    /// ```
    pub fn prepare(&self, process: usize) -> Result<Batch, SmallDataError> {
        let prepared = self
            .prepared(process)
            .map_err(|problem| SmallDataError::Manifest {
                master: self.path.display().to_string(),
                problem,
            })?;
        Ok(prepared.resumed.as_ref().map_or(0, |m| m.batches))
    }

    fn prepared(&self, process: usize) -> Result<Arc<Prepared>, String> {
        self.prepared
            .get_or_init(|| {
                layout::prepare_once(
                    &Layout::new(&self.path),
                    self.resume,
                    &self.fingerprint,
                    &self.summaries,
                    process == 0,
                )
                .map_err(|e| e.to_string())
            })
            .clone()
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

    /// Saves `value` at `name` in the master (psana's `save_summary` of a value computed up
    /// front): a number, an array or a string, written by worker 0 into every master. Nested
    /// names make groups (`"calibration/gain"`). Values contributed during the run are
    /// [`Row::saved`]. A later call with the same name replaces the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use shotflow::smalldata::SmallData;
    ///
    /// let output = SmallData::new("run.h5")
    ///     .save("n_workers", 4u64)
    ///     .save("command", "shotflow demo --workers 4")
    ///     .save("calibration/gain", vec![1.0f64, 0.98]);
    /// ```
    pub fn save(mut self, name: &str, value: impl Into<Saved>) -> SmallData {
        let name = name.trim_matches('/').to_string();
        self.saved.retain(|(n, _)| *n != name);
        self.saved.push((name, value.into()));
        self
    }

    /// Where worker 0 puts the result when the run ends.
    pub fn result(&self) -> Arc<Mutex<Option<SmallDataResult>>> {
        Arc::clone(&self.result)
    }

    /// Where this run's master is until the run completes: the output path, or
    /// `<stem>.partial.h5` beside it while a complete result is at the output path.
    pub fn partial_path(&self) -> PathBuf {
        Layout::new(&self.path).partial()
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
        let prepared = match config.prepared(me / local.max(1)) {
            Ok(prepared) => prepared,
            Err(e) => {
                // The stages are still built: every worker must build the same dataflow.
                crate::runtime::fail(format!("smalldata output {}: {e}", config.path.display()));
                Arc::new(Prepared::failed(&config.path))
            }
        };
        let writer = (0..writers).find(|&k| writer_worker(k) == me);
        let reports = in_order(
            self,
            "SmallDataWriter",
            Arc::new(move |batch| writer_worker((batch % writers as u64) as usize)),
            PartWriter::new(
                writer,
                me,
                &config,
                Arc::clone(&prepared),
                SourcesEnded::new(&scope),
                crate::flow::Losses::new(&scope),
            ),
        );
        reports.sink_in_order(
            "SmallDataMaster",
            MasterWriter::new(me == 0, writers, peers, config, prepared),
        );
    }
}
