//! The end-of-run report: where the time went, per operator, how fast each worker's sources
//! produced, the bytes read and written, and the events dropped or skipped, by reason.

use std::fmt::Write as _;

use super::hub::Hub;

/// A compact table of a run from its hub: each operator's busy time (summed over workers),
/// share of the workers' time, time held back by the sinks and records out; each worker's
/// events and rate; bytes; and losses by reason.
///
/// ```
/// use shotflow::monitor::{report, Hub};
///
/// let table = report(&Hub::new(1));
/// assert!(table.contains("operator"));
/// assert!(table.contains("dropped or skipped: none"));
/// ```
pub fn report(hub: &Hub) -> String {
    let merged = hub.merged_log();
    let snapshots = hub.snapshots();
    let totals = hub.totals();
    let seconds = hub.seconds().max(1e-9);
    let workers = snapshots.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<24} {:>9} {:>7} {:>9} {:>12}",
        "operator", "busy s", "share", "held s", "records out"
    );
    let mut operators: Vec<_> = merged.operators().filter(|o| o.addr.len() > 1).collect();
    operators.sort_by_key(|o| std::cmp::Reverse(o.busy));
    for op in operators {
        let (_, _, out_records, _) = merged.flow_of(op.id);
        let held = totals.held_back_ns.get(&op.name).copied().unwrap_or(0) as f64 * 1e-9;
        let _ = writeln!(
            out,
            "  {:<24} {:>9.3} {:>6.1}% {:>9} {:>12}",
            op.name,
            op.busy.as_secs_f64(),
            100.0 * op.busy.as_secs_f64() / (seconds * workers),
            if held > 0.0 {
                format!("{held:.3}")
            } else {
                "-".to_string()
            },
            out_records
        );
    }
    for s in &snapshots {
        let _ = writeln!(
            out,
            "  worker {:<3} (process {}) sources produced {} events in {} batches, {:.3e}/s",
            s.worker,
            s.process,
            s.counters.events,
            s.counters.batches,
            s.counters.events as f64 / s.seconds.max(1e-9)
        );
    }
    let _ = writeln!(
        out,
        "  bytes read {} ({:.2} GB/s), written {}",
        totals.bytes_read,
        totals.bytes_read as f64 / seconds / 1e9,
        totals.bytes_written
    );
    if totals.losses.is_empty() {
        let _ = writeln!(out, "  dropped or skipped: none");
    } else {
        for (what, n) in &totals.losses {
            let _ = writeln!(out, "  dropped or skipped: {n} events, {what}");
        }
    }
    out
}
