//! How one failing worker ends the whole run, quickly and with a useful message.
//!
//! Every worker of a run shares a [`RunState`]. A worker whose code returns an error or panics,
//! or an operator that calls [`fail`], records the cause and raises the abort flag; every
//! worker's stepping loop sees the flag within one park interval and stops. In a cluster the
//! failing process also shuts its sockets down, so the other processes' timely communication
//! threads see the connection close, their workers stop in turn, and every process exits
//! non-zero instead of waiting forever for progress that will not come.

use std::cell::RefCell;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once};

/// Why a worker stopped.
#[derive(Clone, Debug)]
pub struct WorkerFailure {
    /// Global worker index.
    pub worker: usize,
    /// Process index.
    pub process: usize,
    /// The cause, as text (errors cross threads and processes as messages).
    pub cause: String,
    /// True when the cause is only that another process went away.
    pub secondary: bool,
}

#[derive(Default)]
pub(crate) struct RunState {
    pub(crate) abort: AtomicBool,
    /// Why the run is stopping on purpose ([`super::StopReason::code`]; 0: it is not).
    stop: AtomicU8,
    failures: Mutex<Vec<WorkerFailure>>,
    sockets: Mutex<Vec<TcpStream>>,
}

impl RunState {
    pub(crate) fn set_sockets(&self, sockets: Vec<TcpStream>) {
        *self.sockets.lock().unwrap() = sockets;
    }

    pub(crate) fn record(&self, failure: WorkerFailure) {
        tracing::debug!(?failure, "worker failed");
        self.failures.lock().unwrap().push(failure);
        if !self.abort.swap(true, Ordering::SeqCst) {
            super::cluster::shut_down(&self.sockets.lock().unwrap());
        }
    }

    /// Asks the run to stop; false when it was already stopping.
    pub(crate) fn request_stop(&self, reason: super::StopReason) -> bool {
        self.stop
            .compare_exchange(0, reason.code(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    pub(crate) fn stop_reason(&self) -> Option<super::StopReason> {
        super::StopReason::from_code(self.stop.load(Ordering::Relaxed))
    }

    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// The root cause: the first failure that is not merely a lost connection.
    pub(crate) fn first_failure(&self) -> Option<WorkerFailure> {
        let failures = self.failures.lock().unwrap();
        failures
            .iter()
            .find(|f| !f.secondary)
            .or(failures.first())
            .cloned()
    }
}

/// Who the current thread is, within the run.
struct WorkerContext {
    state: Arc<RunState>,
    worker: usize,
    process: usize,
    local_workers: usize,
}

thread_local! {
    static CURRENT: RefCell<Option<WorkerContext>> = const { RefCell::new(None) };
}

pub(crate) fn enter(state: Arc<RunState>, worker: usize, process: usize, local_workers: usize) {
    CURRENT.with(|c| {
        *c.borrow_mut() = Some(WorkerContext {
            state,
            worker,
            process,
            local_workers,
        })
    });
}

/// Index of the current worker (`None` outside [`crate::runtime::execute`]).
pub fn current_worker() -> Option<usize> {
    CURRENT.with(|c| c.borrow().as_ref().map(|w| w.worker))
}

/// Worker threads per process in the current run (`None` outside [`crate::runtime::execute`]).
pub fn workers_per_process() -> Option<usize> {
    CURRENT.with(|c| c.borrow().as_ref().map(|w| w.local_workers))
}

pub(crate) fn leave() {
    CURRENT.with(|c| *c.borrow_mut() = None);
}

/// Ends the run from inside an operator: records `cause` for this worker and stops every worker
/// of the run (in every process). The operator should stop producing output after calling it.
///
/// Outside a run started by [`crate::runtime::execute`] (e.g. under plain `timely::execute`)
/// there is no one to tell, so it panics with the cause instead.
pub fn fail(cause: impl std::fmt::Display) {
    let cause = cause.to_string();
    let recorded = CURRENT.with(|c| {
        if let Some(w) = c.borrow().as_ref() {
            w.state.record(WorkerFailure {
                worker: w.worker,
                process: w.process,
                cause: cause.clone(),
                secondary: false,
            });
            true
        } else {
            false
        }
    });
    if !recorded {
        panic!("{cause}");
    }
}

/// Applies `f` to the current worker's run state (`None` outside a run).
pub(crate) fn with_state<T>(f: impl FnOnce(&RunState) -> T) -> Option<T> {
    CURRENT.with(|c| c.borrow().as_ref().map(|w| f(&w.state)))
}

/// True once any worker of this run has failed; long-running operators may check it.
pub fn aborted() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|w| w.state.aborted()))
}

static COMM_ERROR: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// Set by the panic hook, cleared where the runtime catches the unwinding panic: a second
    /// panic while it is set would abort the process.
    static UNWINDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The runtime caught this thread's panic: a later panic is a first one again.
pub(crate) fn unwound() {
    UNWINDING.with(|u| u.set(false));
}

/// Keeps timely's communication-thread panics (a peer process went away) out of the user's
/// terminal: they are consequences, reported once as such by the worker that notices.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name.starts_with("timely:send") || name.starts_with("timely:recv") {
                let message = panic_message(info.payload());
                tracing::debug!("{name}: {message}");
                COMM_ERROR.lock().unwrap().get_or_insert(message);
            } else if is_lost_peer(&panic_message(info.payload())) {
                let worker = name.starts_with("timely:work");
                if worker && UNWINDING.with(|u| u.replace(true)) {
                    // timely panicked again while this thread unwinds a first panic (a send
                    // endpoint flushing into a poisoned queue on drop): the process is about
                    // to abort. End it cleanly instead; what was committed stays committed.
                    eprintln!("shotflow: {}; this process stops", lost_peer_cause());
                    std::process::exit(1);
                }
                tracing::debug!("{name}: peer lost");
            } else {
                if name.starts_with("timely:work") {
                    UNWINDING.with(|u| u.set(true));
                }
                previous(info);
            }
        }));
    });
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

pub(crate) fn is_lost_peer(message: &str) -> bool {
    message.contains("MergeQueue poisoned")
        || message.contains("timely communication error")
        // timely's CommsGuard, when the process joins communication threads that panicked
        || message.starts_with("Send thread panic")
        || message.starts_with("Recv thread panic")
}

pub(crate) fn lost_peer_cause() -> String {
    match COMM_ERROR.lock().unwrap().as_ref() {
        Some(e) => format!("lost the connection to another process ({e}); that process failed or was killed, see its own message"),
        None => "lost the connection to another process; that process failed or was killed, see its own message".to_string(),
    }
}
