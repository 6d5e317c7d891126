//! The smalldata HDF5 sink: events/s and MB/s into part files + master (page cache), with
//! 2 workers in one process, with the default single writer per process and with two.
//!
//! ```text
//! cargo bench --bench smalldata            # 1,000,000 × (f64, i64, 8×f32); 250,000 × 1024×f32
//! cargo bench --bench smalldata -- 0.1     # scale both event counts
//! cargo bench --bench smalldata -- small   # one workload (small | large)
//! cargo bench --bench smalldata -- commit=0.5 fsync   # commit every 0.5 s, with fsync
//! cargo bench --bench smalldata -- resume   # time to find the restart point of 10⁶ events
//! cargo bench --bench smalldata -- long     # a run of many commits, compacted and not
//! ```
//!
//! The default commit interval (5 s) is longer than most of these runs: they commit once, at
//! the end. `commit=0.5` shows the cost of commits during the run, `fsync` that of node-loss
//! safety.

use std::time::{Duration, Instant};

use shotflow::event::{Event, Key};
use shotflow::runtime::{execute, Launch};
use shotflow::smalldata::{Compaction, SmallData, SmallDataExt};
use shotflow::source::batched_source;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How the output commits.
#[derive(Clone, Copy)]
struct Commit {
    interval: Option<Duration>,
    fsync: bool,
}

fn run(
    name: &str,
    events: u64,
    floats: usize,
    scalars: bool,
    writers: usize,
    commit: Commit,
) -> (f64, f64) {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let path = dir.path().join(format!("{name}.h5"));
    let mut output = SmallData::new(&path).writers(writers).durable(commit.fsync);
    if let Some(interval) = commit.interval {
        output = output.commit_interval(interval);
    }
    let result = output.result();
    let batch = if floats > 64 { 256 } else { 8192 };
    let bytes_per_event = 8 + floats * 4 + if scalars { 16 } else { 0 };
    let started = Instant::now();
    execute(&Launch::threads(2), move |worker| {
        let output = output.clone();
        let (a, b, c) = (Key::new("a"), Key::new("b"), Key::new("c"));
        worker.dataflow(|scope| {
            batched_source(scope, "Bench", events.div_ceil(batch), move |n| {
                let range = n * batch..((n + 1) * batch).min(events);
                Ok::<_, std::convert::Infallible>(
                    range
                        .map(|i| {
                            let mut e = Event::with_capacity(i, 3);
                            if scalars {
                                e.set(a, i as f64 * 0.5);
                                e.set(b, i as i64);
                            }
                            e.set(c, vec![i as f32; floats]);
                            e
                        })
                        .collect(),
                )
            })
            .smalldata(output);
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(result.lock().unwrap().as_ref().unwrap().rows, events);
    (
        events as f64 / seconds,
        events as f64 * bytes_per_event as f64 / seconds / 1e6,
    )
}

/// A run of `events` small events stopped after 99 % of them, then the time `--resume` takes
/// to read its master and find the restart point.
fn resume(events: u64) {
    use shotflow::runtime::{request_stop, StopReason};
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let path = dir.path().join("resume.h5");
    let output = SmallData::new(&path).commit_interval(Duration::from_millis(100));
    let batch = 1024;
    let stop_at = events / 100 * 99;
    let _ = execute(&Launch::threads(2), move |worker| {
        let output = output.clone();
        let a = Key::new("a");
        worker.dataflow(|scope| {
            batched_source(scope, "Bench", events.div_ceil(batch), move |n| {
                if n * batch >= stop_at {
                    request_stop(StopReason::Requested);
                }
                let range = n * batch..((n + 1) * batch).min(events);
                Ok::<_, std::convert::Infallible>(
                    range.map(|i| Event::new(i).with(a, i as f64)).collect(),
                )
            })
            .smalldata(output);
        });
        Ok::<_, std::convert::Infallible>(())
    });
    let started = Instant::now();
    let start = SmallData::new(&path).resume(true).prepare(0).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "resume of a run of {events} events stopped at batch {start} of {}: restart point found in {:.1} ms",
        events.div_ceil(batch),
        seconds * 1e3
    );
}

/// A run of `events` small events in batches of 64, 2 writers, a commit every 0.1 s: many
/// commits and many small blocks, as a long run has at the default interval. What it leaves:
/// the files the master maps, the manifest's size, and what a reader pays to open the master
/// and read one dataset.
fn long(events: u64, policy: Compaction, label: &str) {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let path = dir.path().join("long.h5");
    let output = SmallData::new(&path)
        .writers(2)
        .commit_interval(Duration::from_millis(100))
        .compaction(policy);
    let result = output.result();
    let batch = 64;
    let started = Instant::now();
    execute(&Launch::threads(2), move |worker| {
        let output = output.clone();
        let a = Key::new("a");
        worker.dataflow(|scope| {
            batched_source(scope, "Bench", events.div_ceil(batch), move |n| {
                let range = n * batch..((n + 1) * batch).min(events);
                Ok::<_, std::convert::Infallible>(
                    range.map(|i| Event::new(i).with(a, i as f64)).collect(),
                )
            })
            .smalldata(output);
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let files = result.lock().unwrap().as_ref().unwrap().files.len();
    let read = Instant::now();
    let file = hdf5::File::open(&path).unwrap();
    let dataset = file.dataset("a").unwrap();
    let values = dataset.read_raw::<f64>().unwrap();
    let reader = read.elapsed().as_secs_f64();
    assert_eq!(values.len() as u64, events);
    let manifest = file.dataset("shotflow/manifest").unwrap().size();
    let meta = file.group("shotflow").unwrap();
    let attr = |name: &str| meta.attr(name).unwrap().read_scalar::<u64>().unwrap();
    println!(
        "{label:<12} {:>10.3e} {:>8} {:>12} {:>6} {:>11} {:>13.1}",
        events as f64 / seconds,
        attr("commits"),
        attr("compactions"),
        files,
        manifest,
        reader * 1e3
    );
}

fn main() {
    shotflow::runtime::keep_freed_memory();
    if std::env::args().any(|a| a == "long") {
        let scale: f64 = std::env::args()
            .skip(1)
            .find_map(|a| a.parse().ok())
            .unwrap_or(1.0);
        let events = (4_000_000.0 * scale) as u64;
        println!("{events} events (one f64) in batches of 64, 2 writers, commit every 0.1 s");
        println!(
            "{:<12} {:>10} {:>8} {:>12} {:>6} {:>11} {:>13}",
            "compaction",
            "events/s",
            "commits",
            "compactions",
            "files",
            "manifest B",
            "open+read ms"
        );
        let off = !std::env::args().any(|a| a == "default");
        let on = !std::env::args().any(|a| a == "off");
        for _round in 0..2 {
            if off {
                long(events, Compaction::OFF, "off");
            }
            if on {
                let mut policy = Compaction::default();
                if let Some(m) = std::env::args()
                    .find_map(|a| a.strip_prefix("mappings=").and_then(|s| s.parse().ok()))
                {
                    policy.mappings = m;
                }
                long(events, policy, "default");
            }
        }
        return;
    }
    let scale: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1.0);
    if std::env::args().any(|a| a == "resume") {
        resume(1_000_000);
        return;
    }
    let commit = Commit {
        interval: std::env::args()
            .find_map(|a| a.strip_prefix("commit=").and_then(|s| s.parse().ok()))
            .map(Duration::from_secs_f64),
        fsync: std::env::args().any(|a| a == "fsync"),
    };
    let small = (1_000_000.0 * scale) as u64;
    let large = (250_000.0 * scale) as u64;
    println!(
        "smalldata sink, 2 workers in 1 process, output in /tmp (page cache), commit every {:?}{}",
        commit
            .interval
            .unwrap_or(shotflow::smalldata::COMMIT_INTERVAL),
        if commit.fsync { ", fsync" } else { "" }
    );
    println!("Python baseline (tjlane/smalldata, issue 3): 2.2e5 events/s small, 370 MB/s large");
    println!(
        "{:<30} {:>8} {:>10} {:>12} {:>8} {:>9}",
        "workload", "writers", "events", "events/s", "MB/s", "× Python"
    );
    let only: Option<String> = std::env::args()
        .skip(1)
        .find(|a| a == "small" || a == "large");
    for writers in [1, 2] {
        if only.as_deref() != Some("large") {
            let (rate, mb) = run("small", small, 8, true, writers, commit);
            let label = "f64 + i64 + 8×f32 per event";
            println!(
                "{label:<30} {writers:>8} {small:>10} {rate:>12.3e} {mb:>8.0} {:>9.1}",
                rate / 2.2e5
            );
        }
        if only.as_deref() != Some("small") {
            let (rate, mb) = run("large", large, 1024, false, writers, commit);
            let label = "1024×f32 per event";
            println!(
                "{label:<30} {writers:>8} {large:>10} {rate:>12.3e} {mb:>8.0} {:>9.1}",
                mb / 370.0
            );
        }
    }
}
