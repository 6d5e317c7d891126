//! Where an EXDF train becomes a batch: the source that reads batches of trains, each on the
//! worker that owns the batch, with that worker's own file and dataset handles.

use std::collections::HashMap;
use std::sync::Arc;

use timely::dataflow::{Scope, StreamVec};

use super::{ExdfError, ExdfRun, Selected};
use crate::event::Event;
use crate::flow::Batch;
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
        batched_source(self, "Exdf", batches, move |batch| {
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
            run.read(trains, &selected, &mut open)
                .map_err(|e| format!("trains {}..={}: {e}", trains[0], trains[trains.len() - 1]))
        })
    }
}
