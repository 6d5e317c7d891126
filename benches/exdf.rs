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
use shotflow::exdf::simulate::Simulation;
use shotflow::exdf::{ExdfRun, ExdfSource, Selector};
use shotflow::recording::{Pace, RecordExt, Recording, ReplaySource};
use shotflow::runtime::{execute, Launch};
use shotflow::sink::SinkExt;

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

    // A recording of the same frames, for the replay rows.
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

    // Best of three rounds: the first passes of a process land in fresh pages (the allocator
    // and the page cache warm up), which is not what a long run sees.
    let mut best = [0f64; 8];
    let mut bytes = 0;
    for _round in 0..3 {
        let (limit, b) = hdf5_sequential(&run, simulation.frames);
        bytes = b;
        let rates = [
            limit,
            exdf(&run, &selected, 1, bytes),
            exdf(&run, &selected, 2, bytes),
            replay(&recording, 1, bytes),
            replay(&recording, 2, bytes),
            extract(&dir, 1, 1, bytes),
            extract(&dir, 1, 2, bytes),
            extract(&dir, 2, 1, bytes),
        ];
        for (best, rate) in best.iter_mut().zip(rates) {
            *best = best.max(rate);
        }
    }
    println!(
        "frame data: {:.2} GB in {} files, best of 3 rounds",
        bytes as f64 / 1e9,
        run.files.len()
    );
    println!("{:<36} {:>8} {:>8}", "reader", "GB/s", "ratio");
    let rows = [
        "HDF5, sequential, one train a read",
        "shotflow exdf source, 1 worker(s)",
        "shotflow exdf source, 2 worker(s)",
        "recording replay, 1 worker(s)",
        "recording replay, 2 worker(s)",
        "shotflow extract (sum, mean), 1 w.",
        "shotflow extract (sum, mean), 2 w.",
        "shotflow extract, 2 processes × 1 w.",
    ];
    for (i, (row, rate)) in rows.iter().zip(best).enumerate() {
        print!("{row:<36} {rate:>8.2} {:>8.2}", rate / best[0]);
        if (3..7).contains(&i) {
            // Replay and extract against the EXDF source at the same worker count.
            let source = best[1 + (i - 3) % 2];
            print!("   ({:.2} × the exdf source's time)", source / rate);
        }
        if i == 7 {
            // HDF5's lock is per process: processes read in parallel, threads do not.
            print!(
                "   ({:.2} × the speed of 1 process × 2 workers)",
                rate / best[6]
            );
        }
        println!();
    }
}

/// The local limit: every image.data dataset read in slabs of one train, one after another.
fn hdf5_sequential(run: &ExdfRun, frames: usize) -> (f64, u64) {
    let started = Instant::now();
    let mut bytes = 0u64;
    for info in &run.files {
        let file = hdf5::File::open(&info.path).unwrap();
        for source in info.sources.keys().filter(|s| s.contains("AGIPD")) {
            let data = file
                .dataset(&format!("INSTRUMENT/{source}/image/data"))
                .unwrap();
            let rows = data.shape()[0];
            for lo in (0..rows).step_by(frames) {
                let hi = (lo + frames).min(rows);
                let slab: ndarray::Array3<u16> =
                    data.read_slice(ndarray::s![lo..hi, .., ..]).unwrap();
                bytes += (slab.len() * 2) as u64;
            }
        }
    }
    (bytes as f64 / started.elapsed().as_secs_f64() / 1e9, bytes)
}

fn exdf(
    run: &Arc<ExdfRun>,
    selected: &Arc<Vec<shotflow::exdf::Selected>>,
    workers: u16,
    bytes: u64,
) -> f64 {
    let delivered = Arc::new(AtomicU64::new(0));
    let d = Arc::clone(&delivered);
    let (r, s) = (Arc::clone(run), Arc::clone(selected));
    let started = Instant::now();
    execute(&Launch::threads(workers), move |worker| {
        let (r, s, d) = (Arc::clone(&r), Arc::clone(&s), Arc::clone(&d));
        worker.dataflow(|scope| {
            scope
                .exdf(r, s, 1)
                .for_each_batch("Count", move |_, events| {
                    d.fetch_add(frame_bytes(events) as u64, Ordering::Relaxed);
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(delivered.load(Ordering::Relaxed), bytes);
    bytes as f64 / seconds / 1e9
}

/// `shotflow extract` of the frames (a sum and a mean per train and module), the whole command
/// from process start to the committed smalldata file, on `processes` local processes
/// (`--processes`, started by the command itself) of `workers` workers.
fn extract(run: &std::path::Path, processes: usize, workers: u16, bytes: u64) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = dir.path().join("extract.h5");
    let started = Instant::now();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_shotflow"))
        .arg("extract")
        .arg(run)
        .args(["--select", "SPB_DET_AGIPD1M-1/DET/*CH0:xtdf:image.data"])
        .args(["--trains-per-batch", "1", "--workers", &workers.to_string()])
        .args(["--processes", &processes.to_string()])
        .args(["--no-progress", "--no-report"])
        .arg("--output")
        .arg(&output)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("shotflow extract");
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success());
    bytes as f64 / seconds / 1e9
}

fn replay(recording: &Arc<Recording>, workers: u16, bytes: u64) -> f64 {
    let delivered = Arc::new(AtomicU64::new(0));
    let (d, r) = (Arc::clone(&delivered), Arc::clone(recording));
    let started = Instant::now();
    execute(&Launch::threads(workers), move |worker| {
        let (r, d) = (Arc::clone(&r), Arc::clone(&d));
        worker.dataflow(|scope| {
            scope
                .replay(r, Pace::AsFastAsPossible)
                .for_each_batch("Count", move |_, events| {
                    d.fetch_add(frame_bytes(events) as u64, Ordering::Relaxed);
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(delivered.load(Ordering::Relaxed), bytes);
    bytes as f64 / seconds / 1e9
}
