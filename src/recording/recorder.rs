//! Writing a recording: a sink on every worker.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use timely::dataflow::StreamVec;

use super::{Header, RecordingError, END, FORMAT_VERSION, FRAME, FRAME_HEADER, MAGIC};
use crate::event::Event;
use crate::flow::Batch;
use crate::sink::{Routing, Sink, SinkError, SinkExt};

/// The recording sink of one worker.
pub struct Recorder {
    path: PathBuf,
    recording: String,
    worker: usize,
    peers: usize,
    out: Option<BufWriter<File>>,
    started: Instant,
    frames: u64,
    /// Reused encoding buffer.
    buffer: Vec<u8>,
    /// Where this worker's sources ended, and what they lost, for the end marker.
    ended: Option<crate::flow::read_ahead::SourcesEnded>,
    losses: Option<crate::flow::Losses>,
}

impl Recorder {
    /// A recorder for worker `worker` of `peers` into directory `dir`.
    pub fn new(dir: &Path, worker: usize, peers: usize) -> Result<Recorder, RecordingError> {
        std::fs::create_dir_all(dir).map_err(|e| RecordingError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        Ok(Recorder {
            path: dir.join(format!("worker-{worker:04}.sfrec")),
            recording: String::new(),
            worker,
            peers,
            out: None,
            started: Instant::now(),
            frames: 0,
            buffer: Vec::new(),
            ended: None,
            losses: None,
        })
    }

    /// Marks the file as part of recording `id` (shared by every worker of the recording),
    /// so that a replay recognises files of another recording.
    pub fn with_id(mut self, id: &str) -> Recorder {
        self.recording = id.to_string();
        self
    }

    /// Names the file `worker-<k>.r<part>.sfrec` (`part` > 0): the part a resumed recording
    /// adds.
    pub fn part(mut self, part: u32) -> Recorder {
        if part > 0 {
            self.path = self
                .path
                .with_file_name(format!("worker-{:04}.r{part}.sfrec", self.worker));
        }
        self
    }

    fn io(&self, e: std::io::Error) -> SinkError {
        SinkError::Io {
            context: self.path.display().to_string(),
            source: e,
        }
    }

    /// Writes the header on first use, with the schema of `first` (if any).
    fn open(&mut self, first: Option<&Event>) -> Result<(), SinkError> {
        if self.out.is_some() {
            return Ok(());
        }
        let schema = first
            .map(|e| {
                e.fields()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.name().to_string(),
                            v.dtype().to_string(),
                            v.shape().to_vec(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let header = Header {
            shotflow: env!("CARGO_PKG_VERSION").to_string(),
            recording: self.recording.clone(),
            worker: self.worker,
            peers: self.peers,
            schema,
        };
        let json = serde_json::to_vec(&header).expect("header serialises");
        let file = File::create(&self.path).map_err(|e| self.io(e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let write = |out: &mut BufWriter<File>| -> std::io::Result<()> {
            out.write_all(MAGIC)?;
            out.write_all(&FORMAT_VERSION.to_le_bytes())?;
            out.write_all(&(json.len() as u32).to_le_bytes())?;
            out.write_all(&json)
        };
        write(&mut out).map_err(|e| self.io(e))?;
        self.out = Some(out);
        Ok(())
    }
}

impl Sink<Event> for Recorder {
    fn routing(&self) -> Routing<Event> {
        Routing::Local
    }

    fn write(&mut self, batch: Batch, rows: &mut Vec<Event>) -> Result<(), SinkError> {
        self.open(rows.first())?;
        let mut payload = std::mem::take(&mut self.buffer);
        payload.clear();
        super::codec::encode(rows, &mut payload);
        let crc = crc32fast::hash(&payload);
        let ns = self.started.elapsed().as_nanos() as u64;
        let n = rows.len() as u32;
        let out = self.out.as_mut().expect("opened");
        let mut head = Vec::with_capacity(FRAME_HEADER + 1);
        head.push(FRAME);
        head.extend_from_slice(&batch.to_le_bytes());
        head.extend_from_slice(&ns.to_le_bytes());
        head.extend_from_slice(&n.to_le_bytes());
        head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        head.extend_from_slice(&crc.to_le_bytes());
        let head_crc = crc32fast::hash(&head[1..]);
        head.extend_from_slice(&head_crc.to_le_bytes());
        let result = out.write_all(&head).and_then(|_| out.write_all(&payload));
        self.buffer = payload;
        result.map_err(|e| self.io(e))?;
        crate::flow::meter::written((head.len() + self.buffer.len()) as u64);
        self.frames += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.open(None)?;
        let frames = self.frames;
        // The batch this worker's sources stopped before (all of them: u64::MAX), so that a
        // resumed recording knows where the recorded prefix ends.
        let ended = self.ended.as_ref().map_or(Batch::MAX, |e| e.at());
        let losses = self
            .losses
            .as_ref()
            .map(|l| l.take_before(None))
            .unwrap_or_default();
        let losses = serde_json::to_vec(&losses).expect("loss counts serialise");
        let out = self.out.as_mut().expect("opened");
        let result = (|| -> std::io::Result<()> {
            out.write_all(&[END])?;
            out.write_all(&frames.to_le_bytes())?;
            out.write_all(&ended.to_le_bytes())?;
            out.write_all(&(losses.len() as u32).to_le_bytes())?;
            out.write_all(&losses)?;
            out.flush()?;
            out.get_ref().sync_all()
        })();
        result.map_err(|e| self.io(e))
    }
}

/// Records a stream of events.
pub trait RecordExt {
    /// Records every event of the stream into directory `dir` (one file per worker).
    fn record(self, dir: &Path) -> Result<(), RecordingError>;
    /// [`RecordExt::record`], the files marked as recording `id` ([`Recorder::with_id`]) and
    /// named as its part `part` ([`Recorder::part`]; 0 for a new recording).
    fn record_as(self, dir: &Path, id: &str, part: u32) -> Result<(), RecordingError>;
}

impl RecordExt for StreamVec<'_, Batch, Event> {
    fn record(self, dir: &Path) -> Result<(), RecordingError> {
        self.record_as(dir, "", 0)
    }

    fn record_as(self, dir: &Path, id: &str, part: u32) -> Result<(), RecordingError> {
        let scope = self.scope();
        let mut recorder = Recorder::new(dir, scope.index(), scope.peers())?
            .with_id(id)
            .part(part);
        recorder.ended = Some(crate::flow::read_ahead::SourcesEnded::new(&scope));
        recorder.losses = Some(crate::flow::Losses::new(&scope));
        self.sink_into("Record", recorder);
        Ok(())
    }
}
