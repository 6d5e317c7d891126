//! The master file: one virtual dataset per key mapping the part files' rows into event-id
//! order, `timestamp`, and the run summaries. Written under a temporary name and renamed, so a
//! reader never sees half a master. VDS sources are bare file names, which HDF5 resolves in the
//! master's own directory: the output can be moved as a whole.

use std::collections::BTreeMap;
use std::path::Path;

use hdf5::{Extent, Extents, SimpleExtents};

use super::column::{describe, with_data, Data, Fill};
use super::part::{create_groups, rows, PartSchema};
use super::summary::{Reduced, Summary};
use super::SmallDataError;
use crate::event::DType;
use crate::sink::Batch;

/// Where each batch's rows are: which writer, how many.
pub(crate) struct Block {
    pub batch: Batch,
    pub writer: usize,
    pub rows: u64,
}

fn empty_data(dtype: DType) -> Data {
    match dtype {
        DType::Bool => Data::Bool(vec![]),
        DType::U8 => Data::U8(vec![]),
        DType::U16 => Data::U16(vec![]),
        DType::U32 => Data::U32(vec![]),
        DType::U64 => Data::U64(vec![]),
        DType::I8 => Data::I8(vec![]),
        DType::I16 => Data::I16(vec![]),
        DType::I32 => Data::I32(vec![]),
        DType::I64 => Data::I64(vec![]),
        DType::F32 => Data::F32(vec![]),
        DType::F64 => Data::F64(vec![]),
    }
}

fn extents(rows: u64, shape: &[usize]) -> Extents {
    let mut e = vec![Extent::fixed(rows as usize)];
    e.extend(shape.iter().map(|&d| Extent::fixed(d)));
    Extents::Simple(SimpleExtents::from_vec(e))
}

/// Writes the master `path` from the parts (indexed by writer) and the batch layout.
pub(crate) fn write_master(
    path: &Path,
    parts: &[PartSchema],
    mut blocks: Vec<Block>,
    summaries: &[(Summary, Reduced)],
) -> Result<u64, SmallDataError> {
    blocks.sort_by_key(|b| b.batch);
    // (writer, offset in its part, offset in the master, rows), adjacent runs merged
    let mut local = vec![0u64; parts.len()];
    let mut global = 0u64;
    let mut runs: Vec<(usize, u64, u64, u64)> = Vec::new();
    for block in &blocks {
        if block.rows == 0 {
            continue;
        }
        let lo = local[block.writer];
        match runs.last_mut() {
            Some(run)
                if run.0 == block.writer && run.1 + run.3 == lo && run.2 + run.3 == global =>
            {
                run.3 += block.rows
            }
            _ => runs.push((block.writer, lo, global, block.rows)),
        }
        local[block.writer] += block.rows;
        global += block.rows;
    }
    for (writer, part) in parts.iter().enumerate() {
        if local[writer] != part.rows {
            return Err(SmallDataError::Other(format!(
                "part file {} holds {} rows but its batches account for {}",
                part.file, part.rows, local[writer]
            )));
        }
    }

    let mut keys: BTreeMap<String, (DType, Vec<usize>, String)> = BTreeMap::new();
    keys.insert(
        "timestamp".into(),
        (
            DType::I64,
            vec![],
            parts.first().map(|p| p.file.clone()).unwrap_or_default(),
        ),
    );
    for part in parts {
        for (name, dtype, shape) in &part.keys {
            match keys.get(name) {
                Some((d, s, first)) if (d, s) != (dtype, shape) => {
                    return Err(SmallDataError::Other(format!(
                        "key {name:?} is {} in {first} but {} in {}",
                        describe(*d, s),
                        describe(*dtype, shape),
                        part.file
                    )))
                }
                Some(_) => {}
                None => {
                    keys.insert(name.clone(), (*dtype, shape.clone(), part.file.clone()));
                }
            }
        }
    }

    let tmp = path.with_extension("h5.tmp");
    let context = |what: &str, e: hdf5::Error| SmallDataError::hdf5(path, what, e);
    {
        let file = hdf5::File::create(&tmp).map_err(|e| context("create", e))?;
        for (name, (dtype, shape, _)) in &keys {
            create_groups(&file, name).map_err(|e| context(name, e))?;
            with_data!(&empty_data(*dtype), _v: T => {
                let mut builder = file.new_dataset::<T>().shape(extents(global, shape)).fill_value(<T as Fill>::FILL);
                for &(writer, lo, go, n) in &runs {
                    let part = &parts[writer];
                    if name != "timestamp" && !part.keys.iter().any(|(k, _, _)| k == name) {
                        continue; // unmapped: reads as the fill value
                    }
                    builder = builder.virtual_map(
                        &part.file,
                        name,
                        extents(part.rows, shape),
                        rows(lo as usize, (lo + n) as usize, shape),
                        extents(global, shape),
                        rows(go as usize, (go + n) as usize, shape),
                    );
                }
                builder.create(name.as_str()).map_err(|e| context(name, e))?;
            });
        }
        for (summary, result) in summaries {
            let base = format!("summary/{}", summary.key());
            create_groups(&file, &format!("{base}/x")).map_err(|e| context(&base, e))?;
            let group = file.group(&base).map_err(|e| context(&base, e))?;
            let write =
                |name: &str, values: &[f64], shape: &[usize]| -> Result<(), SmallDataError> {
                    let array = ndarray::ArrayView::from_shape(ndarray::IxDyn(shape), values)
                        .expect("summary shape");
                    group
                        .new_dataset_builder()
                        .with_data(array)
                        .create(name)
                        .map_err(|e| context(name, e))?;
                    Ok(())
                };
            match (summary, result) {
                (
                    Summary::Stats(_),
                    Reduced::Stats {
                        count,
                        sum,
                        min,
                        max,
                        shape,
                    },
                ) => {
                    let shape = if *count == 0 { &[][..] } else { &shape[..] };
                    let n = shape.iter().product::<usize>();
                    let nan = vec![f64::NAN; n];
                    let (sum, min, max) = if *count == 0 {
                        (&vec![0.0; n], &nan, &nan)
                    } else {
                        (sum, min, max)
                    };
                    let mean: Vec<f64> = sum.iter().map(|s| s / *count as f64).collect();
                    write("sum", sum, shape)?;
                    write("min", min, shape)?;
                    write("max", max, shape)?;
                    write("mean", if *count == 0 { &nan } else { &mean }, shape)?;
                    group
                        .new_dataset_builder()
                        .with_data(&ndarray::arr0(*count))
                        .create("count")
                        .map_err(|e| context("count", e))?;
                }
                (Summary::Histogram { lo, hi, bins, .. }, Reduced::Histogram(counts)) => {
                    group
                        .new_dataset_builder()
                        .with_data(&ndarray::Array1::from(counts.clone()))
                        .create("histogram")
                        .map_err(|e| context("histogram", e))?;
                    let edges: Vec<f64> = (0..=*bins)
                        .map(|i| lo + (hi - lo) * i as f64 / *bins as f64)
                        .collect();
                    write("edges", &edges, &[bins + 1])?;
                }
                _ => unreachable!("results match their summaries"),
            }
        }
        file.flush().map_err(|e| context("flush", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| SmallDataError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    Ok(global)
}
