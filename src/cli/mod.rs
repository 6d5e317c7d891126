//! Subcommands of the `shotflow` binary.

mod demo;
mod inspect;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// shotflow: stream processing of XFEL detector events on timely dataflow.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the showcase pump-probe pipeline on synthetic shots and print the curve.
    Demo(demo::DemoArgs),
    /// List the datasets of a smalldata file: rows, shapes, dtypes, fill counts, summaries.
    Inspect(inspect::InspectArgs),
}

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOTFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    shotflow::runtime::keep_freed_memory();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Inspect(args) => inspect::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shotflow: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
