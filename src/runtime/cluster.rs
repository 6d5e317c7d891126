//! Connecting the processes of a run into timely's TCP cluster, with deadlines.
//!
//! timely's own connection code retries forever when a peer never appears; a scientist whose
//! job lost one rank would watch it hang. Here every process connects to the lower-ranked
//! processes and accepts the higher-ranked ones until a deadline, checks a small handshake so a
//! stray connection cannot join the run, and then hands the sockets to timely.
//!
//! Addresses come either from a list (`--hostfile`, or `127.0.0.1:PORT+i`) or from a
//! rendezvous directory: each process binds an ephemeral port, publishes `host:port` in
//! `<dir>/<rank>.addr`, and reads the others' files. That needs no port planning, which is what
//! `mpirun`/`srun` launches want.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::RunError;

const MAGIC: &[u8; 8] = b"SHOTFLW1";

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
pub(crate) fn connect(
    process: usize,
    processes: usize,
    peers: &Peers,
    timeout: Duration,
) -> Result<Vec<Option<TcpStream>>, RunError> {
    let deadline = Instant::now() + timeout;
    let err = |message: String| RunError::Connect { process, message };

    let (listener, addresses) = match peers {
        Peers::Addresses(addresses) => {
            if addresses.len() != processes {
                return Err(err(format!(
                    "{} addresses given for {} processes",
                    addresses.len(),
                    processes
                )));
            }
            let listener = TcpListener::bind(&addresses[process])
                .map_err(|e| err(format!("cannot listen on {}: {e}", addresses[process])))?;
            (listener, addresses.clone())
        }
        Peers::Rendezvous { dir, job, local } => {
            let listener = TcpListener::bind(if *local { "127.0.0.1:0" } else { "0.0.0.0:0" })
                .map_err(|e| err(format!("cannot listen: {e}")))?;
            let port = listener
                .local_addr()
                .map_err(|e| err(e.to_string()))?
                .port();
            let host = if *local {
                "127.0.0.1".to_string()
            } else {
                hostname().map_err(err)?
            };
            let addresses = rendezvous(
                dir,
                job,
                process,
                processes,
                &format!("{host}:{port}"),
                deadline,
            )
            .map_err(err)?;
            (listener, addresses)
        }
    };

    let mut sockets: Vec<Option<TcpStream>> = (0..processes).map(|_| None).collect();
    for (peer, address) in addresses.iter().enumerate().take(process) {
        let stream = connect_one(address, deadline).map_err(|e| {
            err(format!(
                "cannot reach process {peer} at {address}: {e} (is it running?)"
            ))
        })?;
        sockets[peer] = Some(stream);
    }
    for stream in sockets.iter_mut().take(process).flatten() {
        let mut hello = MAGIC.to_vec();
        hello.extend_from_slice(&(process as u64).to_le_bytes());
        hello.extend_from_slice(&(processes as u64).to_le_bytes());
        stream
            .write_all(&hello)
            .map_err(|e| err(format!("handshake: {e}")))?;
    }

    listener
        .set_nonblocking(true)
        .map_err(|e| err(e.to_string()))?;
    while sockets[process + 1..].iter().any(Option::is_none) {
        match listener.accept() {
            Ok((mut stream, from)) => match handshake(&mut stream, processes, deadline) {
                Ok(peer) if peer > process && sockets[peer].is_none() => {
                    sockets[peer] = Some(stream)
                }
                Ok(peer) => {
                    tracing::warn!("process {process}: unexpected second connection from process {peer} ({from}); ignored");
                }
                Err(e) => {
                    tracing::warn!("process {process}: ignored a connection from {from}: {e}")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<usize> = (process + 1..processes)
                        .filter(|&p| sockets[p].is_none())
                        .collect();
                    return Err(err(format!(
                        "processes {missing:?} did not connect within {timeout:?}"
                    )));
                }
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
    if let (Peers::Rendezvous { dir, .. }, 0) = (peers, process) {
        // Every other process read all addresses before it connected to process 0, so once
        // process 0 has all its connections the files are no longer needed.
        for peer in 0..processes {
            let _ = std::fs::remove_file(dir.join(format!("{peer}.addr")));
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

fn connect_one(address: &str, deadline: Instant) -> Result<TcpStream, String> {
    loop {
        let attempt = address
            .to_socket_addrs()
            .map_err(|e| e.to_string())
            .and_then(|mut addrs| addrs.next().ok_or_else(|| "no address".to_string()))
            .and_then(|addr| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())
            });
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => sleep(Duration::from_millis(20)),
        }
    }
}

fn handshake(stream: &mut TcpStream, processes: usize, deadline: Instant) -> Result<usize, String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    stream
        .set_read_timeout(Some(wait))
        .map_err(|e| e.to_string())?;
    let mut hello = [0u8; 24];
    stream.read_exact(&mut hello).map_err(|e| e.to_string())?;
    if &hello[..8] != MAGIC {
        return Err("not a shotflow process".into());
    }
    let peer = u64::from_le_bytes(hello[8..16].try_into().unwrap()) as usize;
    let total = u64::from_le_bytes(hello[16..24].try_into().unwrap()) as usize;
    if total != processes || peer >= processes {
        return Err(format!(
            "peer says it is process {peer} of {total}, this run has {processes}"
        ));
    }
    Ok(peer)
}

fn hostname() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map(|h| h.trim().to_string())
        .map_err(|_| "cannot tell this host's name for the rendezvous".to_string())
}

fn rendezvous(
    dir: &Path,
    job: &str,
    process: usize,
    processes: usize,
    me: &str,
    deadline: Instant,
) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("rendezvous {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{process}.addr.tmp"));
    std::fs::write(&tmp, format!("{job}\n{me}\n"))
        .and_then(|_| std::fs::rename(&tmp, dir.join(format!("{process}.addr"))))
        .map_err(|e| format!("rendezvous {}: {e}", dir.display()))?;
    let mut addresses = vec![None; processes];
    addresses[process] = Some(me.to_string());
    while addresses.iter().any(Option::is_none) {
        for (peer, slot) in addresses.iter_mut().enumerate() {
            if slot.is_none() {
                if let Ok(text) = std::fs::read_to_string(dir.join(format!("{peer}.addr"))) {
                    let mut lines = text.lines();
                    if lines.next() == Some(job) {
                        *slot = lines.next().map(str::to_string);
                    }
                }
            }
        }
        if Instant::now() > deadline {
            let missing: Vec<usize> = (0..processes).filter(|&p| addresses[p].is_none()).collect();
            return Err(format!(
                "processes {missing:?} did not appear in the rendezvous directory {}",
                dir.display()
            ));
        }
        sleep(Duration::from_millis(10));
    }
    Ok(addresses.into_iter().map(Option::unwrap).collect())
}
