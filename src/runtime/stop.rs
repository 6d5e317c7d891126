//! Stopping a run on purpose: SIGINT, SIGTERM (SLURM's time limit, `scancel`) or a call.
//!
//! A stop is not a failure. Sources stop producing and record where they stopped; everything
//! already produced flows on to the sinks, which commit it; the run ends with
//! [`RunError::Stopped`](super::RunError::Stopped) so that a caller cannot mistake it for a
//! complete run. What a sink committed stays usable and resumable.
//!
//! A second signal while a stop is under way ends the process at once (exit status 128 +
//! signal): whatever was committed before stays committed.

use std::sync::{Arc, Mutex, Once, Weak};

use super::failure::RunState;

/// Why a run was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A signal (its number: 2 for SIGINT, 15 for SIGTERM).
    Signal(i32),
    /// A call to [`request_stop`] (or a peer process that was stopped).
    Requested,
}

impl StopReason {
    /// The exit status a command-line program should end with: 128 + signal (130 for SIGINT,
    /// 143 for SIGTERM), 1 for a stop requested by code.
    pub fn exit_status(self) -> u8 {
        match self {
            StopReason::Signal(signal) => 128u8.saturating_add(signal.clamp(0, 127) as u8),
            StopReason::Requested => 1,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            StopReason::Signal(signal) => signal.clamp(1, 127) as u8,
            StopReason::Requested => 255,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<StopReason> {
        match code {
            0 => None,
            255 => Some(StopReason::Requested),
            signal => Some(StopReason::Signal(signal as i32)),
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Signal(libc::SIGINT) => write!(f, "SIGINT"),
            StopReason::Signal(libc::SIGTERM) => write!(f, "SIGTERM"),
            StopReason::Signal(n) => write!(f, "signal {n}"),
            StopReason::Requested => write!(f, "a stop request"),
        }
    }
}

/// The runs of this process that a signal should stop.
static RUNNING: Mutex<Vec<Weak<RunState>>> = Mutex::new(Vec::new());

pub(crate) fn register(state: &Arc<RunState>) {
    let mut running = RUNNING.lock().unwrap();
    running.retain(|r| r.strong_count() > 0);
    running.push(Arc::downgrade(state));
}

/// Asks every run of this process to stop: sources stop at their next batch, sinks commit what
/// reached them, and each run ends with [`RunError::Stopped`](super::RunError::Stopped).
/// Returns false when a stop was already under way.
///
/// # Examples
///
/// ```
/// use shotflow::runtime::{execute, request_stop, Launch, RunError, StopReason};
/// use shotflow::source::batched_source;
/// use timely::dataflow::operators::Inspect;
///
/// let outcome = execute(&Launch::threads(2), |worker| {
///     worker.dataflow(|scope| {
///         batched_source(scope, "Endless", u64::MAX, |batch| {
///             if batch == 10 { request_stop(StopReason::Requested); }
///             Ok::<_, String>(vec![batch])
///         })
///         .inspect(|_| ());
///     });
///     Ok::<_, std::convert::Infallible>(())
/// });
/// assert!(matches!(outcome, Err(RunError::Stopped { reason: StopReason::Requested, .. })));
/// ```
pub fn request_stop(reason: StopReason) -> bool {
    let running: Vec<Arc<RunState>> = RUNNING
        .lock()
        .unwrap()
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let mut first = false;
    for state in running {
        first |= state.request_stop(reason);
    }
    first
}

/// Why the current worker's run is stopping, if it is (`None` outside a run).
pub fn stop_requested() -> Option<StopReason> {
    super::failure::with_state(|state| state.stop_reason()).flatten()
}

/// Turns SIGINT and SIGTERM into [`request_stop`] for every run of this process, and a second
/// one into an immediate exit with status 128 + signal. Call once, early in `main`; the
/// `shotflow` binary does.
pub fn stop_on_signals() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(mut signals) => {
                let spawned = std::thread::Builder::new()
                    .name("shotflow:signals".into())
                    .spawn(move || {
                        let mut stopping = false;
                        for signal in signals.forever() {
                            let reason = StopReason::Signal(signal);
                            // The processes this one started hear every signal it hears.
                            super::local::forward(signal);
                            if stopping {
                                eprintln!(
                                    "shotflow: second {reason}: exiting now; what was committed stays committed"
                                );
                                std::process::exit(reason.exit_status() as i32);
                            }
                            stopping = true;
                            if !request_stop(reason) {
                                // No run to stop (before or after one): nothing is in flight.
                                std::process::exit(reason.exit_status() as i32);
                            }
                            eprintln!(
                                "shotflow: {reason}: stopping; committing what was processed (again to exit at once)"
                            );
                        }
                    });
                if let Err(e) = spawned {
                    result = Err(e);
                }
            }
            Err(e) => result = Err(e),
        }
    });
    result
}
