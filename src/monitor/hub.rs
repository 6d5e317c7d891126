//! Process 0's view of the whole run: the latest snapshot of every worker of every process,
//! each worker's event count over time, and the latest published plots. The progress bar, the
//! metrics, the dashboard and the end-of-run report all read from here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::log::WorkerLog;
use super::publish::Plot;
use super::snapshot::Snapshot;
use crate::flow::meter::Counters;

/// How many points of each worker's event count the hub keeps (at 4 snapshots a second, the
/// last ten minutes).
const HISTORY: usize = 2400;

/// Where the whole run stands, summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Seconds since the run started.
    pub seconds: f64,
    /// Records the sources produced.
    pub events: u64,
    /// Records of the whole run, when a source announced them (0: not known).
    pub expected_events: u64,
    /// What a record is: "trains" for a EuXFEL run, "events" otherwise.
    pub unit: String,
    /// Batches the sources produced.
    pub batches: u64,
    /// Batches of the whole run, when every source knows its own (0: not known).
    pub planned_batches: u64,
    /// Share of the run done, 0–1, when the total is known.
    pub fraction: Option<f64>,
    /// Events per second over the last few seconds.
    pub events_per_second: f64,
    /// Seconds left at the recent pace, when the total is known.
    pub eta_seconds: Option<f64>,
    /// Bytes the sources read.
    pub bytes_read: u64,
    /// Bytes the sinks wrote.
    pub bytes_written: u64,
    /// Whether some source waits for the sinks right now (back-pressure).
    pub held: bool,
    /// Events dropped or skipped, all reasons together.
    pub lost: u64,
    /// Workers that have reported.
    pub workers: usize,
    /// Whether the run has ended.
    pub complete: bool,
}

/// The end-of-run figures that go into an output file beside its loss accounting.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Seconds since the run started.
    pub seconds: f64,
    /// Each operator of the program's dataflows: name and busy seconds summed over workers.
    pub operators: Vec<(String, f64)>,
    /// Each worker: (worker, process, events its sources produced, seconds it ran).
    pub workers: Vec<(usize, usize, u64, f64)>,
    /// Bytes the sources read.
    pub bytes_read: u64,
    /// Bytes the sinks wrote.
    pub bytes_written: u64,
    /// Seconds the sources waited for the sinks, summed over sources and workers.
    pub held_back_seconds: f64,
}

#[derive(Default)]
struct State {
    workers: BTreeMap<usize, Snapshot>,
    /// Per worker, (seconds, events) at each snapshot.
    history: BTreeMap<usize, VecDeque<(f64, u64)>>,
    /// Latest plot of each name, and how many times it was replaced.
    plots: BTreeMap<String, (Plot, u64)>,
}

/// Process 0's view of the run.
///
/// # Examples
///
/// ```
/// use shotflow::monitor::Hub;
///
/// let hub = Hub::new(2);
/// assert_eq!(hub.progress().events, 0);
/// assert!(!hub.progress().complete);
/// hub.close();
/// assert!(hub.progress().complete);
/// ```
pub struct Hub {
    peers: usize,
    started: Instant,
    state: Mutex<State>,
    closed: AtomicBool,
}

impl Hub {
    /// A hub for a run of `peers` workers, starting now.
    pub fn new(peers: usize) -> Hub {
        Hub {
            peers,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            closed: AtomicBool::new(false),
        }
    }

    /// Workers of the run.
    pub fn peers(&self) -> usize {
        self.peers
    }

    /// Seconds since the run started.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Takes in a worker's snapshot.
    pub(crate) fn absorb(&self, mut snapshot: Snapshot) {
        let now = self.seconds();
        let mut state = self.state.lock().unwrap();
        for (name, plot) in std::mem::take(&mut snapshot.plots) {
            let entry = state.plots.entry(name).or_insert((plot.clone(), 0));
            entry.0 = plot;
            entry.1 += 1;
        }
        let history = state.history.entry(snapshot.worker).or_default();
        history.push_back((now, snapshot.counters.events));
        if history.len() > HISTORY {
            history.pop_front();
        }
        state.workers.insert(snapshot.worker, snapshot);
    }

    /// Replaces the logs of this process's workers by their final ones (more recent than their
    /// last snapshot when the run failed).
    pub(crate) fn final_logs(&self, logs: Vec<WorkerLog>) {
        let mut state = self.state.lock().unwrap();
        for log in logs {
            if let Some(s) = state.workers.get_mut(&log.worker) {
                s.log = log;
            }
        }
    }

    /// The run has ended: what readers see now is final.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether the run has ended.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The latest snapshot of every worker that reported, by worker.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.state
            .lock()
            .unwrap()
            .workers
            .values()
            .cloned()
            .collect()
    }

    /// Every worker's log merged into one ([`WorkerLog::merge`]).
    pub fn merged_log(&self) -> WorkerLog {
        let state = self.state.lock().unwrap();
        let logs: Vec<WorkerLog> = state.workers.values().map(|s| s.log.clone()).collect();
        WorkerLog::merge(&logs)
    }

    /// The counters of all workers added up.
    pub fn totals(&self) -> Counters {
        let state = self.state.lock().unwrap();
        let mut total = Counters::default();
        for s in state.workers.values() {
            let c = &s.counters;
            total.batches += c.batches;
            total.events += c.events;
            total.planned_batches += c.planned_batches;
            total.expected_events = total.expected_events.max(c.expected_events);
            if total.unit.is_empty() {
                total.unit = c.unit.clone();
            }
            total.bytes_read += c.bytes_read;
            total.bytes_written += c.bytes_written;
            total.held_now += c.held_now;
            for (k, v) in &c.held_back_ns {
                *total.held_back_ns.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &c.losses {
                *total.losses.entry(k.clone()).or_default() += v;
            }
        }
        total
    }

    /// Events per second of `worker` over the last `window` seconds of its history.
    fn rate(history: &VecDeque<(f64, u64)>, window: f64) -> f64 {
        let Some(&(t1, e1)) = history.back() else {
            return 0.0;
        };
        let (t0, e0) = history
            .iter()
            .find(|(t, _)| *t >= t1 - window)
            .copied()
            .unwrap_or((t1, e1));
        if t1 > t0 {
            e1.saturating_sub(e0) as f64 / (t1 - t0)
        } else {
            0.0
        }
    }

    /// Each worker's events per second over time: `(seconds, rate)` points per worker.
    pub fn rates(&self) -> BTreeMap<usize, Vec<(f64, f64)>> {
        let state = self.state.lock().unwrap();
        state
            .history
            .iter()
            .map(|(w, h)| {
                let points = h
                    .iter()
                    .zip(h.iter().skip(1))
                    .map(|((t0, e0), (t1, e1))| {
                        let dt = (t1 - t0).max(1e-3);
                        (*t1, e1.saturating_sub(*e0) as f64 / dt)
                    })
                    .collect();
                (*w, points)
            })
            .collect()
    }

    /// Each worker's recent events per second.
    pub fn recent_rates(&self) -> BTreeMap<usize, f64> {
        let state = self.state.lock().unwrap();
        state
            .history
            .iter()
            .map(|(w, h)| (*w, Hub::rate(h, 3.0)))
            .collect()
    }

    /// Where the run stands.
    pub fn progress(&self) -> Progress {
        let totals = self.totals();
        // max: an empty sum is -0.0, which would print as such.
        let rate: f64 = self.recent_rates().values().sum::<f64>().max(0.0);
        let workers = self.state.lock().unwrap().workers.len();
        let fraction = if totals.expected_events > 0 {
            Some(totals.events as f64 / totals.expected_events as f64)
        } else if totals.planned_batches > 0 && workers == self.peers {
            Some(totals.batches as f64 / totals.planned_batches as f64)
        } else {
            None
        }
        .map(|f| f.clamp(0.0, 1.0));
        let eta_seconds = fraction.and_then(|f| {
            let left = if totals.expected_events > 0 {
                totals.expected_events.saturating_sub(totals.events) as f64
            } else {
                (1.0 - f) * totals.events as f64 / f.max(1e-9)
            };
            (rate > 0.0).then(|| left / rate)
        });
        Progress {
            seconds: self.seconds(),
            events: totals.events,
            expected_events: totals.expected_events,
            unit: if totals.unit.is_empty() {
                "events".to_string()
            } else {
                totals.unit.clone()
            },
            batches: totals.batches,
            planned_batches: totals.planned_batches,
            fraction,
            events_per_second: rate,
            eta_seconds,
            bytes_read: totals.bytes_read,
            bytes_written: totals.bytes_written,
            held: totals.held_now > 0,
            lost: totals.losses.values().sum(),
            workers,
            complete: self.closed(),
        }
    }

    /// The figures an output keeps of its run ([`Figures`]), as they stand now.
    pub fn figures(&self) -> Figures {
        let totals = self.totals();
        let merged = self.merged_log();
        Figures {
            seconds: self.seconds(),
            operators: merged
                .operators()
                .filter(|o| o.addr.len() > 1)
                .map(|o| (o.name.clone(), o.busy.as_secs_f64()))
                .collect(),
            workers: self
                .snapshots()
                .iter()
                .map(|s| (s.worker, s.process, s.counters.events, s.seconds))
                .collect(),
            bytes_read: totals.bytes_read,
            bytes_written: totals.bytes_written,
            held_back_seconds: totals.held_back_ns.values().sum::<u64>() as f64 * 1e-9,
        }
    }

    /// The latest plot of each name, with how many times it was published.
    pub fn plots(&self) -> Vec<(String, Plot, u64)> {
        let state = self.state.lock().unwrap();
        state
            .plots
            .iter()
            .map(|(n, (p, v))| (n.clone(), p.clone(), *v))
            .collect()
    }

    /// The latest plot named `name`.
    pub fn plot(&self, name: &str) -> Option<Plot> {
        let state = self.state.lock().unwrap();
        state.plots.get(name).map(|(p, _)| p.clone())
    }
}
