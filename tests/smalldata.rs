//! The smalldata sink: values written at 1, 2 and 3 workers and 2 writers read back (with the
//! hdf5 crate here, with h5py in `smalldata_h5py_reads_the_master`) and compared with the
//! values given, fill values, order, and summaries against a sequential reference.

use std::path::Path;
use std::process::Command;

use shotflow::event::{Event, Key};
use shotflow::runtime::{execute_plan, Plan};
use shotflow::smalldata::{histogram_with_flows, Reduced, SmallData, SmallDataExt};
use shotflow::source::{Synthetic, SyntheticSource};
use timely::dataflow::operators::vec::Map;

const EVENTS: u64 = 3_001;

/// Runs the tests of this file one at a time. Concurrent runs in one process occasionally read
/// a master's VDS as all fill values or fail to lock a part file (HDF5 1.10 file locking and
/// its per-process open-file cache); one run per process, the normal case, is not affected.
/// Left as an open question in the closing note.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
const BATCH: u64 = 64;

fn config() -> Synthetic {
    Synthetic {
        events: EVENTS,
        batch_size: BATCH,
        frame: None,
        ..Synthetic::default()
    }
}

/// The fields each event gets before the sink: a mix of dtypes, shapes, gaps and late keys.
fn decorate(mut e: Event, first_id: u64) -> Event {
    let i = e.id - first_id;
    e.set(Key::new("counter"), i as i32);
    e.set(
        Key::new("spectrum"),
        (0..8)
            .map(|k| (i * 8 + k) as f32 * 0.5)
            .collect::<Vec<f32>>(),
    );
    if !i.is_multiple_of(3) {
        e.set(Key::new("det/roi/sum"), i as u16);
    }
    if i >= 2_000 {
        e.set(Key::new("late"), i as f64 * 2.0);
    }
    if i.is_multiple_of(5) {
        e.set(Key::new("small"), -((i % 100) as i8));
    }
    e
}

fn run(
    plan: &Plan,
    path: &Path,
    writers: Option<usize>,
) -> Vec<(shotflow::smalldata::Summary, Reduced)> {
    let mut output = SmallData::new(path)
        .stats("pulse_energy")
        .stats("spectrum")
        .histogram("pulse_energy", 0.0, 2.0, 20);
    if let Some(w) = writers {
        // Several writers also flush often, so keys first seen late meet rows already on disk.
        output = output.writers(w).cache_bytes(4096);
    }
    let result = output.result();
    let source = config();
    execute_plan(plan, move |worker| {
        let (output, source) = (output.clone(), source.clone());
        worker.dataflow(|scope| {
            let first = source.first_id;
            scope
                .synthetic(&source)
                .map(move |e| decorate(e, first))
                .smalldata(output);
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let result = result.lock().unwrap().clone().expect("master written");
    assert_eq!(result.rows, EVENTS);
    result.summaries
}

/// Compares without printing thousands of values: the first differing row is enough.
fn same<T: PartialEq + std::fmt::Debug>(name: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{name}: rows");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{name}: row {i}: got {:?}, want {:?}", got[i], want[i]);
    }
}

fn check_file(path: &Path) {
    let file = hdf5::File::open(path).unwrap();
    let source = config();
    let ts = file
        .dataset("timestamp")
        .unwrap()
        .read_raw::<i64>()
        .unwrap();
    let want_ids: Vec<i64> = (0..EVENTS).map(|i| (source.first_id + i) as i64).collect();
    same("timestamp", &ts, &want_ids);
    let counter = file.dataset("counter").unwrap().read_raw::<i32>().unwrap();
    same("counter", &counter, &(0..EVENTS as i32).collect::<Vec<_>>());
    let spectrum = file.dataset("spectrum").unwrap().read_2d::<f32>().unwrap();
    assert_eq!(spectrum.dim(), (EVENTS as usize, 8));
    for (i, row) in spectrum.rows().into_iter().enumerate() {
        for (k, v) in row.iter().enumerate() {
            assert_eq!(*v, (i * 8 + k) as f32 * 0.5);
        }
    }
    let roi = file
        .dataset("det/roi/sum")
        .unwrap()
        .read_raw::<u16>()
        .unwrap();
    for (i, v) in roi.iter().enumerate() {
        assert_eq!(*v, if i % 3 != 0 { i as u16 } else { u16::MAX }, "row {i}");
    }
    let late = file.dataset("late").unwrap().read_raw::<f64>().unwrap();
    for (i, v) in late.iter().enumerate() {
        if i >= 2_000 {
            assert_eq!(*v, i as f64 * 2.0);
        } else {
            assert!(v.is_nan(), "row {i} before the key appeared: {v}");
        }
    }
    let small = file.dataset("small").unwrap().read_raw::<i8>().unwrap();
    for (i, v) in small.iter().enumerate() {
        assert_eq!(
            *v,
            if i % 5 == 0 {
                -((i % 100) as i8)
            } else {
                i8::MIN
            },
            "row {i}"
        );
    }
    let energy = file
        .dataset("pulse_energy")
        .unwrap()
        .read_raw::<f64>()
        .unwrap();
    let keys = source.keys();
    for (i, v) in energy.iter().enumerate() {
        assert_eq!(Some(*v), source.event(i as u64).get_f64(keys.pulse_energy));
    }
}

/// Sum, min, max per batch in event order, then combined in batch order.
fn reference_summary() -> (u64, f64, f64, f64, Vec<u64>) {
    let source = config();
    let keys = source.keys();
    let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
    let mut hist = vec![0u64; 22];
    for b in 0..source.batches() {
        let mut part = 0.0;
        for i in b * BATCH..((b + 1) * BATCH).min(EVENTS) {
            let v = source.event(i).get_f64(keys.pulse_energy).unwrap();
            part += v;
            min = min.min(v);
            max = max.max(v);
            let slot = if v < 0.0 {
                0
            } else if v >= 2.0 {
                21
            } else {
                1 + ((v / 2.0 * 20.0) as usize).min(19)
            };
            hist[slot] += 1;
        }
        sum += part;
    }
    (EVENTS, sum, min, max, hist)
}

#[test]
fn round_trip_at_1_2_3_workers_and_2_writers() {
    let _serial = serial();
    let (count, sum, min, max, hist) = reference_summary();
    let cases: Vec<(Plan, Option<usize>)> = vec![
        (Plan::Thread, None),
        (Plan::Process { workers: 2 }, None),
        (Plan::Process { workers: 3 }, None),
        (Plan::Process { workers: 2 }, Some(2)),
        (Plan::Process { workers: 3 }, Some(3)),
    ];
    let mut masters = Vec::new();
    for (plan, writers) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.h5");
        let summaries = run(&plan, &path, writers);
        check_file(&path);
        match &summaries[0].1 {
            Reduced::Stats {
                count: c,
                sum: s,
                min: lo,
                max: hi,
                ..
            } => {
                assert_eq!(*c, count);
                assert_eq!(
                    s[0].to_bits(),
                    sum.to_bits(),
                    "{} writers {writers:?}",
                    plan.describe()
                );
                assert_eq!((lo[0], hi[0]), (min, max));
            }
            other => panic!("{other:?}"),
        }
        match &summaries[2].1 {
            Reduced::Histogram(h) => assert_eq!(histogram_with_flows(h), hist),
            other => panic!("{other:?}"),
        }
        let file = hdf5::File::open(&path).unwrap();
        let s = file
            .dataset("summary/pulse_energy/sum")
            .unwrap()
            .read_scalar::<f64>()
            .unwrap();
        assert_eq!(s.to_bits(), sum.to_bits());
        let mean = file
            .dataset("summary/spectrum/mean")
            .unwrap()
            .read_raw::<f64>()
            .unwrap();
        assert_eq!(mean.len(), 8);
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".seg-")
            })
            .count();
        // A short run commits once, at its end: one closed segment per writer.
        assert_eq!(segments, writers.unwrap_or(1), "one segment per writer");
        masters.push((dir, path));
    }
}

#[test]
fn a_schema_conflict_names_key_event_and_types_and_leaves_no_half_written_file() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.h5");
    let output = SmallData::new(&path);
    let source = config();
    let error = execute_plan(&Plan::Process { workers: 2 }, move |worker| {
        let (output, source) = (output.clone(), source.clone());
        worker.dataflow(|scope| {
            let first = source.first_id;
            scope
                .synthetic(&source)
                .map(move |mut e| {
                    let i = e.id - first;
                    if i == 2_500 {
                        e.set(Key::new("counter2"), 1.5f64);
                    } else {
                        e.set(Key::new("counter2"), i as i64);
                    }
                    e
                })
                .smalldata(output);
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("key \"counter2\" at event 1000002500: got float64, but its first value (event 1000000000) fixed it as int64"),
        "{error}"
    );
    assert!(
        error.contains(".h5.tmp, which held root group: ")
            && error.ends_with("the output keeps what it committed before"),
        "{error}"
    );
    // The run failed before its first commit: nothing committed, and nothing half-written left
    // under any name.
    assert!(!path.exists(), "no master after a failed run");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn smalldata_h5py_reads_the_master() {
    let _serial = serial();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import h5py, numpy"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        panic!("h5py is required for this test: ./run test installs it");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let path = out.join("run.h5");
    run(&Plan::Process { workers: 3 }, &path, Some(3));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_smalldata.py");
    let check = |master: &Path| {
        let o = Command::new(&python)
            .arg(&script)
            .arg(master)
            .arg(EVENTS.to_string())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    check(&path);
    // Moved as a whole, the VDS still resolves its sources.
    let moved = dir.path().join("moved");
    std::fs::rename(&out, &moved).unwrap();
    check(&moved.join("run.h5"));
}

/// Root rows for every event (with ragged peaks and a second row per event that is merged),
/// and a low-rate `andor` group every 10th event.
fn grouped_rows(e: Event, first_id: u64) -> Vec<shotflow::smalldata::Row> {
    use shotflow::smalldata::Row;
    let i = e.id - first_id;
    let n = (i % 4) as usize;
    let mut root = Event::new(e.id).with(Key::new("i0"), i as f64);
    root.set(
        Key::new("var_peaks/x"),
        (0..n)
            .map(|k| (i * 10 + k as u64) as f32)
            .collect::<Vec<f32>>(),
    );
    root.set(
        Key::new("var_peaks/y"),
        (0..n)
            .map(|k| -((i * 10 + k as u64) as i32))
            .collect::<Vec<i32>>(),
    );
    let extra = Event::new(e.id).with(Key::new("extra"), i as u32);
    let mut rows = vec![Row::from(root), Row::from(extra)];
    if i.is_multiple_of(10) {
        rows.push(Row::in_group(
            "andor",
            Event::new(e.id).with(Key::new("spectrum"), vec![i as u16; 4]),
        ));
    }
    rows
}

fn check_grouped(path: &Path) {
    let file = hdf5::File::open(path).unwrap();
    let first = config().first_id;
    let ts = file
        .dataset("timestamp")
        .unwrap()
        .read_raw::<i64>()
        .unwrap();
    same(
        "timestamp",
        &ts,
        &(0..EVENTS).map(|i| (first + i) as i64).collect::<Vec<_>>(),
    );
    let i0 = file.dataset("i0").unwrap().read_raw::<f64>().unwrap();
    same(
        "i0",
        &i0,
        &(0..EVENTS).map(|i| i as f64).collect::<Vec<_>>(),
    );
    let extra = file.dataset("extra").unwrap().read_raw::<u32>().unwrap();
    same(
        "extra (merged rows)",
        &extra,
        &(0..EVENTS as u32).collect::<Vec<_>>(),
    );
    let lens = file
        .dataset("var_peaks_len")
        .unwrap()
        .read_raw::<i64>()
        .unwrap();
    same(
        "var_peaks_len",
        &lens,
        &(0..EVENTS).map(|i| (i % 4) as i64).collect::<Vec<_>>(),
    );
    let x = file
        .dataset("var_peaks/x")
        .unwrap()
        .read_raw::<f32>()
        .unwrap();
    let want_x: Vec<f32> = (0..EVENTS)
        .flat_map(|i| (0..i % 4).map(move |k| (i * 10 + k) as f32))
        .collect();
    same("var_peaks/x", &x, &want_x);
    let y = file
        .dataset("var_peaks/y")
        .unwrap()
        .read_raw::<i32>()
        .unwrap();
    same(
        "var_peaks/y",
        &y,
        &want_x.iter().map(|v| -(*v as i32)).collect::<Vec<_>>(),
    );
    let andor_ts = file
        .dataset("andor/timestamp")
        .unwrap()
        .read_raw::<i64>()
        .unwrap();
    let want: Vec<i64> = (0..EVENTS)
        .filter(|i| i % 10 == 0)
        .map(|i| (first + i) as i64)
        .collect();
    same("andor/timestamp", &andor_ts, &want);
    let spectrum = file
        .dataset("andor/spectrum")
        .unwrap()
        .read_2d::<u16>()
        .unwrap();
    assert_eq!(spectrum.dim(), (want.len(), 4));
    for (row, id) in spectrum.rows().into_iter().zip(&want) {
        assert!(row.iter().all(|v| *v == (*id as u64 - first) as u16));
    }
}

#[test]
fn groups_ragged_arrays_and_merged_rows_at_1_2_3_workers() {
    let _serial = serial();
    use timely::dataflow::operators::vec::Map;
    let cases: Vec<(Plan, Option<usize>)> = vec![
        (Plan::Thread, None),
        (Plan::Process { workers: 2 }, Some(2)),
        (Plan::Process { workers: 3 }, Some(3)),
    ];
    for (plan, writers) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grouped.h5");
        let mut output = SmallData::new(&path)
            .stats("andor/spectrum")
            .cache_bytes(2048);
        if let Some(w) = writers {
            output = output.writers(w);
        }
        let result = output.result();
        let source = config();
        execute_plan(&plan, move |worker| {
            let (output, source) = (output.clone(), source.clone());
            worker.dataflow(|scope| {
                let first = source.first_id;
                scope
                    .synthetic(&source)
                    .flat_map(move |e| grouped_rows(e, first))
                    .smalldata(output);
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        let result = result.lock().unwrap().clone().unwrap();
        assert_eq!(result.rows, EVENTS);
        match &result.summaries[0].1 {
            Reduced::Stats { count, sum, .. } => {
                assert_eq!(*count, 301);
                let want: f64 = (0..EVENTS).filter(|i| i % 10 == 0).map(|i| i as f64).sum();
                assert_eq!(sum, &vec![want; 4]);
            }
            other => panic!("{other:?}"),
        }
        check_grouped(&path);
        if writers == Some(3) {
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_grouped.py");
            let o = Command::new(&python)
                .arg(&script)
                .arg(&path)
                .arg(EVENTS.to_string())
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}
