//! `shotflow inspect` of an XTC2 file or run directory: streams and chunks, transitions,
//! detectors with their algorithms and fields, events, timestamps and damage.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use shotflow::xtc2::{EventBuilder, Xtc2Run, Xtc2Selector};

/// Whether `path` is an XTC2 file or a directory of them.
pub fn is_xtc2(path: &Path) -> bool {
    let xtc2 = |p: &Path| p.extension().is_some_and(|e| e == "xtc2");
    if path.is_dir() {
        std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok()).any(|e| xtc2(&e.path())))
            .unwrap_or(false)
    } else {
        xtc2(path)
    }
}

/// Prints what the run holds.
pub fn inspect(path: &Path) -> Result<()> {
    let run = Arc::new(Xtc2Run::open(path)?);
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    outln!("{}", path.display());
    outln!("streams:");
    for s in &run.streams {
        outln!(
            "  s{:03}: {} chunk(s){}",
            s.number,
            s.chunks.len(),
            s.smd
                .as_ref()
                .map_or(String::new(), |p| format!(", smd {}", p.display()))
        );
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in &run.transitions {
        *counts.entry(t.transition.to_string()).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
    outln!("transitions: {}", counts.join(", "));
    let runs: Vec<String> = run
        .contexts
        .iter()
        .filter_map(|c| c.run.map(|r| (r, c.experiment.clone().unwrap_or_default())))
        .fold(Vec::new(), |mut v, r| {
            if !v.contains(&r) {
                v.push(r);
            }
            v
        })
        .into_iter()
        .map(|(r, e)| format!("{e} run {r}"))
        .collect();
    outln!(
        "runs: {}",
        if runs.is_empty() {
            "none declared".into()
        } else {
            runs.join(", ")
        }
    );
    match (run.events.first(), run.events.last()) {
        (Some(a), Some(b)) => outln!(
            "events: {} (L1Accept), timestamps {:#x} to {:#x}",
            run.events.len(),
            a.timestamp,
            b.timestamp
        ),
        _ => outln!("events: 0"),
    }
    // Fields: names, dtypes and shapes as the first event with each shows them.
    let mut builder = EventBuilder::new(Arc::clone(&run), Arc::new(vec![Xtc2Selector::all()]));
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let (mut damaged, mut partial) = (0usize, 0usize);
    for entry in &run.events {
        let built = builder.build(entry)?;
        damaged += (built.damage != 0) as usize;
        partial += (!built.partial.is_empty()) as usize;
        for (key, v) in built.event.fields() {
            fields
                .entry(key.name().to_string())
                .or_insert_with(|| format!("{} {:?}", v.dtype().numpy_name(), v.shape()));
        }
    }
    outln!("fields:");
    for (name, what) in &fields {
        outln!("  {name:<48} {what}");
    }
    outln!("damaged events: {damaged}; events with a detector lacking segments: {partial}");
    Ok(())
}
