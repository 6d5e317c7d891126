//! What process 0 shows while a run runs: the progress bar (or log lines), the metrics and
//! dashboard servers, each on a thread of its own beside the workers; and the graph file at
//! the end.
//!
//! The threads sleep between looks (the bar redraws ten times a second, the servers wait on
//! their sockets), so they take a few milliseconds of CPU a second and never a worker's core.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::hub::Hub;
use super::text::{duration, line};
use crate::flow::Settings;

/// The running views of one run; [`Live::stop`] ends them when the run ends.
pub struct Live {
    hub: Arc<Hub>,
    threads: Vec<JoinHandle<()>>,
    #[cfg(feature = "monitor")]
    servers: Vec<super::server::Running>,
}

impl Live {
    /// Starts what `settings` ask for: progress on standard error, the metrics server, the
    /// dashboard server. A server that cannot listen at its address is an error that names it.
    pub fn start(settings: &Settings, hub: Arc<Hub>) -> Result<Live, String> {
        let mut threads = Vec::new();
        let mut addresses = Vec::new();
        if let Some(addr) = settings.dashboard {
            addresses.push((addr, "dashboard"));
        }
        if let Some(addr) = settings.metrics.filter(|m| Some(*m) != settings.dashboard) {
            addresses.push((addr, "metrics"));
        }
        for (addr, what) in &addresses {
            if !addr.ip().is_loopback() {
                eprintln!(
                    "shotflow: warning: --{what} {addr} is reachable from other hosts, with no \
                     authentication; 127.0.0.1 and `ssh -L` keep it private"
                );
            }
        }
        #[cfg(feature = "monitor")]
        let servers = addresses
            .into_iter()
            .map(|(addr, what)| super::server::serve(addr, what, Arc::clone(&hub)))
            .collect::<Result<Vec<_>, _>>()?;
        #[cfg(not(feature = "monitor"))]
        if let Some((addr, what)) = addresses.first() {
            return Err(format!(
                "--{what} {addr}: shotflow was built without its `monitor` feature"
            ));
        }
        if settings.progress {
            let hub = Arc::clone(&hub);
            let every = settings.log_every;
            threads.push(
                std::thread::Builder::new()
                    .name("shotflow-progress".into())
                    .spawn(move || show_progress(&hub, every))
                    .map_err(|e| format!("cannot start the progress thread: {e}"))?,
            );
        }
        Ok(Live {
            hub,
            threads,
            #[cfg(feature = "monitor")]
            servers,
        })
    }

    /// The run has ended: the views show their final state and stop (at once: the threads
    /// are woken, not waited for until their next look).
    pub fn stop(self) {
        self.hub.close();
        for thread in &self.threads {
            thread.thread().unpark();
        }
        #[cfg(feature = "monitor")]
        for server in self.servers {
            server.wake();
            let _ = server.thread.join();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Writes the run's dataflow graph to `path`: SVG when it ends in `.svg`, DOT otherwise.
pub fn write_graph(hub: &Hub, path: &Path) -> Result<(), String> {
    let log = hub.merged_log();
    let seconds = hub.seconds() * hub.snapshots().len().max(1) as f64;
    let dot = log.dot_coloured(Some(seconds));
    let svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let text = if svg {
        #[cfg(feature = "monitor")]
        {
            super::draw::graph(&dot)?
        }
        #[cfg(not(feature = "monitor"))]
        return Err("SVG needs shotflow's `monitor` feature; write .dot instead".into());
    } else {
        dot
    };
    std::fs::write(path, text).map_err(|e| e.to_string())
}

/// Shows the run's progress until it ends: a bar on a terminal, a line every `every` otherwise.
fn show_progress(hub: &Hub, every: Duration) {
    #[cfg(feature = "monitor")]
    if std::io::stderr().is_terminal() {
        return bar(hub);
    }
    let _ = std::io::stderr().is_terminal();
    let tick = Duration::from_millis(50);
    let mut next = every;
    while !hub.closed() {
        std::thread::park_timeout(tick);
        if hub.seconds() >= next.as_secs_f64() {
            next += every;
            eprintln!(
                "shotflow: {} after {}",
                line(&hub.progress()),
                duration(hub.seconds())
            );
        }
    }
}

/// The progress bar (indicatif), redrawn ten times a second from the hub.
#[cfg(feature = "monitor")]
fn bar(hub: &Hub) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    let known = ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let unknown = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
        .expect("a valid template");
    loop {
        let closed = hub.closed();
        let p = hub.progress();
        match p.fraction {
            Some(f) => {
                bar.set_style(known.clone());
                bar.set_length(10_000);
                bar.set_position((f * 10_000.0) as u64);
            }
            None => bar.set_style(unknown.clone()),
        }
        bar.set_message(line(&p));
        if closed {
            bar.finish();
            return;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}
