//! karabo-bridge throughput: trains/s and GB/s of AGIPD-sized trains from a server to our
//! client, for our server (`shotflow serve`) and the reference Python file server
//! (`karabo-bridge-serve-files`), on the same simulated run in the same run of the bench.
//!
//! ```text
//! cargo bench --bench bridge
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shotflow::bridge::client::Client;
use shotflow::bridge::Pattern;
use shotflow::event::Value;
use shotflow::source::exdf::simulate::Simulation;

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn receive(endpoint: &str, trains: u64) -> (f64, f64) {
    let mut client = Client::connect(endpoint, Pattern::Rep, Duration::from_secs(60)).unwrap();
    // the first train includes the server's start-up
    client.next_train().unwrap().expect("a first train");
    let (mut bytes, started) = (0usize, Instant::now());
    for _ in 1..trains {
        let event = client.next_train().unwrap().expect("a train");
        bytes += event
            .fields()
            .iter()
            .map(|(_, v)| match v {
                Value::Array(a) => a.len() * a.dtype().size(),
                v => v.dtype().size(),
            })
            .sum::<usize>();
    }
    let seconds = started.elapsed().as_secs_f64();
    ((trains - 1) as f64 / seconds, bytes as f64 / seconds / 1e9)
}

fn main() {
    let simulation = Simulation {
        trains: 32,
        modules: 4,
        frames: 64,
        ..Simulation::default()
    };
    let dir = std::env::temp_dir().join("shotflow-bench-bridge-run");
    if !dir.join("complete").exists() {
        simulation.write(&dir).unwrap();
        std::fs::write(dir.join("complete"), b"").unwrap();
    }
    let select = "SPB_DET_AGIPD1M-1/DET/*CH0:xtdf";
    println!(
        "karabo-bridge, REQ/REP on loopback, {} trains of 4 AGIPD modules × 64 frames (33.6 MB)",
        simulation.trains
    );
    println!(
        "{:<40} {:>10} {:>8}",
        "server → shotflow client", "trains/s", "GB/s"
    );

    let endpoint = format!("tcp://127.0.0.1:{}", port());
    let _ours = Guard(
        Command::new(env!("CARGO_BIN_EXE_shotflow"))
            .args([
                "serve",
                &dir.display().to_string(),
                "--bind",
                &endpoint,
                "--select",
                select,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (ours_rate, ours_gbs) = receive(&endpoint, simulation.trains);
    println!("{:<40} {ours_rate:>10.1} {ours_gbs:>8.2}", "shotflow serve");

    let endpoint = format!("tcp://127.0.0.1:{}", port());
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let _theirs = Guard(
        Command::new(python)
            .args(["-c", "import sys; from extra_data.cli.serve_files import main; sys.argv[0] = 'karabo-bridge-serve-files'; sys.exit(main())"])
            .arg(&dir)
            .arg(&endpoint)
            .args(["--source", "SPB_DET_AGIPD1M-1/DET/*"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (ref_rate, ref_gbs) = receive(&endpoint, simulation.trains);
    println!(
        "{:<40} {ref_rate:>10.1} {ref_gbs:>8.2}",
        "karabo-bridge-serve-files (Python)"
    );
    println!("ratio: {:.1}×", ours_gbs / ref_gbs);
}
