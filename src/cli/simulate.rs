//! `shotflow simulate OUTDIR`: a deterministic EXDF 1.0 run that extra-data reads, or
//! (`--format xtc2`) an LCLS-II XTC2 run that psana reads.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use shotflow::exdf::simulate::Simulation;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A EuXFEL run (EXDF 1.0, HDF5).
    Exdf,
    /// An LCLS-II run (XTC2: 2 streams with smd files, Jungfrau, ePix10ka, steps, EPICS).
    Xtc2,
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Run directory to write (created if needed).
    out: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value_t = Format::Exdf)]
    format: Format,
    /// Events (xtc2).
    #[arg(long, default_value_t = 240)]
    events: u64,
    /// Events per step of the delay scan (xtc2).
    #[arg(long, default_value_t = 40)]
    events_per_step: u64,
    /// Start a new big-data chunk file at the first step after this many events (xtc2), as
    /// the DAQ does when a file grows large.
    #[arg(long)]
    chunk_events: Option<u64>,
    /// Number of trains.
    #[arg(long, default_value_t = 64)]
    trains: u64,
    /// Detector modules.
    #[arg(long, default_value_t = 2, conflicts_with = "geometry")]
    modules: usize,
    /// Detector geometry (CrystFEL `.geom` or pyFAI `.poni`): the run has its modules, of
    /// its shape, and each pulse's photons land on a powder ring through it.
    #[arg(long)]
    geometry: Option<PathBuf>,
    /// Frame shape ROWSxCOLS: a module's (exdf, default 512x128; a PONI geometry's when it
    /// gives none) or the Jungfrau's (xtc2, default 512x1024).
    #[arg(long)]
    frame: Option<String>,
    /// Frames per train.
    #[arg(long, default_value_t = 16)]
    frames: usize,
    /// Trains per detector sequence file.
    #[arg(long, default_value_t = 32)]
    trains_per_file: u64,
    /// Run number.
    #[arg(long, default_value_t = 1)]
    run: u32,
    /// Seed.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

pub fn run(args: SimulateArgs) -> Result<()> {
    let frame = match &args.frame {
        Some(text) => crate::cli::demo::parse_frame(text)?,
        None => None,
    };
    let shape = frame.map(|[r, c]| (r, c));
    if args.format == Format::Xtc2 {
        let simulation = shotflow::xtc2::Xtc2Simulation {
            events: args.events,
            events_per_step: args.events_per_step.max(1),
            chunk_events: args.chunk_events,
            run: args.run,
            seed: args.seed,
            frame: frame.unwrap_or([512, 1024]),
            ..Default::default()
        };
        let files = simulation.write(&args.out)?;
        return report(&args, &files, &format!("{} events", args.events));
    }
    let geometry = match &args.geometry {
        Some(path) => Some(std::sync::Arc::new(shotflow_operators::geometry::load(
            path, shape,
        )?)),
        None => None,
    };
    let simulation = Simulation {
        geometry,
        frame: frame.unwrap_or(Simulation::default().frame),
        run: args.run,
        trains: args.trains,
        modules: args.modules,
        frames: args.frames,
        trains_per_file: args.trains_per_file,
        seed: args.seed,
        ..Simulation::default()
    };
    let files = simulation.write(&args.out)?;
    report(&args, &files, &format!("{} trains", args.trains))
}

fn report(args: &SimulateArgs, files: &[PathBuf], what: &str) -> Result<()> {
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    outln!(
        "{}: {} files, {:.1} MB, {what}",
        args.out.display(),
        files.len(),
        bytes as f64 / 1e6,
    );
    Ok(())
}
