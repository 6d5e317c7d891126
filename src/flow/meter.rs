//! What this worker's sources and sinks did, counted as they go: batches and events produced,
//! bytes read and written, time held back by the read-ahead window, and losses by reason.
//!
//! The counters are per worker thread (a worker is one thread), so counting is a plain add with
//! no lock or atomic on the hot path. [`crate::monitor`] reads them a few times a second and
//! carries them to process 0, where the progress bar, the metrics and the dashboard show them.
//! Every shotflow source counts through [`crate::source::source_loop`]; a source or sink of a
//! user's own adds its bytes with [`read`] and [`written`].

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One worker's counts since its run started.
///
/// # Examples
///
/// ```
/// use shotflow::flow::meter;
///
/// meter::reset();
/// meter::read(4096);
/// meter::written(100);
/// let counts = meter::counters();
/// assert_eq!((counts.bytes_read, counts.bytes_written), (4096, 100));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Batches the worker's sources produced.
    pub batches: u64,
    /// Records (events, trains) the worker's sources produced.
    pub events: u64,
    /// Batches the worker's sources will produce in all (0: not known, as for a live stream).
    pub planned_batches: u64,
    /// Events of the whole run, as a source announced them on worker 0 (0: not known).
    pub expected_events: u64,
    /// What the sources' records are ("trains", "events"), as the source announced it.
    pub unit: String,
    /// Bytes the worker's sources read (array payloads, as delivered).
    pub bytes_read: u64,
    /// Bytes the worker's sinks wrote.
    pub bytes_written: u64,
    /// Per source operator, nanoseconds it waited for the sinks (back-pressure).
    pub held_back_ns: BTreeMap<String, u64>,
    /// Sources waiting for the sinks right now.
    pub held_now: u32,
    /// Events dropped or skipped, by `"source: reason"`.
    pub losses: BTreeMap<String, u64>,
}

thread_local! {
    static COUNTERS: RefCell<Counters> = RefCell::new(Counters::default());
    /// Whether a source of this worker ended since the runtime last looked (it then sends
    /// the worker's figures at once rather than at the next tick).
    static SOURCE_ENDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A source of this worker has ended.
pub(crate) fn source_ended() {
    SOURCE_ENDED.with(|e| e.set(true));
}

/// Whether a source of this worker ended since the last call.
pub fn take_source_ended() -> bool {
    SOURCE_ENDED.with(|e| e.replace(false))
}

fn with<R>(f: impl FnOnce(&mut Counters) -> R) -> R {
    COUNTERS.with(|c| f(&mut c.borrow_mut()))
}

/// Starts this worker's counts from zero (the runtime does it when a worker starts).
pub fn reset() {
    with(|c| *c = Counters::default());
}

/// This worker's counts so far.
pub fn counters() -> Counters {
    with(|c| c.clone())
}

/// Counts `bytes` read by a source of this worker.
pub fn read(bytes: u64) {
    with(|c| c.bytes_read += bytes);
}

/// Counts `bytes` written by a sink of this worker.
pub fn written(bytes: u64) {
    with(|c| c.bytes_written += bytes);
}

/// Announces that the run has `count` records in all, each a `unit` ("trains", "events"), for
/// the progress bar's total. Only worker 0's announcement counts, so every worker's source may
/// make it.
pub fn expect(worker: usize, count: u64, unit: &str) {
    if worker == 0 {
        with(|c| {
            c.expected_events += count;
            if c.unit.is_empty() {
                c.unit = unit.to_string();
            }
        });
    }
}

/// A source of this worker will produce `batches` batches.
pub(crate) fn plan(batches: u64) {
    with(|c| c.planned_batches += batches);
}

/// A source of this worker produced one batch of `events` records.
pub(crate) fn produced(events: u64) {
    with(|c| {
        c.batches += 1;
        c.events += events;
    });
}

/// A source of this worker starts (`true`) or stops (`false`) waiting for the sinks.
pub(crate) fn held(waiting: bool) {
    with(|c| {
        if waiting {
            c.held_now += 1;
        } else {
            c.held_now = c.held_now.saturating_sub(1);
        }
    });
}

/// Source operator `source` waited `ns` nanoseconds for the sinks.
pub(crate) fn held_back(source: &str, ns: u64) {
    with(|c| {
        if let Some(total) = c.held_back_ns.get_mut(source) {
            *total += ns;
        } else {
            c.held_back_ns.insert(source.to_string(), ns);
        }
    });
}

/// `events` lost by `source` for `reason`.
pub(crate) fn lost(source: &str, reason: &str, events: u64) {
    with(|c| *c.losses.entry(format!("{source}: {reason}")).or_default() += events);
}
