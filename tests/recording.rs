//! Record and replay: a recorded stream replays to the same events on any number of workers;
//! files cut short or corrupted replay their intact batches and end with a warning.

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
