//! Calibration on the stream and constants from files: the operator at 1, 2 and 3 workers
//! against calibrating every event directly (sequential), the HDF5 layout read back by h5py,
//! and bad constants files named with what is wrong.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use ndarray::{Array2, Array3, Array4, ArrayD, Axis};
use rand::{Rng, SeedableRng};
use shotflow::calibrate::constants_file::{load, save};
use shotflow::calibrate::Calibrate;
use shotflow::prelude::*;
use shotflow::source::synthetic::PHOTON_ADU;
use shotflow_operators::gain::agipd::AgipdConstants;
use shotflow_operators::gain::epix10ka::Epix10kaConstants;
use shotflow_operators::gain::jungfrau::{JungfrauConstants, Unit};
use shotflow_operators::gain::ModuleConstants;
use timely::dataflow::operators::ToStream;
use timely::dataflow::StreamVec;

const ROWS: usize = 32;
const COLS: usize = 64;

fn jungfrau(seed: u64, cells: usize) -> ModuleConstants {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let pedestal = Array4::from_shape_fn((3, cells, ROWS, COLS), |(s, ..)| {
        [3000.0, 14000.0, 14500.0][s] + rng.gen_range(-50.0..50.0f32)
    });
    let gain = Array4::from_shape_fn((3, cells, ROWS, COLS), |(s, ..)| {
        [40.0, 1.5, 0.1][s] * rng.gen_range(0.95..1.05f32)
    });
    let mask = Array2::from_shape_fn((ROWS, COLS), |_| (rng.gen::<f32>() > 0.02) as u8);
    ModuleConstants::Jungfrau(
        JungfrauConstants::new(pedestal, gain.view(), Some(mask), Unit::Energy).unwrap(),
    )
}

fn agipd(seed: u64, cells: usize) -> ModuleConstants {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    ModuleConstants::Agipd(
        AgipdConstants::new(
            Array4::from_shape_fn((cells, 2, ROWS, COLS), |(_, t, ..)| {
                [5200.0, 6800.0][t] + rng.gen_range(-40.0..40.0f32)
            }),
            Array4::from_shape_fn((cells, 3, ROWS, COLS), |(_, s, ..)| {
                [4000.0, 5000.0, 5500.0][s] + rng.gen_range(-30.0..30.0f32)
            }),
            Array4::from_shape_fn((cells, 3, ROWS, COLS), |(_, s, ..)| {
                [1.0, 45.0, 1000.0][s] * rng.gen_range(0.98..1.02f32)
            }),
            Array3::from_shape_fn((cells, ROWS, COLS), |_| rng.gen::<f32>() < 0.005),
        )
        .unwrap(),
    )
}

fn epix10ka(seed: u64) -> ModuleConstants {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let pedestal = Array3::from_shape_fn((7, ROWS, COLS), |_| rng.gen_range(1400.0..1600.0f32));
    let gain = Array3::from_shape_fn((7, ROWS, COLS), |(r, ..)| {
        [16.4, 5.5, 0.16, 16.4, 5.5, 0.16, 0.16][r] * rng.gen_range(0.97..1.03f32)
    });
    let config = Array2::from_shape_fn((ROWS, COLS), |_| [28u8, 12, 8, 16, 0][rng.gen_range(0..5)]);
    ModuleConstants::Epix10ka(Epix10kaConstants::new(pedestal, gain.view(), None, config).unwrap())
}

/// Events with `modules` raw frames stacked (AGIPD: analog and gain planes) and a cell id.
fn events(n: u64, modules: usize, agipd: bool, cells: u64) -> Vec<Event> {
    let (frame, cell) = (Key::new("det/raw"), Key::new("det/cellId"));
    (0..n)
        .map(|id| {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(1000 + id);
            let data = if agipd {
                ArrayD::from_shape_fn(vec![modules, 2, ROWS, COLS], |ix| {
                    if ix[1] == 0 {
                        rng.gen_range(3800..9000u16)
                    } else {
                        [4700u16, 6000, 7600][rng.gen_range(0..3)]
                    }
                })
            } else {
                ArrayD::from_shape_fn(vec![modules, ROWS, COLS], |_| {
                    let code = [0u16, 0, 0, 0, 0, 0, 0, 1, 3, 2][rng.gen_range(0..10)];
                    (code << 14) | rng.gen_range(0..1u16 << 14)
                })
            };
            Event::new(id).with(frame, data).with(cell, id % cells)
        })
        .collect()
}

/// `input` through `operator` at `workers` workers (worker `k` takes the events whose id
/// modulo the workers is `k`), collected in event order.
fn run<F>(workers: u16, input: &[Event], operator: F) -> Vec<Event>
where
    F: for<'s> Fn(StreamVec<'s, u64, Event>) -> StreamVec<'s, u64, Event> + Send + Sync + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (out, input, operator) = (Arc::clone(&seen), input.to_vec(), Arc::new(operator));
    execute(&Launch::threads(workers), move |worker| {
        let (out, operator) = (Arc::clone(&out), Arc::clone(&operator));
        let mine: Vec<Event> = input
            .iter()
            .filter(|e| e.id as usize % worker.peers() == worker.index())
            .cloned()
            .collect();
        worker.dataflow::<u64, _, _>(|scope| {
            operator(mine.to_stream(scope).container::<Vec<_>>())
                .ordered("Collect", move |_, events: &[Event]| {
                    out.lock().unwrap().extend_from_slice(events)
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    seen
}

/// The stream operator equals calibrating each event directly, at 1, 2 and 3 workers, for
/// 2-module JUNGFRAU (2 storage cells) and 2-module AGIPD (8 memory cells) data.
#[test]
fn the_operator_equals_direct_calibration_at_any_worker_count() {
    let (frame, cell) = (Key::new("det/raw"), Key::new("det/cellId"));
    let invalid = Key::new("det/raw_invalid_pixels");
    for (name, modules, agipd_data, cells) in [
        (
            "jungfrau",
            vec![jungfrau(1, 2), jungfrau(2, 2)],
            false,
            2u64,
        ),
        ("agipd", vec![agipd(3, 8), agipd(4, 8)], true, 8),
    ] {
        let input = events(60, 2, agipd_data, cells);
        // The sequential reference: each module of each event through the operators crate.
        let reference: Vec<(Array3<f32>, u64)> = input
            .iter()
            .map(|e| {
                let raw = e.array::<u16>(frame).unwrap();
                let c = e.get::<u64>(cell).unwrap() as usize;
                let mut out = Array3::<f32>::zeros((2, ROWS, COLS));
                let mut bad = 0;
                for (m, constants) in modules.iter().enumerate() {
                    bad += constants
                        .calibrate(
                            raw.index_axis(Axis(0), m),
                            c,
                            out.index_axis_mut(Axis(0), m),
                        )
                        .unwrap();
                }
                (out, bad)
            })
            .collect();
        let modules = Arc::new(modules);
        for workers in [1u16, 2, 3] {
            let m = Arc::clone(&modules);
            let seen = run(workers, &input, move |events| {
                events.calibrate(frame, Arc::clone(&m), Some(cell))
            });
            assert_eq!(seen.len(), reference.len(), "{name}, {workers} workers");
            for (event, (expected, bad)) in seen.iter().zip(&reference) {
                let got = event.array::<f32>(frame).unwrap();
                assert_eq!(got.shape(), &[2, ROWS, COLS]);
                assert!(
                    got.iter()
                        .zip(expected.iter())
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name}, {workers} workers, event {}",
                    event.id
                );
                assert_eq!(event.get::<u64>(invalid), Some(*bad));
            }
            let bad: u64 = reference.iter().map(|r| r.1).sum();
            assert!(bad > 0);
            eprintln!(
                "{name}, {workers} worker(s): {} events × 2 modules × {ROWS}×{COLS} equal the direct calibration, {bad} invalid pixels",
                seen.len()
            );
        }
    }
}

/// One frame's reductions: photons, per region sum, mean and max, per region count, the
/// azimuthal sums.
type Expected = (u64, Vec<[f64; 3]>, Vec<u64>, Vec<f64>);

/// The fused operator (calibrate and reduce in one pass) equals the plain reductions of the
/// directly calibrated frames (`count_photons`, `roi_stats`, `AzimuthalMap::accumulate`), bit
/// for bit, at 1, 2 and 3 workers: 2-module JUNGFRAU and AGIPD data and a single ePix10ka.
#[test]
fn calibrate_reduce_equals_the_reductions_of_the_calibrated_frames() {
    use shotflow::calibrate::{CalibrateReduce, FrameReductions};
    use shotflow_operators::azimuthal::{AzimuthalMap, Geometry, Radial};
    use shotflow_operators::photons::count_photons;
    use shotflow_operators::roi::{roi_stats, Roi};

    let (frame, cell) = (Key::new("det/raw"), Key::new("det/cellId"));
    let geometry = Geometry {
        distance: 0.1,
        poni1: 0.0,
        poni2: 0.0,
        pixel1: 2e-4,
        pixel2: 2e-4,
        energy_kev: 9.3,
    }
    .with_center(-4.0, 30.0);
    let map = Arc::new(
        AzimuthalMap::new((ROWS, COLS), &geometry, Radial::QInvNm, 24, None, None, 1).unwrap(),
    );
    let rois = vec![
        ("peak".to_string(), Roi::new(4..20, 10..50), Some(3.0)),
        ("all".to_string(), Roi::new(0..ROWS, 0..COLS), None),
    ];
    let key = |suffix: &str| Key::new(&format!("det/raw_{suffix}"));
    let mut compared = 0;
    for (name, modules, agipd_data, cells, adu) in [
        (
            "jungfrau",
            vec![jungfrau(1, 2), jungfrau(2, 2)],
            false,
            2u64,
            9.3,
        ),
        ("agipd", vec![agipd(3, 8), agipd(4, 8)], true, 8, 60.0),
        ("epix10ka", vec![epix10ka(5)], false, 1, 9.3),
    ] {
        let count = modules.len();
        let mut input = events(40, count, agipd_data, cells);
        if name == "epix10ka" {
            // One unstacked frame of 14-bit values with gain bit 14 sometimes set.
            for e in &mut input {
                let raw = e
                    .array::<u16>(frame)
                    .unwrap()
                    .index_axis(Axis(0), 0)
                    .mapv(|v| v & 0x7fff);
                e.set(frame, raw.into_dyn());
            }
        }
        let reductions = Arc::new(FrameReductions {
            adu_per_photon: Some(adu),
            rois: rois.clone(),
            azimuthal: Some(Arc::clone(&map)),
        });
        // The reference: each frame calibrated directly, then the plain reductions.
        let reference: Vec<Vec<Expected>> = input
            .iter()
            .map(|e| {
                let raw = e.array::<u16>(frame).unwrap();
                let c = e.get::<u64>(cell).unwrap() as usize;
                (0..count)
                    .map(|m| {
                        let part = if name == "epix10ka" {
                            raw.view()
                        } else {
                            raw.index_axis(Axis(0), m)
                        };
                        let mut out = Array2::<f32>::zeros((ROWS, COLS));
                        modules[m].calibrate(part, c, out.view_mut()).unwrap();
                        let stats: Vec<_> = rois
                            .iter()
                            .map(|(_, roi, t)| roi_stats(out.view(), roi.clone(), *t))
                            .collect();
                        let mut sums = vec![0.0; map.bins_total()];
                        map.accumulate(out.view(), &mut sums);
                        (
                            count_photons(out.view(), 0.0, adu),
                            stats.iter().map(|s| [s.sum, s.mean, s.max]).collect(),
                            stats.iter().map(|s| s.count).collect(),
                            sums,
                        )
                    })
                    .collect()
            })
            .collect();
        let modules = Arc::new(modules);
        for workers in [1u16, 2, 3] {
            let (m, r) = (Arc::clone(&modules), Arc::clone(&reductions));
            let seen = run(workers, &input, move |events| {
                events.calibrate_reduce(frame, Arc::clone(&m), Some(cell), Arc::clone(&r))
            });
            assert_eq!(seen.len(), reference.len(), "{name}, {workers} workers");
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for (event, expected) in seen.iter().zip(&reference) {
                let what = format!("{name}, {workers} workers, event {}", event.id);
                assert!(!event.contains(frame), "{what}: the raw frame is replaced");
                // One frame: scalars; a stack: one value per module.
                let f64s = |k: Key| -> Vec<f64> {
                    match event.array::<f64>(k) {
                        Some(a) => a.iter().copied().collect(),
                        None => vec![event.get::<f64>(k).expect("a value")],
                    }
                };
                let u64s = |k: Key| -> Vec<u64> {
                    match event.array::<u64>(k) {
                        Some(a) => a.iter().copied().collect(),
                        None => vec![event.get::<u64>(k).expect("a value")],
                    }
                };
                let photons: Vec<u64> = expected.iter().map(|e| e.0).collect();
                assert_eq!(u64s(key("photons")), photons, "{what}");
                for (k, (roi, ..)) in rois.iter().enumerate() {
                    for (j, stat) in ["sum", "mean", "max"].iter().enumerate() {
                        let want: Vec<f64> = expected.iter().map(|e| e.1[k][j]).collect();
                        assert_eq!(
                            bits(&f64s(key(&format!("{roi}_{stat}")))),
                            bits(&want),
                            "{what} {roi} {stat}"
                        );
                    }
                    let want: Vec<u64> = expected.iter().map(|e| e.2[k]).collect();
                    assert_eq!(u64s(key(&format!("{roi}_count"))), want, "{what}");
                }
                let profile = event.array::<f64>(key("azimuthal")).unwrap();
                let want_shape = if count == 1 || name == "epix10ka" {
                    vec![map.bins_total()]
                } else {
                    vec![count, map.bins_total()]
                };
                assert_eq!(profile.shape(), want_shape.as_slice(), "{what}");
                let want: Vec<f64> = expected.iter().flat_map(|e| e.3.clone()).collect();
                assert_eq!(
                    bits(&profile.iter().copied().collect::<Vec<_>>()),
                    bits(&want),
                    "{what}"
                );
                compared += count;
            }
        }
    }
    eprintln!(
        "{compared} frames compared: photons, {} regions × 4 statistics, {} azimuthal bins",
        rois.len(),
        map.bins_total()
    );
}

/// Each detector's constants file, written, read back by h5py (the documented layout) and by
/// `load` (the same constants).
#[test]
fn constants_files_have_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    for (name, module) in [
        ("jungfrau", jungfrau(5, 2)),
        ("epix10ka", epix10ka(6)),
        ("agipd", agipd(7, 4)),
    ] {
        let path = dir.path().join(format!("{name}.h5"));
        save(&path, &module).unwrap();
        let script = "import sys, h5py, json\nf = h5py.File(sys.argv[1], 'r')\n\
             print(json.dumps({'detector': f.attrs['detector'], \
             'datasets': {k: [list(v.shape), str(v.dtype)] for k, v in f.items()}}))";
        let out = common::python_reference("h5py", ["-c", script, path.to_str().unwrap()]);
        let seen: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(seen["detector"], name);
        let expected: &[(&str, Vec<usize>, &str)] = match name {
            "jungfrau" => &[
                ("pedestal", vec![3, 2, ROWS, COLS], "float32"),
                ("gain", vec![3, 2, ROWS, COLS], "float32"),
                ("mask", vec![ROWS, COLS], "uint8"),
            ],
            "epix10ka" => &[
                ("pedestal", vec![7, ROWS, COLS], "float32"),
                ("gain", vec![7, ROWS, COLS], "float32"),
                ("config", vec![ROWS, COLS], "uint8"),
                ("mask", vec![ROWS, COLS], "uint8"),
            ],
            _ => &[
                ("thresholds", vec![4, 2, ROWS, COLS], "float32"),
                ("offset", vec![4, 3, ROWS, COLS], "float32"),
                ("relative_gain", vec![4, 3, ROWS, COLS], "float32"),
                ("bad", vec![4, ROWS, COLS], "uint8"),
            ],
        };
        for (dataset, shape, dtype) in expected {
            assert_eq!(
                seen["datasets"][dataset],
                serde_json::json!([shape, dtype]),
                "{name}: {dataset}"
            );
        }
        // Read back, it calibrates as the original does.
        let back = load(&path).unwrap();
        let input = events(4, 1, name == "agipd", 2);
        for e in &input {
            let raw = e.array::<u16>(Key::new("det/raw")).unwrap();
            let raw = raw.index_axis(Axis(0), 0);
            let (mut a, mut b) = (Array2::zeros((ROWS, COLS)), Array2::zeros((ROWS, COLS)));
            let na = module.calibrate(raw.clone(), 1, a.view_mut()).unwrap();
            let nb = back.calibrate(raw, 1, b.view_mut()).unwrap();
            assert_eq!((a, na), (b, nb), "{name}");
        }
        eprintln!(
            "{name}: {} datasets as documented, calibrates as before",
            expected.len()
        );
    }
}

/// A constants file that cannot be used is an error naming the file and what is wrong.
#[test]
fn bad_constants_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, f: &dyn Fn(&hdf5::File)| {
        let path = dir.path().join(name);
        let file = hdf5::File::create(&path).unwrap();
        f(&file);
        file.close().unwrap();
        path
    };
    let detector = |file: &hdf5::File, name: &str| {
        let v: hdf5::types::VarLenUnicode = name.parse().unwrap();
        file.new_attr::<hdf5::types::VarLenUnicode>()
            .create("detector")
            .unwrap()
            .write_scalar(&v)
            .unwrap();
    };
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (write("no-detector.h5", &|_| {}), "attribute detector"),
        (
            write("lambda.h5", &|f| detector(f, "lambda")),
            "detector \"lambda\"",
        ),
        (
            write("no-gain.h5", &|f| {
                detector(f, "jungfrau");
                f.new_dataset_builder()
                    .with_data(&Array4::<f32>::zeros((3, 1, 4, 4)))
                    .create("pedestal")
                    .unwrap();
            }),
            "gain",
        ),
        (
            write("shapes.h5", &|f| {
                detector(f, "jungfrau");
                f.new_dataset_builder()
                    .with_data(&Array4::<f32>::zeros((3, 1, 4, 4)))
                    .create("pedestal")
                    .unwrap();
                f.new_dataset_builder()
                    .with_data(&Array4::<f32>::zeros((3, 1, 4, 5)))
                    .create("gain")
                    .unwrap();
            }),
            "[3, 1, 4, 5]",
        ),
    ];
    let not_hdf5 = dir.path().join("text.h5");
    std::fs::write(&not_hdf5, "not HDF5").unwrap();
    for (path, needle) in cases.iter().chain([&(not_hdf5.clone(), "open")]) {
        let message = load(path).unwrap_err().to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains(needle),
            "{}: {message}",
            path.display()
        );
    }
    eprintln!("{} bad constants files named", cases.len() + 1);
}

/// `shotflow extract --calibrate jungfrau/raw/raw --constants FILE` of a simulated XTC2 run,
/// at 2 workers: every frame equals psana's `calib_jungfrau` of the same raw frames (extracted
/// without calibration, at 1 worker) with the same constants file, bit for bit. Two
/// --calibrate fields are refused (an XTC2 field holds all its modules).
#[test]
fn extract_calibrates_xtc2_jungfrau_as_psana_does() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let ok = |args: &[&str]| drop(common::shotflow_ok(args));
    ok(&[
        "simulate",
        "--format",
        "xtc2",
        run.to_str().unwrap(),
        "--events",
        "12",
    ]);
    // Constants for the simulated 512×1024 module, one storage cell.
    let mut rng = rand_pcg::Pcg64::seed_from_u64(11);
    let pedestal = Array4::from_shape_fn((3, 1, 512, 1024), |(s, ..)| {
        [100.0, 14000.0, 14500.0][s] + rng.gen_range(-5.0..5.0f32)
    });
    let gain = Array4::from_shape_fn((3, 1, 512, 1024), |(s, ..)| {
        [40.0, 1.5, 0.1][s] * rng.gen_range(0.95..1.05f32)
    });
    let mask = Array2::from_shape_fn((512, 1024), |_| (rng.gen::<f32>() > 0.02) as u8);
    let constants = dir.path().join("jungfrau-constants.h5");
    save(
        &constants,
        &ModuleConstants::Jungfrau(
            JungfrauConstants::new(pedestal, gain.view(), Some(mask), Unit::Energy).unwrap(),
        ),
    )
    .unwrap();
    let (raw, calibrated) = (dir.path().join("raw.h5"), dir.path().join("calibrated.h5"));
    let common = ["--select", "jungfrau", "--no-progress", "--no-report"];
    ok(&[
        &[
            "extract",
            run.to_str().unwrap(),
            "--output",
            raw.to_str().unwrap(),
        ][..],
        &common,
    ]
    .concat());
    ok(&[
        &[
            "extract",
            run.to_str().unwrap(),
            "--output",
            calibrated.to_str().unwrap(),
            "--calibrate",
            "jungfrau/raw/raw",
            "--constants",
            constants.to_str().unwrap(),
            "--workers",
            "2",
        ][..],
        &common,
    ]
    .concat());
    let script = common::reference_script("check_jungfrau_extract.py");
    let out = common::python_reference("psana", [&script, &raw, &calibrated, &constants]);
    let seen: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(seen["events"], 12);
    eprintln!("extract --calibrate: {seen} compared with psana bit for bit");
    // An XTC2 detector field holds all its modules: one --calibrate, refused before anything
    // is written.
    let refused = dir.path().join("refused.h5");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shotflow"))
        .args(["extract", run.to_str().unwrap(), "--output"])
        .arg(&refused)
        .args([
            "--calibrate",
            "jungfrau/raw/raw",
            "--calibrate",
            "jungfrau/raw/raw",
        ])
        .args(["--constants", constants.to_str().unwrap()])
        .args(common)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("calibrate one field"),
        "{stderr}"
    );
    assert!(!refused.exists(), "a refused extraction wrote {refused:?}");
}

/// A whole AGIPD module's constants (512×128), stages at the levels the mock run's frames are
/// filled with (tests/check_agipd_extract.py): thresholds near 5200 and 6800.
fn agipd_module(seed: u64, cells: usize) -> ModuleConstants {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut normal = |mean: f32, spread: f32| mean + spread * (rng.gen::<f32>() - 0.5) * 2.0;
    let thresholds = Array4::from_shape_fn((cells, 2, 512, 128), |(_, t, ..)| {
        normal([5200.0, 6800.0][t], 40.0)
    });
    let offset = Array4::from_shape_fn((cells, 3, 512, 128), |(_, s, ..)| {
        normal([4000.0, 5000.0, 5500.0][s], 30.0)
    });
    let relative_gain = Array4::from_shape_fn((cells, 3, 512, 128), |(_, s, ..)| {
        normal([1.0, 45.0, 1000.0][s], [0.02, 1.0, 20.0][s])
    });
    let bad = Array3::from_shape_fn((cells, 512, 128), |_| normal(0.5, 0.5) < 0.005);
    ModuleConstants::Agipd(AgipdConstants::new(thresholds, offset, relative_gain, bad).unwrap())
}

/// `shotflow extract --calibrate SOURCE/image.data --constants FILE`, once per module, of
/// extra-data's mock SPB run (modules 0 and 1 filled with mixed-stage raw data, each with its
/// own constants), each frame with its cell from `image.cellId`, at 1, 2 and 3 workers and with
/// 2 processes: every train's sum and mean of each module's calibrated frames equal numpy's
/// published AGIPD correction of the frames extra-data reads. Then the errors: a field that is
/// not selected, constants files that do not pair with the fields, a field given twice, and
/// cells the constants do not have.
#[test]
fn extract_calibrates_euxfel_agipd_frames_with_their_cells() {
    const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("spb");
    let script = common::reference_script("check_agipd_extract.py");
    let python = |args: &[&str]| {
        let mut all = vec![script.to_str().unwrap()];
        all.extend_from_slice(args);
        eprint!("{}", common::python_reference("extra-data", all));
    };
    python(&["setup", run.to_str().unwrap()]);
    let constants = dir.path().join("agipd-constants.h5");
    save(&constants, &agipd_module(21, 64)).unwrap();
    let constants1 = dir.path().join("agipd-constants-1.h5");
    save(&constants1, &agipd_module(23, 64)).unwrap();
    let source = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf";
    let field = format!("{source}/image.data");
    let source1 = "SPB_DET_AGIPD1M-1/DET/1CH0:xtdf";
    let field1 = format!("{source1}/image.data");
    let shotflow = |output: &Path, extra: &[&str]| {
        std::process::Command::new(SHOTFLOW)
            .args(["extract", run.to_str().unwrap(), "--select"])
            .arg(format!("{source}:image.data"))
            .args([
                "--output",
                output.to_str().unwrap(),
                "--no-progress",
                "--no-report",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let args = |output: &Path| -> Vec<String> {
        [
            "extract",
            run.to_str().unwrap(),
            "--select",
            &format!("{source}:image.data"),
            "--select",
            &format!("{source1}:image.data"),
            "--output",
            output.to_str().unwrap(),
            "--no-progress",
            "--no-report",
            "--calibrate",
            field.as_str(),
            "--calibrate",
            field1.as_str(),
            "--constants",
            constants.to_str().unwrap(),
            "--constants",
            constants1.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    at_every_launch(dir.path(), &args, |output, name| {
        python(&[
            "check",
            run.to_str().unwrap(),
            output.to_str().unwrap(),
            name,
            constants.to_str().unwrap(),
            constants1.to_str().unwrap(),
        ])
    });
    // Bad requests, named.
    let bad = dir.path().join("bad.h5");
    let few_cells = dir.path().join("agipd-8-cells.h5");
    save(&few_cells, &agipd_module(22, 8)).unwrap();
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec![
                "--calibrate",
                field1.as_str(),
                "--constants",
                constants.to_str().unwrap(),
            ],
            "not among the selected fields",
        ),
        (
            vec![
                "--calibrate",
                field.as_str(),
                "--constants",
                constants.to_str().unwrap(),
                "--constants",
                constants.to_str().unwrap(),
            ],
            "--calibrate is given 1 time(s) and --constants 2",
        ),
        (
            vec![
                "--calibrate",
                field.as_str(),
                "--calibrate",
                field.as_str(),
                "--constants",
                constants.to_str().unwrap(),
                "--constants",
                constants.to_str().unwrap(),
            ],
            "given twice",
        ),
        (
            vec![
                "--calibrate",
                field.as_str(),
                "--constants",
                few_cells.to_str().unwrap(),
            ],
            "storage cell",
        ),
    ];
    for (args, expected) in &cases {
        let out = shotflow(&bad, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        if *expected != "storage cell" {
            // Refused before the extraction starts: nothing is written.
            let written: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("bad"))
                .collect();
            assert!(written.is_empty(), "{args:?} wrote {written:?}");
        }
    }
    eprintln!("{} bad requests named", cases.len());
}

/// `shotflow extract --calibrate SOURCE/data.adc --constants FILE` of a raw EuXFEL JUNGFRAU
/// run from extra-data's mock writer (16 frames a train, the gain bits apart in `data.gain`,
/// storage cells 0–3 from `data.memoryCell`), at 1, 2 and 3 workers and with 2 processes:
/// every train's sum and mean of the calibrated frames equal psana's `calib_jungfrau` of the
/// same frames (their gain bits put back over their ADC values) with the constants of each
/// frame's cell, and the pixels of gain 2 are counted per train. An ADC value of more than 14
/// bits is named with its train and pixel.
#[test]
fn extract_calibrates_euxfel_jungfrau_as_psana_does() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("jungfrau");
    let script = common::reference_script("check_jungfrau_euxfel.py");
    let python = |args: &[&str]| {
        let mut all = vec![script.to_str().unwrap()];
        all.extend_from_slice(args);
        eprint!("{}", common::python_reference("extra-data and psana", all));
    };
    python(&["setup", run.to_str().unwrap()]);
    let constants = dir.path().join("jungfrau-constants.h5");
    save(&constants, &common::jungfrau_module_constants(31, 4)).unwrap();
    let source = "SPB_IRDA_JF4M/DET/JNGFR01:daqOutput";
    let field = format!("{source}/data.adc");
    let args = |output: &Path| -> Vec<String> {
        [
            "extract",
            run.to_str().unwrap(),
            "--select",
            &format!("{source}:data.adc"),
            "--output",
            output.to_str().unwrap(),
            "--no-progress",
            "--no-report",
            "--calibrate",
            &field,
            "--constants",
            constants.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    at_every_launch(dir.path(), &args, |output, name| {
        python(&[
            "check",
            run.to_str().unwrap(),
            output.to_str().unwrap(),
            name,
            constants.to_str().unwrap(),
        ])
    });
    // A 15-bit ADC value in the second train: named, and the extraction fails.
    python(&["corrupt", run.to_str().unwrap()]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shotflow"))
        .args(args(&dir.path().join("corrupt.h5")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("ADC value 20000 at [0, 5, 7, 9] has more than 14 bits")
            && stderr.contains(&field),
        "{stderr}"
    );
    eprintln!("named: {}", stderr.trim());
}

/// Runs `shotflow args(output)` at 1, 2 and 3 workers and in 2 processes, each into its own
/// output, and hands each output and the launch's name to `check`.
fn at_every_launch(dir: &Path, args: &dyn Fn(&Path) -> Vec<String>, check: impl Fn(&Path, &str)) {
    const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");
    for name in ["1 worker", "2 workers", "3 workers", "2 processes"] {
        let output = dir.join(format!("calibrated-{}.h5", name.replace(' ', "-")));
        let outputs = if name == "2 processes" {
            let rendezvous = tempfile::tempdir().unwrap();
            let children: Vec<_> = (0..2)
                .map(|p| {
                    let launch = common::cluster_args(2, p, 1, rendezvous.path());
                    common::spawn(SHOTFLOW, &[args(&output), launch].concat())
                })
                .collect();
            children
                .into_iter()
                .map(|c| common::wait_bounded(c, std::time::Duration::from_secs(300)))
                .collect()
        } else {
            let workers = name.split(' ').next().unwrap().to_string();
            let launch = vec!["--workers".to_string(), workers];
            let child = common::spawn(SHOTFLOW, &[args(&output), launch].concat());
            vec![common::wait_bounded(
                child,
                std::time::Duration::from_secs(300),
            )]
        };
        for out in outputs {
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        check(&output, name);
    }
}

/// `shotflow demo --constants FILE` with the demo's own constants (`--write-constants`)
/// calibrates every module frame into photons before reducing it, and gives what the raw
/// reductions give: the same curve and per-shot photon counts, and the same azimuthal profile
/// in photons instead of ADU above the pedestal; for synthetic shots, a simulated EuXFEL run of
/// two modules (one file for both) and a simulated XTC2 run, calibrated and reduced in one pass
/// (`calibrate_reduce`) in 2 processes, at 3 workers and at 2 against raw at 1 worker.
/// Constants of another shape are named.
#[test]
fn the_demo_calibrated_with_its_own_constants_gives_the_raw_result() {
    const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");
    let dir = tempfile::tempdir().unwrap();
    let constants = dir.path().join("demo-constants.h5");
    let run = |args: &[String]| common::shotflow_ok(args).stdout;
    run(&[
        "demo".into(),
        "--write-constants".into(),
        constants.display().to_string(),
        "--frame".into(),
        "64x32".into(),
    ]);
    let xtc2: Vec<String> = common::small_run_args()
        .into_iter()
        .map(|a| if a == "run" { "xtc2".to_string() } else { a })
        .collect();
    let mut compared = (0, 0);
    for (name, base, spread) in [
        (
            "synthetic",
            common::small_demo_args(),
            "--processes 2 --workers 1",
        ),
        ("run", common::small_run_args(), "--workers 3"),
        ("xtc2", xtc2, "--workers 2"),
    ] {
        let base: Vec<String> = base.into_iter().filter(|a| a != "--no-output").collect();
        let output = |tag: &str| -> Vec<String> {
            let file = dir.path().join(format!("{name}-{tag}.h5"));
            let plot = dir.path().join(format!("{name}-{tag}.png"));
            vec![
                "--output".into(),
                file.display().to_string(),
                "--plot".into(),
                plot.display().to_string(),
            ]
        };
        let raw = run(&[base.clone(), output("raw")].concat());
        let calibrated = run(&[
            base.clone(),
            output("calibrated"),
            vec!["--constants".into(), constants.display().to_string()],
            // The calibrated runs spread otherwise than the raw one (1 worker).
            spread.split(' ').map(String::from).collect(),
        ]
        .concat());
        let curve = |stdout: &[u8]| {
            let json: serde_json::Value = serde_json::from_slice(stdout).unwrap();
            json["points"].clone()
        };
        assert_eq!(curve(&raw), curve(&calibrated), "{name}: the curves differ");
        let read = |tag: &str| {
            let file = hdf5::File::open(dir.path().join(format!("{name}-{tag}.h5"))).unwrap();
            let photons = file.dataset("photons").unwrap().read_raw::<u64>().unwrap();
            let azav = file.dataset("azav").unwrap().read_2d::<f32>().unwrap();
            (photons, azav)
        };
        let ((p_raw, a_raw), (p_cal, a_cal)) = (read("raw"), read("calibrated"));
        assert_eq!(p_raw, p_cal, "{name}: photons per shot differ");
        assert_eq!(a_raw.dim(), a_cal.dim());
        for (r, c) in a_raw.iter().zip(a_cal.iter()) {
            // ADU above the pedestal against photons of 60 ADU.
            let adu = *c as f64 * PHOTON_ADU as f64;
            assert!(
                (adu - *r as f64).abs() <= 1e-4 * (r.abs() as f64).max(1.0),
                "{name}: profile {r} ADU against {c} photons"
            );
        }
        compared.0 += p_raw.len();
        compared.1 += a_raw.len();
        eprintln!(
            "{name} at {spread}: {} shots, {} profile bins equal",
            p_raw.len(),
            a_raw.len()
        );
    }
    // Constants of another shape are named.
    let other = dir.path().join("other.h5");
    run(&[
        "demo".into(),
        "--write-constants".into(),
        other.display().to_string(),
    ]);
    let out = std::process::Command::new(SHOTFLOW)
        .args(common::small_demo_args())
        .arg("--constants")
        .arg(&other)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("other.h5") && stderr.contains("64×32"),
        "{stderr}"
    );
    eprintln!(
        "{} shots and {} profile values compared",
        compared.0, compared.1
    );
}
