//! One worker's log of its dataflows, kept from timely's `"timely"` log stream: no
//! hand-maintained list of operators, and nothing the dataflow's code must report.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
use timely::worker::Worker;

/// An operator of the worker's dataflows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Worker-unique id.
    pub id: usize,
    /// Address: the scope's address and the operator's index in it.
    pub addr: Vec<usize>,
    /// Name, as the dataflow's code gave it.
    pub name: String,
    /// Time it spent scheduled.
    pub busy: Duration,
    /// Times it was scheduled.
    pub activations: u64,
}

/// A channel between two operators of one scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Worker-unique id.
    pub id: usize,
    /// The scope it is in.
    pub scope_addr: Vec<usize>,
    /// (operator index in the scope, output port); index 0 is the scope's own boundary.
    pub source: (usize, usize),
    /// (operator index in the scope, input port).
    pub target: (usize, usize),
    /// Records this worker sent on it.
    pub records: i64,
    /// Messages (timely's batches of records) this worker sent on it.
    pub messages: u64,
    /// Whether records went from this worker to another: an exchange, not a pipeline.
    pub crossed: bool,
}

/// What one worker's dataflows are made of and did.
///
/// ```
/// use shotflow::monitor::WorkerLog;
/// use timely::dataflow::operators::{Exchange, Inspect, ToStream};
///
/// let dot = timely::execute_directly(|worker| {
///     let log = WorkerLog::register(worker);
///     worker.dataflow::<u64, _, _>(|scope| {
///         (0..10u64).to_stream(scope).container::<Vec<_>>().exchange(|x| *x).inspect(|_| {});
///     });
///     while worker.step() {}
///     let dot = log.borrow().dot();
///     dot
/// });
/// assert!(dot.contains("Exchange") || dot.contains("Inspect"));
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerLog {
    /// The worker.
    pub worker: usize,
    /// By id: ids are dense per worker, and a log looks an operator up on every schedule.
    operators: Vec<Option<Operator>>,
    channels: BTreeMap<usize, Channel>,
    /// Dataflows that are the runtime's own (stop broadcast, metrics), not the program's:
    /// left out of the graph and the report.
    hidden: BTreeSet<usize>,
    /// Operators scheduled now, since when.
    #[serde(skip)]
    started: Vec<Option<Duration>>,
}

impl WorkerLog {
    /// Registers the log with `worker`'s `"timely"` logging. Do it before the worker builds
    /// its dataflows: operators and channels are logged once, when they are made.
    pub fn register(worker: &mut Worker) -> Rc<RefCell<WorkerLog>> {
        let log = Rc::new(RefCell::new(WorkerLog {
            worker: worker.index(),
            ..WorkerLog::default()
        }));
        let sink = Rc::clone(&log);
        if let Some(mut registry) = worker.log_register() {
            registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
                if let Some(data) = data {
                    let mut log = sink.borrow_mut();
                    for (time, event) in data.iter() {
                        log.absorb(*time, event);
                    }
                }
            });
        }
        log
    }

    fn absorb(&mut self, time: Duration, event: &TimelyEvent) {
        match event {
            TimelyEvent::Operates(o) => {
                if self.operators.len() <= o.id {
                    self.operators.resize(o.id + 1, None);
                }
                self.operators[o.id] = Some(Operator {
                    id: o.id,
                    addr: o.addr.clone(),
                    name: o.name.clone(),
                    busy: Duration::ZERO,
                    activations: 0,
                });
            }
            TimelyEvent::Channels(c) => {
                self.channels.insert(
                    c.id,
                    Channel {
                        id: c.id,
                        scope_addr: c.scope_addr.clone(),
                        source: c.source,
                        target: c.target,
                        records: 0,
                        messages: 0,
                        crossed: false,
                    },
                );
            }
            TimelyEvent::Schedule(s) => match s.start_stop {
                StartStop::Start => {
                    if self.started.len() <= s.id {
                        self.started.resize(s.id + 1, None);
                    }
                    self.started[s.id] = Some(time);
                }
                StartStop::Stop => {
                    let from = self.started.get_mut(s.id).and_then(Option::take);
                    let op = self.operators.get_mut(s.id).and_then(Option::as_mut);
                    if let (Some(from), Some(op)) = (from, op) {
                        op.busy += time.saturating_sub(from);
                        op.activations += 1;
                    }
                }
            },
            TimelyEvent::Messages(m) if m.is_send => {
                if let Some(c) = self.channels.get_mut(&m.channel) {
                    c.records += m.record_count;
                    c.messages += 1;
                    c.crossed |= m.source != m.target;
                }
            }
            _ => {}
        }
    }

    /// The logs of several workers of one run as one: their dataflows are built alike, so
    /// operators and channels match by id; busy times and records add up, and a channel
    /// crossed workers if it did on any of them.
    pub fn merge(logs: &[WorkerLog]) -> WorkerLog {
        let mut merged = logs.first().cloned().unwrap_or_default();
        for log in logs.iter().skip(1) {
            for op in log.operators.iter().flatten() {
                if let Some(Some(m)) = merged.operators.get_mut(op.id) {
                    m.busy += op.busy;
                    m.activations += op.activations;
                }
            }
            for (id, c) in &log.channels {
                if let Some(m) = merged.channels.get_mut(id) {
                    m.records += c.records;
                    m.messages += c.messages;
                    m.crossed |= c.crossed;
                }
            }
        }
        merged.started.clear();
        merged
    }

    /// Leaves dataflow `dataflow` (the runtime's own) out of the graph and the report.
    pub fn hide(&mut self, dataflow: usize) {
        self.hidden.insert(dataflow);
    }

    fn shown(&self, addr: &[usize]) -> bool {
        addr.first().is_none_or(|d| !self.hidden.contains(d))
    }

    /// The operators of the program's dataflows, by id.
    pub fn operators(&self) -> impl Iterator<Item = &Operator> {
        self.operators
            .iter()
            .flatten()
            .filter(|o| self.shown(&o.addr))
    }

    /// The channels of the program's dataflows, by id.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values().filter(|c| self.shown(&c.scope_addr))
    }

    /// Records and messages that reached operator `id` (in) and that it sent (out), over the
    /// channels of this log: `(records in, messages in, records out, messages out)`.
    pub fn flow_of(&self, id: usize) -> (i64, u64, i64, u64) {
        let mut flow = (0, 0, 0, 0);
        for c in self.channels() {
            if self
                .at(&c.scope_addr, c.target.0)
                .is_some_and(|t| t.id == id)
            {
                flow.0 += c.records;
                flow.1 += c.messages;
            }
            if self
                .at(&c.scope_addr, c.source.0)
                .is_some_and(|s| s.id == id)
            {
                flow.2 += c.records;
                flow.3 += c.messages;
            }
        }
        flow
    }

    /// Records sent by the worker's sources: the operators no channel leads into.
    pub fn source_records(&self) -> i64 {
        self.channels()
            .filter(|c| {
                let Some(op) = self.at(&c.scope_addr, c.source.0) else {
                    return false;
                };
                op.addr.len() > 1
                    && !self.channels().any(|d| {
                        self.at(&d.scope_addr, d.target.0)
                            .is_some_and(|t| t.id == op.id)
                    })
            })
            .map(|c| c.records)
            .sum()
    }

    /// The operator at `index` of scope `scope` (index 0 is the scope itself).
    pub fn operator_at(&self, scope: &[usize], index: usize) -> Option<&Operator> {
        self.at(scope, index)
    }

    /// The operator at `index` of scope `scope` (index 0 is the scope itself).
    fn at(&self, scope: &[usize], index: usize) -> Option<&Operator> {
        let mut addr = scope.to_vec();
        if index > 0 {
            addr.push(index);
        }
        self.operators.iter().flatten().find(|o| o.addr == addr)
    }

    /// The dataflow graph in Graphviz's DOT: one node per operator (its name and busy time),
    /// one edge per channel, dashed where records crossed workers (an exchange).
    pub fn dot(&self) -> String {
        self.dot_coloured(None)
    }

    /// [`WorkerLog::dot`], with each operator filled by how busy it was: from white (idle) to
    /// red (busy all of `workers_seconds`, the seconds of all workers together).
    pub fn dot_coloured(&self, workers_seconds: Option<f64>) -> String {
        let mut out = String::from(
            "digraph dataflow {\n  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n",
        );
        for op in self.operators().filter(|o| o.addr.len() > 1) {
            let escaped = op.name.replace('"', "\\\"");
            let busy = op.busy.as_secs_f64();
            let fill = match workers_seconds {
                Some(total) => {
                    let share = (busy / total.max(1e-9)).clamp(0.0, 1.0);
                    let fade = (255.0 * (1.0 - share)).round() as u8;
                    format!(", style=filled, fillcolor=\"#ff{fade:02x}{fade:02x}\"")
                }
                None => String::new(),
            };
            out.push_str(&format!(
                "  op{} [label=\"{escaped}\\n{busy:.3} s busy\"{fill}];\n",
                op.id
            ));
        }
        for c in self.channels() {
            let (Some(a), Some(b)) = (
                self.at(&c.scope_addr, c.source.0),
                self.at(&c.scope_addr, c.target.0),
            ) else {
                continue;
            };
            if a.addr.len() <= 1 || b.addr.len() <= 1 || a.id == b.id {
                continue;
            }
            let style = if c.crossed { "dashed" } else { "solid" };
            out.push_str(&format!(
                "  op{} -> op{} [style={style}, label=\"{}\"];\n",
                a.id, b.id, c.records
            ));
        }
        out.push_str("}\n");
        out
    }
}
