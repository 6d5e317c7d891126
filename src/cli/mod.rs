//! Subcommands of the `shotflow` binary.

/// `println!` for command output: a reader that goes away (`shotflow inspect F | head -1`)
/// ends the program quietly instead of a panic on the closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::cli::stdout_failed(e);
        }
    }};
}

/// `print!` with the same handling of a closed pipe as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout().lock(), $($arg)*) {
            $crate::cli::stdout_failed(e);
        }
    }};
}

mod demo;
mod extract;
mod inspect;
mod record;
mod serve;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// shotflow: stream processing of XFEL detector events on timely dataflow.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the showcase pump-probe pipeline on synthetic shots and print the curve.
    Demo(demo::DemoArgs),
    /// List a run directory (as extra-data's lsxfel) or a smalldata file's datasets.
    Inspect(inspect::InspectArgs),
    /// Write a deterministic simulated EuXFEL run (EXDF 1.0) that extra-data reads.
    Simulate(simulate::SimulateArgs),
    /// Extract selected keys of a run, one row per train, into a smalldata file.
    Extract(extract::ExtractArgs),
    /// Record a source (synthetic, a run directory, a recording) into a recording.
    Record(record::RecordArgs),
    /// Replay a recording, as fast as possible or at the recorded rate.
    Replay(record::ReplayArgs),
    /// Serve a run or recording to karabo-bridge clients (REP or PUSH).
    Serve(serve::ServeArgs),
}

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOTFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    shotflow::runtime::keep_freed_memory();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Extract(args) => extract::run(args),
        Command::Record(args) => record::record(args),
        Command::Replay(args) => record::replay(args),
        Command::Serve(args) => serve::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shotflow: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Standard output failed: a closed pipe ends the program quietly, anything else with an error.
pub fn stdout_failed(error: std::io::Error) -> ! {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("shotflow: error: standard output: {error}");
    std::process::exit(1);
}

/// `--speed 2`, `--speed 2x`: a positive factor.
pub fn parse_speed(text: &str) -> anyhow::Result<f64> {
    let speed: f64 = text
        .trim_end_matches(['x', 'X'])
        .parse()
        .map_err(|_| anyhow::anyhow!("--speed {text:?}: expected a number such as 2 or 2x"))?;
    if speed.is_nan() || speed <= 0.0 {
        anyhow::bail!("--speed {text:?} must be positive");
    }
    Ok(speed)
}

/// Opens a run directory and selects `select` (everything when empty).
pub fn open_run(
    dir: &std::path::Path,
    select: &[String],
) -> anyhow::Result<(
    std::sync::Arc<shotflow::exdf::ExdfRun>,
    std::sync::Arc<Vec<shotflow::exdf::Selected>>,
)> {
    use shotflow::exdf::{ExdfRun, Selector};
    let run = ExdfRun::open(dir)?;
    let texts = if select.is_empty() {
        vec!["*".to_string()]
    } else {
        select.to_vec()
    };
    let selectors = texts
        .iter()
        .map(|s| Selector::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let selected = run.select(&selectors)?;
    Ok((std::sync::Arc::new(run), std::sync::Arc::new(selected)))
}
