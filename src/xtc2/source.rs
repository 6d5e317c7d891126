//! Where XTC2 events become batches: `events_per_batch` consecutive events of the run's index
//! per batch, built on the worker that owns the batch, which reads only its own events' big
//! data.

use std::sync::Arc;

use timely::dataflow::{Scope, StreamVec};

use super::event::EventBuilder;
use super::run::Xtc2Run;
use super::select::Xtc2Selector;
use crate::event::Event;
use crate::flow::{meter, Batch, Losses};
use crate::source::batched_source;

/// Adds an XTC2 run as a source to a dataflow scope.
pub trait Xtc2Source<'scope> {
    /// One event per L1Accept of `run`, with the fields any of `selectors` selects,
    /// `events_per_batch` events per batch. Damaged events and events that lack some segments
    /// of a detector are counted (not dropped) in the run's losses.
    fn xtc2(
        self,
        run: Arc<Xtc2Run>,
        selectors: Arc<Vec<Xtc2Selector>>,
        events_per_batch: usize,
    ) -> StreamVec<'scope, Batch, Event>;
}

impl<'scope> Xtc2Source<'scope> for Scope<'scope, Batch> {
    fn xtc2(
        self,
        run: Arc<Xtc2Run>,
        selectors: Arc<Vec<Xtc2Selector>>,
        events_per_batch: usize,
    ) -> StreamVec<'scope, Batch, Event> {
        let per = events_per_batch.max(1);
        let batches = run.events.len().div_ceil(per) as u64;
        let losses = Losses::new(&self);
        meter::expect(self.index(), run.events.len() as u64, "events");
        let mut builder = EventBuilder::new(Arc::clone(&run), selectors);
        let source = run.path.display().to_string();
        batched_source(self, "Xtc2", batches, move |batch| {
            let from = batch as usize * per;
            let entries = &run.events[from..(from + per).min(run.events.len())];
            let mut events = Vec::with_capacity(entries.len());
            let (mut damaged, mut partial, mut bytes) = (0u64, 0u64, 0u64);
            for entry in entries {
                let built = builder.build(entry).map_err(|e| e.to_string())?;
                damaged += (built.damage != 0) as u64;
                partial += (!built.partial.is_empty()) as u64;
                bytes += built.event.nbytes() as u64;
                events.push(built.event);
            }
            meter::read(bytes);
            losses.count(
                batch,
                &source,
                "damaged (kept, with their damage bits)",
                damaged,
            );
            losses.count(
                batch,
                &source,
                "a detector lacking some segments (kept, fill values in their place)",
                partial,
            );
            Ok::<_, String>(events)
        })
    }
}
