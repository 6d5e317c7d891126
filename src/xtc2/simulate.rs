//! A simulated LCLS-II pump-probe run in XTC2, written byte for byte as the DAQ writes one:
//! two streams with their smd files, a Jungfrau (uint16 1×512×1024) with a pulse-energy
//! monitor and the pump laser's state in stream 0, an ePix10ka of 4 segments in stream 1, a
//! delay scan in steps (BeginStep), an EPICS PV in SlowUpdates, and 1990-epoch timestamps at
//! 120 Hz. psana reads it with the same events and values (checked in CI). Everything is a
//! function of the seed.

use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, IxDyn};
use rand_distr::{Distribution, Gamma};

use super::format::{DataType, Transition};
use super::names::{Field, Names};
use super::write::{dgram, names, shapes_data, smd_datagram};
use super::Xtc2Error;
use crate::event::Value;
use crate::source::synthetic::{event_rng, noise_frame, noise_table, render_frame};

/// Seconds from the Unix epoch to the EPICS epoch (1990-01-01), which LCLS-II timestamps count
/// from.
pub const EPICS_EPOCH: u64 = 631_152_000;

/// What to simulate.
///
/// ```
/// use shotflow::xtc2::{Xtc2Run, Xtc2Simulation};
///
/// let dir = std::env::temp_dir().join(format!("xtc2-sim-doc-{}", std::process::id()));
/// let sim = Xtc2Simulation { events: 12, events_per_step: 4, frame: [16, 32], segment: [8, 8], ..Default::default() };
/// sim.write(&dir).unwrap();
/// let run = Xtc2Run::open(&dir).unwrap();
/// assert_eq!(run.events.len(), 12);
/// assert_eq!(run.streams.len(), 2);
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Xtc2Simulation {
    /// Experiment name (file names and runinfo).
    pub experiment: String,
    /// LCLS run number.
    pub run: u32,
    /// Events (L1Accepts).
    pub events: u64,
    /// Events per step of the delay scan.
    pub events_per_step: u64,
    /// A SlowUpdate (with the EPICS PV) every this many events.
    pub slow_every: u64,
    /// The Jungfrau frame (it is stored as 1 × rows × columns, one module).
    pub frame: [usize; 2],
    /// The shape of each of the ePix10ka's 4 segments.
    pub segment: [usize; 2],
    /// Mean photons per Jungfrau frame at 1 mJ.
    pub photons: f64,
    /// Start a new big-data chunk at the first step that begins after this many events per
    /// chunk, as the DAQ does when a file grows too large (`None`: one chunk).
    pub chunk_events: Option<u64>,
    /// Seed.
    pub seed: u64,
    /// Ticks of 1/120 s before the run's first datagram: a later run starts later.
    pub first_tick: u64,
}

impl Default for Xtc2Simulation {
    fn default() -> Self {
        Xtc2Simulation {
            experiment: "xppx00126".into(),
            run: 1,
            events: 240,
            events_per_step: 40,
            slow_every: 30,
            frame: [512, 1024],
            segment: [352, 384],
            photons: 400.0,
            chunk_events: None,
            seed: 2026,
            first_tick: 0,
        }
    }
}

/// The EPICS PV the simulation records in its SlowUpdates.
pub const PV: &str = "XPP:LAS:MMN:01:RBV";
/// ePix10ka segments.
const SEGMENTS: u32 = 4;

fn def(
    det_type: &str,
    det: &str,
    alg: &str,
    segment: u32,
    fields: &[(&str, DataType, u32)],
) -> Names {
    Names {
        det_type: det_type.into(),
        det_name: det.into(),
        det_id: if det_type == "runinfo" {
            String::new()
        } else {
            format!("shotflow-{det}")
        },
        alg: alg.into(),
        // psana picks a detector's class by type, algorithm and version: jungfrau_raw_0_2_0,
        // epix10ka_raw_3_0_1.
        version: match det_type {
            "jungfrau" => 0x00_02_00,
            "epix10ka" => 0x03_00_01,
            _ if alg == "raw" => 0x01_00_00,
            _ => 0,
        },
        segment,
        fields: fields
            .iter()
            .map(|(n, t, r)| Field::new(n, *t, *r))
            .collect(),
    }
}

fn text(s: &str) -> Value {
    Value::from(s.as_bytes().to_vec())
}

/// The schema of each stream: `(NamesId, definition)`.
fn schema(stream: usize) -> Vec<(u32, Names)> {
    use DataType::*;
    let node = (stream as u32) << 8;
    let mut out = vec![(
        node | 0xff,
        def(
            "runinfo",
            "runinfo",
            "runinfo",
            0,
            &[("expt", CharStr, 1), ("runnum", U32, 0)],
        ),
    )];
    out.push((
        node | 0xfc,
        def(
            "chunkinfo",
            "chunkinfo",
            "chunkinfo",
            0,
            &[("chunkid", U32, 0), ("filename", CharStr, 1)],
        ),
    ));
    if stream == 0 {
        out.extend([
            (
                node | 1,
                def(
                    "jungfrau",
                    "jungfrau",
                    "raw",
                    0,
                    &[("raw", U16, 3), ("frame_cnt", U64, 0)],
                ),
            ),
            (node | 2, def("gmd", "gmd", "raw", 0, &[("energy", F64, 0)])),
            (node | 3, def("evr", "evr", "raw", 0, &[("laser", U8, 0)])),
            (
                node | 4,
                def("scan", "scan", "raw", 0, &[("delay", F64, 0)]),
            ),
            (node | 5, def("epics", "epics", "raw", 0, &[(PV, F64, 0)])),
            (
                node | 6,
                def(
                    "epicsinfo",
                    "epicsinfo",
                    "epicsinfo",
                    0,
                    &[("keys", CharStr, 1), (PV, CharStr, 1)],
                ),
            ),
        ]);
    } else {
        for s in 0..SEGMENTS {
            out.push((
                node | (1 + s),
                def("epix10ka", "epix10ka", "raw", s, &[("raw", U16, 2)]),
            ));
        }
    }
    out
}

impl Xtc2Simulation {
    /// Timestamp of tick `t` (after [`Xtc2Simulation::first_tick`]): one every 8,333,333 ns
    /// (120 Hz) from 2026-11-30 in the EPICS epoch.
    pub fn timestamp(&self, t: u64) -> u64 {
        let start = 1_795_996_800 - EPICS_EPOCH; // 2026-11-30T00:00:00Z
        let ns = (self.first_tick + t) * 8_333_333 + 123;
        ((start + ns / 1_000_000_000) << 32) | (ns % 1_000_000_000)
    }

    /// The delay (ps) of step `s`.
    pub fn delay(&self, step: u64) -> f64 {
        -1.0 + 0.5 * step as f64
    }

    /// Pulse energy (mJ) of event `i`.
    pub fn energy(&self, i: u64) -> f64 {
        let mut rng = event_rng(self.seed ^ 0x676d64, i);
        Gamma::new(12.0, 1.0 / 12.0).unwrap().sample(&mut rng)
    }

    /// Whether the pump laser fired at event `i`.
    pub fn laser_on(&self, i: u64) -> bool {
        i.is_multiple_of(2)
    }

    /// The EPICS PV's value at SlowUpdate `k`.
    pub fn pv(&self, k: u64) -> f64 {
        12.5 + 0.01 * k as f64
    }

    /// Writes the run into `dir` (created if needed): `<exp>-r<run>-s00N-c00K.xtc2` and
    /// `smalldata/<exp>-r<run>-s00N-c000.smd.xtc2` for streams 0 and 1. Returns the files
    /// written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, Xtc2Error> {
        std::fs::create_dir_all(dir.join("smalldata")).map_err(|e| Xtc2Error::io(dir, e))?;
        let mut written = Vec::new();
        for stream in 0..2 {
            let base = format!("{}-r{:04}-s{stream:03}", self.experiment, self.run);
            let mut files = Files::create(dir, &base)?;
            self.write_stream(stream, &mut files)?;
            written.extend(files.finish()?);
        }
        Ok(written)
    }

    fn write_stream(&self, stream: usize, files: &mut Files) -> Result<(), Xtc2Error> {
        let schema = schema(stream);
        let block = |name: &str, values: &[Value]| -> Vec<u8> {
            let (id, d) = schema
                .iter()
                .find(|(_, d)| d.det_name == name)
                .expect("declared");
            shapes_data(*id, d, values, 0)
        };
        let mut tick = 0u64;
        let mut next = || {
            tick += 1;
            self.timestamp(tick - 1)
        };
        // Configure: every Names, and the EPICS aliases psana reads from epicsinfo.
        let mut configure: Vec<Vec<u8>> = schema.iter().map(|(id, d)| names(*id, d)).collect();
        if stream == 0 {
            configure.push(block(
                "epicsinfo",
                &[
                    text("epicsname,otherfieldname"),
                    text(&format!("{PV},laser_motor")),
                ],
            ));
        }
        files.emit(&dgram(next(), Transition::Configure, &configure, 0))?;
        let runinfo = if stream == 0 {
            vec![block(
                "runinfo",
                &[text(&self.experiment), Value::U32(self.run)],
            )]
        } else {
            Vec::new()
        };
        files.emit(&dgram(next(), Transition::BeginRun, &runinfo, 0))?;
        let noise = noise_table(self.seed);
        let steps = self.events.div_ceil(self.events_per_step.max(1));
        let mut slow = 0u64;
        for step in 0..steps {
            let scan = if stream == 0 {
                vec![block("scan", &[Value::F64(self.delay(step))])]
            } else {
                Vec::new()
            };
            files.emit(&dgram(next(), Transition::BeginStep, &scan, 0))?;
            let first = step * self.events_per_step;
            let chunk = self.chunk_events.map_or(0, |n| (first / n.max(1)) as u32);
            if chunk > files.chunk {
                // The DAQ's chunk switch: this Enable, the old chunk's last datagram, names
                // the next chunk; the big data go on in it (without a Configure).
                let info = block(
                    "chunkinfo",
                    &[Value::U32(chunk), text(&files.chunk_name(chunk))],
                );
                files.emit(&dgram(next(), Transition::Enable, &[info], 0))?;
                files.next_chunk(chunk)?;
            } else {
                files.emit(&dgram(next(), Transition::Enable, &[], 0))?;
            }
            for i in first..(first + self.events_per_step).min(self.events) {
                if i > 0 && i.is_multiple_of(self.slow_every.max(1)) {
                    let epics = if stream == 0 {
                        vec![block("epics", &[Value::F64(self.pv(slow))])]
                    } else {
                        Vec::new()
                    };
                    files.emit(&dgram(next(), Transition::SlowUpdate, &epics, 0))?;
                    slow += 1;
                }
                let ts = next();
                let blocks = if stream == 0 {
                    let energy = self.energy(i);
                    let delay = self.delay(step);
                    let pump = if self.laser_on(i) && delay > 0.0 {
                        1.0 + 0.5 * (1.0 - (-delay / 0.8).exp())
                    } else {
                        1.0
                    };
                    let mut rng = event_rng(self.seed ^ 0x6a66, i);
                    let frame: Array2<u16> =
                        render_frame(&mut rng, &noise, self.frame, self.photons * energy * pump);
                    let [r, c] = self.frame;
                    let raw = ArrayD::from_shape_vec(
                        IxDyn(&[1, r, c]),
                        frame.into_raw_vec_and_offset().0,
                    )
                    .expect("1 × rows × columns");
                    vec![
                        block("jungfrau", &[Value::from(raw), Value::U64(i)]),
                        block("gmd", &[Value::F64(energy)]),
                        block("evr", &[Value::U8(self.laser_on(i) as u8)]),
                    ]
                } else {
                    (0..SEGMENTS)
                        .map(|s| {
                            let mut rng = event_rng(self.seed ^ (0x6570 + s as u64), i);
                            let frame = noise_frame(&mut rng, &noise, self.segment);
                            let (id, d) = schema
                                .iter()
                                .find(|(_, d)| d.det_name == "epix10ka" && d.segment == s)
                                .expect("declared");
                            shapes_data(*id, d, &[Value::from(frame.into_dyn())], 0)
                        })
                        .collect()
                };
                files.emit(&dgram(ts, Transition::L1Accept, &blocks, 0))?;
            }
            files.emit(&dgram(next(), Transition::Disable, &[], 0))?;
            files.emit(&dgram(next(), Transition::EndStep, &[], 0))?;
        }
        files.emit(&dgram(next(), Transition::EndRun, &[], 0))?;
        Ok(())
    }
}

/// One stream's files as they are written: the current big-data chunk and the smd file, whose
/// offsets count from the start of the current chunk.
struct Files {
    dir: PathBuf,
    base: String,
    chunk: u32,
    out: (PathBuf, std::io::BufWriter<std::fs::File>),
    smd: (PathBuf, std::io::BufWriter<std::fs::File>),
    offset: u64,
    written: Vec<PathBuf>,
}

impl Files {
    fn open(path: PathBuf) -> Result<(PathBuf, std::io::BufWriter<std::fs::File>), Xtc2Error> {
        let file = std::fs::File::create(&path).map_err(|e| Xtc2Error::io(&path, e))?;
        Ok((path, std::io::BufWriter::with_capacity(4 << 20, file)))
    }

    fn create(dir: &Path, base: &str) -> Result<Files, Xtc2Error> {
        Ok(Files {
            dir: dir.to_path_buf(),
            base: base.to_string(),
            chunk: 0,
            out: Files::open(dir.join(format!("{base}-c000.xtc2")))?,
            smd: Files::open(dir.join("smalldata").join(format!("{base}-c000.smd.xtc2")))?,
            offset: 0,
            written: Vec::new(),
        })
    }

    fn chunk_name(&self, chunk: u32) -> String {
        format!("{}-c{chunk:03}.xtc2", self.base)
    }

    /// Writes a big datagram, and its smd datagram.
    fn emit(&mut self, bytes: &[u8]) -> Result<(), Xtc2Error> {
        self.out
            .1
            .write_all(bytes)
            .map_err(|e| Xtc2Error::io(&self.out.0, e))?;
        self.smd
            .1
            .write_all(&smd_datagram(bytes, self.offset))
            .map_err(|e| Xtc2Error::io(&self.smd.0, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Closes the current chunk and goes on in chunk `chunk`.
    fn next_chunk(&mut self, chunk: u32) -> Result<(), Xtc2Error> {
        let next = Files::open(self.dir.join(self.chunk_name(chunk)))?;
        let (path, mut old) = std::mem::replace(&mut self.out, next);
        old.flush().map_err(|e| Xtc2Error::io(&path, e))?;
        self.written.push(path);
        self.chunk = chunk;
        self.offset = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<PathBuf>, Xtc2Error> {
        for (path, file) in [&mut self.out, &mut self.smd] {
            file.flush().map_err(|e| Xtc2Error::io(path, e))?;
        }
        self.written.extend([self.out.0, self.smd.0]);
        Ok(self.written)
    }
}
