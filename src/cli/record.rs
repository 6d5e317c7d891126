//! `shotflow record SOURCE OUT` and `shotflow replay RECORDING`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use shotflow::bridge::client::{BridgeSource, ClientConfig};
use shotflow::bridge::Pattern;
use shotflow::event::Value;
use shotflow::exdf::{ExdfRun, ExdfSource};
use shotflow::recording::{Manifest, Pace, RecordExt, Recording, ReplaySource};
use shotflow::runtime::{execute, execute_with, Launch};
use shotflow::sink::SinkExt;
use shotflow::source::{Synthetic, SyntheticSource};
use shotflow::xtc2::{Xtc2Run, Xtc2Selector, Xtc2Source};

#[derive(Args)]
pub struct RecordArgs {
    /// `synthetic`, a EuXFEL run directory, an LCLS-II XTC2 file or run directory, another
    /// recording, or a karabo-bridge endpoint (`tcp://HOST:PORT`, `ipc://PATH`).
    source: String,
    /// Recording directory to write.
    out: PathBuf,
    /// `SOURCE_GLOB[:KEY_GLOB]` for EuXFEL run directories, `DET[:ALG[:FIELD]]` for XTC2
    /// (default: everything).
    #[arg(long)]
    select: Vec<String>,
    /// Events of the synthetic source.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// karabo-bridge: the server's pattern (REP: we ask with `next`; PUSH: we pull).
    #[arg(long, value_enum, default_value_t = Pattern::Rep)]
    pattern: Pattern,
    /// karabo-bridge: trains to record (default: until the server is silent for --timeout).
    #[arg(long)]
    trains: Option<u64>,
    /// karabo-bridge: seconds of silence that end the recording.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// karabo-bridge: connections, each with a train in flight.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Replace an existing recording: the new one is written beside it and takes its place
    /// only when it is finished.
    #[arg(long)]
    overwrite: bool,
    /// Continue a recording that was stopped (SIGINT, SIGTERM) from where its sources
    /// stopped: the new batches go into files `worker-<k>.r<n>.sfrec` beside the old ones.
    /// Not for a live karabo-bridge stream, which cannot be read again.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    #[command(flatten)]
    launch: Launch,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// Recording directory.
    recording: PathBuf,
    /// Replay at the recorded rate times this (`2`, `2x`, `0.5`); default: as fast as possible.
    #[arg(long)]
    speed: Option<String>,
    #[command(flatten)]
    launch: Launch,
}

enum Input {
    Synthetic(Synthetic),
    Run(Arc<ExdfRun>, Arc<Vec<shotflow::exdf::Selected>>),
    Xtc2(Arc<Xtc2Run>, Arc<Vec<Xtc2Selector>>),
    Recording(Arc<Recording>),
    Bridge(ClientConfig),
}

pub fn record(args: RecordArgs) -> Result<()> {
    let path = PathBuf::from(&args.source);
    let input = if args.source.starts_with("tcp://") || args.source.starts_with("ipc://") {
        Input::Bridge(
            ClientConfig::new(&args.source)
                .pattern(args.pattern)
                .max_trains(args.trains)
                .connections(args.connections)
                .timeout(std::time::Duration::from_secs(args.timeout)),
        )
    } else if args.source == "synthetic" {
        Input::Synthetic(Synthetic {
            events: args.events,
            ..Synthetic::default()
        })
    } else if super::xtc2::is_xtc2(&path) {
        let run = Xtc2Run::open(&path)?;
        for w in &run.warnings {
            eprintln!("warning: {w}");
        }
        let texts = if args.select.is_empty() {
            vec!["*".to_string()]
        } else {
            args.select.clone()
        };
        let selectors = texts
            .iter()
            .map(|s| Xtc2Selector::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        Input::Xtc2(Arc::new(run), Arc::new(selectors))
    } else if path.is_dir() && Recording::open(&path).is_ok() {
        Input::Recording(Arc::new(Recording::open(&path)?))
    } else if path.is_dir() {
        let (run, selected) = super::open_run(&path, &args.select)?;
        Input::Run(run, selected)
    } else {
        bail!(
            "{}: not `synthetic`, a run directory, a recording or a tcp:// or ipc:// endpoint",
            args.source
        );
    };
    // What the recording is of: its id, and what its processes must agree on.
    let source = format!(
        "{} (select {:?}, events {}, trains {:?})",
        args.source, args.select, args.events, args.trains
    );
    let mut id = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&source, &args.out).hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let launch = args.launch.clone().with_fingerprint([
        ("record", &source),
        ("into", &args.out.display().to_string()),
    ]);
    let plan = launch.plan()?;
    // Process 0 writes the new recording's manifest before the processes connect: another
    // process that finds it there (this launch's id, unfinished, nothing recorded yet) must
    // not take it for an earlier recording.
    let process_0_started = plan.process() != 0
        && Manifest::read(&args.out).ok().flatten().is_some_and(|m| {
            m.recording == id && !m.complete && m.batches == 0 && m.files.is_empty()
        });
    let exists = !process_0_started
        && args.out.exists()
        && std::fs::read_dir(&args.out).map_or(true, |mut d| d.next().is_some());
    // A resumed recording: its files so far, the part this run adds, and where it starts.
    let resumed = if args.resume {
        if let Input::Bridge(_) = input {
            bail!("a recording of a live karabo-bridge stream cannot be resumed: the stream cannot be read again");
        }
        let old = Recording::open(&args.out)?;
        let Some(manifest) = old.manifest.clone() else {
            bail!(
                "{}: no recording.json (not recorded by this shotflow): it cannot be resumed; record it again",
                args.out.display()
            );
        };
        if manifest.complete {
            bail!(
                "{}: the recording is complete: nothing to resume",
                args.out.display()
            );
        }
        if manifest.source != source {
            bail!(
                "{}: recorded from {} but resumed from {source}: give the same source and options",
                args.out.display(),
                manifest.source
            );
        }
        let start = old.resume_point();
        // The files of every part carry the recording's id, whoever computed it first.
        id = manifest.recording.clone();
        let mut files = manifest.files.clone();
        if files.is_empty() {
            files = (0..manifest.workers)
                .map(|w| (format!("worker-{w:04}.sfrec"), u64::MAX))
                .collect();
        }
        for (_, below) in &mut files {
            *below = (*below).min(start);
        }
        let part = files
            .iter()
            .filter_map(|(f, _)| f.split('.').nth(1)?.strip_prefix('r')?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        Some((start, part, files))
    } else {
        None
    };
    if exists && !args.overwrite && !args.resume {
        bail!(
            "{} exists: a recording is never recorded into (stale files would mix in); give \
             --overwrite to replace it once the new one is finished",
            args.out.display()
        );
    }
    // With --overwrite the new recording is written beside the old one.
    let target = if exists && !args.resume {
        let mut name = args.out.as_os_str().to_owned();
        name.push(".new");
        PathBuf::from(name)
    } else {
        args.out.clone()
    };
    if plan.process() == 0 && target != args.out {
        let _ = std::fs::remove_dir_all(&target);
    }
    let files = match &resumed {
        Some((_, part, files)) => {
            let mut files = files.clone();
            files.extend(
                (0..plan.peers()).map(|w| (format!("worker-{w:04}.r{part}.sfrec"), u64::MAX)),
            );
            files
        }
        None => Vec::new(),
    };
    let mut manifest = Manifest {
        recording: id.clone(),
        workers: plan.peers(),
        batches: 0,
        events: 0,
        complete: false,
        source: source.clone(),
        schema: Vec::new(),
        files,
        losses: Vec::new(),
    };
    if plan.process() == 0 {
        // Written before any frame: a recording whose recorder is killed says what it is of,
        // which files are its own, and that it is unfinished; `--resume` continues it.
        std::fs::create_dir_all(&target)?;
        manifest.write(&target)?;
    }
    let input = Arc::new(input);
    let out = target.clone();
    let started = Instant::now();
    let recording_id = id.clone();
    let mut settings = launch.settings();
    let part = resumed.as_ref().map_or(0, |(start, part, _)| {
        settings.start = *start;
        *part
    });
    let outcome = execute_with(&plan, settings, move |worker| {
        let (input, out) = (Arc::clone(&input), out.clone());
        worker.dataflow(|scope| {
            let stream = match input.as_ref() {
                Input::Synthetic(config) => scope.synthetic(config),
                Input::Run(run, selected) => scope.exdf(Arc::clone(run), Arc::clone(selected), 4),
                Input::Xtc2(run, selectors) => {
                    scope.xtc2(Arc::clone(run), Arc::clone(selectors), 64)
                }
                Input::Recording(recording) => {
                    scope.replay(Arc::clone(recording), Pace::AsFastAsPossible)
                }
                Input::Bridge(config) => scope.karabo_bridge(config),
            };
            stream.record_as(&out, &recording_id, part)
        })?;
        Ok::<_, anyhow::Error>(())
    });
    let stopped = match outcome {
        Ok(_) => None,
        Err(shotflow::runtime::RunError::Stopped { reason, .. }) => Some(reason),
        Err(e) => return Err(e.into()),
    };
    if plan.process() != 0 {
        return match outcome_error(stopped) {
            Some(e) => Err(e),
            None => Ok(()),
        };
    }
    if target != args.out {
        // Swap in the finished recording; the old one is removed only after.
        let mut old = args.out.as_os_str().to_owned();
        old.push(format!(".old-{}", std::process::id()));
        std::fs::rename(&args.out, &old)?;
        std::fs::rename(&target, &args.out)?;
        std::fs::remove_dir_all(&old)?;
    }
    manifest.complete = stopped.is_none();
    // The files list first, then what they hold as a replay reads them.
    manifest.write(&args.out)?;
    let recording = Recording::open(&args.out)?;
    manifest.batches = recording.batches() as u64;
    manifest.events = recording.events();
    manifest.schema = recording
        .headers
        .iter()
        .map(|h| h.schema.clone())
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    manifest.losses = recording.loss_totals();
    manifest.write(&args.out)?;
    super::print_losses(&manifest.losses);
    if let Some(e) = outcome_error(stopped) {
        eprintln!(
            "shotflow: recorded {} events in {} batches to {} before the stop (marked interrupted)",
            recording.events(),
            recording.batches(),
            args.out.display()
        );
        return Err(e);
    }
    outln!(
        "{}: {} events in {} batches, {:.1} MB, {:.2} s",
        args.out.display(),
        recording.events(),
        recording.batches(),
        recording.bytes() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The error a stopped recording ends with (its exit status follows the signal).
fn outcome_error(stopped: Option<shotflow::runtime::StopReason>) -> Option<anyhow::Error> {
    stopped.map(|reason| shotflow::runtime::RunError::Stopped { reason, process: 0 }.into())
}

pub fn replay(args: ReplayArgs) -> Result<()> {
    let recording = Arc::new(Recording::open(&args.recording)?);
    for warning in &recording.warnings {
        eprintln!("warning: {warning}");
    }
    let recorded_losses = recording.loss_totals();
    let pace = match &args.speed {
        None => Pace::AsFastAsPossible,
        Some(text) => {
            let speed = super::parse_speed(text)?;
            Pace::Recorded { speed }
        }
    };
    let (events, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (e, b) = (Arc::clone(&events), Arc::clone(&bytes));
    let started = Instant::now();
    execute(&args.launch, move |worker| {
        let (r, e, b) = (Arc::clone(&recording), Arc::clone(&e), Arc::clone(&b));
        worker.dataflow(|scope| {
            scope
                .replay(r, pace)
                .for_each_batch("Count", move |_, rows| {
                    e.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    let n: usize = rows
                        .iter()
                        .flat_map(|r| r.fields())
                        .map(|(_, v)| match v {
                            Value::Array(a) => a.len() * a.dtype().size(),
                            v => v.dtype().size(),
                        })
                        .sum();
                    b.fetch_add(n as u64, Ordering::Relaxed);
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let (n, bytes) = (
        events.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
    );
    outln!(
        "{}: {n} events, {:.1} MB in {seconds:.2} s: {:.0} events/s, {:.2} GB/s",
        args.recording.display(),
        bytes as f64 / 1e6,
        n as f64 / seconds,
        bytes as f64 / seconds / 1e9
    );
    // What the recorded run lost (this replay's own checksum failures were warned above).
    super::print_losses(&recorded_losses);
    Ok(())
}
