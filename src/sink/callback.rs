//! The per-worker callback sink: rows go to a closure on the worker that produced them.

use super::{Batch, Routing, Sink, SinkError};

/// Calls a closure with each part of each batch on the worker that produced it.
///
/// Unordered and without data movement: for monitoring, counting, or feeding a per-worker
/// accumulator. Usually attached with [`super::SinkExt::for_each_batch`].
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use shotflow::sink::SinkExt;
/// use timely::dataflow::operators::ToStream;
///
/// let count = Arc::new(AtomicUsize::new(0));
/// let c = Arc::clone(&count);
/// timely::example(move |scope| {
///     (0..100u64).to_stream(scope).container::<Vec<_>>()
///         .for_each_batch("count", move |_batch, rows| { c.fetch_add(rows.len(), Ordering::Relaxed); });
/// });
/// assert_eq!(count.load(Ordering::Relaxed), 100);
/// ```
pub struct ForEachBatch<F> {
    callback: F,
}

impl<F> ForEachBatch<F> {
    /// A sink that calls `callback(batch, rows)`.
    pub fn new(callback: F) -> Self {
        ForEachBatch { callback }
    }
}

impl<D, F: FnMut(Batch, &[D]) + 'static> Sink<D> for ForEachBatch<F> {
    fn routing(&self) -> Routing<D> {
        Routing::Local
    }

    fn write(&mut self, batch: Batch, rows: &mut Vec<D>) -> Result<(), SinkError> {
        (self.callback)(batch, rows);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
