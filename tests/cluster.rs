//! Real processes on loopback: the `shotflow` binary and this test binary started several
//! times, checked against sequential references computed here; and a run under `mpirun`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::demo::{Curve, DelayPoint};
use common::{
    cluster_args, datasets, demo_reference, small_demo, small_demo_args, spawn, wait_bounded,
};
use shotflow::prelude::*;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::Exchange;

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");
const LIMIT: Duration = Duration::from_secs(120);

/// The events and the curve (kept rows, points) that `shotflow demo --json` printed.
fn curve_of(stdout: &[u8]) -> (u64, (u64, Vec<DelayPoint>)) {
    let json: serde_json::Value = serde_json::from_slice(stdout).expect("demo --json output");
    let points = serde_json::from_value::<Vec<DelayPoint>>(json["points"].clone()).unwrap();
    (
        json["events"].as_u64().unwrap(),
        (json["kept"].as_u64().unwrap(), points),
    )
}

/// A reference curve as `curve_of` reads one.
fn printed(curve: &Curve) -> (u64, Vec<DelayPoint>) {
    (curve.kept, curve.sorted())
}

#[test]
fn demo_on_two_processes_matches_sequential_reference() {
    let want = demo_reference(&small_demo());
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..2)
            .map(|p| {
                let mut args = small_demo_args();
                args.extend(cluster_args(2, p, workers, dir.path()));
                spawn(SHOTFLOW, &args)
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| wait_bounded(c, LIMIT))
            .collect();
        for out in &outputs {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (events, curve) = curve_of(&outputs[0].stdout);
        assert_eq!(events, 1203);
        assert_eq!(curve, printed(&want), "2 processes × {workers} workers");
        assert!(outputs[1].stdout.is_empty(), "only process 0 reports");
    }
}

/// Per delay: (count, max energy, sum of ids) of laser-on shots above 0.9 mJ.
type Reduced = BTreeMap<u64, (u64, f64, u64)>;

fn pipeline_config() -> Synthetic {
    Synthetic {
        events: 12_345,
        batch_size: 64,
        frame: None,
        ..Synthetic::default()
    }
}

/// The child side of `map_filter_reduce_on_two_processes`: one process of the cluster, which
/// prints its workers' partial results.
#[test]
#[ignore = "helper: started as a child process by map_filter_reduce_on_two_processes"]
fn cluster_child() {
    let process: usize = std::env::var("SHOTFLOW_TEST_PROCESS")
        .unwrap()
        .parse()
        .unwrap();
    let dir = std::env::var("SHOTFLOW_TEST_RENDEZVOUS").unwrap();
    let launch = Launch {
        processes: Some(2),
        process: Some(process),
        rendezvous: Some(dir.into()),
        ..Launch::threads(2)
    };
    let config = pipeline_config();
    let keys = config.keys();
    let parts = execute(&launch, move |worker| {
        let part = Arc::new(Mutex::new(Reduced::new()));
        let out = Arc::clone(&part);
        let config = config.clone();
        worker.dataflow(|scope| {
            scope
                .synthetic(&config)
                .filter(move |e| e.get::<bool>(keys.laser_on) == Some(true))
                .map(move |e| {
                    (
                        e.id,
                        e.get_f64(keys.delay).unwrap().to_bits(),
                        e.get_f64(keys.pulse_energy).unwrap(),
                    )
                })
                .filter(|r| r.2 > 0.9)
                .exchange(|r| r.1)
                .for_each_batch("Reduce", move |_, rows| {
                    let mut part = out.lock().unwrap();
                    for &(id, delay, energy) in rows {
                        let slot = part.entry(delay).or_insert((0, f64::MIN, 0));
                        slot.0 += 1;
                        slot.1 = slot.1.max(energy);
                        slot.2 += id;
                    }
                });
        });
        shotflow::runtime::run_to_completion(worker)?;
        let part = std::mem::take(&mut *part.lock().unwrap());
        Ok::<_, shotflow::runtime::Aborted>(part)
    })
    .unwrap();
    for part in parts {
        println!("PARTIAL {}", serde_json::to_string(&part).unwrap());
    }
}

#[test]
fn map_filter_reduce_on_two_processes() {
    let config = pipeline_config();
    let keys = config.keys();
    let mut want = Reduced::new();
    for i in 0..config.events {
        let e = config.event(i);
        let energy = e.get_f64(keys.pulse_energy).unwrap();
        if e.get::<bool>(keys.laser_on).unwrap() && energy > 0.9 {
            let slot = want
                .entry(e.get_f64(keys.delay).unwrap().to_bits())
                .or_insert((0, f64::MIN, 0));
            slot.0 += 1;
            slot.1 = slot.1.max(energy);
            slot.2 += e.id;
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            Command::new(&me)
                .args([
                    "cluster_child",
                    "--exact",
                    "--include-ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("SHOTFLOW_TEST_PROCESS", p.to_string())
                .env("SHOTFLOW_TEST_RENDEZVOUS", dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut got = Reduced::new();
    let mut partials = 0;
    for child in children {
        let out = wait_bounded(child, LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // The test harness may print its own "test ... " prefix on the same line.
            if let Some(json) = line.split_once("PARTIAL ").map(|(_, json)| json) {
                partials += 1;
                let part: Reduced = serde_json::from_str(json).unwrap();
                for (delay, (n, max, ids)) in part {
                    // Exchanged by delay: each delay lives on exactly one worker.
                    assert!(got.insert(delay, (n, max, ids)).is_none());
                }
            }
        }
    }
    assert_eq!(partials, 4, "2 processes × 2 workers");
    assert_eq!(got, want);
}

#[test]
fn a_failing_process_ends_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let children: Vec<_> = (0..2)
        .map(|p| {
            let mut args = small_demo_args();
            args.extend(cluster_args(2, p, 1, dir.path()));
            if p == 1 {
                // An event of a batch that process 1 owns (batch 13 of 50 events).
                args.extend([
                    "--fail-at".into(),
                    (1_000_000_000u64 + 13 * 50 + 7).to_string(),
                ]);
            }
            spawn(SHOTFLOW, &args)
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| wait_bounded(c, LIMIT))
        .collect();
    assert!(started.elapsed() < Duration::from_secs(60));
    let failing = String::from_utf8_lossy(&outputs[1].stderr);
    let other = String::from_utf8_lossy(&outputs[0].stderr);
    assert_eq!(outputs[1].status.code(), Some(1));
    assert!(
        failing.contains(
            "worker 1 (process 1) failed: panicked: injected failure at event 1000000657"
        ),
        "{failing}"
    );
    assert_eq!(outputs[0].status.code(), Some(1), "{other}");
    assert!(
        other.contains("lost the connection to another process"),
        "{other}"
    );
}

#[test]
fn a_missing_process_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = small_demo_args();
    args.extend(cluster_args(2, 0, 1, dir.path()));
    let n = args.len();
    args[n - 1] = "2".into(); // --connect-timeout 2
    let started = Instant::now();
    let out = wait_bounded(spawn(SHOTFLOW, &args), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("processes [1] did not connect"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn demo_under_mpirun_matches_sequential_reference() {
    // A missing reference fails the test (./run test installs Open MPI), never skips it.
    assert!(
        Command::new("mpirun").arg("--version").output().is_ok(),
        "mpirun is not installed: ./run test installs Open MPI (openmpi-bin)"
    );
    let want = demo_reference(&small_demo());
    let mut args: Vec<String> = [
        "--allow-run-as-root",
        "--oversubscribe",
        "-n",
        "2",
        SHOTFLOW,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(small_demo_args());
    let out = wait_bounded(spawn("mpirun", &args), LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (events, curve) = curve_of(&out.stdout);
    assert_eq!(events, 1203);
    assert_eq!(curve, printed(&want));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["plan"], "2 processes × 1 worker (Open MPI)");
}

#[test]
fn smalldata_from_two_processes_equals_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, cluster: Option<usize>| -> Vec<std::process::Output> {
        let master = dir.path().join(name);
        let children: Vec<_> = (0..cluster.unwrap_or(1))
            .map(|p| {
                let mut args: Vec<String> = small_demo_args()
                    .into_iter()
                    .filter(|a| a != "--no-output")
                    .collect();
                args.extend(["--output".to_string(), master.display().to_string()]);
                if let Some(n) = cluster {
                    args.extend(cluster_args(
                        n,
                        p,
                        2,
                        &dir.path().join(format!("rv-{name}")),
                    ));
                }
                spawn(SHOTFLOW, &args)
            })
            .collect();
        children
            .into_iter()
            .map(|c| wait_bounded(c, LIMIT))
            .collect()
    };
    for out in run("one.h5", None)
        .iter()
        .chain(run("two.h5", Some(2)).iter())
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // One writer per process: segments of writers 0 and 1, none of a third.
    let segments: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("two.seg-"))
        .collect();
    for writer in ["-w0-", "-w1-"] {
        assert!(segments.iter().any(|n| n.contains(writer)), "{segments:?}");
    }
    assert!(!segments.iter().any(|n| n.contains("-w2-")), "{segments:?}");
    let (one, two) = (
        datasets(&dir.path().join("one.h5")),
        datasets(&dir.path().join("two.h5")),
    );
    common::assert_same_datasets(&two, &one, "between 1 process and 2 processes");
    // and the values are the reference's: the kept shots' photons, in event order
    let config = small_demo();
    let photons: Vec<u64> = (0..config.source.events)
        .map(|i| common::demo::reduce(&config, &config.source.event(i)))
        .filter(|row| row.pulse_energy >= config.energy_cut)
        .map(|row| row.photons)
        .collect();
    let file = hdf5::File::open(dir.path().join("two.h5")).unwrap();
    assert_eq!(
        file.dataset("photons").unwrap().read_raw::<u64>().unwrap(),
        photons
    );
    let sum = file
        .dataset("summary/photons/sum")
        .unwrap()
        .read_scalar::<f64>()
        .unwrap();
    assert_eq!(sum, photons.iter().sum::<u64>() as f64);
}

#[test]
fn demo_reading_a_simulated_run_on_two_processes_matches_reference() {
    let want = common::run_reference(
        &common::small_run(),
        common::demo::DemoConfig::default().energy_cut,
    );
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            let mut args = common::small_run_args();
            args.extend(cluster_args(2, p, 1, dir.path()));
            spawn(SHOTFLOW, &args)
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| wait_bounded(c, LIMIT))
        .collect();
    for out in &outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (events, curve) = curve_of(&outputs[0].stdout);
    assert_eq!(events, 72);
    assert_eq!(curve, printed(&want));
}

/// `demo --source xtc2` on two processes (each simulates the same LCLS-II run into its own
/// directory) equals a plain loop over the run's events, as the event builder reads them.
#[test]
fn demo_reading_a_simulated_xtc2_run_on_two_processes_matches_reference() {
    use shotflow::xtc2::{EventBuilder, Xtc2Run, Xtc2Simulation};
    // What `demo --source xtc2 --trains 12 --pulses 6 --frame 64x32 --photons 40` simulates.
    let simulation = Xtc2Simulation {
        events: 72,
        events_per_step: 9,
        frame: [64, 32],
        segment: [64, 64],
        photons: 40.0,
        ..Default::default()
    };
    let run_dir = tempfile::tempdir().unwrap();
    simulation.write(run_dir.path()).unwrap();
    let run = std::sync::Arc::new(Xtc2Run::open(run_dir.path()).unwrap());
    let mut builder = EventBuilder::new(
        std::sync::Arc::clone(&run),
        std::sync::Arc::new(common::demo::xtc2_selectors()),
    );
    let mut want = Curve::default();
    for entry in &run.events {
        let row = common::demo::reduce_xtc2(&builder.build(entry).unwrap().event);
        if row.pulse_energy >= common::demo::DemoConfig::default().energy_cut {
            want.add(&row);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            let mut args: Vec<String> = [
                "demo",
                "--source",
                "xtc2",
                "--trains",
                "12",
                "--pulses",
                "6",
                "--frame",
                "64x32",
                "--photons",
                "40",
                "--json",
                "--no-output",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(cluster_args(2, p, 1, dir.path()));
            spawn(SHOTFLOW, &args)
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| wait_bounded(c, LIMIT))
        .collect();
    for out in &outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (events, curve) = curve_of(&outputs[0].stdout);
    assert_eq!(events, 72);
    assert_eq!(curve, printed(&want));
}
