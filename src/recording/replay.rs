//! Reading a recording: an index of intact frames, and the replay source.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::{Scope, StreamVec};

use super::codec::{decode_from, DecodeError, Payload, Streamed};
use super::{
    Header, Manifest, RecordingError, END, FORMAT_VERSION, FRAME, FRAME_HEADER, FRAME_HEADER_V1,
    MAGIC,
};
use crate::event::Event;
use crate::flow::losses::Loss;
use crate::flow::Batch;
use crate::source::{source_loop, Produced, Schedule};

/// One intact frame.
#[derive(Clone, Debug)]
struct Frame {
    file: usize,
    crc: u32,
    offset: u64,
    length: u64,
    events: u32,
    ns: u64,
}

/// An opened recording.
#[derive(Clone, Debug)]
pub struct Recording {
    /// The directory.
    pub dir: PathBuf,
    /// Its files.
    pub files: Vec<PathBuf>,
    /// Their headers.
    pub headers: Vec<Header>,
    /// Frames per batch, in batch order.
    batches: Vec<(Batch, Vec<Frame>)>,
    /// When each batch is due in a paced replay, relative to the first: the recorded times,
    /// with gaps far beyond the usual interval shortened to it.
    due: Vec<Duration>,
    /// The manifest `record` wrote when it finished, if it did.
    pub manifest: Option<Manifest>,
    /// Per file, the batch its recorder's sources stopped before (`u64::MAX`: they ran to the
    /// end; `None`: no end marker, or format 1).
    pub ends: Vec<Option<Batch>>,
    /// What the recorded sources lost, per recorded batch: batch, source, reason, events.
    pub losses: Vec<Loss>,
    /// What was wrong with the files (truncation, missing end markers, bad frame headers).
    /// Payload checksums are verified when a batch is replayed; a bad one is skipped with a
    /// warning.
    pub warnings: Vec<String>,
}

/// How fast to replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// As fast as the dataflow takes the batches.
    AsFastAsPossible,
    /// At the recorded rate times `speed` (2.0 = twice as fast).
    Recorded {
        /// Speed factor.
        speed: f64,
    },
}

fn read_exact_or_eof(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut read = 0;
    while read < buf.len() {
        match file.read(&mut buf[read..])? {
            0 => return Ok(false),
            n => read += n,
        }
    }
    Ok(true)
}

impl Recording {
    /// Opens a recording directory and indexes its intact frames.
    pub fn open(dir: &Path) -> Result<Recording, RecordingError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |e| RecordingError::Io { path, source: e }
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sfrec"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(RecordingError::Format {
                path: dir.display().to_string(),
                message: "no recording files (*.sfrec)".into(),
            });
        }
        let mut headers = Vec::new();
        let mut warnings = Vec::new();
        let mut ends = Vec::new();
        let manifest = Manifest::read(dir)?;
        let mut batches: BTreeMap<Batch, Vec<Frame>> = BTreeMap::new();
        let mut losses: Vec<Loss> = Vec::new();
        for (index, path) in files.iter().enumerate() {
            let format = |message: String| RecordingError::Format {
                path: path.display().to_string(),
                message,
            };
            let size = std::fs::metadata(path).map_err(io(path))?.len();
            let mut file = std::io::BufReader::new(File::open(path).map_err(io(path))?);
            let mut fixed = [0u8; 20];
            // A recorder that died before its first write leaves an empty or half-written
            // header: that file holds nothing, and must not hide the other workers' batches.
            let complete = read_exact_or_eof(&mut file, &mut fixed).map_err(io(path))?;
            if complete && &fixed[..12] != MAGIC {
                return Err(format("not a shotflow recording".into()));
            }
            if !complete {
                let warning = format!("{}: empty or cut short in its header (the recorder died before writing): no batches", path.display());
                tracing::warn!("{warning}");
                warnings.push(warning);
                headers.push(None);
                ends.push(None);
                continue;
            }
            let version = u32::from_le_bytes(fixed[12..16].try_into().unwrap());
            if !(1..=FORMAT_VERSION).contains(&version) {
                return Err(format(format!(
                    "format version {version}; this shotflow reads 1 to {FORMAT_VERSION}"
                )));
            }
            let frame_header = if version == 1 {
                FRAME_HEADER_V1
            } else {
                FRAME_HEADER
            };
            let length = u32::from_le_bytes(fixed[16..20].try_into().unwrap()) as u64;
            if length > size {
                return Err(format(format!(
                    "a header of {length} bytes in a file of {size}"
                )));
            }
            let mut json = vec![0u8; length as usize];
            if !read_exact_or_eof(&mut file, &mut json).map_err(io(path))? {
                let warning = format!("{}: cut short in its header: no batches", path.display());
                tracing::warn!("{warning}");
                warnings.push(warning);
                headers.push(None);
                ends.push(None);
                continue;
            }
            let header: Header =
                serde_json::from_slice(&json).map_err(|e| format(format!("header: {e}")))?;
            headers.push(Some(header));
            let mut offset = 20 + json.len() as u64;
            let mut intact = 0u64;
            // A resumed recording's earlier parts hold frames past its restart point: unused.
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let below = manifest
                .as_ref()
                .and_then(|m| m.files.iter().find(|(f, _)| *f == name))
                .map_or(Batch::MAX, |(_, b)| *b);
            let mut ended = None;
            let problem = loop {
                let mut tag = [0u8; 1];
                if !read_exact_or_eof(&mut file, &mut tag).map_err(io(path))? {
                    break Some(
                        "ends without an end marker (the recorder did not finish)".to_string(),
                    );
                }
                match tag[0] {
                    FRAME => {
                        let mut head = [0u8; FRAME_HEADER];
                        let head = &mut head[..frame_header];
                        if !read_exact_or_eof(&mut file, head).map_err(io(path))? {
                            break Some("cut short inside a frame header".into());
                        }
                        if frame_header == FRAME_HEADER {
                            let stored = u32::from_le_bytes(head[32..36].try_into().unwrap());
                            if crc32fast::hash(&head[..32]) != stored {
                                break Some(format!(
                                    "frame header {} fails its checksum",
                                    intact + 1
                                ));
                            }
                        }
                        let batch = u64::from_le_bytes(head[0..8].try_into().unwrap());
                        let ns = u64::from_le_bytes(head[8..16].try_into().unwrap());
                        let events = u32::from_le_bytes(head[16..20].try_into().unwrap());
                        let length = u64::from_le_bytes(head[20..28].try_into().unwrap());
                        let crc = u32::from_le_bytes(head[28..32].try_into().unwrap());
                        // Payloads are skipped here and checked against their CRC when
                        // replayed: opening a recording reads its frame headers only.
                        let start = offset + 1 + frame_header as u64;
                        if start.checked_add(length).is_none_or(|end| end > size) {
                            break Some(format!("cut short inside batch {batch}"));
                        }
                        file.seek_relative(length as i64).map_err(io(path))?;
                        if batch < below {
                            batches.entry(batch).or_default().push(Frame {
                                file: index,
                                crc,
                                offset: start,
                                length,
                                events,
                                ns,
                            });
                        }
                        offset = start + length;
                        intact += 1;
                    }
                    END => {
                        let mut count = [0u8; 8];
                        if !read_exact_or_eof(&mut file, &mut count).map_err(io(path))? {
                            break Some("cut short in the end marker".into());
                        }
                        let written = u64::from_le_bytes(count);
                        if version >= 2 {
                            let mut at = [0u8; 8];
                            if !read_exact_or_eof(&mut file, &mut at).map_err(io(path))? {
                                break Some("cut short in the end marker".into());
                            }
                            ended = Some(u64::from_le_bytes(at));
                        }
                        if version >= 3 {
                            let mut n = [0u8; 4];
                            if !read_exact_or_eof(&mut file, &mut n).map_err(io(path))? {
                                break Some("cut short in the end marker".into());
                            }
                            let n = u32::from_le_bytes(n) as u64;
                            let left = size.saturating_sub(offset + 1 + 20);
                            if n > left {
                                break Some(format!(
                                    "an end marker's loss table of {n} bytes, {left} left in the file"
                                ));
                            }
                            let mut json = vec![0u8; n as usize];
                            if !read_exact_or_eof(&mut file, &mut json).map_err(io(path))? {
                                break Some("cut short in the end marker".into());
                            }
                            match serde_json::from_slice::<Vec<Loss>>(&json) {
                                Ok(lost) => losses.extend(lost.into_iter().filter(|l| l.0 < below)),
                                Err(e) => break Some(format!("unreadable loss table: {e}")),
                            }
                        }
                        break (written != intact).then(|| {
                            format!("end marker counts {written} frames, {intact} found")
                        });
                    }
                    other => {
                        break Some(format!("unknown frame tag {other} after {intact} frames"))
                    }
                }
            };
            ends.push(ended);
            if let Some(problem) = problem {
                let warning = format!(
                    "{}: {problem}; replaying its {intact} intact batches",
                    path.display()
                );
                tracing::warn!("{warning}");
                warnings.push(warning);
            }
        }
        check_files(dir, &files, &headers, manifest.as_ref(), &mut warnings)?;
        let batches: Vec<(Batch, Vec<Frame>)> = batches.into_iter().collect();
        let due = schedule(&batches, &mut warnings);
        losses.sort();
        Ok(Recording {
            losses,
            dir: dir.to_path_buf(),
            files,
            headers: headers.into_iter().flatten().collect(),
            batches,
            due,
            manifest,
            ends,
            warnings,
        })
    }

    /// Where a recording that was stopped or cut short can be continued: the first batch that
    /// some recorder's sources did not produce, or that no intact frame holds (a recorder
    /// killed mid-write leaves its file's last frames unusable).
    pub fn resume_point(&self) -> Batch {
        let stopped = self
            .ends
            .iter()
            .flatten()
            .copied()
            .min()
            .unwrap_or(Batch::MAX);
        let held = self
            .batches
            .iter()
            .enumerate()
            .find(|(i, (batch, _))| *batch != *i as Batch)
            .map_or(self.batches.len() as Batch, |(i, _)| i as Batch);
        stopped.min(held)
    }

    /// The recorded losses, summed by source and reason.
    pub fn loss_totals(&self) -> Vec<(String, String, u64)> {
        let mut totals: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (_, source, reason, n) in &self.losses {
            *totals.entry((source.clone(), reason.clone())).or_default() += n;
        }
        totals.into_iter().map(|((s, r), n)| (s, r, n)).collect()
    }

    /// Number of batches.
    pub fn batches(&self) -> usize {
        self.batches.len()
    }

    /// Number of events.
    pub fn events(&self) -> u64 {
        self.batches
            .iter()
            .flat_map(|(_, f)| f)
            .map(|f| f.events as u64)
            .sum()
    }

    /// Bytes of payload.
    pub fn bytes(&self) -> u64 {
        self.batches
            .iter()
            .flat_map(|(_, f)| f)
            .map(|f| f.length)
            .sum()
    }

    /// Reads batch `i` (in batch order): every frame of it, events sorted by id. Frames that
    /// fail their checksum are skipped with a warning; their files and event counts are
    /// added to `skipped`.
    pub fn read_batch(
        &self,
        i: usize,
        open: &mut HashMap<usize, File>,
        skipped: &mut Vec<(PathBuf, u64)>,
    ) -> Result<Vec<Event>, RecordingError> {
        let mut events: Vec<Event> = Vec::new();
        for frame in &self.batches[i].1 {
            let path = &self.files[frame.file];
            let io = |e| RecordingError::Io {
                path: path.display().to_string(),
                source: e,
            };
            let file = match open.entry(frame.file) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(File::open(path).map_err(io)?)
                }
            };
            file.seek(SeekFrom::Start(frame.offset)).map_err(io)?;
            let mut reader = std::io::BufReader::with_capacity(64 << 10, &mut *file);
            let mut payload = Streamed::new(&mut reader, frame.length);
            let decoded = decode_from(&mut payload);
            let left = payload.remaining();
            // The checksum covers the whole payload, also when decoding stopped early on
            // damaged bytes: damage is a checksum failure, not a format error.
            let crc = payload.finish().map_err(io)?;
            if crc != frame.crc {
                let warning = format!(
                    "{}: batch {} fails its checksum: skipped",
                    path.display(),
                    self.batches[i].0
                );
                tracing::warn!("{warning}");
                eprintln!("warning: {warning}");
                skipped.push((path.clone(), frame.events as u64));
                continue;
            }
            let format = |message: String| RecordingError::Format {
                path: path.display().to_string(),
                message: format!("batch {}: {message}", self.batches[i].0),
            };
            let mut part = match decoded {
                Ok(_) if left > 0 => {
                    return Err(format(format!("{left} bytes left after the last event")))
                }
                Ok(events) => events,
                Err(DecodeError::Io(e)) => return Err(io(e)),
                Err(DecodeError::Format(message)) => return Err(format(message)),
            };
            if events.is_empty() {
                events = part;
            } else {
                events.append(&mut part);
            }
        }
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    /// When batch `i` is due in a paced replay, relative to the first batch.
    fn offset(&self, i: usize) -> Duration {
        self.due[i]
    }
}

/// Gaps between recorded batches longer than this many times the median gap are shortened to
/// it: a paced replay never sleeps through a pause of the recording (or a damaged timestamp).
const GAP_FACTOR: u32 = 10;

/// The due time of every batch: recorded times, each gap at most [`GAP_FACTOR`] × the median
/// gap (gaps up to a second are kept as they are).
fn schedule(batches: &[(Batch, Vec<Frame>)], warnings: &mut Vec<String>) -> Vec<Duration> {
    let recorded: Vec<u64> = batches
        .iter()
        .map(|(_, frames)| frames.iter().map(|f| f.ns).min().unwrap_or(0))
        .collect();
    let mut gaps: Vec<u64> = recorded
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    let limit = {
        let mut sorted = gaps.clone();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
        median.saturating_mul(GAP_FACTOR as u64).max(1_000_000_000)
    };
    let mut shortened = (0, 0u64);
    for gap in &mut gaps {
        if *gap > limit {
            shortened = (shortened.0 + 1, shortened.1.max(*gap));
            *gap = limit;
        }
    }
    if shortened.0 > 0 {
        warnings.push(format!(
            "{} pauses of the recording (up to {:.1} s) are replayed as {:.3} s ({GAP_FACTOR}× the usual interval)",
            shortened.0,
            shortened.1 as f64 / 1e9,
            limit as f64 / 1e9
        ));
    }
    let mut due = Vec::with_capacity(batches.len());
    let mut at = 0u64;
    due.extend(batches.first().map(|_| Duration::ZERO));
    for gap in gaps {
        at = at.saturating_add(gap);
        due.push(Duration::from_nanos(at));
    }
    due
}

/// Worker files against the manifest: with one, a missing, stale or foreign file is an error;
/// without one (the recorder did not finish), files of several recordings are an error and
/// missing workers a warning with counts.
fn check_files(
    dir: &Path,
    files: &[PathBuf],
    headers: &[Option<Header>],
    manifest: Option<&Manifest>,
    warnings: &mut Vec<String>,
) -> Result<(), RecordingError> {
    let name = |w: usize| format!("worker-{w:04}.sfrec");
    let present: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let refuse = |message: String| RecordingError::Format {
        path: dir.display().to_string(),
        message,
    };
    match manifest {
        Some(m) => {
            let expected: Vec<String> = if m.files.is_empty() {
                (0..m.workers).map(name).collect()
            } else {
                m.files.iter().map(|(f, _)| f.clone()).collect()
            };
            let missing: Vec<String> = expected
                .iter()
                .filter(|n| !present.contains(n))
                .cloned()
                .collect();
            // A recorder killed before its first write leaves no file: an interrupted
            // recording may lack some; a finished one lacks none.
            if !missing.is_empty() && m.complete {
                return Err(refuse(format!(
                    "{} of its {} worker files are missing: {}",
                    missing.len(),
                    expected.len(),
                    missing.join(", ")
                )));
            }
            if !missing.is_empty() {
                warnings.push(format!(
                    "{} of its {} worker files are missing ({}): the recording was interrupted",
                    missing.len(),
                    expected.len(),
                    missing.join(", ")
                ));
            }
            let stale: Vec<&String> = present.iter().filter(|n| !expected.contains(n)).collect();
            if !stale.is_empty() {
                return Err(refuse(format!(
                    "files that are not part of recording {}: {stale:?}",
                    m.recording
                )));
            }
            for (file, header) in files.iter().zip(headers) {
                if let Some(h) = header.as_ref().filter(|h| h.recording != m.recording) {
                    return Err(refuse(format!(
                        "{} belongs to recording {:?}, not to {:?}",
                        file.display(),
                        h.recording,
                        m.recording
                    )));
                }
            }
            if !m.complete {
                warnings.push(
                    "the recording was interrupted before its source ended (record --resume continues it)"
                        .to_string(),
                );
            }
        }
        None => {
            let ids: std::collections::BTreeSet<&str> = headers
                .iter()
                .flatten()
                .map(|h| h.recording.as_str())
                .collect();
            if ids.len() > 1 {
                return Err(refuse(format!(
                    "its files belong to {} different recordings ({ids:?})",
                    ids.len()
                )));
            }
            let peers = headers.iter().flatten().map(|h| h.peers).max().unwrap_or(0);
            let missing: Vec<String> = (0..peers)
                .map(name)
                .filter(|n| !present.contains(n))
                .collect();
            if !missing.is_empty() {
                warnings.push(format!(
                    "{} of its {peers} worker files are missing ({}): their batches are not replayed",
                    missing.len(),
                    missing.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Adds a recording as a source.
pub trait ReplaySource<'scope> {
    /// Replays `recording`: batch `i` (in recorded batch order) becomes batch `i` here, on
    /// worker `i % peers`.
    fn replay(self, recording: Arc<Recording>, pace: Pace) -> StreamVec<'scope, Batch, Event>;
}

impl<'scope> ReplaySource<'scope> for Scope<'scope, Batch> {
    fn replay(self, recording: Arc<Recording>, pace: Pace) -> StreamVec<'scope, Batch, Event> {
        let batches = recording.batches() as Batch;
        let mut files = HashMap::new();
        let started = Instant::now();
        let losses = crate::flow::Losses::new(&self);
        crate::flow::meter::expect(self.index(), recording.events(), "events");
        // Recorded losses go with the replayed batch that holds their recorded batch (or the
        // next one that has frames), so an output made from a replay counts them.
        let mut recorded: HashMap<usize, Vec<(String, String, u64)>> = HashMap::new();
        for (batch, source, reason, n) in &recording.losses {
            let at = recording
                .batches
                .partition_point(|(b, _)| b < batch)
                .min(recording.batches.len().saturating_sub(1));
            recorded
                .entry(at)
                .or_default()
                .push((source.clone(), reason.clone(), *n));
        }
        source_loop(self, "Replay", Schedule::Owned { batches }, move |batch| {
            let i = batch as usize;
            if let Pace::Recorded { speed } = pace {
                let due = recording.offset(i).div_f64(speed.max(1e-9));
                let now = started.elapsed();
                if now < due {
                    return Ok(Produced::NotYet(due - now));
                }
            }
            let mut skipped = Vec::new();
            let events = recording
                .read_batch(i, &mut files, &mut skipped)
                .map_err(|e| e.to_string())?;
            for (file, n) in skipped {
                losses.count(batch, &file.display().to_string(), "checksum failure", n);
            }
            for (source, reason, n) in recorded.get(&i).into_iter().flatten() {
                losses.count(batch, source, reason, *n);
            }
            crate::flow::meter::read(events.iter().map(|e| e.nbytes() as u64).sum());
            Ok(Produced::Batch(events))
        })
    }
}
