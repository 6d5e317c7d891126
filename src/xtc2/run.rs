//! An XTC2 run: its streams (each big-data chunks and an optional smd file), read once at open
//! into an index of the run's events in timestamp order, each with where its datagrams are.
//!
//! The index holds what every event needs and what is cheap: timestamps, the streams that
//! contributed, (chunk, offset, size) of each contribution in the big files, and the step and
//! slow (EPICS) values in force. Big data are read later, per batch, by the worker that owns it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::decode::{blocks, configure_names, Block};
use super::format::{Dgram, Transition, DGRAM_HEADER};
use super::names::NamesTable;
use super::Xtc2Error;
use crate::event::Value;

/// One stream: a DAQ process's big-data chunks and, beside them, its smd file.
#[derive(Clone, Debug)]
pub struct Stream {
    /// The stream number in the file names (`-s<NNN>`), or 0 for a single file.
    pub number: u32,
    /// Big-data chunk files, by chunk number.
    pub chunks: Vec<PathBuf>,
    /// `smalldata/<name>.smd.xtc2`, when there is one.
    pub smd: Option<PathBuf>,
    /// The Names of each Configure the stream has, in order.
    pub configures: Vec<Arc<NamesTable>>,
}

/// Where one stream's datagram of an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// The stream (index into [`Xtc2Run::streams`]).
    pub stream: u16,
    /// Its chunk.
    pub chunk: u16,
    /// The Configure whose Names decode it.
    pub configure: u16,
    /// Byte offset in the chunk file.
    pub offset: u64,
    /// Bytes of the datagram.
    pub size: u64,
}

/// One event (an L1Accept from one or more streams).
#[derive(Clone, Debug)]
pub struct Entry {
    /// `sec << 32 | nsec`.
    pub timestamp: u64,
    /// The streams' datagrams, in stream order.
    pub parts: Vec<Part>,
    /// The step and slow values in force ([`Xtc2Run::contexts`]).
    pub context: u32,
}

/// The values that events carry from the transitions before them: the run, the current
/// step's scan values, and the latest slow (EPICS) values.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// LCLS run number (from `runinfo`), if a BeginRun said.
    pub run: Option<u32>,
    /// Experiment name (from `runinfo`).
    pub experiment: Option<String>,
    /// Step number within the run (from 0), if steps were begun.
    pub step: Option<u32>,
    /// Field values from the BeginStep and the SlowUpdates: `(det, segment, alg, field) → value`.
    pub values: BTreeMap<(String, u32, String, String), Value>,
}

/// A transition as the run saw it.
#[derive(Clone, Debug)]
pub struct TransitionEntry {
    /// `sec << 32 | nsec`.
    pub timestamp: u64,
    /// Which.
    pub transition: Transition,
    /// Streams that had it.
    pub streams: Vec<u16>,
}

/// An opened run.
#[derive(Clone, Debug)]
pub struct Xtc2Run {
    /// What was opened (a file or a directory).
    pub path: PathBuf,
    /// The streams, in psana's order (sorted file names).
    pub streams: Vec<Stream>,
    /// The events, in timestamp order.
    pub events: Vec<Entry>,
    /// Every transition, in order.
    pub transitions: Vec<TransitionEntry>,
    /// The contexts events refer to.
    pub contexts: Vec<Arc<Context>>,
    /// Warnings (a truncated last datagram, say), each naming its file.
    pub warnings: Vec<String>,
}

/// One stream's scan: its records and warnings.
type Scanned = (Vec<Record>, Vec<String>);

/// A datagram's header, offset and bytes.
type Located<'a> = (Dgram, u64, &'a [u8]);

/// A datagram of one stream, as the scan of its smd (or big) file found it.
#[derive(Clone, Debug)]
struct Record {
    timestamp: u64,
    transition: Transition,
    part: Part,
    /// A transition's decoded blocks (transitions are in the smd file whole).
    blocks: Vec<Block>,
}

impl Xtc2Run {
    /// Opens a run: a `.xtc2` file, or a directory holding `<exp>-r<run>-s<stream>-c<chunk>.xtc2`
    /// files (and optionally `smalldata/*.smd.xtc2`). Every stream is scanned once to build the
    /// event index; a truncated last datagram ends its stream with a warning.
    pub fn open(path: &Path) -> Result<Xtc2Run, Xtc2Error> {
        let mut streams = discover(path)?;
        // Streams are independent until they are merged: scan them side by side.
        let scanned: Vec<Result<Scanned, Xtc2Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = streams
                .iter_mut()
                .enumerate()
                .map(|(index, stream)| {
                    s.spawn(move || {
                        let mut warnings = Vec::new();
                        scan(index as u16, stream, &mut warnings).map(|r| (r, warnings))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a stream's scan does not panic"))
                .collect()
        });
        let mut records = Vec::new();
        let mut warnings = Vec::new();
        for result in scanned {
            let (r, w) = result?;
            records.push(r);
            warnings.extend(w);
        }
        let (events, transitions, contexts) = merge(records);
        // Every transition is in every stream (psana raises otherwise): say where one is not.
        let incomplete: Vec<&TransitionEntry> = transitions
            .iter()
            .filter(|t| t.streams.len() < streams.len())
            .collect();
        if let Some(first) = incomplete.first() {
            warnings.push(format!(
                "{}: {} transitions came from fewer than all {} streams (the first: {} at \
                 timestamp {:#x}, from streams {:?}); a stream may end early",
                path.display(),
                incomplete.len(),
                streams.len(),
                first.transition,
                first.timestamp,
                first.streams
            ));
        }
        Ok(Xtc2Run {
            path: path.to_path_buf(),
            streams,
            events,
            transitions,
            contexts,
            warnings,
        })
    }

    /// The LCLS run numbers the run's BeginRuns declare, in order.
    pub fn run_numbers(&self) -> Vec<u32> {
        let mut numbers: Vec<u32> = Vec::new();
        for n in self.contexts.iter().filter_map(|c| c.run) {
            if !numbers.contains(&n) {
                numbers.push(n);
            }
        }
        numbers
    }

    /// The events of LCLS run `number` only (a file may hold several runs); an error naming
    /// the runs there are when it has none of that number.
    pub fn only_run(mut self, number: u32) -> Result<Xtc2Run, Xtc2Error> {
        let contexts = &self.contexts;
        self.events
            .retain(|e| contexts[e.context as usize].run == Some(number));
        if self.events.is_empty() {
            return Err(Xtc2Error::Run {
                path: self.path.display().to_string(),
                message: format!("no events of run {number} (runs: {:?})", self.run_numbers()),
            });
        }
        Ok(self)
    }

    /// `<det>/<alg>/<field>` of every string (CHARSTR) field the run declares.
    pub fn string_fields(&self) -> std::collections::BTreeSet<String> {
        self.streams
            .iter()
            .flat_map(|s| &s.configures)
            .flat_map(|t| t.iter().map(|(_, n)| Arc::clone(n)).collect::<Vec<_>>())
            .flat_map(|n| {
                n.fields
                    .iter()
                    .filter(|f| f.dtype == super::format::DataType::CharStr)
                    .map(|f| format!("{}/{}/{}", n.det_name, n.alg, f.name))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Maps a big-data chunk file for reading (a worker maps each chunk it reads once).
    pub fn map(&self, stream: u16, chunk: u16) -> Result<memmap2::Mmap, Xtc2Error> {
        let path = &self.streams[stream as usize].chunks[chunk as usize];
        map(path)
    }

    /// The datagram of `part` in its mapped chunk `map`, checked against the file's length.
    pub fn datagram<'a>(&self, part: &Part, map: &'a [u8]) -> Result<&'a [u8], Xtc2Error> {
        let path = &self.streams[part.stream as usize].chunks[part.chunk as usize];
        let len = map.len() as u64;
        if part
            .offset
            .checked_add(part.size)
            .is_none_or(|end| end > len)
            || part.size < DGRAM_HEADER as u64
        {
            return Err(Xtc2Error::corrupt(
                path,
                part.offset,
                None,
                format!(
                    "a datagram of {} bytes at byte {} of a {len}-byte file",
                    part.size, part.offset
                ),
            ));
        }
        Ok(&map[part.offset as usize..(part.offset + part.size) as usize])
    }
}

/// A read-only map of a whole file.
fn map(path: &Path) -> Result<memmap2::Mmap, Xtc2Error> {
    let file = File::open(path).map_err(|e| Xtc2Error::io(path, e))?;
    // SAFETY: run files are written once (the DAQ appends to files still in progress and never
    // truncates them); a file cut short under the map would fault, as a read of it would fail.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Xtc2Error::io(path, e))?;
    Ok(map)
}

/// The streams of `path`, in psana's order.
fn discover(path: &Path) -> Result<Vec<Stream>, Xtc2Error> {
    if path.is_file() {
        return Ok(vec![Stream {
            number: 0,
            chunks: vec![path.to_path_buf()],
            smd: None,
            configures: Vec::new(),
        }]);
    }
    let list = |dir: &Path| -> Result<Vec<PathBuf>, Xtc2Error> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Xtc2Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        Ok(names)
    };
    // `<exp>-r<run>-s<stream>-c<chunk>.xtc2`: stream and chunk numbers from the name.
    let parse = |p: &Path, suffix: &str| -> Option<(String, u32, u32)> {
        let name = p.file_name()?.to_str()?.strip_suffix(suffix)?;
        let (head, chunk) = name.rsplit_once("-c")?;
        let (base, stream) = head.rsplit_once("-s")?;
        Some((base.to_string(), stream.parse().ok()?, chunk.parse().ok()?))
    };
    let mut by_stream: BTreeMap<(String, u32), Vec<(u32, PathBuf)>> = BTreeMap::new();
    for p in list(path)? {
        if let Some((base, stream, chunk)) = parse(&p, ".xtc2") {
            by_stream
                .entry((base, stream))
                .or_default()
                .push((chunk, p));
        }
    }
    if by_stream.is_empty() {
        return Err(Xtc2Error::Run {
            path: path.display().to_string(),
            message: "no <exp>-r<run>-s<stream>-c<chunk>.xtc2 files".into(),
        });
    }
    let smd_dir = path.join("smalldata");
    let mut streams = Vec::new();
    for ((base, number), mut chunks) in by_stream {
        chunks.sort();
        for (k, (chunk, file)) in chunks.iter().enumerate() {
            if *chunk as usize != k {
                return Err(Xtc2Error::Run {
                    path: path.display().to_string(),
                    message: format!(
                        "stream {number}: chunk {k} is missing ({} is chunk {chunk})",
                        file.display()
                    ),
                });
            }
        }
        let smd = smd_dir.join(format!("{base}-s{number:03}-c000.smd.xtc2"));
        streams.push(Stream {
            number,
            chunks: chunks.into_iter().map(|(_, p)| p).collect(),
            smd: smd.is_file().then_some(smd),
            configures: Vec::new(),
        });
    }
    Ok(streams)
}

/// A file's datagrams one after another, from its map; a truncated last one ends it with a
/// warning.
struct Datagrams {
    path: PathBuf,
    map: memmap2::Mmap,
    offset: u64,
}

impl Datagrams {
    fn open(path: &Path) -> Result<Datagrams, Xtc2Error> {
        let map = map(path)?;
        // Read once, front to back.
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(Datagrams {
            path: path.to_path_buf(),
            map,
            offset: 0,
        })
    }

    /// The next datagram's header, offset and bytes. `Ok(None)` at the end, with a warning
    /// when the file ends inside a datagram.
    fn next(&mut self, warnings: &mut Vec<String>) -> Result<Option<Located<'_>>, Xtc2Error> {
        let len = self.map.len() as u64;
        let at = self.offset;
        if at + DGRAM_HEADER as u64 > len {
            if at < len {
                warnings.push(format!(
                    "{}: {} bytes after the last datagram, less than a header: ignored",
                    self.path.display(),
                    len - at
                ));
            }
            return Ok(None);
        }
        let dgram = Dgram::parse(&self.map[at as usize..]).expect("24 bytes");
        if dgram.size() < DGRAM_HEADER as u64 {
            return Err(Xtc2Error::corrupt(
                &self.path,
                at,
                Some(dgram.timestamp),
                format!(
                    "root Xtc extent {} is less than its header",
                    dgram.xtc.extent
                ),
            ));
        }
        if at + dgram.size() > len {
            warnings.push(format!(
                "{}: the last datagram (byte {at}, timestamp {:#x}) needs {} bytes and {} remain: \
                 the stream ends before it",
                self.path.display(),
                dgram.timestamp,
                dgram.size(),
                len - at
            ));
            self.offset = len;
            return Ok(None);
        }
        self.offset += dgram.size();
        Ok(Some((
            dgram,
            at,
            &self.map[at as usize..(at + dgram.size()) as usize],
        )))
    }
}

/// One stream's datagrams, from its smd file (events' big data by offset) or its chunks.
fn scan(
    index: u16,
    stream: &mut Stream,
    warnings: &mut Vec<String>,
) -> Result<Vec<Record>, Xtc2Error> {
    let mut records = Vec::new();
    let corrupt =
        |path: &Path, at: u64, ts: u64, e: String| Xtc2Error::corrupt(path, at, Some(ts), e);
    let files: Vec<(PathBuf, Option<u16>)> = match &stream.smd {
        Some(smd) => vec![(smd.clone(), None)],
        None => stream
            .chunks
            .iter()
            .enumerate()
            .map(|(c, p)| (p.clone(), Some(c as u16)))
            .collect(),
    };
    let mut chunk = 0u16;
    for (path, big_chunk) in files {
        let mut file = Datagrams::open(&path)?;
        // Big-file L1Accepts are decoded later, by the worker that owns them; everything else
        // now.
        while let Some((dgram, at, buf)) = file.next(warnings)? {
            let transition = dgram.transition();
            let ts = dgram.timestamp;
            if transition == Transition::Configure {
                let table = configure_names(buf).map_err(|e| corrupt(&path, at, ts, e))?;
                stream.configures.push(Arc::new(table));
            }
            let configure = stream.configures.len().checked_sub(1).ok_or_else(|| {
                corrupt(&path, at, ts, format!("{transition} before any Configure"))
            })? as u16;
            let table = Arc::clone(&stream.configures[configure as usize]);
            let part = |offset, size, chunk| Part {
                stream: index,
                chunk,
                configure,
                offset,
                size,
            };
            let record = match (transition, big_chunk) {
                (Transition::L1Accept, Some(c)) => Record {
                    timestamp: ts,
                    transition,
                    part: part(at, dgram.size(), c),
                    blocks: Vec::new(),
                },
                (Transition::L1Accept, None) => {
                    // smd: the offset and size of the big datagram in the current chunk.
                    let pointer = match smd_pointer(buf, &table) {
                        Some(p) => Some(p),
                        None => blocks(buf, &table, &|n| n.det_name == "smdinfo")
                            .map_err(|e| corrupt(&path, at, ts, e))?
                            .first()
                            .and_then(|b| match b.values.as_slice() {
                                [Value::U64(o), Value::U64(s)] => Some((*o, *s)),
                                _ => None,
                            }),
                    };
                    let (offset, size) = pointer.ok_or_else(|| {
                        corrupt(
                            &path,
                            at,
                            ts,
                            "an smd L1Accept without its smdinfo offset and size".into(),
                        )
                    })?;
                    Record {
                        timestamp: ts,
                        transition,
                        part: part(offset, size, chunk),
                        blocks: Vec::new(),
                    }
                }
                _ => {
                    let decoded = blocks(buf, &table, &|n| n.det_name != "smdinfo")
                        .map_err(|e| corrupt(&path, at, ts, e))?;
                    if transition == Transition::Enable && big_chunk.is_none() {
                        // chunkinfo: the big data continue in chunk `chunkid`.
                        if let Some(id) = chunk_id(&decoded) {
                            if id as usize >= stream.chunks.len() {
                                return Err(corrupt(
                                    &path,
                                    at,
                                    ts,
                                    format!("chunkinfo names chunk {id}, and the stream has {} chunk files", stream.chunks.len()),
                                ));
                            }
                            chunk = id as u16;
                        }
                    }
                    Record {
                        timestamp: ts,
                        transition,
                        part: part(at, dgram.size(), big_chunk.unwrap_or(chunk)),
                        blocks: decoded,
                    }
                }
            };
            records.push(record);
        }
    }
    Ok(records)
}

/// The (offset, size) of an smd L1Accept as `smdwriter` and the DAQ lay it out (a root Parent
/// holding one ShapesData of the smdinfo schema: an empty Shapes, then 16 bytes of Data), read
/// at fixed places; `None` for any other layout, which the general decoder then reads.
fn smd_pointer(buf: &[u8], table: &NamesTable) -> Option<(u64, u64)> {
    use super::format::{u64_at, Xtc, XtcKind};
    let sd = Xtc::at(buf, 24)?;
    let names = table.get(sd.names_id())?;
    if buf.len() != 76 || sd.kind() != XtcKind::ShapesData || names.det_name != "smdinfo" {
        return None;
    }
    let (shapes, data) = (Xtc::at(buf, 36)?, Xtc::at(buf, 48)?);
    let fields: Vec<&str> = names.fields.iter().map(|f| f.name.as_str()).collect();
    if shapes.kind() != XtcKind::Shapes
        || shapes.extent != 12
        || data.kind() != XtcKind::Data
        || data.extent != 28
        || fields != ["intOffset", "intDgramSize"]
    {
        return None;
    }
    Some((u64_at(buf, 60)?, u64_at(buf, 68)?))
}

fn chunk_id(blocks: &[Block]) -> Option<u32> {
    let b = blocks.iter().find(|b| b.names.det_name == "chunkinfo")?;
    let k = b.names.fields.iter().position(|f| f.name == "chunkid")?;
    match b.values.get(k)? {
        Value::U32(id) => Some(*id),
        _ => None,
    }
}

/// Builds the run's events and transitions from every stream's records, by timestamp: the
/// smallest first (the lowest stream on a tie), every stream's head with that timestamp
/// together.
fn merge(streams: Vec<Vec<Record>>) -> (Vec<Entry>, Vec<TransitionEntry>, Vec<Arc<Context>>) {
    let mut heads = vec![0usize; streams.len()];
    let mut here: Vec<(usize, usize)> = Vec::with_capacity(streams.len());
    let mut events = Vec::new();
    let mut transitions = Vec::new();
    let mut context = Context::default();
    let mut contexts = vec![Arc::new(context.clone())];
    loop {
        let next = streams
            .iter()
            .zip(&heads)
            .filter_map(|(s, &h)| s.get(h).map(|r| r.timestamp))
            .min();
        let Some(t) = next else { break };
        // The streams whose head has this timestamp (a reused buffer: this loop runs once
        // per event of the run).
        here.clear();
        for (k, (s, h)) in streams.iter().zip(heads.iter_mut()).enumerate() {
            if s.get(*h).is_some_and(|r| r.timestamp == t) {
                here.push((k, *h));
                *h += 1;
            }
        }
        let record = |&(k, h): &(usize, usize)| &streams[k][h];
        let transition = record(&here[0]).transition;
        if transition == Transition::L1Accept {
            events.push(Entry {
                timestamp: t,
                parts: here.iter().map(|x| record(x).part).collect(),
                context: contexts.len() as u32 - 1,
            });
            continue;
        }
        transitions.push(TransitionEntry {
            timestamp: t,
            transition,
            streams: here.iter().map(|x| record(x).part.stream).collect(),
        });
        let here: Vec<&Record> = here.iter().map(record).collect();
        let mut changed = false;
        match transition {
            Transition::Configure => {
                context = Context::default();
                changed = true;
            }
            Transition::BeginRun => {
                context.values.clear();
                context.step = None;
                for b in here.iter().flat_map(|r| &r.blocks) {
                    if b.names.alg == "runinfo" {
                        for (f, v) in b.names.fields.iter().zip(&b.values) {
                            match (f.name.as_str(), v) {
                                ("runnum", v) => context.run = v.as_f64().map(|r| r as u32),
                                ("expt", Value::Array(a)) => {
                                    if let crate::event::Array::U8(bytes) = a.as_ref() {
                                        context.experiment =
                                            String::from_utf8(bytes.iter().copied().collect()).ok();
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
                changed = true;
            }
            Transition::BeginStep | Transition::SlowUpdate => {
                if transition == Transition::BeginStep {
                    context.step = Some(context.step.map_or(0, |s| s + 1));
                }
                for b in here.iter().flat_map(|r| &r.blocks) {
                    if b.names.alg == "runinfo" {
                        continue;
                    }
                    for (f, v) in b.names.fields.iter().zip(&b.values) {
                        if f.dtype == super::format::DataType::EnumDict {
                            continue;
                        }
                        context.values.insert(
                            (
                                b.names.det_name.clone(),
                                b.names.segment,
                                b.names.alg.clone(),
                                f.name.clone(),
                            ),
                            v.clone(),
                        );
                    }
                }
                changed = true;
            }
            _ => {}
        }
        if changed {
            contexts.push(Arc::new(context.clone()));
        }
    }
    (events, transitions, contexts)
}
