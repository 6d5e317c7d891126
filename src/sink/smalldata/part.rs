//! One writer's part file: rows of the batches this writer owns, in batch order and, within a
//! batch, in event-id order; one extensible chunked dataset per key plus `timestamp`.
//!
//! Rows are cached per key and written in chunk-sized slabs, so memory is bounded in bytes, not
//! events. The file is closed when the writer is dropped, also when the run fails: whatever was
//! flushed stays readable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hdf5::{Extent, Extents, SimpleExtents};
use ndarray::{ArrayView, IxDyn};
use serde::{Deserialize, Serialize};

use super::column::{with_data, Column, Fill};
use super::SmallDataError;
use crate::event::{DType, Event, EventId, Key};

/// Default for [`super::SmallData::cache_bytes`].
pub const CACHE_BYTES: usize = 4 << 20;
/// Aim for chunks of about this size (HDF5 caps chunks at 4 GiB; 1 MiB reads well).
const CHUNK_BYTES: usize = 1 << 20;

/// What a finished part file holds, as the master needs it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PartSchema {
    /// Part file name, relative to the master's directory.
    pub file: String,
    /// Rows (events) in the part.
    pub rows: u64,
    /// Datasets: key, dtype and per-row shape.
    pub keys: Vec<(String, DType, Vec<usize>)>,
}

pub(crate) struct PartWriter {
    file: hdf5::File,
    path: PathBuf,
    columns: Vec<Column>,
    index: HashMap<Key, usize>,
    timestamps: Vec<i64>,
    /// Rows in the file (flushed).
    written: usize,
    /// Rows appended (flushed + cached).
    rows: usize,
    last_id: Option<EventId>,
    cache_bytes: usize,
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

/// Rows `from..to` of a dataset whose rows have `shape`, as an HDF5 selection.
pub(crate) fn rows(from: usize, to: usize, shape: &[usize]) -> hdf5::Selection {
    let mut slab = vec![hdf5::SliceOrIndex::from(from..to)];
    slab.extend(shape.iter().map(|&d| hdf5::SliceOrIndex::from(0..d)));
    hdf5::Hyperslab::from(slab).into()
}

fn chunk_rows(row_bytes: usize) -> usize {
    (CHUNK_BYTES / row_bytes.max(1)).clamp(1, 1 << 16)
}

impl PartWriter {
    pub fn create(path: &Path, cache_bytes: usize) -> Result<PartWriter, SmallDataError> {
        let file = hdf5::File::create(path).map_err(|e| SmallDataError::hdf5(path, "create", e))?;
        let writer = PartWriter {
            file,
            path: path.to_path_buf(),
            columns: Vec::new(),
            index: HashMap::new(),
            timestamps: Vec::new(),
            written: 0,
            rows: 0,
            last_id: None,
            cache_bytes,
        };
        writer.create_dataset::<i64>("timestamp", &[])?;
        Ok(writer)
    }

    fn create_dataset<T: Fill>(&self, name: &str, shape: &[usize]) -> Result<(), SmallDataError> {
        let context = |e| SmallDataError::hdf5(&self.path, name, e);
        create_groups(&self.file, name).map_err(context)?;
        let row_bytes = shape.iter().product::<usize>() * std::mem::size_of::<T>();
        let mut extents = vec![Extent::resizable(self.written)];
        extents.extend(shape.iter().map(|&d| Extent::fixed(d)));
        let mut chunk = vec![chunk_rows(row_bytes)];
        chunk.extend_from_slice(shape);
        self.file
            .new_dataset::<T>()
            .shape(Extents::Simple(SimpleExtents::from_vec(extents)))
            .chunk(chunk)
            .fill_value(T::FILL)
            // Writing the fill into every new chunk before our data overwrites it cost a third
            // of the write time; rows we do not write are backfilled explicitly below.
            .fill_time(hdf5::plist::dataset_create::FillTime::Never)
            .create(name)
            .map_err(context)?;
        if self.written > 0 {
            // A key first seen late: rows already in the file get the fill value, in slabs so
            // memory stays bounded however long the run was.
            let dataset = self.file.dataset(name).map_err(context)?;
            let slab_rows = chunk_rows(row_bytes);
            let row_len = row_bytes / std::mem::size_of::<T>();
            let fill = vec![T::FILL; slab_rows * row_len];
            let mut from = 0;
            while from < self.written {
                let to = (from + slab_rows).min(self.written);
                let mut dims = vec![to - from];
                dims.extend_from_slice(shape);
                let view =
                    ArrayView::<T, IxDyn>::from_shape(IxDyn(&dims), &fill[..(to - from) * row_len])
                        .expect("whole rows");
                dataset
                    .write_slice(view, rows(from, to, shape))
                    .map_err(context)?;
                from = to;
            }
        }
        Ok(())
    }

    /// Appends the rows of one complete batch, sorted by event id.
    pub fn append(&mut self, events: &[Event]) -> Result<(), SmallDataError> {
        for event in events {
            if self.last_id.is_some_and(|last| event.id <= last) {
                return Err(SmallDataError::Order {
                    file: self.path.display().to_string(),
                    event: event.id,
                    previous: self.last_id.unwrap(),
                });
            }
            self.last_id = Some(event.id);
            self.timestamps.push(event.id as i64);
            let row = self.rows;
            for (position, (key, value)) in event.fields().iter().enumerate() {
                // Events of one run usually list their fields in the same order, so the column
                // at the field's position is nearly always the one: no hashing per value.
                let guess = self
                    .columns
                    .get(position)
                    .filter(|c| c.key == *key)
                    .map(|_| position);
                let at = match guess.or_else(|| self.index.get(key).copied()) {
                    Some(at) => at,
                    None => {
                        let mut column = Column::new(*key, value, event.id);
                        // Rows already in the file are created by the next resize and read as
                        // the dataset's fill value; cached rows get it from `push_fill`.
                        let name = key.name();
                        with_data!(&column.data, _v: T => self.create_dataset::<T>(name, &column.shape))?;
                        column.filled_to = self.written;
                        self.columns.push(column);
                        self.index.insert(*key, self.columns.len() - 1);
                        self.columns.len() - 1
                    }
                };
                let column = &mut self.columns[at];
                if column.filled_to < row {
                    column.push_fill(row - column.filled_to);
                }
                column.push(value, event.id)?;
                column.filled_to = row + 1;
            }
            self.rows += 1;
        }
        let cached: usize = self.columns.iter().map(|c| c.cached * c.row_bytes()).sum();
        if cached > self.cache_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every cache to the file.
    pub fn flush(&mut self) -> Result<(), SmallDataError> {
        let (from, to) = (self.written, self.rows);
        if to == from {
            return Ok(());
        }
        let path = self.path.clone();
        let write = |name: &str,
                     shape: &[usize],
                     data: &super::column::Data|
         -> Result<(), SmallDataError> {
            let context = |e| SmallDataError::hdf5(&path, name, e);
            let dataset = self.file.dataset(name).map_err(context)?;
            let mut full = vec![to];
            full.extend_from_slice(shape);
            dataset.resize(full).map_err(context)?;
            let mut slab = vec![to - from];
            slab.extend_from_slice(shape);
            with_data!(data, v: T => {
                let view = ArrayView::<T, IxDyn>::from_shape(IxDyn(&slab), v).expect("cache holds whole rows");
                dataset.write_slice(view, rows(from, to, shape)).map_err(context)
            })
        };
        for column in &mut self.columns {
            if column.filled_to < to {
                column.push_fill(to - column.filled_to);
                column.filled_to = to;
            }
        }
        for column in &self.columns {
            write(column.key.name(), &column.shape, &column.data)?;
        }
        write(
            "timestamp",
            &[],
            &super::column::Data::I64(std::mem::take(&mut self.timestamps)),
        )?;
        for column in &mut self.columns {
            column.clear();
        }
        self.written = to;
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
            rows: self.written as u64,
            keys: self
                .columns
                .iter()
                .map(|c| (c.key.name().to_string(), c.dtype, c.shape.clone()))
                .collect(),
        })
    }

    /// Rows safely in the file, and the last event id among them.
    pub fn written(&self) -> usize {
        self.written
    }
}
