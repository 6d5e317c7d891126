//! Per-run settings, carried by each worker's timely configuration.

use timely::dataflow::Scope;
use timely::worker::Worker;

use super::Batch;

/// Settings of one run that operators read while the dataflow is built.
///
/// The runtime stores them in timely's worker configuration ([`timely::WorkerConfig::set`]),
/// as differential dataflow stores its own under `"differential"`: they belong to the run, not
/// to the process, so a second run in the same process starts from its own values. Dataflows
/// built outside shotflow's runtime (`timely::example`, `timely::execute`) get the defaults.
///
/// # Examples
///
/// ```
/// use shotflow::flow::Settings;
/// use shotflow::runtime::{execute, Launch};
///
/// let launch = Launch { read_ahead: Some(9), ..Launch::threads(2) };
/// let windows = execute(&launch, |worker| {
///     Ok::<_, std::convert::Infallible>(Settings::of_worker(worker).read_ahead)
/// })
/// .unwrap();
/// assert_eq!(windows, vec![9, 9]);
/// assert_eq!(Settings::default().read_ahead, 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Batches per worker that sources may run ahead of the slowest sink (at least 1).
    pub read_ahead: Batch,
    /// The first batch sources produce: a resumed run starts after the batches its output
    /// already committed (0: from the beginning).
    pub start: Batch,
    /// Write the dataflow graph here when the run ends (`.dot`), drawn from worker 0's
    /// timely log ([`crate::monitor::WorkerLog`]).
    pub graph: Option<std::path::PathBuf>,
    /// Print where the time went when the run ends (process 0, on standard error): each
    /// operator's busy time and each worker's source rate ([`crate::monitor::report`]).
    pub report: bool,
    /// Show the run's progress while it runs (process 0, on standard error): a bar on a
    /// terminal, a log line every [`Settings::log_every`] otherwise.
    pub progress: bool,
    /// How often the progress is logged when standard error is not a terminal.
    pub log_every: std::time::Duration,
    /// Serve the run's metrics (Prometheus text on `/metrics`) at this address (process 0).
    pub metrics: Option<std::net::SocketAddr>,
    /// Serve the live dashboard (and `/metrics`) at this address (process 0).
    pub dashboard: Option<std::net::SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            read_ahead: 4,
            start: 0,
            graph: None,
            report: false,
            progress: false,
            log_every: std::time::Duration::from_secs(5),
            metrics: None,
            dashboard: None,
        }
    }
}

impl Settings {
    /// The key under which the settings live in timely's worker configuration.
    pub const KEY: &'static str = "shotflow";

    /// Stores these settings in a worker configuration.
    pub fn install(self, config: &mut timely::WorkerConfig) {
        config.set(Settings::KEY.to_string(), self);
    }

    /// The settings of the run `worker` belongs to (the defaults outside shotflow's runtime).
    pub fn of_worker(worker: &Worker) -> Settings {
        worker
            .config()
            .get::<Settings>(Settings::KEY)
            .cloned()
            .unwrap_or_default()
    }

    /// The settings of the run whose dataflow `scope` builds.
    pub fn of(scope: &Scope<'_, Batch>) -> Settings {
        Settings::of_worker(scope.worker())
    }
}
