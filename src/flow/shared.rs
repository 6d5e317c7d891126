//! What the sources and sinks of one dataflow on one worker share, found through the
//! dataflow's scope: the read-ahead window's state ([`super::read_ahead`]) and the loss counts
//! ([`super::losses`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};

use timely::dataflow::Scope;
use timely::scheduling::Activator;

use super::Batch;

/// Loss counts per batch, then per (source, reason).
pub(crate) type Book = BTreeMap<Batch, BTreeMap<(String, String), u64>>;

/// What the sources and sinks of one dataflow on this worker share: what the sinks have
/// completed, who waits for it, where the sources ended, and what they lost.
#[derive(Default)]
pub(crate) struct Flow {
    /// Per sink, its input frontier: every batch before it is complete (`None`: all).
    pub(crate) sinks: Vec<Option<Batch>>,
    /// Sources to wake when a sink moves.
    pub(crate) sources: Vec<Activator>,
    /// Per source, where it ended: `Some(b)` once it will produce no batch from `b` on
    /// (`Batch::MAX`: it produced all of its batches), `None` while it runs.
    pub(crate) ended: Vec<Option<Batch>>,
    /// Events dropped or skipped ([`super::losses`]).
    pub(crate) losses: Book,
}

thread_local! {
    pub(crate) static FLOWS: RefCell<HashMap<usize, Weak<RefCell<Flow>>>> = RefCell::new(HashMap::new());
}

/// The flow of the dataflow that `scope` belongs to, on this worker.
pub(crate) fn flow(scope: &Scope<'_, Batch>) -> Rc<RefCell<Flow>> {
    let dataflow = scope.addr().first().copied().unwrap_or(0);
    FLOWS.with(|flows| {
        let mut flows = flows.borrow_mut();
        flows.retain(|_, f| f.strong_count() > 0);
        if let Some(flow) = flows.get(&dataflow).and_then(Weak::upgrade) {
            return flow;
        }
        let flow = Rc::new(RefCell::new(Flow::default()));
        flows.insert(dataflow, Rc::downgrade(&flow));
        flow
    })
}
