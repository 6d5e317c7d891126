//! Where a run executes: one launch configuration from command-line options and the
//! environment, never from the program's code.

use super::local;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::cluster::Peers;
use super::environment::{self, Launcher};
use super::RunError;
use crate::flow::Settings;

/// Launch options shared by every `shotflow` subcommand and by user programs that embed them
/// in their own clap parser (`#[command(flatten)] launch: Launch`).
///
/// * nothing: one worker thread;
/// * `--workers N`: N threads in this process;
/// * `--processes P --process I [--hostfile F]`: process I of a P-process cluster over TCP
///   (without a hostfile, process i listens on `127.0.0.1:PORT+i`);
/// * under `mpirun` or `srun`: rank and size from the launcher's environment; processes on one
///   host find each other through a temporary rendezvous directory, processes on several hosts
///   need `--hostfile` or a shared `--rendezvous DIR`.
///
/// # Examples
///
/// ```
/// use clap::Parser;
/// use shotflow::runtime::{Launch, Plan};
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     launch: Launch,
/// }
///
/// let cli = Cli::parse_from(["prog", "--workers", "3"]);
/// assert_eq!(cli.launch.plan_from(std::iter::empty()).unwrap(), Plan::Process { workers: 3 });
/// ```
#[derive(Args, Clone, Debug)]
pub struct Launch {
    /// Worker threads per process.
    #[arg(short = 'w', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,
    /// Number of processes in the cluster (omit under mpirun/srun, which say it themselves).
    /// Without --process, this process starts the others on this host (process 0 is this one).
    #[arg(long)]
    pub processes: Option<usize>,
    /// Index of this process, 0..processes.
    #[arg(long, requires = "processes")]
    pub process: Option<usize>,
    /// File with one `host:port` per line, in process order.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
    /// Directory shared by all processes where they publish their addresses: needed by
    /// mpirun/srun across several hosts; with --processes on one host it replaces port numbers.
    #[arg(long)]
    pub rendezvous: Option<PathBuf>,
    /// First port when processes listen on 127.0.0.1 without a hostfile.
    #[arg(long, default_value_t = 2101)]
    pub port: u16,
    /// Seconds to wait for the other processes to connect.
    #[arg(long, default_value_t = 60)]
    pub connect_timeout: u64,
    /// Batches per worker that sources may read ahead of the slowest sink (default 4); bounds
    /// the memory a run holds in flight.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub read_ahead: Option<u64>,
    /// Write the run's dataflow graph to this file at the end: SVG for `.svg`, Graphviz DOT
    /// otherwise (operators with their busy time, channels with their records, dashed where
    /// records crossed workers).
    #[arg(long, value_name = "PATH.svg|PATH.dot")]
    pub graph: Option<std::path::PathBuf>,
    /// Print no end-of-run report (where the time went: each operator's busy time, each
    /// worker's source rate). A command line prints it by default; `Launch::threads` does not.
    #[arg(long = "no-report", action = clap::ArgAction::SetFalse)]
    pub report: bool,
    /// Show no progress (a bar on a terminal, a log line every few seconds otherwise). A
    /// command line shows it by default; `Launch::threads` does not.
    #[arg(long = "no-progress", action = clap::ArgAction::SetFalse)]
    pub progress: bool,
    /// Seconds between progress lines when standard error is not a terminal (batch jobs).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS", value_parser = positive_seconds)]
    pub log_every: f64,
    /// Serve the run's metrics as Prometheus text on http://ADDR/metrics while it runs
    /// (process 0). Plain HTTP: keep it on 127.0.0.1 and tunnel with `ssh -L`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Serve a live dashboard on http://ADDR/ while the run runs (process 0): progress,
    /// events/s per worker, each operator's busy and back-pressured share, the dataflow graph,
    /// drops, and the plots the pipeline publishes. It serves /metrics too.
    #[arg(long, value_name = "ADDR")]
    pub dashboard: Option<std::net::SocketAddr>,
    /// The launch's secret: only processes that hold it join the cluster. Without it, process 0
    /// writes one into the rendezvous directory (readable by you only); a cluster on ports or
    /// a hostfile without a token is not authenticated.
    #[arg(long, env = "SHOTFLOW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// `name = value` lines naming what the processes of one run must agree on (inputs, seed,
    /// options): a process started with other arguments is refused, with the difference named.
    /// Set by the program, not on the command line.
    #[arg(skip)]
    pub fingerprint: String,
}

/// The resolved plan: how many workers, in which processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// One worker thread.
    Thread,
    /// Several worker threads in this process.
    Process {
        /// Threads.
        workers: usize,
    },
    /// One process of a TCP cluster.
    Cluster {
        /// Threads per process.
        workers: usize,
        /// This process's index.
        process: usize,
        /// Number of processes.
        processes: usize,
        /// How the processes find each other.
        peers: Peers,
        /// Deadline for connecting.
        timeout: Duration,
        /// Who launched us (for messages), if a launcher did.
        launcher: Option<&'static str>,
        /// The launch's secret, if given.
        token: Option<String>,
        /// What the processes must agree on ([`Launch::fingerprint`]).
        fingerprint: String,
    },
}

impl Plan {
    /// Total number of workers in the run.
    pub fn peers(&self) -> usize {
        match self {
            Plan::Thread => 1,
            Plan::Process { workers } => *workers,
            Plan::Cluster {
                workers, processes, ..
            } => workers * processes,
        }
    }

    /// Number of processes of the run (1 unless in a cluster).
    pub fn processes(&self) -> usize {
        match self {
            Plan::Cluster { processes, .. } => *processes,
            _ => 1,
        }
    }

    /// This process's index (0 unless in a cluster).
    pub fn process(&self) -> usize {
        match self {
            Plan::Cluster { process, .. } => *process,
            _ => 0,
        }
    }

    /// A short human description: "1 worker", "2 processes × 3 workers (Open MPI)".
    pub fn describe(&self) -> String {
        match self {
            Plan::Thread => "1 worker".to_string(),
            Plan::Process { workers } => format!("{workers} workers in 1 process"),
            Plan::Cluster {
                workers,
                processes,
                launcher,
                ..
            } => format!(
                "{processes} processes × {workers} worker{}{}",
                if *workers == 1 { "" } else { "s" },
                launcher.map(|l| format!(" ({l})")).unwrap_or_default()
            ),
        }
    }
}

/// The options of a command line that gives none: one worker thread.
impl Default for Launch {
    fn default() -> Launch {
        Launch {
            workers: 1,
            processes: None,
            process: None,
            hostfile: None,
            rendezvous: None,
            port: 2101,
            connect_timeout: 60,
            read_ahead: None,
            graph: None,
            report: true,
            progress: true,
            log_every: 5.0,
            metrics: None,
            dashboard: None,
            token: None,
            fingerprint: String::new(),
        }
    }
}

impl Launch {
    /// Options for `n` worker threads in this process, for a program that runs its own
    /// dataflows: no end-of-run report on standard error (set `report` to have one).
    pub fn threads(n: u16) -> Launch {
        Launch {
            workers: n,
            report: false,
            progress: false,
            ..Launch::default()
        }
    }

    /// These options with the progress bar (or log lines) and the end-of-run report on: what a
    /// command line shows by default, in one call for a program's own launch.
    ///
    /// ```
    /// use shotflow::runtime::Launch;
    ///
    /// let launch = Launch::threads(2).monitored();
    /// assert!(launch.progress && launch.report);
    /// ```
    pub fn monitored(self) -> Launch {
        Launch {
            progress: true,
            report: true,
            ..self
        }
    }

    /// These options, with `pairs` as the fingerprint the processes of a run must agree on.
    pub fn with_fingerprint<N: std::fmt::Display, V: std::fmt::Display>(
        mut self,
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Launch {
        self.fingerprint = pairs
            .into_iter()
            .map(|(n, v)| format!("{n} = {v}\n"))
            .collect();
        self
    }

    /// The per-run settings these options ask for.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::default();
        if let Some(batches) = self.read_ahead {
            settings.read_ahead = batches.max(1);
        }
        settings.graph = self.graph.clone();
        settings.report = self.report;
        settings.progress = self.progress;
        settings.log_every = Duration::from_secs_f64(self.log_every);
        settings.metrics = self.metrics;
        settings.dashboard = self.dashboard;
        settings
    }

    /// Resolves the plan from these options and the process environment. With `--processes N`
    /// and no `--process`, outside mpirun/srun, this starts processes 1..N of this command on
    /// this host; the run waits for them at its end (see the README, "Where it runs").
    pub fn plan(&self) -> Result<Plan, RunError> {
        #[cfg(feature = "mpi")]
        if let Some(plan) = self.mpi_plan()? {
            return Ok(plan);
        }
        let plan = self.plan_from(std::env::vars())?;
        if let Plan::Cluster {
            launcher: Some(local::LOCAL),
            processes,
            peers: Peers::Rendezvous { dir, .. },
            ..
        } = &plan
        {
            local::start(*processes, dir)?;
        }
        Ok(plan)
    }

    /// Under mpirun with the `mpi` feature, and neither a hostfile nor a rendezvous directory
    /// given: the cluster's addresses and secret from MPI itself ([`super::mpi_bootstrap`]).
    #[cfg(feature = "mpi")]
    fn mpi_plan(&self) -> Result<Option<Plan>, RunError> {
        let launcher = environment::detect(std::env::vars()).map_err(RunError::Launch)?;
        let Some(launcher) = launcher.filter(|l| l.name != "SLURM") else {
            return Ok(None);
        };
        if self.processes.is_some() || self.hostfile.is_some() || self.rendezvous.is_some() {
            return Ok(None);
        }
        if launcher.size == 1 {
            return Ok(None);
        }
        let (addresses, token) = super::mpi_bootstrap::exchange(&launcher, self.token.clone())?;
        Ok(Some(Plan::Cluster {
            workers: self.workers as usize,
            process: launcher.rank,
            processes: launcher.size,
            peers: Peers::Addresses(addresses),
            timeout: Duration::from_secs(self.connect_timeout),
            launcher: Some(match launcher.name {
                "Open MPI" => "Open MPI, addresses by MPI_Allgather",
                _ => "PMI, addresses by MPI_Allgather",
            }),
            token: Some(token),
            fingerprint: self.fingerprint.clone(),
        }))
    }

    /// Resolves the plan from these options and the given environment variables.
    pub fn plan_from(
        &self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Plan, RunError> {
        let workers = self.workers as usize;
        let timeout = Duration::from_secs(self.connect_timeout);
        let launcher = environment::detect(vars).map_err(RunError::Launch)?;
        let hostfile = match &self.hostfile {
            Some(path) => Some(read_hostfile(path)?),
            None => None,
        };

        let (process, processes, launcher): (usize, usize, Option<Launcher>) =
            match (self.processes, self.process, launcher) {
                (Some(n), Some(i), _) => (i, n, None),
                (Some(n), None, Some(l)) => {
                    return Err(RunError::Launch(format!(
                        "--processes {n} under {}, which starts the processes itself: leave \
                         --processes out",
                        l.name
                    )))
                }
                (Some(0), None, None) => {
                    return Err(RunError::Launch(
                        "--processes 0: a run needs at least one process".into(),
                    ))
                }
                (Some(1), None, None) => (0, 1, None),
                (Some(n), None, None) => {
                    // This process starts the others (`Launch::plan`): it is process 0.
                    let dir = self
                        .rendezvous
                        .clone()
                        .unwrap_or_else(local::rendezvous_dir);
                    return Ok(Plan::Cluster {
                        workers,
                        process: 0,
                        processes: n,
                        peers: Peers::Rendezvous {
                            dir,
                            job: format!("explicit-{n}"),
                            local: true,
                        },
                        timeout,
                        launcher: Some(local::LOCAL),
                        token: self.token.clone(),
                        fingerprint: self.fingerprint.clone(),
                    });
                }
                (None, None, Some(l)) => (l.rank, l.size, Some(l)),
                (None, None, None) => {
                    return Ok(if workers == 1 {
                        Plan::Thread
                    } else {
                        Plan::Process { workers }
                    })
                }
                _ => unreachable!("clap requires --processes and --process together"),
            };
        if processes == 0 || process >= processes {
            return Err(RunError::Launch(format!(
                "--process {process} is not in 0..{processes}"
            )));
        }
        if processes == 1 {
            return Ok(if workers == 1 {
                Plan::Thread
            } else {
                Plan::Process { workers }
            });
        }

        let peers = if let Some(addresses) = hostfile {
            if addresses.len() < processes {
                return Err(RunError::Launch(format!(
                    "hostfile lists {} addresses for {processes} processes",
                    addresses.len()
                )));
            }
            Peers::Addresses(addresses[..processes].to_vec())
        } else if let Some(l) = &launcher {
            let local = l.single_host == Some(true);
            let dir = match (&self.rendezvous, local) {
                (Some(dir), _) => dir.clone(),
                (None, true) => {
                    std::env::temp_dir().join(format!("shotflow-rendezvous-{}", sanitize(&l.job)))
                }
                (None, false) => {
                    return Err(RunError::Launch(format!(
                        "{} started {processes} processes that may be on several hosts: give \
                         --hostfile FILE or --rendezvous DIR (a directory all hosts share)",
                        l.name
                    )))
                }
            };
            Peers::Rendezvous {
                dir,
                job: l.job.clone(),
                local,
            }
        } else if let Some(dir) = &self.rendezvous {
            // Without a launcher nobody says where the processes are: loopback, as without a
            // hostfile; several hosts need a hostfile.
            Peers::Rendezvous {
                dir: dir.clone(),
                job: format!("explicit-{processes}"),
                local: true,
            }
        } else {
            Peers::Addresses(
                (0..processes)
                    .map(|i| format!("127.0.0.1:{}", self.port as usize + i))
                    .collect(),
            )
        };
        Ok(Plan::Cluster {
            workers,
            process,
            processes,
            peers,
            timeout,
            launcher: launcher.map(|l| l.name),
            token: self.token.clone(),
            fingerprint: self.fingerprint.clone(),
        })
    }
}

fn sanitize(job: &str) -> String {
    job.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read_hostfile(path: &std::path::Path) -> Result<Vec<String>, RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Launch(format!("hostfile {}: {e}", path.display())))?;
    let hosts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if let Some(bad) = hosts.iter().find(|h| !h.contains(':')) {
        return Err(RunError::Launch(format!(
            "hostfile {}: {bad:?} is not host:port",
            path.display()
        )));
    }
    Ok(hosts)
}

/// A positive, finite number of seconds.
fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `Launch::default()` used to mean 0 workers, so `execute` ran nothing and returned Ok.
    #[test]
    fn default_is_what_an_empty_command_line_gives() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            launch: Launch,
        }
        let parsed = <Cli as clap::Parser>::parse_from(["prog"]).launch;
        let default = Launch::default();
        assert_eq!(default.workers, 1);
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
        assert_eq!(default.plan_from(env(&[])).unwrap(), Plan::Thread);
        let ran =
            crate::runtime::execute(&default, |_| Ok::<_, std::convert::Infallible>(1)).unwrap();
        assert_eq!(ran, vec![1]);
    }

    #[test]
    fn a_plan_without_workers_is_refused() {
        let e = crate::runtime::execute_plan(&Plan::Process { workers: 0 }, |_| {
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("no workers"), "{e}");
    }

    #[test]
    fn processes_without_process_start_the_others_here() {
        let local = |n: usize| Launch {
            processes: Some(n),
            ..Launch::threads(2)
        };
        match local(3).plan_from(env(&[])).unwrap() {
            Plan::Cluster {
                process,
                processes,
                peers:
                    Peers::Rendezvous {
                        dir, local: true, ..
                    },
                launcher,
                ..
            } => {
                assert_eq!((process, processes), (0, 3));
                assert_eq!(dir, super::local::rendezvous_dir());
                assert_eq!(launcher, Some(super::local::LOCAL));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            local(1).plan_from(env(&[])).unwrap(),
            Plan::Process { workers: 2 }
        );
        let zero = local(0).plan_from(env(&[])).unwrap_err().to_string();
        assert!(zero.contains("--processes 0"), "{zero}");
        let mpirun = env(&[
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ]);
        let under = local(2).plan_from(mpirun).unwrap_err().to_string();
        assert!(under.contains("leave --processes out"), "{under}");
    }

    #[test]
    fn explicit_processes_use_loopback_ports() {
        let launch = Launch {
            processes: Some(2),
            process: Some(1),
            ..Launch::threads(3)
        };
        let plan = launch.plan_from(env(&[])).unwrap();
        assert_eq!(plan.peers(), 6);
        match plan {
            Plan::Cluster { peers, process, .. } => {
                assert_eq!(process, 1);
                assert_eq!(
                    peers,
                    Peers::Addresses(vec!["127.0.0.1:2101".into(), "127.0.0.1:2102".into()])
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mpirun_on_one_host_uses_a_rendezvous() {
        let vars = env(&[
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
            ("OMPI_MCA_ess_base_jobid", "4242"),
        ]);
        match Launch::threads(1).plan_from(vars).unwrap() {
            Plan::Cluster {
                peers: Peers::Rendezvous { job, local, .. },
                launcher,
                ..
            } => {
                assert_eq!(job, "4242");
                assert!(local);
                assert_eq!(launcher, Some("Open MPI"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn several_hosts_without_addresses_is_an_error() {
        let vars = env(&[("PMI_RANK", "0"), ("PMI_SIZE", "2")]);
        let e = Launch::threads(1).plan_from(vars).unwrap_err().to_string();
        assert!(e.contains("--hostfile"), "{e}");
    }

    #[test]
    fn a_single_rank_launch_is_just_threads() {
        let vars = env(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "1")]);
        assert_eq!(
            Launch::threads(2).plan_from(vars).unwrap(),
            Plan::Process { workers: 2 }
        );
    }
}
