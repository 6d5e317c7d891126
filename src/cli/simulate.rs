//! `shotflow simulate OUTDIR`: a deterministic EXDF 1.0 run that extra-data reads.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use shotflow::exdf::simulate::Simulation;

#[derive(Args)]
pub struct SimulateArgs {
    /// Run directory to write (created if needed).
    out: PathBuf,
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
    /// Frame shape ROWSxCOLS of a PONI geometry that gives none.
    #[arg(long, requires = "geometry")]
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
    let shape = match &args.frame {
        Some(text) => crate::cli::demo::parse_frame(text)?.map(|[r, c]| (r, c)),
        None => None,
    };
    let geometry = match &args.geometry {
        Some(path) => Some(std::sync::Arc::new(shotflow_operators::geometry::load(
            path, shape,
        )?)),
        None => None,
    };
    let simulation = Simulation {
        geometry,
        run: args.run,
        trains: args.trains,
        modules: args.modules,
        frames: args.frames,
        trains_per_file: args.trains_per_file,
        seed: args.seed,
        ..Simulation::default()
    };
    let files = simulation.write(&args.out)?;
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    outln!(
        "{}: {} files, {:.1} MB, {} trains",
        args.out.display(),
        files.len(),
        bytes as f64 / 1e6,
        args.trains
    );
    Ok(())
}
