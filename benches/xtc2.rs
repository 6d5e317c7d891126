//! XTC2 runs: event building from smd files of 2 and 4 streams, and Jungfrau-sized raw frames
//! delivered into the dataflow, each beside its reference measured in the same run.
//!
//! ```text
//! cargo bench --bench xtc2            # 1,000,000 events per stream; 2 GB of Jungfrau frames
//! cargo bench --bench xtc2 -- 0.1     # a tenth of both
//! ```
//!
//! * Event building: the smd files of 2 and 4 streams (76 bytes per event per stream) are
//!   scanned, merged by timestamp and indexed (`Xtc2Run::open`); then every event's (empty)
//!   big datagrams are read and decoded into events by the dataflow at 1 and 2 workers. psana2's
//!   SMD0 builds 1.3–1.5 × 10⁶ events/s (SLAC's figure), on one node only.
//! * Frames: a run of uint16 1×512×1024 Jungfrau frames, read by the dataflow at 1 and 2
//!   workers, beside a plain sequential read of the same big file (the page cache is warmed
//!   first, so both read memory).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shotflow::event::Value;
use shotflow::runtime::{execute, Launch};
use shotflow::sink::SinkExt;
use shotflow::xtc2::write::{dgram, smd_datagram};
use shotflow::xtc2::{Transition, Xtc2Run, Xtc2Selector, Xtc2Simulation, Xtc2Source};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes of array data (u16 frames) in `events`.
fn frame_bytes(events: &[shotflow::event::Event]) -> usize {
    events
        .iter()
        .flat_map(|e| e.fields())
        .map(|(_, v)| match v {
            Value::Array(a) => a.len() * 2,
            _ => 0,
        })
        .sum()
}

/// A run of `streams` streams of `events` empty L1Accepts each (every stream in every event),
/// with their smd files.
fn empty_run(streams: usize, events: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shotflow-bench-xtc2-{streams}x{events}"));
    if dir.join("complete").exists() {
        return dir;
    }
    std::fs::create_dir_all(dir.join("smalldata")).unwrap();
    for s in 0..streams {
        let name = format!("bench-r0001-s{s:03}-c000");
        let mut big = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("{name}.xtc2"))).unwrap(),
        );
        let mut smd = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("smalldata/{name}.smd.xtc2"))).unwrap(),
        );
        let mut offset = 0u64;
        let mut put = |bytes: Vec<u8>| {
            big.write_all(&bytes).unwrap();
            smd.write_all(&smd_datagram(&bytes, offset)).unwrap();
            offset += bytes.len() as u64;
        };
        put(dgram(0, Transition::Configure, &[], 0));
        put(dgram(1, Transition::BeginRun, &[], 0));
        put(dgram(2, Transition::Enable, &[], 0));
        for i in 0..events {
            put(dgram((1 << 32) + i, Transition::L1Accept, &[], 0));
        }
        put(dgram(u64::MAX - 1, Transition::EndRun, &[], 0));
    }
    std::fs::write(dir.join("complete"), b"").unwrap();
    dir
}

/// Events per second through the dataflow at `workers`, and their array bytes.
fn through(run: &Arc<Xtc2Run>, workers: u16, per_batch: usize) -> (f64, u64) {
    let bytes = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let (b, c) = (Arc::clone(&bytes), Arc::clone(&count));
    let run = Arc::clone(run);
    let started = Instant::now();
    execute(&Launch::threads(workers), move |worker| {
        let (run, b, c) = (Arc::clone(&run), Arc::clone(&b), Arc::clone(&c));
        worker.dataflow(|scope| {
            scope
                .xtc2(run, Arc::new(vec![Xtc2Selector::all()]), per_batch)
                .for_each_batch("Count", move |_, events| {
                    c.fetch_add(events.len() as u64, Ordering::Relaxed);
                    let n = frame_bytes(events);
                    b.fetch_add(n as u64, Ordering::Relaxed);
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    (
        count.load(Ordering::Relaxed) as f64 / seconds,
        bytes.load(Ordering::Relaxed),
    )
}

fn plain_read(files: &[PathBuf]) -> f64 {
    let started = Instant::now();
    let mut total = 0u64;
    let mut buf = vec![0u8; 8 << 20];
    for f in files {
        let mut file = std::fs::File::open(f).unwrap();
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
            std::hint::black_box(&buf[..n]);
        }
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    shotflow::runtime::keep_freed_memory();
    let scale: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1.0);
    let events = ((1_000_000.0 * scale) as u64).max(1000);
    println!("\nEvent building from smd files, {events} events per stream");
    println!("{:<46} {:>14}", "", "events/s");
    for streams in [2, 4] {
        let dir = empty_run(streams, events);
        for round in 0..2 {
            let started = Instant::now();
            let run = Arc::new(Xtc2Run::open(&dir).unwrap());
            let index = run.events.len() as f64 / started.elapsed().as_secs_f64();
            assert_eq!(run.events.len() as u64, events);
            println!(
                "{:<46} {index:>14.0}",
                format!("{streams} streams: scan + merge + index (round {round})")
            );
            for workers in [1u16, 2] {
                let (rate, _) = through(&run, workers, 4096);
                println!(
                    "{:<46} {rate:>14.0}",
                    format!("{streams} streams: events built, {workers} worker(s)")
                );
            }
        }
    }

    let frames = ((2000.0 * scale) as u64).max(20);
    let dir = std::env::temp_dir().join(format!("shotflow-bench-xtc2-jungfrau-{frames}"));
    if !dir.join("complete").exists() {
        Xtc2Simulation {
            events: frames,
            events_per_step: frames,
            segment: [1, 1],
            ..Default::default()
        }
        .write(&dir)
        .unwrap();
        std::fs::write(dir.join("complete"), b"").unwrap();
    }
    let jungfrau = Arc::new(Xtc2Run::open(&dir).unwrap());
    let only: Vec<PathBuf> = jungfrau.streams[0].chunks.clone();
    let selectors = vec![Xtc2Selector::parse("jungfrau").unwrap()];
    println!(
        "\nJungfrau uint16 1×512×1024 frames, {frames} events (stream 0: {:.2} GB)",
        size(&only) / 1e9
    );
    println!("{:<46} {:>10} {:>12}", "", "GB/s", "× plain read");
    let _ = plain_read(&only); // warm the page cache
    for round in 0..3 {
        let plain = plain_read(&only);
        println!(
            "{:<46} {:>10.2} {:>12}",
            format!("plain sequential read (round {round})"),
            plain / 1e9,
            1
        );
        for workers in [1u16, 2] {
            let bytes = Arc::new(AtomicU64::new(0));
            let b = Arc::clone(&bytes);
            let run = Arc::clone(&jungfrau);
            let selectors = Arc::new(selectors.clone());
            let started = Instant::now();
            execute(&Launch::threads(workers), move |worker| {
                let (run, b, selectors) =
                    (Arc::clone(&run), Arc::clone(&b), Arc::clone(&selectors));
                worker.dataflow(|scope| {
                    scope
                        .xtc2(run, selectors, 8)
                        .for_each_batch("Count", move |_, events| {
                            let n = frame_bytes(events);
                            b.fetch_add(n as u64, Ordering::Relaxed);
                        });
                });
                Ok::<_, std::convert::Infallible>(())
            })
            .unwrap();
            let rate = bytes.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
            println!(
                "{:<46} {:>10.2} {:>12.2}",
                format!("frames into the dataflow, {workers} worker(s)"),
                rate / 1e9,
                plain / rate
            );
        }
    }
}

fn size(files: &[PathBuf]) -> f64 {
    files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum::<u64>() as f64
}
