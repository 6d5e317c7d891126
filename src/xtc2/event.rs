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

/// A field's place: detector, algorithm, field name.
type FieldId = (String, String, String);

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
    segments: Arc<BTreeMap<(String, String), Vec<u32>>>,
    maps: HashMap<(u16, u16), memmap2::Mmap>,
    keys: HashMap<FieldId, Key>,
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
        segments.values_mut().for_each(|s| s.sort_unstable());
        EventBuilder {
            run,
            selectors,
            segments: Arc::new(segments),
            maps: HashMap::new(),
            keys: HashMap::new(),
            damage_key: Key::new("damage"),
        }
    }

    /// The segments of a detector's algorithm, in order.
    pub fn segments(&self, det: &str, alg: &str) -> &[u32] {
        self.segments
            .get(&(det.to_string(), alg.to_string()))
            .map_or(&[], |s| s.as_slice())
    }

    fn selected(&self, det: &str, alg: &str, field: &str) -> bool {
        self.selectors.iter().any(|s| s.matches(det, alg, field))
    }

    /// The event of `entry`.
    pub fn build(&mut self, entry: &Entry) -> Result<Built, Xtc2Error> {
        let run = Arc::clone(&self.run);
        let mut fields: BTreeMap<FieldId, BTreeMap<u32, Value>> = BTreeMap::new();
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
                let n = &block.names;
                for (f, v) in n.fields.iter().zip(block.values) {
                    if f.dtype == DataType::EnumDict || !self.selected(&n.det_name, &n.alg, &f.name)
                    {
                        continue;
                    }
                    fields
                        .entry((n.det_name.clone(), n.alg.clone(), f.name.clone()))
                        .or_default()
                        .insert(n.segment, v);
                }
            }
        }
        let mut event = Event::with_capacity(entry.timestamp, fields.len() + 1);
        let mut partial = Vec::new();
        for (id, by_segment) in fields {
            let all = self.segments(&id.0, &id.1).to_vec();
            if all.len() > 1 && by_segment.len() < all.len() && !partial.contains(&id.0) {
                partial.push(id.0.clone());
            }
            self.put(&mut event, id, &all, by_segment);
        }
        // Step and slow values in force, unless the event has its own.
        let context = Arc::clone(&run.contexts[entry.context as usize]);
        let mut carried: BTreeMap<FieldId, BTreeMap<u32, Value>> = BTreeMap::new();
        for ((det, segment, alg, field), v) in &context.values {
            if self.selected(det, alg, field) {
                carried
                    .entry((det.clone(), alg.clone(), field.clone()))
                    .or_default()
                    .insert(*segment, v.clone());
            }
        }
        for (id, by_segment) in carried {
            if !self.keys.get(&id).is_some_and(|k| event.contains(*k)) {
                let all = self.segments(&id.0, &id.1).to_vec();
                self.put(&mut event, id, &all, by_segment);
            }
        }
        event.set(self.damage_key, damage);
        Ok(Built {
            event,
            damage,
            partial,
        })
    }

    /// Sets a field from its segments' values: as it is for a detector of one segment, else
    /// stacked in segment order (fill values for missing segments); segments whose shapes or
    /// types differ are set apart, as `<det>/<alg>/<field>/segment<k>`.
    fn put(
        &mut self,
        event: &mut Event,
        id: FieldId,
        all: &[u32],
        mut values: BTreeMap<u32, Value>,
    ) {
        let key = *self
            .keys
            .entry(id.clone())
            .or_insert_with(|| Key::new(&format!("{}/{}/{}", id.0, id.1, id.2)));
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
                let apart = Key::new(&format!("{}/{}/{}/segment{segment}", id.0, id.1, id.2));
                event.set(apart, v);
            }
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
