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
//! use shotflow::sink::smalldata::{SmallData, SmallDataExt};
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

pub mod column;
mod master;
pub mod part;
pub mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

pub use column::SchemaError;
pub use part::{GroupCounts, GroupSchema, KeySchema, PartSchema};
pub use summary::{Reduced, Summary};

use crate::event::{Event, Key};
use crate::runtime::fail;
use crate::sink::Batch;
use part::PartWriter;

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
    /// Anything else.
    #[error("{0}")]
    Other(String),
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
            cache_bytes: part::CACHE_BYTES,
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

/// One row of the smalldata output: an event's fields, in the root group or in an alignment
/// group (psana's `align_group`) with its own `timestamp`, so a low-rate detector is not padded
/// to the high-rate event count.
///
/// # Examples
///
/// ```
/// use shotflow::event::{Event, Key};
/// use shotflow::sink::smalldata::Row;
///
/// let fast = Row::from(Event::new(7).with(Key::new("i0"), 1.0));
/// let slow = Row::in_group("andor", Event::new(7).with(Key::new("spectrum"), vec![0u16; 4]));
/// assert_eq!(fast.group, None);
/// assert_eq!(slow.group.unwrap().name(), "andor");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The alignment group (`None`: the root).
    pub group: Option<Key>,
    /// The event id and fields.
    pub event: Event,
}

impl Row {
    /// A row of alignment group `group`.
    pub fn in_group(group: &str, event: Event) -> Row {
        Row {
            group: Some(Key::new(group)),
            event,
        }
    }
}

impl From<Event> for Row {
    fn from(event: Event) -> Row {
        Row { group: None, event }
    }
}

impl crate::event::HasEventId for Row {
    fn event_id(&self) -> crate::event::EventId {
        self.event.id
    }
}

/// What writers tell worker 0.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Report {
    Block {
        batch: Batch,
        writer: usize,
        counts: Vec<GroupCounts>,
        partials: Vec<Reduced>,
    },
    Part {
        writer: usize,
        schema: PartSchema,
    },
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

/// Merges rows of one group with the same event id (sorted, so they are adjacent): later
/// values win, as psana merges repeated calls for one timestamp.
fn merge_same_event(rows: Vec<Row>) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    for row in rows {
        match out.last_mut() {
            Some(last) if last.group == row.group && last.event.id == row.event.id => {
                for (key, value) in row.event.fields() {
                    last.event.set(*key, value.clone());
                }
            }
            _ => out.push(row),
        }
    }
    out
}

impl SmallDataExt for StreamVec<'_, Batch, Row> {
    fn smalldata(self, config: SmallData) {
        let peers = self.scope().peers();
        let local = crate::runtime::workers_per_process().unwrap_or(peers);
        let writers = config
            .writers
            .unwrap_or(peers / local.max(1))
            .clamp(1, peers);
        // Writer k on the first worker of its share, so one-per-process lands on each process.
        let writer_worker = move |k: usize| k * peers / writers;
        let tagged = self.unary(Pipeline, "SmallDataTag", |_, _| {
            move |input, output| {
                input.for_each_time(|time, data| {
                    let batch = *time.time();
                    output
                        .session(&time)
                        .give_iterator(data.flat_map(|d| d.drain(..)).map(|r| (batch, r)));
                })
            }
        });
        let summaries = config.summaries.clone();
        let cfg = config.clone();
        let progress = crate::source::read_ahead::SinkProgress::new(&tagged.scope());
        let reports = tagged.unary_frontier(
            Exchange::new(move |(batch, _): &(Batch, Row)| {
                writer_worker((*batch % writers as u64) as usize) as u64
            }),
            "SmallDataWriter",
            move |capability, _info| {
                let mut capability = Some(capability);
                let mut pending: BTreeMap<Batch, Vec<Row>> = BTreeMap::new();
                let mut writer: Option<(usize, PartWriter)> = None;
                let mut started = false;
                move |(input, frontier), output| {
                    input.for_each(|time, data| {
                        pending
                            .entry(*time.time())
                            .or_default()
                            .extend(data.drain(..).map(|(_, r)| r));
                    });
                    let Some(cap) = capability.as_mut() else {
                        pending.clear();
                        return;
                    };
                    if !started {
                        started = true;
                        let me = crate::runtime::current_worker().unwrap_or(0);
                        if let Some(k) = (0..writers).find(|&k| writer_worker(k) == me) {
                            match PartWriter::create(&cfg.part_path(k), cfg.cache_bytes) {
                                Ok(w) => writer = Some((k, w)),
                                Err(e) => {
                                    fail(format!("smalldata: {e}"));
                                    capability = None;
                                    return;
                                }
                            }
                        }
                    }
                    let done_upto = frontier.frontier().first().copied();
                    progress.report(done_upto);
                    let mut failed = false;
                    let mut session = output.session(&*cap);
                    while let Some(entry) = pending.first_entry() {
                        if done_upto.is_some_and(|f| *entry.key() >= f) {
                            break;
                        }
                        let (batch, mut rows) = entry.remove_entry();
                        // Stable: rows of one event keep their production order for the merge.
                        rows.sort_by_key(|r| r.event.id);
                        let rows = merge_same_event(rows);
                        let Some((k, part)) = writer.as_mut() else {
                            fail(format!(
                                "smalldata: batch {batch} reached a worker without a writer"
                            ));
                            failed = true;
                            break;
                        };
                        let counts = match part.append(&rows) {
                            Ok(counts) => counts,
                            Err(e) => {
                                let kept = part.written();
                                fail(format!(
                                "smalldata: {e}; {} stays readable and holds what was written before the error ({kept})",
                                cfg.part_path(*k).display()
                            ));
                                writer = None;
                                failed = true;
                                break;
                            }
                        };
                        let partials = summaries
                            .iter()
                            .map(|s| Reduced::of_batch(s, &rows))
                            .collect();
                        session.give(Report::Block {
                            batch,
                            writer: *k,
                            counts,
                            partials,
                        });
                    }
                    if failed {
                        drop(session);
                        capability = None;
                        return;
                    }
                    match done_upto {
                        Some(t) => {
                            drop(session);
                            if *cap.time() < t {
                                cap.downgrade(&t);
                            }
                        }
                        None => {
                            if let Some((k, part)) = writer.take() {
                                match part.finish() {
                                    Ok(schema) => session.give(Report::Part { writer: k, schema }),
                                    Err(e) => fail(format!("smalldata: {e}")),
                                }
                            }
                            drop(session);
                            capability = None;
                        }
                    }
                }
            },
        );
        let summaries = config.summaries.clone();
        let mut blocks: Vec<master::Block> = Vec::new();
        let mut partials: BTreeMap<Batch, Vec<Reduced>> = BTreeMap::new();
        let mut parts: BTreeMap<usize, PartSchema> = BTreeMap::new();
        // Every report is routed to worker 0; the others only see their (empty) input end.
        let mut done = self_is_master(&reports);
        reports.sink(
            Exchange::new(|_: &Report| 0),
            "SmallDataMaster",
            move |(input, frontier)| {
                input.for_each(|_, data| {
                    for report in data.drain(..) {
                        match report {
                            Report::Block {
                                batch,
                                writer,
                                counts,
                                partials: p,
                            } => {
                                blocks.push(master::Block {
                                    batch,
                                    writer,
                                    counts,
                                });
                                partials.insert(batch, p);
                            }
                            Report::Part { writer, schema } => {
                                parts.insert(writer, schema);
                            }
                        }
                    }
                });
                if done || !frontier.is_empty() || crate::runtime::aborted() {
                    return;
                }
                done = true;
                if parts.len() != writers {
                    let missing: Vec<usize> =
                        (0..writers).filter(|k| !parts.contains_key(k)).collect();
                    fail(format!(
                        "smalldata: part files {missing:?} were not finished; no master written"
                    ));
                    return;
                }
                let mut totals: Vec<(Summary, Reduced)> = summaries
                    .iter()
                    .map(|s| (s.clone(), Reduced::empty(s)))
                    .collect();
                for batch_partials in partials.values() {
                    for ((_, total), partial) in totals.iter_mut().zip(batch_partials) {
                        total.combine(partial);
                    }
                }
                let parts: Vec<PartSchema> = std::mem::take(&mut parts).into_values().collect();
                match master::write_master(
                    &config.path,
                    &parts,
                    std::mem::take(&mut blocks),
                    &totals,
                ) {
                    Ok(rows) => {
                        remove_stale_parts(&config, writers);
                        *config.result.lock().unwrap() = Some(SmallDataResult {
                            master: config.path.clone(),
                            rows,
                            summaries: totals,
                        });
                    }
                    Err(e) => fail(format!("smalldata: {e}")),
                }
            },
        );
    }
}

fn self_is_master(reports: &StreamVec<'_, Batch, Report>) -> bool {
    reports.scope().index() != 0
}

/// Part files of an earlier run with more writers would be mistaken for this run's.
fn remove_stale_parts(config: &SmallData, writers: usize) {
    let mut k = writers;
    while config.part_path(k).exists() {
        let _ = std::fs::remove_file(config.part_path(k));
        k += 1;
    }
}
