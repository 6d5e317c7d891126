//! XTC2 on the command line: `inspect` of a file or run directory (streams and chunks,
//! transitions, detectors with their algorithms and fields, events, timestamps, damage) and
//! `extract` of its events into smalldata.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use shotflow::calibrate::Calibrate;
use shotflow::event::Key;
use shotflow::runtime::execute_with;
use shotflow::smalldata::{SmallData, SmallDataExt};
use shotflow::xtc2::{EventBuilder, Xtc2Run, Xtc2Selector, Xtc2Source};
use timely::dataflow::operators::vec::Map;

use super::extract::ExtractArgs;

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

/// What determines the extracted data: the run's files (name, size, modification time), the
/// selection, the run number and the batching.
fn fingerprint(args: &ExtractArgs, run: &Xtc2Run) -> Vec<(String, String)> {
    let paths = run
        .streams
        .iter()
        .flat_map(|s| s.chunks.iter().chain(s.smd.iter()));
    vec![
        ("command".into(), "extract".into()),
        ("run".into(), args.run.display().to_string()),
        (
            "run files".into(),
            crate::cli::files_digest(paths.map(|p| p.as_path())),
        ),
        ("select".into(), args.select.join(" ")),
        ("run number".into(), format!("{:?}", args.run_number)),
        ("events_per_batch".into(), args.events_per_batch.to_string()),
        ("calibrate".into(), args.calibrate_fingerprint()),
        (
            "constants".into(),
            crate::cli::files_digest(args.constants.iter().map(|p| p.as_path())),
        ),
    ]
    .into_iter()
    .chain(args.geometry.fingerprint())
    .collect()
}

/// `shotflow extract` of an XTC2 run: one row per event (L1Accept), `<det>/<alg>/<field>`
/// datasets, the timestamp as the event id.
pub fn extract(args: ExtractArgs) -> Result<()> {
    let profile = args.geometry.event_map()?;
    let mut run = Xtc2Run::open(&args.run)?;
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(n) = args.run_number {
        run = run.only_run(n)?;
    }
    let run = Arc::new(run);
    let selectors = args
        .select
        .iter()
        .map(|s| Xtc2Selector::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    // Strings change length from event to event; the smalldata output has no string datasets.
    // (The DAQ's own bookkeeping blocks never reach events.)
    let bookkeeping = ["runinfo", "epicsinfo", "chunkinfo", "smdinfo"];
    let strings: Vec<Key> = run
        .string_fields()
        .iter()
        .filter(|name| {
            let p: Vec<&str> = name.splitn(3, '/').collect();
            !bookkeeping.contains(&p[0]) && selectors.iter().any(|s| s.matches(p[0], p[1], p[2]))
        })
        .map(|name| Key::new(name))
        .collect();
    if !strings.is_empty() {
        let names: Vec<&str> = strings.iter().map(|k| k.name()).collect();
        eprintln!(
            "shotflow: string fields are not written to smalldata: {}",
            names.join(", ")
        );
    }
    // Before anything is written: constants that cannot be used stop the extraction here.
    let calibration = match args.calibrate.as_slice() {
        [] => None,
        [field] => {
            let modules = args
                .constants
                .iter()
                .map(|path| shotflow::calibrate::constants_file::load(path))
                .collect::<Result<Vec<_>, _>>()?;
            Some((Key::new(field), Arc::new(modules)))
        }
        fields => anyhow::bail!(
            "--calibrate {}: an XTC2 detector field holds all its modules, so calibrate one \
             field, with its modules' constants in order",
            fields.join(", ")
        ),
    };
    let selectors = Arc::new(selectors);
    let output = args
        .durability
        .apply(SmallData::new(&args.output), fingerprint(&args, &run));
    let result = output.result();
    let mut agree = fingerprint(&args, &run);
    agree.push(("output".into(), args.output.display().to_string()));
    agree.push(("resume".into(), args.durability.resume.to_string()));
    let plan = args.launch.clone().with_fingerprint(agree).plan()?;
    let mut settings = args.launch.settings();
    settings.start = output.prepare(plan.process())?;
    if let Some(p) = &profile {
        let centers = p.centers();
        outln!(
            "<detector>/azav: {} radial bins, centres {} to {} ({:?}), for every field of the \
             geometry's shape",
            centers.len(),
            centers.first().copied().unwrap_or(f64::NAN),
            centers.last().copied().unwrap_or(f64::NAN),
            args.geometry.unit
        );
    }
    let per = args.events_per_batch;
    let strings = Arc::new(strings);
    let outcome = execute_with(&plan, settings, move |worker| {
        let (run, selectors, output, strings, profile) = (
            Arc::clone(&run),
            Arc::clone(&selectors),
            output.clone(),
            Arc::clone(&strings),
            profile.clone(),
        );
        let calibration = calibration.clone();
        worker.dataflow(|scope| {
            let events = scope.xtc2(run, selectors, per);
            let events = match calibration {
                Some((field, modules)) => events.calibrate(field, modules, None),
                None => events,
            };
            events
                .map(move |mut event| {
                    for key in strings.iter() {
                        event.remove(*key);
                    }
                    if let Some(p) = &profile {
                        p.apply(&mut event);
                    }
                    event
                })
                .smalldata(output);
        });
        Ok::<_, std::convert::Infallible>(())
    });
    crate::cli::finish(outcome.map(drop), &result)?;
    if let Some(result) = result.lock().unwrap().as_ref() {
        outln!("{}: {} events", result.master.display(), result.rows);
    }
    Ok(())
}
