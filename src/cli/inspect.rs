//! `shotflow inspect FILE`: what a smalldata file holds, as a user checks it before analysis.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use shotflow::event::DType;
use shotflow::smalldata::column_cache::Fill;

#[derive(Args)]
pub struct InspectArgs {
    /// A run directory (EuXFEL), an XTC2 file or run directory (LCLS-II), or a smalldata
    /// master (or part) file.
    file: PathBuf,
}

fn fills<T: Fill>(dataset: &hdf5::Dataset) -> Result<usize> {
    let values = dataset.read_raw::<T>()?;
    // NaN is the float fill and never equals itself: compare by "is missing" instead.
    let missing = |v: &T| {
        if T::FILL.is_missing() {
            v.is_missing()
        } else {
            *v == T::FILL
        }
    };
    Ok(values.iter().filter(|v| missing(v)).count())
}

fn describe(dataset: &hdf5::Dataset) -> Result<(String, usize)> {
    let descriptor = dataset.dtype()?.to_descriptor()?;
    let Some(dtype) = shotflow::exdf::dtype_of(&descriptor) else {
        return Ok((format!("{descriptor:?}"), 0));
    };
    let fill = match dtype {
        // false is both the bool fill and a real value: a count would mislead.
        DType::Bool => usize::MAX,
        _ => shotflow::with_dtype!(dtype, T => fills::<T>(dataset)?),
    };
    Ok((dtype.numpy_name().to_string(), fill))
}

fn walk(group: &hdf5::Group, prefix: &str, out: &mut Vec<(String, hdf5::Dataset)>) -> Result<()> {
    for name in group.member_names()? {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if let Ok(dataset) = group.dataset(&name) {
            out.push((path, dataset));
        } else if let Ok(sub) = group.group(&name) {
            walk(&sub, &path, out)?;
        }
    }
    Ok(())
}

/// A master whose segment files are gone would read as fill values everywhere: name them.
fn missing_sources(master: &std::path::Path, datasets: &[(String, hdf5::Dataset)]) -> Result<()> {
    let dir = match master.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut missing = std::collections::BTreeSet::new();
    for (_, dataset) in datasets {
        if dataset.layout() != hdf5::dataset::Layout::Virtual {
            continue;
        }
        for mapping in dataset.create_plist()?.virtual_map() {
            let name = &mapping.src_filename;
            if name != "." && !dir.join(name).exists() {
                missing.insert(name.clone());
            }
        }
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(String::as_str).collect();
        anyhow::bail!(
            "{}: {} file(s) it maps are missing from {}: {} (its rows would read as fill values)",
            master.display(),
            names.len(),
            dir.display(),
            names.join(", ")
        );
    }
    Ok(())
}

/// `lsxfel`: trains, then per source its keys with dtype and shape.
fn run_directory(dir: &std::path::Path) -> Result<()> {
    use shotflow::exdf::{ExdfRun, SourceKind};
    let run = ExdfRun::open(dir)?;
    let (first, last) = (
        run.trains.first().copied().unwrap_or(0),
        run.trains.last().copied().unwrap_or(0),
    );
    outln!(
        "{}: {} files, {} trains ({first} – {last})",
        dir.display(),
        run.files.len(),
        run.trains.len()
    );
    if run.suspect_trains > 0 {
        outln!(
            "  {} suspect trains skipped (out of order or repeated in their file)",
            run.suspect_trains
        );
    }
    for kind in [SourceKind::Instrument, SourceKind::Control] {
        let sources: Vec<_> = run.sources.iter().filter(|(_, s)| s.kind == kind).collect();
        outln!(
            "{} {} sources:",
            sources.len(),
            if kind == SourceKind::Control {
                "control"
            } else {
                "instrument"
            }
        );
        for (name, source) in sources {
            outln!("  - {name}");
            for key in source.keys.values() {
                outln!("    {:<40} {:<8} {:?}", key.name, key.dtype, key.shape);
            }
        }
    }
    Ok(())
}

pub fn run(args: InspectArgs) -> Result<()> {
    if crate::cli::xtc2::is_xtc2(&args.file) {
        return crate::cli::xtc2::inspect(&args.file);
    }
    if args.file.is_dir() {
        return run_directory(&args.file);
    }
    let file = hdf5::File::open(&args.file)
        .with_context(|| format!("cannot open {} as HDF5", args.file.display()))?;
    let mut datasets = Vec::new();
    walk(&file, "", &mut datasets)?;
    missing_sources(&args.file, &datasets)?;
    outln!("{}", args.file.display());
    if let Ok(complete) = file.attr("complete").and_then(|a| a.read_scalar::<bool>()) {
        let committed = file
            .group("shotflow")
            .and_then(|g| g.attr("committed_events"))
            .and_then(|a| a.read_scalar::<i64>())
            .unwrap_or(-1);
        if !complete {
            outln!("  PARTIAL: a run stopped or crashed after committing {committed} events (--resume continues it)");
        }
    }
    outln!(
        "  {:<32} {:>9} {:<14} {:<8} {:>9}",
        "dataset",
        "rows",
        "shape",
        "dtype",
        "fill rows"
    );
    for (path, dataset) in datasets.iter().filter(|(p, _)| !p.starts_with("summary/")) {
        let shape = dataset.shape();
        let rows = shape.first().copied().unwrap_or(1);
        let (dtype, fill) =
            describe(dataset).with_context(|| format!("{}: {path}", args.file.display()))?;
        let per_row = shape.iter().skip(1).product::<usize>().max(1);
        let virtual_ = if dataset.layout() == hdf5::dataset::Layout::Virtual {
            "virtual"
        } else {
            ""
        };
        let fill = if fill == usize::MAX {
            "-".to_string()
        } else {
            (fill / per_row).to_string()
        };
        outln!(
            "  {:<32} {:>9} {:<14} {:<8} {:>9} {virtual_}",
            path,
            rows,
            format!("{:?}", &shape[1.min(shape.len())..]),
            dtype,
            fill
        );
    }
    let summaries: Vec<_> = datasets
        .iter()
        .filter(|(p, _)| p.starts_with("summary/"))
        .collect();
    if !summaries.is_empty() {
        outln!("  summaries:");
        for (path, dataset) in summaries {
            let values = dataset.read_raw::<f64>().unwrap_or_default();
            let shown: Vec<String> = values.iter().take(8).map(|v| format!("{v:.6}")).collect();
            let more = if values.len() > 8 {
                format!(" … ({} values)", values.len())
            } else {
                String::new()
            };
            outln!(
                "    {:<30} {}{more}",
                path.trim_start_matches("summary/"),
                shown.join(" ")
            );
        }
    }
    Ok(())
}
