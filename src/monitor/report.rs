//! The end-of-run report: where the time went, per operator, and how fast each worker's
//! sources produced, from the workers' logs.

use std::fmt::Write as _;
use std::time::Duration;

use super::log::WorkerLog;

/// A compact table of a run: each operator's busy time (summed over workers) and share of the
/// workers' time, and each worker's source rate.
///
/// ```
/// use shotflow::monitor::{report, WorkerLog};
/// use timely::dataflow::operators::{Inspect, ToStream};
///
/// let log = timely::execute_directly(|worker| {
///     let log = WorkerLog::register(worker);
///     worker.dataflow::<u64, _, _>(|scope| {
///         (0..1000u64).to_stream(scope).container::<Vec<_>>().inspect(|_| {});
///     });
///     while worker.step() {}
///     let log = log.borrow().clone();
///     log
/// });
/// let table = report(&[log], std::time::Duration::from_secs(1));
/// assert!(table.contains("ToStream"));
/// assert!(table.contains("1000 records"));
/// ```
pub fn report(logs: &[WorkerLog], elapsed: Duration) -> String {
    let merged = WorkerLog::merge(logs);
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let workers = logs.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<24} {:>9} {:>7} {:>12}",
        "operator", "busy s", "share", "records out"
    );
    let mut operators: Vec<_> = merged.operators().filter(|o| o.addr.len() > 1).collect();
    operators.sort_by_key(|o| std::cmp::Reverse(o.busy));
    for op in operators {
        let out_records: i64 = merged
            .channels()
            .filter(|c| {
                merged
                    .operator_at(&c.scope_addr, c.source.0)
                    .is_some_and(|s| s.id == op.id)
            })
            .map(|c| c.records)
            .sum();
        let _ = writeln!(
            out,
            "  {:<24} {:>9.3} {:>6.1}% {:>12}",
            op.name,
            op.busy.as_secs_f64(),
            100.0 * op.busy.as_secs_f64() / (seconds * workers),
            out_records
        );
    }
    for log in logs {
        let produced = log.source_records();
        let _ = writeln!(
            out,
            "  worker {:<3} sources produced {produced} records, {:.3e}/s",
            log.worker,
            produced as f64 / seconds
        );
    }
    out
}
