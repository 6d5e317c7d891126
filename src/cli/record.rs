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
use shotflow::recording::{Pace, RecordExt, Recording, ReplaySource};
use shotflow::runtime::{execute, Launch};
use shotflow::sink::SinkExt;
use shotflow::source::{Synthetic, SyntheticSource};

#[derive(Args)]
pub struct RecordArgs {
    /// `synthetic`, a EuXFEL run directory, another recording, or a karabo-bridge endpoint
    /// (`tcp://HOST:PORT`, `ipc://PATH`).
    source: String,
    /// Recording directory to write.
    out: PathBuf,
    /// `SOURCE_GLOB[:KEY_GLOB]` for run directories (default: everything).
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
    let input = Arc::new(input);
    let out = args.out.clone();
    let started = Instant::now();
    execute(&args.launch, move |worker| {
        let (input, out) = (Arc::clone(&input), out.clone());
        worker.dataflow(|scope| {
            let stream = match input.as_ref() {
                Input::Synthetic(config) => scope.synthetic(config),
                Input::Run(run, selected) => scope.exdf(Arc::clone(run), Arc::clone(selected), 4),
                Input::Recording(recording) => {
                    scope.replay(Arc::clone(recording), Pace::AsFastAsPossible)
                }
                Input::Bridge(config) => scope.karabo_bridge(config),
            };
            stream.record(&out)
        })?;
        Ok::<_, anyhow::Error>(())
    })?;
    let recording = Recording::open(&args.out)?;
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

pub fn replay(args: ReplayArgs) -> Result<()> {
    let recording = Arc::new(Recording::open(&args.recording)?);
    for warning in &recording.warnings {
        eprintln!("warning: {warning}");
    }
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
    Ok(())
}
