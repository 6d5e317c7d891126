//! The EXDF reader against extra-data: runs written by extra-data's own mock generator (filled
//! with known values) are read by shotflow at 1, 2 and 3 workers; every selected key, train
//! and row must equal what extra-data returns (tests/exdf_reference.py compares).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use shotflow::event::{DType, Element, Event, Value};
use shotflow::runtime::{execute_plan, Plan};
use shotflow::sink::SinkExt;
use shotflow::source::exdf::{ExdfRun, ExdfSource, Selected, Selector, SourceKind};

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exdf_reference.py")
}

/// extra-data's mock runs, made once per test binary.
fn mock_runs() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(python())
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
    let out = Command::new(python())
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
