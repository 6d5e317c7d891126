//! Seeing a run as it goes: what each worker's dataflows are made of and where their time
//! goes, from timely's own logging, and pictures of it.
//!
//! [`WorkerLog::register`] adds a logger to a worker (before it builds its dataflows); the log
//! then holds every operator and channel of the worker's dataflows, each operator's busy time,
//! and each channel's records and whether they crossed workers. [`WorkerLog::dot`] draws the
//! dataflow graph.

mod log;
mod report;

pub use log::{Channel, Operator, WorkerLog};
pub use report::report;
