//! How the metrics cross processes: a small dataflow of the runtime's own, beside the program's,
//! in which every worker sends a snapshot of its log, counters and published plots to worker 0
//! a few times a second. It travels over timely's own connections, so it needs no port, no
//! shared file and no clock agreement, and it reaches process 0 however the processes were
//! started (threads, `--processes`, mpirun, srun).
//!
//! Its source holds its capability until the program's dataflows on the worker are gone
//! ([`finish`], called by the runtime's stepping loop), then sends a last snapshot and ends, so
//! the hub ends the run with every worker's final figures.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::scheduling::Activator;
use timely::worker::Worker;

use super::hub::Hub;
use super::log::WorkerLog;
use super::publish::{take_published, Plot};
use crate::flow::meter::{self, Counters};

/// How often each worker sends its snapshot.
pub const EVERY: Duration = Duration::from_millis(250);

/// One worker's figures at one moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The worker (its index in the whole run).
    pub worker: usize,
    /// Its process.
    pub process: usize,
    /// Seconds since the worker started.
    pub seconds: f64,
    /// Its dataflows: operators with their busy time, channels with their records.
    pub log: WorkerLog,
    /// What its sources and sinks did.
    pub counters: Counters,
    /// Plots it published since its previous snapshot.
    pub plots: Vec<(String, Plot)>,
    /// Whether this is its final snapshot.
    pub last: bool,
}

struct Gathering {
    activator: Activator,
    /// This worker's snapshot, taken now.
    snapshot: Box<dyn Fn() -> Snapshot>,
    /// The dataflows of the runtime's own on this worker (stop broadcast, this one).
    own: Vec<usize>,
    finished: bool,
}

thread_local! {
    static GATHERING: RefCell<Option<Gathering>> = const { RefCell::new(None) };
    /// The run's hub, for the sinks of this worker that keep its figures in their output.
    static HUB: RefCell<Option<Arc<Hub>>> = const { RefCell::new(None) };
}

/// The figures of the run this worker belongs to, as its hub has them now: complete on worker
/// 0 (where the hub gathers every worker's), `None` outside a monitored run.
pub fn current_figures() -> Option<super::hub::Figures> {
    let hub = HUB.with(|h| h.borrow().clone())?;
    // This worker's own figures are fresher than its last snapshot (a sink asks at the end).
    if let Some(mut snapshot) = GATHERING.with(|g| g.borrow().as_ref().map(|g| (g.snapshot)())) {
        snapshot.plots.clear();
        hub.absorb(snapshot);
    }
    Some(hub.figures()).filter(|f| !f.workers.is_empty())
}

/// Builds the metrics dataflow on `worker`; every worker of the run must call it, after the
/// runtime's other dataflows (`own`) and before the program's. Snapshots reach `hub` on worker
/// 0 (the other workers' hubs stay empty).
pub(crate) fn install(
    worker: &mut Worker,
    log: Rc<RefCell<WorkerLog>>,
    hub: Arc<Hub>,
    process: usize,
    mut own: Vec<usize>,
) {
    let dataflow = worker.next_dataflow_index();
    own.push(dataflow);
    for d in &own {
        log.borrow_mut().hide(*d);
    }
    meter::reset();
    take_published();
    HUB.with(|h| *h.borrow_mut() = Some(Arc::clone(&hub)));
    let index = worker.index();
    let started = Instant::now();
    let take = move || Snapshot {
        worker: index,
        process,
        seconds: started.elapsed().as_secs_f64(),
        log: log.borrow().clone(),
        counters: meter::counters(),
        plots: take_published(),
        last: false,
    };
    let snapshot: Rc<dyn Fn() -> Snapshot> = Rc::new(take);
    let send = Rc::clone(&snapshot);
    let activator = worker.dataflow::<u64, _, _>(|scope| {
        let mut handle = None;
        let snapshots = source::<_, CapacityContainerBuilder<Vec<Snapshot>>, _, _>(
            scope,
            "MetricsSend",
            |capability, info| {
                let activator = scope.activator_for(info.address);
                handle = Some(activator.clone());
                let mut capability = Some(capability);
                move |output| {
                    let Some(cap) = capability.as_ref() else {
                        return;
                    };
                    let last = GATHERING.with(|g| g.borrow().as_ref().is_none_or(|g| g.finished));
                    let snapshot = Snapshot { last, ..send() };
                    output.session(cap).give(snapshot);
                    if last {
                        capability = None;
                    } else {
                        activator.activate_after(EVERY);
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
    });
    meter::on_source_end(Some(activator.clone()));
    GATHERING.with(|g| {
        *g.borrow_mut() = Some(Gathering {
            activator,
            snapshot: Box::new(move || snapshot()),
            own,
            finished: false,
        })
    });
}

/// Whether this worker gathers metrics and still waits for the program's dataflows to end.
pub(crate) fn waiting() -> bool {
    GATHERING.with(|g| g.borrow().as_ref().is_some_and(|g| !g.finished))
}

/// Ends the gathering on this worker once only the runtime's own dataflows are left of
/// `installed`: its last snapshot goes out now.
pub(crate) fn finish_if_done(installed: &[usize]) {
    GATHERING.with(|g| {
        if let Some(g) = g.borrow_mut().as_mut() {
            if !g.finished && installed.iter().all(|d| g.own.contains(d)) {
                g.finished = true;
                g.activator.activate();
            }
        }
    });
}

/// Forgets this worker's gathering (its run has ended).
pub(crate) fn leave() {
    meter::on_source_end(None);
    GATHERING.with(|g| *g.borrow_mut() = None);
    HUB.with(|h| *h.borrow_mut() = None);
}
