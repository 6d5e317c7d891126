//! The control dataflow: how a stop requested in one process reaches every process of the run.
//!
//! A signal reaches one process (the one the user or SLURM signalled). Every worker therefore
//! runs, beside the user's dataflows, a tiny dataflow of its own: a source that, once the
//! local run is asked to stop, sends the reason to every worker of the run, and a sink that
//! turns a received reason into a local stop request. It travels over timely's own
//! connections, so it needs no port or socket of its own, and it reaches every process within
//! a scheduling round.
//!
//! Its source holds its capability only while shotflow sources of this worker run: a worker
//! that builds its dataflows, runs them to completion and then builds more can no longer
//! forward a stop to those later ones.

use std::cell::RefCell;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::scheduling::Activator;
use timely::worker::Worker;

use super::failure::with_state;
use super::StopReason;

thread_local! {
    /// This worker's control source, to wake when a stop is requested.
    static CONTROL: RefCell<Option<Activator>> = const { RefCell::new(None) };
}

/// How often the control source looks whether this worker's sources have ended.
const POLL: Duration = Duration::from_millis(50);

/// Builds the control dataflow on `worker`; every worker of the run must call it, first.
pub(crate) fn install(worker: &mut Worker) {
    let peers = worker.peers() as u64;
    let activator = worker.dataflow::<u64, _, _>(|scope| {
        let mut handle = None;
        let stops = source::<_, CapacityContainerBuilder<Vec<(u64, u8)>>, _, _>(
            scope,
            "StopBroadcast",
            |capability, info| {
                let activator = scope.activator_for(info.address);
                handle = Some(activator.clone());
                let mut capability = Some(capability);
                let mut sent = false;
                move |output| {
                    let Some(cap) = capability.as_ref() else {
                        return;
                    };
                    let reason = with_state(|s| s.stop_reason()).flatten();
                    if let (Some(reason), false) = (reason, sent) {
                        let mut session = output.session(cap);
                        for worker in 0..peers {
                            session.give((worker, reason.code()));
                        }
                        sent = true;
                    }
                    // Once this worker's sources have ended it has nothing left to stop, and
                    // the control dataflow may end with the run.
                    if crate::flow::read_ahead::sources_ended() {
                        capability = None;
                    } else {
                        activator.activate_after(POLL);
                    }
                }
            },
        );
        stops.sink(
            Exchange::new(|(worker, _): &(u64, u8)| *worker),
            "StopReceive",
            |(input, _)| {
                input.for_each(|_, data| {
                    for (_, code) in data.drain(..) {
                        if let Some(reason) = StopReason::from_code(code) {
                            with_state(|s| s.request_stop(reason));
                        }
                    }
                });
            },
        );
        handle.expect("the source was built")
    });
    CONTROL.with(|c| *c.borrow_mut() = Some(activator));
}

/// Tells the control source to broadcast this run's stop request now.
pub(crate) fn wake() {
    CONTROL.with(|c| {
        if let Some(activator) = c.borrow().as_ref() {
            activator.activate();
        }
    });
}

/// Forgets this worker's control source (its run has ended).
pub(crate) fn leave() {
    CONTROL.with(|c| *c.borrow_mut() = None);
}
