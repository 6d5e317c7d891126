//! Starting workers: threads, processes, `mpirun`/`srun`, and ending the run cleanly when one
//! of them fails.
//!
//! [`execute`] is timely's `execute` with three differences that matter on a beamline: the
//! configuration comes from [`Launch`] (clap options plus the launcher's environment), idle
//! workers park instead of spinning, and a failure anywhere ends the whole run within seconds
//! with a message that names the worker and the cause, instead of a hang.
//!
//! # Examples
//!
//! ```
//! use shotflow::runtime::{execute, Launch};
//! use timely::dataflow::operators::{ToStream, Inspect};
//!
//! let counts = execute(&Launch::threads(2), |worker| {
//!     let index = worker.index();
//!     worker.dataflow::<u64, _, _>(|scope| {
//!         (0..10u64).filter(move |x| *x as usize % 2 == index)
//!             .to_stream(scope)
//!             .container::<Vec<_>>()
//!             .inspect(|_| ());
//!     });
//!     Ok::<_, std::convert::Infallible>(index)
//! })
//! .unwrap();
//! assert_eq!(counts, vec![0, 1]);
//! ```

mod cluster;
mod control;
pub mod environment;
mod failure;
mod handshake;
mod launch;
mod local;
mod memory;
#[cfg(feature = "mpi")]
mod mpi_bootstrap;
mod stop;

pub use cluster::Peers;
pub use failure::{aborted, current_worker, fail, workers_per_process, WorkerFailure};
pub use launch::{Launch, Plan};
pub use memory::keep_freed_memory;
pub use stop::{request_stop, stop_on_signals, stop_requested, StopReason};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};
use timely::worker::Worker;
use timely::{CommunicationConfig, WorkerConfig};

use crate::flow::Settings;
use failure::RunState;

/// Why a run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The launch options or the launcher's environment are inconsistent.
    #[error("cannot launch: {0}")]
    Launch(String),
    /// The processes could not form a cluster.
    #[error("process {process} cannot join the cluster: {message}")]
    Connect {
        /// This process.
        process: usize,
        /// What went wrong.
        message: String,
    },
    /// A worker failed; the run was stopped everywhere.
    #[error("worker {} (process {}) failed: {}", .0.worker, .0.process, .0.cause)]
    Worker(WorkerFailure),
    /// The run was stopped on purpose (a signal, [`request_stop`]) before its sources ended.
    /// Its sinks committed what reached them.
    #[error("process {process} stopped by {reason} before the end of the run")]
    Stopped {
        /// Why.
        reason: StopReason,
        /// This process.
        process: usize,
    },
}

/// How long an idle worker parks before looking at the abort flag again.
const PARK: Duration = Duration::from_millis(20);
/// How long the other workers get to stop after a failure before the run is reported anyway.
const GRACE: Duration = Duration::from_secs(5);

/// Runs `func` on every worker of this process, then steps each worker until its dataflows are
/// complete. Returns the workers' results in worker order, or the first failure of the run.
///
/// `func` builds dataflows on its worker and may drive them itself with
/// [`run_to_completion`]; whatever it leaves unfinished is completed after it returns.
pub fn execute<T, E, F>(launch: &Launch, func: F) -> Result<Vec<T>, RunError>
where
    T: Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Fn(&mut Worker) -> Result<T, E> + Send + Sync + 'static,
{
    execute_with(&launch.plan()?, launch.settings(), func)
}

/// [`execute`] for an already resolved [`Plan`], with the default [`Settings`].
pub fn execute_plan<T, E, F>(plan: &Plan, func: F) -> Result<Vec<T>, RunError>
where
    T: Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Fn(&mut Worker) -> Result<T, E> + Send + Sync + 'static,
{
    execute_with(plan, Settings::default(), func)
}

/// [`execute`] for an already resolved [`Plan`] and explicit run [`Settings`]. The settings
/// reach every worker through its timely configuration ([`Settings::of_worker`]), so they hold
/// for this run only.
pub fn execute_with<T, E, F>(plan: &Plan, settings: Settings, func: F) -> Result<Vec<T>, RunError>
where
    T: Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Fn(&mut Worker) -> Result<T, E> + Send + Sync + 'static,
{
    let result = execute_here(plan, settings, func);
    let Plan::Cluster {
        launcher: Some(local::LOCAL),
        peers: Peers::Rendezvous { dir, .. },
        ..
    } = plan
    else {
        return result;
    };
    // The processes this one started: a failed run stops them too; then they are waited for,
    // and one that failed fails the run.
    if result.is_err() {
        local::forward(libc::SIGTERM);
    }
    let waited = local::wait(dir);
    match (result, waited) {
        (Ok(values), Ok(())) => Ok(values),
        (Ok(_), Err(e)) | (Err(e), Ok(())) => Err(e),
        (Err(e), Err(child)) => {
            // The run's own error says a connection was lost; which process went is this.
            eprintln!(
                "shotflow: {}",
                child.to_string().trim_start_matches("cannot launch: ")
            );
            Err(e)
        }
    }
}

/// [`execute_with`] in this process.
fn execute_here<T, E, F>(plan: &Plan, settings: Settings, func: F) -> Result<Vec<T>, RunError>
where
    T: Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Fn(&mut Worker) -> Result<T, E> + Send + Sync + 'static,
{
    if plan.peers() == 0 {
        return Err(RunError::Launch(format!(
            "{} has no workers: at least one is needed",
            plan.describe()
        )));
    }
    failure::install_panic_hook();
    let mut worker_config = WorkerConfig::default();
    let graph = settings.graph.clone();
    let report = settings.report;
    // The logs and the metrics dataflow serve the graph, the report and the live views alike.
    let logging = graph.is_some()
        || report
        || settings.progress
        || settings.metrics.is_some()
        || settings.dashboard.is_some();
    let started = Instant::now();
    let hub = Arc::new(crate::monitor::Hub::new(plan.peers()));
    // Process 0 shows the run; a server that cannot bind stops the run before it starts.
    let live = if logging && plan.process() == 0 {
        Some(crate::monitor::Live::start(&settings, Arc::clone(&hub)).map_err(RunError::Launch)?)
    } else {
        None
    };
    settings.install(&mut worker_config);
    let state = Arc::new(RunState::default());
    stop::register(&state);
    let process = plan.process();

    let (builders, others): (Vec<AllocatorBuilder>, Box<dyn std::any::Any + Send>) = match plan {
        Plan::Thread => CommunicationConfig::Thread.try_build(),
        Plan::Process { workers } => CommunicationConfig::Process(*workers).try_build(),
        Plan::Cluster {
            workers,
            process,
            processes,
            peers,
            timeout,
            token,
            fingerprint,
            ..
        } => {
            let sockets = cluster::connect(
                *process,
                *processes,
                peers,
                *timeout,
                token.as_deref(),
                fingerprint,
            )?;
            let clones = sockets
                .iter()
                .flatten()
                .map(|s| s.try_clone())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RunError::Connect {
                    process: *process,
                    message: e.to_string(),
                })?;
            state.set_sockets(clones);
            let hooks = Hooks::default();
            let locals = ProcessBuilder::new_typed_vector(
                *workers,
                hooks.refill.clone(),
                hooks.spill.clone(),
            );
            initialize_networking_from_sockets(locals, sockets, *process, *workers, hooks)
                .map(|(builders, guard)| {
                    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
                    (builders, Box::new(guard) as Box<dyn std::any::Any + Send>)
                })
                .map_err(|e| e.to_string())
        }
    }
    .map_err(|message| RunError::Connect { process, message })?;

    let local_workers = builders.len();
    let results: Arc<Mutex<Vec<(usize, T)>>> = Arc::new(Mutex::new(Vec::new()));
    let logs: Arc<Mutex<Vec<crate::monitor::WorkerLog>>> = Arc::new(Mutex::new(Vec::new()));
    let guards = {
        let state = Arc::clone(&state);
        let results = Arc::clone(&results);
        let logs = Arc::clone(&logs);
        let hub = Arc::clone(&hub);
        let processes = plan.processes();
        // timely's `execute_from` would step leftover dataflows with an unbounded park after
        // `func` returns, which hangs a run whose peer failed; this loop owns the worker instead.
        timely::communication::initialize_from(builders, others, move |allocator| {
            let mut worker = Worker::new(worker_config.clone(), allocator, Some(Instant::now()));
            let worker = &mut worker;
            let index = worker.index();
            failure::enter(Arc::clone(&state), index, process, local_workers);
            // Each worker's log of its dataflows, for the graph (registered before they are
            // built, merged when every worker is done).
            let log = logging.then(|| crate::monitor::WorkerLog::register(worker));
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let own = vec![worker.next_dataflow_index()];
                control::install(worker);
                if let Some(log) = &log {
                    crate::monitor::gather(
                        worker,
                        Rc::clone(log),
                        Arc::clone(&hub),
                        process,
                        processes,
                        own,
                    );
                }
                let value = func(worker).map_err(|e| (e.into().to_string(), false))?;
                run_to_completion(worker).map_err(|e| (e.to_string(), true))?;
                crate::monitor::finish();
                Ok::<T, (String, bool)>(value)
            }));
            if let Some(log) = &log {
                logs.lock().unwrap().push(log.borrow().clone());
            }
            failure::unwound();
            let cause = match outcome {
                Ok(Ok(value)) => {
                    results.lock().unwrap().push((index, value));
                    None
                }
                Ok(Err(cause)) => Some(cause),
                Err(payload) => {
                    let message = failure::panic_message(&*payload);
                    if failure::is_lost_peer(&message) {
                        Some((failure::lost_peer_cause(), true))
                    } else {
                        Some((format!("panicked: {message}"), false))
                    }
                }
            };
            if let Some((cause, secondary)) = cause {
                // An operator that called `fail` has already recorded the real cause.
                if !state.aborted() || !secondary {
                    state.record(WorkerFailure {
                        worker: index,
                        process,
                        cause,
                        secondary,
                    });
                }
            }
            if state.aborted() {
                // Dropping the dataflows closes their sinks (files stay readable) and lets the
                // worker end without waiting for progress that will never come.
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    for dataflow in worker.installed_dataflows() {
                        worker.drop_dataflow(dataflow);
                    }
                }));
                failure::unwound();
            }
            control::leave();
            crate::monitor::leave();
            failure::leave();
        })
        .map_err(|message| RunError::Connect { process, message })?
    };

    let mut aborted_at = None;
    loop {
        if guards.guards().iter().all(|g| g.is_finished()) {
            break;
        }
        if state.aborted() {
            let since = *aborted_at.get_or_insert_with(Instant::now);
            if since.elapsed() > GRACE {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    if let Some(live) = live {
        // Written even for a failed or stopped run: the picture helps to see why.
        hub.final_logs(std::mem::take(&mut *logs.lock().unwrap()));
        live.stop();
        if let Some(path) = &graph {
            if let Err(e) = crate::monitor::write_graph(&hub, path) {
                eprintln!(
                    "shotflow: warning: no dataflow graph at {}: {e}",
                    path.display()
                );
            }
        }
        if report {
            eprint!(
                "shotflow: where the time went ({} of {} worker(s), {:.3} s):\n{}",
                hub.snapshots().len(),
                plan.peers(),
                started.elapsed().as_secs_f64(),
                crate::monitor::report(&hub)
            );
        }
    }
    if let Some(failure) = state.first_failure() {
        // Joining would wait on communication threads whose peers are gone (and timely's guard
        // panics on their errors); the process is about to report and exit anyway.
        std::mem::forget(guards);
        return Err(RunError::Worker(failure));
    }
    // Every worker of this process has finished its work. Joining also joins timely's
    // communication threads, which panic (and make the join panic) when a peer process went
    // away meanwhile, even after all work was done: that is no reason to fail this process.
    match catch_unwind(AssertUnwindSafe(|| guards.join())) {
        Ok(outcomes) => {
            for outcome in outcomes {
                if let Err(message) = outcome {
                    return Err(RunError::Worker(WorkerFailure {
                        worker: usize::MAX,
                        process,
                        cause: message,
                        secondary: false,
                    }));
                }
            }
        }
        Err(payload) => eprintln!(
            "shotflow: process {process}: another process went away after this one finished its \
             work ({}); this process's results are complete",
            failure::panic_message(&*payload)
        ),
    }
    if let Some(reason) = state.stop_reason() {
        return Err(RunError::Stopped { reason, process });
    }
    let mut results = std::mem::take(&mut *results.lock().unwrap());
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, value)| value).collect())
}

/// Steps `worker` until all its dataflows are complete, parking while idle. Stops early with an
/// error when another worker of the run failed.
pub fn run_to_completion(worker: &mut Worker) -> Result<(), Aborted> {
    let mut woken = false;
    // Whether this worker's figures are gathered; they are taken at most once per millisecond
    // of stepping, not per step (a step can take well under a microsecond).
    let mut gathering = crate::monitor::gathering();
    let mut looked = Instant::now();
    while worker.has_dataflows() {
        if gathering && looked.elapsed() >= Duration::from_millis(1) {
            crate::monitor::tick(|| worker.installed_dataflows());
            gathering = crate::monitor::gathering();
            looked = Instant::now();
        }
        if aborted() {
            return Err(Aborted);
        }
        if !woken && stop_requested().is_some() {
            // Sources waiting for the sinks would notice the stop only when next scheduled;
            // the other processes hear of it through the control dataflow.
            crate::flow::read_ahead::wake_sources();
            control::wake();
            woken = true;
        }
        worker.step_or_park(Some(PARK));
    }
    if aborted() {
        return Err(Aborted);
    }
    Ok(())
}

/// The run was stopped because some worker failed.
#[derive(Debug, thiserror::Error)]
#[error("stopped because another worker failed")]
pub struct Aborted;
