//! The files of one smalldata output, and the rules that keep a result from being lost.
//!
//! For an output `run.h5`:
//!
//! * `run.h5`: the master. Its root attribute `complete` says whether every batch is in it; a
//!   master without the attribute (written before it existed) counts as complete.
//! * `run.partial.h5`: the master of a run in progress, or stopped, or crashed, **while a
//!   complete result is at `run.h5`**: that one stays untouched until a new run completes and
//!   replaces it with one rename.
//! * `run.seg-<id>-w<k>-<n>.h5`: segment `n` of writer `k` of the run (process) `id`. A
//!   segment is written under `….h5.tmp` and renamed only once closed, so no committed name
//!   ever holds an open HDF5 file. Masters map closed segments only.
//! * `run.seg-<id>-c<level>-<n>.h5`: a compacted file: a range of committed batches copied
//!   out of the segments (or compacted files) that held them, in master order (see
//!   [`super::compaction`]). Written under `….h5.tmp` too.
//! * `.run.h5.lock`: held by the process that writes the master, so that two runs cannot
//!   write one output at the same time.
//!
//! A segment that no master refers to (a crashed run's open or uncommitted files, the files
//! of a result that was replaced) is deleted when the next run starts or completes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::manifest::Manifest;
use super::run_summary::Summary;
use super::SmallDataError;

/// The names of one output's files.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The master of a complete result.
    pub path: PathBuf,
    stem: String,
}

impl Layout {
    pub fn new(path: &Path) -> Layout {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "smalldata".into());
        Layout {
            path: path.to_path_buf(),
            stem,
        }
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Where a run's master goes while a complete result is at [`Layout::path`].
    pub fn partial(&self) -> PathBuf {
        self.path
            .with_file_name(format!("{}.partial.h5", self.stem))
    }

    /// The file name of a closed segment (relative to the master's directory, as the master
    /// refers to it).
    pub fn segment(&self, run: &str, writer: usize, seq: u64) -> String {
        format!("{}.seg-{run}-w{writer}-{seq}.h5", self.stem)
    }

    /// The file name of compacted file `seq` of level `level` written by run `run`.
    pub fn compacted(&self, run: &str, level: u32, seq: u64) -> String {
        format!("{}.seg-{run}-c{level}-{seq}.h5", self.stem)
    }

    /// The full path of a file named relative to the master's directory.
    pub fn beside(&self, name: &str) -> PathBuf {
        self.path.with_file_name(name)
    }

    /// The segment files (closed or not) in the master's directory.
    fn segments(&self) -> Vec<String> {
        let prefix = format!("{}.seg-", self.stem);
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix) && (n.ends_with(".h5") || n.ends_with(".h5.tmp")))
            .collect()
    }

    /// Part files of a master written before segments existed (`run_part<k>.h5`).
    fn legacy_parts(&self) -> Vec<PathBuf> {
        let prefix = format!("{}_part", self.stem);
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(".h5"))
                    .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|n| self.beside(&n))
            .collect()
    }

    /// Deletes every segment that none of `keep` refers to, except those named in `spare`.
    pub fn remove_unreferenced(&self, keep: &[&Manifest], spare: &[&str]) {
        for name in self.segments() {
            let referenced = keep
                .iter()
                .any(|m| m.segments.iter().any(|s| s.file == name));
            if !referenced && !spare.contains(&name.as_str()) {
                let _ = std::fs::remove_file(self.beside(&name));
            }
        }
    }
}

/// What is at a master's path.
#[derive(Debug)]
pub(crate) enum Found {
    Nothing,
    /// A complete result (without a manifest: written before manifests existed).
    Complete(Option<Manifest>),
    /// A partial result: a run that stopped or crashed after committing this.
    Partial(Manifest),
    /// A file that is not a readable master.
    Unreadable(String),
}

impl Found {
    pub fn at(path: &Path) -> Found {
        if !path.exists() {
            return Found::Nothing;
        }
        match Manifest::read(path) {
            Ok(None) => Found::Complete(None),
            Ok(Some(m)) if m.complete => Found::Complete(Some(m)),
            Ok(Some(m)) => Found::Partial(m),
            // A complete result of another shotflow is protected all the same.
            Err(e) if marked_complete(path) => {
                eprintln!("note: {e}: kept as a complete result");
                Found::Complete(None)
            }
            Err(e) => Found::Unreadable(e.to_string()),
        }
    }
}

/// The root attribute `complete` of the HDF5 file at `path`, if it reads `true`.
fn marked_complete(path: &Path) -> bool {
    hdf5::File::open(path)
        .and_then(|f| f.attr("complete")?.read_scalar::<bool>())
        .unwrap_or(false)
}

/// Decisions taken once per process before a run writes an output.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Where this run's master goes until the run completes.
    pub master: PathBuf,
    /// The committed state this run continues (`--resume`).
    pub resumed: Option<Manifest>,
    /// The complete result at the output path that this run replaces when it completes.
    pub replaces: Option<Option<Manifest>>,
    /// Names this process's segments apart from any other run's.
    pub run: String,
    /// Keeps other runs from writing this output meanwhile (the master's process only).
    _lock: Option<File>,
}

impl Prepared {
    /// Stands in for a preparation that failed (the run is failing already).
    pub fn failed(path: &Path) -> Prepared {
        Prepared {
            master: path.to_path_buf(),
            resumed: None,
            replaces: None,
            run: "failed".into(),
            _lock: None,
        }
    }
}

/// [`prepare`], shared by every worker of this process that writes the same output while one
/// of them holds it: workers that each build their own [`super::SmallData`] for one path must
/// not prepare (and lock) it twice.
pub(crate) fn prepare_once(
    layout: &Layout,
    resume: bool,
    fingerprint: &[(String, String)],
    summaries: &[Summary],
    owner: bool,
) -> Result<Arc<Prepared>, SmallDataError> {
    static ACTIVE: Mutex<Vec<(PathBuf, Weak<Prepared>)>> = Mutex::new(Vec::new());
    let key = std::path::absolute(&layout.path).unwrap_or_else(|_| layout.path.clone());
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    active.retain(|(_, p)| p.strong_count() > 0);
    if let Some(prepared) = active
        .iter()
        .find(|(path, _)| *path == key)
        .and_then(|(_, p)| p.upgrade())
    {
        return Ok(prepared);
    }
    let prepared = Arc::new(prepare(layout, resume, fingerprint, summaries, owner)?);
    active.push((key, Arc::downgrade(&prepared)));
    Ok(prepared)
}

/// Looks at what is already at `layout`'s paths and decides where this run writes, what it
/// continues and what it must not touch. `owner` is the process that writes the master: it
/// takes the lock and removes files of abandoned runs.
pub(crate) fn prepare(
    layout: &Layout,
    resume: bool,
    fingerprint: &[(String, String)],
    summaries: &[Summary],
    owner: bool,
) -> Result<Prepared, SmallDataError> {
    let lock = if owner { Some(lock(layout)?) } else { None };
    let at_path = Found::at(&layout.path);
    let at_partial = Found::at(&layout.partial());
    let master = match at_path {
        Found::Complete(_) => layout.partial(),
        _ => layout.path.clone(),
    };
    let partial = match (&at_partial, &at_path) {
        (Found::Partial(m), _) => Some((layout.partial(), m)),
        (_, Found::Partial(m)) => Some((layout.path.clone(), m)),
        _ => None,
    };
    let resumed = match (resume, partial) {
        (true, Some((from, manifest))) => {
            if let Some(why) = manifest.mismatch(fingerprint, summaries) {
                return Err(SmallDataError::Resume {
                    master: from.display().to_string(),
                    problem: format!("this run differs from the one that wrote it: {why}"),
                });
            }
            Some(manifest.clone())
        }
        (true, None) => {
            if let Found::Complete(_) = at_path {
                return Err(SmallDataError::Resume {
                    master: layout.path.display().to_string(),
                    problem: "it is complete: there is nothing to resume (run without --resume to replace it)".into(),
                });
            }
            if owner {
                eprintln!(
                    "note: nothing to resume at {}: starting from the beginning",
                    layout.path.display()
                );
            }
            None
        }
        (false, Some((from, manifest))) => {
            if owner {
                eprintln!(
                    "warning: replacing the partial result {} ({} events in batches 0..{}); \
                     give --resume to continue it instead",
                    from.display(),
                    manifest.events,
                    manifest.batches
                );
                let _ = std::fs::remove_file(&from);
            }
            None
        }
        (false, None) => None,
    };
    if owner {
        if let Found::Unreadable(why) = &at_path {
            eprintln!(
                "warning: {} is not a readable master ({why}); this run replaces it",
                layout.path.display()
            );
        }
        if let Found::Unreadable(_) = at_partial {
            let _ = std::fs::remove_file(layout.partial());
        }
        // Without a manifest, a complete result does not say which segments are its own: all
        // stay until this run replaces it.
        if !matches!(at_path, Found::Complete(None)) {
            let complete = match &at_path {
                Found::Complete(Some(m)) => Some(m),
                _ => None,
            };
            let keep: Vec<&Manifest> = complete.into_iter().chain(resumed.as_ref()).collect();
            layout.remove_unreferenced(&keep, &[]);
        }
    }
    Ok(Prepared {
        master,
        resumed,
        replaces: match at_path {
            Found::Complete(m) => Some(m),
            _ => None,
        },
        run: format!("{:08x}", rand::random::<u32>()),
        _lock: lock,
    })
}

fn lock(layout: &Layout) -> Result<File, SmallDataError> {
    let name = layout
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = layout.path.with_file_name(format!(".{name}.lock"));
    let io = |source| SmallDataError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SmallDataError::InUse {
            output: layout.path.display().to_string(),
            lock: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// After a complete master is at the output path: removes the partial master and every file of
/// the result it replaced, except `spare` (files that a reader of a master written moments ago
/// may still need).
pub(crate) fn retire(layout: &Layout, prepared: &Prepared, complete: &Manifest, spare: &[&str]) {
    if prepared.master != layout.path {
        let _ = std::fs::remove_file(&prepared.master);
    }
    let _ = std::fs::remove_file(layout.partial());
    if let Some(None) = prepared.replaces {
        for part in layout.legacy_parts() {
            let _ = std::fs::remove_file(part);
        }
    }
    layout.remove_unreferenced(&[complete], spare);
}

/// Renames `from` to `to`; with `durable`, also makes the rename survive a power loss (fsync of
/// the file before, of the directory after).
pub(crate) fn commit_file(from: &Path, to: &Path, durable: bool) -> Result<(), SmallDataError> {
    let io = |source| SmallDataError::Io {
        path: to.display().to_string(),
        source,
    };
    if durable {
        File::open(from).and_then(|f| f.sync_all()).map_err(io)?;
    }
    std::fs::rename(from, to).map_err(io)?;
    if durable {
        let dir = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete master whose manifest another shotflow wrote (layout 1) keeps its place and
    /// its segments while a new run writes beside it.
    #[test]
    fn a_complete_result_of_another_manifest_layout_is_protected() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(&dir.path().join("run.h5"));
        {
            let file = hdf5::File::create(&layout.path).unwrap();
            file.new_attr::<bool>()
                .create("complete")
                .unwrap()
                .write_scalar(&true)
                .unwrap();
            file.create_group("shotflow").unwrap();
            file.new_dataset_builder()
                .with_data(&[1u8, 0, 0, 0, 9, 9])
                .create("shotflow/manifest")
                .unwrap();
        }
        let segment = layout.beside(&layout.segment("0000abcd", 0, 0));
        std::fs::write(&segment, b"rows of the old result").unwrap();
        assert!(matches!(Found::at(&layout.path), Found::Complete(None)));
        let prepared = prepare(&layout, false, &[], &[], true).unwrap();
        assert_eq!(prepared.master, layout.partial());
        assert!(segment.exists(), "the old result's segment stays");
        let refused = prepare(&layout, true, &[], &[], false).unwrap_err();
        assert!(refused.to_string().contains("complete"), "{refused}");
    }
}
