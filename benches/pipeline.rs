//! Engine overhead: synthetic source → map → filter → exchange → callback sink, small events
//! (three scalars, no frame), at 1 and 2 workers.
//!
//! ```text
//! cargo bench --bench pipeline            # default: 10 M events per run
//! cargo bench --bench pipeline -- 2000000 # fewer events
//! ```
//!
//! Then the cost of watching: the same runs with metrics on (every worker's timely log kept,
//! the metrics dataflow sending snapshots to process 0, the `/metrics` server listening, the
//! graph written at the end: `--metrics ADDR --graph F`), interleaved with runs without, nine
//! of each, every run in a fresh process (runs in one process inherit each other's allocator
//! and thread state, which biased the comparison by several per cent); medians compared. On a
//! noisy machine, count instructions instead: `valgrind --tool=callgrind
//! --callgrind-out-file=/dev/null BENCH --one on|off EVENTS WORKERS` (README, "Seeing a run").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shotflow::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::Exchange;

/// Interleaved runs with and without metrics: the machine's own noise (a few per cent between
/// runs here) needs many to see a small difference.
const ROUNDS: usize = 9;

fn run(events: u64, workers: u16) -> (f64, u64) {
    run_with(events, Launch::threads(workers))
}

fn run_with(events: u64, launch: Launch) -> (f64, u64) {
    let config = Synthetic {
        events,
        batch_size: 4096,
        frame: None,
        ..Synthetic::default()
    };
    let keys = config.keys();
    let kept = Arc::new(AtomicU64::new(0));
    let k = Arc::clone(&kept);
    let started = Instant::now();
    execute(&launch, move |worker| {
        let k = Arc::clone(&k);
        worker.dataflow(|scope| {
            scope
                .synthetic(&config)
                .map(move |mut e| {
                    let normalised = e.get_f64(keys.delay).unwrap_or(0.0)
                        / e.get_f64(keys.pulse_energy).unwrap_or(1.0);
                    e.set(keys.delay, normalised);
                    e
                })
                .filter(move |e| e.get::<bool>(keys.laser_on) == Some(true))
                .exchange(|e| e.id)
                .for_each_batch("Count", move |_, rows| {
                    k.fetch_add(rows.len() as u64, Ordering::Relaxed);
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .expect("benchmark run");
    let seconds = started.elapsed().as_secs_f64();
    (events as f64 / seconds, kept.load(Ordering::Relaxed))
}

/// The launch with metrics on: every logger, the snapshots, the `/metrics` server, the graph.
fn monitored(workers: u16, graph: &std::path::Path) -> Launch {
    Launch {
        graph: Some(graph.to_path_buf()),
        metrics: Some("127.0.0.1:0".parse().expect("an address")),
        ..Launch::threads(workers)
    }
}

/// `--one on|off EVENTS WORKERS`: one run in this process, its rate printed (the overhead
/// comparison runs each in a fresh process, so that neither inherits the other's state).
fn one(args: &[String]) {
    let on = args[0] == "on";
    let events: u64 = args[1].parse().expect("events");
    let workers: u16 = args[2].parse().expect("workers");
    let graph = std::env::temp_dir().join(format!("shotflow-bench-{}.dot", std::process::id()));
    run(events / 10, workers); // warm-up
    let rate = if on {
        run_with(events, monitored(workers, &graph)).0
    } else {
        run(events, workers).0
    };
    let _ = std::fs::remove_file(graph);
    println!("{rate}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    shotflow::runtime::keep_freed_memory();
    if let Some(at) = args.iter().position(|a| a == "--one") {
        return one(&args[at + 1..]);
    }
    let events: u64 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    println!("synthetic → map → filter → exchange → callback, {events} small events, batch 4096");
    println!("{:>8} {:>14} {:>12}", "workers", "events/s", "kept");
    for workers in [1u16, 2] {
        run(events / 10, workers); // warm-up: page in the allocator's arenas
        let (rate, kept) = run(events, workers);
        assert_eq!(kept, events / 2, "every other shot has the laser on");
        println!("{workers:>8} {rate:>14.3e} {kept:>12}");
    }
    println!(
        "\nwith metrics on (--metrics 127.0.0.1:0 --graph F: every logger, snapshots, server), \
         each run in a fresh process, interleaved, {ROUNDS} runs each"
    );
    println!(
        "{:>8} {:>14} {:>14} {:>10}",
        "workers", "off (median)", "on (median)", "on/off"
    );
    let me = std::env::current_exe().expect("the bench's path");
    let rate = |mode: &str, workers: u16| -> f64 {
        let out = std::process::Command::new(&me)
            .args(["--one", mode, &events.to_string(), &workers.to_string()])
            .output()
            .expect("a run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a rate")
    };
    for workers in [1u16, 2] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            off.push(rate("off", workers));
            on.push(rate("on", workers));
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (off, on) = (median(&mut off), median(&mut on));
        println!("{workers:>8} {off:>14.3e} {on:>14.3e} {:>10.3}", on / off);
    }
}
