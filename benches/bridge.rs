//! karabo-bridge throughput: trains/s and GB/s of AGIPD-sized trains from a server to our
//! client (1 and 2 connections) and to a bare ZeroMQ receiver, for our server (`shotflow
//! serve`) and the reference Python file server (`karabo-bridge-serve-files`), on the same
//! simulated run in the same run of the bench, beside what plain TCP moves on loopback.
//!
//! ```text
//! cargo bench --bench bridge
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shotflow::bridge::client::Client;
use shotflow::bridge::Pattern;
use shotflow::event::Value;
use shotflow::exdf::simulate::Simulation;

// As the `shotflow` binary: the client allocates every array it decodes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn receive(endpoint: &str, trains: u64, connections: usize) -> (f64, f64) {
    let mut client =
        Client::connect_parallel(endpoint, Pattern::Rep, Duration::from_secs(60), connections)
            .unwrap()
            .limit(Some(trains));
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

/// The server alone: a plain ZeroMQ REQ socket that receives the parts and decodes nothing.
fn receive_raw(endpoint: &str, trains: u64) -> (f64, f64) {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::REQ).unwrap();
    socket.set_rcvtimeo(60_000).unwrap();
    socket.connect(endpoint).unwrap();
    let train = || {
        socket.send("next", 0).unwrap();
        let mut bytes = 0;
        loop {
            let part = socket.recv_msg(0).unwrap();
            bytes += part.len();
            if !part.get_more() {
                return bytes;
            }
        }
    };
    train();
    let (mut bytes, started) = (0usize, Instant::now());
    for _ in 1..trains {
        bytes += train();
    }
    let seconds = started.elapsed().as_secs_f64();
    ((trains - 1) as f64 / seconds, bytes as f64 / seconds / 1e9)
}

/// What one and two plain TCP streams move on loopback here: the ceiling for any
/// karabo-bridge transfer between two processes on this machine.
fn loopback(streams: usize) -> f64 {
    use std::io::{Read, Write};
    let (bytes, per_stream) = (64usize << 20, 16);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let senders = std::thread::spawn(move || {
        let threads: Vec<_> = (0..streams)
            .map(|_| {
                let (mut c, _) = listener.accept().unwrap();
                std::thread::spawn(move || {
                    let buffer = vec![7u8; bytes];
                    for _ in 0..per_stream {
                        c.write_all(&buffer).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
    let started = Instant::now();
    let receivers: Vec<_> = (0..streams)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(address).unwrap();
            std::thread::spawn(move || {
                let (mut buffer, mut total) = (vec![0u8; 4 << 20], 0);
                while let Ok(n @ 1..) = s.read(&mut buffer) {
                    total += n;
                }
                total
            })
        })
        .collect();
    let total: usize = receivers.into_iter().map(|t| t.join().unwrap()).sum();
    senders.join().unwrap();
    total as f64 / started.elapsed().as_secs_f64() / 1e9
}

fn main() {
    shotflow::runtime::keep_freed_memory();
    let simulation = Simulation {
        // Long enough for the allocators to reach their steady state (the first ~50 trains
        // of a process land in fresh pages).
        trains: 128,
        modules: 4,
        frames: 64,
        ..Simulation::default()
    };
    let dir = std::env::temp_dir().join("shotflow-bench-bridge-run-128");
    if !dir.join("complete").exists() {
        simulation.write(&dir).unwrap();
        std::fs::write(dir.join("complete"), b"").unwrap();
    }
    let select = "SPB_DET_AGIPD1M-1/DET/*CH0:xtdf";
    println!(
        "karabo-bridge, REQ/REP on loopback, {} trains of 4 AGIPD modules × 64 frames (33.6 MB), read from the run's files",
        simulation.trains
    );
    println!(
        "{:<44} {:>6} {:>10} {:>8}",
        "server → shotflow client", "conns", "trains/s", "GB/s"
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut best = [0f64; 2];
    // connections 0: the raw receiver, to see the server without our client's decoding
    for connections in [0, 1, 2] {
        for (k, name) in ["shotflow serve", "karabo-bridge-serve-files (Python)"]
            .iter()
            .enumerate()
        {
            let endpoint = format!("tcp://127.0.0.1:{}", port());
            let mut command = if k == 0 {
                let mut c = Command::new(env!("CARGO_BIN_EXE_shotflow"));
                c.args(["serve", &dir.display().to_string(), "--bind", &endpoint])
                    .args(["--select", select, "--workers", "2"]);
                c
            } else {
                let mut c = Command::new(&python);
                c.args(["-c", "import sys; from extra_data.cli.serve_files import main; sys.argv[0] = 'karabo-bridge-serve-files'; sys.exit(main())"])
                    .arg(&dir)
                    .arg(&endpoint)
                    .args(["--source", "SPB_DET_AGIPD1M-1/DET/*"]);
                c
            };
            let _server = Guard(
                command
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            if connections == 0 {
                let (rate, gbs) = receive_raw(&endpoint, simulation.trains);
                println!("{name:<44} {:>6} {rate:>10.1} {gbs:>8.2}", "raw");
                continue;
            }
            let (rate, gbs) = receive(&endpoint, simulation.trains, connections);
            best[k] = best[k].max(gbs);
            println!("{name:<44} {connections:>6} {rate:>10.1} {gbs:>8.2}");
        }
    }
    println!("(raw: a bare ZeroMQ receiver that decodes nothing, to see the server alone)");
    println!(
        "best shotflow / best Python, through our client: {:.1}×",
        best[0] / best[1]
    );
    println!(
        "plain TCP on loopback (the ceiling): 1 stream {:.2} GB/s, 2 streams {:.2} GB/s",
        loopback(1),
        loopback(2)
    );
}
