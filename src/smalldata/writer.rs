//! The two dataflow stages of the smalldata output, both [`OrderedSink`]s:
//!
//! ```text
//! rows ─▶ batch b to writer b % W ─▶ PartWriter (per writer worker): complete batches in order,
//!                                     │ sorted by id, appended to its part file; a report per
//!                                     ▼ batch (rows per group, summary partials)
//!                         MasterWriter (worker 0): when the run ends, the VDS master
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::part_file::{GroupCounts, PartFile, PartSchema};
use super::row::{merge_same_event, Row};
use super::run_summary::{Reduced, Summary};
use super::virtual_master::{write_master, Block};
use super::{SmallData, SmallDataError, SmallDataResult};
use crate::event::{EventId, HasEventId};
use crate::flow::Batch;
use crate::sink::{OrderedSink, SinkError};

/// What writers tell worker 0.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// One batch, appended to a part.
    Block {
        batch: Batch,
        writer: usize,
        counts: Vec<GroupCounts>,
        partials: Vec<Reduced>,
    },
    /// A finished part.
    Part { writer: usize, schema: PartSchema },
}

/// Reports travel in batch order; finished parts after every batch.
impl HasEventId for Report {
    fn event_id(&self) -> EventId {
        match self {
            Report::Block { batch, .. } => *batch,
            Report::Part { .. } => EventId::MAX,
        }
    }
}

fn failed(error: SmallDataError) -> SinkError {
    SinkError::format(error)
}

/// Writer `k`'s stage: appends each complete batch to part file `k` and reports it. On workers
/// that write no part, it only checks that no batch arrives.
pub(crate) struct PartWriter {
    /// The part this worker writes, if any: writer index and path.
    part: Option<(usize, PathBuf)>,
    file: Option<PartFile>,
    cache_bytes: usize,
    summaries: Vec<Summary>,
    worker: usize,
}

impl PartWriter {
    /// The writer stage of `worker`, which writes `part` (writer index and path) if any.
    pub(crate) fn new(
        part: Option<(usize, PathBuf)>,
        worker: usize,
        config: &SmallData,
    ) -> PartWriter {
        PartWriter {
            part,
            file: None,
            cache_bytes: config.cache_bytes,
            summaries: config.summaries.clone(),
            worker,
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
        let Some((k, path)) = &self.part else {
            return Err(failed(SmallDataError::NoWriter {
                batch,
                worker: self.worker,
            }));
        };
        if self.file.is_none() {
            self.file = Some(PartFile::create(path, self.cache_bytes).map_err(failed)?);
        }
        let file = self.file.as_mut().expect("created");
        let rows = merge_same_event(rows);
        let counts = file.append(&rows).map_err(|e| {
            failed(SmallDataError::Append {
                part: path.display().to_string(),
                kept: file.written(),
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
            writer: *k,
            counts,
            partials,
        });
        Ok(())
    }

    fn commit(&mut self, upto: Option<Batch>, output: &mut Vec<Report>) -> Result<(), SinkError> {
        if upto.is_some() {
            return Ok(());
        }
        let Some((k, path)) = &self.part else {
            return Ok(());
        };
        // A writer that received no batch still writes an (empty) part for the master.
        let file = match self.file.take() {
            Some(file) => file,
            None => PartFile::create(path, self.cache_bytes).map_err(failed)?,
        };
        let schema = file.finish().map_err(failed)?;
        output.push(Report::Part { writer: *k, schema });
        Ok(())
    }
}

/// Worker 0's stage: collects the writers' reports and, when the run ends, writes the master.
pub(crate) struct MasterWriter {
    is_master: bool,
    writers: usize,
    config: SmallData,
    blocks: Vec<Block>,
    partials: BTreeMap<Batch, Vec<Reduced>>,
    parts: BTreeMap<usize, PartSchema>,
}

impl MasterWriter {
    /// The master stage of this worker; only worker 0 (`is_master`) writes the file.
    pub(crate) fn new(is_master: bool, writers: usize, config: SmallData) -> MasterWriter {
        MasterWriter {
            is_master,
            writers,
            config,
            blocks: Vec::new(),
            partials: BTreeMap::new(),
            parts: BTreeMap::new(),
        }
    }

    fn write(&mut self) -> Result<(), SmallDataError> {
        if self.parts.len() != self.writers {
            let missing = (0..self.writers)
                .filter(|k| !self.parts.contains_key(k))
                .collect();
            return Err(SmallDataError::Unfinished { missing });
        }
        let mut totals: Vec<(Summary, Reduced)> = self
            .config
            .summaries
            .iter()
            .map(|s| (s.clone(), Reduced::empty(s)))
            .collect();
        // Batch order, whatever the writer: the float sums have the same bits at any count.
        for batch_partials in self.partials.values() {
            for ((_, total), partial) in totals.iter_mut().zip(batch_partials) {
                total.combine(partial);
            }
        }
        let parts: Vec<PartSchema> = std::mem::take(&mut self.parts).into_values().collect();
        let rows = write_master(
            &self.config.path,
            &parts,
            std::mem::take(&mut self.blocks),
            &totals,
        )?;
        remove_stale_parts(&self.config, self.writers);
        *self.config.result.lock().unwrap() = Some(SmallDataResult {
            master: self.config.path.clone(),
            rows,
            summaries: totals,
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
                    counts,
                    partials,
                } => {
                    self.blocks.push(Block {
                        batch,
                        writer,
                        counts,
                    });
                    self.partials.insert(batch, partials);
                }
                Report::Part { writer, schema } => {
                    self.parts.insert(writer, schema);
                }
            }
        }
        Ok(())
    }

    fn commit(&mut self, upto: Option<Batch>, _: &mut Vec<()>) -> Result<(), SinkError> {
        // Every report reaches worker 0; a failed run writes no master.
        if upto.is_some() || !self.is_master || crate::runtime::aborted() {
            return Ok(());
        }
        self.write().map_err(failed)
    }
}

/// Part files of an earlier run with more writers would be mistaken for this run's.
fn remove_stale_parts(config: &SmallData, writers: usize) {
    let mut k = writers;
    while config.part_path(k).exists() {
        let _ = std::fs::remove_file(config.part_path(k));
        k += 1;
    }
}
