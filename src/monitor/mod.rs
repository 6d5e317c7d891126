//! Seeing a run as it goes: what each worker's dataflows are made of and where their time
//! goes, from timely's own logging, the counts of shotflow's sources and sinks
//! ([`crate::flow::meter`]), and the plots a pipeline publishes; all carried to process 0.
//!
//! * [`WorkerLog::register`] adds a logger to a worker (before it builds its dataflows); the
//!   log then holds every operator and channel of the worker's dataflows, each operator's busy
//!   time, and each channel's records and whether they crossed workers.
//! * Every worker takes a [`Snapshot`] four times a second into process 0's [`Hub`]: directly
//!   within process 0, through a small metrics dataflow over timely's own connections from
//!   other processes.
//! * From the hub: the progress bar or log lines, Prometheus text ([`prometheus`]), the live
//!   dashboard, the dataflow graph ([`WorkerLog::dot`], SVG with the `monitor` feature) and
//!   the end-of-run [`report`].
//! * [`publish`] sends a result plot to the dashboard from any worker.
//!
//! A command line has the progress and the report on by default; a program switches them on
//! with [`Launch::monitored`](crate::runtime::Launch::monitored) or the launch's `progress`,
//! `metrics` and `dashboard` options.

#[cfg(feature = "monitor")]
pub mod draw;
mod gather;
mod hub;
mod live;
mod log;
mod prometheus;
mod publish;
mod report;
#[cfg(feature = "monitor")]
mod server;
mod snapshot;
mod text;

pub use gather::{current_figures, EVERY};
pub use hub::{Figures, Hub, Progress};
pub use live::{write_graph, Live};
pub use log::{Channel, Operator, WorkerLog};
pub use prometheus::prometheus;
pub use publish::{publish, Plot, IMAGE_SIDE};
pub use report::report;
pub use snapshot::Snapshot;
pub use text::{bytes, duration, line};

pub(crate) use gather::{finish, gathering, install as gather, leave as leave_gathering, tick};

/// Forgets this worker's monitoring state (its run has ended).
pub(crate) fn leave() {
    leave_gathering();
}
