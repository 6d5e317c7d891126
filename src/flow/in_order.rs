//! Holding rows until their batch is complete, then releasing them in event order.

use std::collections::BTreeMap;

use super::Batch;
use crate::event::HasEventId;

/// Rows held per batch until the frontier passes the batch; then released batch after batch,
/// in increasing batch order, each batch sorted by event id.
///
/// Sources number batches in event-id order, so batch order followed by id order within a
/// batch is the run's event order. Only incomplete batches are held, so memory is bounded by
/// the batches in flight (see [`super::read_ahead`]). This is the one place where shotflow
/// decides that a batch is complete: ordered callbacks, the karabo-bridge server and the
/// smalldata writers all release their rows here, and their commit point follows it.
///
/// # Examples
///
/// ```
/// use shotflow::flow::InOrder;
///
/// let mut pending = InOrder::default();
/// pending.insert(1, &mut vec![12u64, 11]);
/// pending.insert(0, &mut vec![3u64, 1]);
/// pending.insert(0, &mut vec![2u64]);
/// // The frontier is at batch 1: only batch 0 is complete.
/// assert_eq!(pending.pop_complete(Some(1)), Some((0, vec![1, 2, 3])));
/// assert_eq!(pending.pop_complete(Some(1)), None);
/// // The input has ended: everything is complete.
/// assert_eq!(pending.pop_complete(None), Some((1, vec![11, 12])));
/// assert!(pending.is_empty());
/// ```
#[derive(Debug)]
pub struct InOrder<D> {
    pending: BTreeMap<Batch, Vec<D>>,
}

impl<D> Default for InOrder<D> {
    fn default() -> Self {
        InOrder {
            pending: BTreeMap::new(),
        }
    }
}

impl<D: HasEventId> InOrder<D> {
    /// Holds `rows` (taken out of the vector) as part of `batch`; a batch may arrive in any
    /// number of parts.
    pub fn insert(&mut self, batch: Batch, rows: &mut Vec<D>) {
        let slot = self.pending.entry(batch).or_default();
        if slot.is_empty() {
            std::mem::swap(slot, rows);
        } else {
            slot.append(rows);
        }
    }

    /// The first held batch if it is complete, that is before `frontier` (`None`: the input has
    /// ended and every batch is complete), with its rows sorted by event id. The sort is
    /// stable: rows of one event keep the order in which they were produced.
    pub fn pop_complete(&mut self, frontier: Option<Batch>) -> Option<(Batch, Vec<D>)> {
        let entry = self.pending.first_entry()?;
        if frontier.is_some_and(|f| *entry.key() >= f) {
            return None;
        }
        let (batch, mut rows) = entry.remove_entry();
        rows.sort_by_key(HasEventId::event_id);
        Some((batch, rows))
    }

    /// True when no rows are held.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops every held row (after a failure).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}
