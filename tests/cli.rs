//! The `shotflow` command line as a shell user meets it.

use std::process::{Command, Stdio};

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");

/// Regression: `shotflow inspect FILE | head -1` panicked on the closed pipe (exit 101). A
/// reader that goes away now ends every printing command quietly.
#[test]
fn a_closed_pipe_ends_printing_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r0001");
    let simulated = Command::new(SHOTFLOW)
        .args([
            "simulate",
            run.to_str().unwrap(),
            "--trains",
            "4",
            "--frames",
            "2",
        ])
        .output()
        .unwrap();
    assert!(simulated.status.success(), "{simulated:?}");
    let cases: [&[&str]; 2] = [
        &["inspect", run.to_str().unwrap()],
        &[
            "demo",
            "--source",
            "synthetic",
            "--events",
            "200",
            "--frame",
            "none",
            "--no-output",
        ],
    ];
    for args in cases {
        let mut child = Command::new(SHOTFLOW)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader leaves before the first line: every write meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `demo --frame none` makes an empty azimuthal profile per shot: a key with a zero-length
/// axis, which HDF5 stores (zero-sized dimensions are allowed, zero-sized chunks are not).
/// `inspect` then names segment files that have gone missing and exits non-zero.
#[test]
fn a_zero_length_axis_is_written_and_inspect_names_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("none.h5");
    let out = Command::new(SHOTFLOW)
        .args([
            "demo",
            "--source",
            "synthetic",
            "--frame",
            "none",
            "--events",
            "3000",
        ])
        .arg("--output")
        .arg(&output)
        .arg("--plot")
        .arg(dir.path().join("none.png"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = hdf5::File::open(&output).unwrap();
    let rows = file.dataset("timestamp").unwrap().shape()[0];
    assert!(rows > 2000, "{rows} shots kept of 3000");
    assert_eq!(file.dataset("azav").unwrap().shape(), vec![rows, 0]);
    assert_eq!(
        file.dataset("photons").unwrap().read_raw::<u64>().unwrap(),
        vec![0; rows],
        "no frame, no photons"
    );
    drop(file);

    let inspect = || {
        Command::new(SHOTFLOW)
            .arg("inspect")
            .arg(&output)
            .output()
            .unwrap()
    };
    assert!(inspect().status.success());
    let segments: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".seg-"))
        .collect();
    assert_eq!(segments.len(), 1);
    std::fs::remove_file(&segments[0]).unwrap();
    let out = inspect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let name = segments[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        stderr.contains("1 file(s) it maps are missing") && stderr.contains(&name),
        "{stderr}"
    );
}

/// `--graph`: the demo's dataflow drawn from timely's own log. Every operator appears by the
/// name its code gave it; the records on the channels into the sinks are the events the demo
/// reports; the channels that route rows to worker 0 are marked as exchanges (dashed) once
/// records cross workers, and not with one worker.
#[test]
fn the_dataflow_graph_is_drawn_from_timelys_log() {
    let dir = tempfile::tempdir().unwrap();
    for workers in ["1", "2"] {
        let graph = dir.path().join(format!("demo{workers}.dot"));
        let out = Command::new(SHOTFLOW)
            .args([
                "demo",
                "--trains",
                "12",
                "--pulses",
                "6",
                "--frame",
                "64x32",
                "--modules",
                "2",
                "--photons",
                "40",
                "--json",
                "--no-output",
                "--workers",
                workers,
                "--graph",
            ])
            .arg(&graph)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (events, kept) = (
            json["events"].as_u64().unwrap(),
            json["kept"].as_u64().unwrap(),
        );
        let dot = std::fs::read_to_string(&graph).unwrap();
        // node id → label's first line
        let names: std::collections::HashMap<String, String> = dot
            .lines()
            .filter_map(|l| {
                let (id, rest) = l.trim().split_once(" [label=\"")?;
                Some((id.to_string(), rest.split("\\n").next()?.to_string()))
            })
            .collect();
        for name in ["Exdf", "Produced", "PumpProbe"] {
            assert!(names.values().any(|n| n == name), "{name} missing: {dot}");
        }
        let into = |name: &str| -> (u64, bool) {
            let line = dot
                .lines()
                .find(|l| {
                    l.contains("->")
                        && names
                            .get(
                                l.split("->")
                                    .nth(1)
                                    .unwrap()
                                    .trim()
                                    .split(' ')
                                    .next()
                                    .unwrap(),
                            )
                            .is_some_and(|n| n == name)
                })
                .unwrap_or_else(|| panic!("no channel into {name}: {dot}"));
            let records = line
                .split("label=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (records.parse().unwrap(), line.contains("dashed"))
        };
        assert_eq!(
            into("Produced"),
            (events, workers == "2"),
            "{workers} workers: {dot}"
        );
        assert_eq!(
            into("PumpProbe"),
            (kept, workers == "2"),
            "{workers} workers: {dot}"
        );
        eprintln!("--graph, {workers} worker(s): {} operators, channels into the sinks carry {events} and {kept} records", names.len());
    }
}

/// The end-of-run report: printed by default on standard error, with the demo's operators and
/// each worker's source records (trains read, which add up to the run's); `--no-report`
/// leaves it out.
#[test]
fn the_end_of_run_report_says_where_the_time_went() {
    let run = |extra: &[&str]| {
        let out = Command::new(SHOTFLOW)
            .args([
                "demo",
                "--trains",
                "12",
                "--pulses",
                "6",
                "--frame",
                "64x32",
                "--modules",
                "2",
                "--photons",
                "40",
                "--json",
                "--no-output",
                "--workers",
                "2",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let stderr = run(&[]);
    assert!(
        stderr.contains("where the time went (2 of 2 worker(s)"),
        "{stderr}"
    );
    for name in ["Exdf", "PumpProbe", "Produced"] {
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    let produced: u64 = stderr
        .lines()
        .filter_map(|l| l.split("sources produced ").nth(1))
        .map(|r| r.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(produced, 12, "12 trains read over both workers: {stderr}");
    // The frames alone: 12 trains × 6 pulses × 2 modules × 64×32 u16; the scalars and pulse
    // ids selected beside them add a few per cent.
    let frames = 12 * 6 * 2 * 64 * 32 * 2;
    let read: u64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("bytes read "))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bytes read: {stderr}"));
    assert!(
        read >= frames && read <= frames * 11 / 10,
        "{read} bytes read, {frames} of frames: {stderr}"
    );
    assert!(stderr.contains("dropped or skipped: none"), "{stderr}");
    assert!(!run(&["--no-report"]).contains("where the time went"));
}
