//! Bounded read-ahead: a source produces batch `b` only while every sink of its dataflow has
//! received all batches before `b - window`.
//!
//! Timely has no back-pressure of its own: a source that reads as fast as it can piles the run
//! up in memory in front of a slow sink (a karabo-bridge client, a disk, worker 0's ordered
//! callback). Bounding what is in flight keeps memory at a few batches per worker, and it is
//! also faster: buffers freed by the sinks are reused while still mapped, instead of every
//! batch landing in fresh pages that the kernel must zero first (two thirds of a karabo-bridge
//! server's time before this existed).
//!
//! Sinks attached with [`SinkExt::sink_into`](crate::sink::SinkExt::sink_into) or
//! [`SinkExt::sink_in_order`](crate::sink::SinkExt::sink_in_order) (so also the smalldata
//! writers) report their input frontier here; the sources of this crate consult it. A dataflow
//! without such sinks (say, one that ends in timely's `capture`) is not held back. The window
//! is per worker, [`Settings::read_ahead`](super::Settings) batches of the run (`--read-ahead`,
//! 4 by default). Each worker sees the sinks through its own operator instances, so a sink that
//! gathers on worker 0 may hold up to one more window it has received but not yet written: at
//! most two windows are in flight.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use timely::dataflow::Scope;
use timely::scheduling::Activator;

use super::shared::{flow, Flow, FLOWS};
use super::{Batch, Settings};

/// Activates every source of every dataflow on this worker (after a stop request, so that
/// sources waiting for their sinks notice it now).
pub fn wake_sources() {
    FLOWS.with(|flows| {
        for flow in flows.borrow().values().filter_map(Weak::upgrade) {
            for source in &flow.borrow().sources {
                source.activate();
            }
        }
    })
}

/// Whether every shotflow source of every dataflow on this worker has ended (true when there
/// are none).
pub fn sources_ended() -> bool {
    FLOWS.with(|flows| {
        flows
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .all(|flow| flow.borrow().ended.iter().all(Option::is_some))
    })
}

/// Where the sources of one dataflow on this worker ended, for sinks that must tell a complete
/// run from a stopped one.
///
/// # Examples
///
/// ```
/// use shotflow::flow::read_ahead::SourcesEnded;
/// use shotflow::source::batched_source;
/// use timely::dataflow::operators::Inspect;
///
/// timely::execute_directly(|worker| {
///     let ended = worker.dataflow::<u64, _, _>(|scope| {
///         batched_source(scope, "Three", 3, |b| Ok::<_, String>(vec![b])).inspect(|_| ());
///         SourcesEnded::new(&scope)
///     });
///     while worker.has_dataflows() {
///         worker.step();
///     }
///     assert_eq!(ended.at(), u64::MAX); // produced everything
/// });
/// ```
pub struct SourcesEnded {
    flow: Rc<RefCell<Flow>>,
}

impl SourcesEnded {
    /// The view of `scope`'s dataflow on this worker.
    pub fn new(scope: &Scope<'_, Batch>) -> SourcesEnded {
        SourcesEnded { flow: flow(scope) }
    }

    /// The first batch that some source of this worker stopped before, `Batch::MAX` when none
    /// stopped early. Meaningful once the sources are done (a sink's input has ended): a
    /// source that has not said where it ended counts as complete.
    pub fn at(&self) -> Batch {
        let flow = self.flow.borrow();
        flow.ended
            .iter()
            .flatten()
            .copied()
            .min()
            .unwrap_or(Batch::MAX)
    }
}

/// A sink's report of its progress.
pub struct SinkProgress {
    flow: Rc<RefCell<Flow>>,
    slot: usize,
}

impl SinkProgress {
    /// Registers a sink of `scope`'s dataflow; it has completed nothing yet.
    pub fn new(scope: &Scope<'_, Batch>) -> SinkProgress {
        let flow = flow(scope);
        let slot = {
            let mut f = flow.borrow_mut();
            f.sinks.push(Some(0));
            f.sinks.len() - 1
        };
        SinkProgress { flow, slot }
    }

    /// The sink's input frontier is now `frontier` (`None`: the input has ended).
    pub fn report(&self, frontier: Option<Batch>) {
        let mut f = self.flow.borrow_mut();
        if f.sinks[self.slot] != frontier {
            f.sinks[self.slot] = frontier;
            for source in &f.sources {
                source.activate();
            }
        }
    }
}

impl Drop for SinkProgress {
    fn drop(&mut self) {
        if let Ok(mut f) = self.flow.try_borrow_mut() {
            f.sinks[self.slot] = None;
        }
    }
}

/// A source's view of its dataflow's sinks.
///
/// # Examples
///
/// A source operator asks before producing each batch; when the answer is no, it is activated
/// again as soon as a sink moves.
///
/// ```
/// use shotflow::flow::read_ahead::ReadAhead;
/// use timely::container::CapacityContainerBuilder;
/// use timely::dataflow::operators::generic::operator::source;
/// use timely::dataflow::operators::capture::{Capture, Extract};
///
/// let captured = timely::example(|scope| {
///     source::<_, CapacityContainerBuilder<Vec<u64>>, _, _>(scope.clone(), "Counter", |capability, info| {
///         let read_ahead = ReadAhead::new(&scope, scope.activator_for(info.address));
///         let (mut next, mut capability) = (0u64, Some(capability));
///         move |output| {
///             let Some(cap) = capability.as_mut() else { return };
///             if !read_ahead.allows(next) {
///                 return;
///             }
///             cap.downgrade(&next);
///             output.session(&*cap).give(next);
///             next += 1;
///             if next == 10 { capability = None } else { read_ahead.activator().activate() }
///         }
///     })
///     .capture()
/// });
/// assert_eq!(captured.extract().len(), 10);
/// ```
pub struct ReadAhead {
    flow: Rc<RefCell<Flow>>,
    window: u64,
    activator: Activator,
    slot: usize,
}

impl ReadAhead {
    /// The read-ahead of a source in `scope` whose operator `activator` wakes: the run's
    /// [`Settings::read_ahead`] batches per worker.
    pub fn new(scope: &Scope<'_, Batch>, activator: Activator) -> ReadAhead {
        let flow = flow(scope);
        let slot = {
            let mut f = flow.borrow_mut();
            f.sources.push(activator.clone());
            f.ended.push(None);
            f.ended.len() - 1
        };
        ReadAhead {
            flow,
            window: Settings::of(scope).read_ahead.max(1) * scope.peers() as u64,
            activator,
            slot,
        }
    }

    /// The source will produce no batch from `batch` on (`Batch::MAX`: it produced all of
    /// its batches); see [`SourcesEnded`].
    pub fn ended(&self, batch: Batch) {
        self.flow.borrow_mut().ended[self.slot] = Some(batch);
        super::meter::source_ended();
    }

    /// Whether `batch` may be produced now. When not, the source will be activated again when
    /// a sink moves (and at the latest after 10 ms, should a frontier move unseen).
    pub fn allows(&self, batch: Batch) -> bool {
        let slowest = self
            .flow
            .borrow()
            .sinks
            .iter()
            .map(|s| s.unwrap_or(Batch::MAX))
            .min()
            .unwrap_or(Batch::MAX);
        let allowed = batch < slowest.saturating_add(self.window);
        if !allowed {
            self.activator.activate_after(Duration::from_millis(10));
        }
        allowed
    }

    /// The source's activator.
    pub fn activator(&self) -> &Activator {
        &self.activator
    }
}
