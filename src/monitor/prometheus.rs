//! The run's metrics in Prometheus's text exposition format (version 0.0.4), named in the
//! spirit of AMI2's per-worker phase metrics and Flink's per-operator busy and back-pressured
//! time. The README lists every name; `contrib/grafana/shotflow.json` charts them.
//!
//! The format is three kinds of line (`# HELP`, `# TYPE`, samples); the hub's snapshot is
//! written into it directly rather than mirrored into a client library's registry on every
//! scrape. The tests read it back with the official Python client's parser.

use std::fmt::Write as _;

use super::hub::Hub;

/// One metric family: name, type, help, samples (labels, value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The hub's figures as Prometheus text: the body of `/metrics`.
///
/// ```
/// use shotflow::monitor::{prometheus, Hub};
///
/// let text = prometheus(&Hub::new(2));
/// assert!(text.contains("# TYPE shotflow_workers gauge\nshotflow_workers 2\n"));
/// ```
pub fn prometheus(hub: &Hub) -> String {
    let progress = hub.progress();
    let snapshots = hub.snapshots();
    let mut families = Vec::new();

    let mut f = Family::new("shotflow_workers", "gauge", "Workers of the run.");
    f.add(vec![], hub.peers() as f64);
    families.push(f);
    let mut f = Family::new(
        "shotflow_elapsed_seconds",
        "gauge",
        "Seconds since the run started.",
    );
    f.add(vec![], progress.seconds);
    families.push(f);
    let mut f = Family::new(
        "shotflow_run_complete",
        "gauge",
        "1 once the run has ended.",
    );
    f.add(vec![], progress.complete as u8 as f64);
    families.push(f);
    let mut f = Family::new(
        "shotflow_expected_events",
        "gauge",
        "Events of the whole run, as its source announced them (0: not known).",
    );
    f.add(vec![], progress.expected_events as f64);
    families.push(f);
    let mut f = Family::new(
        "shotflow_planned_batches",
        "gauge",
        "Batches of the whole run (0: not known).",
    );
    f.add(vec![], progress.planned_batches as f64);
    families.push(f);

    let per_worker: [(&'static str, &'static str, &'static str); 5] = [
        (
            "shotflow_source_events_total",
            "counter",
            "Events (records) the worker's sources produced.",
        ),
        (
            "shotflow_source_batches_total",
            "counter",
            "Batches the worker's sources produced.",
        ),
        (
            "shotflow_read_bytes_total",
            "counter",
            "Bytes the worker's sources read.",
        ),
        (
            "shotflow_written_bytes_total",
            "counter",
            "Bytes the worker's sinks wrote.",
        ),
        (
            "shotflow_sources_held",
            "gauge",
            "Sources of the worker waiting for the sinks now (back-pressure).",
        ),
    ];
    for (i, (name, kind, help)) in per_worker.into_iter().enumerate() {
        let mut f = Family::new(name, kind, help);
        for s in &snapshots {
            let c = &s.counters;
            let value = [
                c.events,
                c.batches,
                c.bytes_read,
                c.bytes_written,
                c.held_now as u64,
            ][i];
            f.add(
                vec![
                    ("worker", s.worker.to_string()),
                    ("process", s.process.to_string()),
                ],
                value as f64,
            );
        }
        families.push(f);
    }

    let mut held = Family::new(
        "shotflow_source_backpressured_seconds_total",
        "counter",
        "Seconds a source waited for the sinks of its dataflow (Flink's backPressuredTime).",
    );
    for s in &snapshots {
        for (source, ns) in &s.counters.held_back_ns {
            held.add(
                vec![
                    ("worker", s.worker.to_string()),
                    ("operator", source.clone()),
                ],
                *ns as f64 * 1e-9,
            );
        }
    }
    families.push(held);

    let mut busy = Family::new(
        "shotflow_operator_busy_seconds_total",
        "counter",
        "Seconds the operator was scheduled on the worker (Flink's busyTime).",
    );
    let mut activations = Family::new(
        "shotflow_operator_activations_total",
        "counter",
        "Times the operator was scheduled on the worker.",
    );
    let names: [(&'static str, &'static str); 4] = [
        (
            "shotflow_operator_records_in_total",
            "Records that reached the operator on the worker.",
        ),
        (
            "shotflow_operator_batches_in_total",
            "Messages (batches of records) that reached the operator on the worker.",
        ),
        (
            "shotflow_operator_records_out_total",
            "Records the operator sent on the worker.",
        ),
        (
            "shotflow_operator_batches_out_total",
            "Messages (batches of records) the operator sent on the worker.",
        ),
    ];
    let mut flows: Vec<Family> = names
        .iter()
        .map(|(n, h)| Family::new(n, "counter", h))
        .collect();
    for s in &snapshots {
        for op in s.log.operators().filter(|o| o.addr.len() > 1) {
            let labels = vec![
                ("worker", s.worker.to_string()),
                ("operator", op.name.clone()),
                ("id", op.id.to_string()),
            ];
            busy.add(labels.clone(), op.busy.as_secs_f64());
            activations.add(labels.clone(), op.activations as f64);
            let (ri, mi, ro, mo) = s.log.flow_of(op.id);
            for (f, v) in flows
                .iter_mut()
                .zip([ri as f64, mi as f64, ro as f64, mo as f64])
            {
                f.add(labels.clone(), v);
            }
        }
    }
    families.push(busy);
    families.push(activations);
    families.extend(flows);

    let mut lost = Family::new(
        "shotflow_dropped_events_total",
        "counter",
        "Events dropped or skipped, by source and reason.",
    );
    for (what, n) in hub.totals().losses {
        let (source, reason) = what.split_once(": ").unwrap_or(("", what.as_str()));
        lost.add(
            vec![
                ("source", source.to_string()),
                ("reason", reason.to_string()),
            ],
            n as f64,
        );
    }
    families.push(lost);

    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value) in f.samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", f.name);
            } else {
                let _ = writeln!(out, "{}{{{}}} {value}", f.name, labels.join(","));
            }
        }
    }
    out
}
