//! The run's figures as a person reads them: bytes, durations, and the one-line progress the
//! log, the bar and the dashboard's header show.

use super::hub::Progress;

/// A number of bytes as a person reads it.
///
/// ```
/// assert_eq!(shotflow::monitor::bytes(1_310_900_000), "1.31 GB");
/// ```
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e12 => format!("{:.2} TB", n / 1e12),
        n if n >= 1e9 => format!("{:.2} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

/// Seconds as `1h02m`, `3m05s` or `12s`.
///
/// ```
/// assert_eq!(shotflow::monitor::duration(185.2), "3m05s");
/// ```
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// One line of progress, as the log shows it and the bar's message ends.
///
/// ```
/// use shotflow::monitor::{line, Progress};
///
/// let p = Progress { events: 24, expected_events: 48, fraction: Some(0.5), unit: "trains".into(), ..Progress::default() };
/// assert!(line(&p).starts_with("24 / 48 trains (50.0%)"));
/// ```
pub fn line(p: &Progress) -> String {
    let unit = &p.unit;
    let done = match (p.expected_events, p.fraction) {
        (0, Some(f)) => format!("{} {unit} ({:.1}% of the batches)", p.events, 100.0 * f),
        (0, None) => format!("{} {unit}", p.events),
        (total, f) => format!(
            "{} / {total} {unit} ({:.1}%)",
            p.events,
            100.0 * f.unwrap_or(0.0)
        ),
    };
    let mut line = format!(
        "{done}, {:.3e} {unit}/s, {} read",
        p.events_per_second,
        bytes(p.bytes_read)
    );
    if let Some(eta) = p.eta_seconds.filter(|_| !p.complete) {
        line.push_str(&format!(", ETA {}", duration(eta)));
    }
    if p.lost > 0 {
        line.push_str(&format!(", {} dropped or skipped", p.lost));
    }
    if p.held && !p.complete {
        line.push_str(", held back by the sinks");
    }
    line
}
