//! XTC2 runs written by the facility's own tools (psana 4.3.4's `xtcwriter` + `smdwriter`, and
//! its `DgramEdit`) read by shotflow at 1, 2 and 3 workers, compared event by event with what
//! psana reads (tests/check_xtc2.py): timestamps, contributing streams, every field's dtype,
//! shape and values per segment, `Detector(det).raw.raw(evt)`, and the step and EPICS values
//! each event sees.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::python;
use serde_json::Value as Json;
use shotflow::event::{Array, Event, Key, Value};
use shotflow::runtime::{execute_plan, Plan};
use shotflow::sink::SinkExt;
use shotflow::xtc2::{EventBuilder, Xtc2Run, Xtc2Selector, Xtc2Source};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/xtc2")
}

fn run_ok(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// psana's `site-packages/bin`, where the wheel puts xtcwriter and smdwriter.
fn psana_bin() -> PathBuf {
    let out = run_ok(
        common::python_command().args([
            "-c",
            "import os,psana;print(os.path.normpath(os.path.join(os.path.dirname(psana.__file__),'..','bin')))",
        ]),
        "locating psana's tools",
    );
    PathBuf::from(out.trim())
}

/// A 2-stream run by xtcwriter + smdwriter: 2 steps of 6 events, EPICS in SlowUpdates.
fn xtcwriter_run(dir: &Path) -> PathBuf {
    let run = dir.join("xtcwriter");
    run_ok(
        Command::new("bash")
            .arg(shared().join("gen_xtcwriter.sh"))
            .arg(&run)
            .args(["6", "2"])
            .env("PY", python())
            .env("PS_PARALLEL", "none"),
        "gen_xtcwriter.sh",
    );
    run
}

/// A 2-stream run by DgramEdit: Jungfrau-sized frames, a mixed-rate second stream, one
/// damaged event; smd files by smdwriter.
fn dgramedit_run(dir: &Path) -> PathBuf {
    let run = dir.join("dgramedit");
    run_ok(
        common::python_command()
            .arg(shared().join("make_synthetic_xtc2.py"))
            .arg(&run)
            .arg("9")
            .env("PS_PARALLEL", "none"),
        "make_synthetic_xtc2.py",
    );
    for s in ["000", "001"] {
        let name = format!("xpptut15-r0014-s{s}-c000");
        run_ok(
            Command::new(psana_bin().join("smdwriter"))
                .arg("-f")
                .arg(run.join(format!("{name}.xtc2")))
                .arg("-o")
                .arg(run.join(format!("smalldata/{name}.smd.xtc2"))),
            "smdwriter",
        );
    }
    run
}

/// What psana reads of `path`.
fn psana(path: &Path, dir: &Path) -> Json {
    let out = dir.join(format!(
        "{}.json",
        path.file_name().unwrap().to_string_lossy()
    ));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_xtc2.py");
    eprint!(
        "{}",
        run_ok(
            common::python_command().arg(script).arg(path).arg(&out),
            "check_xtc2.py"
        )
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// Every event of `run` through the dataflow on `plan`, in order.
fn read(run: &Arc<Xtc2Run>, plan: &Plan) -> Vec<Event> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&events);
    let run = Arc::clone(run);
    execute_plan(plan, move |worker| {
        let (run, out) = (Arc::clone(&run), Arc::clone(&out));
        worker.dataflow(|scope| {
            scope
                .xtc2(run, Arc::new(vec![Xtc2Selector::all()]), 4)
                .ordered("Collect", move |_, events: &[Event]| {
                    out.lock().unwrap().extend_from_slice(events)
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let events = events.lock().unwrap().clone();
    events
}

/// A value's elements as f64 (strings: their bytes), its shape, and its numpy dtype string.
fn flat(v: &Value) -> (Vec<f64>, Vec<usize>, String) {
    let dtype = v.dtype().numpy_name().to_string();
    match v {
        Value::Array(a) => {
            let values = match a.as_ref() {
                Array::U8(x) => x.iter().map(|v| *v as f64).collect(),
                other => other.to_f64_vec(),
            };
            (values, a.shape().to_vec(), dtype)
        }
        scalar => (vec![scalar.as_f64().unwrap()], vec![], dtype),
    }
}

/// psana's encoded value as (values, shape, dtype or None for Python scalars); a string as
/// its bytes.
fn theirs(j: &Json) -> (Vec<f64>, Vec<usize>, Option<String>) {
    let dtype = j["dtype"].as_str().unwrap();
    if dtype == "str" {
        let bytes: Vec<f64> = j["values"]
            .as_str()
            .unwrap()
            .bytes()
            .map(|b| b as f64)
            .collect();
        let n = bytes.len();
        return (bytes, vec![n], Some("uint8".into()));
    }
    let values = j["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let shape = j["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let numpy = match dtype {
        "|u1" => Some("uint8"),
        "<u2" => Some("uint16"),
        "<u4" => Some("uint32"),
        "<u8" => Some("uint64"),
        "|i1" => Some("int8"),
        "<i2" => Some("int16"),
        "<i4" => Some("int32"),
        "<i8" => Some("int64"),
        "<f4" => Some("float32"),
        "<f8" => Some("float64"),
        "enum" => Some("int32"),
        _ => None, // Python int or float: the value alone is compared
    };
    (values, shape, numpy.map(String::from))
}

/// Compares one run's events with psana's; returns (events, values) compared.
fn compare(run: &Xtc2Run, ours: &[Event], reference: &Json, what: &str) -> (usize, usize) {
    let runs = reference["runs"].as_array().unwrap();
    let theirs_events: Vec<&Json> = runs
        .iter()
        .flat_map(|r| r["events"].as_array().unwrap())
        .collect();
    assert_eq!(ours.len(), theirs_events.len(), "{what}: events");
    let builder = EventBuilder::new(Arc::new(run.clone()), Arc::new(vec![Xtc2Selector::all()]));
    let mut compared = 0;
    let mut raised = std::collections::BTreeSet::new();
    for (k, (event, t)) in ours.iter().zip(&theirs_events).enumerate() {
        let at = format!("{what}, event {k} ({:#x})", event.id);
        assert_eq!(
            event.id,
            t["timestamp"].as_u64().unwrap(),
            "{at}: timestamp"
        );
        // Streams that contributed.
        let streams: Vec<bool> = t["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        let entry = &run.events[k];
        let ours_streams: Vec<bool> = (0..streams.len())
            .map(|s| entry.parts.iter().any(|p| p.stream as usize == s))
            .collect();
        assert_eq!(ours_streams, streams, "{at}: streams");
        // Every field of every segment.
        for (name, segments) in t["fields"].as_object().unwrap() {
            let key = Key::new(name);
            let value = event
                .value(key)
                .unwrap_or_else(|| panic!("{at}: no {name}"));
            let (values, shape, dtype) = flat(value);
            let parts: Vec<&str> = name.splitn(3, '/').collect();
            let all = builder.segments(parts[0], parts[1]);
            for (segment, j) in segments.as_object().unwrap() {
                let (want, want_shape, want_dtype) = theirs(j);
                let (got, got_shape) = if all.len() > 1 {
                    let s: u32 = segment.parse().unwrap();
                    let i = all.iter().position(|x| *x == s).unwrap();
                    let per: usize = shape[1..].iter().product();
                    (values[i * per..(i + 1) * per].to_vec(), shape[1..].to_vec())
                } else {
                    (values.clone(), shape.clone())
                };
                assert_eq!(
                    got_shape, want_shape,
                    "{at}: {name} segment {segment}: shape"
                );
                if let Some(d) = want_dtype {
                    assert_eq!(dtype, d, "{at}: {name}: dtype");
                }
                assert_eq!(got, want, "{at}: {name} segment {segment}: values");
                compared += 1;
            }
        }
        // psana's raw.raw: the detector's combined raw array.
        for (det, j) in t["raw"].as_object().unwrap() {
            if let Some(error) = j.get("error") {
                // psana raises where it cannot combine the segments (a TypeError when some
                // are missing); the fields above were compared segment by segment.
                raised.insert(format!("{det}: {error}"));
                continue;
            }
            let (want, want_shape, _) = theirs(j);
            let found = event.fields().iter().any(|(k, v)| {
                let (got, shape, _) = flat(v);
                k.name().starts_with(&format!("{det}/raw/")) && shape == want_shape && got == want
            });
            assert!(
                found,
                "{at}: no field equals psana's {det} raw.raw {want_shape:?}"
            );
            compared += 1;
        }
        // Step and EPICS values as psana attaches them.
        for (name, j) in t["env"].as_object().unwrap() {
            let ours = event
                .fields()
                .iter()
                .find(|(k, _)| k.name().ends_with(&format!("/{name}")));
            match (j.is_null(), ours) {
                (true, None) => {}
                (false, Some((_, v))) => {
                    let (want, _, _) = theirs(j);
                    assert_eq!(flat(v).0, want, "{at}: {name}");
                }
                (true, Some(_)) => panic!("{at}: {name} before psana has it"),
                (false, None) => panic!("{at}: no {name}, psana has {j}"),
            }
            compared += 1;
        }
    }
    if !raised.is_empty() {
        eprintln!("{what}: psana's raw.raw raised {raised:?} (segments missing)");
    }
    (ours.len(), compared)
}

/// Events equal bit for bit (fill values are NaN for floats, which `==` never finds equal).
fn same_bits(a: &[Event], b: &[Event]) -> bool {
    let bits = |e: &Event| -> Vec<(String, Vec<usize>, Vec<u8>)> {
        e.fields()
            .iter()
            .map(|(k, v)| {
                (
                    k.name().to_string(),
                    v.shape().to_vec(),
                    v.le_bytes().to_vec(),
                )
            })
            .collect()
    };
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.id == y.id && bits(x) == bits(y))
}

fn check(path: &Path, dir: &Path, what: &str) {
    let reference = psana(path, dir);
    let run = Arc::new(Xtc2Run::open(path).unwrap());
    let mut first: Option<Vec<Event>> = None;
    for workers in [1, 2, 3] {
        let events = read(&run, &Plan::Process { workers });
        let (n, values) = compare(
            &run,
            &events,
            &reference,
            &format!("{what}, {workers} workers"),
        );
        eprintln!("{what}, {workers} workers: {n} events, {values} values equal psana's");
        match &first {
            None => first = Some(events),
            Some(f) => assert!(
                same_bits(f, &events),
                "{what}: {workers} workers differ from 1"
            ),
        }
    }
}

#[test]
fn xtcwriter_runs_read_as_psana_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = xtcwriter_run(dir.path());
    check(&run, dir.path(), "xtcwriter run (2 streams, smd)");
    // One stream file on its own (psana's files= mode): no smd, no event building.
    let single = run.join("xpptut15-r0014-s001-c000.xtc2");
    check(&single, dir.path(), "xtcwriter single file");
}

#[test]
fn dgramedit_runs_read_as_psana_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = dgramedit_run(dir.path());
    check(
        &run,
        dir.path(),
        "DgramEdit run (Jungfrau-sized, mixed rate, damage)",
    );
    // The damaged event keeps its bits (MissingData, bit 5), the others have none.
    let run = Arc::new(Xtc2Run::open(&run).unwrap());
    let events = read(&run, &Plan::Thread);
    let damage: Vec<u16> = events
        .iter()
        .map(|e| e.get::<u16>(Key::new("damage")).unwrap())
        .collect();
    assert_eq!(damage[3], 1 << 5, "{damage:?}");
    assert_eq!(damage.iter().filter(|d| **d != 0).count(), 1, "{damage:?}");
}

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");

/// `shotflow extract` of a run at 1 worker and on 2 processes: identical files whose every
/// row h5py reads as psana's event (tests/check_xtc2_smalldata.py).
fn extract_equals_psana(run: &Path, dir: &Path, what: &str) {
    let reference = dir.join(format!(
        "{}.json",
        run.file_name().unwrap().to_string_lossy()
    ));
    let one = dir.join(format!("{what}-1.h5"));
    run_ok(
        Command::new(SHOTFLOW)
            .arg("extract")
            .arg(run)
            .args(["--select", "*", "--events-per-batch", "3", "--output"])
            .arg(&one),
        "extract, 1 worker",
    );
    let two = dir.join(format!("{what}-2.h5"));
    let rendezvous = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            let mut args: Vec<String> = vec![
                "extract".into(),
                run.display().to_string(),
                "--select".into(),
                "*".into(),
                "--events-per-batch".into(),
                "3".into(),
                "--output".into(),
                two.display().to_string(),
            ];
            args.extend(common::cluster_args(2, p, 1, rendezvous.path()));
            common::spawn(SHOTFLOW, &args)
        })
        .collect();
    for child in children {
        let out = common::wait_bounded(child, std::time::Duration::from_secs(120));
        assert!(
            out.status.success(),
            "{what}, 2 processes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let datasets = common::datasets(&one);
    assert!(
        datasets == common::datasets(&two),
        "{what}: 2 processes differ from 1"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_xtc2_smalldata.py");
    let report = run_ok(
        common::python_command()
            .arg(script)
            .arg(&one)
            .arg(&reference),
        "check_xtc2_smalldata.py",
    );
    eprint!("{what}: {report}");
    eprintln!(
        "{what}: 1 worker and 2 processes identical ({} datasets)",
        datasets.len()
    );
}

#[test]
fn extracted_xtc2_runs_equal_psana_on_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    for (run, what) in [
        (xtcwriter_run(dir.path()), "xtcwriter"),
        (dgramedit_run(dir.path()), "dgramedit"),
    ] {
        psana(&run, dir.path());
        extract_equals_psana(&run, dir.path(), what);
    }
}

/// Offsets of every datagram of a file, with their headers.
fn datagrams(bytes: &[u8]) -> Vec<(usize, shotflow::xtc2::Dgram)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(d) = shotflow::xtc2::Dgram::parse(&bytes[at..]) {
        if at + d.size() as usize > bytes.len() {
            break;
        }
        out.push((at, d));
        at += d.size() as usize;
    }
    out
}

/// Every way a file can be bad gives an error naming the file, the datagram's offset and
/// timestamp (or a counted stop at a truncated tail), never a panic or an allocation sized by
/// an unchecked header.
#[test]
fn bad_xtc2_input_is_named_never_a_panic() {
    use shotflow::xtc2::{Transition, Xtc, XtcKind};
    let dir = tempfile::tempdir().unwrap();
    let run = xtcwriter_run(dir.path());
    let original = std::fs::read(run.join("xpptut15-r0014-s000-c000.xtc2")).unwrap();
    let dgrams = datagrams(&original);
    let events = |path: &Path| Xtc2Run::open(path).map(|r| r.events.len());
    let good = dir.path().join("good.xtc2");
    std::fs::write(&good, &original).unwrap();
    let all = events(&good).unwrap();
    let l1: Vec<usize> = dgrams
        .iter()
        .filter(|(_, d)| d.transition() == Transition::L1Accept)
        .map(|(at, _)| *at)
        .collect();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let build_error = |path: &Path| -> String {
        let run = Arc::new(Xtc2Run::open(path).unwrap());
        let mut builder = EventBuilder::new(Arc::clone(&run), Arc::new(vec![Xtc2Selector::all()]));
        run.events
            .iter()
            .find_map(|e| builder.build(e).err())
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let mut cases = 0;

    // A truncated last datagram ends the stream with a warning; the events before it stay.
    let (last_l1, _) = dgrams
        .iter()
        .rev()
        .find(|(_, d)| d.transition() == Transition::L1Accept)
        .unwrap();
    let cut = write("truncated.xtc2", &original[..last_l1 + 30]);
    let opened = Xtc2Run::open(&cut).unwrap();
    assert_eq!(opened.events.len(), all - 1);
    assert!(
        opened
            .warnings
            .iter()
            .any(|w| w.contains("truncated.xtc2") && w.contains(&format!("byte {last_l1}"))),
        "{:?}",
        opened.warnings
    );
    cases += 1;

    // A root extent of zero, and one smaller than a header.
    for (extent, name) in [(0u32, "zero.xtc2"), (5, "small.xtc2")] {
        let mut bytes = original.clone();
        let at = l1[2];
        bytes[at + 20..at + 24].copy_from_slice(&extent.to_le_bytes());
        let e = Xtc2Run::open(&write(name, &bytes)).unwrap_err().to_string();
        assert!(
            e.contains(name)
                && e.contains(&format!("byte {at}"))
                && e.contains("timestamp 0x")
                && e.contains("less than its header"),
            "{e}"
        );
        cases += 1;
    }

    // The first ShapesData of an event: a NamesId the Configure never declared.
    let at = l1[1];
    let child = Xtc::at(&original, at + 24).unwrap();
    assert_eq!(child.kind(), XtcKind::ShapesData);
    let mut bytes = original.clone();
    bytes[at + 24..at + 28].copy_from_slice(&0xABCDEu32.to_le_bytes());
    let e = build_error(&write("namesid.xtc2", &bytes));
    assert!(
        e.contains("namesid.xtc2") && e.contains(&format!("byte {at}")) && e.contains("0xabcde"),
        "{e}"
    );
    cases += 1;

    // An unknown type id is skipped: the event builds, without that block.
    let mut bytes = original.clone();
    bytes[at + 30..at + 32].copy_from_slice(&0x0FFu16.to_le_bytes());
    let path = write("unknown_type.xtc2", &bytes);
    assert_eq!(build_error(&path), "", "an unknown type is skipped");
    cases += 1;

    // A hostile shape: 4 × 10⁹ elements claimed; an error, nothing allocated from it.
    let mut hostile = None;
    let mut p = at + 24 + 12;
    let end = at + 24 + child.extent as usize;
    while p < end {
        let x = Xtc::at(&original, p).unwrap();
        if x.kind() == XtcKind::Shapes && x.extent > 12 {
            hostile = Some(p + 12);
        }
        p += x.extent as usize;
    }
    if let Some(dims) = hostile {
        let mut bytes = original.clone();
        bytes[dims..dims + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = build_error(&write("shape.xtc2", &bytes));
        assert!(
            e.contains("shape.xtc2") && e.contains("needs more than"),
            "{e}"
        );
        cases += 1;
    }

    // An unknown data type in a Names block of the Configure.
    let (configure, _) = dgrams[0];
    let names = Xtc::at(&original, configure + 24).unwrap();
    assert_eq!(names.kind(), XtcKind::Names);
    let mut bytes = original.clone();
    let code = configure + 24 + 1048 + 516;
    bytes[code..code + 4].copy_from_slice(&77u32.to_le_bytes());
    let e = Xtc2Run::open(&write("dtype.xtc2", &bytes))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dtype.xtc2") && e.contains("unknown data type 77"),
        "{e}"
    );
    cases += 1;

    // An smd offset past the end of the big file.
    let smd_run = dir.path().join("smd_past_end");
    std::fs::create_dir_all(smd_run.join("smalldata")).unwrap();
    std::fs::copy(&good, smd_run.join("xpptut15-r0014-s000-c000.xtc2")).unwrap();
    let smd = std::fs::read(run.join("smalldata/xpptut15-r0014-s000-c000.smd.xtc2")).unwrap();
    let (first, _) = datagrams(&smd)
        .into_iter()
        .find(|(_, d)| d.transition() == Transition::L1Accept)
        .unwrap();
    let mut bytes = smd.clone();
    // The 76-byte smd L1Accept: intOffset is at byte 60.
    bytes[first + 60..first + 68].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(
        smd_run.join("smalldata/xpptut15-r0014-s000-c000.smd.xtc2"),
        &bytes,
    )
    .unwrap();
    let e = build_error(&smd_run);
    assert!(
        e.contains("xpptut15-r0014-s000-c000.xtc2") && e.contains(&format!("byte {}", 1u64 << 40)),
        "{e}"
    );
    cases += 1;

    // A missing chunk.
    let chunks = dir.path().join("chunks");
    std::fs::create_dir_all(&chunks).unwrap();
    std::fs::copy(&good, chunks.join("x-r0001-s000-c000.xtc2")).unwrap();
    std::fs::copy(&good, chunks.join("x-r0001-s000-c002.xtc2")).unwrap();
    let e = Xtc2Run::open(&chunks).unwrap_err().to_string();
    assert!(e.contains("chunk 1 is missing"), "{e}");
    cases += 1;

    // Random single-byte damage anywhere: an error or events, never a panic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for k in 0..300 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bytes = original.clone();
        let at = (state % bytes.len() as u64) as usize;
        bytes[at] ^= (state >> 32) as u8 | 1;
        let path = write(&format!("flip{k}.xtc2"), &bytes);
        if let Ok(run) = Xtc2Run::open(&path) {
            let run = Arc::new(run);
            let mut builder =
                EventBuilder::new(Arc::clone(&run), Arc::new(vec![Xtc2Selector::all()]));
            for e in &run.events {
                let _ = builder.build(e);
            }
        }
        std::fs::remove_file(path).unwrap();
    }
    eprintln!("{cases} bad-input cases named, 300 random byte flips without a panic");
}

/// shotflow's own simulated run (2 streams with smd files, Jungfrau, a 4-segment ePix10ka,
/// a delay scan in steps, an EPICS PV in SlowUpdates) reads in psana as in shotflow.
#[test]
fn simulated_xtc2_runs_read_as_psana_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("simulated");
    let simulation = shotflow::xtc2::Xtc2Simulation {
        events: 70,
        events_per_step: 20,
        slow_every: 15,
        frame: [64, 128],
        segment: [32, 48],
        ..Default::default()
    };
    simulation.write(&run).unwrap();
    check(&run, dir.path(), "shotflow's simulated run");
    extract_equals_psana(&run, dir.path(), "simulated");
    // The values the simulation says it wrote.
    let opened = Arc::new(Xtc2Run::open(&run).unwrap());
    assert_eq!(opened.run_numbers(), vec![1]);
    let events = read(&opened, &Plan::Thread);
    for (i, e) in events.iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            e.get::<f64>(Key::new("gmd/raw/energy")),
            Some(simulation.energy(i))
        );
        assert_eq!(
            e.get::<f64>(Key::new("scan/raw/delay")),
            Some(simulation.delay(i / 20))
        );
        assert_eq!(
            e.get::<u8>(Key::new("evr/raw/laser")),
            Some(simulation.laser_on(i) as u8)
        );
        let pv = e.get::<f64>(Key::new(&format!("epics/raw/{}", "XPP:LAS:MMN:01:RBV")));
        assert_eq!(
            pv,
            (i >= 15).then(|| simulation.pv(i / 15 - 1)),
            "event {i}"
        );
        assert_eq!(
            e.array::<u16>(Key::new("epix10ka/raw/raw"))
                .unwrap()
                .shape(),
            &[4, 32, 48]
        );
    }
    eprintln!(
        "simulated: {} events × 5 values equal the simulation's",
        events.len()
    );
}

/// Mixed-rate streams that split a detector: where stream 1 (xppcspad's segments 2 and 3) did
/// not contribute, the event keeps segments 0 and 1, holds the fill value for 2 and 3, and is
/// counted; psana raises there (its raw.raw cannot combine), and agrees on every segment
/// that arrived.
#[test]
fn events_lacking_some_segments_keep_the_others_and_are_counted() {
    use shotflow::xtc2::Transition;
    let dir = tempfile::tempdir().unwrap();
    let run = xtcwriter_run(dir.path());
    let smd = run.join("smalldata/xpptut15-r0014-s001-c000.smd.xtc2");
    let bytes = std::fs::read(&smd).unwrap();
    // Stream 1 keeps every third event.
    let mut kept = Vec::new();
    let mut l1 = 0;
    for (at, d) in datagrams(&bytes) {
        let is_event = d.transition() == Transition::L1Accept;
        if !is_event || l1 % 3 == 0 {
            kept.extend_from_slice(&bytes[at..at + d.size() as usize]);
        }
        l1 += is_event as usize;
    }
    std::fs::write(&smd, kept).unwrap();
    check(
        &run,
        dir.path(),
        "xtcwriter run, stream 1 at a third of the rate",
    );
    let opened = Arc::new(Xtc2Run::open(&run).unwrap());
    let events = read(&opened, &Plan::Thread);
    let key = Key::new("xppcspad/raw/arrayRaw");
    let mut partial = 0;
    for (k, e) in events.iter().enumerate() {
        let raw = e.array::<u16>(key).unwrap();
        assert_eq!(raw.shape(), &[4, 3, 6]);
        let lacking = opened.events[k].parts.len() == 1;
        for s in 2..4 {
            let missing = raw
                .index_axis(ndarray::Axis(0), s)
                .iter()
                .all(|v| *v == u16::MAX);
            assert_eq!(missing, lacking, "event {k}, segment {s}");
        }
        partial += lacking as usize;
    }
    assert_eq!(partial, 8, "12 events, stream 1 in 4 of them");
    // The smalldata output counts them.
    let output = dir.path().join("partial.h5");
    run_ok(
        Command::new(SHOTFLOW)
            .arg("extract")
            .arg(&run)
            .args(["--select", "xppcspad", "--output"])
            .arg(&output),
        "extract",
    );
    let file = hdf5::File::open(&output).unwrap();
    let reasons = file.dataset("shotflow/losses/reason").unwrap();
    let counts = file
        .dataset("shotflow/losses/events")
        .unwrap()
        .read_raw::<u64>()
        .unwrap();
    let reasons: Vec<String> = reasons
        .read_raw::<hdf5::types::VarLenUnicode>()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .or_else(|_| {
            reasons
                .read_raw::<hdf5::types::VarLenAscii>()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
        })
        .unwrap();
    let at = reasons
        .iter()
        .position(|r| r.contains("lacking some segments"))
        .unwrap_or_else(|| panic!("{reasons:?}"));
    assert_eq!(counts[at], 8);
    eprintln!(
        "{partial} of {} events lack 2 of xppcspad's 4 segments: filled and counted",
        events.len()
    );
}

/// A run whose big data continue in further chunk files (the DAQ's chunkinfo in the Enable
/// that ends a chunk; later chunks without a Configure): psana and shotflow follow the smd
/// file's offsets into each chunk; without smd files shotflow reads the chunks in order and
/// finds the same events.
#[test]
fn chunked_xtc2_runs_are_followed_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("chunked");
    shotflow::xtc2::Xtc2Simulation {
        events: 70,
        events_per_step: 10,
        slow_every: 25,
        frame: [32, 64],
        segment: [16, 16],
        chunk_events: Some(20),
        ..Default::default()
    }
    .write(&run)
    .unwrap();
    let opened = Arc::new(Xtc2Run::open(&run).unwrap());
    assert!(
        opened.streams.iter().all(|s| s.chunks.len() == 4),
        "chunks 0 to 3"
    );
    check(&run, dir.path(), "chunked run (4 chunks per stream)");
    let with_smd = read(&opened, &Plan::Process { workers: 2 });
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    for s in &opened.streams {
        for c in &s.chunks {
            std::fs::copy(c, bare.join(c.file_name().unwrap())).unwrap();
        }
    }
    let without = read(
        &Arc::new(Xtc2Run::open(&bare).unwrap()),
        &Plan::Process { workers: 2 },
    );
    assert!(
        same_bits(&with_smd, &without),
        "big files alone give the same events"
    );
    eprintln!(
        "chunked: {} events equal with and without smd files",
        without.len()
    );
}

/// One file holding two runs, each with its own Configure (psana's files= mode reads both):
/// read in order, as psana reads them; `--run 2` keeps the second only; an absent run is an
/// error that lists the runs there are.
#[test]
fn several_runs_in_one_file_are_read_in_order_and_selectable() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = Vec::new();
    for (run, first_tick) in [(1u32, 0u64), (2, 1000)] {
        let sim = shotflow::xtc2::Xtc2Simulation {
            run,
            first_tick,
            events: 20 + run as u64,
            events_per_step: 10,
            slow_every: 7,
            frame: [16, 16],
            segment: [4, 4],
            ..Default::default()
        };
        let out = dir.path().join(format!("r{run}"));
        sim.write(&out).unwrap();
        file.extend(
            std::fs::read(out.join(format!("xppx00126-r{run:04}-s000-c000.xtc2"))).unwrap(),
        );
    }
    let both = dir.path().join("two_runs.xtc2");
    std::fs::write(&both, file).unwrap();
    check(&both, dir.path(), "one file, two runs");
    let opened = Xtc2Run::open(&both).unwrap();
    assert_eq!(opened.run_numbers(), vec![1, 2]);
    assert_eq!(opened.events.len(), 21 + 22);
    let second = opened.clone().only_run(2).unwrap();
    assert_eq!(second.events.len(), 22);
    assert_eq!(second.events[0].timestamp, opened.events[21].timestamp);
    let e = opened.only_run(3).unwrap_err().to_string();
    assert!(
        e.contains("no events of run 3") && e.contains("[1, 2]"),
        "{e}"
    );
    // The command line keeps one run.
    let output = dir.path().join("r2.h5");
    run_ok(
        Command::new(SHOTFLOW)
            .arg("extract")
            .arg(&both)
            .args(["--select", "gmd", "--run", "2", "--output"])
            .arg(&output),
        "extract --run 2",
    );
    let rows = hdf5::File::open(&output)
        .unwrap()
        .dataset("timestamp")
        .unwrap()
        .read_raw::<u64>()
        .unwrap();
    assert_eq!(
        rows,
        second
            .events
            .iter()
            .map(|e| e.timestamp)
            .collect::<Vec<_>>()
    );
    eprintln!("two runs in one file: 43 events in order, run 2's 22 selected");
}

/// `shotflow record` of an XTC2 run (2 processes), replayed at 2 workers: the same events, bit
/// for bit, as reading the run directly.
#[test]
fn recorded_xtc2_runs_replay_as_read() {
    use shotflow::recording::{Pace, Recording, ReplaySource};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("simulated");
    shotflow::xtc2::Xtc2Simulation {
        events: 50,
        events_per_step: 10,
        slow_every: 12,
        frame: [32, 32],
        segment: [8, 8],
        ..Default::default()
    }
    .write(&run)
    .unwrap();
    let recording = dir.path().join("recording");
    let rendezvous = tempfile::tempdir().unwrap();
    let args = |p: usize| {
        let mut args = vec![
            "record".to_string(),
            run.display().to_string(),
            recording.display().to_string(),
        ];
        args.extend(common::cluster_args(2, p, 1, rendezvous.path()));
        args
    };
    // Process 1 starts only once process 0 has written the new recording's manifest: it must
    // not take that for an earlier recording (it used to, and refused to record).
    let zero = common::spawn(SHOTFLOW, &args(0));
    let started = std::time::Instant::now();
    while !recording.join("recording.json").exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "process 0 wrote no manifest"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let children = vec![zero, common::spawn(SHOTFLOW, &args(1))];
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| common::wait_bounded(c, std::time::Duration::from_secs(120)))
        .collect();
    for (p, out) in outs.iter().enumerate() {
        assert!(
            out.status.success(),
            "process {p} failed; both said: {:?}",
            outs.iter()
                .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
                .collect::<Vec<_>>()
        );
    }
    let want = read(&Arc::new(Xtc2Run::open(&run).unwrap()), &Plan::Thread);
    let recorded = Arc::new(Recording::open(&recording).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&seen);
    execute_plan(&Plan::Process { workers: 2 }, move |worker| {
        let (r, out) = (Arc::clone(&recorded), Arc::clone(&out));
        worker.dataflow(|scope| {
            scope
                .replay(r, Pace::AsFastAsPossible)
                .ordered("Collect", move |_, events: &[Event]| {
                    out.lock().unwrap().extend_from_slice(events)
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let got = seen.lock().unwrap().clone();
    assert!(
        same_bits(&got, &want),
        "replayed events differ from the run's"
    );
    eprintln!(
        "recorded on 2 processes, replayed at 2 workers: {} events bit for bit",
        got.len()
    );
}

/// `extract --geometry` of an XTC2 run: the ePix10ka's 4 stacked segments integrated through a
/// 4-module CrystFEL geometry (segment k is module k), per event, equal to the azimuthal map
/// applied to the events as the reader builds them; 1 worker and 2 processes identical.
#[test]
fn xtc2_detectors_are_integrated_through_a_geometry() {
    use shotflow_operators::azimuthal::{AzimuthalMap, Corrections, Radial};
    use shotflow_operators::geometry::AgipdLayout;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("simulated");
    shotflow::xtc2::Xtc2Simulation {
        events: 30,
        events_per_step: 10,
        frame: [16, 16],
        segment: [32, 16],
        ..Default::default()
    }
    .write(&run)
    .unwrap();
    let layout = AgipdLayout {
        modules: 4,
        module_shape: (32, 16),
        ..AgipdLayout::default()
    };
    let geom = dir.path().join("quad.geom");
    std::fs::write(&geom, layout.crystfel().unwrap()).unwrap();
    let args = |output: &Path| -> Vec<String> {
        [
            "extract",
            &run.display().to_string(),
            "--select",
            "epix10ka",
            "--geometry",
            &geom.display().to_string(),
            "--bins",
            "40",
            "--polarization",
            "0.99",
            "--events-per-batch",
            "4",
            "--output",
            &output.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let one = dir.path().join("one.h5");
    run_ok(
        Command::new(SHOTFLOW).args(args(&one)),
        "extract --geometry",
    );
    let two = dir.path().join("two.h5");
    let rendezvous = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            let mut a = args(&two);
            a.extend(common::cluster_args(2, p, 1, rendezvous.path()));
            common::spawn(SHOTFLOW, &a)
        })
        .collect();
    for child in children {
        let out = common::wait_bounded(child, std::time::Duration::from_secs(120));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        common::datasets(&one) == common::datasets(&two),
        "2 processes differ from 1"
    );
    let detector = layout.detector().unwrap();
    let corrections = Corrections {
        solid_angle: true,
        polarization: Some(0.99),
    };
    let map = AzimuthalMap::for_detector(
        &detector,
        9.3,
        Radial::QInvNm,
        40,
        None,
        1,
        corrections,
        None,
    )
    .unwrap();
    let opened = Arc::new(Xtc2Run::open(&run).unwrap());
    let events = read(&opened, &Plan::Thread);
    let got = hdf5::File::open(&one)
        .unwrap()
        .dataset("epix10ka/azav")
        .unwrap()
        .read_2d::<f64>()
        .unwrap();
    assert_eq!(got.dim(), (30, 40));
    for (k, e) in events.iter().enumerate() {
        let raw = e.array::<u16>(Key::new("epix10ka/raw/raw")).unwrap();
        assert_eq!(raw.shape(), &[4, 32, 16]);
        let want = map.integrate_slice(raw.as_standard_layout().as_slice().unwrap());
        let row: Vec<f64> = got.row(k).to_vec();
        assert!(
            row.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "event {k}: {row:?} vs {want:?}"
        );
    }
    eprintln!("xtc2 --geometry: 30 events × 40 bins equal, 1 worker and 2 processes identical");
}
