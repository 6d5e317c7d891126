//! What a master commits: which closed segment files hold which batches, and the summaries'
//! running state. It lives inside the master (`shotflow/manifest`), so the one atomic rename
//! of the master commits both; a resumed run reads it back and continues from it.
//!
//! The manifest is bincode, not text: summary totals must come back with the exact bits
//! (infinities and NaN included) so that a resumed run folds the same floats in the same order
//! as an uninterrupted one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::part_file::{GroupCounts, PartSchema};
use super::run_summary::{Reduced, Summary};
use super::saved::SavedTotal;
use super::SmallDataError;
use crate::event::EventId;
use crate::flow::Batch;

/// Version of the manifest layout: a master written by another layout cannot be resumed (2:
/// compacted files; 3: saved summaries).
pub(crate) const FORMAT: u32 = 3;

/// Where one batch's rows are: which segment of the manifest, how many per group. A block of
/// a compacted file stands for every batch the file holds, up to `batch`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Block {
    /// The (last) batch.
    pub batch: Batch,
    /// Index into [`Manifest::segments`].
    pub segment: usize,
    pub counts: Vec<GroupCounts>,
}

/// Everything a master maps, and what a resumed run needs to continue it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Manifest {
    pub format: u32,
    /// The shotflow version that wrote it.
    pub version: String,
    /// What produced the data (inputs, selection, options), as `name = value` pairs.
    pub fingerprint: Vec<(String, String)>,
    /// The summaries the totals are of.
    pub summaries: Vec<Summary>,
    /// Every batch of the run is here.
    pub complete: bool,
    /// Batches `0..batches` are committed (`Batch::MAX` with `complete`).
    pub batches: Batch,
    /// Events (rows of the root group) committed.
    pub events: u64,
    /// The last committed event id.
    pub last_event: Option<EventId>,
    /// Closed segment files, in the order blocks first refer to them.
    pub segments: Vec<PartSchema>,
    /// The committed batches that have rows, in batch order (compacted ranges as one block).
    pub blocks: Vec<Block>,
    /// The summaries folded over the committed batches in batch order.
    pub totals: Vec<Reduced>,
    /// Commits so far (run metadata, not data).
    pub commits: u64,
    /// Events dropped or skipped in the committed batches: source, reason, events.
    pub losses: Vec<(String, String, u64)>,
    /// The saved summaries folded over the committed batches in batch order.
    pub saved: Vec<SavedTotal>,
}

impl Manifest {
    /// The state before anything is committed.
    pub fn empty(summaries: &[Summary], fingerprint: Vec<(String, String)>) -> Manifest {
        Manifest {
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").to_string(),
            fingerprint,
            summaries: summaries.to_vec(),
            complete: false,
            batches: 0,
            events: 0,
            last_event: None,
            segments: Vec::new(),
            blocks: Vec::new(),
            totals: summaries.iter().map(Reduced::empty).collect(),
            commits: 0,
            losses: Vec::new(),
            saved: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("a manifest serialises")
    }

    /// Reads the manifest of the master at `path`: `Ok(None)` for a master without one (written
    /// before masters had manifests: it counts as complete).
    pub fn read(path: &Path) -> Result<Option<Manifest>, SmallDataError> {
        let file = hdf5::File::open(path).map_err(|e| SmallDataError::hdf5(path, "open", e))?;
        let Ok(dataset) = file.dataset("shotflow/manifest") else {
            return Ok(None);
        };
        let bytes = dataset
            .read_raw::<u8>()
            .map_err(|e| SmallDataError::hdf5(path, "shotflow/manifest", e))?;
        // The layout comes first (bincode writes fields in order): check it before the rest.
        let format = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        if format.is_some_and(|f| f != FORMAT) {
            return Err(SmallDataError::Manifest {
                master: path.display().to_string(),
                problem: format!(
                    "manifest layout {} (this shotflow reads layout {FORMAT})",
                    format.unwrap_or_default()
                ),
            });
        }
        let manifest: Manifest =
            bincode::deserialize(&bytes).map_err(|e| SmallDataError::Manifest {
                master: path.display().to_string(),
                problem: format!("unreadable manifest: {e}"),
            })?;
        Ok(Some(manifest))
    }

    /// Why a run with `fingerprint` and `summaries` cannot continue this one (`None`: it can).
    pub fn mismatch(
        &self,
        fingerprint: &[(String, String)],
        summaries: &[Summary],
    ) -> Option<String> {
        let mut differences = Vec::new();
        let version = env!("CARGO_PKG_VERSION");
        if self.version != version {
            differences.push(format!(
                "shotflow version: {} before, {version} now",
                self.version
            ));
        }
        let value = |pairs: &[(String, String)], name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut names: Vec<&String> = self
            .fingerprint
            .iter()
            .chain(fingerprint)
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let (before, now) = (value(&self.fingerprint, name), value(fingerprint, name));
            if before != now {
                let show = |v: Option<String>| v.unwrap_or_else(|| "(not given)".into());
                differences.push(format!(
                    "{name}: {} before, {} now",
                    show(before),
                    show(now)
                ));
            }
        }
        if self.summaries != summaries {
            differences.push(format!(
                "summaries: {:?} before, {summaries:?} now",
                self.summaries
            ));
        }
        (!differences.is_empty()).then(|| differences.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_keep_their_exact_bits() {
        let summaries = vec![Summary::Stats("x".into())];
        let mut manifest = Manifest::empty(&summaries, vec![("seed".into(), "1".into())]);
        manifest.totals = vec![Reduced::Stats {
            count: 3,
            sum: vec![0.1 + 0.2, f64::NAN],
            min: vec![f64::NEG_INFINITY, 5e-324],
            max: vec![f64::INFINITY, -0.0],
            shape: vec![2],
        }];
        let back: Manifest = bincode::deserialize(&manifest.encode()).unwrap();
        let bits = |m: &Manifest| match &m.totals[0] {
            Reduced::Stats { sum, min, max, .. } => sum
                .iter()
                .chain(min)
                .chain(max)
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            _ => unreachable!(),
        };
        assert_eq!(bits(&back), bits(&manifest));
    }

    #[test]
    fn a_mismatch_names_each_difference() {
        let summaries = vec![Summary::Stats("x".into())];
        let manifest = Manifest::empty(
            &summaries,
            vec![("seed".into(), "1".into()), ("events".into(), "10".into())],
        );
        assert_eq!(
            manifest.mismatch(
                &[("seed".into(), "1".into()), ("events".into(), "10".into())],
                &summaries
            ),
            None
        );
        let why = manifest
            .mismatch(
                &[("seed".into(), "2".into()), ("frame".into(), "none".into())],
                &[],
            )
            .unwrap();
        assert_eq!(
            why,
            "events: 10 before, (not given) now; frame: (not given) before, none now; \
             seed: 1 before, 2 now; summaries: [Stats(\"x\")] before, [] now"
        );
        // A partial result of another version is not continued, even with the same inputs:
        // that version may write other datasets.
        let older = Manifest {
            version: "0.1.0".into(),
            ..manifest.clone()
        };
        assert_eq!(
            older.mismatch(&manifest.fingerprint, &summaries).unwrap(),
            format!(
                "shotflow version: 0.1.0 before, {} now",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
