//! `shotflow demo`: the pump-probe showcase, its pipeline and its plot.

pub mod pipeline;
mod plot;

use anyhow::{bail, Context, Result};
use clap::Args;
use pipeline::DemoConfig;
use shotflow::exdf::simulate::Simulation;
use shotflow::runtime::Launch;
use shotflow::source::Synthetic;
use shotflow_operators::gain::ModuleConstants;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Input {
    /// Simulate a EuXFEL run (EXDF files) in a temporary directory and read it from disk.
    Run,
    /// Generate shots in memory (no files).
    Synthetic,
    /// Simulate an LCLS-II run (XTC2, 2 streams with smd files) and read it from disk.
    Xtc2,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where the shots come from.
    #[arg(long, value_enum, default_value_t = Input::Run)]
    source: Input,
    /// Trains of the simulated run (--source run).
    #[arg(long, default_value_t = 48)]
    trains: u64,
    /// Pulses (frames) per train of the simulated run (--source run).
    #[arg(long, default_value_t = 32)]
    pulses: usize,
    /// Detector modules of the simulated run (--source run): the first N of AGIPD 1M's
    /// layout, 4 (one quadrant) by default, up to 16.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    modules: u16,
    /// Detector geometry, CrystFEL `.geom` or pyFAI `.poni`: the simulated run has its modules
    /// and its photons follow it (--source run), and the azimuthal profile integrates over it.
    /// Default: AGIPD 1M's layout (--source run), a flat panel (--source synthetic).
    #[arg(long)]
    geometry: Option<std::path::PathBuf>,
    /// Number of shots (--source synthetic).
    #[arg(long, default_value_t = 5_000)]
    events: u64,
    /// Deliver the synthetic shots at this many per second, as a facility does (27000 at
    /// EuXFEL), instead of as fast as the pipeline takes them (--source synthetic): a run that
    /// lasts, to watch on the dashboard.
    #[arg(long, value_name = "HZ")]
    rate: Option<f64>,
    /// Shots per batch (one timely timestamp each).
    #[arg(long, default_value_t = 256)]
    batch_size: u64,
    /// Seed of the synthetic run.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Detector frame shape ROWSxCOLS (of one module), or "none" for scalar-only shots; a PONI
    /// file's shape when it gives none.
    #[arg(long, default_value = "512x128")]
    frame: String,
    /// Mean photons per frame at 1 mJ.
    #[arg(long, default_value_t = 400.0)]
    photons: f64,
    /// Drop shots whose pulse energy (mJ) is below this.
    #[arg(long, default_value_t = 0.7)]
    energy_cut: f64,
    /// Smalldata HDF5 output (master file; part files are written beside it).
    #[arg(long, default_value = "shotflow_demo.h5")]
    output: std::path::PathBuf,
    /// PNG plot of the pump-probe curve.
    #[arg(long, default_value = "shotflow_demo.png")]
    plot: std::path::PathBuf,
    /// Write neither the smalldata file nor the plot.
    #[arg(long)]
    no_output: bool,
    /// Print the result as JSON (exact values) instead of a table.
    #[arg(long)]
    json: bool,
    /// Calibrate the raw module frames with these constants before reducing them: one HDF5
    /// file per module in module order, or one for all (`shotflow::calibrate::constants_file`).
    /// Photons, ROI sums and profiles are then in the constants' unit, with no pedestal.
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    constants: Vec<std::path::PathBuf>,
    /// Write constants that calibrate the simulated detector into photons (the frame shape of
    /// --frame) to FILE, and stop: `demo --constants FILE` then gives the same curve.
    #[arg(long, value_name = "FILE")]
    write_constants: Option<std::path::PathBuf>,
    /// Fail on purpose at this event id (to see how a failing worker ends a run).
    #[arg(long, hide = true)]
    fail_at: Option<u64>,
    #[command(flatten)]
    durability: crate::cli::Durability,
    #[command(flatten)]
    launch: Launch,
}

impl DemoArgs {
    /// What determines the demo's data: a resumed run must agree on all of it.
    fn fingerprint(&self) -> Vec<(String, String)> {
        let source = match self.source {
            Input::Run => format!(
                "simulated run, {} trains × {} pulses",
                self.trains, self.pulses
            ),
            Input::Synthetic => format!("synthetic, {} events", self.events),
            Input::Xtc2 => format!(
                "simulated xtc2, {} events",
                self.trains * self.pulses as u64
            ),
        };
        let modules = match self.source {
            Input::Run => self.modules.to_string(),
            Input::Synthetic | Input::Xtc2 => "1".to_string(),
        };
        [
            ("command", "demo".to_string()),
            ("source", source),
            ("modules", modules),
            (
                "geometry",
                crate::cli::file_digest(self.geometry.as_deref()),
            ),
            ("batch_size", self.batch_size.to_string()),
            ("seed", self.seed.to_string()),
            ("frame", self.frame.clone()),
            ("photons", self.photons.to_string()),
            ("energy_cut", self.energy_cut.to_string()),
            (
                "constants",
                crate::cli::files_digest(self.constants.iter().map(|p| p.as_path())),
            ),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect()
    }
}

pub(crate) fn parse_frame(text: &str) -> Result<Option<[usize; 2]>> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (rows, cols) = text
        .split_once(['x', 'X'])
        .with_context(|| format!("--frame {text:?}: expected ROWSxCOLS, e.g. 512x128"))?;
    let rows: usize = rows
        .trim()
        .parse()
        .with_context(|| format!("--frame {text:?}"))?;
    let cols: usize = cols
        .trim()
        .parse()
        .with_context(|| format!("--frame {text:?}"))?;
    if rows == 0 || cols == 0 {
        bail!("--frame {text:?}: both dimensions must be positive");
    }
    Ok(Some([rows, cols]))
}

/// The constants of `--constants`, checked against the demo's modules.
fn load_constants(
    paths: &[std::path::PathBuf],
    modules: usize,
    frame: Option<[usize; 2]>,
) -> Result<Option<std::sync::Arc<Vec<ModuleConstants>>>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let Some([rows, cols]) = frame else {
        bail!("--constants calibrates frames, but the shots have none (--frame none)");
    };
    if paths.len() != 1 && paths.len() != modules {
        bail!(
            "--constants: {} files for {modules} modules (give one per module, or one for all)",
            paths.len()
        );
    }
    let mut out = Vec::new();
    for path in paths {
        let constants = shotflow::calibrate::constants_file::load(path)?;
        if constants.pixels() != (rows, cols) || matches!(constants, ModuleConstants::Agipd(_)) {
            bail!(
                "{}: {} constants of {:?} pixels, for the demo's raw {rows}×{cols} frames \
                 (single u16 frames: JUNGFRAU or ePix10ka constants of that shape; \
                 `shotflow demo --write-constants FILE` writes the demo's own)",
                path.display(),
                constants.detector(),
                constants.pixels()
            );
        }
        out.push(constants);
    }
    Ok(Some(std::sync::Arc::new(out)))
}

pub fn run(args: DemoArgs) -> Result<()> {
    if let Some(path) = &args.write_constants {
        let Some(shape) = parse_frame(&args.frame)? else {
            bail!("--write-constants needs a frame shape (--frame ROWSxCOLS)");
        };
        shotflow::calibrate::constants_file::save(path, &pipeline::demo_constants(shape))?;
        outln!(
            "{}: constants of the demo's {}×{} modules (pedestal {}, {} ADU a photon)",
            path.display(),
            shape[0],
            shape[1],
            shotflow::source::synthetic::PEDESTAL,
            shotflow::source::synthetic::PHOTON_ADU
        );
        return Ok(());
    }
    if args.rate.is_some() && args.source != Input::Synthetic {
        bail!("--rate paces synthetic shots: give it with --source synthetic");
    }
    // The processes of one run must agree on the data, on where it goes and on resuming.
    let mut agree = args.fingerprint();
    agree.push((
        "output".into(),
        format!("{:?}", (!args.no_output).then_some(&args.output)),
    ));
    agree.push(("resume".into(), args.durability.resume.to_string()));
    let plan = args.launch.clone().with_fingerprint(agree).plan()?;
    let mut frame = parse_frame(&args.frame)?;
    let geometry = match &args.geometry {
        Some(path) => {
            let detector = shotflow_operators::geometry::load(path, frame.map(|[r, c]| (r, c)))?;
            let (modules, rows, columns) = detector.shape();
            if args.source == Input::Synthetic && modules > 1 {
                bail!(
                    "{}: {modules} modules; synthetic shots have one frame (use --source run)",
                    path.display()
                );
            }
            frame = Some([rows, columns]);
            Some(std::sync::Arc::new(detector))
        }
        None => None,
    };
    let modules = match args.source {
        Input::Run => args.modules as usize,
        Input::Synthetic | Input::Xtc2 => 1,
    };
    let frame_shape = match args.source {
        Input::Synthetic => frame,
        Input::Run | Input::Xtc2 => Some(frame.unwrap_or([512, 128])),
    };
    let constants = load_constants(&args.constants, modules, frame_shape)?;
    let run = (args.source == Input::Run).then(|| Simulation {
        trains: args.trains,
        modules: args.modules as usize,
        geometry: geometry.clone(),
        frames: args.pulses.max(1),
        frame: frame.unwrap_or([512, 128]),
        trains_per_file: args.trains.div_ceil(2).max(1),
        photons: args.photons,
        seed: args.seed,
        ..Simulation::default()
    });
    let config = DemoConfig {
        run,
        source: Synthetic {
            events: args.events,
            batch_size: args.batch_size.max(1),
            seed: args.seed,
            frame,
            photons: args.photons,
            rate: args.rate,
            ..Synthetic::default()
        },
        xtc2: (args.source == Input::Xtc2).then(|| {
            // As many events as the EuXFEL run has pulses; 8 delay steps.
            let events = (args.trains * args.pulses.max(1) as u64).max(1);
            shotflow::xtc2::Xtc2Simulation {
                events,
                events_per_step: events.div_ceil(8),
                frame: frame.unwrap_or([512, 128]),
                segment: [64, 64],
                photons: args.photons,
                seed: args.seed,
                ..Default::default()
            }
        }),
        energy_cut: args.energy_cut,
        fail_at: args.fail_at,
        geometry: geometry.filter(|_| args.source == Input::Synthetic),
        constants,
        output: (!args.no_output).then(|| {
            args.durability
                .apply(pipeline::demo_output(&args.output), args.fingerprint())
        }),
    };
    let result = config
        .output
        .as_ref()
        .map(|o| o.result())
        .unwrap_or_default();
    let outcome = pipeline::run(&config, &plan, args.launch.settings());
    let report = match outcome {
        Ok(report) => report,
        Err(e) => return crate::cli::finish(Err(e), &result),
    };
    crate::cli::finish(Ok(()), &result)?;
    if let Some(report) = report {
        if args.json {
            let json = serde_json::json!({
                "events": report.events,
                "kept": report.curve.kept,
                "points": report.curve.sorted(),
                "seconds": report.elapsed.as_secs_f64(),
                "simulating_seconds": report.simulating.as_secs_f64(),
                "plan": report.plan,
            });
            outln!("{json}");
        } else {
            out!("{report}");
            if !args.no_output {
                outln!(
                    "  per-shot results: {} (h5py: f['photons'], f['azav'], f['summary/photons/mean'])",
                    args.output.display()
                );
                outln!(
                    "  pump-probe curve: f['pump_probe/delay'], f['pump_probe/sum_on'][:] / f['pump_probe/n_on'][:] (and _off)"
                );
                if let Some(r) = result
                    .lock()
                    .unwrap()
                    .as_ref()
                    .filter(|r| r.resumed_from > 0)
                {
                    outln!(
                        "  resumed at batch {}: the events and the curve above are this run's \
                         batches only; {} holds all {} events and the whole run's curve",
                        r.resumed_from,
                        r.master.display(),
                        r.rows
                    );
                }
                if let (Some(run), None) = (&config.run, &args.geometry) {
                    // The detector the run was simulated on, for extra_geom or CrystFEL.
                    let geom = args.output.with_extension("geom");
                    let layout = pipeline::run_layout(run.modules, run.frame);
                    match layout.crystfel().map(|text| std::fs::write(&geom, text)) {
                        Ok(Ok(())) => outln!("  detector geometry: {}", geom.display()),
                        Ok(Err(e)) => eprintln!("warning: no {}: {e}", geom.display()),
                        Err(e) => eprintln!("warning: no {}: {e}", geom.display()),
                    }
                }
                match plot::pump_probe(&report.curve.sorted(), &args.plot) {
                    Ok(()) => outln!("  plot: {}", args.plot.display()),
                    Err(e) => eprintln!("warning: no plot: {e}"),
                }
            }
        }
    }
    Ok(())
}
