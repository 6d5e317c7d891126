//! Reading detector frames from an EuXFEL run: GB/s of frame data delivered into the dataflow
//! by the EXDF source at 1 and 2 workers, beside a plain sequential read of the same datasets
//! with the HDF5 library (the local limit).
//!
//! ```text
//! cargo bench --bench exdf              # simulates a 2.1 GB run in $TMPDIR once, then reads it
//! cargo bench --bench exdf -- 0.25      # a quarter of the trains
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shotflow::event::Value;
use shotflow::recording::{Pace, RecordExt, Recording, ReplaySource};
use shotflow::runtime::{execute, Launch};
use shotflow::sink::SinkExt;
use shotflow::source::exdf::simulate::Simulation;
use shotflow::source::exdf::{ExdfRun, ExdfSource, Selector};

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

fn main() {
    shotflow::runtime::keep_freed_memory();
    let scale: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1.0);
    let simulation = Simulation {
        trains: ((64.0 * scale) as u64).max(2),
        modules: 4,
        frames: 64,
        ..Simulation::default()
    };
    let dir = std::env::temp_dir().join(format!("shotflow-bench-run-{}", simulation.trains));
    if !dir.join("complete").exists() {
        let started = Instant::now();
        simulation.write(&dir).expect("simulate");
        std::fs::write(dir.join("complete"), b"").unwrap();
        println!(
            "simulated {} in {:.1} s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let run = Arc::new(ExdfRun::open(&dir).unwrap());
    let selected = Arc::new(
        run.select(&[Selector::parse("SPB_DET_AGIPD1M-1/DET/*CH0:xtdf:image.data").unwrap()])
            .unwrap(),
    );

    // The local limit: every image.data dataset read in slabs of one train, one after another.
    let started = Instant::now();
    let mut bytes = 0u64;
    for info in &run.files {
        let file = hdf5::File::open(&info.path).unwrap();
        for source in info.sources.keys().filter(|s| s.contains("AGIPD")) {
            let data = file
                .dataset(&format!("INSTRUMENT/{source}/image/data"))
                .unwrap();
            let rows = data.shape()[0];
            for lo in (0..rows).step_by(simulation.frames) {
                let hi = (lo + simulation.frames).min(rows);
                let slab: ndarray::Array3<u16> =
                    data.read_slice(ndarray::s![lo..hi, .., ..]).unwrap();
                bytes += (slab.len() * 2) as u64;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "frame data: {:.2} GB in {} files",
        bytes as f64 / 1e9,
        run.files.len()
    );
    println!("{:<36} {:>8} {:>8}", "reader", "GB/s", "ratio");
    let limit = bytes as f64 / seconds / 1e9;
    println!(
        "{:<36} {:>8.2} {:>8.2}",
        "HDF5, sequential, one train a read", limit, 1.0
    );

    let mut rates: Vec<f64> = Vec::new();
    for workers in [1u16, 2] {
        let delivered = Arc::new(AtomicU64::new(0));
        let d = Arc::clone(&delivered);
        let (r, s) = (Arc::clone(&run), Arc::clone(&selected));
        let started = Instant::now();
        execute(&Launch::threads(workers), move |worker| {
            let (r, s, d) = (Arc::clone(&r), Arc::clone(&s), Arc::clone(&d));
            worker.dataflow(|scope| {
                scope
                    .exdf(r, s, 1)
                    .for_each_batch("Count", move |_, events| {
                        let n = frame_bytes(events);
                        d.fetch_add(n as u64, Ordering::Relaxed);
                    });
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(delivered.load(Ordering::Relaxed), bytes);
        let rate = bytes as f64 / seconds / 1e9;
        rates.push(rate);
        println!(
            "{:<36} {rate:>8.2} {:>8.2}",
            format!("shotflow exdf source, {workers} worker(s)"),
            rate / limit
        );
    }

    // A recording of the same frames, replayed as fast as possible.
    let recording_dir = dir.join("recording");
    if !recording_dir.join("complete").exists() {
        let _ = std::fs::remove_dir_all(&recording_dir);
        let (r, s, out) = (
            Arc::clone(&run),
            Arc::clone(&selected),
            recording_dir.clone(),
        );
        execute(&Launch::threads(1), move |worker| {
            let (r, s, out) = (Arc::clone(&r), Arc::clone(&s), out.clone());
            worker.dataflow(|scope| scope.exdf(r, s, 1).record(&out))?;
            Ok::<_, shotflow::recording::RecordingError>(())
        })
        .unwrap();
        std::fs::write(recording_dir.join("complete"), b"").unwrap();
    }
    let recording = Arc::new(Recording::open(&recording_dir).unwrap());
    for workers in [1u16, 2] {
        let delivered = Arc::new(AtomicU64::new(0));
        let (d, r) = (Arc::clone(&delivered), Arc::clone(&recording));
        let started = Instant::now();
        execute(&Launch::threads(workers), move |worker| {
            let (r, d) = (Arc::clone(&r), Arc::clone(&d));
            worker.dataflow(|scope| {
                scope.replay(r, Pace::AsFastAsPossible).for_each_batch(
                    "Count",
                    move |_, events| {
                        let n = frame_bytes(events);
                        d.fetch_add(n as u64, Ordering::Relaxed);
                    },
                );
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(delivered.load(Ordering::Relaxed), bytes);
        let rate = bytes as f64 / seconds / 1e9;
        println!(
            "{:<36} {rate:>8.2} {:>8.2}   ({:.2} × reading the run)",
            format!("recording replay, {workers} worker(s)"),
            rate / limit,
            rate / rates[workers as usize - 1]
        );
    }
}
