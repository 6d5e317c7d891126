//! Who may join a run: a challenge–response over each new connection between two processes.
//!
//! The accepting process sends a fresh random challenge; the connecting one answers with its
//! rank, the run's size, the fingerprint of its arguments and an HMAC-SHA256 over all of it
//! keyed by the launch's secret; the acceptor checks the HMAC (a process without the secret,
//! or from another launch, is turned away), compares the fingerprints (a process started with
//! other arguments is refused, naming the difference), and proves in turn that it holds the
//! secret. A constant magic number, which any process of any launch sends, proves nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAGIC: &[u8; 8] = b"SHOTFLW2";
/// A connection that does not complete its handshake within this is dropped.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);
/// Longest fingerprint accepted (it names the run's inputs and options).
const MAX_FINGERPRINT: u32 = 1 << 16;

/// What a process proves and shows when it joins.
#[derive(Clone, Debug)]
pub(crate) struct Credentials {
    /// The launch's secret (empty: none was given or could be shared).
    pub token: Vec<u8>,
    /// `name = value` lines of the arguments that must agree.
    pub fingerprint: String,
}

/// Why a connection did not join.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not (yet) reachable, or not a shotflow process: try again.
    Retry(String),
    /// The secrets differ (another launch, or a stale address): try again, and say so if it
    /// stays that way.
    Secret(String),
    /// Our launch, started with other arguments: stop.
    Arguments(String),
}

type HmacSha256 = Hmac<Sha256>;

fn mac(token: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(token).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    mac
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// The differences between two fingerprints, by name.
pub(crate) fn differences(ours: &str, theirs: &str) -> String {
    let parse = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let (ours, theirs) = (parse(ours), parse(theirs));
    let mut names: Vec<&String> = ours.iter().chain(&theirs).map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    let value = |pairs: &[(String, String)], name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| "(not given)".to_string(), |(_, v)| v.clone())
    };
    names
        .into_iter()
        .filter(|n| value(&ours, n) != value(&theirs, n))
        .map(|n| format!("{n}: {} here, {} there", value(&ours, n), value(&theirs, n)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The connecting side: proves that process `rank` of `processes` belongs to this launch.
pub(crate) fn offer(
    stream: &mut TcpStream,
    rank: usize,
    processes: usize,
    credentials: &Credentials,
) -> Result<(), Refused> {
    let retry = |e: String| Refused::Retry(e);
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| retry(io(e)))?;
    let mut hello = [0u8; 24];
    stream
        .read_exact(&mut hello)
        .map_err(|e| retry(format!("no challenge: {e}")))?;
    if &hello[..8] != MAGIC {
        return Err(retry("not a shotflow process".into()));
    }
    let challenge = &hello[8..];
    let nonce: [u8; 16] = rand::random();
    let (rank, processes) = (
        (rank as u64).to_le_bytes(),
        (processes as u64).to_le_bytes(),
    );
    let fingerprint = credentials.fingerprint.as_bytes();
    let proof = mac(
        &credentials.token,
        &[b"join", challenge, &rank, &processes, &nonce, fingerprint],
    )
    .finalize()
    .into_bytes();
    let mut message = Vec::with_capacity(72 + fingerprint.len());
    message.extend_from_slice(&rank);
    message.extend_from_slice(&processes);
    message.extend_from_slice(&nonce);
    message.extend_from_slice(&(fingerprint.len() as u32).to_le_bytes());
    message.extend_from_slice(fingerprint);
    message.extend_from_slice(&proof);
    stream.write_all(&message).map_err(|e| retry(io(e)))?;
    let mut verdict = [0u8; 1];
    stream
        .read_exact(&mut verdict)
        .map_err(|e| retry(format!("no answer: {e}")))?;
    match verdict[0] {
        b'Y' => {
            let mut answer = [0u8; 32];
            stream.read_exact(&mut answer).map_err(|e| retry(io(e)))?;
            mac(&credentials.token, &[b"accept", &nonce])
                .verify_slice(&answer)
                .map_err(|_| Refused::Secret("the peer does not hold this launch's secret".into()))
        }
        b'F' => {
            let theirs = read_text(stream).map_err(retry)?;
            Err(Refused::Arguments(differences(
                &credentials.fingerprint,
                &theirs,
            )))
        }
        b'S' => Err(Refused::Secret(read_text(stream).unwrap_or_default())),
        _ => Err(retry(read_text(stream).unwrap_or_default())),
    }
}

fn read_text(stream: &mut TcpStream) -> Result<String, String> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(io)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_FINGERPRINT {
        return Err(format!("a text of {len} bytes announced"));
    }
    let mut text = vec![0u8; len as usize];
    stream.read_exact(&mut text).map_err(io)?;
    String::from_utf8(text).map_err(|e| e.to_string())
}

fn send_text(stream: &mut TcpStream, verdict: u8, text: &str) {
    let mut message = vec![verdict];
    message.extend_from_slice(&(text.len() as u32).to_le_bytes());
    message.extend_from_slice(text.as_bytes());
    let _ = stream.write_all(&message);
}

/// The accepting side: the rank of the process at the other end, if it proves that it belongs
/// to this launch of `processes` processes and was started with the same arguments.
pub(crate) fn check(
    stream: &mut TcpStream,
    processes: usize,
    credentials: &Credentials,
) -> Result<usize, String> {
    stream.set_nonblocking(false).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    let challenge: [u8; 16] = rand::random();
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&challenge);
    stream.write_all(&hello).map_err(io)?;
    let mut head = [0u8; 36];
    stream.read_exact(&mut head).map_err(io)?;
    let (rank, total, nonce) = (&head[0..8], &head[8..16], &head[16..32]);
    let len = u32::from_le_bytes(head[32..36].try_into().expect("4 bytes"));
    if len > MAX_FINGERPRINT {
        return Err(format!("announced a fingerprint of {len} bytes"));
    }
    let mut fingerprint = vec![0u8; len as usize];
    stream.read_exact(&mut fingerprint).map_err(io)?;
    let mut proof = [0u8; 32];
    stream.read_exact(&mut proof).map_err(io)?;
    if mac(
        &credentials.token,
        &[b"join", &challenge, rank, total, nonce, &fingerprint],
    )
    .verify_slice(&proof)
    .is_err()
    {
        send_text(stream, b'S', "not this launch (wrong or missing secret)");
        return Err(
            "it does not hold this launch's secret (another run, or a stale address)".into(),
        );
    }
    let rank = u64::from_le_bytes(rank.try_into().expect("8 bytes")) as usize;
    let total = u64::from_le_bytes(total.try_into().expect("8 bytes")) as usize;
    if total != processes || rank >= processes {
        send_text(stream, b'N', "another number of processes");
        return Err(format!(
            "it says it is process {rank} of {total}, this run has {processes}"
        ));
    }
    let theirs = String::from_utf8_lossy(&fingerprint);
    if theirs != credentials.fingerprint {
        send_text(stream, b'F', &credentials.fingerprint);
        return Err(format!(
            "process {rank} was started with other arguments: {}",
            differences(&credentials.fingerprint, &theirs)
        ));
    }
    let mut answer = vec![b'Y'];
    answer.extend_from_slice(
        &mac(&credentials.token, &[b"accept", nonce])
            .finalize()
            .into_bytes(),
    );
    stream.write_all(&answer).map_err(io)?;
    Ok(rank)
}
