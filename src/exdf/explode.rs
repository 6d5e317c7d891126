//! Pulse-resolved detectors record many frames per train; many analyses want one event per
//! pulse. [`ExplodePulses`] splits a train event into one event per frame.

use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use crate::event::{each_array, Array, Element, Event, Key, Value};
use crate::flow::Batch;

/// The id of pulse `pulse` of train `train`: train-major, so pulse events sort in time.
///
/// # Examples
///
/// ```
/// use shotflow::exdf::explode::pulse_event_id;
/// assert!(pulse_event_id(10_000, 63) < pulse_event_id(10_001, 0));
/// assert_eq!(pulse_event_id(10_000, 5) >> 16, 10_000);
/// ```
pub fn pulse_event_id(train: u64, pulse: u64) -> u64 {
    (train << 16) | (pulse & 0xffff)
}

/// Entry `j` of an array whose first axis is the frame axis: an array, or a scalar for 1-D.
fn frame(array: &Array, j: usize) -> Value {
    each_array!(array, a => {
        let sub = a.index_axis(ndarray::Axis(0), j);
        match sub.ndim() {
            0 => sub.first().copied().expect("0-d arrays hold one value").into_value(),
            _ => Value::from(sub.to_owned()),
        }
    })
}

/// Splits train events into pulse events.
pub trait ExplodePulses<'scope> {
    /// For every event with the `pulse_ids` field (an integer array, one entry per frame),
    /// emits one event per frame with id [`pulse_event_id`]`(train, pulseId)`: fields whose
    /// first axis has that many entries are sliced to the frame, other fields are copied.
    /// Events without the field pass unchanged.
    fn explode_pulses(self, pulse_ids: Key) -> StreamVec<'scope, Batch, Event>;
}

impl<'scope> ExplodePulses<'scope> for StreamVec<'scope, Batch, Event> {
    fn explode_pulses(self, pulse_ids: Key) -> StreamVec<'scope, Batch, Event> {
        self.flat_map(move |event| {
            let ids: Option<Vec<u64>> = event
                .value(pulse_ids)
                .and_then(Value::as_array)
                .map(|a| a.to_f64_vec().into_iter().map(|v| v as u64).collect());
            let Some(ids) = ids else { return vec![event] };
            let n = ids.len();
            ids.iter()
                .enumerate()
                .map(|(j, &pulse)| {
                    let mut out =
                        Event::with_capacity(pulse_event_id(event.id, pulse), event.len());
                    for (key, value) in event.fields() {
                        match value.as_array() {
                            Some(a) if a.shape().first() == Some(&n) => out.set(*key, frame(a, j)),
                            _ => out.set(*key, value.clone()),
                        }
                    }
                    out
                })
                .collect()
        })
    }
}
