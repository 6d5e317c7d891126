//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use shotflow::source::Synthetic;

/// The `shotflow demo` pipeline: application code that lives with the binary, included here to
/// run it in-process at several worker counts and to compare it with sequential references.
#[path = "../../src/cli/demo/pipeline.rs"]
pub mod demo;

use demo::{Curve, DemoConfig};

/// The Python with the reference packages (`PYTHON`, else `python3`).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A command running [`python`]. (It does not lock HDF5 files: `.cargo/config.toml` says
/// why.)
pub fn python_command() -> Command {
    Command::new(python())
}

/// The path of the reference script `tests/<name>`.
pub fn reference_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// Runs a Python reference (`args`: a script and its arguments, or `-c CODE ...`; psana kept
/// to one process) and returns what it printed, after asserting that it succeeded: a missing
/// reference package fails the test, with the script's output in the message.
pub fn python_reference<I, S>(what: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = python_command()
        .args(args)
        .env("PS_PARALLEL", "none")
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The arguments of [`small_demo_args`] writing the smalldata output to `master`, plus `extra`.
pub fn small_demo_output_args(master: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = small_demo_args()
        .into_iter()
        .filter(|a| a != "--no-output")
        .collect();
    args.extend(["--output".to_string(), master.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `shotflow ARGS` to its end and returns its output, failing with the arguments and its
/// stderr when it does not succeed.
pub fn shotflow_ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_shotflow"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The small demo run in one process (bounded by `limit`), writing `master`: the datasets
/// that runs split across processes must equal.
pub fn one_process_demo(master: &std::path::Path, limit: Duration) -> Datasets {
    let out = wait_bounded(
        spawn(
            env!("CARGO_BIN_EXE_shotflow"),
            &small_demo_output_args(master, &[]),
        ),
        limit,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    result_datasets(master)
}

/// A smalldata file's datasets as [`datasets`] reads them: name → (shape, bytes).
pub type Datasets = std::collections::BTreeMap<String, (Vec<usize>, Vec<u8>)>;

/// `got` holds exactly the datasets of `reference`, each equal byte for byte; `what` names
/// the run in a failure. Returns how many datasets were compared.
pub fn assert_same_datasets(got: &Datasets, reference: &Datasets, what: &str) -> usize {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>(),
        "{what}: datasets"
    );
    for (name, value) in reference {
        assert!(got[name] == *value, "{name} differs {what}");
    }
    reference.len()
}

/// Every dataset of a smalldata master but the run's own figures (`shotflow/report`: times and
/// the worker layout), which differ between runs of the same data.
pub fn result_datasets(master: &std::path::Path) -> Datasets {
    let mut all = datasets(master);
    all.retain(|name, _| !name.starts_with("shotflow/report"));
    all
}

/// A demo configuration small enough for debug builds.
pub fn small_demo() -> DemoConfig {
    DemoConfig {
        source: Synthetic {
            events: 1_203,
            batch_size: 50,
            frame: Some([64, 32]),
            photons: 40.0,
            ..Synthetic::default()
        },
        ..DemoConfig::default()
    }
}

/// The command-line arguments that make `shotflow demo` run [`small_demo`].
pub fn small_demo_args() -> Vec<String> {
    [
        "demo",
        "--source",
        "synthetic",
        "--events",
        "1203",
        "--batch-size",
        "50",
        "--frame",
        "64x32",
        "--photons",
        "40",
        "--json",
        "--no-output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The demo's curve computed by a plain loop over the same shots.
pub fn demo_reference(config: &DemoConfig) -> Curve {
    let mut curve = Curve::default();
    for i in 0..config.source.events {
        let row = demo::reduce(config, &config.source.event(i));
        if row.pulse_energy >= config.energy_cut {
            curve.add(&row);
        }
    }
    curve
}

/// Waits for a child at most `limit`, killing it (by its own PID) if it overstays. Its output
/// is read while it runs, so a chatty child never blocks on a full pipe.
pub fn wait_bounded(child: Child, limit: Duration) -> Output {
    use std::io::Read;
    let started = Instant::now();
    let mut child = child;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "process overstayed {limit:?}; stderr: {}",
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Spawns `program args` with piped output.
pub fn spawn(program: &str, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// The launch arguments of process `process` of a loopback cluster of `processes` processes of
/// `workers` workers each, meeting in the rendezvous directory `dir`.
pub fn cluster_args(
    processes: usize,
    process: usize,
    workers: usize,
    dir: &std::path::Path,
) -> Vec<String> {
    vec![
        "--processes".into(),
        processes.to_string(),
        "--process".into(),
        process.to_string(),
        "--workers".into(),
        workers.to_string(),
        "--rendezvous".into(),
        dir.display().to_string(),
        "--connect-timeout".into(),
        "30".into(),
    ]
}

/// A simulated run small enough for debug builds: two modules of the demo's AGIPD layout.
pub fn small_run() -> shotflow::exdf::simulate::Simulation {
    shotflow::exdf::simulate::Simulation {
        trains: 12,
        modules: 2,
        frames: 6,
        frame: [64, 32],
        trains_per_file: 6,
        photons: 40.0,
        ..Default::default()
    }
}

/// The command-line arguments that make `shotflow demo` read [`small_run`].
pub fn small_run_args() -> Vec<String> {
    [
        "demo",
        "--source",
        "run",
        "--trains",
        "12",
        "--pulses",
        "6",
        "--modules",
        "2",
        "--frame",
        "64x32",
        "--photons",
        "40",
        "--json",
        "--no-output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The demo's curve for a simulated run, by a plain loop: all trains read at once, each train
/// split into pulses by hand (not by the `explode_pulses` operator), reduced, cut, folded.
pub fn run_reference(simulation: &shotflow::exdf::simulate::Simulation, energy_cut: f64) -> Curve {
    use demo::{reduce_pulse, simulated_detector, RunKeys};
    use shotflow::event::{Event, Value};
    use shotflow::exdf::explode::pulse_event_id;
    use shotflow::exdf::ExdfRun;

    let detector = simulated_detector(simulation).unwrap();
    let simulation = shotflow::exdf::simulate::Simulation {
        geometry: Some(std::sync::Arc::clone(&detector)),
        ..simulation.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    simulation.write(dir.path()).unwrap();
    let keys = RunKeys::new(detector);
    let run = ExdfRun::open(dir.path()).unwrap();
    let selected = run.select(&keys.selectors()).unwrap();
    let mut open = |index: usize, name: &str| {
        Ok(hdf5::File::open(&run.files[index].path)
            .unwrap()
            .dataset(name)
            .unwrap())
    };
    let trains = run.read(&run.trains, &selected, &mut open).unwrap();
    let mut curve = Curve::default();
    for train in trains {
        let pulse_ids = train.array::<u64>(keys.pulse_id).unwrap().to_owned();
        let modules: Vec<_> = keys
            .frames
            .iter()
            .map(|key| train.array::<u16>(*key).unwrap().to_owned())
            .collect();
        let energies = train.array::<f32>(keys.intensity).unwrap().to_owned();
        for (j, pulse) in pulse_ids.iter().enumerate() {
            let mut event = Event::new(pulse_event_id(train.id, *pulse))
                .with(keys.intensity, *energies.iter().nth(j).unwrap()); // [1, 1000]: one XGM row per train
            for (key, frames) in keys.frames.iter().zip(&modules) {
                let frame = frames.index_axis(ndarray::Axis(0), j).to_owned();
                event.set(*key, Value::from(frame));
            }
            for key in [keys.delay, keys.shutter] {
                if let Some(v) = train.value(key) {
                    event.set(key, v.clone());
                }
            }
            let row = reduce_pulse(&event, &keys);
            if row.pulse_energy >= energy_cut {
                curve.add(&row);
            }
        }
    }
    curve
}

/// Every dataset of two smalldata files, read back with the hdf5 crate, as raw bytes; the
/// `shotflow/` group of run metadata excepted (it says how the result was made).
pub fn datasets(path: &std::path::Path) -> Datasets {
    fn walk(
        group: &hdf5::Group,
        prefix: &str,
        out: &mut std::collections::BTreeMap<String, (Vec<usize>, Vec<u8>)>,
    ) {
        for name in group.member_names().unwrap() {
            if prefix.is_empty() && name == "shotflow" {
                continue;
            }
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if let Ok(d) = group.dataset(&name) {
                let text = d.dtype().unwrap().to_descriptor().unwrap();
                let bytes = match d.dtype().unwrap().size() {
                    _ if matches!(text, hdf5::types::TypeDescriptor::VarLenUnicode) => d
                        .read_raw::<hdf5::types::VarLenUnicode>()
                        .unwrap()
                        .iter()
                        .flat_map(|s| s.as_bytes().to_vec())
                        .collect(),
                    1 => d.read_raw::<u8>().unwrap(),
                    2 => d
                        .read_raw::<u16>()
                        .unwrap()
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                    4 => d
                        .read_raw::<u32>()
                        .unwrap()
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                    8 => d
                        .read_raw::<u64>()
                        .unwrap()
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                    n => panic!("{path}: unexpected element size {n}"),
                };
                out.insert(path, (d.shape(), bytes));
            } else {
                walk(&group.group(&name).unwrap(), &path, out);
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(&hdf5::File::open(path).unwrap(), "", &mut out);
    out
}

/// The pump-probe curve the demo saved in `master` (saved summaries `pump_probe/*`) is the
/// curve it printed (`--json`'s points): the same delays and counts, and sums equal to float
/// rounding (the file sums per batch, then batches in order; the printed curve adds shot after
/// shot). Returns the values compared.
pub fn assert_saved_curve(master: &std::path::Path, json: &serde_json::Value) -> usize {
    let file = hdf5::File::open(master).unwrap();
    let f64s = |name: &str| file.dataset(name).unwrap().read_raw::<f64>().unwrap();
    let u64s = |name: &str| file.dataset(name).unwrap().read_raw::<u64>().unwrap();
    let (delay, n_on, sum_on) = (
        f64s("pump_probe/delay"),
        u64s("pump_probe/n_on"),
        f64s("pump_probe/sum_on"),
    );
    let (n_off, sum_off) = (u64s("pump_probe/n_off"), f64s("pump_probe/sum_off"));
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), delay.len(), "{}", master.display());
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
    for (k, p) in points.iter().enumerate() {
        assert_eq!(p["delay"].as_f64().unwrap().to_bits(), delay[k].to_bits());
        assert_eq!(p["n_on"].as_u64().unwrap(), n_on[k], "delay {}", delay[k]);
        assert_eq!(p["n_off"].as_u64().unwrap(), n_off[k], "delay {}", delay[k]);
        assert!(
            close(p["sum_on"].as_f64().unwrap(), sum_on[k]),
            "delay {}",
            delay[k]
        );
        assert!(
            close(p["sum_off"].as_f64().unwrap(), sum_off[k]),
            "delay {}",
            delay[k]
        );
    }
    points.len() * 5
}

/// Constants of a whole JUNGFRAU module (512×1024) for `cells` storage cells, stages at psana's
/// usual levels, 2 % of pixels masked.
pub fn jungfrau_module_constants(
    seed: u64,
    cells: usize,
) -> shotflow_operators::gain::ModuleConstants {
    use rand::{Rng, SeedableRng};
    use shotflow_operators::gain::jungfrau::{JungfrauConstants, Unit};
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let pedestal = ndarray::Array4::from_shape_fn((3, cells, 512, 1024), |(s, ..)| {
        [3000.0, 14000.0, 14500.0][s] + rng.gen_range(-50.0..50.0f32)
    });
    let gain = ndarray::Array4::from_shape_fn((3, cells, 512, 1024), |(s, ..)| {
        [40.0, 1.5, 0.1][s] * rng.gen_range(0.95..1.05f32)
    });
    let mask = ndarray::Array2::from_shape_fn((512, 1024), |_| (rng.gen::<f32>() > 0.02) as u8);
    shotflow_operators::gain::ModuleConstants::Jungfrau(
        JungfrauConstants::new(pedestal, gain.view(), Some(mask), Unit::Energy).unwrap(),
    )
}
