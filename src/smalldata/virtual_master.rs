//! The master file: one virtual dataset per key mapping the committed segments' rows into
//! event-id order, `timestamp`, the run summaries, the root attribute `complete`, and the
//! `shotflow/` group of run metadata (the manifest among it). The caller writes it under a
//! temporary name and renames it, so a reader never sees half a master. VDS sources are bare
//! file names, which HDF5 resolves in the master's own directory: the output can be moved as a
//! whole.
//!
//! Everything outside `shotflow/` is the same, bit for bit, whatever the worker and process
//! counts and however often the run was stopped and resumed; `shotflow/` says how this
//! particular result came about.

use std::collections::BTreeMap;
use std::path::Path;

use hdf5::{Extent, Extents, SimpleExtents};

use super::column_cache::{describe, with_data, Data, Fill};
use super::manifest::{Block, Manifest};
use super::part_file::{create_groups, rows, var_parent, GroupCounts, PartSchema};
use super::run_summary::{histogram_with_flows, Reduced, Summary};
use super::saved::Saved;
use super::SmallDataError;
use crate::event::DType;
use crate::flow::Batch;

/// How this result came about: run metadata for `shotflow/`, outside the data.
pub(crate) struct RunInfo {
    /// Batches before this were committed by an earlier, interrupted run.
    pub resumed_from: Batch,
    /// Committed batches that sources produced again (and that were not used).
    pub recomputed: u64,
    /// Workers of this run.
    pub workers: usize,
    /// Seconds since this run's writer started.
    pub seconds: f64,
    /// Compactions this run finished.
    pub compactions: u64,
    /// Where the run's time went so far, when it is monitored ([`crate::monitor::Figures`]).
    pub figures: Option<crate::monitor::Figures>,
}

fn extents(rows: u64, shape: &[usize]) -> Extents {
    let mut e = vec![Extent::fixed(rows as usize)];
    e.extend(shape.iter().map(|&d| Extent::fixed(d)));
    Extents::Simple(SimpleExtents::from_vec(e))
}

/// `(segment, offset in it, offset in the master, rows)`: one VDS mapping.
pub(crate) type Run = (usize, u64, u64, u64);

/// Contiguous runs of one dataset in batch order, adjacent runs merged; the rows each segment
/// holds up to the last block (its rows compacted away included); and the total. `count` says
/// how many rows of the dataset a block (or a segment's compacted prefix) has.
pub(crate) fn runs(
    blocks: &[Block],
    parts: &[PartSchema],
    count: impl Fn(&[GroupCounts]) -> u64,
) -> (Vec<Run>, Vec<u64>, u64) {
    let mut local: Vec<u64> = parts.iter().map(|p| count(&p.skip)).collect();
    let mut global = 0u64;
    let mut out: Vec<Run> = Vec::new();
    for block in blocks {
        let n = count(&block.counts);
        if n == 0 {
            continue;
        }
        let lo = local[block.segment];
        match out.last_mut() {
            Some(run)
                if run.0 == block.segment && run.1 + run.3 == lo && run.2 + run.3 == global =>
            {
                run.3 += n
            }
            _ => out.push((block.segment, lo, global, n)),
        }
        local[block.segment] += n;
        global += n;
    }
    (out, local, global)
}

/// One dataset of a master: what it holds and where its rows come from.
pub(crate) struct Planned {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub ragged: bool,
    pub group: Option<String>,
    /// Its group is an `unaligned_` key's.
    pub unaligned: bool,
    /// It is its group's event ids.
    pub timestamp: bool,
    first: String,
}

impl Planned {
    /// How many rows of this dataset `counts` (a block's, or a segment's compacted prefix)
    /// stand for.
    pub fn count(&self, name: &str, counts: &[GroupCounts]) -> u64 {
        if self.ragged {
            counts
                .iter()
                .flat_map(|c| &c.ragged)
                .find(|(k, _)| k == name)
                .map_or(0, |(_, n)| *n)
        } else {
            counts
                .iter()
                .find(|c| c.group == self.group)
                .map_or(0, |c| c.rows)
        }
    }

    /// The rows of this dataset (`name`) in segment `part`; `None` when it has none.
    pub fn source_rows(&self, name: &str, part: &PartSchema) -> Option<u64> {
        let key = part
            .groups
            .iter()
            .flat_map(|g| &g.keys)
            .find(|k| k.name == name);
        key.map(|k| k.rows).or_else(|| {
            // `timestamp` datasets are not listed among the keys
            self.timestamp.then(|| {
                part.groups
                    .iter()
                    .find(|g| g.group == self.group)
                    .map_or(0, |g| g.rows)
            })
        })
    }

    /// The value of rows that no segment holds.
    pub fn fill<T: Fill>(&self, name: &str) -> T {
        if name.ends_with("_len") && var_parent(name).is_some() {
            T::from_i64(0)
        } else {
            T::FILL
        }
    }
}

/// The datasets that `blocks` of `parts` make (by name), and the root group's events.
pub(crate) struct Plan {
    pub datasets: BTreeMap<String, Planned>,
    pub events: u64,
}

/// Plans the datasets of `blocks`, checking that the segments they refer to agree on every
/// key's type and hold every row the blocks say.
pub(crate) fn plan(parts: &[PartSchema], blocks: &[Block]) -> Result<Plan, SmallDataError> {
    let mut used = vec![false; parts.len()];
    for block in blocks {
        used[block.segment] = true;
    }
    let mut planned: BTreeMap<String, Planned> = BTreeMap::new();
    let mut groups: Vec<Option<String>> = vec![None];
    for part in parts.iter().zip(&used).filter(|(_, u)| **u).map(|(p, _)| p) {
        for group in &part.groups {
            if !groups.contains(&group.group) {
                groups.push(group.group.clone());
            }
            let stamp_schema = super::part_file::KeySchema {
                name: group.timestamp_path(),
                dtype: DType::I64,
                shape: vec![],
                ragged: false,
                rows: group.rows,
            };
            for key in group.keys.iter().chain(std::iter::once(&stamp_schema)) {
                match planned.get(&key.name) {
                    Some(p)
                        if (p.dtype, &p.shape, p.ragged) != (key.dtype, &key.shape, key.ragged) =>
                    {
                        return Err(SmallDataError::PartsDisagree {
                            key: key.name.clone(),
                            first: describe(p.dtype, &p.shape),
                            first_part: p.first.clone(),
                            then: describe(key.dtype, &key.shape),
                            then_part: part.file.clone(),
                        })
                    }
                    Some(_) => {}
                    None => {
                        planned.insert(
                            key.name.clone(),
                            Planned {
                                dtype: key.dtype,
                                shape: key.shape.clone(),
                                ragged: key.ragged,
                                group: group.group.clone(),
                                unaligned: group.unaligned,
                                timestamp: std::ptr::eq(key, &stamp_schema),
                                first: part.file.clone(),
                            },
                        );
                    }
                }
            }
        }
    }
    let group_rows = |counts: &[GroupCounts], group: &Option<String>| {
        counts
            .iter()
            .find(|c| c.group == *group)
            .map_or(0, |c| c.rows)
    };
    let mut events = 0;
    for group in &groups {
        let (_, local, total) = runs(blocks, parts, |c| group_rows(c, group));
        if group.is_none() {
            events = total;
        }
        for (segment, part) in parts.iter().enumerate().filter(|(s, _)| used[*s]) {
            let rows = part
                .groups
                .iter()
                .find(|g| g.group == *group)
                .map_or(0, |g| g.rows);
            // A segment may end with batches after the commit point, never hold fewer rows.
            if local[segment] > rows {
                return Err(SmallDataError::RowsUnaccounted {
                    part: part.file.clone(),
                    group: group.clone(),
                    rows,
                    accounted: local[segment],
                });
            }
        }
    }
    // Keep the root's `timestamp` even when nothing was written.
    planned.entry("timestamp".into()).or_insert(Planned {
        dtype: DType::I64,
        shape: vec![],
        ragged: false,
        group: None,
        unaligned: false,
        timestamp: true,
        first: String::new(),
    });
    Ok(Plan {
        datasets: planned,
        events,
    })
}

/// Creates in `file` (at `path`) one virtual dataset per planned key, mapping the rows of
/// `blocks` in batch order. Returns the number of mappings made.
fn map_datasets(
    file: &hdf5::File,
    path: &Path,
    parts: &[PartSchema],
    blocks: &[Block],
    plan: &Plan,
) -> Result<usize, SmallDataError> {
    let context = |what: &str, e: hdf5::Error| SmallDataError::hdf5(path, what, e);
    let mut mappings = 0;
    for (name, planned) in &plan.datasets {
        create_groups(file, name).map_err(|e| context(name, e))?;
        let (runs, _, total) = runs(blocks, parts, |c| planned.count(name, c));
        let shape = &planned.shape;
        with_data!(&Data::new(planned.dtype), _v: T => {
            let mut builder = file.new_dataset::<T>().shape(extents(total, shape)).fill_value(planned.fill::<T>(name));
            for &(segment, lo, go, n) in &runs {
                let part = &parts[segment];
                let Some(source) = planned.source_rows(name, part) else {
                    continue; // unmapped: reads as the fill value
                };
                mappings += 1;
                builder = builder.virtual_map(
                    &part.file,
                    name,
                    extents(source, shape),
                    rows(lo as usize, (lo + n) as usize, shape),
                    extents(total, shape),
                    rows(go as usize, (go + n) as usize, shape),
                );
            }
            builder.create(name.as_str()).map_err(|e| context(name, e))?;
        });
    }
    Ok(mappings)
}

/// A saved summary may not share a path with an event dataset, the run summaries, the run
/// metadata or another saved summary, nor sit above or below one.
fn check_saved_names(saved: &[(String, Saved)], plan: &Plan) -> Result<(), SmallDataError> {
    let clash = |a: &str, b: &str| {
        a == b
            || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
            || b.strip_prefix(a).is_some_and(|r| r.starts_with('/'))
    };
    for (at, (name, _)) in saved.iter().enumerate() {
        if name.is_empty() || name.starts_with('/') {
            return Err(SmallDataError::SavedCollides {
                name: name.clone(),
                other: "the file's root (a saved summary's path is relative: \"a/b\")".into(),
            });
        }
        let taken = plan
            .datasets
            .keys()
            .map(|d| (d.as_str(), "an event dataset"))
            .chain([
                ("summary", "the run summaries"),
                ("shotflow", "the run metadata"),
            ])
            .chain(
                saved[..at]
                    .iter()
                    .map(|(n, _)| (n.as_str(), "another saved summary")),
            );
        for (other, what) in taken {
            if clash(name, other) {
                return Err(SmallDataError::SavedCollides {
                    name: name.clone(),
                    other: format!("{what} {other:?}"),
                });
            }
        }
    }
    Ok(())
}

/// Writes the master of `manifest` to `path`. Returns the number of events of the root group.
pub(crate) fn write_master(
    path: &Path,
    manifest: &Manifest,
    saved: &[(String, Saved)],
    info: &RunInfo,
) -> Result<u64, SmallDataError> {
    let plan = plan(&manifest.segments, &manifest.blocks)?;
    check_saved_names(saved, &plan)?;
    let context = |what: &str, e: hdf5::Error| SmallDataError::hdf5(path, what, e);
    {
        let file = hdf5::File::create(path).map_err(|e| context("create", e))?;
        map_datasets(&file, path, &manifest.segments, &manifest.blocks, &plan)?;
        for (name, value) in saved {
            super::saved::write(&file, name, value).map_err(|e| context(name, e))?;
        }
        for (summary, result) in manifest.summaries.iter().zip(&manifest.totals) {
            let base = format!("summary/{}", summary.key());
            create_groups(&file, &format!("{base}/x")).map_err(|e| context(&base, e))?;
            let group = file.group(&base).map_err(|e| context(&base, e))?;
            let write =
                |name: &str, values: &[f64], shape: &[usize]| -> Result<(), SmallDataError> {
                    let array = ndarray::ArrayView::from_shape(ndarray::IxDyn(shape), values)
                        .expect("summary shape");
                    group
                        .new_dataset_builder()
                        .with_data(array)
                        .create(name)
                        .map_err(|e| context(name, e))?;
                    Ok(())
                };
            match (summary, result) {
                (
                    Summary::Stats(_),
                    Reduced::Stats {
                        count,
                        sum,
                        min,
                        max,
                        shape,
                    },
                ) => {
                    let shape = if *count == 0 { &[][..] } else { &shape[..] };
                    let n = shape.iter().product::<usize>();
                    let nan = vec![f64::NAN; n];
                    let (sum, min, max) = if *count == 0 {
                        (&vec![0.0; n], &nan, &nan)
                    } else {
                        (sum, min, max)
                    };
                    let mean: Vec<f64> = sum.iter().map(|s| s / *count as f64).collect();
                    write("sum", sum, shape)?;
                    write("min", min, shape)?;
                    write("max", max, shape)?;
                    write("mean", if *count == 0 { &nan } else { &mean }, shape)?;
                    group
                        .new_dataset_builder()
                        .with_data(&ndarray::arr0(*count))
                        .create("count")
                        .map_err(|e| context("count", e))?;
                }
                (Summary::Histogram { bins, .. }, Reduced::Histogram(histogram)) => {
                    group
                        .new_dataset_builder()
                        .with_data(&ndarray::Array1::from(histogram_with_flows(histogram)))
                        .create("histogram")
                        .map_err(|e| context("histogram", e))?;
                    group
                        .new_dataset_builder()
                        .with_data(&ndarray::arr0(histogram.nan))
                        .create("nan")
                        .map_err(|e| context("nan", e))?;
                    write("edges", &histogram.edges(), &[bins + 1])?;
                }
                _ => unreachable!("results match their summaries"),
            }
        }
        write_run_info(&file, manifest, info).map_err(|e| context("shotflow/", e))?;
        file.flush().map_err(|e| context("flush", e))?;
    }
    Ok(plan.events)
}

/// The root attribute `complete` and the `shotflow/` group: what a user needs to know whether
/// anything is missing, and what a resumed run needs to continue.
fn write_run_info(file: &hdf5::File, manifest: &Manifest, info: &RunInfo) -> hdf5::Result<()> {
    use hdf5::types::VarLenUnicode;
    let text = |s: &str| -> VarLenUnicode { s.parse().expect("no NUL in metadata") };
    file.new_attr::<bool>()
        .create("complete")?
        .write_scalar(&manifest.complete)?;
    let group = file.create_group("shotflow")?;
    group
        .new_dataset_builder()
        .with_data(&manifest.encode())
        .create("manifest")?;
    let committed = if manifest.complete {
        manifest
            .blocks
            .last()
            .map_or(0, |b| b.batch + 1)
            .max(info.resumed_from)
    } else {
        manifest.batches
    };
    let fingerprint: Vec<String> = manifest
        .fingerprint
        .iter()
        .map(|(n, v)| format!("{n} = {v}"))
        .collect();
    let scalars: [(&str, i64); 6] = [
        ("committed_batches", committed as i64),
        ("committed_events", manifest.events as i64),
        ("last_event", manifest.last_event.map_or(-1, |e| e as i64)),
        ("resumed_from_batch", info.resumed_from as i64),
        ("recomputed_batches", info.recomputed as i64),
        ("workers", info.workers as i64),
    ];
    for (name, value) in scalars {
        group.new_attr::<i64>().create(name)?.write_scalar(&value)?;
    }
    group
        .new_attr::<u64>()
        .create("commits")?
        .write_scalar(&manifest.commits)?;
    group
        .new_attr::<u64>()
        .create("compactions")?
        .write_scalar(&info.compactions)?;
    // Losses as a table (source, reason, events), and two totals a user checks first.
    let missing = crate::flow::losses::MISSING_FIELDS;
    let (mut lost, mut incomplete) = (0u64, 0u64);
    for (_, reason, n) in &manifest.losses {
        if reason == missing {
            incomplete += n;
        } else {
            lost += n;
        }
    }
    group
        .new_attr::<u64>()
        .create("lost_events")?
        .write_scalar(&lost)?;
    group
        .new_attr::<u64>()
        .create("events_with_missing_fields")?
        .write_scalar(&incomplete)?;
    let column = |f: fn(&(String, String, u64)) -> &str| -> Vec<VarLenUnicode> {
        manifest.losses.iter().map(|l| text(f(l))).collect()
    };
    let losses = file.create_group("shotflow/losses")?;
    losses
        .new_dataset_builder()
        .with_data(&column(|l| &l.0))
        .create("source")?;
    losses
        .new_dataset_builder()
        .with_data(&column(|l| &l.1))
        .create("reason")?;
    let counts: Vec<u64> = manifest.losses.iter().map(|l| l.2).collect();
    losses
        .new_dataset_builder()
        .with_data(&counts)
        .create("events")?;
    group
        .new_attr::<f64>()
        .create("seconds")?
        .write_scalar(&info.seconds)?;
    if let Some(figures) = &info.figures {
        write_figures(file, figures)?;
    }
    group
        .new_attr::<VarLenUnicode>()
        .create("version")?
        .write_scalar(&text(&manifest.version))?;
    group
        .new_attr::<VarLenUnicode>()
        .create("fingerprint")?
        .write_scalar(&text(&fingerprint.join("\n")))?;
    Ok(())
}

/// The run's figures at this commit, beside the loss accounting: `shotflow/report`.
fn write_figures(file: &hdf5::File, figures: &crate::monitor::Figures) -> hdf5::Result<()> {
    use hdf5::types::VarLenUnicode;
    let report = file.create_group("shotflow/report")?;
    let names: Vec<VarLenUnicode> = figures
        .operators
        .iter()
        .map(|(n, _)| n.parse().expect("no NUL in operator names"))
        .collect();
    report
        .new_dataset_builder()
        .with_data(&names)
        .create("operator")?;
    let busy: Vec<f64> = figures.operators.iter().map(|(_, b)| *b).collect();
    report
        .new_dataset_builder()
        .with_data(&busy)
        .create("operator_busy_seconds")?;
    let column = |f: fn(&(usize, usize, u64, f64)) -> f64| -> Vec<f64> {
        figures.workers.iter().map(f).collect()
    };
    let workers: Vec<u64> = figures.workers.iter().map(|w| w.0 as u64).collect();
    let processes: Vec<u64> = figures.workers.iter().map(|w| w.1 as u64).collect();
    let events: Vec<u64> = figures.workers.iter().map(|w| w.2).collect();
    report
        .new_dataset_builder()
        .with_data(&workers)
        .create("worker")?;
    report
        .new_dataset_builder()
        .with_data(&processes)
        .create("worker_process")?;
    report
        .new_dataset_builder()
        .with_data(&events)
        .create("worker_events")?;
    report
        .new_dataset_builder()
        .with_data(&column(|w| w.3))
        .create("worker_seconds")?;
    for (name, value) in [
        ("seconds", figures.seconds),
        ("held_back_seconds", figures.held_back_seconds),
    ] {
        report
            .new_attr::<f64>()
            .create(name)?
            .write_scalar(&value)?;
    }
    for (name, value) in [
        ("bytes_read", figures.bytes_read),
        ("bytes_written", figures.bytes_written),
    ] {
        report
            .new_attr::<u64>()
            .create(name)?
            .write_scalar(&value)?;
    }
    Ok(())
}
