//! Record and replay: a recorded stream replays to the same events on any number of workers;
//! files cut short or corrupted replay their intact batches and end with a warning.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shotflow::event::{Event, Key};
use shotflow::recording::{Pace, RecordExt, Recorder, Recording, ReplaySource};
use shotflow::runtime::{execute_plan, Plan};
use shotflow::sink::{Sink, SinkExt};
use shotflow::source::{Synthetic, SyntheticSource};
use timely::dataflow::operators::vec::{Filter, Map};

fn config() -> Synthetic {
    Synthetic {
        events: 3_001,
        batch_size: 64,
        frame: Some([16, 8]),
        ..Synthetic::default()
    }
}

/// The run's output: laser-on shots with a derived field.
fn derive(e: Event) -> Event {
    let energy = e.get_f64(Key::new("pulse_energy")).unwrap();
    e.with(Key::new("derived"), energy * 2.0)
}

fn record(dir: &Path, plan: &Plan) {
    let (c, d) = (config(), dir.to_path_buf());
    execute_plan(plan, move |worker| {
        let (c, d) = (c.clone(), d.clone());
        worker.dataflow(|scope| {
            scope
                .synthetic(&c)
                .filter(|e| e.get::<bool>(Key::new("laser_on")) == Some(true))
                .map(derive)
                .record(&d)
                .unwrap();
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
}

fn replay(dir: &Path, plan: &Plan, pace: Pace) -> Vec<Event> {
    let recording = Arc::new(Recording::open(dir).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&seen);
    execute_plan(plan, move |worker| {
        let (r, out) = (Arc::clone(&recording), Arc::clone(&out));
        worker.dataflow(|scope| {
            scope
                .replay(r, pace)
                .ordered("Collect", move |_, events: &[Event]| {
                    out.lock().unwrap().extend_from_slice(events)
                });
        });
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    let events = seen.lock().unwrap().clone();
    events
}

fn original() -> Vec<Event> {
    let c = config();
    (0..c.events)
        .map(|i| c.event(i))
        .filter(|e| e.get::<bool>(Key::new("laser_on")) == Some(true))
        .map(derive)
        .collect()
}

#[test]
fn replays_equal_the_original_run_on_any_number_of_workers() {
    let want = original();
    for recorded_on in [Plan::Thread, Plan::Process { workers: 2 }] {
        let dir = tempfile::tempdir().unwrap();
        record(dir.path(), &recorded_on);
        let recording = Recording::open(dir.path()).unwrap();
        assert!(recording.warnings.is_empty(), "{:?}", recording.warnings);
        assert_eq!(recording.events(), want.len() as u64);
        assert_eq!(
            recording.headers[0]
                .schema
                .iter()
                .map(|s| s.0.as_str())
                .collect::<Vec<_>>(),
            ["pulse_energy", "delay", "laser_on", "frame", "derived"]
        );
        for plan in [
            Plan::Thread,
            Plan::Process { workers: 2 },
            Plan::Process { workers: 3 },
        ] {
            let got = replay(dir.path(), &plan, Pace::AsFastAsPossible);
            assert!(
                got == want,
                "recorded on {}, replayed on {}",
                recorded_on.describe(),
                plan.describe()
            );
        }
    }
}

#[test]
fn a_recording_cut_short_replays_its_intact_batches() {
    let want = original();
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), &Plan::Thread);
    let file = dir.path().join("worker-0000.sfrec");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len * 2 / 3)
        .unwrap();
    let recording = Recording::open(dir.path()).unwrap();
    assert_eq!(recording.warnings.len(), 1);
    assert!(
        recording.warnings[0].contains("cut short inside batch"),
        "{:?}",
        recording.warnings
    );
    let got = replay(
        dir.path(),
        &Plan::Process { workers: 2 },
        Pace::AsFastAsPossible,
    );
    assert!(!got.is_empty() && got.len() < want.len());
    assert!(
        got[..] == want[..got.len()],
        "a prefix of the run, nothing half-read"
    );
    assert_eq!(got.len() as u64, recording.events());
}

#[test]
fn a_corrupted_batch_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), &Plan::Thread);
    let file = dir.path().join("worker-0000.sfrec");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    // The flipped byte lies in a frame payload (frames are large, headers small): that batch
    // fails its checksum at replay and is left out; every other event replays unchanged.
    let recording = Recording::open(dir.path()).unwrap();
    assert!(recording.warnings.is_empty(), "{:?}", recording.warnings);
    let got = replay(dir.path(), &Plan::Thread, Pace::AsFastAsPossible);
    let want = original();
    assert!(
        !got.is_empty() && got.len() < want.len(),
        "{} of {}",
        got.len(),
        want.len()
    );
    let by_id: std::collections::HashMap<u64, &Event> = want.iter().map(|e| (e.id, e)).collect();
    assert!(got.iter().all(|e| by_id[&e.id] == e));
    assert!(got.windows(2).all(|w| w[0].id < w[1].id));
    assert!(Recording::open(Path::new("/nonexistent")).is_err());
}

#[test]
fn paced_replay_follows_the_recorded_rate() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorder = Recorder::new(dir.path(), 0, 1).unwrap();
    for batch in 0..5u64 {
        let mut rows = vec![Event::new(batch).with(Key::new("x"), batch as f64)];
        recorder.write(batch, &mut rows).unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
    recorder.finish().unwrap();
    for (speed, least, most) in [(1.0, 230, 900), (2.0, 115, 400)] {
        let started = Instant::now();
        let got = replay(
            dir.path(),
            &Plan::Process { workers: 2 },
            Pace::Recorded { speed },
        );
        let ms = started.elapsed().as_millis();
        assert_eq!(got.len(), 5);
        assert!(ms >= least && ms < most, "speed {speed}: {ms} ms");
    }
    let started = Instant::now();
    replay(dir.path(), &Plan::Thread, Pace::AsFastAsPossible);
    assert!(started.elapsed().as_millis() < 100);
}

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");

fn shotflow(args: &[&str]) -> std::process::Output {
    std::process::Command::new(SHOTFLOW)
        .args(args)
        .output()
        .unwrap()
}

/// `shotflow record synthetic DIR --events N --workers W`: W worker files and a manifest.
fn record_cli(dir: &Path, events: u64, workers: u16, extra: &[&str]) -> std::process::Output {
    let (events, workers) = (events.to_string(), workers.to_string());
    let mut args = vec![
        "record",
        "synthetic",
        dir.to_str().unwrap(),
        "--events",
        &events,
    ];
    args.extend_from_slice(&["--workers", &workers]);
    args.extend_from_slice(extra);
    shotflow(&args)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn record_refuses_an_existing_recording_and_overwrite_replaces_it_whole() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("rec");
    assert!(record_cli(&dir, 2000, 2, &[]).status.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("recording.json")).unwrap()).unwrap();
    assert_eq!(manifest["workers"], 2);
    assert_eq!(manifest["events"], 2000);
    assert_eq!(manifest["complete"], true);

    let again = record_cli(&dir, 2000, 2, &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists") && stderr(&again).contains("--overwrite"));

    // A stale file from some earlier recording: --overwrite leaves nothing of the old one.
    std::fs::copy(dir.join("worker-0001.sfrec"), dir.join("worker-0002.sfrec")).unwrap();
    let out = record_cli(&dir, 2000, 1, &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["recording.json", "worker-0000.sfrec"]);
    let recording = Recording::open(&dir).unwrap();
    assert_eq!(recording.events(), 2000);
    assert!(recording.warnings.is_empty(), "{:?}", recording.warnings);
}

#[test]
fn replay_refuses_missing_and_foreign_worker_files() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    assert!(record_cli(&a, 2000, 2, &[]).status.success());
    assert!(record_cli(&b, 500, 2, &[]).status.success());

    // A worker file from another recording.
    std::fs::copy(b.join("worker-0001.sfrec"), a.join("worker-0001.sfrec")).unwrap();
    let out = shotflow(&["replay", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("worker-0001.sfrec belongs to recording"),
        "{}",
        stderr(&out)
    );

    // A missing worker file.
    std::fs::remove_file(a.join("worker-0001.sfrec")).unwrap();
    let out = shotflow(&["replay", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("1 of its 2 worker files are missing: worker-0001.sfrec"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_empty_worker_file_does_not_hide_the_other_workers_batches() {
    // A recorder that died: no manifest, and one worker file of 0 bytes.
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), &Plan::Process { workers: 2 });
    let whole = Recording::open(dir.path()).unwrap();
    let second = dir.path().join("worker-0001.sfrec");
    let lost = {
        // the events of worker 1's file alone
        let only = tempfile::tempdir().unwrap();
        std::fs::copy(&second, only.path().join("worker-0001.sfrec")).unwrap();
        Recording::open(only.path()).unwrap().events()
    };
    std::fs::File::create(&second).unwrap(); // truncated to 0 bytes
    let recording = Recording::open(dir.path()).unwrap();
    assert!(
        recording
            .warnings
            .iter()
            .any(|w| w.contains("worker-0001.sfrec: empty or cut short")),
        "{:?}",
        recording.warnings
    );
    assert!(lost > 0);
    assert_eq!(recording.events(), whole.events() - lost);
    let got = replay(dir.path(), &Plan::Thread, Pace::AsFastAsPossible);
    assert_eq!(got.len() as u64, whole.events() - lost);
}

/// Frame headers are checksummed: a flipped bit in a frame's timestamp ends that file's
/// intact frames there, and a paced replay does not wait 146 years. A real pause of the
/// recording (here: a timestamp moved 10⁶ s later, its checksum recomputed) is replayed after
/// at most 10× the usual interval, with a warning.
#[test]
fn damaged_or_huge_gaps_in_timestamps_never_stall_a_paced_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorder = Recorder::new(dir.path(), 0, 1).unwrap();
    for batch in 0..5u64 {
        let mut rows = vec![Event::new(batch).with(Key::new("x"), batch as f64)];
        recorder.write(batch, &mut rows).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    recorder.finish().unwrap();
    let file = dir.path().join("worker-0000.sfrec");
    let bytes = std::fs::read(&file).unwrap();
    // The frame headers: after the 20-byte fixed header and the JSON header.
    let json = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
    let mut frames = Vec::new();
    let mut at = 20 + json;
    while bytes[at] == 1 {
        frames.push(at);
        let length = u64::from_le_bytes(bytes[at + 21..at + 29].try_into().unwrap()) as usize;
        at += 1 + 36 + length;
    }
    assert_eq!(frames.len(), 5);

    // One flipped bit in the third frame's ns: two intact frames, a warning.
    let mut flipped = bytes.clone();
    flipped[frames[2] + 9 + 7] ^= 0x40;
    std::fs::write(&file, &flipped).unwrap();
    let recording = Recording::open(dir.path()).unwrap();
    assert_eq!(recording.batches(), 2);
    assert!(
        recording
            .warnings
            .iter()
            .any(|w| w.contains("frame header 3 fails its checksum")),
        "{:?}",
        recording.warnings
    );

    // A pause of 10⁶ s before the fourth frame, checksum intact: replayed promptly.
    let mut paused = bytes.clone();
    let head = frames[3] + 1;
    let ns = u64::from_le_bytes(paused[head + 8..head + 16].try_into().unwrap())
        + 1_000_000 * 1_000_000_000;
    paused[head + 8..head + 16].copy_from_slice(&ns.to_le_bytes());
    let crc = crc32fast::hash(&paused[head..head + 32]);
    paused[head + 32..head + 36].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&file, &paused).unwrap();
    let recording = Recording::open(dir.path()).unwrap();
    assert_eq!(recording.batches(), 5);
    assert!(
        recording
            .warnings
            .iter()
            .any(|w| w.contains("1 pauses of the recording (up to 1000000.0 s)")),
        "{:?}",
        recording.warnings
    );
    let started = Instant::now();
    let got = replay(dir.path(), &Plan::Thread, Pace::Recorded { speed: 1.0 });
    assert_eq!(got.len(), 5);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// All events of a recording, read batch by batch.
fn all_events(dir: &Path) -> Vec<Event> {
    let recording = Recording::open(dir).unwrap();
    let mut files = std::collections::HashMap::new();
    (0..recording.batches())
        .flat_map(|i| {
            recording
                .read_batch(i, &mut files, &mut Vec::new())
                .unwrap()
        })
        .collect()
}

/// Bytes of the files in `dir`.
fn size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

/// `shotflow record synthetic DIR --events 2000 --workers 2`, started and left running.
fn recording_of_2000(dir: &Path, stderr: std::process::Stdio) -> std::process::Child {
    std::process::Command::new(SHOTFLOW)
        .args([
            "record",
            "synthetic",
            dir.to_str().unwrap(),
            "--events",
            "2000",
            "--workers",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// `record` stopped by SIGINT marks the recording interrupted; `record --resume` (with another
/// worker count) adds the batches its sources had not produced, and the recording then replays
/// exactly as one recorded without interruption. A live stream cannot be resumed.
#[test]
fn a_stopped_recording_resumes_to_the_uninterrupted_one() {
    let root = tempfile::tempdir().unwrap();
    let (whole, cut) = (root.path().join("whole"), root.path().join("cut"));
    assert!(record_cli(&whole, 2000, 2, &[]).status.success());

    let child = recording_of_2000(&cut, std::process::Stdio::piped());
    let started = Instant::now();
    while size(&cut) < 30 << 20 {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let partial = Recording::open(&cut).unwrap();
    let manifest = partial.manifest.clone().unwrap();
    assert!(!manifest.complete);
    let start = partial.resume_point();
    assert!(
        start > 0 && partial.events() < 2000,
        "stopped at batch {start}"
    );

    let out = record_cli(&cut, 2000, 1, &["--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let resumed = Recording::open(&cut).unwrap();
    assert!(resumed.manifest.as_ref().unwrap().complete);
    assert!(resumed.warnings.is_empty(), "{:?}", resumed.warnings);
    let (want, got) = (all_events(&whole), all_events(&cut));
    assert_eq!(got.len(), 2000);
    assert!(
        got == want,
        "the resumed recording replays as the uninterrupted one"
    );
    eprintln!(
        "stopped at batch {start} with {} events, resumed: {} events identical",
        partial.events(),
        got.len()
    );

    let out = shotflow(&[
        "record",
        "tcp://127.0.0.1:1",
        cut.to_str().unwrap(),
        "--resume",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("live karabo-bridge stream cannot be resumed"),
        "{}",
        stderr(&out)
    );
}

/// `record` killed with SIGKILL mid-write leaves a manifest marked unfinished (written before
/// the first frame) and files without end markers, whose last frame may be cut: the
/// recording replays its intact batches with warnings, and `record --resume` continues it from
/// the first batch no intact frame holds, to a recording that replays as an uninterrupted one.
#[test]
fn a_killed_recorder_resumes_to_the_uninterrupted_recording() {
    let root = tempfile::tempdir().unwrap();
    let (whole, cut) = (root.path().join("whole"), root.path().join("cut"));
    assert!(record_cli(&whole, 2000, 2, &[]).status.success());
    let mut child = recording_of_2000(&cut, std::process::Stdio::null());
    // Past each worker's first whole batch (a batch is an eighth of the recording), well
    // before the end: the resume then has committed batches to keep.
    let batch = size(&whole) / 8;
    let file = |w: usize| {
        std::fs::metadata(cut.join(format!("worker-{w:04}.sfrec"))).map_or(0, |m| m.len())
    };
    let started = Instant::now();
    while file(0) < batch * 3 / 2 || file(1) < batch * 3 / 2 {
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let partial = Recording::open(&cut).unwrap();
    let manifest = partial
        .manifest
        .clone()
        .expect("written before the first frame");
    assert!(!manifest.complete);
    assert!(
        partial
            .warnings
            .iter()
            .any(|w| w.contains("end marker") || w.contains("cut short")),
        "{:?}",
        partial.warnings
    );
    let start = partial.resume_point();
    assert!(start > 0 && start < 2000 / 10, "killed at batch {start}");
    // Every batch before the resume point is intact and equals the uninterrupted recording's.
    let (want, got) = (all_events(&whole), all_events(&cut));
    let prefix = got.iter().filter(|e| want.contains(e)).count();
    assert!(
        prefix >= start as usize * 10,
        "{prefix} events of the first {start} batches"
    );

    let out = record_cli(&cut, 2000, 1, &["--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let resumed = Recording::open(&cut).unwrap();
    assert!(resumed.manifest.as_ref().unwrap().complete);
    let got = all_events(&cut);
    assert_eq!(got.len(), 2000);
    assert!(
        got == want,
        "the resumed recording replays as the uninterrupted one"
    );
    eprintln!(
        "killed at batch {start} ({} events intact), resumed: {} events identical",
        partial.events(),
        got.len()
    );
}

/// What a recorded run lost is kept in the recording (each worker file's end marker, summed in
/// `recording.json`), printed by `record` and `replay`, and counted again by a replay, so a
/// recording of a recording (or any output made from a replay) says the same.
#[test]
fn a_recording_keeps_the_losses_of_the_run_it_recorded() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("r0001");
    let out = shotflow(&[
        "simulate",
        "--trains",
        "200",
        "--modules",
        "1",
        "--frames",
        "2",
        "--trains-per-file",
        "50",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Train 110 of the detector's third file repeats an earlier one: suspect, skipped.
    let script = "import sys,h5py\nf=h5py.File(sys.argv[1],'r+')\nt=f['INDEX/trainId'][:]\nt[10]=t[8]\nf['INDEX/trainId'][:]=t\n";
    let o = common::python_command()
        .args(["-c", script])
        .arg(run.join("RAW-R0001-AGIPD00-S00002.h5"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = vec![
        (
            "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf".to_string(),
            "missing fields".to_string(),
            1u64,
        ),
        (
            "run".to_string(),
            "suspect train (out of order or repeated in its file)".to_string(),
            1,
        ),
    ];
    let (first, second) = (root.path().join("rec1"), root.path().join("rec2"));
    for workers in ["1", "2"] {
        let _ = std::fs::remove_dir_all(&first);
        let out = shotflow(&[
            "record",
            run.to_str().unwrap(),
            first.to_str().unwrap(),
            "--select",
            "*",
            "--workers",
            workers,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("1 events: suspect train"),
            "{}",
            stderr(&out)
        );
        let recording = Recording::open(&first).unwrap();
        assert_eq!(
            recording.manifest.as_ref().unwrap().losses,
            want,
            "{workers} workers"
        );
        assert_eq!(recording.loss_totals(), want);
    }
    let out = shotflow(&["replay", first.to_str().unwrap(), "--workers", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 events: suspect train"),
        "{}",
        stderr(&out)
    );
    let out = shotflow(&[
        "record",
        first.to_str().unwrap(),
        second.to_str().unwrap(),
        "--workers",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = Recording::open(&second).unwrap();
    assert_eq!(again.manifest.as_ref().unwrap().losses, want);
    eprintln!("losses {want:?} kept through record, replay and a recording of the recording");
}
