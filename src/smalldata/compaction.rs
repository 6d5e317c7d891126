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
//! `log_fan(run length)` times. The tail is compacted just before a master would map it (a
//! copy of the rows of the last commits, which are few bytes whenever they are many
//! mappings); merges run on worker 0 a slice at a time, in at most a tenth of its time, so
//! the dataflow never waits for them.
//!
//! A compacted file is written under a temporary name and renamed only once complete, and
//! holds exactly the rows a master maps from the segments (fill values where a segment lacks
//! a key), so a crash at any moment leaves a consistent result, and a resumed run continues it
//! to the same bytes.

use std::collections::hash_map::{Entry, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ndarray::{ArrayD, ArrayView, IxDyn};

use super::column_cache::{with_data, Data, Fill};
use super::layout::{commit_file, Layout};
use super::manifest::Manifest;
use super::part_file::{
    chunk_rows, create_groups, rows, GroupCounts, GroupSchema, KeySchema, PartSchema,
};
use super::virtual_master::{plan, runs, Planned, Run};
use super::SmallDataError;

/// When a run compacts its committed segments (see the [module](self) docs).
///
/// ```
/// use shotflow::smalldata::{Compaction, SmallData};
///
/// // Compact more eagerly than the default: a master of at most ~100 mappings per key.
/// let policy = Compaction { mappings: 64, files: 32, fan: 4, ..Compaction::default() };
/// let output = SmallData::new("run.h5").compaction(policy);
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
    /// A tail of at most this many bytes is copied at once, before the master that would
    /// map it; a larger one a slice at a time, like a merge.
    pub at_once: u64,
}

impl Default for Compaction {
    fn default() -> Compaction {
        Compaction {
            mappings: 256,
            files: 256,
            fan: 8,
            at_once: 64 << 20,
        }
    }
}

impl Compaction {
    /// Never compact: every segment stays, and a master maps each of them.
    pub const OFF: Compaction = Compaction {
        mappings: usize::MAX,
        files: usize::MAX,
        fan: usize::MAX,
        at_once: 0,
    };
}

/// The level of a compacted file from its name (`None`: a writer's segment).
pub(crate) fn level(name: &str) -> Option<u32> {
    let rest = name.split(".seg-").last()?;
    let kind = rest.split('-').nth(1)?;
    kind.strip_prefix('c')?.parse().ok()
}

/// The merge of compacted files that `manifest` calls for under `policy`, if any: a range of
/// its blocks and the level of the file that replaces it. Blocks before `compacted` are in
/// compacted files, one block each.
pub(crate) fn due_merge(
    policy: &Compaction,
    manifest: &Manifest,
    compacted: usize,
) -> Option<(Range<usize>, u32)> {
    let fan = policy.fan.max(2);
    if compacted < fan {
        return None;
    }
    let level_of = |b: usize| level(&manifest.segments[manifest.blocks[b].segment].file);
    let last = compacted - fan..compacted;
    let first = level_of(last.start)?;
    last.clone()
        .all(|b| level_of(b) == Some(first))
        .then_some((last, first + 1))
}

/// The blocks after `compacted` when they are due for compaction under `policy`: they need
/// [`Compaction::mappings`] mappings per key or span [`Compaction::files`] files.
pub(crate) fn due_tail(
    policy: &Compaction,
    manifest: &Manifest,
    compacted: usize,
) -> Option<Range<usize>> {
    let tail = &manifest.blocks[compacted..];
    let mappings = tail
        .windows(2)
        .filter(|w| w[0].segment != w[1].segment)
        .count()
        + usize::from(!tail.is_empty());
    let mut segments: Vec<usize> = tail.iter().map(|b| b.segment).collect();
    segments.sort_unstable();
    segments.dedup();
    (mappings >= policy.mappings || segments.len() >= policy.files)
        .then_some(compacted..manifest.blocks.len())
}

/// The bytes of the rows of blocks `range`, as their segments hold them.
pub(crate) fn bytes(manifest: &Manifest, range: Range<usize>) -> u64 {
    let row_bytes = |k: &KeySchema| (k.shape.iter().product::<usize>() * k.dtype.size()) as u64;
    let mut total = 0;
    for block in &manifest.blocks[range] {
        let part = &manifest.segments[block.segment];
        for counts in &block.counts {
            let Some(group) = part.groups.iter().find(|g| g.group == counts.group) else {
                continue;
            };
            let per_row: u64 = group
                .keys
                .iter()
                .filter(|k| !k.ragged)
                .map(row_bytes)
                .sum::<u64>()
                + 8; // timestamp
            total += counts.rows * per_row;
            for (name, n) in &counts.ragged {
                if let Some(key) = group.keys.iter().find(|k| k.name == *name) {
                    total += n * row_bytes(key);
                }
            }
        }
    }
    total
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

/// One dataset to copy: where each run of its rows comes from.
struct Dataset {
    name: String,
    planned: Planned,
    rows: u64,
    runs: Vec<Run>,
}

/// Copy this many bytes per write (a few HDF5 chunks).
const SLAB_BYTES: usize = 8 << 20;

/// A compaction in progress: blocks `range` of the manifest, read straight from the segments
/// that hold them (a virtual view would cost a mapping per run to build and to read) and
/// copied, in master order, into one file.
pub(crate) struct Copy {
    pub range: Range<usize>,
    name: String,
    tmp: PathBuf,
    out: Option<hdf5::File>,
    layout: Layout,
    parts: Vec<PartSchema>,
    /// The segment files open for reading.
    sources: HashMap<usize, hdf5::File>,
    datasets: Vec<Dataset>,
    /// The dataset, run and row within the run to copy next.
    next: (usize, usize, u64),
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
        let tmp = layout.beside(&format!("{name}.tmp"));
        let out = hdf5::File::create(&tmp).map_err(|e| SmallDataError::hdf5(&tmp, "create", e))?;
        let mut datasets = Vec::new();
        let mut schema: Vec<GroupSchema> = Vec::new();
        for (key, planned) in plan.datasets {
            let (runs, _, total) = runs(blocks, parts, |c| planned.count(&key, c));
            create_groups(&out, &key).map_err(|e| SmallDataError::hdf5(&tmp, &key, e))?;
            with_data!(&Data::new(planned.dtype), _v: T => {
                create_fixed::<T>(&out, &key, &planned.shape, total, planned.fill::<T>(&key))
                    .map_err(|e| SmallDataError::hdf5(&tmp, &key, e))?;
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
                        unaligned: planned.unaligned,
                    });
                    schema.len() - 1
                }
            };
            if !planned.timestamp {
                schema[group].keys.push(KeySchema {
                    name: key.clone(),
                    dtype: planned.dtype,
                    shape: planned.shape.clone(),
                    ragged: planned.ragged,
                    rows: total,
                });
            }
            datasets.push(Dataset {
                name: key,
                planned,
                rows: total,
                runs,
            });
        }
        Ok(Copy {
            range,
            name,
            tmp,
            out: Some(out),
            layout: layout.clone(),
            parts: parts.clone(),
            sources: HashMap::new(),
            datasets,
            next: (0, 0, 0),
            schema,
            durable,
        })
    }

    /// Copies for about `budget` (at least one slab). Returns whether everything is copied.
    pub fn step(&mut self, budget: Duration) -> Result<bool, SmallDataError> {
        let began = Instant::now();
        while self.next.0 < self.datasets.len() {
            self.slab()?;
            if began.elapsed() >= budget {
                break;
            }
        }
        Ok(self.next.0 >= self.datasets.len())
    }

    /// Copies the next slab of rows of the current dataset. The slab's runs alternate between
    /// few segments, and each segment's rows in it are contiguous there: one read per
    /// segment, then the rows are interleaved in master order and written at once.
    fn slab(&mut self) -> Result<(), SmallDataError> {
        let (d, first_run, first_within) = self.next;
        let dataset = &self.datasets[d];
        let (name, shape) = (&dataset.name, &dataset.planned.shape);
        let row_len = shape.iter().product::<usize>();
        let slab_rows =
            (SLAB_BYTES / (row_len * dataset.planned.dtype.size()).max(1)).max(1) as u64;
        // The pieces of this slab: (run, first row within it, rows).
        let mut pieces: Vec<(usize, u64, u64)> = Vec::new();
        let (mut run, mut within, mut total) = (first_run, first_within, 0u64);
        while total < slab_rows {
            let Some(&(_, _, _, n)) = dataset.runs.get(run) else {
                break;
            };
            let take = (n - within).min(slab_rows - total);
            pieces.push((run, within, take));
            total += take;
            within += take;
            if within == n {
                run += 1;
                within = 0;
            }
        }
        let start = dataset
            .runs
            .get(first_run)
            .map_or(dataset.rows, |r| r.2 + first_within);
        // Per segment: its rows from the first to the last piece, read at once.
        let mut spans: Vec<(usize, u64, u64)> = Vec::new();
        for &(r, w, n) in &pieces {
            let (segment, lo, _, _) = dataset.runs[r];
            let (from, to) = (lo + w, lo + w + n);
            match spans.iter_mut().find(|s| s.0 == segment) {
                Some(span) => span.2 = to,
                None => spans.push((segment, from, to)),
            }
        }
        let out = self.out.as_ref().expect("open until finished");
        with_data!(&Data::new(dataset.planned.dtype), _v: T => {
            let mut read: Vec<(usize, u64, Option<ArrayD<T>>)> = Vec::new();
            for &(segment, from, to) in &spans {
                let part = &self.parts[segment];
                if dataset.planned.source_rows(name, part).is_none() {
                    read.push((segment, from, None));
                    continue;
                }
                let path = self.layout.beside(&part.file);
                let file = match self.sources.entry(segment) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(
                        hdf5::File::open(&path).map_err(|e| SmallDataError::hdf5(&path, "open", e))?,
                    ),
                };
                let values: ArrayD<T> = file
                    .dataset(name)
                    .and_then(|ds| ds.read_slice::<T, _, IxDyn>(rows(from as usize, to as usize, shape)))
                    .map_err(|e| SmallDataError::hdf5(&path, name, e))?;
                read.push((segment, from, Some(values)));
            }
            let fill = dataset.planned.fill::<T>(name);
            let mut buffer: Vec<T> = Vec::with_capacity(total as usize * row_len);
            for &(r, w, n) in &pieces {
                let (segment, lo, _, _) = dataset.runs[r];
                let (_, from, values) = read.iter().find(|x| x.0 == segment).expect("read");
                match values {
                    Some(values) => {
                        let at = ((lo + w - from) as usize) * row_len;
                        let flat = values.as_slice().expect("a fresh array is contiguous");
                        buffer.extend_from_slice(&flat[at..at + n as usize * row_len]);
                    }
                    None => buffer.extend(std::iter::repeat_n(fill, n as usize * row_len)),
                }
            }
            if total > 0 {
                let mut dims = vec![total as usize];
                dims.extend_from_slice(shape);
                let view = ArrayView::<T, IxDyn>::from_shape(IxDyn(&dims), &buffer).expect("whole rows");
                crate::flow::meter::written(std::mem::size_of_val(buffer.as_slice()) as u64);
                out.dataset(name)
                    .and_then(|ds| ds.write_slice(view, rows(start as usize, (start + total) as usize, shape)))
                    .map_err(|e| SmallDataError::hdf5(&self.tmp, name, e))?;
            }
        });
        self.next = if run >= dataset.runs.len() {
            (d + 1, 0, 0)
        } else {
            (d, run, within)
        };
        Ok(())
    }

    /// Closes the copy and renames it into place; describes it for the manifest.
    pub fn finish(mut self) -> Result<PartSchema, SmallDataError> {
        self.sources.clear();
        if let Some(out) = self.out.take() {
            out.flush()
                .map_err(|e| SmallDataError::hdf5(&self.tmp, "flush", e))?;
        }
        commit_file(
            &self.tmp,
            &self.tmp.with_file_name(&self.name),
            self.durable,
        )?;
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
        if self.out.take().is_some() {
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
