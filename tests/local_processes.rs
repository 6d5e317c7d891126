//! `--processes N` without `--process`: this command starts the other processes itself, on
//! this host. Its results equal one process's; a signal to it reaches every process; a process
//! that dies ends the run with an error naming it; `--processes 0` is an error.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_same_datasets, one_process_demo, result_datasets, small_demo_args,
    small_demo_output_args, spawn, wait_bounded,
};

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");
const LIMIT: Duration = Duration::from_secs(240);

/// The pids of running processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // A zombie (exited, not reaped) has an empty command line.
            text.contains(needle).then_some(pid)
        })
        .collect()
}

#[test]
fn local_processes_give_what_one_process_gives() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.h5");
    let reference = one_process_demo(&one, LIMIT);
    let mut compared = 0;
    for (processes, workers) in [(2, 1), (3, 2)] {
        let master = dir.path().join(format!("p{processes}w{workers}.h5"));
        let args = small_demo_output_args(
            &master,
            &[
                "--processes",
                &processes.to_string(),
                "--workers",
                &workers.to_string(),
            ],
        );
        let out = wait_bounded(spawn(SHOTFLOW, &args), LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The curve is in the file, as the demo printed it.
        compared += common::assert_saved_curve(&master, &json);
        assert_eq!(
            json["plan"].as_str().unwrap(),
            format!(
                "{processes} processes × {workers} worker{} (local processes)",
                if workers == 1 { "" } else { "s" }
            )
        );
        // One writer per process.
        let prefix = format!("p{processes}w{workers}.seg-");
        let segments: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        for writer in 0..processes {
            let tag = format!("-w{writer}-");
            assert!(segments.iter().any(|n| n.contains(&tag)), "{segments:?}");
        }
        compared += assert_same_datasets(
            &result_datasets(&master),
            &reference,
            &format!("at {processes} processes"),
        );
        // The started processes are gone and their rendezvous directory with them.
        assert!(processes_with(&master.display().to_string()).is_empty());
    }
    eprintln!("{compared} datasets and saved curve values equal to one process's and the printed curve at 2 × 1 and 3 × 2");
}

#[test]
fn a_signal_to_the_first_process_stops_them_all_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("paced.h5");
    // About 12 s of shots at 100 per second: the signal comes long before the end.
    let args = small_demo_output_args(&master, &["--processes", "2", "--rate", "100"]);
    let child = spawn(SHOTFLOW, &args);
    let parent = child.id() as i32;
    let needle = master.display().to_string();
    let started = Instant::now();
    while processes_with(&needle).len() < 2 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(processes_with(&needle).len(), 2, "both processes run");
    unsafe { libc::kill(parent, libc::SIGTERM) };
    let out = wait_bounded(child, LIMIT);
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    while !processes_with(&needle).is_empty() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        processes_with(&needle).is_empty(),
        "the started process stopped too"
    );
    // What both committed resumes to the whole result.
    let resumed = wait_bounded(
        spawn(
            SHOTFLOW,
            &[args.clone(), vec!["--resume".to_string()]].concat(),
        ),
        LIMIT,
    );
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let whole = dir.path().join("whole.h5");
    let out = wait_bounded(
        spawn(
            SHOTFLOW,
            &small_demo_output_args(&whole, &["--rate", "100000"]),
        ),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = assert_same_datasets(
        &result_datasets(&master),
        &result_datasets(&whole),
        "after the resume",
    );
    eprintln!("stopped by SIGTERM, resumed: {n} datasets equal an uninterrupted run");
}

#[test]
fn a_started_process_that_dies_ends_the_run_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("dies.h5");
    let args = small_demo_output_args(&master, &["--processes", "2", "--rate", "100"]);
    let child = spawn(SHOTFLOW, &args);
    let needle = format!("{} --processes 2 --rate 100 --process 1 ", master.display());
    let started = Instant::now();
    let victim = loop {
        if let Some(pid) = processes_with(&needle).first() {
            break *pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "process 1 never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let out = wait_bounded(child, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("process 1 ended with signal: 9"),
        "{stderr}"
    );
    eprintln!(
        "killed process 1: the run ended with: {}",
        stderr.lines().last().unwrap_or("")
    );
}

#[test]
fn zero_processes_or_processes_under_a_launcher_are_errors() {
    let out = std::process::Command::new(SHOTFLOW)
        .args(small_demo_args())
        .args(["--processes", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--processes 0"),
        "{stderr}"
    );
    let out = std::process::Command::new(SHOTFLOW)
        .args(small_demo_args())
        .args(["--processes", "2"])
        .env("OMPI_COMM_WORLD_RANK", "0")
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("leave --processes out"),
        "{stderr}"
    );
}
