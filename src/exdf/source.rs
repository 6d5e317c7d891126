//! Where an EXDF train becomes a batch: the source that reads batches of trains, each on the
//! worker that owns the batch, with that worker's own file and dataset handles.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use timely::dataflow::{Scope, StreamVec};

use super::{ExdfError, ExdfRun, Selected};
use crate::event::{Event, Key};
use crate::flow::losses::MISSING_FIELDS;
use crate::flow::{meter, Batch, Losses};
use crate::source::batched_source;

/// Adds an EXDF run as a source to a dataflow scope.
pub trait ExdfSource<'scope> {
    /// One event per train with the `selected` keys, `trains_per_batch` trains per batch.
    fn exdf(
        self,
        run: Arc<ExdfRun>,
        selected: Arc<Vec<Selected>>,
        trains_per_batch: usize,
    ) -> StreamVec<'scope, Batch, Event>;
}

impl<'scope> ExdfSource<'scope> for Scope<'scope, Batch> {
    fn exdf(
        self,
        run: Arc<ExdfRun>,
        selected: Arc<Vec<Selected>>,
        trains_per_batch: usize,
    ) -> StreamVec<'scope, Batch, Event> {
        let per = trains_per_batch.max(1);
        let batches = run.trains.len().div_ceil(per) as u64;
        let mut files: HashMap<usize, hdf5::File> = HashMap::new();
        let mut datasets: HashMap<(usize, String), hdf5::Dataset> = HashMap::new();
        let losses = Losses::new(&self);
        meter::expect(self.index(), run.trains.len() as u64, "trains");
        // The selected fields of each source: an event with none of them lacks that source.
        let mut by_source: BTreeMap<&str, Vec<Key>> = BTreeMap::new();
        for s in selected.iter() {
            by_source
                .entry(s.source.as_str())
                .or_default()
                .push(s.field);
        }
        let by_source: Vec<(String, Vec<Key>)> = by_source
            .into_iter()
            .map(|(s, k)| (s.to_string(), k))
            .collect();
        batched_source(self, "Exdf", batches, move |batch| {
            if batch == 0 {
                // Trains left out when the run was opened belong to no batch: the first one
                // carries them, so that they are committed (and counted) once.
                losses.count(
                    0,
                    "run",
                    "suspect train (out of order or repeated in its file)",
                    run.suspect_trains as u64,
                );
            }
            let from = batch as usize * per;
            let trains = &run.trains[from..(from + per).min(run.trains.len())];
            let paths = &run.files;
            let mut open = |index: usize, name: &str| -> Result<hdf5::Dataset, ExdfError> {
                if let Some(dataset) = datasets.get(&(index, name.to_string())) {
                    return Ok(dataset.clone());
                }
                let path = &paths[index].path;
                let file = match files.entry(index) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(
                        hdf5::File::open(path).map_err(|e| ExdfError::hdf5(path, "open", e))?,
                    ),
                };
                let dataset = file
                    .dataset(name)
                    .map_err(|e| ExdfError::hdf5(path, name, e))?;
                datasets.insert((index, name.to_string()), dataset.clone());
                Ok(dataset)
            };
            let events = run
                .read(trains, &selected, &mut open)
                .map_err(|e| format!("trains {}..={}: {e}", trains[0], trains[trains.len() - 1]))?;
            for (source, keys) in &by_source {
                let lacking = events
                    .iter()
                    .filter(|e| !keys.iter().any(|k| e.value(*k).is_some()))
                    .count();
                losses.count(batch, source, MISSING_FIELDS, lacking as u64);
            }
            meter::read(events.iter().map(|e| e.nbytes() as u64).sum());
            Ok::<_, String>(events)
        })
    }
}
