//! The flow of batches: the timestamp every shotflow stream carries, the per-run settings the
//! operators read, back-pressure between sources and sinks, and holding batches until they are
//! complete.
//!
//! This layer knows timely and the event model, nothing of how workers are started, of files
//! or of sockets:
//!
//! * [`Batch`]: the timely timestamp of every shotflow stream. A batch is a train or a block of
//!   events, never one event: each distinct timestamp costs about a microsecond of progress
//!   tracking on every worker, which would cap the engine far below 1 MHz.
//! * [`Settings`]: the per-run settings (read-ahead window today), carried in timely's worker
//!   configuration the way differential dataflow carries its own, so two runs in one process
//!   never see each other's values.
//! * [`read_ahead`]: sources stay a few batches ahead of the slowest sink.
//! * [`Losses`]: events a source drops or skips, counted per batch, source and reason, so that
//!   a sink can commit the counts with the batches they belong to.
//! * [`meter`]: what this worker's sources and sinks did (batches, events, bytes, time held
//!   back, losses), for the progress bar, the metrics and the dashboard.
//! * [`InOrder`]: rows held per batch until the frontier passes the batch, then released batch
//!   by batch in event-id order. Every ordered output (callbacks, karabo-bridge, smalldata) is
//!   built on it.

mod in_order;
pub mod losses;
pub mod meter;
pub mod read_ahead;
mod settings;
mod shared;

pub use in_order::InOrder;
pub use losses::Losses;
pub use settings::Settings;

/// The batch number: the timely timestamp of every shotflow stream.
pub type Batch = u64;
