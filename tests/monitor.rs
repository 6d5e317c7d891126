//! Seeing a run: the end-of-run figures of every worker of every process, the progress log
//! lines, Prometheus metrics read by the official client's parser, the dataflow graph as SVG,
//! the figures kept in the smalldata master (read by h5py), and the live dashboard in real
//! headless Chromium.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{cluster_args, spawn, wait_bounded};

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");

/// A free loopback port (bound and released; the run binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Waits (at most 30 s) until the run's server answers `/api/state`.
fn wait_for_server(port: u16) -> serde_json::Value {
    let started = Instant::now();
    loop {
        if let Some((200, body)) = get(port, "/api/state") {
            return serde_json::from_str(&body).expect("JSON state");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no server on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn demo_args(events: u64, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "demo",
        "--source",
        "synthetic",
        "--events",
        &events.to_string(),
        "--batch-size",
        "100",
        "--frame",
        "64x32",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `(worker, process, events)` of each "worker … sources produced" line of the report.
fn reported_workers(stderr: &str) -> Vec<(usize, usize, u64)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("worker ")?;
            let mut words = rest.split_whitespace();
            let worker = words.next()?.parse().ok()?;
            let process = words.nth(1)?.trim_end_matches(')').parse().ok()?;
            let events = rest.split("sources produced ").nth(1)?;
            let events = events.split(' ').next()?.parse().ok()?;
            Some((worker, process, events))
        })
        .collect()
}

/// Every worker of every process reaches process 0's report, with the events its sources
/// produced: they add up to the run's, at 1, 2 and 3 workers and with 2 processes. The figures
/// kept in the smalldata master (read by h5py) agree.
#[test]
fn every_worker_of_every_process_reaches_the_report_and_the_output() {
    let events = 3000u64;
    let dir = tempfile::tempdir().unwrap();
    let check = |label: &str, stderr: &str, output: &std::path::Path, peers: &[(usize, usize)]| {
        let workers = reported_workers(stderr);
        let seen: Vec<(usize, usize)> = workers.iter().map(|(w, p, _)| (*w, *p)).collect();
        assert_eq!(seen, peers, "{label}: {stderr}");
        let total: u64 = workers.iter().map(|w| w.2).sum();
        assert_eq!(total, events, "{label}: {stderr}");
        // Each worker made its own batches of 100: worker w of n owns batches w, w + n, ...
        let n = peers.len() as u64;
        for (w, _, e) in &workers {
            let batches = (events / 100).saturating_sub(*w as u64).div_ceil(n);
            assert_eq!(*e, batches * 100, "{label}: worker {w}");
        }
        // The master keeps the same figures beside its loss accounting.
        let script = format!(
            "import h5py, json; f = h5py.File({:?}); r = f['shotflow/report']; \
             print(json.dumps({{'workers': r['worker'][:].tolist(), \
             'process': r['worker_process'][:].tolist(), \
             'events': r['worker_events'][:].tolist(), \
             'operators': [o.decode() for o in r['operator'][:]], \
             'written': int(r.attrs['bytes_written']), \
             'rows': int(f['shotflow'].attrs['committed_events'])}}))",
            output.display().to_string()
        );
        let out = common::python_command()
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{label}: h5py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kept: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The master holds what process 0 knew at its last commit: its own worker's figures
        // are final, another worker's are its last snapshot (sent when its sources ended).
        let in_file: Vec<u64> = serde_json::from_value(kept["events"].clone()).unwrap();
        let listed: Vec<u64> = serde_json::from_value(kept["workers"].clone()).unwrap();
        assert_eq!(
            listed,
            (0..peers.len() as u64).collect::<Vec<_>>(),
            "{label}"
        );
        assert_eq!(in_file[0], workers[0].2, "{label}: master's worker_events");
        for (kept, reported) in in_file.iter().zip(&workers) {
            assert!(*kept <= reported.2, "{label}: {in_file:?}");
        }
        let operators = kept["operators"].as_array().unwrap();
        for name in ["Synthetic", "SmallDataWriter", "PumpProbe"] {
            assert!(
                operators.iter().any(|o| o == name),
                "{label}: {name} in {operators:?}"
            );
        }
        assert!(kept["written"].as_u64().unwrap() > 0, "{label}: {kept}");
        eprintln!(
            "{label}: {} workers compared ({events} events, {} rows in the output), {} operators \
             and worker events {in_file:?} in the master",
            workers.len(),
            kept["rows"],
            operators.len()
        );
    };
    for workers in [1usize, 2, 3] {
        let output = dir.path().join(format!("w{workers}.h5"));
        let mut args = demo_args(
            events,
            &["--workers", &workers.to_string(), "--no-progress"],
        );
        args.extend(["--output".into(), output.display().to_string()]);
        let out = wait_bounded(spawn(SHOTFLOW, &args), Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let peers: Vec<(usize, usize)> = (0..workers).map(|w| (w, 0)).collect();
        check(&format!("{workers} worker(s)"), &stderr, &output, &peers);
    }
    // Two processes of one worker: process 1's figures travel to process 0.
    let rendezvous = tempfile::tempdir().unwrap();
    let output = dir.path().join("p2.h5");
    let children: Vec<_> = (0..2)
        .map(|p| {
            let mut args = demo_args(events, &["--no-progress"]);
            args.extend(cluster_args(2, p, 1, rendezvous.path()));
            args.extend(["--output".into(), output.display().to_string()]);
            spawn(SHOTFLOW, &args)
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| wait_bounded(c, Duration::from_secs(120)))
        .collect();
    for out in &outs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stderr = String::from_utf8_lossy(&outs[0].stderr).to_string();
    check("2 processes", &stderr, &output, &[(0, 0), (1, 1)]);
    assert!(
        !String::from_utf8_lossy(&outs[1].stderr).contains("where the time went"),
        "only process 0 reports"
    );
}

/// Without a terminal, progress is a log line every --log-every seconds: the events advance,
/// never pass the run's total, and the total is the run's.
#[test]
fn progress_is_logged_when_stderr_is_not_a_terminal() {
    for workers in ["1", "2"] {
        let args = demo_args(
            4000,
            &[
                "--rate",
                "4000",
                "--log-every",
                "0.2",
                "--no-output",
                "--workers",
                workers,
            ],
        );
        let out = wait_bounded(spawn(SHOTFLOW, &args), Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let seen: Vec<(u64, u64)> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("shotflow: "))
            .filter_map(|l| {
                let (done, rest) = l.split_once(" / ")?;
                let total = rest.split(' ').next()?;
                Some((done.parse().ok()?, total.parse().ok()?))
            })
            .collect();
        assert!(seen.len() >= 3, "{workers} workers: {stderr}");
        assert!(seen.iter().all(|(_, total)| *total == 4000), "{stderr}");
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{stderr}");
        assert!(
            seen.iter().any(|(done, _)| *done > 0 && *done < 4000),
            "{stderr}"
        );
        eprintln!(
            "{workers} worker(s): {} progress lines compared, from {} to {} of 4000 events",
            seen.len(),
            seen[0].0,
            seen[seen.len() - 1].0
        );
        let quiet = wait_bounded(
            spawn(
                SHOTFLOW,
                &demo_args(
                    400,
                    &[
                        "--log-every",
                        "0.01",
                        "--no-output",
                        "--no-progress",
                        "--rate",
                        "2000",
                    ],
                ),
            ),
            Duration::from_secs(60),
        );
        assert!(!String::from_utf8_lossy(&quiet.stderr).contains(" / 400 events"));
    }
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), progress is indicatif's bar:
/// it fills, and ends at the run's total.
#[test]
fn progress_is_a_bar_on_a_terminal() {
    let args = demo_args(
        6000,
        &[
            "--rate",
            "4000",
            "--no-output",
            "--no-report",
            "--workers",
            "2",
        ],
    );
    let command = std::iter::once(SHOTFLOW.to_string())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ");
    let out = wait_bounded(
        spawn("script", &["-qec".into(), command, "/dev/null".into()]),
        Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    // Redraws are separated by carriage returns and cursor movements.
    let frames: Vec<&str> = text
        .split(['\r', '\n'])
        .filter(|f| f.contains(" events"))
        .collect();
    assert!(frames.len() >= 5, "{text}");
    assert!(
        frames.iter().any(|f| f.contains("[====")),
        "no bar drawn: {text}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.contains("6000 / 6000 events (100.0%)")),
        "the bar does not end at the total: {text}"
    );
    assert!(!text.contains("-0.000e0"), "{text}");
    eprintln!("{} redraws of the bar compared", frames.len());
}

/// `/metrics` during a paced run, read by the Prometheus Python client's parser: counters of
/// every worker, they only grow between two scrapes, they agree with the run's own state, and
/// every operator the dashboard lists has its busy time.
#[test]
fn metrics_are_prometheus_text_that_the_official_parser_reads() {
    let port = free_port();
    let args = demo_args(
        12000,
        &[
            "--rate",
            "4000",
            "--workers",
            "2",
            "--metrics",
            &format!("127.0.0.1:{port}"),
            "--no-output",
            "--no-progress",
        ],
    );
    let child = spawn(SHOTFLOW, &args);
    wait_for_server(port);
    let dir = tempfile::tempdir().unwrap();
    let scrape = |n: usize| -> serde_json::Value {
        let (status, body) = get(port, "/metrics").expect("a scrape");
        assert_eq!(status, 200);
        let path = dir.path().join(format!("metrics-{n}.txt"));
        std::fs::write(&path, body).unwrap();
        let out = common::python_command()
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/check_metrics.py"
            ))
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the parser refused it: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let sum = |m: &serde_json::Value, name: &str| -> f64 {
        m["samples"][name]
            .as_array()
            .unwrap_or_else(|| panic!("no {name}"))
            .iter()
            .map(|s| s[1].as_f64().unwrap())
            .sum()
    };
    std::thread::sleep(Duration::from_millis(800));
    let first = scrape(1);
    std::thread::sleep(Duration::from_millis(700));
    let (_, state) = get(port, "/api/state").unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let second = scrape(2);
    let output = wait_bounded(child, Duration::from_secs(120));
    assert!(output.status.success());

    assert_eq!(first["types"]["shotflow_source_events"], "counter");
    assert_eq!(first["types"]["shotflow_operator_busy_seconds"], "counter");
    assert_eq!(sum(&first, "shotflow_workers"), 2.0);
    assert_eq!(sum(&first, "shotflow_expected_events"), 12000.0);
    let workers: Vec<String> = second["samples"]["shotflow_source_events_total"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0]["worker"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(workers, ["0", "1"]);
    let (a, b) = (
        sum(&first, "shotflow_source_events_total"),
        sum(&second, "shotflow_source_events_total"),
    );
    let api = state["progress"]["events"].as_f64().unwrap();
    assert!(
        a > 0.0 && a <= api && api <= b && b < 12000.0,
        "{a} {api} {b}"
    );
    for name in [
        "shotflow_operator_busy_seconds_total",
        "shotflow_operator_records_out_total",
        "shotflow_source_batches_total",
    ] {
        assert!(sum(&second, name) >= sum(&first, name), "{name} went back");
    }
    // Every operator of the state has a busy time per worker.
    let operators: Vec<String> = state["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    let busy = second["samples"]["shotflow_operator_busy_seconds_total"]
        .as_array()
        .unwrap();
    for name in &operators {
        let per_worker = busy.iter().filter(|s| s[0]["operator"] == *name).count();
        assert!(per_worker >= 2, "{name}: {per_worker}");
    }
    // The source's records out are the events it produced.
    let synthetic_out: f64 = second["samples"]["shotflow_operator_records_out_total"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[0]["operator"] == "Synthetic")
        .map(|s| s[1].as_f64().unwrap())
        .sum();
    assert!(synthetic_out <= b && synthetic_out >= a, "{synthetic_out}");
    // Every metric the shipped Grafana dashboard charts is one the run serves.
    let grafana: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/grafana/shotflow.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut charted = 0;
    for panel in grafana["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("shotflow_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let family = name.trim_end_matches("_total");
                assert!(
                    second["types"].get(family).is_some(),
                    "Grafana charts {name}, which /metrics does not serve"
                );
                charted += 1;
            }
        }
    }
    assert!(charted >= 10);
    eprintln!(
        "2 scrapes of {} sample names compared: {a} then {b} events (the state said {api}), {} operators",
        second["samples"].as_object().unwrap().len(),
        operators.len()
    );
}

/// `--graph x.svg` draws the run's dataflow as SVG (well-formed XML, read by Python's parser)
/// with its sources, operators and sinks; `--graph x.dot` stays DOT.
#[test]
fn the_graph_is_drawn_as_svg() {
    let dir = tempfile::tempdir().unwrap();
    for workers in ["1", "3"] {
        let svg = dir.path().join(format!("graph-{workers}.svg"));
        let args = demo_args(
            600,
            &[
                "--no-output",
                "--workers",
                workers,
                "--graph",
                svg.to_str().unwrap(),
            ],
        );
        let out = wait_bounded(spawn(SHOTFLOW, &args), Duration::from_secs(60));
        assert!(out.status.success());
        let script = format!(
            "import xml.etree.ElementTree as E; t = E.parse({:?}); \
             print(len([e for e in t.iter() if e.tag.endswith('rect')]))",
            svg.display().to_string()
        );
        let parsed = common::python_command()
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            parsed.status.success(),
            "{}",
            String::from_utf8_lossy(&parsed.stderr)
        );
        let boxes: usize = String::from_utf8_lossy(&parsed.stdout)
            .trim()
            .parse()
            .unwrap();
        // The same run's DOT: one box per operator node.
        let dot = dir.path().join(format!("graph-{workers}.dot"));
        let mut args = args.clone();
        let at = args.len() - 1;
        args[at] = dot.display().to_string();
        let again = wait_bounded(spawn(SHOTFLOW, &args), Duration::from_secs(60));
        assert!(again.status.success());
        let nodes = std::fs::read_to_string(&dot)
            .unwrap()
            .lines()
            .filter(|l| l.contains("[label=") && l.contains("busy"))
            .count();
        let text = std::fs::read_to_string(&svg).unwrap();
        for name in ["Synthetic", "PumpProbe", "Produced", "Filter"] {
            assert!(text.contains(name), "{name} not drawn");
        }
        assert!(!text.contains("MetricsSend") && !text.contains("StopBroadcast"));
        assert_eq!(boxes, nodes, "one box per operator");
        assert!(nodes >= 9, "{nodes} operators");
        eprintln!(
            "{workers} worker(s): {boxes} operator boxes in the SVG, {nodes} nodes in the DOT"
        );
    }
}

/// An address the dashboard cannot listen on stops the run before it starts, naming it.
#[test]
fn a_dashboard_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = wait_bounded(
        spawn(
            SHOTFLOW,
            &demo_args(100, &["--no-output", "--dashboard", &addr]),
        ),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("--dashboard {addr}")) && stderr.contains("cannot listen"),
        "{stderr}"
    );
    let bad = wait_bounded(
        spawn(
            SHOTFLOW,
            &demo_args(100, &["--no-output", "--log-every", "0"]),
        ),
        Duration::from_secs(60),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a positive number of seconds"));
}

/// The dashboard in real headless Chromium during a paced run of 2 workers: no console error,
/// the graph drawn, the numbers advancing with the run's data, the demo's plots shown; the
/// screenshot is left at target/dashboard.png.
#[test]
fn the_dashboard_works_in_headless_chromium() {
    let port = free_port();
    let args = demo_args(
        40000,
        &[
            "--rate",
            "4000",
            "--workers",
            "2",
            "--dashboard",
            &format!("127.0.0.1:{port}"),
            "--no-output",
            "--no-progress",
        ],
    );
    let child = spawn(SHOTFLOW, &args);
    wait_for_server(port);
    let screenshot = concat!(env!("CARGO_MANIFEST_DIR"), "/target/dashboard.png");
    let check = common::python_command()
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/check_dashboard.py"
        ))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(screenshot)
        .output()
        .unwrap();
    let output = wait_bounded(child, Duration::from_secs(120));
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(output.status.success());
    let seen: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(seen["workers"], 2);
    assert!(seen["events_second"].as_u64() > seen["events_first"].as_u64());
    assert!(std::fs::metadata(screenshot).unwrap().len() > 10_000);
    eprintln!("dashboard in Chromium: {seen}");
}
