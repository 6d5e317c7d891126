//! Who joins a multi-process run: only processes of this launch, started with the same
//! arguments. Two runs sharing a rendezvous directory, a process started with another seed,
//! a process with another secret, and an idle connection to a cluster port, each with the
//! real binary on loopback.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{small_demo, small_demo_args, spawn, wait_bounded};

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");
const LIMIT: Duration = Duration::from_secs(60);

fn demo(seed: u64, extra: &[String]) -> Vec<String> {
    let mut args = small_demo_args();
    args.extend(["--seed".into(), seed.to_string()]);
    args.extend(extra.iter().cloned());
    args
}

fn rendezvous(process: usize, dir: &Path, timeout: u64) -> Vec<String> {
    [
        "--processes",
        "2",
        "--process",
        &process.to_string(),
        "--rendezvous",
        &dir.display().to_string(),
        "--connect-timeout",
        &timeout.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Both processes succeeded, and process 0 printed the result of `seed`.
fn both_finish_with_their_own_result(zero: &Output, one: &Output, seed: u64) {
    for (p, out) in [(0, zero), (1, one)] {
        assert!(
            out.status.success(),
            "process {p}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&zero.stdout).unwrap();
    assert_eq!(json["kept"].as_u64(), Some(kept(seed)));
}

/// The `kept` count an uninterrupted one-process run of `seed` prints.
fn kept(seed: u64) -> u64 {
    let mut config = small_demo();
    config.source.seed = seed;
    common::demo_reference(&config).kept
}

#[test]
fn two_runs_sharing_a_rendezvous_directory_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("rv");
    let children: Vec<(u64, usize, std::process::Child)> = [1u64, 2]
        .iter()
        .flat_map(|&seed| (0..2).map(move |p| (seed, p)))
        .map(|(seed, p)| {
            (
                seed,
                p,
                spawn(SHOTFLOW, &demo(seed, &rendezvous(p, &shared, 8))),
            )
        })
        .collect();
    let mut finished = 0;
    for (seed, p, child) in children {
        let out = wait_bounded(child, LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if p == 0 && out.status.success() {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                json["kept"].as_u64(),
                Some(kept(seed)),
                "seed {seed}: its own result"
            );
            finished += 1;
        } else if !out.status.success() {
            assert!(
                stderr.contains("cannot join") || stderr.contains("did not connect"),
                "seed {seed} process {p}: {stderr}"
            );
        }
    }
    eprintln!("{finished} of 2 runs finished, each with its own result; none mixed");
}

#[test]
fn a_process_started_with_other_arguments_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let rv = dir.path().join("rv");
    let zero = spawn(SHOTFLOW, &demo(1, &rendezvous(0, &rv, 5)));
    let one = spawn(SHOTFLOW, &demo(2, &rendezvous(1, &rv, 5)));
    let one = wait_bounded(one, LIMIT);
    let zero = wait_bounded(zero, LIMIT);
    let stderr = String::from_utf8_lossy(&one.stderr);
    assert_eq!(one.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was started with other arguments: seed: 2 here, 1 there"),
        "{stderr}"
    );
    assert_eq!(zero.status.code(), Some(1));
}

#[test]
fn a_process_without_the_launch_secret_cannot_join() {
    let dir = tempfile::tempdir().unwrap();
    let rv = dir.path().join("rv");
    let mut zero_args = demo(1, &rendezvous(0, &rv, 4));
    zero_args.extend(["--token".into(), "the-secret".into()]);
    let mut one_args = demo(1, &rendezvous(1, &rv, 4));
    one_args.extend(["--token".into(), "a-guess".into()]);
    let zero = spawn(SHOTFLOW, &zero_args);
    let one = wait_bounded(spawn(SHOTFLOW, &one_args), LIMIT);
    let zero = wait_bounded(zero, LIMIT);
    let stderr = String::from_utf8_lossy(&one.stderr);
    assert_eq!(one.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("secret"), "{stderr}");
    assert_eq!(zero.status.code(), Some(1));
    // The secret that process 0 writes itself is readable by its owner only.
    let dir = tempfile::tempdir().unwrap();
    let rv = dir.path().join("rv");
    let zero = spawn(SHOTFLOW, &demo(1, &rendezvous(0, &rv, 30)));
    let started = Instant::now();
    while !rv.join("token").exists() {
        assert!(started.elapsed() < LIMIT);
        std::thread::sleep(Duration::from_millis(5));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(rv.join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let one = wait_bounded(spawn(SHOTFLOW, &demo(1, &rendezvous(1, &rv, 30))), LIMIT);
    both_finish_with_their_own_result(&wait_bounded(zero, LIMIT), &one, 1);
}

#[test]
fn an_idle_connection_to_a_cluster_port_does_not_stall_start_up() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Make sure the next port is free too (process 1 listens on it).
    let ports = |p: usize| -> Vec<String> {
        [
            "--processes",
            "2",
            "--process",
            &p.to_string(),
            "--port",
            &port.to_string(),
            "--connect-timeout",
            "60",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let started = Instant::now();
    let zero = spawn(SHOTFLOW, &demo(1, &ports(0)));
    let idle = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(_) if started.elapsed() < LIMIT => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("process 0 never listened: {e}"),
        }
    };
    let one = wait_bounded(spawn(SHOTFLOW, &demo(1, &ports(1))), LIMIT);
    let zero = wait_bounded(zero, LIMIT);
    drop(idle);
    both_finish_with_their_own_result(&zero, &one, 1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "start-up stalled: {took:?}");
    eprintln!("two processes ran in {took:?} beside an idle connection");
}

/// Files an earlier, crashed launch left in the rendezvous directory (an address where nothing
/// listens any more, a secret of its own) cost the new launch a retry, never a wrong peer or a
/// wait for the whole connect timeout.
#[test]
fn a_stale_rendezvous_from_an_earlier_launch_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let rv = dir.path().join("rv");
    std::fs::create_dir_all(&rv).unwrap();
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(rv.join("0.addr"), format!("explicit-2\n{dead}\n")).unwrap();
    std::fs::write(rv.join("token"), "an-old-launch").unwrap();
    let started = Instant::now();
    // Process 1 first: it finds only the stale files until process 0 replaces them.
    let one = spawn(SHOTFLOW, &demo(1, &rendezvous(1, &rv, 60)));
    std::thread::sleep(Duration::from_millis(500));
    let zero = spawn(SHOTFLOW, &demo(1, &rendezvous(0, &rv, 60)));
    let (one, zero) = (wait_bounded(one, LIMIT), wait_bounded(zero, LIMIT));
    both_finish_with_their_own_result(&zero, &one, 1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
    eprintln!("started past stale rendezvous files in {took:?}");
}

/// A stranger that keeps connecting to process 0's port (every few milliseconds, with garbage
/// for a handshake) never holds it past its connect timeout: process 0 gives up on time,
/// saying who it turned away. (Found when two launches shared a rendezvous directory and one
/// process retried without end.)
#[test]
fn a_peer_that_keeps_connecting_does_not_hold_process_0_past_its_timeout() {
    use std::io::Write;
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args: Vec<String> = [
        "--processes",
        "2",
        "--process",
        "0",
        "--port",
        &port.to_string(),
        "--connect-timeout",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    let zero = spawn(SHOTFLOW, &demo(1, &args));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut attempts = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(30)
            {
                if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = stream.write_all(b"not a shotflow handshake, not at all\n");
                    attempts += 1;
                }
                std::thread::sleep(Duration::from_millis(3));
            }
            attempts
        })
    };
    let zero = wait_bounded(zero, LIMIT);
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let attempts = hammer.join().unwrap();
    let stderr = String::from_utf8_lossy(&zero.stderr);
    assert_eq!(zero.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not connect within 3s"), "{stderr}");
    assert!(took < Duration::from_secs(10), "held for {took:?}");
    eprintln!("process 0 gave up after {took:?} despite {attempts} connections");
}
