//! `shotflow extract RUN_DIR --select ... --output FILE.h5`: train-resolved keys, and
//! per-train sums and means of pulse-resolved arrays, one row per train, as smalldata; with
//! `--geometry`, each train's azimuthal profile of the whole detector.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use shotflow::calibrate::{Calibrate, FoldGainBits};
use shotflow::event::{Event, Key, Value};
use shotflow::exdf::modules::{ModuleLayout, XTDF};
use shotflow::exdf::{ExdfRun, ExdfSource, Selector, SourceKind};
use shotflow::runtime::{execute_with, Launch};
use shotflow::smalldata::{SmallData, SmallDataExt};
use shotflow_operators::gain::ModuleConstants;
use timely::dataflow::operators::vec::Map;

/// A selected field, and for pulse-resolved arrays the keys of its per-train sum and mean.
type Plan = (Key, Option<(Key, Key)>);

#[derive(Args)]
pub struct ExtractArgs {
    /// Run directory (EuXFEL), or an XTC2 file or run directory (LCLS-II).
    pub(crate) run: PathBuf,
    /// EuXFEL: `SOURCE_GLOB[:KEY_GLOB]`, as extra-data's select. XTC2: `DET[:ALG[:FIELD]]`,
    /// globs in each part. Repeatable.
    #[arg(long, required = true)]
    pub(crate) select: Vec<String>,
    /// Smalldata output file.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// Trains per batch (EuXFEL).
    #[arg(long, default_value_t = 4)]
    trains_per_batch: usize,
    /// Events per batch (XTC2).
    #[arg(long, default_value_t = 64)]
    pub(crate) events_per_batch: usize,
    /// XTC2: only the events of this LCLS run (from runinfo); default: every run, in order.
    #[arg(long = "run", value_name = "N")]
    pub(crate) run_number: Option<u32>,
    #[command(flatten)]
    pub(crate) geometry: crate::cli::profile::GeometryArgs,
    /// Calibrate this raw frame field with --constants before anything else reads it; its
    /// output is the calibrated float32 frames. XTC2: `jungfrau/raw/raw`, `epix10ka/raw/raw`
    /// (once). EuXFEL: a module's `SOURCE/image.data` (AGIPD `(pulses, 2, rows, cols)`),
    /// each frame with its memory cell from the source's `image.cellId`, or a JUNGFRAU
    /// module's `SOURCE/data.adc` (`(16, rows, cols)` a train), each frame with its storage
    /// cell from `data.memoryCell` and its gain bits from `data.gain`; what a calibration
    /// reads is read for it. Repeatable, one module each, so that --geometry integrates a
    /// whole calibrated detector. Pixels without a valid gain stage are counted per train in
    /// `FIELD_invalid_pixels`.
    #[arg(long, requires = "constants", value_name = "FIELD")]
    pub(crate) calibrate: Vec<String>,
    /// Calibration constants, one HDF5 file per module (the layout of
    /// `shotflow::calibrate::constants_file`). Repeatable: XTC2, the field's modules in order;
    /// EuXFEL, one per --calibrate, in the same order.
    #[arg(long, requires = "calibrate", value_name = "FILE")]
    pub(crate) constants: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) durability: crate::cli::Durability,
    #[command(flatten)]
    pub(crate) launch: Launch,
}

impl ExtractArgs {
    /// The calibrated fields for a fingerprint: as one optional field was written (`None`,
    /// `Some("…")`), so that extractions begun with a single --calibrate still resume.
    pub(crate) fn calibrate_fingerprint(&self) -> String {
        match self.calibrate.as_slice() {
            [] => "None".into(),
            [field] => format!("Some({field:?})"),
            fields => format!("{fields:?}"),
        }
    }
}

/// What determines the extracted data: the run's files (name, size, modification time), the
/// selection and the batching. A resumed extraction must agree on all of it.
fn fingerprint(args: &ExtractArgs, run: &ExdfRun) -> Vec<(String, String)> {
    let mut fingerprint = vec![
        ("command".into(), "extract".into()),
        ("run".into(), args.run.display().to_string()),
        (
            "run files".into(),
            crate::cli::files_digest(run.files.iter().map(|f| f.path.as_path())),
        ),
        ("select".into(), args.select.join(" ")),
        ("trains_per_batch".into(), args.trains_per_batch.to_string()),
    ];
    fingerprint.extend(args.geometry.fingerprint());
    fingerprint.push(("calibrate".into(), args.calibrate_fingerprint()));
    fingerprint.push((
        "constants".into(),
        crate::cli::files_digest(args.constants.iter().map(|p| p.as_path())),
    ));
    fingerprint
}

pub fn run(args: ExtractArgs) -> Result<()> {
    let run = Arc::new(ExdfRun::open(&args.run)?);
    if run.suspect_trains > 0 {
        eprintln!(
            "warning: {} suspect trains skipped (out of order or repeated in their file)",
            run.suspect_trains
        );
    }
    let mut selectors = args
        .select
        .iter()
        .map(|s| Selector::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut selected = run.select(&selectors)?;
    let calibrations = calibrations(&args.calibrate, &args.constants, &selected)?;
    // The cell ids a calibration needs are read for it, and extracted only when selected:
    // their selectors are added, and the run selected again, once for all modules.
    let unextracted: Vec<Key> = calibrations
        .iter()
        .flat_map(Calibration::reads)
        .map(|(read, _)| read)
        .filter(|read| !selected.iter().any(|s| s.field == *read))
        .collect();
    if !unextracted.is_empty() {
        for read in &unextracted {
            let (source, key) = read
                .name()
                .rsplit_once('/')
                .expect("a <source>/<key> field");
            selectors.push(Selector::exact(source, key));
        }
        selected = run.select(&selectors)?;
    }
    for (field, c) in args.calibrate.iter().zip(&calibrations) {
        for (read, what) in c.reads() {
            if selected.iter().any(|s| s.field == read) {
                continue;
            }
            let (source, key) = read
                .name()
                .rsplit_once('/')
                .expect("a <source>/<key> field");
            anyhow::bail!(
                "--calibrate {field}: the run has no {key} for {source}, which gives {what}"
            );
        }
    }
    let selected = Arc::new(selected);
    let calibrated: Vec<(Key, (usize, usize))> = calibrations
        .iter()
        .map(|c| (c.field, c.modules[0].pixels()))
        .collect();
    let profile = args.geometry.profile(&selected, &calibrated)?;
    if let Some(p) = &profile {
        let centers = p.centers();
        outln!(
            "{}: {} radial bins, centres {} to {} ({:?})",
            p.keys.0.name(),
            centers.len(),
            centers.first().copied().unwrap_or(f64::NAN),
            centers.last().copied().unwrap_or(f64::NAN),
            args.geometry.unit
        );
    }
    // Pulse-resolved (instrument, several rows per train) arrays become per-train sum and mean;
    // a calibrated field's pixels without a valid gain stage are counted per train.
    let reduce: Arc<Vec<Plan>> = Arc::new(
        selected
            .iter()
            .filter(|s| !unextracted.contains(&s.field))
            .map(|s| {
                let per_pulse = s.kind == SourceKind::Instrument && !s.key.shape.is_empty();
                let name = s.field.name();
                (
                    s.field,
                    per_pulse.then(|| {
                        (
                            Key::new(&format!("{name}.sum")),
                            Key::new(&format!("{name}.mean")),
                        )
                    }),
                )
            })
            .chain(
                calibrations
                    .iter()
                    .map(|c| (shotflow::calibrate::invalid_pixels(c.field), None)),
            )
            .collect(),
    );
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
    let per = args.trains_per_batch;
    let outcome = execute_with(&plan, settings, move |worker| {
        let (run, selected, reduce, output, profile) = (
            Arc::clone(&run),
            Arc::clone(&selected),
            Arc::clone(&reduce),
            output.clone(),
            profile.clone(),
        );
        let calibrations = calibrations.clone();
        worker.dataflow(|scope| {
            let mut events = scope.exdf(run, selected, per);
            for c in calibrations {
                if let Some(gain) = c.gain {
                    events = events.fold_gain_bits(c.field, gain);
                }
                events = events.calibrate(c.field, c.modules, Some(c.cells));
            }
            events
                .map(move |event| {
                    let mut row = Event::with_capacity(event.id, reduce.len() * 2);
                    for (field, reduced) in reduce.iter() {
                        let Some(value) = event.value(*field) else {
                            continue;
                        };
                        match (reduced, value) {
                            // On the stored type, without an f64 copy of the frame.
                            (Some((sum, mean)), Value::Array(a)) => {
                                let total = a.sum_f64();
                                row.set(*sum, total);
                                row.set(*mean, total / a.len().max(1) as f64);
                            }
                            // instrument scalars per row: one row per train → the value itself
                            (_, Value::Array(a)) if a.shape().first() == Some(&1) => {
                                if let Some(v) = a.first_f64() {
                                    row.set(*field, v);
                                }
                            }
                            _ => row.set(*field, value.clone()),
                        }
                    }
                    if let Some(profile) = &profile {
                        profile.apply(&event, &mut row);
                    }
                    row
                })
                .smalldata(output);
        });
        Ok::<_, std::convert::Infallible>(())
    });
    crate::cli::finish(outcome.map(drop), &result)?;
    if let Some(result) = result.lock().unwrap().as_ref() {
        outln!("{}: {} trains", result.master.display(), result.rows);
    }
    Ok(())
}

/// One `--calibrate` field of an EuXFEL run and what calibrating it reads.
#[derive(Clone)]
struct Calibration {
    field: Key,
    /// One module's constants: EuXFEL keeps each module in its own source, so the files pair
    /// with the fields.
    modules: Arc<Vec<ModuleConstants>>,
    /// The field of its frames' memory cells.
    cells: Key,
    /// The field of its pixels' gain bits, where they are stored apart (JUNGFRAU's
    /// `data.gain`).
    gain: Option<Key>,
}

impl Calibration {
    /// The fields calibrating it reads beside the frames, each with what it gives.
    fn reads(&self) -> Vec<(Key, &'static str)> {
        let mut reads = vec![(self.cells, "each frame's memory cell")];
        reads.extend(self.gain.map(|gain| (gain, "each pixel's gain bits")));
        reads
    }
}

/// Per `--calibrate` field, in order: what calibrating it reads. AGIPD's `image.data` takes
/// its cells from `image.cellId`; JUNGFRAU's `data.adc` its cells from `data.memoryCell` and
/// its gain bits from `data.gain`.
fn calibrations(
    fields: &[String],
    constants: &[PathBuf],
    selected: &[shotflow::exdf::Selected],
) -> Result<Vec<Calibration>> {
    if fields.len() != constants.len() {
        anyhow::bail!(
            "--calibrate is given {} time(s) and --constants {}: EuXFEL keeps each module in its \
             own source, so each --calibrate field takes one constants file, in the same order",
            fields.len(),
            constants.len()
        );
    }
    let mut seen = std::collections::HashSet::new();
    // A file given for several modules is loaded once (a module's constants can be GBs).
    let mut loaded: std::collections::HashMap<&PathBuf, Arc<Vec<ModuleConstants>>> =
        std::collections::HashMap::new();
    fields
        .iter()
        .zip(constants)
        .map(|(field, path)| {
            if !seen.insert(field) {
                anyhow::bail!("--calibrate {field}: given twice");
            }
            let Some(target) = selected.iter().find(|s| s.field.name() == field) else {
                anyhow::bail!(
                    "--calibrate {field}: not among the selected fields ({})",
                    selected
                        .iter()
                        .map(|s| s.field.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            let module = match loaded.get(path) {
                Some(module) => Arc::clone(module),
                None => {
                    let module = Arc::new(vec![shotflow::calibrate::constants_file::load(path)?]);
                    loaded.insert(path, Arc::clone(&module));
                    module
                }
            };
            let beside = |key: &str| Key::new(&format!("{}/{key}", target.source));
            // Frames of another name (LPD's, DSSC's) keep their cells where XTDF does.
            let layout = ModuleLayout::of_frames(&target.key.name).unwrap_or(XTDF);
            let (cells, gain) = (beside(layout.cells), layout.gain.map(beside));
            Ok(Calibration {
                field: target.field,
                modules: module,
                cells,
                gain,
            })
        })
        .collect()
}
