//! One row of the smalldata output, and how rows of one event merge.

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventId, HasEventId, Key};

/// One row of the smalldata output: an event's fields, in the root group or in an alignment
/// group (psana's `align_group`) with its own `timestamp`, so a low-rate detector is not padded
/// to the high-rate event count.
///
/// # Examples
///
/// ```
/// use shotflow::event::{Event, Key};
/// use shotflow::smalldata::Row;
///
/// let fast = Row::from(Event::new(7).with(Key::new("i0"), 1.0));
/// let slow = Row::in_group("andor", Event::new(7).with(Key::new("spectrum"), vec![0u16; 4]));
/// assert_eq!(fast.group, None);
/// assert_eq!(slow.group.unwrap().name(), "andor");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The alignment group (`None`: the root).
    pub group: Option<Key>,
    /// The event id and fields.
    pub event: Event,
}

impl Row {
    /// A row of alignment group `group`.
    pub fn in_group(group: &str, event: Event) -> Row {
        Row {
            group: Some(Key::new(group)),
            event,
        }
    }
}

impl From<Event> for Row {
    fn from(event: Event) -> Row {
        Row { group: None, event }
    }
}

impl HasEventId for Row {
    fn event_id(&self) -> EventId {
        self.event.id
    }
}

/// Merges rows of one group with the same event id (sorted, so they are adjacent): later
/// values win, as psana merges repeated calls for one timestamp.
pub(crate) fn merge_same_event(rows: Vec<Row>) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    for row in rows {
        match out.last_mut() {
            Some(last) if last.group == row.group && last.event.id == row.event.id => {
                for (key, value) in row.event.fields() {
                    last.event.set(*key, value.clone());
                }
            }
            _ => out.push(row),
        }
    }
    out
}
