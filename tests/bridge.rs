//! karabo-bridge against the reference Python implementation (karabo-bridge-py from PyPI):
//! its file server feeding our client, our server feeding its client, and its simulator.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shotflow::bridge::client::{BridgeSource, Client, ClientConfig};
use shotflow::bridge::Pattern;
use shotflow::event::{Event, Key};
use shotflow::exdf::{ExdfRun, Selector};
use shotflow::runtime::{execute_plan, Plan};
use shotflow::sink::SinkExt;

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a helper process (by its own PID) when the test ends, pass or fail.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn simulate(dir: &Path) {
    let out = Command::new(SHOTFLOW)
        .args([
            "simulate",
            &dir.display().to_string(),
            "--trains",
            "12",
            "--frames",
            "4",
            "--trains-per-file",
            "6",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn receive(endpoint: &str, pattern: Pattern, trains: u64) -> Vec<Event> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&seen);
    let endpoint = endpoint.to_string();
    execute_plan(&Plan::Process { workers: 2 }, move |worker| {
        let out = Arc::clone(&out);
        let endpoint = endpoint.clone();
        worker.dataflow(|scope| {
            scope
                .karabo_bridge(
                    &ClientConfig::new(&endpoint)
                        .pattern(pattern)
                        .max_trains(Some(trains))
                        .trains_per_batch(3)
                        .timeout(Duration::from_secs(20)),
                )
                .ordered("Collect", move |_, events: &[Event]| {
                    out.lock().unwrap().extend_from_slice(events)
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let events = seen.lock().unwrap().clone();
    events
}

/// Every value of `want` (our EXDF reader, itself checked against extra-data) is in `got`
/// (received over the bridge). The bridge sends a train-resolved source's single row without
/// its row axis, and Python ints as int64. Returns how many values were compared.
fn assert_same_trains(got: &[Event], want: &[Event]) -> usize {
    assert_eq!(got.len(), want.len());
    let mut compared = 0;
    for (got, want) in got.iter().zip(want) {
        assert_eq!(got.id, want.id);
        for (key, value) in want.fields() {
            let Some(received) = got.value(*key) else {
                panic!("train {}: {key} not received", want.id)
            };
            let same = match (value, received) {
                (shotflow::event::Value::Array(a), shotflow::event::Value::Array(b)) => {
                    a.to_f64_vec() == b.to_f64_vec()
                }
                (a, b) => {
                    a.as_f64() == b.as_f64()
                        || a.as_array().map(|x| x.to_f64_vec())
                            == Some(vec![b.as_f64().unwrap_or(f64::NAN)])
                }
            };
            assert!(same, "train {}: {key} differs", want.id);
            compared += 1;
        }
    }
    compared
}

/// The run's trains through our EXDF reader.
fn read_run(run_dir: &Path) -> Vec<Event> {
    let run = ExdfRun::open(run_dir).unwrap();
    let selected = run.select(&[Selector::parse("*").unwrap()]).unwrap();
    let mut open = |i: usize, name: &str| {
        Ok(hdf5::File::open(&run.files[i].path)
            .unwrap()
            .dataset(name)
            .unwrap())
    };
    run.read(&run.trains, &selected, &mut open).unwrap()
}

#[test]
fn our_client_reads_karabo_bridge_serve_files_like_extra_data() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r0001");
    simulate(&run_dir);
    let port = free_port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let _server = Guard(
        common::python_command()
            .args(["-c", "import sys; from extra_data.cli.serve_files import main; sys.argv[0] = \"karabo-bridge-serve-files\"; sys.exit(main())"])
            .arg(&run_dir)
            .arg(&endpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("karabo-bridge (pip install karabo-bridge)"),
    );
    let events = receive(&endpoint, Pattern::Rep, 12);
    let compared = assert_same_trains(&events, &read_run(&run_dir));
    assert!(compared > 12 * 10, "{compared} values compared");
}

#[test]
fn the_reference_client_reads_our_server_like_extra_data() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r0001");
    simulate(&run_dir);
    for pattern in ["rep", "push"] {
        let port = free_port();
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let _server = Guard(
            Command::new(SHOTFLOW)
                .args([
                    "serve",
                    &run_dir.display().to_string(),
                    "--bind",
                    &endpoint,
                    "--pattern",
                    pattern,
                    "--client-timeout",
                    "20",
                    "--workers",
                    "2",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let check = r#"
import sys
import numpy as np
from extra_data import RunDirectory
from karabo_bridge import Client
run = RunDirectory(sys.argv[1])
sock = "REQ" if sys.argv[3] == "rep" else "PULL"
client = Client(sys.argv[2], sock=sock, timeout=20)
n = 0
for tid, train in run.trains(require_all=False):
    data, meta = client.next()
    for src, keys in train.items():
        assert src in data, (tid, src, list(data))
        got_tid = meta[src]["timestamp.tid"]
        assert got_tid == tid, (got_tid, tid)
        for key, want in keys.items():
            if key == "metadata" or not isinstance(want, np.ndarray) or want.dtype.kind not in "biuf":
                continue
            got = np.asarray(data[src][key])
            want = np.asarray(want)
            if want.shape == (1,) + got.shape or want.ndim == got.ndim + 1 and want.shape[0] == 1:
                want = want[0]
            np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=f"{tid} {src} {key}")
    n += 1
assert n == len(run.train_ids), n
print("ok", n)
"#;
        let out = common::python_command()
            .args(["-c", check])
            .arg(&run_dir)
            .arg(&endpoint)
            .arg(pattern)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{pattern}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn our_client_reads_the_reference_simulator() {
    let port = free_port();
    let _sim = Guard(
        common::python_command()
            .args(["-c", "import sys; from karabo_bridge.cli.simulation import main; sys.argv[0] = \"karabo-bridge-server-sim\"; sys.exit(main())", &port.to_string(), "-d", "AGIPD", "-z", "REP", "-p", "2.2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let events = receive(&format!("tcp://127.0.0.1:{port}"), Pattern::Rep, 3);
    assert_eq!(events.len(), 3);
    for e in &events {
        let frames = e
            .fields()
            .iter()
            .find(|(k, _)| k.name().ends_with("image.data"))
            .expect("image.data");
        assert!(frames.1.shape().len() >= 3, "{:?}", frames.1.shape());
    }
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
}

/// `shotflow serve` on a fresh port, REP, giving up on clients after `client_timeout` s.
fn serve(run_dir: &Path, client_timeout: u64) -> (String, Child) {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let child = common::spawn(
        SHOTFLOW,
        &[
            "serve".into(),
            run_dir.display().to_string(),
            "--bind".into(),
            endpoint.clone(),
            "--client-timeout".into(),
            client_timeout.to_string(),
        ],
    );
    (endpoint, child)
}

fn train_ids(run_dir: &Path) -> Vec<u64> {
    ExdfRun::open(run_dir).unwrap().trains.clone()
}

#[test]
fn a_client_that_leaves_mid_run_leaves_the_rest_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r0001");
    simulate(&run_dir);
    let (endpoint, server) = serve(&run_dir, 10);
    let mut got = Vec::new();
    {
        let mut first = Client::connect(&endpoint, Pattern::Rep, Duration::from_secs(20)).unwrap();
        for _ in 0..4 {
            got.push(first.next_train().unwrap().expect("a train").id);
        }
        // dropped here, between requests, as a viewer that is closed
    }
    // The next client, with two connections, takes the rest, and then the server is done.
    let mut second =
        Client::connect_parallel(&endpoint, Pattern::Rep, Duration::from_secs(3), 2).unwrap();
    while let Some(train) = second.next_train().unwrap() {
        got.push(train.id);
    }
    assert_eq!(got, train_ids(&run_dir));
    assert_eq!(second.skipped_trains, 0);
    let out = common::wait_bounded(server, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_server_whose_clients_left_ends_with_an_error_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r0001");
    simulate(&run_dir);
    let (endpoint, server) = serve(&run_dir, 2);
    let mut client = Client::connect(&endpoint, Pattern::Rep, Duration::from_secs(20)).unwrap();
    for _ in 0..3 {
        client.next_train().unwrap().expect("a train");
    }
    drop(client);
    let started = std::time::Instant::now();
    let out = common::wait_bounded(server, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&endpoint)
            && stderr.contains("no client")
            && stderr.contains("3 trains sent"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_server_that_goes_away_ends_the_stream_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r0001");
    simulate(&run_dir);
    let ids = train_ids(&run_dir);
    // Killed mid-run: the client sees no answer and ends, it does not hang or panic.
    let (endpoint, server) = serve(&run_dir, 20);
    let mut server = Guard(server);
    let mut client = Client::connect(&endpoint, Pattern::Rep, Duration::from_secs(2)).unwrap();
    for want in &ids[..3] {
        assert_eq!(client.next_train().unwrap().expect("a train").id, *want);
    }
    server.0.kill().unwrap();
    let _ = server.0.wait();
    let started = std::time::Instant::now();
    assert!(client.next_train().unwrap().is_none());
    assert!(started.elapsed() < Duration::from_secs(10));

    // A server that runs out of trains: the source ends the dataflow with what it received.
    let (endpoint, server) = serve(&run_dir, 20);
    let _server = Guard(server);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&seen);
    let started = std::time::Instant::now();
    execute_plan(&Plan::Process { workers: 2 }, move |worker| {
        let out = Arc::clone(&out);
        let config = ClientConfig::new(&endpoint)
            .trains_per_batch(5)
            .timeout(Duration::from_secs(2));
        worker.dataflow(|scope| {
            scope
                .karabo_bridge(&config)
                .ordered("Collect", move |_, events: &[Event]| {
                    out.lock().unwrap().extend(events.iter().map(|e| e.id))
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), ids);
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn malformed_trains_on_the_wire_are_skipped_and_counted() {
    // A REP server in Python (pyzmq + msgpack, as karabo-bridge-py) answering four broken
    // trains and then a good one.
    let port = free_port();
    let script = r#"
import sys, zmq, msgpack, numpy as np
sock = zmq.Context().socket(zmq.REP)
sock.setsockopt(zmq.LINGER, 2000)
sock.bind(f"tcp://127.0.0.1:{sys.argv[1]}")
def head(src, tid):
    return msgpack.packb({"source": src, "content": "msgpack", "metadata": {"source": src, "timestamp.tid": tid}})
def arr(src, path, dtype, shape):
    return msgpack.packb({"source": src, "content": "array", "path": path, "dtype": dtype, "shape": shape})
frames = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
answers = [
    [b"\xc1\x00", b"\x80"],                                                    # bad msgpack
    [head("DET", 1), msgpack.packb({}), arr("DET", "image.data", "uint16", [2, 3, 4]), frames.tobytes()[:-2]],  # short array
    [head("DET", 2), msgpack.packb({}), arr("DET", "image.data", "uint16", [2**62, 2**62])],  # odd parts
    [head("DET", 3), msgpack.packb({}), arr("DET", "image.data", "uint16", [2**62, 2**62]), b""],  # overflowing shape
    [head("DET", 4), msgpack.packb({"pulseCount": 2, "energy": 9.5, "name": "agipd"}),
     arr("DET", "image.data", "uint16", [2, 3, 4]), frames.tobytes()],
]
for parts in answers:
    sock.recv()
    sock.send_multipart(parts)
"#;
    let server = common::python_command()
        .args(["-c", script, &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _server = Guard(server);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut client = Client::connect(&endpoint, Pattern::Rep, Duration::from_secs(20)).unwrap();
    let train = client.next_train().unwrap().expect("the good train");
    assert_eq!(client.skipped_trains, 4);
    assert_eq!(train.id, 4);
    assert_eq!(train.get::<i64>(Key::new("DET/pulseCount")), Some(2));
    assert_eq!(train.get::<f64>(Key::new("DET/energy")), Some(9.5));
    assert_eq!(client.skipped_values, 1, "the string has no shotflow type");
    let frames = train.array::<u16>(Key::new("DET/image.data")).unwrap();
    assert_eq!(frames.shape(), &[2, 3, 4]);
    assert_eq!(
        frames.iter().copied().collect::<Vec<_>>(),
        (0..24).collect::<Vec<u16>>()
    );
    // The server has nothing more: the client says so instead of hanging.
    let mut client = Client::connect(&endpoint, Pattern::Rep, Duration::from_secs(1)).unwrap();
    assert!(client.next_train().unwrap().is_none());
}

#[test]
fn a_live_stream_recorded_with_shotflow_record_replays_as_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r0001");
    simulate(&run_dir);
    let (endpoint, server) = serve(&run_dir, 20);
    let _server = Guard(server);
    let recording_dir = dir.path().join("live.sfrec");
    let record = common::spawn(
        SHOTFLOW,
        &[
            "record".into(),
            endpoint,
            recording_dir.display().to_string(),
            "--timeout".into(),
            "3".into(),
            "--connections".into(),
            "2".into(),
        ],
    );
    let out = common::wait_bounded(record, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recording = Arc::new(shotflow::recording::Recording::open(&recording_dir).unwrap());
    let want = read_run(&run_dir);
    for workers in [1, 3] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&seen);
        let r = Arc::clone(&recording);
        execute_plan(&Plan::Process { workers }, move |worker| {
            let (out, r) = (Arc::clone(&out), Arc::clone(&r));
            worker.dataflow(|scope| {
                use shotflow::recording::{Pace, ReplaySource};
                scope
                    .replay(r, Pace::AsFastAsPossible)
                    .ordered("Collect", move |_, events: &[Event]| {
                        out.lock().unwrap().extend_from_slice(events)
                    });
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        assert_same_trains(&seen.lock().unwrap(), &want);
    }
}

/// Paced `serve` (10 Hz by train id) never sleeps across a jump in train ids: a gap of 10⁷
/// trains (11 days at 10 Hz) costs one train interval and a warning, and every train arrives.
#[test]
fn paced_serve_skips_a_huge_gap_in_train_ids_with_a_warning() {
    use shotflow::recording::Recorder;
    use shotflow::sink::Sink;
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("rec");
    let ids = [1000u64, 1001, 1002, 10_001_002, 10_001_003, 10_001_004];
    let x = Key::new("SA1_XTD2_XGM/DOOCS/MAIN/pulseEnergy.photonFlux");
    let mut recorder = Recorder::new(&recording, 0, 1).unwrap();
    for (batch, &id) in ids.iter().enumerate() {
        let mut rows = vec![Event::new(id).with(x, id as f64 * 0.5)];
        recorder.write(batch as u64, &mut rows).unwrap();
    }
    recorder.finish().unwrap();
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let server = common::spawn(
        SHOTFLOW,
        &[
            "serve".into(),
            recording.display().to_string(),
            "--bind".into(),
            endpoint.clone(),
            "--speed".into(),
            "1x".into(),
            "--client-timeout".into(),
            "5".into(),
        ],
    );
    let mut client = Client::connect(&endpoint, Pattern::Rep, Duration::from_secs(5)).unwrap();
    let mut got = Vec::new();
    let mut waited = Duration::ZERO;
    while let Some(train) = client.next_train().unwrap() {
        assert_eq!(train.get_f64(x), Some(train.id as f64 * 0.5));
        got.push(train.id);
        waited = started.elapsed();
    }
    let out = common::wait_bounded(server, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(got, ids);
    assert!(
        stderr.contains("train 10001002 follows train 1002 after a gap of 10000000 trains"),
        "{stderr}"
    );
    // Six trains at 10 Hz, the gap as one interval: well under a second of pacing (the
    // bound only rules out sleeping across the gap).
    assert!(waited < Duration::from_secs(15), "served in {waited:?}");
    eprintln!(
        "{} trains served across a gap of 10⁷ trains in {waited:?}",
        got.len()
    );
}
