//! One row of the smalldata output, and how rows of one event merge.

use serde::{Deserialize, Serialize};

use super::saved::Reduce;
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
    /// `Some`: not an event but contributions to saved summaries (see [`Row::saved`]).
    #[serde(default)]
    pub saved: Option<Reduce>,
}

impl Row {
    /// A row of alignment group `group`.
    pub fn in_group(group: &str, event: Event) -> Row {
        Row {
            group: Some(Key::new(group)),
            event,
            saved: None,
        }
    }

    /// Contributions to saved summaries, not an event: each field of `event` is combined by
    /// `reduce` into the summary at the field's path in the master (psana's `save_summary`
    /// after `sum`, `min`, `max`, ...). The row belongs to the batch it travels in.
    /// Contributions of one batch are combined in event-id order, batches in batch order, so
    /// make one contribution per batch (before any exchange, where a batch is on one worker)
    /// or give each a distinct id, and the result has the same bits at any worker count.
    /// A name that is also an event dataset is an error naming both.
    ///
    /// # Examples
    ///
    /// ```
    /// use shotflow::event::{Event, Key};
    /// use shotflow::smalldata::{Reduce, Row};
    ///
    /// let image = vec![1.0f32, 2.0, 3.0, 4.0];
    /// let row = Row::saved(Reduce::Sum, Event::new(100).with(Key::new("run_sum/image"), image));
    /// assert_eq!(row.saved, Some(Reduce::Sum));
    /// ```
    pub fn saved(reduce: Reduce, event: Event) -> Row {
        Row {
            group: None,
            event,
            saved: Some(reduce),
        }
    }
}

impl From<Event> for Row {
    fn from(event: Event) -> Row {
        Row {
            group: None,
            event,
            saved: None,
        }
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
            Some(last)
                if last.group == row.group
                    && last.event.id == row.event.id
                    && last.saved.is_none()
                    && row.saved.is_none() =>
            {
                for (key, value) in row.event.fields() {
                    last.event.set(*key, value.clone());
                }
            }
            _ => out.push(row),
        }
    }
    out
}
