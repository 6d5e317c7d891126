//! A run directory: every file's index joined by train id, the keys of every source, and
//! reading the selected keys of a set of trains into events.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use ndarray::{ArrayD, Axis, IxDyn};

use super::file::{FileInfo, SourceKind};
use super::{ExdfError, Selector};
use crate::event::{DType, Element, Event, Key, Value};

/// One key of a source.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyInfo {
    /// extra-data's name, `.`-separated (`image.data`, `beamPosition.ixPos.value`).
    pub name: String,
    /// Index group (`""` for control sources, `image`, `data`, ... for instrument sources).
    pub group: String,
    /// Element type.
    pub dtype: DType,
    /// Shape of one row.
    pub shape: Vec<usize>,
    /// The file (index into [`ExdfRun::files`]) whose dtype and shape these are.
    pub file: usize,
}

/// Whether every value of `from` is exactly a value of `to` (a lossless widening).
fn widens(from: DType, to: DType) -> bool {
    use DType::*;
    let rank = |d: DType| match d {
        U8 | I8 => 1,
        U16 | I16 => 2,
        U32 | I32 | F32 => 4,
        U64 | I64 | F64 => 8,
        Bool => 0,
    };
    let unsigned = |d: DType| matches!(d, U8 | U16 | U32 | U64);
    let signed = |d: DType| matches!(d, I8 | I16 | I32 | I64);
    from == to
        || (unsigned(from) && unsigned(to) && rank(to) > rank(from))
        || (unsigned(from) && signed(to) && rank(to) > rank(from))
        || (signed(from) && signed(to) && rank(to) > rank(from))
        || ((unsigned(from) || signed(from)) && to == F64 && rank(from) <= 4)
        || ((unsigned(from) || signed(from)) && to == F32 && rank(from) <= 2)
        || (from == F32 && to == F64)
}

/// Where one train's rows of one index group are.
#[derive(Clone, Copy, Debug)]
struct Rows {
    file: usize,
    first: u64,
    count: u64,
}

/// One source of the run.
#[derive(Clone, Debug)]
pub struct SourceInfo {
    /// Control or instrument.
    pub kind: SourceKind,
    /// Keys by name.
    pub keys: BTreeMap<String, KeyInfo>,
    rows: HashMap<String, HashMap<u64, Rows>>,
}

/// An opened run directory.
#[derive(Clone, Debug)]
pub struct ExdfRun {
    /// The directory.
    pub dir: PathBuf,
    /// Its files.
    pub files: Vec<FileInfo>,
    /// Every valid train id, sorted.
    pub trains: Vec<u64>,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceInfo>,
    /// Trains left out because a file lists them out of order or twice (extra-data's
    /// "suspect trains").
    pub suspect_trains: usize,
}

/// A key chosen for reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Selected {
    /// Source name.
    pub source: String,
    /// Kind of the source.
    pub kind: SourceKind,
    /// The key.
    pub key: KeyInfo,
    /// The event field it becomes: `"<source>/<key>"`.
    pub field: Key,
}

/// The shotflow dtype of an HDF5 type, if it has one.
///
/// # Examples
///
/// ```
/// use hdf5::types::{IntSize, TypeDescriptor};
/// use shotflow::event::DType;
/// use shotflow::exdf::dtype_of;
/// assert_eq!(dtype_of(&TypeDescriptor::Unsigned(IntSize::U2)), Some(DType::U16));
/// ```
pub fn dtype_of(descriptor: &TypeDescriptor) -> Option<DType> {
    Some(match descriptor {
        TypeDescriptor::Boolean => DType::Bool,
        TypeDescriptor::Unsigned(IntSize::U1) => DType::U8,
        TypeDescriptor::Unsigned(IntSize::U2) => DType::U16,
        TypeDescriptor::Unsigned(IntSize::U4) => DType::U32,
        TypeDescriptor::Unsigned(IntSize::U8) => DType::U64,
        TypeDescriptor::Integer(IntSize::U1) => DType::I8,
        TypeDescriptor::Integer(IntSize::U2) => DType::I16,
        TypeDescriptor::Integer(IntSize::U4) => DType::I32,
        TypeDescriptor::Integer(IntSize::U8) => DType::I64,
        TypeDescriptor::Float(FloatSize::U4) => DType::F32,
        TypeDescriptor::Float(FloatSize::U8) => DType::F64,
        _ => return None,
    })
}

/// Datasets below `group`, as `(path relative to it, dtype, row shape)`; strings and other
/// non-numeric types are skipped.
fn walk(
    group: &hdf5::Group,
    prefix: &str,
    out: &mut Vec<(String, DType, Vec<usize>)>,
) -> hdf5::Result<()> {
    for name in group.member_names()? {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if let Ok(dataset) = group.dataset(&name) {
            let Some(dtype) = dataset
                .dtype()
                .ok()
                .and_then(|t| t.to_descriptor().ok())
                .and_then(|d| dtype_of(&d))
            else {
                continue;
            };
            let shape = dataset.shape();
            out.push((path, dtype, shape.get(1..).unwrap_or(&[]).to_vec()));
        } else if let Ok(sub) = group.group(&name) {
            walk(&sub, &path, out)?;
        }
    }
    Ok(())
}

impl ExdfRun {
    /// Opens a run directory: reads every file's metadata and index (not the data).
    pub fn open(dir: &Path) -> Result<ExdfRun, ExdfError> {
        let entries = std::fs::read_dir(dir).map_err(|e| ExdfError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(super::file::parse_name)
                    .is_some()
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(ExdfError::Format {
                file: dir.display().to_string(),
                message: "no EXDF files (RAW-R####-AGG-S#####.h5) in this directory".into(),
            });
        }
        let mut files = Vec::new();
        let mut trains = Vec::new();
        let mut suspect = 0;
        let mut sources: BTreeMap<String, SourceInfo> = BTreeMap::new();
        for (index, path) in paths.iter().enumerate() {
            let (info, file) = FileInfo::open(path)?;
            let mut last = 0u64;
            for (row, &train) in info.train_ids.iter().enumerate() {
                if train == 0 {
                    continue; // chunk padding
                }
                if train <= last {
                    suspect += 1;
                    tracing::warn!(
                        "{}: train {train} at row {row} after train {last}: skipped as suspect",
                        path.display()
                    );
                    continue;
                }
                last = train;
                trains.push(train);
                for ((source, group), idx) in &info.index {
                    let count = idx.count[row];
                    if count == 0 {
                        continue;
                    }
                    sources
                        .entry(source.clone())
                        .or_insert_with(|| SourceInfo {
                            kind: info.sources[source].0,
                            keys: BTreeMap::new(),
                            rows: HashMap::new(),
                        })
                        .rows
                        .entry(group.clone())
                        .or_default()
                        .insert(
                            train,
                            Rows {
                                file: index,
                                first: idx.first[row],
                                count,
                            },
                        );
                }
            }
            for (source, (kind, groups)) in &info.sources {
                let entry = sources.entry(source.clone()).or_insert_with(|| SourceInfo {
                    kind: *kind,
                    keys: BTreeMap::new(),
                    rows: HashMap::new(),
                });
                if !entry.keys.is_empty() {
                    continue;
                }
                let root = match kind {
                    SourceKind::Control => format!("CONTROL/{source}"),
                    SourceKind::Instrument => format!("INSTRUMENT/{source}"),
                };
                let group = file
                    .group(&root)
                    .map_err(|e| ExdfError::hdf5(path, &root, e))?;
                let mut found = Vec::new();
                walk(&group, "", &mut found).map_err(|e| ExdfError::hdf5(path, &root, e))?;
                for (key_path, dtype, shape) in found {
                    let index_group = match kind {
                        SourceKind::Control => String::new(),
                        SourceKind::Instrument => {
                            key_path.split('/').next().unwrap_or_default().to_string()
                        }
                    };
                    if *kind == SourceKind::Instrument && !groups.contains(&index_group) {
                        continue;
                    }
                    let name = key_path.replace('/', ".");
                    entry.keys.insert(
                        name.clone(),
                        KeyInfo {
                            name,
                            group: index_group,
                            dtype,
                            shape,
                            file: index,
                        },
                    );
                }
            }
            files.push(info);
        }
        trains.sort_unstable();
        let before = trains.len();
        trains.dedup();
        // The same train in several aggregators is normal; only a repeat within a file is not.
        let _ = before;
        Ok(ExdfRun {
            dir: dir.to_path_buf(),
            files,
            trains,
            sources,
            suspect_trains: suspect,
        })
    }

    /// The keys that `selectors` choose (all keys of matching sources for `SOURCE` alone).
    pub fn select(&self, selectors: &[Selector]) -> Result<Vec<Selected>, ExdfError> {
        let mut out = Vec::new();
        let any = glob::Pattern::new("*").expect("valid pattern");
        for selector in selectors {
            let mut matched = false;
            let split_matches = self.sources.iter().any(|(name, source)| {
                selector.source.matches(name) && source.keys.keys().any(|k| selector.key.matches(k))
            });
            let (source_pattern, key_pattern) = match (&selector.whole, split_matches) {
                (Some(whole), false) => (whole, &any),
                _ => (&selector.source, &selector.key),
            };
            for (name, source) in &self.sources {
                if !source_pattern.matches(name) {
                    continue;
                }
                for key in source.keys.values() {
                    if key_pattern.matches(&key.name)
                        && !out
                            .iter()
                            .any(|s: &Selected| s.source == *name && s.key.name == key.name)
                    {
                        matched = true;
                        out.push(Selected {
                            source: name.clone(),
                            kind: source.kind,
                            key: key.clone(),
                            field: Key::new(&format!("{name}/{}", key.name)),
                        });
                    }
                }
            }
            if !matched {
                return Err(ExdfError::Select(format!(
                    "{selector} matches no source and key of {} (try `shotflow inspect {}`)",
                    self.dir.display(),
                    self.dir.display()
                )));
            }
        }
        Ok(out)
    }

    /// Reads `selected` for `trains` (sorted) into one event per train, opening datasets through
    /// `open(file, dataset)` (so each worker keeps its own handles: reopening a dataset per
    /// batch also loses its chunk cache).
    pub fn read(
        &self,
        trains: &[u64],
        selected: &[Selected],
        open: &mut dyn FnMut(usize, &str) -> Result<hdf5::Dataset, ExdfError>,
    ) -> Result<Vec<Event>, ExdfError> {
        let mut events: Vec<Event> = trains
            .iter()
            .map(|&t| Event::with_capacity(t, selected.len()))
            .collect();
        for sel in selected {
            let source = &self.sources[&sel.source];
            let Some(rows) = source.rows.get(&sel.key.group) else {
                continue;
            };
            // Trains of this batch per file, so each file is read with one slab per key.
            let mut by_file: BTreeMap<usize, Vec<(usize, Rows)>> = BTreeMap::new();
            for (i, train) in trains.iter().enumerate() {
                if let Some(r) = rows.get(train) {
                    by_file.entry(r.file).or_default().push((i, *r));
                }
            }
            for (file_index, wanted) in by_file {
                let path = &self.files[file_index].path;
                let root = match sel.kind {
                    SourceKind::Control => "CONTROL",
                    SourceKind::Instrument => "INSTRUMENT",
                };
                let dataset_name =
                    format!("{root}/{}/{}", sel.source, sel.key.name.replace('.', "/"));
                let dataset = open(file_index, &dataset_name)?;
                let lo = wanted.iter().map(|(_, r)| r.first).min().unwrap_or(0);
                let hi = wanted
                    .iter()
                    .map(|(_, r)| r.first + r.count)
                    .max()
                    .unwrap_or(0);
                let length = dataset.shape().first().copied().unwrap_or(0) as u64;
                if hi > length {
                    return Err(ExdfError::Format {
                        file: path.display().to_string(),
                        message: format!(
                            "{dataset_name}: INDEX points to rows up to {hi} (train {}) but the dataset has {length}",
                            wanted.last().map(|(i, _)| trains[*i]).unwrap_or(0)
                        ),
                    });
                }
                // The first file's dtype is the key's: HDF5 would convert any other one
                // silently (float64 1e6 read as uint16 is 65535).
                let found = dataset
                    .dtype()
                    .and_then(|t| t.to_descriptor())
                    .ok()
                    .and_then(|d| dtype_of(&d));
                if let Some(found) = found.filter(|&d| d != sel.key.dtype) {
                    let first = self.files[sel.key.file].path.display().to_string();
                    if !widens(found, sel.key.dtype) {
                        return Err(ExdfError::Format {
                            file: path.display().to_string(),
                            message: format!(
                                "{dataset_name} is {found} here but {} in {first}; converting would lose values",
                                sel.key.dtype
                            ),
                        });
                    }
                    warn_once(format!(
                        "{}: {dataset_name} is {found}, read as {} (its dtype in {first}); the conversion is exact",
                        path.display(),
                        sel.key.dtype
                    ));
                }
                let shape = dataset.shape();
                if shape.get(1..).unwrap_or(&[]) != sel.key.shape.as_slice() {
                    return Err(ExdfError::Format {
                        file: path.display().to_string(),
                        message: format!(
                            "{dataset_name}: rows of shape {:?}, but the run's first file has {:?}",
                            &shape[1..],
                            sel.key.shape
                        ),
                    });
                }
                let control = sel.kind == SourceKind::Control;
                let row_bytes = sel.key.shape.iter().product::<usize>() * sel.key.dtype.size();
                // Frames are read train by train straight into the event's array (no second
                // copy); small rows are read as one slab per file and split.
                let per_train = !control && row_bytes >= 4096;
                let rows_of = |from: u64, to: u64| {
                    let mut selection = vec![hdf5::SliceOrIndex::from(from as usize..to as usize)];
                    selection.extend(
                        sel.key
                            .shape
                            .iter()
                            .map(|&d| hdf5::SliceOrIndex::from(0..d)),
                    );
                    hdf5::Hyperslab::from(selection)
                };
                macro_rules! read_as {
                    ($t:ty) => {{
                        if per_train {
                            for (i, r) in wanted {
                                let frames: ArrayD<$t> = dataset
                                    .read_slice(rows_of(r.first, r.first + r.count))
                                    .map_err(|e| ExdfError::hdf5(path, &dataset_name, e))?;
                                events[i].set(sel.field, Value::from(frames));
                            }
                        } else {
                            let slab: ArrayD<$t> = dataset
                                .read_slice(rows_of(lo, hi))
                                .map_err(|e| ExdfError::hdf5(path, &dataset_name, e))?;
                            for (i, r) in wanted {
                                let from = (r.first - lo) as usize;
                                let part = slab.slice_axis(
                                    Axis(0),
                                    ndarray::Slice::from(from..from + r.count as usize),
                                );
                                let value = if control {
                                    let row = part.index_axis(Axis(0), 0);
                                    if row.ndim() == 0 {
                                        row.first().copied().map(<$t as Element>::into_value)
                                    } else {
                                        Some(Value::from(row.to_owned().into_dyn()))
                                    }
                                } else {
                                    Some(Value::from(
                                        part.to_owned()
                                            .into_shape_with_order(IxDyn(part.shape()))
                                            .expect("same shape"),
                                    ))
                                };
                                if let Some(value) = value {
                                    events[i].set(sel.field, value);
                                }
                            }
                        }
                    }};
                }
                crate::with_dtype!(sel.key.dtype, T => read_as!(T))
            }
        }
        Ok(events)
    }
}

/// Warns once per message in a process (reads repeat per batch).
fn warn_once(message: String) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.contains(&message) {
        eprintln!("warning: {message}");
        seen.push(message);
    }
}

#[cfg(test)]
mod widening {
    use super::widens;
    use crate::event::DType::*;

    #[test]
    fn only_exact_conversions_widen() {
        assert!(widens(U16, U32) && widens(U16, I32) && widens(I16, F32) && widens(F32, F64));
        assert!(widens(U32, F64) && widens(I8, I64));
        assert!(!widens(F64, U16) && !widens(U64, F64) && !widens(I16, U32) && !widens(U32, F32));
        assert!(!widens(U32, U16) && !widens(F64, F32) && !widens(I64, U64));
    }
}
