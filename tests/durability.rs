//! Nothing lost: runs of the real binary stopped by SIGINT and SIGTERM, killed with SIGKILL at
//! seeded random moments (a single process, either of two processes, during master writing),
//! then resumed with other worker and process counts; every dataset of the resumed master is
//! compared byte for byte with an uninterrupted run's. Reruns over a complete result, a reader
//! that reopens the master during a run, and resumes that must be refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use common::{datasets, spawn, wait_bounded, Datasets};
use rand::{Rng, SeedableRng};

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");
const LIMIT: Duration = Duration::from_secs(180);
/// Long enough (a few seconds in a debug build) that a kill lands inside the run.
const EVENTS: u64 = 300_000;
const BATCH: u64 = 256;

/// Compact the tail at 4 mappings or files, in slices (never at once: the copies are in
/// flight when kills and signals come); merge 2 compacted files of one level.
const COMPACTION: &str = "4,4,2,0";

fn demo_args(output: &Path, events: u64, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "demo",
        "--source",
        "synthetic",
        "--frame",
        "16x16",
        "--photons",
        "40",
        "--json",
        "--plot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(output.with_extension("png").display().to_string());
    args.extend(["--events".into(), events.to_string()]);
    args.extend(["--batch-size".into(), BATCH.to_string()]);
    args.extend(["--output".into(), output.display().to_string()]);
    if !extra.contains(&"--commit-interval") {
        args.extend(["--commit-interval".into(), "0.2".into()]);
    }
    // Compaction far more eager than the default, so that kills, signals, resumes and readers
    // meet it at every stage (the reference turns it off).
    if !extra.contains(&"--compaction") {
        args.extend(["--compaction".into(), COMPACTION.into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn cluster(processes: usize, process: usize, rendezvous: &Path) -> Vec<String> {
    [
        "--processes".to_string(),
        processes.to_string(),
        "--process".into(),
        process.to_string(),
        "--rendezvous".into(),
        rendezvous.display().to_string(),
        "--connect-timeout".into(),
        "30".into(),
    ]
    .to_vec()
}

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An uninterrupted run's master, and every one of its datasets.
fn reference(dir: &Path, events: u64) -> (PathBuf, Datasets) {
    let path = dir.join("reference.h5");
    ok(&wait_bounded(
        spawn(
            SHOTFLOW,
            &demo_args(&path, events, &["--compaction", "off"]),
        ),
        LIMIT,
    ));
    let sets = datasets(&path);
    (path, sets)
}

/// Root attribute `complete` and the `shotflow/` attributes of a master.
struct Master {
    complete: bool,
    batches: i64,
    events: i64,
    last_event: i64,
    recomputed: i64,
    resumed_from: i64,
}

fn master(path: &Path) -> Master {
    let file = hdf5::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let attr = |name: &str| {
        file.group("shotflow")
            .unwrap()
            .attr(name)
            .unwrap()
            .read_scalar::<i64>()
            .unwrap()
    };
    Master {
        complete: file
            .attr("complete")
            .unwrap()
            .read_scalar::<bool>()
            .unwrap(),
        batches: attr("committed_batches"),
        events: attr("committed_events"),
        last_event: attr("last_event"),
        recomputed: attr("recomputed_batches"),
        resumed_from: attr("resumed_from_batch"),
    }
}

/// A partial master holds exactly its committed events: the reference's first rows of every
/// per-event dataset, no fill value among them, and says so in its attributes.
fn check_partial(path: &Path, reference: &Datasets) -> Master {
    let m = master(path);
    assert!(!m.complete, "{}: marked complete", path.display());
    assert!(m.batches >= 1, "killed after the first commit");
    let sets = datasets(path);
    let rows = m.events as usize;
    let (_, stamps) = &sets["timestamp"];
    assert_eq!(stamps.len(), rows * 8, "timestamp rows = committed events");
    assert_eq!(
        i64::from_le_bytes(stamps[stamps.len() - 8..].try_into().unwrap()),
        m.last_event
    );
    let mut compared = 0;
    // The saved pump-probe counts are committed with their batches: they count the committed
    // shots, no more, no fewer.
    let counted: u64 = ["pump_probe/n_on", "pump_probe/n_off"]
        .iter()
        .flat_map(|name| sets[*name].1.chunks(8))
        .map(|v| u64::from_le_bytes(v.try_into().unwrap()))
        .sum();
    assert_eq!(counted, rows as u64, "saved counts = committed events");
    for (name, (shape, bytes)) in &sets {
        if name.starts_with("summary/") || name.starts_with("pump_probe/") {
            continue;
        }
        let (full_shape, full) = &reference[name];
        assert_eq!(shape[0], rows, "{name}");
        assert_eq!(shape[1..], full_shape[1..], "{name}");
        assert_eq!(
            bytes[..],
            full[..bytes.len()],
            "{name}: the committed rows are the reference's first {rows}"
        );
        compared += 1;
    }
    let photons = &sets["photons"].1;
    assert!(
        photons.chunks(8).all(|v| v != [0xff; 8]),
        "no fill value among committed rows"
    );
    eprintln!(
        "partial master: {rows} events in batches 0..{}, {compared} datasets compared",
        m.batches
    );
    m
}

/// Every dataset (the `shotflow/` group of run metadata excepted) equals the reference's.
fn assert_identical(path: &Path, reference: &Datasets) -> usize {
    common::assert_same_datasets(&datasets(path), reference, "from the reference")
}

/// Which file is at `path` (an inode number alone may be reused by the next file).
fn inode(path: &Path) -> Option<(u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

/// Starts `args` and waits until it has written `master` once (a new file: a master left by an
/// earlier run does not count), then `delay` more; the run must still be going.
fn start_and_commit(args: &[String], master: &Path, delay: Duration) -> Child {
    let before = inode(master);
    let mut child = spawn(SHOTFLOW, args);
    let started = Instant::now();
    while inode(master).is_none() || inode(master) == before {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first commit"
        );
        assert!(started.elapsed() < LIMIT, "no commit within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(delay);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the kill"
    );
    child
}

/// [`start_and_commit`] for a run whose processes are already started.
fn wait_commit(child: &mut Child, master: &Path, delay: Duration) {
    let started = Instant::now();
    while !master.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first commit"
        );
        assert!(started.elapsed() < LIMIT, "no commit within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(delay);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the kill"
    );
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// Resumes with `extra` launch options; checks the result against the reference and that no
/// committed batch was produced again. Returns the datasets compared.
fn resume(path: &Path, reference: &Datasets, committed: &Master, extra: &[&str]) -> usize {
    let mut args = vec!["--resume"];
    args.extend_from_slice(extra);
    let out = wait_bounded(spawn(SHOTFLOW, &demo_args(path, EVENTS, &args)), LIMIT);
    ok(&out);
    let m = master(path);
    assert!(m.complete);
    assert_eq!(m.resumed_from, committed.batches);
    assert_eq!(
        m.recomputed, 0,
        "no committed batch reached the writers again"
    );
    // The sources produced only the batches after the committed prefix.
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("demo --json");
    let produced = json["events"].as_u64().unwrap();
    assert_eq!(
        produced,
        EVENTS - committed.batches as u64 * BATCH,
        "events produced by the resumed run"
    );
    let n = assert_identical(path, reference);
    eprintln!(
        "resumed at batch {} with {extra:?}: {produced} events produced, {n} datasets identical",
        committed.batches
    );
    n
}

#[test]
fn sigint_and_sigterm_commit_a_partial_master_and_resume_to_identical_data() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = reference(dir.path(), EVENTS);

    // One process, SIGINT: exit 130, a partial master at the output path.
    let path = dir.path().join("int.h5");
    let child = start_and_commit(
        &demo_args(&path, EVENTS, &[]),
        &path,
        Duration::from_millis(300),
    );
    signal(&child, libc::SIGINT);
    let out = wait_bounded(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let committed = check_partial(&path, &reference);
    assert!(
        stderr.contains(&format!(
            "committed {} events in batches 0..{} (last event id {})",
            committed.events, committed.batches, committed.last_event
        )),
        "{stderr}"
    );
    resume(&path, &reference, &committed, &["--workers", "2"]);

    // Two processes, SIGTERM to process 1 only: both stop, both exit 143.
    let path = dir.path().join("term.h5");
    let rendezvous = dir.path().join("rv-term");
    let mut children: Vec<Child> = (0..2)
        .map(|p| {
            let extra = cluster(2, p, &rendezvous);
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            spawn(SHOTFLOW, &demo_args(&path, EVENTS, &extra))
        })
        .collect();
    wait_commit(&mut children[0], &path, Duration::from_millis(300));
    signal(&children[1], libc::SIGTERM);
    for (p, child) in children.into_iter().enumerate() {
        let out = wait_bounded(child, Duration::from_secs(30));
        assert_eq!(
            out.status.code(),
            Some(143),
            "process {p}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let committed = check_partial(&path, &reference);
    resume(&path, &reference, &committed, &["--workers", "3"]);
}

#[test]
fn kill_9_at_seeded_moments_then_resume_with_other_worker_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = reference(dir.path(), EVENTS);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(8);
    let mut compared = 0;

    // A single process, at a seeded moment.
    let path = dir.path().join("single.h5");
    let delay = Duration::from_millis(rng.gen_range(100..1000));
    let mut child = start_and_commit(&demo_args(&path, EVENTS, &[]), &path, delay);
    child.kill().unwrap();
    let _ = child.wait();
    eprintln!("single process: SIGKILL {delay:?} after the first commit");
    let committed = check_partial(&path, &reference);
    compared += resume(&path, &reference, &committed, &["--workers", "2"]);

    // A single process, while a master is written: the test hook holds each written master for
    // a moment before its rename, and the kill comes as the second one appears.
    let path = dir.path().join("during.h5");
    let tmp = dir.path().join("during.h5.tmp");
    let mut child = std::process::Command::new(SHOTFLOW)
        .args(demo_args(&path, EVENTS, &[]))
        .env("SHOTFLOW_TEST_COMMIT_PAUSE_MS", "150")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !(path.exists() && tmp.exists()) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before a second commit"
        );
        assert!(started.elapsed() < LIMIT);
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let _ = child.wait();
    eprintln!("single process: SIGKILL while a master was written");
    let committed = check_partial(&path, &reference);
    compared += resume(&path, &reference, &committed, &[]);

    // Two processes; SIGKILL to one of them (seeded), the survivor ends by itself.
    for trial in 0..2 {
        let path = dir.path().join(format!("two{trial}.h5"));
        let rendezvous = dir.path().join(format!("rv-kill{trial}"));
        let victim = trial; // each process once
        let delay = Duration::from_millis(rng.gen_range(100..1000));
        let mut children: Vec<Child> = (0..2)
            .map(|p| {
                let extra = cluster(2, p, &rendezvous);
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                spawn(SHOTFLOW, &demo_args(&path, EVENTS, &extra))
            })
            .collect();
        wait_commit(&mut children[0], &path, delay);
        children[victim].kill().unwrap();
        eprintln!("two processes, trial {trial}: SIGKILL process {victim} {delay:?} after the first commit");
        for (p, child) in children.into_iter().enumerate() {
            let out = wait_bounded(child, Duration::from_secs(60));
            if p != victim {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(1), "survivor {p}: {stderr}");
                assert!(!stderr.contains("panicked"), "survivor {p}: {stderr}");
            }
        }
        let committed = check_partial(&path, &reference);
        compared += resume(&path, &reference, &committed, &["--workers", "3"]);
    }
    eprintln!("{compared} datasets compared over 4 kills");
}

#[test]
fn a_rerun_never_destroys_a_complete_result() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = reference(dir.path(), EVENTS);
    let path = dir.path().join("run.h5");
    let partial = dir.path().join("run.partial.h5");
    ok(&wait_bounded(
        spawn(SHOTFLOW, &demo_args(&path, EVENTS, &[])),
        LIMIT,
    ));
    assert_identical(&path, &reference);

    // A rerun that fails.
    let fail_at = (1_000_000_000u64 + EVENTS / 2).to_string();
    let out = wait_bounded(
        spawn(
            SHOTFLOW,
            &demo_args(&path, EVENTS, &["--fail-at", &fail_at]),
        ),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(master(&path).complete);
    assert_identical(&path, &reference);

    // A rerun killed outright, and one interrupted: the partial result goes beside it.
    for kill in [true, false] {
        let mut child = start_and_commit(
            &demo_args(&path, EVENTS, &[]),
            &partial,
            Duration::from_millis(300),
        );
        if kill {
            child.kill().unwrap();
            let _ = child.wait();
        } else {
            signal(&child, libc::SIGINT);
            assert_eq!(wait_bounded(child, LIMIT).status.code(), Some(130));
        }
        assert!(master(&path).complete);
        assert_identical(&path, &reference);
        check_partial(&partial, &reference);
    }

    // Resuming the partial result replaces the old one only once complete.
    let committed = master(&partial);
    let out = ok(&wait_bounded(
        spawn(SHOTFLOW, &demo_args(&path, EVENTS, &["--resume"])),
        LIMIT,
    ))
    .clone();
    let m = master(&path);
    assert!(m.complete);
    assert_eq!(m.resumed_from, committed.batches);
    assert!(!partial.exists(), "the partial master is gone");
    assert_identical(&path, &reference);
    // Every segment left is one the master maps.
    let manifest_files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("run.seg-"))
        .collect();
    assert!(
        manifest_files.iter().all(|n| n.ends_with(".h5")),
        "{manifest_files:?}"
    );
    drop(out);
}

#[test]
fn resume_refuses_a_run_with_other_options_and_a_complete_result() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.h5");
    let child = start_and_commit(
        &demo_args(&path, EVENTS, &[]),
        &path,
        Duration::from_millis(100),
    );
    signal(&child, libc::SIGINT);
    assert_eq!(wait_bounded(child, LIMIT).status.code(), Some(130));

    let out = wait_bounded(
        spawn(
            SHOTFLOW,
            &demo_args(&path, EVENTS, &["--resume", "--seed", "7"]),
        ),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot resume") && stderr.contains("seed: 2026 before, 7 now"),
        "{stderr}"
    );
    assert!(!master(&path).complete, "the partial result is untouched");

    ok(&wait_bounded(
        spawn(SHOTFLOW, &demo_args(&path, EVENTS, &["--resume"])),
        LIMIT,
    ));
    let out = wait_bounded(
        spawn(SHOTFLOW, &demo_args(&path, EVENTS, &["--resume"])),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing to resume"), "{stderr}");
}

#[test]
fn a_reader_reopening_the_master_sees_a_growing_consistent_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (reference_path, _) = reference(dir.path(), EVENTS);
    let path = dir.path().join("live.h5");
    let child = spawn(SHOTFLOW, &demo_args(&path, EVENTS, &[]));
    let reader = common::python_command()
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/check_live_reader.py"
        ))
        .arg(&path)
        .arg(&reference_path)
        .output()
        .expect("python with h5py");
    ok(&wait_bounded(child, LIMIT));
    let stdout = String::from_utf8_lossy(&reader.stdout);
    assert!(
        reader.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&reader.stderr)
    );
    eprint!("{stdout}");
    let looks: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("distinct prefixes: "))
        .expect("summary line")
        .parse()
        .unwrap();
    assert!(looks >= 3, "the reader saw the master grow: {stdout}");
}

/// Compaction changes which files hold the rows, never the datasets: runs at 1, 2 and 3
/// workers and with 2 processes, compacting eagerly, equal the uncompacted reference, and
/// leave a handful of files where they committed dozens of segments.
#[test]
fn compaction_keeps_a_long_runs_files_few_and_its_datasets_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = reference(dir.path(), EVENTS);
    // `bounded`: the tail is compacted before every master, so the master maps few files.
    // In slices, the final master maps the tail whose copy was still going.
    let check = |path: &Path, writers: u64, bounded: bool| -> usize {
        let n = assert_identical(path, &reference);
        let file = hdf5::File::open(path).unwrap();
        let meta = file.group("shotflow").unwrap();
        let attr = |name: &str| meta.attr(name).unwrap().read_scalar::<u64>().unwrap();
        let (commits, compactions) = (attr("commits"), attr("compactions"));
        // The files the master maps, as h5py sees them.
        let script = "import sys,h5py\nf=h5py.File(sys.argv[1],'r')\ns=set()\nf.visititems(lambda n,o: s.update(v.file_name for v in o.virtual_sources()) if isinstance(o,h5py.Dataset) and o.is_virtual else None)\nprint('\\n'.join(sorted(s)))\n";
        let out = common::python_command()
            .args(["-c", script])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let files: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        // Every writer closed a segment every 0.1 s; without compaction the master would map
        // each. With it: at most 3 in the tail per writer, one compacted file per level.
        // How many depends on how often the master is written (never more than a tenth of
        // the run's time, so fewer on a loaded machine); at least one, for the identity above
        // to say anything.
        assert!(
            compactions >= 1,
            "{}: {compactions} compactions",
            path.display()
        );
        let bound = 4 * writers as usize + 8;
        assert!(
            !bounded || files.len() <= bound,
            "{}: the master maps {} files (more than {bound}) after {commits} commits: {files:?}",
            path.display(),
            files.len()
        );
        let dir = path.parent().unwrap();
        assert!(
            files.iter().all(|f| dir.join(f).exists()),
            "every file it maps is there: {files:?}"
        );
        let temporary: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(temporary.is_empty(), "no temporary left: {temporary:?}");
        eprintln!(
            "{}: {n} datasets identical; {commits} commits, {compactions} compactions, {} files",
            path.display(),
            files.len()
        );
        n
    };
    let mut compared = 0;
    // The tail copied at once before a master maps it, and in slices while the run goes on.
    for (how, policy) in [("once", "4,4,2"), ("slices", "4,4,2,0")] {
        for workers in 1..=3 {
            let path = dir.path().join(format!("{how}-w{workers}.h5"));
            let launch = [
                "--workers".to_string(),
                workers.to_string(),
                "--commit-interval".into(),
                "0.1".into(),
                "--compaction".into(),
                policy.into(),
            ];
            let launch: Vec<&str> = launch.iter().map(String::as_str).collect();
            ok(&wait_bounded(
                spawn(SHOTFLOW, &demo_args(&path, EVENTS, &launch)),
                LIMIT,
            ));
            compared += check(&path, 1, how == "once");
        }
        let path = dir.path().join(format!("{how}-p2.h5"));
        let rendezvous = dir.path().join(format!("rv-{how}"));
        let children: Vec<Child> = (0..2)
            .map(|p| {
                let mut extra = cluster(2, p, &rendezvous);
                extra
                    .extend(["--commit-interval", "0.1", "--compaction", policy].map(String::from));
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                spawn(SHOTFLOW, &demo_args(&path, EVENTS, &extra))
            })
            .collect();
        for child in children {
            ok(&wait_bounded(child, LIMIT));
        }
        compared += check(&path, 2, how == "once");
    }
    eprintln!("{compared} datasets compared over 8 compacted runs of {EVENTS} events");
}

/// Process 1 is killed after its work is done, while process 0 writes the final master (the
/// test hook holds that master before its rename): process 0 completes the result and exits 0,
/// saying what happened, instead of a panic.
#[test]
fn a_peer_lost_while_the_final_master_is_written_does_not_fail_a_complete_result() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = reference(dir.path(), EVENTS);
    let path = dir.path().join("end.h5");
    let tmp = dir.path().join("end.h5.tmp");
    let rendezvous = dir.path().join("rv-end");
    let children: Vec<Child> = (0..2)
        .map(|p| {
            // No periodic commit: the only master written is the final one.
            let mut extra = cluster(2, p, &rendezvous);
            extra.extend(["--commit-interval".into(), "1000".into()]);
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            std::process::Command::new(SHOTFLOW)
                .args(demo_args(&path, EVENTS, &extra))
                .env("SHOTFLOW_TEST_COMMIT_PAUSE_MS", "500")
                .env("RUST_BACKTRACE", "0")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    while !tmp.exists() {
        assert!(started.elapsed() < LIMIT, "no final master");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut children = children.into_iter();
    let (zero, mut one) = (children.next().unwrap(), children.next().unwrap());
    let _ = one.kill();
    let _ = one.wait();
    let out = wait_bounded(zero, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(master(&path).complete);
    let n = assert_identical(&path, &reference);
    eprintln!("complete after the peer's loss: {n} datasets identical; process 0 said: {stderr}");
}

/// A simulated EuXFEL run of 2000 trains (one AGIPD module, 2 frames) in `dir/r0001`.
fn simulate_run(dir: &Path) -> PathBuf {
    let run = dir.join("r0001");
    let mut args: Vec<String> = [
        "simulate",
        "--trains",
        "2000",
        "--modules",
        "1",
        "--frames",
        "2",
        "--trains-per-file",
        "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(run.display().to_string());
    ok(&wait_bounded(spawn(SHOTFLOW, &args), LIMIT));
    run
}

/// `extract` of the XGM intensities and the AGIPD frames of `run`, one train per batch,
/// committing every 0.1 s unless `extra` says otherwise.
fn extract_args(run: &Path, output: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "extract",
        "--select",
        "*_XGM/DOOCS/MAIN:output:data.intensityTD",
        "--select",
        "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf:image.data",
        "--trains-per-batch",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--commit-interval") {
        args.extend(["--commit-interval".into(), "0.1".into()]);
    }
    args.extend([run.display().to_string(), "--output".into()]);
    args.push(output.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Extracts into `reference.h5` uninterrupted; then into `extract.h5`, stopped by SIGINT after
/// its first commit and resumed with two workers. Checks that the resume started where the
/// commit left off, recomputed nothing, and gave the reference's datasets. Returns the
/// interrupted run's last master and the number of datasets compared.
fn interrupt_then_resume(
    dir: &Path,
    extract: &dyn Fn(&Path, &[&str]) -> Vec<String>,
) -> (Master, usize) {
    let reference_path = dir.join("reference.h5");
    ok(&wait_bounded(
        spawn(SHOTFLOW, &extract(&reference_path, &[])),
        LIMIT,
    ));
    let reference = datasets(&reference_path);

    let path = dir.join("extract.h5");
    let child = start_and_commit(&extract(&path, &[]), &path, Duration::from_millis(20));
    signal(&child, libc::SIGINT);
    let out = wait_bounded(child, LIMIT);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = master(&path);
    assert!(!committed.complete && committed.batches >= 1);
    ok(&wait_bounded(
        spawn(SHOTFLOW, &extract(&path, &["--resume", "--workers", "2"])),
        LIMIT,
    ));
    let m = master(&path);
    assert!(m.complete);
    assert_eq!((m.resumed_from, m.recomputed), (committed.batches, 0));
    let n = assert_identical(&path, &reference);
    (committed, n)
}

/// `extract` of a EuXFEL run, interrupted by SIGINT after its first commit, then resumed with
/// two workers: the same datasets as an uninterrupted extraction, and no train read twice.
#[test]
fn extract_interrupted_and_resumed_equals_an_uninterrupted_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let run = simulate_run(dir.path());
    let extract = |output: &Path, extra: &[&str]| extract_args(&run, output, extra);
    let (committed, n) = interrupt_then_resume(dir.path(), &extract);
    eprintln!(
        "extract: interrupted after {} of 2000 trains, resumed: {n} datasets identical",
        committed.events
    );
}

/// Losses are counted once, with the batches they belong to: a run with a suspect train (out
/// of order in the detector's file, so that train also lacks the detector's fields) says so
/// in `shotflow/losses`, the same after an interruption and a resume as uninterrupted.
#[test]
fn losses_are_committed_with_their_batches_and_survive_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let run = simulate_run(dir.path());
    // Train 1210 of the detector's third file repeats an earlier one: suspect, skipped.
    let script = "import sys,h5py\nf=h5py.File(sys.argv[1],'r+')\nt=f['INDEX/trainId'][:]\nt[210]=t[208]\nf['INDEX/trainId'][:]=t\n";
    let o = common::python_command()
        .args(["-c", script])
        .arg(run.join("RAW-R0001-AGIPD00-S00002.h5"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let extract = |output: &Path, extra: &[&str]| extract_args(&run, output, extra);
    let losses = |path: &Path| -> (Vec<(String, String, u64)>, u64, u64) {
        let file = hdf5::File::open(path).unwrap();
        let text = |name: &str| -> Vec<String> {
            file.dataset(name)
                .unwrap()
                .read_raw::<hdf5::types::VarLenUnicode>()
                .unwrap()
                .iter()
                .map(|s| s.as_str().to_string())
                .collect()
        };
        let (sources, reasons) = (
            text("shotflow/losses/source"),
            text("shotflow/losses/reason"),
        );
        let events = file
            .dataset("shotflow/losses/events")
            .unwrap()
            .read_raw::<u64>()
            .unwrap();
        let group = file.group("shotflow").unwrap();
        let attr = |n: &str| group.attr(n).unwrap().read_scalar::<u64>().unwrap();
        let table = sources
            .into_iter()
            .zip(reasons)
            .zip(events)
            .map(|((s, r), n)| (s, r, n))
            .collect();
        (
            table,
            attr("lost_events"),
            attr("events_with_missing_fields"),
        )
    };
    let want = vec![
        (
            "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf".to_string(),
            "missing fields".to_string(),
            1,
        ),
        (
            "run".to_string(),
            "suspect train (out of order or repeated in its file)".to_string(),
            1,
        ),
    ];

    let whole = dir.path().join("whole.h5");
    let out = ok(&wait_bounded(spawn(SHOTFLOW, &extract(&whole, &[])), LIMIT)).clone();
    assert_eq!(losses(&whole), (want.clone(), 1, 1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 events: missing fields: SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"),
        "{stderr}"
    );

    let path = dir.path().join("resumed.h5");
    let child = start_and_commit(&extract(&path, &[]), &path, Duration::from_millis(20));
    signal(&child, libc::SIGINT);
    assert_eq!(wait_bounded(child, LIMIT).status.code(), Some(130));
    let committed = master(&path);
    assert!(!committed.complete);
    ok(&wait_bounded(
        spawn(SHOTFLOW, &extract(&path, &["--resume", "--workers", "2"])),
        LIMIT,
    ));
    assert_eq!(
        losses(&path),
        (want, 1, 1),
        "after a resume at batch {}",
        committed.batches
    );
    assert_identical(&path, &datasets(&whole));
}

/// A second SIGINT ends the process at once (no final master), and the next run resumes from
/// the last periodic commit to identical data.
#[test]
fn a_second_signal_exits_at_once_and_the_run_still_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = reference(dir.path(), EVENTS);
    let path = dir.path().join("twice.h5");
    let child = start_and_commit(
        &demo_args(&path, EVENTS, &[]),
        &path,
        Duration::from_millis(300),
    );
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGINT);
    let started = Instant::now();
    let out = wait_bounded(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let committed = check_partial(&path, &reference);
    resume(&path, &reference, &committed, &["--workers", "2"]);
}

/// `extract` of an LCLS-II XTC2 run, interrupted by SIGINT after its first commit, then
/// resumed with two workers: batches are found again from the smd files, so the datasets equal
/// an uninterrupted extraction's.
#[test]
fn xtc2_extract_interrupted_and_resumed_equals_an_uninterrupted_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("xtc2");
    shotflow::xtc2::Xtc2Simulation {
        events: 3000,
        events_per_step: 500,
        frame: [128, 256],
        segment: [8, 8],
        ..Default::default()
    }
    .write(&run)
    .unwrap();
    let extract = |output: &Path, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["extract", "--select", "*", "--events-per-batch", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !extra.contains(&"--commit-interval") {
            args.extend(["--commit-interval".into(), "0.1".into()]);
        }
        args.extend([run.display().to_string(), "--output".into()]);
        args.push(output.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let (committed, n) = interrupt_then_resume(dir.path(), &extract);
    eprintln!(
        "xtc2 extract: interrupted after {} of 3000 events, resumed: {n} datasets identical",
        committed.events
    );
}
