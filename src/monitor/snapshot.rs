//! What a worker tells process 0 about itself, a few times a second.

use serde::{Deserialize, Serialize};

use super::log::WorkerLog;
use super::publish::Plot;
use crate::flow::meter::Counters;

/// One worker's figures at one moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The worker (its index in the whole run).
    pub worker: usize,
    /// Its process.
    pub process: usize,
    /// Seconds since the worker started.
    pub seconds: f64,
    /// Its dataflows: operators with their busy time, channels with their records.
    pub log: WorkerLog,
    /// What its sources and sinks did.
    pub counters: Counters,
    /// Plots it published since its previous snapshot.
    pub plots: Vec<(String, Plot)>,
    /// Whether this is its final snapshot.
    pub last: bool,
}
