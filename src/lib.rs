//! # shotflow
//!
//! A stream-processing dataflow engine for X-ray free-electron laser detector events, on
//! [timely dataflow](timely).
//!
//! A shotflow program is an ordinary timely program: a [source] turns a run into a
//! stream of [`Event`](event::Event) batches, plain closures map and filter them (timely's own
//! `Map`, `Filter`, `Exchange`, ... operators work unchanged), and [sinks](sink) take the
//! results. The [runtime] decides where the program runs (one thread, many threads, many
//! processes, `mpirun`/`srun`) from launch options, never from the program's code.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use shotflow::prelude::*;
//! use timely::dataflow::operators::vec::{Filter, Map};
//!
//! let config = Synthetic { events: 2_000, frame: None, ..Synthetic::default() };
//! let keys = config.keys();
//! let total = Arc::new(Mutex::new(0.0));
//! let sum = Arc::clone(&total);
//! execute(&Launch::threads(2), move |worker| {
//!     let sum = Arc::clone(&sum);
//!     worker.dataflow(|scope| {
//!         scope
//!             .synthetic(&config)
//!             .filter(move |e| e.get::<bool>(keys.laser_on) == Some(true))
//!             .map(move |e| (e.id, e.get_f64(keys.pulse_energy).unwrap()))
//!             .ordered("sum", move |_batch, rows: &[(u64, f64)]| {
//!                 *sum.lock().unwrap() += rows.iter().map(|r| r.1).sum::<f64>();
//!             });
//!     });
//!     Ok::<_, std::convert::Infallible>(())
//! })
//! .unwrap();
//! assert!(*total.lock().unwrap() > 900.0);
//! ```

#![warn(missing_docs)]

// The engine: no file formats, no sockets.
pub mod calibrate;
pub mod event;
pub mod flow;
pub mod monitor;
pub mod reduce;
pub mod runtime;
pub mod sink;
pub mod source;

// Formats, each a source or a sink (or both) built on the engine.
#[cfg(feature = "bridge")]
pub mod bridge;
#[cfg(feature = "hdf5")]
pub mod exdf;
pub mod recording;
#[cfg(feature = "hdf5")]
pub mod smalldata;
pub mod xtc2;

/// The names a shotflow program usually needs.
pub mod prelude {
    pub use crate::event::{Event, EventId, HasEventId, Key, Value};
    pub use crate::flow::Batch;
    pub use crate::runtime::{execute, Launch};
    pub use crate::sink::{Sink, SinkExt};
    pub use crate::source::{Synthetic, SyntheticSource};
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
