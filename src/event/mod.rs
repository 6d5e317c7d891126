//! The event model: an event id and named fields.
//!
//! An [`Event`] is one shot (an EuXFEL train, an LCLS timestamped event, or a counter): a 64-bit
//! id and a short list of `(Key, Value)` fields. Fields are looked up by a linear scan over
//! integer keys, which beats a hash map for the handful of fields an event carries, and an event
//! holds no heap-allocated names.
//!
//! Events travel through timely in `Vec<Event>` containers whose timestamp is the *batch*
//! number, never one event: see [`crate::source`].

mod key;
mod random;
mod value;

pub use key::Key;
pub use random::event_rng;
#[cfg_attr(not(feature = "hdf5"), allow(unused_imports))]
pub(crate) use value::{each_array, each_scalar};
pub use value::{Array, DType, Element, Missing, Value};

use ndarray::ArrayViewD;
use serde::{Deserialize, Serialize};

/// The id that orders events: EuXFEL train id, LCLS timestamp (`sec << 32 | nsec`), or a counter.
pub type EventId = u64;

/// Something that belongs to one event, so that sinks can put it in event order.
pub trait HasEventId {
    /// The event's id.
    fn event_id(&self) -> EventId;
}

impl HasEventId for EventId {
    fn event_id(&self) -> EventId {
        *self
    }
}

/// Tuples whose first element is the event id: `(id, value)`, `(id, a, b)`, ...
macro_rules! tuple_event_id {
    ($($t:ident),*) => {
        impl<$($t),*> HasEventId for (EventId, $($t),*) {
            fn event_id(&self) -> EventId {
                self.0
            }
        }
    };
}
tuple_event_id!(A);
tuple_event_id!(A, B);
tuple_event_id!(A, B, C);
tuple_event_id!(A, B, C, D);
tuple_event_id!(A, B, C, D, E);

/// One event: an id and named fields.
///
/// # Examples
///
/// ```
/// use shotflow::event::{Event, Key};
///
/// let energy = Key::new("pulse_energy");
/// let laser = Key::new("laser_on");
/// let mut event = Event::new(1_000_042).with(energy, 1.5_f64).with(laser, true);
/// assert_eq!(event.get::<f64>(energy), Some(1.5));
/// assert_eq!(event.get::<bool>(laser), Some(true));
/// assert_eq!(event.get_f64(laser), Some(1.0));
///
/// event.set(energy, 2.0_f64);
/// assert_eq!(event.get::<f64>(energy), Some(2.0));
/// assert_eq!(event.len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event id.
    pub id: EventId,
    fields: Vec<(Key, Value)>,
}

impl HasEventId for Event {
    fn event_id(&self) -> EventId {
        self.id
    }
}

impl Event {
    /// This event's random generator in the stream `name` of a run seeded with `seed`: the
    /// same numbers on any worker, at any worker count, after any resume ([`event_rng`]).
    pub fn rng(&self, seed: u64, name: &str) -> rand_pcg::Pcg64 {
        event_rng(seed, self.id, name)
    }

    /// An event with no fields.
    pub fn new(id: EventId) -> Event {
        Event {
            id,
            fields: Vec::new(),
        }
    }

    /// An event with room for `n` fields.
    pub fn with_capacity(id: EventId, n: usize) -> Event {
        Event {
            id,
            fields: Vec::with_capacity(n),
        }
    }

    /// Sets a field, replacing any earlier value of the same key.
    pub fn set(&mut self, key: Key, value: impl Into<Value>) {
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = value,
            None => self.fields.push((key, value)),
        }
    }

    /// Builder form of [`Event::set`].
    pub fn with(mut self, key: Key, value: impl Into<Value>) -> Event {
        self.set(key, value);
        self
    }

    /// The value of a field.
    #[inline]
    pub fn value(&self, key: Key) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// A scalar field of exactly type `T`.
    #[inline]
    pub fn get<T: Element>(&self, key: Key) -> Option<T> {
        self.value(key).and_then(T::from_value)
    }

    /// A numeric scalar field of any type, converted to `f64`.
    #[inline]
    pub fn get_f64(&self, key: Key) -> Option<f64> {
        self.value(key).and_then(Value::as_f64)
    }

    /// A view of an array field of element type `T`.
    pub fn array<T: Element>(&self, key: Key) -> Option<ArrayViewD<'_, T>> {
        self.value(key)
            .and_then(Value::as_array)
            .and_then(|a| T::view(a))
    }

    /// Removes a field and returns its value (e.g. to drop a frame once it has been reduced).
    pub fn remove(&mut self, key: Key) -> Option<Value> {
        let at = self.fields.iter().position(|(k, _)| *k == key)?;
        Some(self.fields.swap_remove(at).1)
    }

    /// True if the event has the field.
    pub fn contains(&self, key: Key) -> bool {
        self.value(key).is_some()
    }

    /// The fields, in the order they were first set.
    pub fn fields(&self) -> &[(Key, Value)] {
        &self.fields
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Bytes of all the fields' elements ([`Value::nbytes`]).
    pub fn nbytes(&self) -> usize {
        self.fields.iter().map(|(_, v)| v.nbytes()).sum()
    }

    /// True if the event has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn arrays_are_viewed_not_copied() {
        let frame = Key::new("det/frame");
        let event = Event::new(7).with(frame, ArrayD::<u16>::from_elem(vec![4, 3], 9));
        let view = event.array::<u16>(frame).unwrap();
        assert_eq!(view.shape(), &[4, 3]);
        assert_eq!(view.iter().map(|&x| x as u32).sum::<u32>(), 108);
        assert!(event.array::<f32>(frame).is_none());
    }

    #[test]
    fn events_round_trip_through_bincode() {
        let event = Event::new(u64::MAX)
            .with(Key::new("a/b"), -3_i8)
            .with(Key::new("c"), vec![1.0_f64, f64::NAN])
            .with(Key::new("d"), false);
        let bytes = bincode::serialize(&event).unwrap();
        let back: Event = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back.id, u64::MAX);
        assert_eq!(back.get::<i8>(Key::new("a/b")), Some(-3));
        assert!(back.array::<f64>(Key::new("c")).unwrap()[1].is_nan());
        assert_eq!(back.get::<bool>(Key::new("d")), Some(false));
    }

    #[test]
    fn remove_drops_only_that_field() {
        let (a, b) = (Key::new("ra"), Key::new("rb"));
        let mut event = Event::new(1).with(a, 1_u8).with(b, 2_u8);
        assert_eq!(event.remove(a), Some(Value::U8(1)));
        assert_eq!(event.remove(a), None);
        assert_eq!(event.get::<u8>(b), Some(2));
    }
}
