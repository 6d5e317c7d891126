//! `shotflow serve RUN_OR_RECORDING --bind tcp://127.0.0.1:PORT`: replay to karabo-bridge
//! clients.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use shotflow::bridge::server::BridgeSink;
use shotflow::bridge::Pattern;
use shotflow::exdf::ExdfSource;
use shotflow::recording::{Pace, Recording, ReplaySource};
use shotflow::runtime::{execute, Launch};
use shotflow::sink::SinkExt;

#[derive(Args)]
pub struct ServeArgs {
    /// A EuXFEL run directory or a recording.
    source: PathBuf,
    /// ZeroMQ endpoint to bind.
    #[arg(long, default_value = "tcp://127.0.0.1:4545")]
    bind: String,
    /// REP (clients ask with `next`) or PUSH.
    #[arg(long, value_enum, default_value_t = Pattern::Rep)]
    pattern: Pattern,
    /// `SOURCE_GLOB[:KEY_GLOB]` of a run to serve (default: everything).
    #[arg(long)]
    select: Vec<String>,
    /// Send at 10 Hz times this (`1`, `2x`); default: as fast as clients take trains.
    #[arg(long)]
    speed: Option<String>,
    /// Seconds to wait for a client to ask for or take a train before giving up.
    #[arg(long, default_value_t = 30)]
    client_timeout: u64,
    #[command(flatten)]
    launch: Launch,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let pace = args.speed.as_deref().map(super::parse_speed).transpose()?;
    let recording = Recording::open(&args.source).ok().map(Arc::new);
    for warning in recording.iter().flat_map(|r| &r.warnings) {
        eprintln!("warning: {warning}");
    }
    let run = match recording {
        Some(_) => None,
        None => Some(super::open_run(&args.source, &args.select)?),
    };
    let (bind, pattern, timeout) = (
        args.bind.clone(),
        args.pattern,
        Duration::from_secs(args.client_timeout),
    );
    eprintln!("serving {} on {bind} ({pattern:?})", args.source.display());
    let mut launch = args.launch.clone();
    // A train of a large detector is tens of MB: one in flight per worker is enough to keep
    // the socket busy, and more only spreads the run over pages the kernel must zero first.
    // (This run's settings only: nothing is left behind for a later run in the process.)
    launch.read_ahead.get_or_insert(1);
    execute(&launch, move |worker| {
        let (recording, run, bind) = (recording.clone(), run.clone(), bind.clone());
        worker.dataflow(|scope| {
            let stream = match (&recording, &run) {
                (Some(r), _) => scope.replay(Arc::clone(r), Pace::AsFastAsPossible),
                (None, Some((run, selected))) => {
                    // One train per batch: a train of a large detector is tens of MB.
                    scope.exdf(Arc::clone(run), Arc::clone(selected), 1)
                }
                (None, None) => unreachable!("a recording or a run"),
            };
            stream.sink_in_order(
                "KaraboBridgeServer",
                BridgeSink::new(&bind, pattern, timeout, pace),
            );
        });
        Ok::<_, std::convert::Infallible>(())
    })?;
    Ok(())
}
