//! The ordered callback sink: every row of the run, in event-id order, on worker 0.
//!
//! Rows travel to worker 0 and wait there, per batch, until the frontier passes their batch;
//! then the batch is sorted by event id and handed over. Sources number batches in event-id
//! order, so batch order followed by id order within a batch is the run's event order. Only
//! incomplete batches are held, so memory is bounded by the batches in flight.

use std::collections::BTreeMap;

use super::{Batch, Routing, Sink, SinkError};
use crate::event::HasEventId;

/// Delivers complete batches, sorted by event id, in batch order, on worker 0.
///
/// Usually attached with [`super::SinkExt::ordered`].
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use shotflow::sink::{Ordered, SinkExt};
/// use shotflow::runtime::{execute, Launch};
/// use timely::dataflow::operators::ToStream;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// execute(&Launch::threads(3), move |worker| {
///     let (index, out) = (worker.index() as u64, Arc::clone(&out));
///     worker.dataflow::<u64, _, _>(|scope| {
///         // each worker holds a third of the ids, in scrambled order
///         (0..30u64).rev().filter(move |x| x % 3 == index)
///             .to_stream(scope).container::<Vec<_>>()
///             .sink_into("ordered", Ordered::new(move |_, rows: &[u64]| out.lock().unwrap().extend_from_slice(rows)));
///     });
///     Ok::<_, std::convert::Infallible>(())
/// }).unwrap();
/// assert_eq!(*seen.lock().unwrap(), (0..30).collect::<Vec<u64>>());
/// ```
pub struct Ordered<D, F> {
    pending: BTreeMap<Batch, Vec<D>>,
    callback: F,
}

impl<D, F> Ordered<D, F> {
    /// A sink that calls `callback(batch, rows)` for each complete batch.
    pub fn new(callback: F) -> Self {
        Ordered {
            pending: BTreeMap::new(),
            callback,
        }
    }
}

impl<D, F> Sink<D> for Ordered<D, F>
where
    D: HasEventId + 'static,
    F: FnMut(Batch, &[D]) + 'static,
{
    fn routing(&self) -> Routing<D> {
        Routing::Worker(0)
    }

    fn write(&mut self, batch: Batch, rows: &mut Vec<D>) -> Result<(), SinkError> {
        let slot = self.pending.entry(batch).or_default();
        if slot.is_empty() {
            std::mem::swap(slot, rows);
        } else {
            slot.append(rows);
        }
        Ok(())
    }

    fn advance(&mut self, frontier: Option<Batch>) -> Result<(), SinkError> {
        while let Some(entry) = self.pending.first_entry() {
            if frontier.is_some_and(|f| *entry.key() >= f) {
                break;
            }
            let (batch, mut rows) = entry.remove_entry();
            // Stable, so rows of one event keep the order in which they were produced.
            rows.sort_by_key(HasEventId::event_id);
            (self.callback)(batch, &rows);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
