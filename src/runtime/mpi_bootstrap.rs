//! Starting a cluster from MPI itself (cargo feature `mpi`): under `mpirun`, each process
//! listens on a port of its own choosing, and an allgather over `MPI_COMM_WORLD` tells every
//! process everyone's `host:port`; the launch's secret goes from rank 0 to all by `MPI_Bcast`.
//! Across hosts this needs neither a shared directory nor a hostfile. MPI is finalised at once:
//! the run itself talks over timely's own connections.

use std::net::TcpListener;
use std::sync::Mutex;

use mpi::traits::{Communicator, CommunicatorCollectives, Root};

use super::environment::Launcher;
use super::RunError;

/// Longest `host:port` an allgather slot holds.
const SLOT: usize = 256;

/// The listener this process published, for the cluster to take instead of binding again (no
/// window in which another program could take the port).
static LISTENER: Mutex<Option<TcpListener>> = Mutex::new(None);

/// The listener published for `address`, if this process made one.
pub(crate) fn take_listener(address: &str) -> Option<TcpListener> {
    let mut slot = LISTENER.lock().unwrap_or_else(|e| e.into_inner());
    let matches = slot
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .is_some_and(|a| address.ends_with(&format!(":{}", a.port())));
    if matches {
        slot.take()
    } else {
        None
    }
}

/// Every process's address, in rank order, and the launch's secret (`token`, or rank 0's
/// fresh one). Fails, naming both, when MPI and the launcher's environment disagree on the
/// rank or the size.
pub(crate) fn exchange(
    launcher: &Launcher,
    token: Option<String>,
) -> Result<(Vec<String>, String), RunError> {
    let err = |m: String| RunError::Launch(format!("MPI bootstrap: {m}"));
    let universe = mpi::initialize().ok_or_else(|| err("MPI was already initialised".into()))?;
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    if (rank, size) != (launcher.rank, launcher.size) {
        return Err(err(format!(
            "MPI says rank {rank} of {size}, {}'s environment rank {} of {}: a mismatched \
             launch (started outside mpirun, or by another MPI than the one shotflow was \
             built with?)",
            launcher.name, launcher.rank, launcher.size
        )));
    }
    let local = launcher.single_host == Some(true);
    let listener = TcpListener::bind(if local { "127.0.0.1:0" } else { "0.0.0.0:0" })
        .map_err(|e| err(format!("cannot listen: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| err(e.to_string()))?
        .port();
    let host = if local {
        "127.0.0.1".to_string()
    } else {
        super::environment::hostname().map_err(err)?
    };
    let me = format!("{host}:{port}");
    if me.len() > SLOT {
        return Err(err(format!("the address {me} is longer than {SLOT} bytes")));
    }
    let mut mine = [0u8; SLOT];
    mine[..me.len()].copy_from_slice(me.as_bytes());
    let mut all = vec![0u8; SLOT * size];
    world.all_gather_into(&mine[..], &mut all[..]);
    let addresses = all
        .chunks(SLOT)
        .map(|slot| {
            let end = slot.iter().position(|b| *b == 0).unwrap_or(SLOT);
            String::from_utf8_lossy(&slot[..end]).into_owned()
        })
        .collect();
    // Rank 0's secret (the one given, or a fresh one) to everyone: 64 hex characters.
    let mut secret = [0u8; 64];
    if rank == 0 {
        let text = token.unwrap_or_else(|| {
            let bytes: [u8; 32] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        });
        let bytes = text.as_bytes();
        if bytes.len() > secret.len() {
            return Err(err("the launch secret is longer than 64 bytes".into()));
        }
        secret[..bytes.len()].copy_from_slice(bytes);
    }
    world.process_at_rank(0).broadcast_into(&mut secret[..]);
    let end = secret.iter().position(|b| *b == 0).unwrap_or(secret.len());
    let token = String::from_utf8_lossy(&secret[..end]).into_owned();
    *LISTENER.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
    // MPI_Finalize, now: nothing else goes through MPI.
    drop(universe);
    Ok((addresses, token))
}
