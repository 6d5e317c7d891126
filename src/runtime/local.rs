//! One command for several processes on this host: `--processes N` without `--process`,
//! outside mpirun and srun, makes this process process 0 and starts processes 1..N of the same
//! command (the same program and arguments, plus `--process I --rendezvous DIR`), as Dask's
//! `LocalCluster` starts its workers. They meet in a fresh rendezvous directory, which also
//! carries the launch's secret.
//!
//! The parent passes SIGINT and SIGTERM on to its children (a stop reaches every process), and
//! waits for them at the end of the run: a child that failed makes the run fail. A child that
//! dies during the run breaks its connections, which ends the run everywhere with an error
//! naming the process (the cluster's own failure handling).
//!
//! Why processes and not threads: libhdf5 serialises every call of a process behind one lock,
//! so HDF5 is read and written in parallel by processes (`cargo bench --bench exdf`, README).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;

use super::RunError;

/// The launcher name of a plan whose other processes this process starts.
pub(crate) const LOCAL: &str = "local processes";

/// The children this process started, with their process index.
static CHILDREN: Mutex<Vec<(usize, Child)>> = Mutex::new(Vec::new());

/// A rendezvous directory for the processes of this launch.
pub(crate) fn rendezvous_dir() -> PathBuf {
    std::env::temp_dir().join(format!("shotflow-local-{}", std::process::id()))
}

/// Starts processes `1..processes` of this command, meeting in `dir`.
pub(crate) fn start(processes: usize, dir: &Path) -> Result<(), RunError> {
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    if !children.is_empty() {
        return Err(RunError::Launch(
            "this process already started its local processes for another run".into(),
        ));
    }
    let program = std::env::current_exe()
        .map_err(|e| RunError::Launch(format!("cannot find this program to start it: {e}")))?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    for process in 1..processes {
        let child = Command::new(&program)
            .args(&args)
            .arg("--process")
            .arg(process.to_string())
            .arg("--rendezvous")
            .arg(dir)
            .spawn()
            .map_err(|e| {
                RunError::Launch(format!(
                    "starting process {process} ({}): {e}",
                    program.display()
                ))
            })?;
        children.push((process, child));
    }
    Ok(())
}

/// Passes `signal` on to the children.
pub(crate) fn forward(signal: i32) {
    let children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    for (_, child) in children.iter() {
        // SAFETY: kill(2) with the pid of a child we started and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
    }
}

/// Waits for the children; the first that did not succeed, named. The rendezvous directory is
/// removed when it is the one [`rendezvous_dir`] made.
pub(crate) fn wait(dir: &Path) -> Result<(), RunError> {
    let children: Vec<(usize, Child)> =
        std::mem::take(&mut *CHILDREN.lock().unwrap_or_else(|e| e.into_inner()));
    let mut failed = None;
    for (process, mut child) in children {
        match child.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                failed.get_or_insert(format!("process {process} ended with {status}"));
            }
            Err(e) => {
                failed.get_or_insert(format!("waiting for process {process}: {e}"));
            }
        }
    }
    if dir == rendezvous_dir() {
        let _ = std::fs::remove_dir_all(dir);
    }
    match failed {
        None => Ok(()),
        Some(message) => Err(RunError::Launch(message)),
    }
}
