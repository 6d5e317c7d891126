//! The two dataflow stages of the smalldata output, both [`OrderedSink`]s:
//!
//! ```text
//! rows ─▶ batch b to writer b % W ─▶ PartWriter (per writer worker): complete batches in order,
//!                                     │ sorted by id, appended to its open segment; at a commit
//!                                     │ point (every few seconds, and at the end) the segment is
//!                                     │ closed and renamed; reports: per batch, per close
//!                                     ▼
//!                         MasterWriter (worker 0): the committed prefix of batches; rewrites
//!                         the master (tmp + rename) that maps it, then the complete master
//! ```
//!
//! **What is committed when.** A batch is committed once the segment holding it is closed
//! under its final name *and* every batch before it is too, and then a master that maps it has
//! been renamed into place. Committed batches are always a prefix `0..k`: a batch finished
//! while an earlier one is not waits (and is recomputed by a resumed run). A crash loses at
//! most the batches after the last master written; nothing before it, since no committed file
//! is ever open for writing.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::compaction::{self, add_counts, Copy};
use super::layout::{commit_file, retire, Layout, Prepared};
use super::manifest::{Block, Manifest};
use super::part_file::{GroupCounts, PartFile, PartSchema};
use super::row::{merge_same_event, Row};
use super::run_summary::{Reduced, Summary};
use super::saved::{fold, fold_all, Saved, SavedTotal};
use super::virtual_master::{write_master, RunInfo};
use super::{SmallData, SmallDataError, SmallDataResult};
use crate::event::{EventId, HasEventId};
use crate::flow::losses::Loss;
use crate::flow::read_ahead::SourcesEnded;
use crate::flow::{Batch, Losses};
use crate::sink::{OrderedSink, SinkError};

/// What the writer stages tell worker 0.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// One batch, appended to segment `seq` of writer `writer`.
    Block {
        batch: Batch,
        writer: usize,
        seq: u64,
        counts: Vec<GroupCounts>,
        partials: Vec<Reduced>,
        saved: Vec<SavedTotal>,
        last_event: Option<EventId>,
    },
    /// Every batch of `writer` before `upto` (`Batch::MAX`: all) is in a closed segment;
    /// `segment` is the one just closed, if it held anything.
    Closed {
        writer: usize,
        seq: u64,
        upto: Batch,
        segment: Option<PartSchema>,
    },
    /// The sources of `worker` stopped before batch `at` (`Batch::MAX`: they produced all).
    Ended { worker: usize, at: Batch },
    /// What the sources of one worker dropped or skipped, per batch.
    Losses(Vec<Loss>),
}

/// Reports travel in batch order; closes after the batches they close, ends last.
impl HasEventId for Report {
    fn event_id(&self) -> EventId {
        match self {
            Report::Block { batch, .. } => *batch,
            Report::Closed { .. } | Report::Losses(_) => EventId::MAX - 1,
            Report::Ended { .. } => EventId::MAX,
        }
    }
}

fn failed(error: SmallDataError) -> SinkError {
    SinkError::format(error)
}

/// An open segment: its file, its temporary path and the name it gets when closed.
struct Segment {
    file: PartFile,
    tmp: PathBuf,
    name: String,
}

/// Writer `k`'s stage: appends each complete batch to its open segment, closes the segment at
/// commit points, and reports both. On workers that write no part, it only checks that no
/// batch arrives, and reports where its sources ended.
pub(crate) struct PartWriter {
    /// The writer index of this worker, if it writes.
    writer: Option<usize>,
    worker: usize,
    layout: Layout,
    prepared: Arc<Prepared>,
    cache_bytes: usize,
    summaries: Vec<Summary>,
    interval: Duration,
    durable: bool,
    open: Option<Segment>,
    seq: u64,
    last_close: Instant,
    ended: SourcesEnded,
    losses: Losses,
}

impl PartWriter {
    /// The writer stage of `worker`, which is writer `writer` if any.
    pub(crate) fn new(
        writer: Option<usize>,
        worker: usize,
        config: &SmallData,
        prepared: Arc<Prepared>,
        ended: SourcesEnded,
        losses: Losses,
    ) -> PartWriter {
        PartWriter {
            writer,
            worker,
            layout: Layout::new(&config.path),
            prepared,
            cache_bytes: config.cache_bytes,
            summaries: config.summaries.clone(),
            interval: config.commit_interval,
            durable: config.durable,
            open: None,
            seq: 0,
            last_close: Instant::now(),
            ended,
            losses,
        }
    }

    /// Closes the open segment (if any) under its final name.
    fn close(
        &mut self,
        writer: usize,
        upto: Batch,
        output: &mut Vec<Report>,
    ) -> Result<(), SinkError> {
        let segment = match self.open.take() {
            Some(Segment { file, tmp, name }) => {
                let mut schema = file.finish().map_err(failed)?;
                schema.file = name.clone();
                commit_file(&tmp, &self.layout.beside(&name), self.durable).map_err(failed)?;
                Some(schema)
            }
            None => None,
        };
        output.push(Report::Closed {
            writer,
            seq: self.seq,
            upto,
            segment,
        });
        self.seq += 1;
        self.last_close = Instant::now();
        Ok(())
    }
}

/// A failed run's open segment was never committed: nothing may be left under its name.
impl Drop for PartWriter {
    fn drop(&mut self) {
        if let Some(Segment { file, tmp, .. }) = self.open.take() {
            drop(file);
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl OrderedSink<Row> for PartWriter {
    type Output = Report;

    fn emit(
        &mut self,
        batch: Batch,
        rows: Vec<Row>,
        output: &mut Vec<Report>,
    ) -> Result<(), SinkError> {
        let Some(writer) = self.writer else {
            return Err(failed(SmallDataError::NoWriter {
                batch,
                worker: self.worker,
            }));
        };
        if self.open.is_none() {
            let name = self.layout.segment(&self.prepared.run, writer, self.seq);
            let tmp = self.layout.beside(&format!("{name}.tmp"));
            let file = PartFile::create(&tmp, self.cache_bytes).map_err(failed)?;
            self.open = Some(Segment { file, tmp, name });
        }
        let segment = self.open.as_mut().expect("opened");
        let (contributions, rows): (Vec<Row>, Vec<Row>) = if rows.iter().any(|r| r.saved.is_some())
        {
            rows.into_iter().partition(|r| r.saved.is_some())
        } else {
            (Vec::new(), rows)
        };
        // In event-id order (rows come sorted), whichever worker made them.
        let mut saved = Vec::new();
        for row in &contributions {
            let reduce = row.saved.expect("partitioned");
            for (key, value) in row.event.fields() {
                fold(&mut saved, key.name(), reduce, value)
                    .map_err(|e| failed(SmallDataError::Saved(e)))?;
            }
        }
        let rows = merge_same_event(rows);
        let counts = segment.file.append(&rows).map_err(|e| {
            failed(SmallDataError::Append {
                part: segment.tmp.display().to_string(),
                kept: segment.file.written(),
                source: Box::new(e),
            })
        })?;
        let partials = self
            .summaries
            .iter()
            .map(|s| Reduced::of_batch(s, &rows))
            .collect();
        output.push(Report::Block {
            batch,
            writer,
            seq: self.seq,
            counts,
            partials,
            saved,
            // Rows come sorted by event id.
            last_event: rows.last().map(|r| r.event.id),
        });
        Ok(())
    }

    fn commit(&mut self, upto: Option<Batch>, output: &mut Vec<Report>) -> Result<(), SinkError> {
        let due = upto.is_none()
            || self.last_close.elapsed() >= self.interval
            || crate::runtime::stop_requested().is_some();
        if let (Some(writer), true) = (self.writer, due) {
            self.close(writer, upto.unwrap_or(Batch::MAX), output)?;
        }
        // Counted before their batches left the source: all there by now.
        let losses = self.losses.take_before(upto);
        if !losses.is_empty() {
            output.push(Report::Losses(losses));
        }
        if upto.is_none() {
            output.push(Report::Ended {
                worker: self.worker,
                at: self.ended.at(),
            });
        }
        Ok(())
    }
}

/// `SHOTFLOW_TEST_COMMIT_PAUSE_MS`: a pause between writing a master and renaming it into
/// place, for the crash tests (a kill then lands in that window for sure).
fn test_pause() -> Option<Duration> {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("SHOTFLOW_TEST_COMMIT_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
}

/// A batch written but not yet committed.
struct Pending {
    writer: usize,
    seq: u64,
    counts: Vec<GroupCounts>,
    partials: Vec<Reduced>,
    saved: Vec<SavedTotal>,
    last_event: Option<EventId>,
}

/// Worker 0's stage: collects the writers' reports, advances the committed prefix and rewrites
/// the master that maps it; when the run ends, writes the final master (complete, or partial
/// when the run was stopped).
pub(crate) struct MasterWriter {
    is_master: bool,
    config: SmallData,
    layout: Layout,
    prepared: Arc<Prepared>,
    manifest: Manifest,
    /// Batches before this were committed by the run this one resumes.
    resumed_from: Batch,
    pending: BTreeMap<Batch, Pending>,
    /// Closed segments not yet referred to by the manifest, and those that are (their index).
    closed: HashMap<(usize, u64), PartSchema>,
    placed: HashMap<(usize, u64), usize>,
    /// Per writer, the batch before which all its batches are in closed segments.
    coverage: Vec<Batch>,
    /// Per worker, where its sources ended.
    ends: Vec<Option<Batch>>,
    /// Loss counts of batches not yet committed.
    losses: BTreeMap<Batch, Vec<(String, String, u64)>>,
    /// Batches the sources produced again although they were committed already.
    recomputed: u64,
    /// The prefix the last master written maps.
    written: Batch,
    last_write: Instant,
    write_cost: Duration,
    started: Instant,
    workers: usize,
    /// Blocks before this are in compacted files.
    compacted: usize,
    /// The merge and the tail compaction in progress, when they were last given time, copies
    /// started and finished.
    merging: Option<Copy>,
    tailing: Option<Copy>,
    last_step: Instant,
    copies: u64,
    compactions: u64,
    /// Files no master refers to any more, and since when none in place does.
    retiring: Vec<(String, Option<Instant>)>,
}

impl MasterWriter {
    /// The master stage of this worker; only worker 0 (`is_master`) writes the file.
    pub(crate) fn new(
        is_master: bool,
        writers: usize,
        workers: usize,
        config: SmallData,
        prepared: Arc<Prepared>,
    ) -> MasterWriter {
        let manifest = prepared
            .resumed
            .clone()
            .unwrap_or_else(|| Manifest::empty(&config.summaries, config.fingerprint.clone()));
        let resumed_from = manifest.batches;
        let compacted = manifest
            .blocks
            .iter()
            .take_while(|b| compaction::level(&manifest.segments[b.segment].file).is_some())
            .count();
        MasterWriter {
            is_master,
            layout: Layout::new(&config.path),
            config,
            prepared,
            written: manifest.batches,
            manifest,
            resumed_from,
            pending: BTreeMap::new(),
            closed: HashMap::new(),
            placed: HashMap::new(),
            coverage: vec![0; writers],
            ends: vec![None; workers],
            losses: BTreeMap::new(),
            recomputed: 0,
            last_write: Instant::now(),
            write_cost: Duration::ZERO,
            started: Instant::now(),
            workers,
            compacted,
            merging: None,
            tailing: None,
            last_step: Instant::now(),
            copies: 0,
            compactions: 0,
            retiring: Vec::new(),
        }
    }

    /// Compaction. Merges of compacted files run a slice at a time, in at most a tenth of the
    /// time since the last slice. The uncompacted tail is compacted when a master is about to
    /// map it (`master_due`) and it is too long: at once when its rows are few bytes (the
    /// usual case of many small batches), so that every master maps a bounded number of runs;
    /// in slices like a merge when they are many.
    fn compact(&mut self, master_due: bool) -> Result<(), SmallDataError> {
        let policy = self.config.compaction;
        if self.merging.is_none() {
            if let Some((range, level)) =
                compaction::due_merge(&policy, &self.manifest, self.compacted)
            {
                self.merging = Some(self.start_copy(range, level)?);
            }
        }
        let mut budget = (self.last_step.elapsed() / 10).max(Duration::from_millis(2));
        for tail in [true, false] {
            let slot = if tail {
                &mut self.tailing
            } else {
                &mut self.merging
            };
            let Some(copy) = slot else { continue };
            let began = Instant::now();
            let done = copy.step(budget)?;
            budget = budget.saturating_sub(began.elapsed());
            if done {
                let copy = slot.take().expect("in progress");
                self.adopt(copy)?;
            }
        }
        self.last_step = Instant::now();
        if master_due && self.tailing.is_none() {
            if let Some(range) = compaction::due_tail(&policy, &self.manifest, self.compacted) {
                let bytes = compaction::bytes(&self.manifest, range.clone());
                let mut copy = self.start_copy(range, 0)?;
                if bytes <= policy.at_once {
                    copy.step(Duration::MAX)?;
                    self.adopt(copy)?;
                } else {
                    self.tailing = Some(copy);
                }
            }
        }
        Ok(())
    }

    fn start_copy(&mut self, range: Range<usize>, level: u32) -> Result<Copy, SmallDataError> {
        let name = self
            .layout
            .compacted(&self.prepared.run, level, self.copies);
        self.copies += 1;
        Copy::start(
            &self.layout,
            &self.manifest,
            range,
            name,
            self.config.durable,
        )
    }

    /// Points blocks `range` at the compacted file `schema`; forgets the segments that no
    /// committed or pending batch refers to any more (their files go once no master in place
    /// refers to them).
    fn adopt(&mut self, copy: Copy) -> Result<(), SmallDataError> {
        let range = copy.range.clone();
        let schema = copy.finish()?;
        self.compactions += 1;
        let manifest = &mut self.manifest;
        let new = manifest.segments.len();
        // One block stands for the whole range: the manifest stays as small as the master.
        let mut counts = Vec::new();
        let mut last = 0;
        for block in manifest.blocks.drain(range.clone()) {
            // A segment whose later rows stay mapped from it skips those compacted.
            add_counts(&mut manifest.segments[block.segment].skip, &block.counts);
            add_counts(&mut counts, &block.counts);
            last = block.batch;
        }
        manifest.blocks.insert(
            range.start,
            Block {
                batch: last,
                segment: new,
                counts,
            },
        );
        manifest.segments.push(schema);
        // The tail's range starts where the compacted blocks end; a merge's ends before.
        self.compacted = if range.start >= self.compacted {
            range.start + 1
        } else {
            self.compacted - (range.len() - 1)
        };
        // A copy in flight after this range: its blocks moved up.
        for copy in [&mut self.merging, &mut self.tailing].into_iter().flatten() {
            if copy.range.start >= range.end {
                let by = range.len() - 1;
                copy.range = copy.range.start - by..copy.range.end - by;
            }
        }
        let mut keep = vec![false; manifest.segments.len()];
        for block in &manifest.blocks {
            keep[block.segment] = true;
        }
        for pending in self.pending.values() {
            if let Some(&at) = self.placed.get(&(pending.writer, pending.seq)) {
                keep[at] = true;
            }
        }
        let mut remap = vec![usize::MAX; keep.len()];
        let mut kept = Vec::new();
        for (at, segment) in std::mem::take(&mut manifest.segments)
            .into_iter()
            .enumerate()
        {
            if keep[at] {
                remap[at] = kept.len();
                kept.push(segment);
            } else {
                self.retiring.push((segment.file, None));
            }
        }
        manifest.segments = kept;
        for block in &mut manifest.blocks {
            block.segment = remap[block.segment];
        }
        self.placed.retain(|_, at| {
            let to = remap[*at];
            *at = to;
            to != usize::MAX
        });
        Ok(())
    }

    /// Deletes the retired files that no master in place has referred to for a while: a
    /// reader that opened an older master a moment ago still finds its files. Those retired
    /// more recently stay, also when the run ends (the next run on this output removes them).
    fn delete_retired(&mut self) {
        let grace = (self.config.commit_interval * 3).max(Duration::from_secs(30));
        let now = Instant::now();
        self.retiring.retain_mut(|(name, since)| {
            let since = *since.get_or_insert(now);
            let due = since.elapsed() >= grace;
            if due {
                let _ = std::fs::remove_file(self.layout.beside(name));
            }
            !due
        });
    }

    /// Moves the pending batches before `k` into the manifest, in batch order.
    fn advance(&mut self, k: Batch) -> Result<(), SmallDataError> {
        if k <= self.manifest.batches {
            return Ok(());
        }
        let later = if k < Batch::MAX {
            self.pending.split_off(&k)
        } else {
            BTreeMap::new()
        };
        let ready = std::mem::replace(&mut self.pending, later);
        let later_losses = if k < Batch::MAX {
            self.losses.split_off(&k)
        } else {
            BTreeMap::new()
        };
        for (source, reason, n) in std::mem::replace(&mut self.losses, later_losses)
            .into_values()
            .flatten()
        {
            match self
                .manifest
                .losses
                .iter_mut()
                .find(|(s, r, _)| *s == source && *r == reason)
            {
                Some(entry) => entry.2 += n,
                None => self.manifest.losses.push((source, reason, n)),
            }
        }
        self.manifest.losses.sort();
        for (batch, block) in ready {
            let key = (block.writer, block.seq);
            let segment = match self.placed.get(&key) {
                Some(&at) => at,
                None => {
                    let schema = self.closed.remove(&key).ok_or_else(|| SmallDataError::Manifest {
                        master: self.layout.path.display().to_string(),
                        problem: format!(
                            "batch {batch} is before the commit point {k} but segment {} of writer {} was not closed",
                            block.seq, block.writer
                        ),
                    })?;
                    self.manifest.segments.push(schema);
                    self.placed.insert(key, self.manifest.segments.len() - 1);
                    self.manifest.segments.len() - 1
                }
            };
            let root = block
                .counts
                .iter()
                .find(|c| c.group.is_none())
                .map_or(0, |c| c.rows);
            self.manifest.events += root;
            self.manifest.last_event = self.manifest.last_event.max(block.last_event);
            // Batch order, whatever the writer: the float sums have the same bits at any count
            // and after a resume, which continues this very fold.
            for (total, partial) in self.manifest.totals.iter_mut().zip(&block.partials) {
                total.combine(partial);
            }
            fold_all(&mut self.manifest.saved, &block.saved)?;
            self.manifest.blocks.push(Block {
                batch,
                segment,
                counts: block.counts,
            });
        }
        self.manifest.batches = k;
        Ok(())
    }

    /// Writes the master for the committed prefix, at the output path when complete.
    fn write(&mut self) -> Result<(), SmallDataError> {
        let began = Instant::now();
        self.manifest.commits += 1;
        let complete = self.manifest.complete;
        let path = if complete {
            self.layout.path.clone()
        } else {
            self.prepared.master.clone()
        };
        let info = RunInfo {
            resumed_from: self.resumed_from,
            recomputed: self.recomputed,
            workers: self.workers,
            seconds: self.started.elapsed().as_secs_f64(),
            compactions: self.compactions,
            figures: crate::monitor::current_figures(),
        };
        let tmp = path.with_extension("h5.tmp");
        let saved: Vec<(String, Saved)> = (self.config.saved.iter().cloned())
            .chain(
                (self.manifest.saved.iter())
                    .map(|t| (t.name.clone(), Saved::Value(t.value.clone()))),
            )
            .collect();
        let rows = write_master(&tmp, &self.manifest, &saved, &info)?;
        if let Some(pause) = test_pause() {
            // Lets a test kill the process while a master is half-way to its name.
            std::thread::sleep(pause);
        }
        commit_file(&tmp, &path, self.config.durable)?;
        self.delete_retired();
        if complete {
            let young: Vec<&str> = self.retiring.iter().map(|(n, _)| n.as_str()).collect();
            retire(&self.layout, &self.prepared, &self.manifest, &young);
        }
        self.written = self.manifest.batches;
        self.last_write = Instant::now();
        self.write_cost = began.elapsed();
        *self.config.result.lock().unwrap() = Some(SmallDataResult {
            master: path,
            rows,
            summaries: self
                .config
                .summaries
                .iter()
                .cloned()
                .zip(self.manifest.totals.iter().cloned())
                .collect(),
            saved: self.manifest.saved.clone(),
            complete,
            batches: self.manifest.batches,
            last_event: self.manifest.last_event,
            files: self
                .manifest
                .segments
                .iter()
                .map(|s| s.file.clone())
                .collect(),
            resumed_from: self.resumed_from,
            recomputed: self.recomputed,
            losses: self.manifest.losses.clone(),
        });
        Ok(())
    }
}

impl OrderedSink<Report> for MasterWriter {
    type Output = ();

    fn emit(&mut self, _: Batch, reports: Vec<Report>, _: &mut Vec<()>) -> Result<(), SinkError> {
        for report in reports {
            match report {
                Report::Block {
                    batch,
                    writer,
                    seq,
                    counts,
                    partials,
                    saved,
                    last_event,
                } => {
                    if batch < self.resumed_from {
                        // Committed before: the rows are already mapped; these stay unused.
                        self.recomputed += 1;
                        continue;
                    }
                    self.pending.insert(
                        batch,
                        Pending {
                            writer,
                            seq,
                            counts,
                            partials,
                            saved,
                            last_event,
                        },
                    );
                }
                Report::Closed {
                    writer,
                    seq,
                    upto,
                    segment,
                } => {
                    if let Some(schema) = segment {
                        self.closed.insert((writer, seq), schema);
                    }
                    self.coverage[writer] = self.coverage[writer].max(upto);
                }
                Report::Ended { worker, at } => self.ends[worker] = Some(at),
                Report::Losses(losses) => {
                    for (batch, source, reason, n) in losses {
                        // Losses of committed batches were counted by the run that committed
                        // them.
                        if batch >= self.resumed_from {
                            self.losses
                                .entry(batch)
                                .or_default()
                                .push((source, reason, n));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn commit(&mut self, upto: Option<Batch>, _: &mut Vec<()>) -> Result<(), SinkError> {
        if !self.is_master || crate::runtime::aborted() {
            return Ok(());
        }
        let covered = self.coverage.iter().copied().min().unwrap_or(Batch::MAX);
        if upto.is_some() {
            if crate::runtime::stop_requested().is_some() {
                return Ok(()); // the final master follows within moments
            }
            // Reports about batches before the input frontier have all arrived.
            self.advance(covered.min(upto.unwrap_or(Batch::MAX)))
                .map_err(failed)?;
            // At most every commit interval, and never more than a tenth of the run's time.
            let interval = self.config.commit_interval.max(self.write_cost * 10);
            let due = self.manifest.batches > self.written && self.last_write.elapsed() >= interval;
            self.compact(due).map_err(failed)?;
            if due {
                self.write().map_err(failed)?;
            }
            return Ok(());
        }
        if let Some(worker) = self.ends.iter().position(Option::is_none) {
            return Err(failed(SmallDataError::Unfinished {
                missing: vec![worker],
            }));
        }
        let ended = self
            .ends
            .iter()
            .flatten()
            .copied()
            .min()
            .unwrap_or(Batch::MAX);
        let k = covered.min(ended);
        // The final master maps what is there; a copy half-done is not worth waiting for.
        self.merging = None;
        self.tailing = None;
        self.advance(k).map_err(failed)?;
        self.compact(true).map_err(failed)?;
        self.manifest.complete = k == Batch::MAX;
        self.write().map_err(failed)
    }
}
