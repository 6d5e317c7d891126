//! Contributions to saved summaries made per batch: the pattern [`Row::saved`] asks for, as
//! a stream operator.

use std::collections::HashMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use super::{Reduce, Row};
use crate::event::{Event, EventId, HasEventId};
use crate::flow::Batch;

/// Folds what each batch brings to this worker into one contribution to saved summaries.
pub trait SavePerBatch<'scope, D> {
    /// For every batch, folds its items on this worker (in arrival order) into an
    /// accumulator, and once the batch is complete here emits one [`Row::saved`] contribution:
    /// `fields` turns the accumulator into the fields (summary paths) of an event whose id is
    /// the batch's first item's. Put it where each batch is on one worker (before any
    /// exchange): then every batch contributes once and the reduced result has the same bits
    /// at any worker count. Concatenate its output with the rows that go to the smalldata sink.
    ///
    /// # Examples
    ///
    /// The run-summed pulse energy, saved as `pulse_energy_sum`.
    ///
    /// ```
    /// use shotflow::prelude::*;
    /// use shotflow::smalldata::{Reduce, Row, SavePerBatch, SmallData, SmallDataExt};
    /// use timely::dataflow::operators::Concat;
    /// use timely::dataflow::operators::vec::Map;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let output = SmallData::new(dir.path().join("run.h5"));
    /// let result = output.result();
    /// let config = Synthetic { events: 1000, frame: None, ..Synthetic::default() };
    /// let keys = config.keys();
    /// execute(&Launch::threads(2), move |worker| {
    ///     let output = output.clone();
    ///     worker.dataflow(|scope| {
    ///         let events = scope.synthetic(&config);
    ///         let saved = events.clone().save_per_batch(
    ///             Reduce::Sum,
    ///             move |sum: &mut f64, e: &Event| *sum += e.get_f64(keys.pulse_energy).unwrap(),
    ///             |sum, event| event.set(Key::new("pulse_energy_sum"), sum),
    ///         );
    ///         events.map(Row::from).concat(saved).smalldata(output);
    ///     });
    ///     Ok::<_, std::convert::Infallible>(())
    /// })
    /// .unwrap();
    /// let result = result.lock().unwrap().clone().unwrap();
    /// assert_eq!(result.saved[0].name, "pulse_energy_sum");
    /// let file = hdf5::File::open(dir.path().join("run.h5")).unwrap();
    /// let sum = file.dataset("pulse_energy_sum").unwrap().read_scalar::<f64>().unwrap();
    /// assert!(sum > 900.0 && sum < 1100.0);
    /// ```
    fn save_per_batch<A, F, G>(
        self,
        reduce: Reduce,
        fold: F,
        fields: G,
    ) -> StreamVec<'scope, Batch, Row>
    where
        A: Default + 'static,
        F: FnMut(&mut A, &D) + 'static,
        G: Fn(A, &mut Event) + 'static;
}

impl<'scope, D: HasEventId + 'static> SavePerBatch<'scope, D> for StreamVec<'scope, Batch, D> {
    fn save_per_batch<A, F, G>(
        self,
        reduce: Reduce,
        mut fold: F,
        fields: G,
    ) -> StreamVec<'scope, Batch, Row>
    where
        A: Default + 'static,
        F: FnMut(&mut A, &D) + 'static,
        G: Fn(A, &mut Event) + 'static,
    {
        // A batch may arrive over several activations: its contribution waits for the frontier.
        let mut partials: HashMap<Batch, (EventId, A)> = HashMap::new();
        self.unary_notify::<CapacityContainerBuilder<Vec<Row>>, _, _>(
            Pipeline,
            "SavePerBatch",
            None,
            move |input, output, notificator| {
                input.for_each_time(|time, data| {
                    let (first, acc) = partials
                        .entry(*time.time())
                        .or_insert_with(|| (EventId::MAX, A::default()));
                    for item in data.flat_map(|d| d.iter()) {
                        *first = (*first).min(item.event_id());
                        fold(acc, item);
                    }
                    notificator.notify_at(time.retain(output.output_index()));
                });
                notificator.for_each(|time, _, _| {
                    if let Some((first, acc)) = partials.remove(time.time()) {
                        let mut event = Event::new(first);
                        fields(acc, &mut event);
                        output.session(&time).give(Row::saved(reduce, event));
                    }
                });
            },
        )
    }
}
