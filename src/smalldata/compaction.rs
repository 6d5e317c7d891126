//! Compaction: what keeps a long run's master small.
//!
//! Every commit closes a segment per writer, and a master maps each batch's rows where its
//! writer put them: with several writers, batches alternate between segments, so a master
//! would need a mapping per batch and per key, and a reader a file handle per segment. Both
//! grow with the run. Compaction copies a committed range of batches, in master order, into
//! one contiguous file that a master maps with one mapping per key; the segments it replaces
//! are deleted once no master in place refers to them (after a grace period for readers that
//! opened an older master).
//!
//! The policy is tiered, as in log-structured stores: the uncompacted tail is compacted (level
//! 0) once it needs [`Compaction::mappings`] mappings or [`Compaction::files`] files, and
//! [`Compaction::fan`] compacted files of one level are merged into one of the next. A master
//! then maps at most about `mappings + fan × levels` runs per key, and each row is copied about
//! `log_fan(run length)` times. The copy runs on worker 0 a slice at a time, in at most a
//! tenth of its time, so the dataflow never waits for it.
//!
//! A compacted file is written under a temporary name and renamed only once complete, and
//! holds exactly the rows the segments held (read back through a virtual view of them), so a
//! crash at any moment leaves a consistent result, and a resumed run continues it to the same
//! bytes.

use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};

use super::column_cache::{with_data, Data, Fill};
use super::layout::{commit_file, Layout};
use super::manifest::Manifest;
use super::part_file::{
    chunk_rows, create_groups, rows, GroupCounts, GroupSchema, KeySchema, PartSchema,
};
use super::virtual_master::{map_datasets, plan};
use super::SmallDataError;
use crate::event::DType;

/// When a run compacts its committed segments (see the [module](self) docs).
///
/// ```
/// use shotflow::smalldata::{Compaction, SmallData};
///
/// // Compact more eagerly than the default: a master of at most ~100 mappings per key.
/// let output = SmallData::new("run.h5").compaction(Compaction { mappings: 64, files: 32, fan: 4 });
/// # let _ = output;
/// assert!(Compaction::default().mappings >= 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// Compact the uncompacted tail once a master needs this many mappings per key for it.
    pub mappings: usize,
    /// … or once the tail spans this many segment files.
    pub files: usize,
    /// Merge this many compacted files of one level into one (at least 2).
    pub fan: usize,
}

impl Default for Compaction {
    fn default() -> Compaction {
        Compaction {
            mappings: 1024,
            files: 256,
            fan: 8,
        }
    }
}

impl Compaction {
    /// Never compact: every segment stays, and a master maps each of them.
    pub const OFF: Compaction = Compaction {
        mappings: usize::MAX,
        files: usize::MAX,
        fan: usize::MAX,
    };
}

/// The level of a compacted file from its name (`None`: a writer's segment).
pub(crate) fn level(name: &str) -> Option<u32> {
    let rest = name.split(".seg-").last()?;
    let kind = rest.split('-').nth(1)?;
    kind.strip_prefix('c')?.parse().ok()
}

/// The compaction that `manifest` calls for under `policy`, if any: a range of its blocks and
/// the level of the file that replaces it. Blocks before `compacted` are in compacted files.
pub(crate) fn due(
    policy: &Compaction,
    manifest: &Manifest,
    compacted: usize,
) -> Option<(Range<usize>, u32)> {
    let blocks = &manifest.blocks;
    let level_of = |b: usize| level(&manifest.segments[blocks[b].segment].file).unwrap_or(0);
    // The compacted files in block order: (first block, level).
    let mut files: Vec<(usize, u32)> = Vec::new();
    for b in 0..compacted {
        if b == 0 || blocks[b].segment != blocks[b - 1].segment {
            files.push((b, level_of(b)));
        }
    }
    let fan = policy.fan.max(2);
    if files.len() >= fan {
        let last = &files[files.len() - fan..];
        if last.iter().all(|f| f.1 == last[0].1) {
            return Some((last[0].0..compacted, last[0].1 + 1));
        }
    }
    let tail = &blocks[compacted..];
    let mappings = tail
        .windows(2)
        .filter(|w| w[0].segment != w[1].segment)
        .count()
        + usize::from(!tail.is_empty());
    let mut segments: Vec<usize> = tail.iter().map(|b| b.segment).collect();
    segments.sort_unstable();
    segments.dedup();
    (mappings >= policy.mappings || segments.len() >= policy.files)
        .then(|| (compacted..blocks.len(), 0))
}

/// Adds `counts` to `into`, group by group and ragged key by ragged key.
pub(crate) fn add_counts(into: &mut Vec<GroupCounts>, counts: &[GroupCounts]) {
    for c in counts {
        let at = match into.iter().position(|i| i.group == c.group) {
            Some(at) => at,
            None => {
                into.push(GroupCounts {
                    group: c.group.clone(),
                    rows: 0,
                    ragged: Vec::new(),
                });
                into.len() - 1
            }
        };
        let target = &mut into[at];
        target.rows += c.rows;
        for (key, n) in &c.ragged {
            match target.ragged.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 += n,
                None => target.ragged.push((key.clone(), *n)),
            }
        }
    }
}

/// One dataset to copy.
struct Dataset {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    rows: u64,
}

/// Copy this many bytes per read (a few HDF5 chunks).
const SLAB_BYTES: usize = 8 << 20;

/// A compaction in progress: blocks `range` of the manifest, read through a virtual view of
/// their segments and copied into one file.
pub(crate) struct Copy {
    pub range: Range<usize>,
    name: String,
    tmp: PathBuf,
    view_path: PathBuf,
    view: Option<hdf5::File>,
    out: Option<hdf5::File>,
    datasets: Vec<Dataset>,
    /// The dataset and row to copy next.
    next: (usize, u64),
    schema: Vec<GroupSchema>,
    durable: bool,
}

impl Copy {
    /// Starts compacting blocks `range` of `manifest` into the file `name` beside the master.
    pub fn start(
        layout: &Layout,
        manifest: &Manifest,
        range: Range<usize>,
        name: String,
        durable: bool,
    ) -> Result<Copy, SmallDataError> {
        let blocks = &manifest.blocks[range.clone()];
        let parts = &manifest.segments;
        let plan = plan(parts, blocks)?;
        let view_path = layout.beside(&format!("{}.view.h5.tmp", name.trim_end_matches(".h5")));
        let tmp = layout.beside(&format!("{name}.tmp"));
        let view = hdf5::File::create(&view_path)
            .map_err(|e| SmallDataError::hdf5(&view_path, "create", e))?;
        map_datasets(&view, &view_path, parts, blocks, &plan)?;
        // HDF5 opens a virtual dataset's sources with its file's access: read-only, or they
        // would be locked against the readers of the master in place.
        drop(view);
        let view = hdf5::File::open(&view_path)
            .map_err(|e| SmallDataError::hdf5(&view_path, "open", e))?;
        let out = hdf5::File::create(&tmp).map_err(|e| SmallDataError::hdf5(&tmp, "create", e))?;
        let mut datasets = Vec::new();
        let mut schema: Vec<GroupSchema> = Vec::new();
        for (key, planned) in &plan.datasets {
            let total: u64 = blocks.iter().map(|b| planned.count(key, &b.counts)).sum();
            create_groups(&out, key).map_err(|e| SmallDataError::hdf5(&tmp, key, e))?;
            with_data!(&Data::new(planned.dtype), _v: T => {
                create_fixed::<T>(&out, key, &planned.shape, total, planned.fill::<T>(key))
                    .map_err(|e| SmallDataError::hdf5(&tmp, key, e))?;
            });
            datasets.push(Dataset {
                name: key.clone(),
                dtype: planned.dtype,
                shape: planned.shape.clone(),
                rows: total,
            });
            let group = match schema.iter().position(|g| g.group == planned.group) {
                Some(at) => at,
                None => {
                    let rows = blocks
                        .iter()
                        .flat_map(|b| &b.counts)
                        .filter(|c| c.group == planned.group)
                        .map(|c| c.rows)
                        .sum();
                    schema.push(GroupSchema {
                        group: planned.group.clone(),
                        rows,
                        keys: Vec::new(),
                    });
                    schema.len() - 1
                }
            };
            let stamp = match &planned.group {
                Some(g) => format!("{g}/timestamp"),
                None => "timestamp".into(),
            };
            if *key != stamp {
                schema[group].keys.push(KeySchema {
                    name: key.clone(),
                    dtype: planned.dtype,
                    shape: planned.shape.clone(),
                    ragged: planned.ragged,
                    rows: total,
                });
            }
        }
        Ok(Copy {
            range,
            name,
            tmp,
            view_path,
            view: Some(view),
            out: Some(out),
            datasets,
            next: (0, 0),
            schema,
            durable,
        })
    }

    /// Copies for about `budget`. Returns whether everything is copied.
    pub fn step(&mut self, budget: Duration) -> Result<bool, SmallDataError> {
        let began = Instant::now();
        let (Some(view), Some(out)) = (&self.view, &self.out) else {
            return Ok(true);
        };
        while let Some(dataset) = self.datasets.get(self.next.0) {
            let (name, shape) = (&dataset.name, &dataset.shape);
            let row_bytes = shape.iter().product::<usize>() * dataset.dtype.size();
            let from = self.next.1;
            let to = dataset
                .rows
                .min(from + (SLAB_BYTES / row_bytes.max(1)).max(1) as u64);
            if to > from {
                let slab = rows(from as usize, to as usize, shape);
                let source = view
                    .dataset(name)
                    .map_err(|e| SmallDataError::hdf5(&self.view_path, name, e))?;
                let target = out
                    .dataset(name)
                    .map_err(|e| SmallDataError::hdf5(&self.tmp, name, e))?;
                with_data!(&Data::new(dataset.dtype), _v: T => {
                    let values: ArrayD<T> = source
                        .read_slice::<T, _, IxDyn>(slab.clone())
                        .map_err(|e| SmallDataError::hdf5(&self.view_path, name, e))?;
                    target
                        .write_slice(&values, slab)
                        .map_err(|e| SmallDataError::hdf5(&self.tmp, name, e))?;
                });
            }
            self.next = if to >= dataset.rows {
                (self.next.0 + 1, 0)
            } else {
                (self.next.0, to)
            };
            if began.elapsed() >= budget {
                break;
            }
        }
        Ok(self.next.0 >= self.datasets.len())
    }

    /// Closes the copy and renames it into place; describes it for the manifest.
    pub fn finish(mut self) -> Result<PartSchema, SmallDataError> {
        drop(self.view.take());
        if let Some(out) = self.out.take() {
            out.flush()
                .map_err(|e| SmallDataError::hdf5(&self.tmp, "flush", e))?;
        }
        let _ = std::fs::remove_file(&self.view_path);
        commit_file(&self.tmp, &self.tmp.with_file_name(&self.name), self.durable)?;
        Ok(PartSchema {
            file: std::mem::take(&mut self.name),
            groups: std::mem::take(&mut self.schema),
            skip: Vec::new(),
        })
    }
}

/// An abandoned copy leaves nothing behind; a finished one only its file.
impl Drop for Copy {
    fn drop(&mut self) {
        drop(self.view.take());
        let unfinished = self.out.take().is_some();
        let _ = std::fs::remove_file(&self.view_path);
        if unfinished {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A dataset of `total` rows of `shape`, chunked as segments are; every row is written.
fn create_fixed<T: Fill>(
    file: &hdf5::File,
    name: &str,
    shape: &[usize],
    total: u64,
    fill: T,
) -> hdf5::Result<()> {
    let row_bytes = shape.iter().product::<usize>() * std::mem::size_of::<T>();
    let mut dims = vec![total as usize];
    dims.extend_from_slice(shape);
    let mut chunk = vec![chunk_rows(row_bytes).min(total.max(1) as usize)];
    chunk.extend(shape.iter().map(|&d| d.max(1)));
    file.new_dataset::<T>()
        .shape(dims)
        .chunk(chunk)
        .fill_value(fill)
        .fill_time(hdf5::plist::dataset_create::FillTime::Never)
        .create(name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_from_names() {
        assert_eq!(level("run.seg-0a1b2c3d-c2-7.h5"), Some(2));
        assert_eq!(level("run.seg-0a1b2c3d-w1-7.h5"), None);
        assert_eq!(level("my.seg-x.seg-0a1b2c3d-c0-0.h5"), Some(0));
    }

    #[test]
    fn counts_add_by_group_and_ragged_key() {
        let mut total = Vec::new();
        let a = GroupCounts {
            group: None,
            rows: 3,
            ragged: vec![("var_p/x".into(), 7)],
        };
        let b = GroupCounts {
            group: Some("g".into()),
            rows: 2,
            ragged: vec![],
        };
        add_counts(&mut total, &[a.clone(), b.clone()]);
        add_counts(&mut total, &[a]);
        assert_eq!(total[0].rows, 6);
        assert_eq!(total[0].ragged, vec![("var_p/x".to_string(), 14)]);
        assert_eq!(total[1], b);
    }
}
