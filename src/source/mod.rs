//! Sources: where events enter the dataflow.
//!
//! A source splits a run into batches numbered `0..n` in event-id order and hands each worker
//! a disjoint share (batch `b` goes to worker `b % peers`, so every worker advances at the same
//! pace and the frontier moves steadily). The timely timestamp of a batch is its number: one
//! timestamp per batch, never per event, because each distinct timestamp costs about a
//! microsecond of progress tracking on every worker.
//!
//! Heavy data (detector frames) are produced on the worker that owns the batch and stay there
//! unless an operator moves them.

mod batched;
#[cfg(feature = "hdf5")]
pub(crate) mod ring;
pub mod synthetic;

pub use batched::{batched_source, owned_batches, source_loop, Produced, Schedule};
pub use synthetic::{Synthetic, SyntheticKeys, SyntheticSource};
