//! karabo-bridge against the reference Python implementation (karabo-bridge-py from PyPI):
//! its file server feeding our client, our server feeding its client, and its simulator.

mod common;

use common::python;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shotflow::bridge::client::{BridgeSource, ClientConfig};
use shotflow::bridge::Pattern;
use shotflow::event::Event;
use shotflow::runtime::{execute_plan, Plan};
use shotflow::sink::SinkExt;
use shotflow::source::exdf::{ExdfRun, Selector};

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

#[test]
fn our_client_reads_karabo_bridge_serve_files_like_extra_data() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r0001");
    simulate(&run_dir);
    let port = free_port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let _server = Guard(
        Command::new(python())
            .args(["-c", "import sys; from extra_data.cli.serve_files import main; sys.argv[0] = \"karabo-bridge-serve-files\"; sys.exit(main())"])
            .arg(&run_dir)
            .arg(&endpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("karabo-bridge (pip install karabo-bridge)"),
    );
    let events = receive(&endpoint, Pattern::Rep, 12);
    assert_eq!(events.len(), 12);
    // The same trains through our EXDF reader (itself checked against extra-data).
    let run = ExdfRun::open(&run_dir).unwrap();
    let selected = run.select(&[Selector::parse("*").unwrap()]).unwrap();
    let mut open = |i: usize, name: &str| {
        Ok(hdf5::File::open(&run.files[i].path)
            .unwrap()
            .dataset(name)
            .unwrap())
    };
    let want = run.read(&run.trains, &selected, &mut open).unwrap();
    let mut compared = 0;
    for (got, want) in events.iter().zip(&want) {
        assert_eq!(got.id, want.id);
        for (key, value) in want.fields() {
            let Some(received) = got.value(*key) else {
                panic!("train {}: {key} not received", want.id)
            };
            // The bridge sends a train-resolved source's single row without its row axis, and
            // Python ints as int64.
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
        let out = Command::new(python())
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
        Command::new(python())
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
