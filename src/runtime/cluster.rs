//! Connecting the processes of a run into timely's TCP cluster, with deadlines.
//!
//! timely's own connection code retries forever when a peer never appears; a scientist whose
//! job lost one rank would watch it hang. Here every process connects to the lower-ranked
//! processes and accepts the higher-ranked ones until a deadline, admits only connections that
//! prove they belong to this launch ([`handshake`]; a stray or idle connection is dropped
//! after a short timeout), and then hands the sockets to timely. Addresses and the secret are
//! read again at every attempt, so files an earlier launch left behind cost a retry, never
//! a wrong peer.
//!
//! Addresses come either from a list (`--hostfile`, or `127.0.0.1:PORT+i`) or from a
//! rendezvous directory: each process binds an ephemeral port, publishes `host:port` in
//! `<dir>/<rank>.addr`, and reads the others' files. That needs no port planning, which is what
//! `mpirun`/`srun` launches want.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::handshake::{self, Credentials};
use super::RunError;

/// How this process finds the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peers {
    /// `host:port` of every process, in rank order.
    Addresses(Vec<String>),
    /// A directory every process can read and write (shared between hosts if they differ).
    Rendezvous {
        /// The directory.
        dir: PathBuf,
        /// Identifies this launch, so that files of another run are not mistaken for ours.
        job: String,
        /// Whether every process is on this host (then only the loopback interface is used).
        local: bool,
    },
}

/// Connected sockets, one per other process, in rank order (`None` at this process's rank).
/// Every connection proves that it belongs to this launch ([`handshake`]): the secret is
/// `token` when given (`--token`, `SHOTFLOW_TOKEN`), else one that process 0 writes into the
/// rendezvous directory (mode 0600), else none (a port or hostfile cluster without a token
/// checks the arguments' `fingerprint` only).
pub(crate) fn connect(
    process: usize,
    processes: usize,
    peers: &Peers,
    timeout: Duration,
    token: Option<&str>,
    fingerprint: &str,
) -> Result<Vec<Option<TcpStream>>, RunError> {
    let deadline = Instant::now() + timeout;
    let err = |message: String| RunError::Connect { process, message };

    let (listener, me) = match peers {
        Peers::Addresses(addresses) => {
            if addresses.len() != processes {
                return Err(err(format!(
                    "{} addresses given for {} processes",
                    addresses.len(),
                    processes
                )));
            }
            // Under the `mpi` feature the listener was opened before its address was published.
            #[cfg(feature = "mpi")]
            let prebound = super::mpi_bootstrap::take_listener(&addresses[process]);
            #[cfg(not(feature = "mpi"))]
            let prebound: Option<TcpListener> = None;
            let listener = match prebound {
                Some(listener) => listener,
                None => TcpListener::bind(&addresses[process])
                    .map_err(|e| err(format!("cannot listen on {}: {e}", addresses[process])))?,
            };
            (listener, addresses[process].clone())
        }
        Peers::Rendezvous { local, .. } => {
            let listener = TcpListener::bind(if *local { "127.0.0.1:0" } else { "0.0.0.0:0" })
                .map_err(|e| err(format!("cannot listen: {e}")))?;
            let port = listener
                .local_addr()
                .map_err(|e| err(e.to_string()))?
                .port();
            let host = if *local {
                "127.0.0.1".to_string()
            } else {
                super::environment::hostname().map_err(err)?
            };
            (listener, format!("{host}:{port}"))
        }
    };
    // The secret process 0 writes for this launch: it keeps its own rather than read back a
    // file that another launch sharing the directory may replace or remove.
    let mut written: Option<String> = None;
    if let Peers::Rendezvous { dir, job, .. } = peers {
        written = publish(dir, job, process, &me, token.is_none()).map_err(err)?;
    }
    // The launch's secret and a peer's address, read again at every attempt: a file left by an
    // earlier launch is replaced by this launch's as soon as its process writes it.
    let credentials = || -> Result<Credentials, String> {
        let token = match (token.or(written.as_deref()), peers) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Peers::Rendezvous { dir, .. }) => std::fs::read(dir.join("token"))
                .map_err(|e| format!("no launch secret in {} yet: {e}", dir.display()))?,
            (None, Peers::Addresses(_)) => Vec::new(),
        };
        Ok(Credentials {
            token,
            fingerprint: fingerprint.to_string(),
        })
    };
    let address = |peer: usize| -> Result<String, String> {
        match peers {
            Peers::Addresses(addresses) => Ok(addresses[peer].clone()),
            Peers::Rendezvous { dir, job, .. } => {
                let text = std::fs::read_to_string(dir.join(format!("{peer}.addr")))
                    .map_err(|_| format!("process {peer} has not appeared in {}", dir.display()))?;
                let mut lines = text.lines();
                match (lines.next(), lines.next()) {
                    (Some(j), Some(a)) if j == job => Ok(a.to_string()),
                    _ => Err(format!("{peer}.addr belongs to another launch")),
                }
            }
        }
    };

    let mut sockets: Vec<Option<TcpStream>> = (0..processes).map(|_| None).collect();
    for (peer, slot) in sockets.iter_mut().enumerate().take(process) {
        let mut last = String::new();
        // A refusal says more than the refused connection that follows once the peer gave up.
        let mut refusal: Option<String> = None;
        loop {
            let attempt = address(peer).map_err(|why| (why, false)).and_then(|a| {
                let mut stream = connect_once(&a).map_err(|e| (format!("{a}: {e}"), false))?;
                let credentials = credentials().map_err(|why| (why, false))?;
                match handshake::offer(&mut stream, process, processes, &credentials) {
                    Ok(()) => Ok(stream),
                    // A refusal for the secret or the arguments says more than the refused
                    // connections that follow once the peer gave up.
                    Err(handshake::Refused::Retry(why)) => Err((format!("{a}: {why}"), false)),
                    Err(handshake::Refused::Secret(why)) => Err((format!("{a}: {why}"), true)),
                    Err(handshake::Refused::Arguments(why)) => Err((
                        format!(
                            "the process {peer} at {a} was started with other arguments: {why}"
                        ),
                        true,
                    )),
                }
            });
            match attempt {
                Ok(stream) => {
                    *slot = Some(stream);
                    break;
                }
                Err((why, telling)) if Instant::now() > deadline => {
                    let why = if telling { why } else { refusal.unwrap_or(why) };
                    return Err(err(format!(
                        "cannot join process {peer} within {timeout:?}: {why}"
                    )));
                }
                Err((why, telling)) => {
                    if telling {
                        refusal = Some(why.clone());
                    }
                    if why != last {
                        tracing::debug!("process {process}: joining process {peer}: {why}");
                        last = why;
                    }
                    sleep(Duration::from_millis(20));
                }
            }
        }
    }

    listener
        .set_nonblocking(true)
        .map_err(|e| err(e.to_string()))?;
    let mut turned_away: Option<String> = None;
    let mut refused = 0u64;
    while sockets[process + 1..].iter().any(Option::is_none) {
        // Checked on every pass: a peer that keeps connecting with the wrong secret must not
        // hold this process past its deadline.
        if Instant::now() > deadline {
            let missing: Vec<usize> = (process + 1..processes)
                .filter(|&p| sockets[p].is_none())
                .collect();
            return Err(err(format!(
                "processes {missing:?} did not connect within {timeout:?}{}",
                turned_away
                    .map(|t| format!(" ({refused} connections turned away; last: {t})"))
                    .unwrap_or_default()
            )));
        }
        match listener.accept() {
            Ok((mut stream, from)) => {
                let checked =
                    credentials().and_then(|c| handshake::check(&mut stream, processes, &c));
                match checked {
                    Ok(peer) if peer > process && sockets[peer].is_none() => {
                        sockets[peer] = Some(stream)
                    }
                    Ok(peer) => {
                        tracing::warn!("process {process}: unexpected connection from process {peer} ({from}); ignored");
                    }
                    Err(e) => {
                        // One warning, then quiet: a stray client retrying every few
                        // milliseconds must not flood the log (the count goes in the error).
                        if refused == 0 {
                            tracing::warn!(
                                "process {process}: turned away a connection from {from}: {e}"
                            );
                        } else {
                            tracing::debug!(
                                "process {process}: turned away a connection from {from}: {e}"
                            );
                        }
                        refused += 1;
                        turned_away = Some(format!("turned away {from}: {e}"));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(err(format!("accept: {e}"))),
        }
    }

    for stream in sockets.iter().flatten() {
        stream
            .set_nonblocking(false)
            .map_err(|e| err(e.to_string()))?;
        stream
            .set_read_timeout(None)
            .map_err(|e| err(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| err(e.to_string()))?;
    }
    if let (Peers::Rendezvous { dir, job, .. }, true) = (peers, process + 1 == processes) {
        // The last process connects to every other one after each of those has made its own
        // connections (a process accepts only once it has joined every lower one): when it
        // is done, every pair is connected, and this launch's files are no longer needed.
        // (Process 0 cleaning up once everyone had joined *it* removed addresses that higher
        // processes still needed to join each other: 3 processes failed.) Another launch's
        // files, in a shared directory, stay.
        for peer in 0..processes {
            let path = dir.join(format!("{peer}.addr"));
            let ours = std::fs::read_to_string(&path)
                .is_ok_and(|text| text.lines().next() == Some(job.as_str()));
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
        let path = dir.join("token");
        let used = credentials().ok().map(|c| c.token);
        if used.is_some_and(|t| std::fs::read(&path).is_ok_and(|on_disk| on_disk == t)) {
            let _ = std::fs::remove_file(path);
        }
        if dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("shotflow-rendezvous-"))
        {
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(sockets)
}

/// Closes every connection so that the other processes notice at once that this one failed.
pub(crate) fn shut_down(sockets: &[TcpStream]) {
    for socket in sockets {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

fn connect_once(address: &str) -> Result<TcpStream, String> {
    let addr = address
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".to_string())?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())
}

/// Publishes this process's address in the rendezvous directory; process 0 first writes the
/// launch's secret there (when none was given), readable by its owner only.
fn publish(
    dir: &Path,
    job: &str,
    process: usize,
    me: &str,
    secret: bool,
) -> Result<Option<String>, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    let context = |e: std::io::Error| format!("rendezvous {}: {e}", dir.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(context)?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let owner = std::fs::metadata(dir).map_err(context)?.uid();
    if owner != uid {
        return Err(format!(
            "rendezvous {} belongs to another user (uid {owner}): choose a directory of your own",
            dir.display()
        ));
    }
    let mut written = None;
    if process == 0 && secret {
        let token: [u8; 32] = rand::random();
        let text: String = token.iter().map(|b| format!("{b:02x}")).collect();
        written = Some(text.clone());
        let tmp = dir.join(format!(".token.{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|_| std::fs::rename(&tmp, dir.join("token")))
            .map_err(context)?;
    }
    let tmp = dir.join(format!(".{process}.addr.{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{job}\n{me}\n"))
        .and_then(|_| std::fs::rename(&tmp, dir.join(format!("{process}.addr"))))
        .map_err(context)?;
    Ok(written)
}
