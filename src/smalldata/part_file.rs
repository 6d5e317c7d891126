//! Where a row becomes an HDF5 chunk: one writer's part file. Rows of the batches this writer
//! owns arrive in batch order and, within a batch, in event-id order; per alignment group each
//! key is one extensible chunked dataset, plus `timestamp`.
//!
//! Rows are cached per key and written in slabs, so memory is bounded in bytes, not events. The
//! file is closed when the writer is dropped, also when the run fails: whatever was flushed
//! stays readable.
//!
//! Ragged keys (a path component starting with `var_`, psana's convention) are stored
//! concatenated along their first axis, with an aligned `<var_parent>_len` (int64, 0 when the
//! event lacks it).
//!
//! Unaligned keys (the last path component starts with `unaligned_`, tjlane/smalldata's
//! convention) are never backfilled: each is a group of its own, whose one dataset sits at the
//! key's path and whose event ids sit beside it at `<path>_timestamp`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hdf5::{Extent, Extents, SimpleExtents};
use ndarray::{ArrayView, IxDyn};
use serde::{Deserialize, Serialize};

use super::column_cache::{with_data, Column, Data, Fill};
use super::{Row, SmallDataError};
use crate::event::{DType, Event, EventId, Key, Value};

/// Default for [`super::SmallData::cache_bytes`].
pub const CACHE_BYTES: usize = 4 << 20;
/// Aim for chunks of about this size (HDF5 caps chunks at 4 GiB; 1 MiB reads well).
const CHUNK_BYTES: usize = 1 << 20;

/// One dataset of a part file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KeySchema {
    /// Dataset path in the file (group prefix included).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape of one row (for ragged keys: of one element along the ragged axis).
    pub shape: Vec<usize>,
    /// Concatenated along the first axis (`var_`).
    pub ragged: bool,
    /// Rows in the dataset (for ragged keys: elements along the ragged axis).
    pub rows: u64,
}

/// One alignment group of a part file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupSchema {
    /// Group name (`None`: the file's root).
    pub group: Option<String>,
    /// Events in the group.
    pub rows: u64,
    /// Its datasets, `timestamp` excluded.
    pub keys: Vec<KeySchema>,
    /// The group of one `unaligned_` key (named by the key's path).
    #[serde(default)]
    pub unaligned: bool,
}

impl GroupSchema {
    /// Where the group's event ids are: `timestamp` at the root, `<group>/timestamp` for an
    /// alignment group, `<path>_timestamp` beside an `unaligned_` key.
    pub(crate) fn timestamp_path(&self) -> String {
        timestamp_path(self.group.as_deref(), self.unaligned)
    }
}

/// Where a group's event ids are: `timestamp` at the root, `<group>/timestamp` for an
/// alignment group, `<path>_timestamp` beside an `unaligned_` key.
pub(crate) fn timestamp_path(group: Option<&str>, unaligned: bool) -> String {
    match group {
        None => "timestamp".into(),
        Some(path) if unaligned => format!("{path}_timestamp"),
        Some(group) => format!("{group}/timestamp"),
    }
}

/// Whether a key is unaligned: its last path component starts with `unaligned_`
/// (`andor/unaligned_img`, not `unaligned_grp/x`).
pub(crate) fn is_unaligned(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .is_some_and(|last| last.starts_with("unaligned_"))
}

/// What a finished part file holds, as the master needs it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PartSchema {
    /// Part file name, relative to the master's directory.
    pub file: String,
    /// The groups.
    pub groups: Vec<GroupSchema>,
    /// Rows at the start of the file that a master takes from a compacted file instead.
    #[serde(default)]
    pub skip: Vec<GroupCounts>,
}

/// Rows and ragged elements one batch added to one group of a part.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupCounts {
    /// Group.
    pub group: Option<String>,
    /// Rows.
    pub rows: u64,
    /// Elements per ragged dataset.
    pub ragged: Vec<(String, u64)>,
}

/// Rows `from..to` of a dataset whose rows have `shape`, as an HDF5 selection.
pub(crate) fn rows(from: usize, to: usize, shape: &[usize]) -> hdf5::Selection {
    let mut slab = vec![hdf5::SliceOrIndex::from(from..to)];
    slab.extend(shape.iter().map(|&d| hdf5::SliceOrIndex::from(0..d)));
    hdf5::Hyperslab::from(slab).into()
}

pub(crate) fn chunk_rows(row_bytes: usize) -> usize {
    (CHUNK_BYTES / row_bytes.max(1)).clamp(1, 1 << 16)
}

pub(crate) fn create_groups(file: &hdf5::File, name: &str) -> hdf5::Result<()> {
    let mut prefix = String::new();
    let parts: Vec<&str> = name.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if file.group(&prefix).is_err() {
            file.create_group(&prefix)?;
        }
    }
    Ok(())
}

/// The `var_` parent of a key (`"var_peaks/x"` → `"var_peaks"`), if it is ragged.
pub fn var_parent(name: &str) -> Option<&str> {
    let mut end = 0;
    for component in name.split('/') {
        end += component.len();
        if component.starts_with("var_") {
            return Some(&name[..end]);
        }
        end += 1;
    }
    None
}

/// Creates an extensible chunked dataset of `existing` rows, backfilled with `fill`.
fn create_dataset<T: Fill>(
    file: &hdf5::File,
    path: &Path,
    name: &str,
    shape: &[usize],
    existing: usize,
    fill: T,
) -> Result<(), SmallDataError> {
    let context = |e| SmallDataError::hdf5(path, name, e);
    create_groups(file, name).map_err(context)?;
    let row_len = shape.iter().product::<usize>();
    let row_bytes = row_len * std::mem::size_of::<T>();
    let mut extents = vec![Extent::resizable(existing)];
    extents.extend(shape.iter().map(|&d| Extent::fixed(d)));
    let mut chunk = vec![chunk_rows(row_bytes)];
    // HDF5 allows zero-sized dimensions (an empty profile), not zero-sized chunks.
    chunk.extend(shape.iter().map(|&d| d.max(1)));
    let dataset = file
        .new_dataset::<T>()
        .shape(Extents::Simple(SimpleExtents::from_vec(extents)))
        .chunk(chunk)
        .fill_value(fill)
        // Writing the fill into every new chunk before our data overwrites it cost a third of
        // the write time; rows we do not write are backfilled explicitly below.
        .fill_time(hdf5::plist::dataset_create::FillTime::Never)
        .create(name)
        .map_err(context)?;
    // A key first seen late: rows already in the file get the fill value, in slabs so memory
    // stays bounded however long the run was.
    let slab_rows = chunk_rows(row_bytes);
    let buffer = vec![fill; slab_rows.min(existing) * row_len];
    let mut from = 0;
    while from < existing {
        let to = (from + slab_rows).min(existing);
        let mut dims = vec![to - from];
        dims.extend_from_slice(shape);
        let view =
            ArrayView::<T, IxDyn>::from_shape(IxDyn(&dims), &buffer[..(to - from) * row_len])
                .expect("whole rows");
        dataset
            .write_slice(view, rows(from, to, shape))
            .map_err(context)?;
        from = to;
    }
    Ok(())
}

/// Appends `data` (whole rows of `shape`) at `from` of dataset `name`.
fn append_rows(
    file: &hdf5::File,
    path: &Path,
    name: &str,
    shape: &[usize],
    from: usize,
    count: usize,
    data: &Data,
) -> Result<(), SmallDataError> {
    if count == 0 {
        return Ok(());
    }
    let context = |e| SmallDataError::hdf5(path, name, e);
    let dataset = file.dataset(name).map_err(context)?;
    let mut full = vec![from + count];
    full.extend_from_slice(shape);
    dataset.resize(full).map_err(context)?;
    let mut slab = vec![count];
    slab.extend_from_slice(shape);
    with_data!(data, v: T => {
        crate::flow::meter::written((v.len() * std::mem::size_of::<T>()) as u64);
        let view = ArrayView::<T, IxDyn>::from_shape(IxDyn(&slab), v).expect("cache holds whole rows");
        dataset.write_slice(view, rows(from, from + count, shape)).map_err(context)
    })
}

/// The rows of one alignment group in one part file.
struct GroupWriter {
    group: Option<String>,
    /// The group of one `unaligned_` key.
    unaligned: bool,
    /// This group's `unaligned_` keys and their full paths: their values go to groups of their
    /// own.
    forwarded: Vec<(Key, Key)>,
    prefix: String,
    columns: Vec<Column>,
    index: HashMap<Key, usize>,
    /// `<var_parent>_len` columns (int64, zero-filled), by parent name.
    lengths: Vec<(String, Column)>,
    timestamps: Vec<i64>,
    written: usize,
    rows: usize,
    last_id: Option<EventId>,
    /// The last event id in the file.
    last_written: Option<i64>,
}

impl GroupWriter {
    fn new(
        file: &hdf5::File,
        path: &Path,
        group: Option<String>,
        unaligned: bool,
    ) -> Result<GroupWriter, SmallDataError> {
        // An unaligned group's one key is named by its full path already.
        let prefix = match &group {
            Some(g) if !unaligned => format!("{g}/"),
            _ => String::new(),
        };
        let stamps = timestamp_path(group.as_deref(), unaligned);
        create_dataset::<i64>(file, path, &stamps, &[], 0, -99_999)?;
        Ok(GroupWriter {
            group,
            unaligned,
            forwarded: Vec::new(),
            prefix,
            columns: Vec::new(),
            index: HashMap::new(),
            lengths: Vec::new(),
            timestamps: Vec::new(),
            written: 0,
            rows: 0,
            last_id: None,
            last_written: None,
        })
    }

    /// Appends `event`'s fields, except its `unaligned_` ones: those are listed in `forward`
    /// (full path, position among the fields) for their own groups.
    fn append(
        &mut self,
        file: &hdf5::File,
        path: &Path,
        event: &Event,
        forward: &mut Vec<(Key, usize)>,
    ) -> Result<(), SmallDataError> {
        if self.last_id.is_some_and(|last| event.id <= last) {
            return Err(SmallDataError::Order {
                file: path.display().to_string(),
                event: event.id,
                previous: self.last_id.unwrap(),
            });
        }
        self.last_id = Some(event.id);
        self.timestamps.push(event.id as i64);
        let row = self.rows;
        let mut lengths: Vec<(&str, usize, Key)> = Vec::new();
        for (position, (key, value)) in event.fields().iter().enumerate() {
            // Events of one run usually list their fields in the same order, so the column at
            // the field's position is nearly always the one: no hashing per value.
            let guess = self
                .columns
                .get(position)
                .filter(|c| c.key == *key)
                .map(|_| position);
            let at = match guess.or_else(|| self.index.get(key).copied()) {
                Some(at) => at,
                None => match self.forwarded_path(*key)? {
                    Some(full) => {
                        forward.push((full, position));
                        continue;
                    }
                    None => self.add_column(file, path, *key, value, event.id)?,
                },
            };
            let column = &mut self.columns[at];
            if column.ragged {
                let n = column.push_ragged(value, event.id)?;
                let parent = var_parent(key.name()).expect("ragged keys have a var_ parent");
                match lengths.iter().find(|(p, _, _)| *p == parent) {
                    Some((_, len, other)) if *len != n => {
                        return Err(SmallDataError::RaggedLengths {
                            event: event.id,
                            key: key.name().to_string(),
                            entries: n,
                            other: other.name().to_string(),
                            other_entries: *len,
                        })
                    }
                    Some(_) => {}
                    None => lengths.push((parent, n, *key)),
                }
            } else {
                if column.filled_to < row {
                    column.push_fill(row - column.filled_to);
                }
                column.push(value, event.id)?;
                column.filled_to = row + 1;
            }
        }
        for (parent, n, _) in lengths {
            let at = match self.lengths.iter().position(|(p, _)| p == parent) {
                Some(at) => at,
                None => {
                    let name = format!("{}{parent}_len", self.prefix);
                    create_dataset::<i64>(file, path, &name, &[], self.written, 0)?;
                    let mut column = Column::new(Key::new(&name), &Value::I64(0), event.id);
                    column.filled_to = self.written;
                    self.lengths.push((parent.to_string(), column));
                    self.lengths.len() - 1
                }
            };
            let column = &mut self.lengths[at].1;
            if column.filled_to < row {
                push_zeros(column, row - column.filled_to);
            }
            column.push(&Value::I64(n as i64), event.id)?;
            column.filled_to = row + 1;
        }
        self.rows += 1;
        Ok(())
    }

    /// The full path of `key` when it is an `unaligned_` key of this group (not itself an
    /// unaligned group's key).
    fn forwarded_path(&mut self, key: Key) -> Result<Option<Key>, SmallDataError> {
        if let Some((_, full)) = self.forwarded.iter().find(|(k, _)| *k == key) {
            return Ok(Some(*full));
        }
        if self.unaligned || !is_unaligned(key.name()) {
            return Ok(None);
        }
        let full = format!("{}{}", self.prefix, key.name());
        if var_parent(&full).is_some() {
            return Err(SmallDataError::UnalignedRagged { key: full });
        }
        let full = Key::new(&full);
        self.forwarded.push((key, full));
        Ok(Some(full))
    }

    fn add_column(
        &mut self,
        file: &hdf5::File,
        path: &Path,
        key: Key,
        value: &Value,
        event: EventId,
    ) -> Result<usize, SmallDataError> {
        let name = format!("{}{}", self.prefix, key.name());
        let column = if var_parent(key.name()).is_some() {
            let column = Column::new_ragged(key, value, event)?;
            with_data!(&column.data, _v: T => create_dataset::<T>(file, path, &name, &column.shape, 0, T::FILL))?;
            column
        } else {
            let mut column = Column::new(key, value, event);
            with_data!(&column.data, _v: T => create_dataset::<T>(file, path, &name, &column.shape, self.written, T::FILL))?;
            // Rows already in the file were backfilled; cached ones get the fill from push_fill.
            column.filled_to = self.written;
            column.written = self.written;
            column
        };
        self.columns.push(column);
        self.index.insert(key, self.columns.len() - 1);
        Ok(self.columns.len() - 1)
    }

    fn cached_bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|c| c.cached * c.row_bytes())
            .sum::<usize>()
            + self.timestamps.len() * 8
    }

    fn flush(&mut self, file: &hdf5::File, path: &Path) -> Result<(), SmallDataError> {
        let (from, to) = (self.written, self.rows);
        for column in &mut self.columns {
            let name = format!("{}{}", self.prefix, column.key.name());
            if column.ragged {
                append_rows(
                    file,
                    path,
                    &name,
                    &column.shape,
                    column.written,
                    column.cached,
                    &column.data,
                )?;
                column.written += column.cached;
            } else {
                if column.filled_to < to {
                    column.push_fill(to - column.filled_to);
                    column.filled_to = to;
                }
                append_rows(
                    file,
                    path,
                    &name,
                    &column.shape,
                    from,
                    to - from,
                    &column.data,
                )?;
                column.written = to;
            }
            column.clear();
        }
        for (_, column) in &mut self.lengths {
            if column.filled_to < to {
                push_zeros(column, to - column.filled_to);
                column.filled_to = to;
            }
            append_rows(
                file,
                path,
                column.key.name(),
                &[],
                from,
                to - from,
                &column.data,
            )?;
            column.clear();
        }
        self.last_written = self.timestamps.last().copied().or(self.last_written);
        let stamps = Data::I64(std::mem::take(&mut self.timestamps));
        append_rows(
            file,
            path,
            &timestamp_path(self.group.as_deref(), self.unaligned),
            &[],
            from,
            to - from,
            &stamps,
        )?;
        self.written = to;
        Ok(())
    }

    fn ragged_cached(&self) -> Vec<(String, usize)> {
        self.columns
            .iter()
            .filter(|c| c.ragged)
            .map(|c| {
                (
                    format!("{}{}", self.prefix, c.key.name()),
                    c.written + c.cached,
                )
            })
            .collect()
    }

    fn schema(&self) -> GroupSchema {
        let mut keys: Vec<KeySchema> = self
            .columns
            .iter()
            .map(|c| KeySchema {
                name: format!("{}{}", self.prefix, c.key.name()),
                dtype: c.dtype,
                shape: c.shape.clone(),
                ragged: c.ragged,
                rows: if c.ragged {
                    c.written as u64
                } else {
                    self.written as u64
                },
            })
            .collect();
        keys.extend(self.lengths.iter().map(|(_, c)| KeySchema {
            name: c.key.name().to_string(),
            dtype: DType::I64,
            shape: vec![],
            ragged: false,
            rows: self.written as u64,
        }));
        GroupSchema {
            group: self.group.clone(),
            rows: self.written as u64,
            keys,
            unaligned: self.unaligned,
        }
    }
}

/// `_len` columns read 0, not the int64 fill, for events without the ragged field (psana).
fn push_zeros(column: &mut Column, rows: usize) {
    if let Data::I64(v) = &mut column.data {
        v.extend(std::iter::repeat_n(0, rows));
        column.cached += rows;
    }
}

/// An open part file and its per-group column caches.
pub(crate) struct PartFile {
    file: hdf5::File,
    path: PathBuf,
    groups: Vec<GroupWriter>,
    cache_bytes: usize,
}

impl PartFile {
    pub fn create(path: &Path, cache_bytes: usize) -> Result<PartFile, SmallDataError> {
        let file = hdf5::File::create(path).map_err(|e| SmallDataError::hdf5(path, "create", e))?;
        let root = GroupWriter::new(&file, path, None, false)?;
        Ok(PartFile {
            file,
            path: path.to_path_buf(),
            groups: vec![root],
            cache_bytes,
        })
    }

    /// Appends the rows of one complete batch (sorted by event id within each group) and
    /// returns what each group gained.
    pub fn append(&mut self, rows: &[Row]) -> Result<Vec<GroupCounts>, SmallDataError> {
        let before: Vec<(usize, Vec<(String, usize)>)> = self
            .groups
            .iter()
            .map(|g| (g.rows, g.ragged_cached()))
            .collect();
        let mut forward = Vec::new();
        for row in rows {
            let at = self.group(row.group.map(|g| g.name()), false)?;
            self.groups[at].append(&self.file, &self.path, &row.event, &mut forward)?;
            for (full, position) in forward.drain(..) {
                let value = &row.event.fields()[position].1;
                let event = Event::new(row.event.id).with(full, value.clone());
                let at = self.group(Some(full.name()), true)?;
                self.groups[at].append(&self.file, &self.path, &event, &mut Vec::new())?;
            }
        }
        let counts = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let (rows0, ragged0) = before.get(i).cloned().unwrap_or_default();
                let ragged = g
                    .ragged_cached()
                    .into_iter()
                    .map(|(name, n)| {
                        let n0 = ragged0
                            .iter()
                            .find(|(k, _)| *k == name)
                            .map_or(0, |(_, n)| *n);
                        (name, (n - n0) as u64)
                    })
                    .collect();
                GroupCounts {
                    group: g.group.clone(),
                    rows: (g.rows - rows0) as u64,
                    ragged,
                }
            })
            .filter(|c| c.rows > 0)
            .collect();
        if self
            .groups
            .iter()
            .map(GroupWriter::cached_bytes)
            .sum::<usize>()
            > self.cache_bytes
        {
            self.flush()?;
        }
        Ok(counts)
    }

    /// The index of group `name`, created on first sight.
    fn group(&mut self, name: Option<&str>, unaligned: bool) -> Result<usize, SmallDataError> {
        if let Some(at) = self.groups.iter().position(|g| g.group.as_deref() == name) {
            if self.groups[at].unaligned != unaligned {
                return Err(SmallDataError::UnalignedClash {
                    name: name.unwrap_or_default().to_string(),
                });
            }
            return Ok(at);
        }
        let group = GroupWriter::new(&self.file, &self.path, name.map(str::to_string), unaligned)?;
        self.groups.push(group);
        Ok(self.groups.len() - 1)
    }

    /// Writes every cache to the file.
    pub fn flush(&mut self) -> Result<(), SmallDataError> {
        for group in &mut self.groups {
            group.flush(&self.file, &self.path)?;
        }
        Ok(())
    }

    /// Flushes, closes the file and describes it.
    pub fn finish(mut self) -> Result<PartSchema, SmallDataError> {
        self.flush()?;
        self.file
            .flush()
            .map_err(|e| SmallDataError::hdf5(&self.path, "flush", e))?;
        let file = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(PartSchema {
            file,
            groups: self.groups.iter().map(GroupWriter::schema).collect(),
            skip: Vec::new(),
        })
    }

    /// What is safely in the file, for the message of a failed run: events per group and the
    /// last event id of each.
    pub fn written(&self) -> String {
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                let name = g.group.as_deref().unwrap_or("root group");
                match g.last_written {
                    Some(last) => format!("{name}: {} events, ids up to {last}", g.written),
                    None => format!("{name}: no events"),
                }
            })
            .collect();
        groups.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::{is_unaligned, timestamp_path, var_parent};

    #[test]
    fn unaligned_keys_follow_tjlane_and_have_their_own_timestamps() {
        assert!(is_unaligned("andor/unaligned_img"));
        assert!(is_unaligned("unaligned_x"));
        assert!(!is_unaligned("unaligned_grp/x"));
        assert!(!is_unaligned("andor/img_unaligned_"));
        assert_eq!(timestamp_path(None, false), "timestamp");
        assert_eq!(timestamp_path(Some("andor"), false), "andor/timestamp");
        assert_eq!(
            timestamp_path(Some("andor/unaligned_img"), true),
            "andor/unaligned_img_timestamp"
        );
    }

    #[test]
    fn var_parents_follow_psana() {
        assert_eq!(var_parent("var_peaks/x"), Some("var_peaks"));
        assert_eq!(var_parent("det/var_hits"), Some("det/var_hits"));
        assert_eq!(var_parent("det/hits"), None);
        assert_eq!(var_parent("a/var_b/c/var_d"), Some("a/var_b"));
    }
}
