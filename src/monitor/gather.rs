//! How the metrics reach process 0: every worker takes a snapshot of its log, counters and
//! published plots four times a second, from the runtime's stepping loop.
//!
//! * A worker of process 0 puts it straight into the process's [`Hub`] (one short lock).
//! * In a run of several processes, the other processes' workers send theirs to worker 0
//!   through a small dataflow of the runtime's own, over timely's own connections: no port, no
//!   shared file, no clock agreement, however the processes were started (`--processes`,
//!   mpirun, srun). Its source holds its capability until the program's dataflows on the worker
//!   are gone, then sends a last snapshot and ends, so the hub ends the run with every worker's
//!   final figures.
//!
//! A run of one process builds no such dataflow: it is not needed there, and with one beside
//! the program's the pipeline bench at 2 workers ran 5–9 % slower with twice the context
//! switches, in measurements this machine's noise made hard to trust.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::scheduling::Activator;
use timely::worker::Worker;

use super::hub::Hub;
use super::log::WorkerLog;
use super::publish::take_published;
use super::snapshot::Snapshot;
use crate::flow::meter;

/// How often each worker takes its snapshot.
pub const EVERY: Duration = Duration::from_millis(250);

/// The metrics dataflow of a worker outside process 0.
struct Remote {
    /// Its source, which sends the outbox.
    activator: Activator,
    /// Snapshots waiting to be sent.
    outbox: Rc<RefCell<Vec<Snapshot>>>,
    /// The dataflows of the runtime's own on this worker (stop broadcast, this one).
    own: Vec<usize>,
}

struct Gathering {
    hub: Arc<Hub>,
    log: Rc<RefCell<WorkerLog>>,
    worker: usize,
    process: usize,
    started: Instant,
    taken: Instant,
    remote: Option<Remote>,
    finished: bool,
}

impl Gathering {
    fn snapshot(&self, last: bool) -> Snapshot {
        Snapshot {
            worker: self.worker,
            process: self.process,
            seconds: self.started.elapsed().as_secs_f64(),
            log: self.log.borrow().clone(),
            counters: meter::counters(),
            plots: take_published(),
            last,
        }
    }

    /// Takes a snapshot and delivers it: into the hub on process 0, into the outbox elsewhere.
    fn deliver(&mut self, last: bool) {
        self.taken = Instant::now();
        let snapshot = self.snapshot(last);
        match &self.remote {
            Some(remote) if self.process != 0 => remote.outbox.borrow_mut().push(snapshot),
            _ => self.hub.absorb(snapshot),
        }
        if let Some(remote) = &self.remote {
            // It sends the outbox, or ends once this worker has finished.
            remote.activator.activate();
        }
    }
}

thread_local! {
    static GATHERING: RefCell<Option<Gathering>> = const { RefCell::new(None) };
}

/// The figures of the run this worker belongs to, as its hub has them now, with this worker's
/// own taken now: complete on process 0, `None` elsewhere and outside a monitored run.
pub fn current_figures() -> Option<super::hub::Figures> {
    let hub = GATHERING.with(|g| {
        let mut g = g.borrow_mut();
        let g = g.as_mut()?;
        if g.process != 0 {
            return None;
        }
        let mut snapshot = g.snapshot(false);
        // The plots stay for the next regular snapshot.
        for (name, plot) in std::mem::take(&mut snapshot.plots) {
            super::publish::publish(&name, plot);
        }
        g.hub.absorb(snapshot);
        Some(Arc::clone(&g.hub))
    })?;
    Some(hub.figures()).filter(|f| !f.workers.is_empty())
}

/// Starts gathering `worker`'s figures into `hub`: call it on every worker of the run, after
/// the runtime's other dataflows (`own`) and before the program's. With several processes
/// (`processes > 1`) it builds the metrics dataflow that carries the other processes' figures.
pub(crate) fn install(
    worker: &mut Worker,
    log: Rc<RefCell<WorkerLog>>,
    hub: Arc<Hub>,
    process: usize,
    processes: usize,
    mut own: Vec<usize>,
) {
    meter::reset();
    take_published();
    let remote = (processes > 1).then(|| {
        own.push(worker.next_dataflow_index());
        let outbox: Rc<RefCell<Vec<Snapshot>>> = Rc::default();
        let activator = dataflow(worker, Rc::clone(&outbox), Arc::clone(&hub));
        Remote {
            activator,
            outbox,
            own: own.clone(),
        }
    });
    for d in &own {
        log.borrow_mut().hide(*d);
    }
    let now = Instant::now();
    GATHERING.with(|g| {
        *g.borrow_mut() = Some(Gathering {
            hub,
            log,
            worker: worker.index(),
            process,
            started: now,
            taken: now,
            remote,
            finished: false,
        })
    });
}

/// The metrics dataflow: each worker's source sends its outbox to worker 0, whose sink puts it
/// into the hub. Returns the source's activator.
fn dataflow(worker: &mut Worker, outbox: Rc<RefCell<Vec<Snapshot>>>, hub: Arc<Hub>) -> Activator {
    worker.dataflow::<u64, _, _>(|scope| {
        let mut handle = None;
        let snapshots = source::<_, CapacityContainerBuilder<Vec<Snapshot>>, _, _>(
            scope,
            "MetricsSend",
            |capability, info| {
                let activator = scope.activator_for(info.address);
                handle = Some(activator);
                let mut capability = Some(capability);
                move |output| {
                    let Some(cap) = capability.as_ref() else {
                        return;
                    };
                    let mut last = false;
                    for snapshot in outbox.borrow_mut().drain(..) {
                        last |= snapshot.last;
                        output.session(cap).give(snapshot);
                    }
                    // Process 0's workers have nothing to send; they end with the program.
                    if last || GATHERING.with(|g| g.borrow().as_ref().is_none_or(|g| g.finished)) {
                        capability = None;
                    }
                }
            },
        );
        snapshots.sink(
            Exchange::new(|_: &Snapshot| 0u64),
            "MetricsReceive",
            move |(input, _)| {
                input.for_each(|_, data| {
                    for snapshot in data.drain(..) {
                        hub.absorb(snapshot);
                    }
                });
            },
        );
        handle.expect("the source was built")
    })
}

/// Whether this worker gathers figures and its program still runs.
pub(crate) fn gathering() -> bool {
    GATHERING.with(|g| g.borrow().as_ref().is_some_and(|g| !g.finished))
}

/// The runtime's stepping loop calls this between steps (at most once a millisecond): a
/// snapshot every [`EVERY`], one at once when a source of the worker ended, and the last one
/// once only the runtime's own dataflows are left of `installed()`.
pub(crate) fn tick(installed: impl FnOnce() -> Vec<usize>) {
    GATHERING.with(|g| {
        let mut g = g.borrow_mut();
        let Some(g) = g.as_mut().filter(|g| !g.finished) else {
            return;
        };
        let ended = meter::take_source_ended();
        // The metrics dataflow may end once the program's dataflows have.
        if let Some(remote) = &g.remote {
            if installed().iter().all(|d| remote.own.contains(d)) {
                g.finished = true;
                g.deliver(true);
                return;
            }
        }
        if ended || g.taken.elapsed() >= EVERY {
            g.deliver(false);
        }
    });
}

/// The worker's program is done: its last snapshot, if the stepping loop did not take it.
pub(crate) fn finish() {
    GATHERING.with(|g| {
        if let Some(g) = g.borrow_mut().as_mut().filter(|g| !g.finished) {
            g.finished = true;
            g.deliver(true);
        }
    });
}

/// Forgets this worker's gathering (its run has ended).
pub(crate) fn leave() {
    GATHERING.with(|g| *g.borrow_mut() = None);
}
