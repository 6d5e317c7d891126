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
mod profile;
mod record;
mod serve;
mod simulate;
mod xtc2;

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

/// How a command's output survives interruption: shared by every command that writes a
/// smalldata output.
#[derive(clap::Args, Clone, Debug)]
pub struct Durability {
    /// Continue the interrupted or crashed run whose partial result is at the output path (or
    /// at <stem>.partial.h5): only the batches it did not commit are processed. Refused when
    /// the inputs or options differ from that run's.
    #[arg(long)]
    pub resume: bool,
    /// Seconds between commits (segments closed, master rewritten; at least 0.1); a crash
    /// costs at most the work since the last one.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub commit_interval: f64,
    /// Also survive the loss of the node: fsync every committed file (slower).
    #[arg(long)]
    pub fsync: bool,
    /// When committed segments are copied into fewer files: MAPPINGS,FILES,FAN[,AT_ONCE_BYTES]
    /// (see the library's `Compaction`); `off` keeps every segment.
    #[arg(long, hide = true, value_parser = parse_compaction)]
    pub compaction: Option<shotflow::smalldata::Compaction>,
}

impl Durability {
    /// Applies these options to an output whose inputs and options `fingerprint` names.
    pub fn apply(
        &self,
        output: shotflow::smalldata::SmallData,
        fingerprint: Vec<(String, String)>,
    ) -> shotflow::smalldata::SmallData {
        output
            .fingerprint(fingerprint)
            .resume(self.resume)
            .commit_interval(std::time::Duration::from_secs_f64(self.commit_interval))
            .durable(self.fsync)
            .compaction(self.compaction.unwrap_or_default())
    }
}

fn parse_compaction(text: &str) -> Result<shotflow::smalldata::Compaction, String> {
    if text == "off" {
        return Ok(shotflow::smalldata::Compaction::OFF);
    }
    let numbers: Vec<u64> = text
        .split(',')
        .map(|n| n.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{text:?}: {e}"))?;
    let default = shotflow::smalldata::Compaction::default();
    match numbers[..] {
        [mappings, files, fan, ref at_once @ ..]
            if mappings > 0 && files > 0 && fan >= 2 && at_once.len() <= 1 =>
        {
            Ok(shotflow::smalldata::Compaction {
                mappings: mappings as usize,
                files: files as usize,
                fan: fan as usize,
                at_once: at_once.first().copied().unwrap_or(default.at_once),
            })
        }
        _ => Err(format!(
            "{text:?}: give MAPPINGS,FILES,FAN[,AT_ONCE_BYTES] (positive, FAN at least 2) or off"
        )),
    }
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds")),
    }
}

/// Names a run's files by their paths, sizes and modification times, for a fingerprint: a
/// resumed run must read the same files, unchanged.
pub fn files_digest<'a>(paths: impl IntoIterator<Item = &'a std::path::Path>) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut count = 0;
    for path in paths {
        count += 1;
        path.hash(&mut hasher);
        if let Ok(meta) = std::fs::metadata(path) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    format!("{count} files, digest {:016x}", hasher.finish())
}

/// Names a file and its content, for a fingerprint: a resumed run must read the same one.
pub fn file_digest(path: Option<&std::path::Path>) -> String {
    use std::hash::{Hash, Hasher};
    let Some(path) = path else {
        return "none".into();
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path).ok().hash(&mut hasher);
    format!("{} (digest {:016x})", path.display(), hasher.finish())
}

/// Prints loss counts (source, reason, events), one line each.
pub fn print_losses(losses: &[(String, String, u64)]) {
    for (source, reason, events) in losses {
        eprintln!("shotflow: {events} events: {reason}: {source}");
    }
}

/// Says what the run's smalldata output counted as lost, and what it left when it did not
/// complete (on process 0, which wrote the master); turns a stop into the error that sets the
/// exit status.
pub fn finish(
    outcome: Result<(), shotflow::runtime::RunError>,
    result: &std::sync::Mutex<Option<shotflow::smalldata::SmallDataResult>>,
) -> anyhow::Result<()> {
    use shotflow::runtime::RunError;
    if let Some(r) = result.lock().unwrap().as_ref() {
        // Every dropped or skipped event, from what the output committed.
        print_losses(&r.losses);
    }
    let Err(error) = outcome else {
        return Ok(());
    };
    if let (RunError::Stopped { .. } | RunError::Worker(_), Some(r)) =
        (&error, result.lock().unwrap().as_ref())
    {
        if r.complete {
            if let RunError::Worker(failure) = &error {
                if failure.secondary {
                    // Only the loss of a peer, after every batch was committed: a job script
                    // must not count a complete result as a crash.
                    eprintln!(
                        "shotflow: another process went away after the result was complete \
                         ({}); {} is complete",
                        failure.cause,
                        r.master.display()
                    );
                    return Ok(());
                }
            }
            eprintln!("shotflow: {} is complete nonetheless", r.master.display());
        } else {
            let last = r
                .last_event
                .map_or_else(|| "none".to_string(), |e| e.to_string());
            eprintln!(
                "shotflow: committed {} events in batches 0..{} (last event id {last}) to {}; \
                 run again with --resume to continue",
                r.rows,
                r.batches,
                r.master.display()
            );
        }
    }
    Err(error.into())
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
    if let Err(e) = shotflow::runtime::stop_on_signals() {
        eprintln!("shotflow: warning: SIGINT and SIGTERM will end the process abruptly: {e}");
    }
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Simulate(args) => simulate::run(args),
        // The input's format decides: an XTC2 file or run directory, else a EuXFEL run.
        Command::Extract(args) if xtc2::is_xtc2(&args.run) => xtc2::extract(args),
        Command::Extract(args) => extract::run(args),
        Command::Record(args) => record::record(args),
        Command::Replay(args) => record::replay(args),
        Command::Serve(args) => serve::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shotflow: error: {error:#}");
            // A stopped run exits as the signal asks (130 for SIGINT, 143 for SIGTERM).
            match error.downcast_ref::<shotflow::runtime::RunError>() {
                Some(shotflow::runtime::RunError::Stopped { reason, .. }) => {
                    ExitCode::from(reason.exit_status())
                }
                _ => ExitCode::FAILURE,
            }
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
