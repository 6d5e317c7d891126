//! Where XTC2 datagrams become an event: each contributing stream's big datagram read by its
//! (offset, size), decoded with that stream's Names, and the segments of every detector stacked
//! in segment order, with the step and slow values in force added.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use super::decode::{blocks, header};
use super::format::DataType;
use super::run::{Entry, Xtc2Run};
use super::select::Xtc2Selector;
use super::Xtc2Error;
use crate::event::{Element, Event, Key, Missing, Value};

/// Where a selected field goes: its key, and the segments of its detector's algorithm.
#[derive(Clone, Debug)]
struct Slot {
    key: Key,
    segments: Arc<[u32]>,
}

/// The values of one event's fields by segment, before they are combined.
type Gathered = BTreeMap<Key, (Arc<[u32]>, BTreeMap<u32, Value>)>;

/// What became of one event.
#[derive(Clone, Debug)]
pub struct Built {
    /// The event.
    pub event: Event,
    /// Damage bits of its datagrams and blocks, or-ed.
    pub damage: u16,
    /// Detectors of several segments that lacked some in this event (their fill values
    /// stand in).
    pub partial: Vec<String>,
}

/// Builds events of one run on one worker (it keeps that worker's file handles).
///
/// ```no_run
/// use std::sync::Arc;
/// use shotflow::xtc2::{EventBuilder, Xtc2Run, Xtc2Selector};
///
/// let run = Arc::new(Xtc2Run::open("run_dir".as_ref()).unwrap());
/// let mut builder = EventBuilder::new(Arc::clone(&run), Arc::new(vec![Xtc2Selector::all()]));
/// let first = builder.build(&run.events[0]).unwrap();
/// println!("{} fields", first.event.len());
/// ```
pub struct EventBuilder {
    run: Arc<Xtc2Run>,
    selectors: Arc<Vec<Xtc2Selector>>,
    /// Every detector's segments per algorithm, over all streams and Configures.
    segments: BTreeMap<(String, String), Arc<[u32]>>,
    maps: HashMap<(u16, u16), memmap2::Mmap>,
    /// Per Names block (by address: the run holds every block for its whole life), each
    /// field's slot, or `None` where it is not selected: the selectors' globs and the keys are
    /// worked out once per schema, not once per event.
    slots: HashMap<usize, Arc<[Option<Slot>]>>,
    /// Per context, the step and slow values it carries, gathered as events gather theirs.
    carried: HashMap<u32, Arc<Gathered>>,
    damage_key: Key,
}

impl EventBuilder {
    /// A builder of `run`'s events with the fields `selectors` select (any of them).
    pub fn new(run: Arc<Xtc2Run>, selectors: Arc<Vec<Xtc2Selector>>) -> EventBuilder {
        let mut segments: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
        for stream in &run.streams {
            for table in &stream.configures {
                for (_, names) in table.iter() {
                    let s = segments
                        .entry((names.det_name.clone(), names.alg.clone()))
                        .or_default();
                    if !s.contains(&names.segment) {
                        s.push(names.segment);
                    }
                }
            }
        }
        EventBuilder {
            run,
            selectors,
            segments: segments
                .into_iter()
                .map(|(k, mut s)| {
                    s.sort_unstable();
                    (k, s.into())
                })
                .collect(),
            maps: HashMap::new(),
            slots: HashMap::new(),
            carried: HashMap::new(),
            damage_key: Key::new("damage"),
        }
    }

    /// The segments of a detector's algorithm, in order.
    pub fn segments(&self, det: &str, alg: &str) -> &[u32] {
        self.segments
            .get(&(det.to_string(), alg.to_string()))
            .map_or(&[], |s| s)
    }

    /// The slot of `<det>/<alg>/<field>`, if the selectors select it.
    fn slot(&self, det: &str, alg: &str, field: &str) -> Option<Slot> {
        self.selectors
            .iter()
            .any(|s| s.matches(det, alg, field))
            .then(|| Slot {
                key: Key::new(&format!("{det}/{alg}/{field}")),
                segments: self
                    .segments
                    .get(&(det.to_string(), alg.to_string()))
                    .cloned()
                    .unwrap_or_else(|| Arc::from([])),
            })
    }

    /// Each field's slot of a Names block.
    fn slots(&mut self, names: &Arc<super::names::Names>) -> Arc<[Option<Slot>]> {
        let at = Arc::as_ptr(names) as usize;
        if let Some(s) = self.slots.get(&at) {
            return Arc::clone(s);
        }
        let slots: Arc<[Option<Slot>]> = names
            .fields
            .iter()
            .map(|f| {
                (f.dtype != DataType::EnumDict)
                    .then(|| self.slot(&names.det_name, &names.alg, &f.name))
                    .flatten()
            })
            .collect();
        self.slots.insert(at, Arc::clone(&slots));
        slots
    }

    /// The step and slow values context `index` carries, by field.
    fn carried(&mut self, index: u32) -> Arc<Gathered> {
        if let Some(c) = self.carried.get(&index) {
            return Arc::clone(c);
        }
        let context = Arc::clone(&self.run.contexts[index as usize]);
        let mut gathered = Gathered::new();
        for ((det, segment, alg, field), v) in &context.values {
            if let Some(slot) = self.slot(det, alg, field) {
                gathered
                    .entry(slot.key)
                    .or_insert_with(|| (slot.segments, BTreeMap::new()))
                    .1
                    .insert(*segment, v.clone());
            }
        }
        let gathered = Arc::new(gathered);
        self.carried.insert(index, Arc::clone(&gathered));
        gathered
    }

    /// The event of `entry`.
    pub fn build(&mut self, entry: &Entry) -> Result<Built, Xtc2Error> {
        let run = Arc::clone(&self.run);
        let mut fields = Gathered::new();
        let mut damage = 0u16;
        for part in &entry.parts {
            let stream = &run.streams[part.stream as usize];
            let path = &stream.chunks[part.chunk as usize];
            let map = match self.maps.entry((part.stream, part.chunk)) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(run.map(part.stream, part.chunk)?)
                }
            };
            let buf = run.datagram(part, map)?;
            let corrupt = |message: String| {
                Xtc2Error::corrupt(path, part.offset, Some(entry.timestamp), message)
            };
            let dgram = header(buf).map_err(corrupt)?;
            if dgram.timestamp != entry.timestamp {
                return Err(corrupt(format!(
                    "the smd file points at a datagram of timestamp {:#x}",
                    dgram.timestamp
                )));
            }
            damage |= dgram.xtc.damage & 0x0FFF;
            let table = &stream.configures[part.configure as usize];
            let selectors = Arc::clone(&self.selectors);
            let decoded = blocks(buf, table, &|n| {
                selectors
                    .iter()
                    .any(|s| s.matches_block(&n.det_name, &n.alg))
            })
            .map_err(corrupt)?;
            for block in decoded {
                damage |= block.damage;
                let slots = self.slots(&block.names);
                for (slot, v) in slots.iter().zip(block.values) {
                    if let Some(slot) = slot {
                        fields
                            .entry(slot.key)
                            .or_insert_with(|| (Arc::clone(&slot.segments), BTreeMap::new()))
                            .1
                            .insert(block.names.segment, v);
                    }
                }
            }
        }
        let mut event = Event::with_capacity(entry.timestamp, fields.len() + 1);
        let mut partial = Vec::new();
        for (key, (all, by_segment)) in fields {
            if all.len() > 1 && by_segment.len() < all.len() {
                let det = key.name().split('/').next().unwrap_or("").to_string();
                if !partial.contains(&det) {
                    partial.push(det);
                }
            }
            put(&mut event, key, &all, by_segment);
        }
        // Step and slow values in force, unless the event has its own.
        for (key, (all, by_segment)) in self.carried(entry.context).iter() {
            if !event.contains(*key) {
                put(&mut event, *key, all, by_segment.clone());
            }
        }
        event.set(self.damage_key, damage);
        Ok(Built {
            event,
            damage,
            partial,
        })
    }
}

/// Sets a field from its segments' values: as it is for a detector of one segment, else
/// stacked in segment order (fill values for missing segments); segments whose shapes or types
/// differ are set apart, as `<det>/<alg>/<field>/segment<k>`.
fn put(event: &mut Event, key: Key, all: &[u32], mut values: BTreeMap<u32, Value>) {
    if all.len() <= 1 {
        if let Some((_, v)) = values.pop_first() {
            event.set(key, v);
        }
        return;
    }
    let first = values.values().next().expect("at least one segment");
    let (dtype, shape) = (first.dtype(), first.shape().to_vec());
    if values
        .values()
        .all(|v| v.dtype() == dtype && v.shape() == shape.as_slice())
    {
        let ordered: Vec<Option<&Value>> = all.iter().map(|s| values.get(s)).collect();
        let stacked = crate::with_dtype!(dtype, T => stack::<T>(&ordered, &shape));
        event.set(key, stacked);
    } else {
        for (segment, v) in values {
            event.set(Key::new(&format!("{}/segment{segment}", key.name())), v);
        }
    }
}

/// Segments' values of one shape stacked along a new first axis; `None` segments hold the
/// missing value.
fn stack<T: Element + Missing>(values: &[Option<&Value>], shape: &[usize]) -> Value {
    let per: usize = shape.iter().product();
    let mut out: Vec<T> = Vec::with_capacity(values.len() * per);
    for v in values {
        match v {
            Some(Value::Array(a)) => out.extend(T::view(a).expect("dtype checked").iter()),
            Some(scalar) => out.push(T::from_value(scalar).expect("dtype checked")),
            None => out.extend(std::iter::repeat_n(T::MISSING, per)),
        }
    }
    let mut dims = vec![values.len()];
    dims.extend_from_slice(shape);
    let array = ArrayD::from_shape_vec(IxDyn(&dims), out).expect("segments × shape elements");
    Value::Array(Box::new(T::into_array(array)))
}
