//! tjlane/smalldata's `unaligned_` datasets and psana's saved summaries, written at 1, 2 and 3
//! workers and by 2 processes: the datasets are identical, equal to a sequential reference
//! computed here, and read back by h5py (`check_unaligned_and_saved.py`, numpy's own view).

use std::path::Path;
use std::process::Command;

use shotflow::event::{Event, Key, Value};
use shotflow::runtime::{execute, execute_plan, Launch, Plan};
use shotflow::smalldata::{Reduce, Row, SavePerBatch, SmallData, SmallDataExt};
use shotflow::source::{Synthetic, SyntheticSource};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Concat;

mod common;
use common::{
    assert_same_datasets, python_reference, reference_script, result_datasets, wait_bounded,
};

const EVENTS: u64 = 2_501;
const BATCH: u64 = 64;

fn config() -> Synthetic {
    Synthetic {
        events: EVENTS,
        batch_size: BATCH,
        frame: None,
        ..Synthetic::default()
    }
}

/// Root rows for every event with an `unaligned_` image every 7th event and an aligned key
/// under a group named `unaligned_grp` every 3rd; `andor` group rows every 10th event with an
/// `unaligned_temp` every 20th.
fn rows(e: &Event, first: u64) -> Vec<Row> {
    let i = e.id - first;
    let mut root = Event::new(e.id).with(Key::new("i0"), i as f64);
    if i.is_multiple_of(7) {
        root.set(
            Key::new("andor/unaligned_img"),
            vec![i as u16, (2 * i) as u16, 7],
        );
    }
    if i.is_multiple_of(3) {
        root.set(Key::new("unaligned_grp/x"), i as i32);
    }
    let mut out = vec![Row::from(root)];
    if i.is_multiple_of(10) {
        let mut andor = Event::new(e.id).with(Key::new("spectrum"), vec![i as u16; 4]);
        if i.is_multiple_of(20) {
            andor.set(Key::new("unaligned_temp"), i as f64 * 0.5);
        }
        out.push(Row::in_group("andor", andor));
    }
    out
}

/// The saved summaries' contributions of one event, per reduction.
fn energy(e: &Event) -> f64 {
    e.get_f64(config().keys().pulse_energy).unwrap()
}

fn output(path: &Path, workers: u64) -> SmallData {
    SmallData::new(path)
        .save("n_workers", workers)
        .save("command", "unaligned_and_saved test")
        .save("calibration/gain", vec![1.0f64, 0.98])
}

/// The dataflow of every run: the rows, and contributions per batch to saved summaries of
/// each reduction.
fn build(worker: &mut timely::worker::Worker, out: SmallData) {
    let source = config();
    let first = source.first_id;
    worker.dataflow(|scope| {
        let events = scope.synthetic(&source);
        let sums = events.clone().save_per_batch(
            Reduce::Sum,
            move |acc: &mut (f64, Vec<u64>), e: &Event| {
                let i = e.id - first;
                acc.0 += energy(e);
                acc.1.resize(3, 0);
                for (k, v) in [i, 2 * i, i % 7].into_iter().enumerate() {
                    acc.1[k] += v;
                }
            },
            |acc, event| {
                event.set(Key::new("run/energy_sum"), acc.0);
                event.set(Key::new("run/image_sum"), acc.1);
            },
        );
        let per = |reduce, name: &'static str, f: fn(&Event, u64) -> Value| {
            events.clone().save_per_batch(
                reduce,
                move |acc: &mut Option<Value>, e: &Event| {
                    let v = f(e, first);
                    // Within a batch the test folds by hand, as the sink folds batches.
                    *acc = Some(match acc.take() {
                        None => v,
                        Some(a) => fold(reduce, a, v),
                    });
                },
                move |acc, event| event.set(Key::new(name), acc.expect("a batch has events")),
            )
        };
        let min = per(Reduce::Min, "run/min_id", |e, f| {
            Value::I64((e.id - f) as i64)
        });
        let max = per(Reduce::Max, "run/max_energy", |e, _| Value::F64(energy(e)));
        let and = per(Reduce::And, "run/all_positive", |e, _| {
            Value::Bool(energy(e) > 0.0)
        });
        let or = per(Reduce::Or, "flags/any_late", |e, f| {
            Value::Bool(e.id - f >= 2_400)
        });
        let bor = per(Reduce::BitOr, "flags/bits", |e, f| {
            Value::U32(1 << ((e.id - f) % 32))
        });
        let band = per(Reduce::BitAnd, "flags/mask", |e, f| {
            Value::U16(0xffff ^ (1 << ((e.id - f) % 13)))
        });
        events
            .flat_map(move |e| rows(&e, first))
            .concat(sums)
            .concat(min)
            .concat(max)
            .concat(and)
            .concat(or)
            .concat(bor)
            .concat(band)
            .smalldata(out);
    });
}

/// One reduction of two scalars, written out in full for the test's own per-batch fold.
fn fold(reduce: Reduce, a: Value, b: Value) -> Value {
    match (reduce, a, b) {
        (Reduce::Min, Value::I64(a), Value::I64(b)) => Value::I64(a.min(b)),
        (Reduce::Max, Value::F64(a), Value::F64(b)) => Value::F64(a.max(b)),
        (Reduce::And, Value::Bool(a), Value::Bool(b)) => Value::Bool(a && b),
        (Reduce::Or, Value::Bool(a), Value::Bool(b)) => Value::Bool(a || b),
        (Reduce::BitOr, Value::U32(a), Value::U32(b)) => Value::U32(a | b),
        (Reduce::BitAnd, Value::U16(a), Value::U16(b)) => Value::U16(a & b),
        other => panic!("{other:?}"),
    }
}

/// The 2-process side: one process of the cluster.
#[test]
#[ignore = "helper: started as a child process by the 2-process test"]
fn unaligned_and_saved_child() {
    let var = |n: &str| std::env::var(n).unwrap();
    let launch = Launch {
        processes: Some(2),
        process: Some(var("SHOTFLOW_TEST_PROCESS").parse().unwrap()),
        rendezvous: Some(var("SHOTFLOW_TEST_RENDEZVOUS").into()),
        ..Launch::threads(1)
    };
    let out = output(Path::new(&var("SHOTFLOW_TEST_OUTPUT")), 2);
    execute(&launch, move |worker| {
        build(worker, out.clone());
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
}

fn run_threads(plan: &Plan, path: &Path, workers: u64) {
    let out = output(path, workers);
    let result = out.result();
    execute_plan(plan, move |worker| {
        build(worker, out.clone());
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let result = result.lock().unwrap().clone().expect("master written");
    assert!(result.complete);
    assert_eq!(result.rows, EVENTS);
}

fn run_processes(dir: &Path, path: &Path) {
    let children: Vec<_> = (0..2)
        .map(|p| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "unaligned_and_saved_child",
                    "--nocapture",
                ])
                .env("SHOTFLOW_TEST_PROCESS", p.to_string())
                .env("SHOTFLOW_TEST_RENDEZVOUS", dir.join("rendezvous"))
                .env("SHOTFLOW_TEST_OUTPUT", path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = wait_bounded(child, std::time::Duration::from_secs(120));
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What the datasets must hold, computed here without the engine: the unaligned rows, and the
/// saved summaries folded per batch in event order, batches in order.
fn check_against_reference(path: &Path, workers: u64) -> usize {
    let file = hdf5::File::open(path).unwrap();
    let source = config();
    let first = source.first_id;
    let ids = |f: &dyn Fn(u64) -> bool| -> Vec<i64> {
        (0..EVENTS)
            .filter(|&i| f(i))
            .map(|i| (first + i) as i64)
            .collect()
    };
    let read_i64 = |name: &str| file.dataset(name).unwrap().read_raw::<i64>().unwrap();
    let mut compared = 0;
    // Unaligned: rows only for the events that carried the key, with their own timestamps.
    assert_eq!(
        read_i64("andor/unaligned_img_timestamp"),
        ids(&|i| i % 7 == 0)
    );
    let img = file
        .dataset("andor/unaligned_img")
        .unwrap()
        .read_2d::<u16>()
        .unwrap();
    let want: Vec<u16> = (0..EVENTS)
        .filter(|i| i % 7 == 0)
        .flat_map(|i| [i as u16, (2 * i) as u16, 7])
        .collect();
    assert_eq!(img.iter().copied().collect::<Vec<_>>(), want);
    assert_eq!(
        read_i64("andor/unaligned_temp_timestamp"),
        ids(&|i| i % 20 == 0)
    );
    let temp = file
        .dataset("andor/unaligned_temp")
        .unwrap()
        .read_raw::<f64>()
        .unwrap();
    let want: Vec<f64> = (0..EVENTS)
        .filter(|i| i % 20 == 0)
        .map(|i| i as f64 * 0.5)
        .collect();
    assert_eq!(temp, want);
    // The group keeps its own alignment, the root its own; `unaligned_grp/x` is aligned.
    assert_eq!(read_i64("andor/timestamp"), ids(&|i| i % 10 == 0));
    assert_eq!(read_i64("timestamp"), ids(&|_| true));
    let x = file
        .dataset("unaligned_grp/x")
        .unwrap()
        .read_raw::<i32>()
        .unwrap();
    let want: Vec<i32> = (0..EVENTS as i32)
        .map(|i| if i % 3 == 0 { i } else { -99_999 })
        .collect();
    assert_eq!(x, want);
    compared += 6;
    // Saved summaries: folded per batch in event order, then batches in order.
    let batches: Vec<Vec<u64>> = (0..EVENTS)
        .collect::<Vec<_>>()
        .chunks(BATCH as usize)
        .map(|c| c.to_vec())
        .collect();
    let energy_of = |i: u64| energy(&source.event(i));
    let mut energy_sum: Option<f64> = None;
    for batch in &batches {
        let partial = batch.iter().fold(0.0, |s, &i| s + energy_of(i));
        energy_sum = Some(energy_sum.map_or(partial, |t| t + partial));
    }
    let scalar = |name: &str| file.dataset(name).unwrap();
    assert_eq!(
        scalar("run/energy_sum")
            .read_scalar::<f64>()
            .unwrap()
            .to_bits(),
        energy_sum.unwrap().to_bits()
    );
    let image = scalar("run/image_sum").read_raw::<u64>().unwrap();
    let n = EVENTS;
    assert_eq!(
        image,
        [n * (n - 1) / 2, n * (n - 1), (0..n).map(|i| i % 7).sum()]
    );
    assert_eq!(scalar("run/min_id").read_scalar::<i64>().unwrap(), 0);
    let max = (0..EVENTS).map(energy_of).fold(f64::MIN, f64::max);
    assert_eq!(scalar("run/max_energy").read_scalar::<f64>().unwrap(), max);
    let all_positive = (0..EVENTS).all(|i| energy_of(i) > 0.0);
    assert_eq!(
        scalar("run/all_positive").read_scalar::<bool>().unwrap(),
        all_positive
    );
    assert!(scalar("flags/any_late").read_scalar::<bool>().unwrap());
    assert_eq!(scalar("flags/bits").read_scalar::<u32>().unwrap(), u32::MAX);
    assert_eq!(
        scalar("flags/mask").read_scalar::<u16>().unwrap(),
        0xffff ^ 0x1fff
    );
    compared += 8;
    // Given up front.
    assert_eq!(scalar("n_workers").read_scalar::<u64>().unwrap(), workers);
    assert_eq!(
        scalar("calibration/gain").read_raw::<f64>().unwrap(),
        [1.0, 0.98]
    );
    compared += 2;
    compared
}

#[test]
fn unaligned_keys_and_saved_summaries_at_1_2_3_workers_and_2_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for workers in [1u64, 2, 3] {
        let path = dir.path().join(format!("w{workers}.h5"));
        let plan = match workers {
            1 => Plan::Thread,
            n => Plan::Process {
                workers: n as usize,
            },
        };
        run_threads(&plan, &path, workers);
        files.push((format!("{workers} worker(s)"), path, workers));
    }
    let path = dir.path().join("p2.h5");
    run_processes(dir.path(), &path);
    files.push(("2 processes".into(), path, 2));
    let mut compared = 0;
    let mut reference = result_datasets(&files[0].1);
    reference.remove("n_workers");
    for (label, path, workers) in &files {
        compared += check_against_reference(path, *workers);
        // `n_workers` says how each was run; every other dataset is the same, bit for bit.
        let mut datasets = result_datasets(path);
        datasets.remove("n_workers");
        assert_same_datasets(&datasets, &reference, &format!("at {label} from 1 worker"));
        let script = reference_script("check_unaligned_and_saved.py");
        let out = python_reference(
            "check_unaligned_and_saved.py",
            [
                script.to_str().unwrap(),
                path.to_str().unwrap(),
                &EVENTS.to_string(),
                &BATCH.to_string(),
            ],
        );
        assert!(out.contains("ok"), "{label}: {out}");
    }
    println!(
        "{} runs, {EVENTS} events each: {compared} checks against the reference, {} datasets compared bit for bit",
        files.len(),
        reference.len() * (files.len() - 1)
    );
}

/// The errors the issue lists, each named.
#[test]
fn bad_unaligned_and_saved_requests_are_named() {
    let failure = |rows: fn(u64, u64) -> Vec<Row>, saved: Option<(&str, f64)>| -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut out = SmallData::new(dir.path().join("bad.h5"));
        if let Some((name, value)) = saved {
            out = out.save(name, value);
        }
        let source = config();
        let error = execute_plan(&Plan::Process { workers: 2 }, move |worker| {
            let (out, source) = (out.clone(), source.clone());
            let first = source.first_id;
            worker.dataflow(|scope| {
                scope
                    .synthetic(&source)
                    .flat_map(move |e| rows(e.id, e.id - first))
                    .smalldata(out)
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap_err()
        .to_string();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!dir.path().join("bad.h5").exists(), "{left:?}");
        error
    };
    let e = failure(
        |id, i| {
            let v: Value = if i == 1_000 {
                Value::F32(1.0)
            } else {
                Value::U16(i as u16)
            };
            vec![Row::from(
                Event::new(id).with(Key::new("det/unaligned_x"), v),
            )]
        },
        None,
    );
    assert!(
        e.contains("key \"det/unaligned_x\" at event 1000001000: got float32, but its first value (event 1000000000) fixed it as uint16"),
        "{e}"
    );
    let e = failure(
        |id, _| {
            vec![Row::from(
                Event::new(id).with(Key::new("var_peaks/unaligned_y"), vec![1.0f32]),
            )]
        },
        None,
    );
    assert!(
        e.contains(
            "key \"var_peaks/unaligned_y\" is both unaligned (unaligned_) and ragged (var_)"
        ),
        "{e}"
    );
    let e = failure(
        |id, _| vec![Row::from(Event::new(id).with(Key::new("photons"), 1u64))],
        Some(("photons", 2.0)),
    );
    assert!(
        e.contains("saved summary \"photons\" collides with an event dataset \"photons\""),
        "{e}"
    );
    let e = failure(
        |id, i| {
            let v = Value::U8(if i == 0 { 200 } else { 100 });
            vec![
                Row::from(Event::new(id).with(Key::new("i0"), 1.0)),
                Row::saved(Reduce::Sum, Event::new(id).with(Key::new("total"), v)),
            ]
        },
        None,
    );
    assert!(
        e.contains("saved summary \"total\" (sum): 200 and 100 overflow uint8"),
        "{e}"
    );
    // Batch 0 gives uint8, batch 1 float64: found where the batches are folded, on worker 0.
    let e = failure(
        |id, i| {
            let v = if i < BATCH {
                Value::U8(1)
            } else {
                Value::F64(1.0)
            };
            vec![
                Row::from(Event::new(id).with(Key::new("i0"), 1.0)),
                Row::saved(Reduce::Max, Event::new(id).with(Key::new("peak"), v)),
            ]
        },
        None,
    );
    assert!(
        e.contains(
            "saved summary \"peak\" (max): uint8 [] before, float64 [] now; values are never cast"
        ),
        "{e}"
    );
    println!("5 bad requests named");
}

/// Two batches on three workers: the third worker sees no data and contributes nothing, and
/// the reductions equal a 1-worker run's and the values computed here.
#[test]
fn a_reduction_tolerates_workers_that_saw_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let source = Synthetic {
        events: 100,
        ..config()
    };
    let first = source.first_id;
    let mut results = Vec::new();
    for (name, plan) in [
        ("one", Plan::Thread),
        ("three", Plan::Process { workers: 3 }),
    ] {
        let path = dir.path().join(format!("{name}.h5"));
        let out = SmallData::new(&path);
        let result = out.result();
        let source = source.clone();
        execute_plan(&plan, move |worker| {
            let (out, source) = (out.clone(), source.clone());
            worker.dataflow(|scope| {
                let events = scope.synthetic(&source);
                let sums = events.clone().save_per_batch(
                    Reduce::Sum,
                    move |acc: &mut u64, e: &Event| *acc += e.id - first,
                    |acc, event| event.set(Key::new("id_sum"), acc),
                );
                let all = events.clone().save_per_batch(
                    Reduce::And,
                    |acc: &mut Option<bool>, e: &Event| {
                        *acc = Some(acc.unwrap_or(true) && e.id.is_multiple_of(2))
                    },
                    |acc, event| event.set(Key::new("all_even"), acc.unwrap()),
                );
                events
                    .map(Row::from)
                    .concat(sums)
                    .concat(all)
                    .smalldata(out);
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        let saved = result.lock().unwrap().clone().unwrap().saved;
        let file = hdf5::File::open(&path).unwrap();
        let id_sum = file
            .dataset("id_sum")
            .unwrap()
            .read_scalar::<u64>()
            .unwrap();
        assert_eq!(id_sum, (0..100).sum::<u64>(), "{plan:?}");
        let all_even = file
            .dataset("all_even")
            .unwrap()
            .read_scalar::<bool>()
            .unwrap();
        assert!(!all_even, "{plan:?}");
        results.push(saved);
    }
    assert_eq!(results[0], results[1]);
    println!("2 batches, 3 workers: 2 saved summaries equal to 1 worker's and the reference");
}
