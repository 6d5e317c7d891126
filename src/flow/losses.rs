//! Every event a run drops or skips, counted by batch, source and reason.
//!
//! A source counts what it could not deliver (a train out of order, a checksum failure, a
//! malformed message) or delivered incompletely (an event without a source's fields) against
//! the batch it belongs to. Sinks that commit batches (the smalldata output) take the counts of
//! the batches they commit, so a stopped and resumed run counts every loss exactly once, and
//! the output says, from the file alone, whether anything was lost and how much.

use std::cell::RefCell;
use std::rc::Rc;

use timely::dataflow::Scope;

use super::shared::{flow, Flow};
use super::Batch;

/// The reason of events that lack some source's fields: counted apart from losses, per source.
pub const MISSING_FIELDS: &str = "missing fields";

/// One loss count: batch, source, reason, events.
pub type Loss = (Batch, String, String, u64);

/// The loss counts of one dataflow on this worker.
///
/// # Examples
///
/// ```
/// use shotflow::flow::Losses;
///
/// timely::execute_directly(|worker| {
///     let losses = worker.dataflow::<u64, _, _>(|scope| Losses::new(&scope));
///     losses.count(3, "SA1_XTD2_XGM/DOOCS/MAIN", "checksum failure", 2);
///     losses.count(1, "run", "suspect train", 1);
///     assert_eq!(losses.take_before(Some(2)), vec![(1, "run".into(), "suspect train".into(), 1)]);
///     assert_eq!(losses.take_before(None).len(), 1);
/// });
/// ```
#[derive(Clone)]
pub struct Losses {
    flow: Rc<RefCell<Flow>>,
}

impl Losses {
    /// The loss counts of `scope`'s dataflow on this worker.
    pub fn new(scope: &Scope<'_, Batch>) -> Losses {
        Losses { flow: flow(scope) }
    }

    /// Counts `events` of batch `batch` from `source` lost for `reason`.
    pub fn count(&self, batch: Batch, source: &str, reason: &str, events: u64) {
        if events == 0 {
            return;
        }
        super::meter::lost(source, reason, events);
        *self
            .flow
            .borrow_mut()
            .losses
            .entry(batch)
            .or_default()
            .entry((source.to_string(), reason.to_string()))
            .or_default() += events;
    }

    /// Removes and returns the counts of the batches before `upto` (`None`: all).
    pub fn take_before(&self, upto: Option<Batch>) -> Vec<Loss> {
        let mut flow = self.flow.borrow_mut();
        let taken = match upto {
            Some(upto) => {
                let later = flow.losses.split_off(&upto);
                std::mem::replace(&mut flow.losses, later)
            }
            None => std::mem::take(&mut flow.losses),
        };
        taken
            .into_iter()
            .flat_map(|(batch, counts)| {
                counts
                    .into_iter()
                    .map(move |((source, reason), n)| (batch, source, reason, n))
            })
            .collect()
    }
}
