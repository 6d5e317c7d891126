//! The EXDF reader against extra-data: runs written by extra-data's own mock generator (filled
//! with known values) are read by shotflow at 1, 2 and 3 workers; every selected key, train
//! and row must equal what extra-data returns (tests/exdf_reference.py compares).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use shotflow::event::{DType, Element, Event, Value};
use shotflow::exdf::{ExdfRun, ExdfSource, Selected, Selector, SourceKind};
use shotflow::runtime::{execute_plan, Plan};
use shotflow::sink::SinkExt;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exdf_reference.py")
}

/// extra-data's mock runs, made once per test binary.
fn mock_runs() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = common::python_command()
            .arg(script())
            .arg("make")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "extra-data mock runs (pip install extra-data): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

fn read_events(run: &Path, selectors: &[&str], plan: &Plan) -> (Vec<Event>, Vec<Selected>) {
    let run = Arc::new(ExdfRun::open(run).unwrap());
    let selectors: Vec<Selector> = selectors
        .iter()
        .map(|s| Selector::parse(s).unwrap())
        .collect();
    let selected = Arc::new(run.select(&selectors).unwrap());
    let chosen = selected.as_ref().clone();
    let events = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&events);
    execute_plan(plan, move |worker| {
        let (run, selected, out) = (Arc::clone(&run), Arc::clone(&selected), Arc::clone(&out));
        worker.dataflow(|scope| {
            scope
                .exdf(run, selected, 3)
                .ordered("Collect", move |_, events: &[Event]| {
                    out.lock().unwrap().extend_from_slice(events)
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let events = events.lock().unwrap().clone();
    (events, chosen)
}

fn create_group(file: &hdf5::File, path: &str) -> hdf5::Group {
    let mut prefix = String::new();
    for part in path.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if file.group(&prefix).is_err() {
            file.create_group(&prefix).unwrap();
        }
    }
    file.group(path).unwrap()
}

/// Writes every selected key as `<source>/<key>/data` (rows of all trains, concatenated) and
/// `.../trains` (the train of each row): what extra-data's `ndarray()` and
/// `train_id_coordinates()` give.
fn dump(events: &[Event], selected: &[Selected], path: &Path) {
    let file = hdf5::File::create(path).unwrap();
    for sel in selected {
        let group = create_group(&file, &format!("{}/{}", sel.source, sel.key.name));
        let control = sel.kind == SourceKind::Control;
        let mut trains = Vec::new();
        let mut rows = 0usize;
        for e in events {
            if let Some(v) = e.value(sel.field) {
                let n = if control { 1 } else { v.shape()[0] };
                trains.extend(std::iter::repeat_n(e.id, n));
                rows += n;
            }
        }
        let mut shape = vec![rows];
        shape.extend_from_slice(&sel.key.shape);
        macro_rules! write {
            ($t:ty) => {{
                let mut data: Vec<$t> = Vec::new();
                for e in events {
                    match e.value(sel.field) {
                        Some(Value::Array(a)) => {
                            data.extend(<$t as Element>::view(a).unwrap().iter().copied())
                        }
                        Some(v) => data.push(<$t as Element>::from_value(v).unwrap()),
                        None => {}
                    }
                }
                let array = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), data).unwrap();
                group
                    .new_dataset_builder()
                    .with_data(&array)
                    .create("data")
                    .unwrap();
            }};
        }
        match sel.key.dtype {
            DType::Bool => write!(bool),
            DType::U8 => write!(u8),
            DType::U16 => write!(u16),
            DType::U32 => write!(u32),
            DType::U64 => write!(u64),
            DType::I8 => write!(i8),
            DType::I16 => write!(i16),
            DType::I32 => write!(i32),
            DType::I64 => write!(i64),
            DType::F32 => write!(f32),
            DType::F64 => write!(f64),
        }
        group
            .new_dataset_builder()
            .with_data(&ndarray::Array1::from(trains))
            .create("trains")
            .unwrap();
    }
}

fn compare(run: &Path, selectors: &[&str]) {
    let (events, selected) = read_events(run, selectors, &Plan::Thread);
    assert!(!events.is_empty());
    for plan in [Plan::Process { workers: 2 }, Plan::Process { workers: 3 }] {
        assert!(
            read_events(run, selectors, &plan).0 == events,
            "{} differs from 1 worker",
            plan.describe()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let dumped = dir.path().join("dump.h5");
    dump(&events, &selected, &dumped);
    let out = common::python_command()
        .arg(script())
        .arg("compare")
        .arg(run)
        .arg(&dumped)
        .args(selectors)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn spb_slow_and_train_resolved_data_equal_extra_data() {
    compare(
        &mock_runs().join("spb"),
        &[
            "SA1_XTD2_XGM/DOOCS/MAIN:beamPosition.*",
            "*_XGM/DOOCS/MAIN:output:data.intensityTD",
            "SPB_DET_AGIPD1M-1/DET/*CH0:xtdf:image.pulseId",
        ],
    );
}

#[test]
fn reduced_spb_varying_frame_counts_equal_extra_data() {
    compare(
        &mock_runs().join("rspb"),
        &[
            "SPB_DET_AGIPD1M-1/DET/3CH0:xtdf:image.data",
            "SPB_DET_AGIPD1M-1/DET/3CH0:xtdf:image.cellId",
        ],
    );
}

#[test]
fn scs_sequence_files_and_format_1_0_equal_extra_data() {
    compare(
        &mock_runs().join("scs"),
        &[
            "SCS_DET_DSSC1M-1/DET/0CH0:xtdf:image.cellId",
            "SCS_DET_DSSC1M-1/DET/0CH0:xtdf:header.pulseCount",
        ],
    );
}

#[test]
fn fxe_and_jungfrau_equal_extra_data() {
    compare(
        &mock_runs().join("fxe"),
        &[
            "SA1_XTD2_XGM/DOOCS/MAIN:output:data.intensityTD",
            "SA1_XTD2_XGM/DOOCS/MAIN:beamPosition.iyPos.value",
        ],
    );
    compare(
        &mock_runs().join("jungfrau"),
        &[
            "SPB_IRDA_JF4M/DET/JNGFR02:daqOutput:data.frameNumber",
            "SPB_IRDA_JF4M/DET/JNGFR02:daqOutput:data.memoryCell",
        ],
    );
}

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");

fn simulated(dir: &Path, extra: &[&str]) {
    let out = Command::new(SHOTFLOW)
        .args([
            "simulate",
            &dir.display().to_string(),
            "--trains",
            "40",
            "--frames",
            "4",
            "--trains-per-file",
            "16",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn simulated_runs_pass_extra_data_validate_and_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r0001");
    simulated(&run, &[]);
    // `extra-data-validate` is this module's console script; calling the module avoids PATH.
    let out = common::python_command()
        .args(["-m", "extra_data.validation"])
        .arg(&run)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    compare(
        &run,
        &[
            "SPB_DET_AGIPD1M-1/DET/*CH0:xtdf",
            "SA1_XTD2_XGM/DOOCS/MAIN*",
            "SPB_IRU_MOTORS/MDL/DELAY",
            "SPB_LAS_SYS/PPL/SHUTTER",
        ],
    );
}

#[test]
fn extract_writes_per_train_rows_that_h5py_and_extra_data_agree_on() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r0001");
    simulated(&run, &[]);
    let output = dir.path().join("extract.h5");
    let out = Command::new(SHOTFLOW)
        .args([
            "extract",
            &run.display().to_string(),
            "--select",
            "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf:image.data",
            "--select",
            "SPB_IRU_MOTORS/MDL/DELAY:actualPosition.value",
        ])
        .args(["--output", &output.display().to_string(), "--workers", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = r#"
import sys, h5py, numpy as np
from extra_data import RunDirectory
run = RunDirectory(sys.argv[1]); f = h5py.File(sys.argv[2])
src = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
data = run[src, "image.data"].xarray()
sums = data.groupby("trainId").sum(dim=data.dims[0]).sum(dim=data.dims[1:]).values.astype(np.float64)
np.testing.assert_array_equal(f["timestamp"][:], run.train_ids)
np.testing.assert_array_equal(f[src + "/image.data.sum"][:], sums)
np.testing.assert_array_equal(f["SPB_IRU_MOTORS/MDL/DELAY/actualPosition.value"][:], run["SPB_IRU_MOTORS/MDL/DELAY", "actualPosition.value"].ndarray())
print("ok")
"#;
    let o = common::python_command()
        .args(["-c", check])
        .arg(&run)
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn bad_runs_give_clear_errors() {
    let missing = ExdfRun::open(Path::new("/nonexistent/r0001"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("/nonexistent/r0001"), "{missing}");

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r0002");
    simulated(&run, &["--modules", "1"]);
    // a truncated file: the error names it
    let victim = run.join("RAW-R0001-AGIPD00-S00001.h5");
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let error = ExdfRun::open(&run).map(|_| ()).map_err(|e| e.to_string());
    match error {
        Err(e) => assert!(e.contains("RAW-R0001-AGIPD00-S00001.h5"), "{e}"),
        // HDF5 may open a file truncated after its metadata; reading the lost frames must fail
        Ok(()) => {
            let result = std::panic::catch_unwind(|| {
                read_events(
                    &run,
                    &["SPB_DET_AGIPD1M-1/DET/0CH0:xtdf:image.data"],
                    &Plan::Thread,
                )
            });
            assert!(result.is_err());
        }
    }
    let nothing = ExdfRun::open(dir.path()).unwrap_err().to_string();
    assert!(nothing.contains("no EXDF files"), "{nothing}");
}

#[test]
fn out_of_order_trains_are_skipped_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r0003");
    simulated(&run, &["--modules", "1"]);
    let path = run.join("RAW-R0001-AGIPD00-S00000.h5");
    let script = "import sys,h5py\nf=h5py.File(sys.argv[1],'r+')\nt=f['INDEX/trainId'][:]\nt[5]=t[3]\nf['INDEX/trainId'][:]=t\n";
    let o = common::python_command()
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success());
    let opened = ExdfRun::open(&run).unwrap();
    assert_eq!(opened.suspect_trains, 1);
    assert_eq!(
        opened.trains.len(),
        40,
        "the train still comes from the DA01 file"
    );
}

#[test]
fn corrected_format_1_2_equals_extra_data() {
    compare(
        &mock_runs().join("proc"),
        &[
            "SPB_DET_AGIPD1M-1/CORR/1CH0:output:image.cellId",
            "SPB_DET_AGIPD1M-1/CORR/1CH0:output:header.pulseCount",
        ],
    );
}

/// Runs `script` (Python with h5py) on `path`.
fn h5py(script: &str, path: &Path) {
    let o = common::python_command()
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A dataset whose dtype differs between two files of one run: an error naming both files and
/// the dataset when the conversion would lose values (float64 1e6 into the run's float32 is
/// exact, but into uint16 it was 65535); an exact one (int16 into float32) is read, with a
/// warning, and gives the values h5py reads.
#[test]
fn a_dtype_that_differs_between_files_is_an_error_unless_exact() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r0004");
    simulated(&run, &["--modules", "1"]);
    let second = run.join("RAW-R0001-DA01-S00001.h5");
    let key = "INSTRUMENT/SA1_XTD2_XGM/DOOCS/MAIN:output/data/intensityTD";
    let selector = ["SA1_XTD2_XGM/DOOCS/MAIN:output:data.intensityTD"];
    let retype = |dtype: &str| {
        format!(
            "import sys,h5py,numpy as np\nf=h5py.File(sys.argv[1],'r+')\nk='{key}'\n\
             v=f[k][()]\ndel f[k]\nf[k]=np.round(v).astype('{dtype}')\n"
        )
    };
    h5py(&retype("float64"), &second);
    let run_ = ExdfRun::open(&run).unwrap();
    let selected = run_
        .select(&[Selector::parse(selector[0]).unwrap()])
        .unwrap();
    let mut open = |index: usize, name: &str| {
        Ok(hdf5::File::open(&run_.files[index].path)
            .unwrap()
            .dataset(name)
            .unwrap())
    };
    let error = run_
        .read(&run_.trains, &selected, &mut open)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("RAW-R0001-DA01-S00001.h5")
            && error.contains(&format!("{key} is float64 here but float32 in"))
            && error.contains("RAW-R0001-DA01-S00000.h5"),
        "{error}"
    );

    h5py(&retype("int16"), &second);
    let (events, _) = read_events(&run, &selector, &Plan::Thread);
    let script = format!("import sys,h5py\nf=h5py.File(sys.argv[1])\nprint(f['{key}'][0,0])\n");
    let o = common::python_command()
        .args(["-c", &script])
        .arg(&second)
        .output()
        .unwrap();
    let want: f32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let file = hdf5::File::open(&second).unwrap();
    let first_train = file
        .dataset("INDEX/trainId")
        .unwrap()
        .read_raw::<u64>()
        .unwrap()[0];
    let event = events.iter().find(|e| e.id == first_train).unwrap();
    let got = event
        .array::<f32>(shotflow::event::Key::new(
            &selector[0].replace(":data.", "/data."),
        ))
        .map(|a| a[[0, 0]]);
    assert_eq!(got, Some(want), "int16 {want} read exactly as float32");
}

/// A format-0.1 INDEX row whose `last` is before its `first` would count 2^64 rows: an error
/// naming the file, the index group, the row and the train.
#[test]
fn an_index_with_last_before_first_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r0005");
    simulated(&run, &["--modules", "1"]);
    let path = run.join("RAW-R0001-DA01-S00000.h5");
    let group = "INDEX/SA1_XTD2_XGM/DOOCS/MAIN:output/data";
    h5py(
        &format!(
            "import sys,h5py,numpy as np\nf=h5py.File(sys.argv[1],'r+')\ng=f['{group}']\n\
             first=g['first'][()]\ncount=g['count'][()]\ndel g['count']\n\
             last=(first+count-1).astype(np.uint64)\nlast[2]=first[2]-1 if first[2]>0 else 0\n\
             first[2]=max(first[2],1)\ndel g['first']\ng['first']=first\ng['last']=last\n\
             g['status']=np.ones_like(first)\n"
        ),
        &path,
    );
    let error = ExdfRun::open(&run).map(|_| ()).unwrap_err().to_string();
    assert!(
        error.contains("RAW-R0001-DA01-S00000.h5")
            && error.contains(&format!("{group}: row 2 (train "))
            && error.contains("has last"),
        "{error}"
    );
}

/// The module sources of a multi-module detector, stacked per pulse into one
/// `(modules, rows, columns)` field, equal extra-data's `stack_detector_data`, at 1, 2 and 3
/// workers.
#[test]
fn stacked_modules_equal_extra_datas_stack_detector_data() {
    use shotflow::event::Key;
    use shotflow::exdf::explode::ExplodePulses;
    use shotflow::reduce::FrameReduce;
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("r0001");
    let simulation = shotflow::exdf::simulate::Simulation {
        trains: 6,
        modules: 4,
        frames: 3,
        frame: [32, 16],
        trains_per_file: 3,
        photons: 40.0,
        ..Default::default()
    };
    simulation.write(&run_dir).unwrap();
    let run = Arc::new(ExdfRun::open(&run_dir).unwrap());
    let selected = Arc::new(
        run.select(&[Selector::parse("*/DET/*:xtdf:image.*").unwrap()])
            .unwrap(),
    );
    let module = |m: usize, key: &str| {
        let source = selected
            .iter()
            .map(|s| s.source.clone())
            .find(|s| s.contains(&format!("/DET/{m}CH")))
            .expect("a source per module");
        Key::new(&format!("{source}/{key}"))
    };
    let modules: Vec<Key> = (0..4).map(|m| module(m, "image.data")).collect();
    let pulse_ids = module(0, "image.pulseId");
    let stacked = Key::new("detector/data");
    let mut reference: Option<(Vec<u64>, Vec<u16>)> = None;
    for workers in 1..=3 {
        let events = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&events);
        let (run, selected, modules) = (Arc::clone(&run), Arc::clone(&selected), modules.clone());
        let plan = if workers == 1 {
            Plan::Thread
        } else {
            Plan::Process { workers }
        };
        execute_plan(&plan, move |worker| {
            let (run, selected, out, modules) = (
                Arc::clone(&run),
                Arc::clone(&selected),
                Arc::clone(&out),
                modules.clone(),
            );
            worker.dataflow(|scope| {
                scope
                    .exdf(run, selected, 2)
                    .explode_pulses(pulse_ids)
                    .stack_modules::<u16>(modules, (32, 16), stacked, 0, true)
                    .ordered("Collect", move |_, events: &[Event]| {
                        out.lock().unwrap().extend_from_slice(events)
                    });
            });
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap();
        let events = events.lock().unwrap();
        let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
        let data: Vec<u16> = events
            .iter()
            .flat_map(|e| {
                e.array::<u16>(stacked)
                    .unwrap()
                    .iter()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ids.len(), 6 * 3, "{workers} workers: every pulse");
        match &reference {
            None => reference = Some((ids, data)),
            Some(r) => assert!(*r == (ids, data), "{workers} workers differ from 1"),
        }
    }
    let (ids, data) = reference.unwrap();
    let path = dir.path().join("stacked.h5");
    {
        let file = hdf5::File::create(&path).unwrap();
        file.new_dataset_builder()
            .with_data(&ndarray::Array1::from(ids.clone()))
            .create("ids")
            .unwrap();
        let array = ndarray::Array4::from_shape_vec((ids.len(), 4, 32, 16), data).unwrap();
        file.new_dataset_builder()
            .with_data(&array)
            .create("stacked")
            .unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_stacked_modules.py");
    let out = common::python_command()
        .arg(script)
        .arg(&run_dir)
        .arg(&path)
        .arg("4")
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    eprint!("{report}");
}
