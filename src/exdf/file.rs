//! One EXDF file: its metadata, train ids, sources and per-source index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5::types::{VarLenAscii, VarLenUnicode};

use super::ExdfError;

/// Whether a source is slow (one row per train) or fast (rows indexed per train).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceKind {
    /// `CONTROL/<source>`: slow data, one row per train.
    Control,
    /// `INSTRUMENT/<source>/<group>`: pipeline data, zero or more rows per train.
    Instrument,
}

/// `first`/`count` of one index group for every train of the file (in file order).
#[derive(Clone, Debug)]
pub(crate) struct IndexGroup {
    pub first: Vec<u64>,
    pub count: Vec<u64>,
}

/// What one file holds, read once when the run is opened.
#[derive(Clone, Debug)]
pub struct FileInfo {
    /// Path.
    pub path: PathBuf,
    /// `RAW` or `CORR`.
    pub prefix: String,
    /// Run number from the file name.
    pub run: u32,
    /// Aggregator (`AGIPD00`, `DA01`, ...).
    pub aggregator: String,
    /// Sequence number.
    pub sequence: u32,
    /// `METADATA/dataFormatVersion` (`"0.5"` when absent).
    pub format: String,
    /// `INDEX/trainId`, padding (0) included.
    pub train_ids: Vec<u64>,
    /// Sources: name → kind and index groups (`""` for control sources).
    pub sources: BTreeMap<String, (SourceKind, Vec<String>)>,
    pub(crate) index: BTreeMap<(String, String), IndexGroup>,
}

/// Splits `RAW-R0348-AGIPD04-S00002.h5` into its parts.
pub fn parse_name(name: &str) -> Option<(String, u32, String, u32)> {
    let stem = name.strip_suffix(".h5")?;
    let mut parts = stem.split('-');
    let prefix = parts.next()?;
    let run = parts.next()?.strip_prefix('R')?.parse().ok()?;
    let aggregator = parts.next()?;
    let sequence = parts.next()?.strip_prefix('S')?.parse().ok()?;
    if parts.next().is_some() || aggregator.is_empty() || !(prefix == "RAW" || prefix == "CORR") {
        return None;
    }
    Some((prefix.to_string(), run, aggregator.to_string(), sequence))
}

pub(crate) fn read_strings(
    file: &hdf5::File,
    path: &Path,
    name: &str,
) -> Result<Vec<String>, ExdfError> {
    let dataset = file
        .dataset(name)
        .map_err(|e| ExdfError::hdf5(path, name, e))?;
    if let Ok(values) = dataset.read_raw::<VarLenAscii>() {
        return Ok(values.iter().map(|s| s.as_str().to_string()).collect());
    }
    if let Ok(values) = dataset.read_raw::<VarLenUnicode>() {
        return Ok(values.iter().map(|s| s.as_str().to_string()).collect());
    }
    // Fixed-length strings
    let values = dataset
        .read_raw::<hdf5::types::FixedAscii<256>>()
        .map_err(|e| ExdfError::hdf5(path, name, e))?;
    Ok(values.iter().map(|s| s.as_str().to_string()).collect())
}

fn read_u64(file: &hdf5::File, path: &Path, name: &str) -> Result<Vec<u64>, ExdfError> {
    file.dataset(name)
        .and_then(|d| d.read_raw::<u64>())
        .map_err(|e| ExdfError::hdf5(path, name, e))
}

impl FileInfo {
    /// Reads the structure of one file (not its data).
    pub fn open(path: &Path) -> Result<(FileInfo, hdf5::File), ExdfError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let (prefix, run, aggregator, sequence) =
            parse_name(name).ok_or_else(|| ExdfError::Format {
                file: path.display().to_string(),
                message: "not an EXDF file name (RAW|CORR-R####-AGG-S#####.h5)".into(),
            })?;
        let file = hdf5::File::open(path).map_err(|e| ExdfError::hdf5(path, "open", e))?;
        let format = if file.link_exists("METADATA/dataFormatVersion") {
            read_strings(&file, path, "METADATA/dataFormatVersion")?
                .into_iter()
                .next()
                .unwrap_or_else(|| "1.0".into())
        } else {
            "0.5".to_string()
        };
        let ids_name = if file.link_exists("METADATA/dataSources/dataSourceId") {
            "METADATA/dataSources/dataSourceId"
        } else {
            "METADATA/dataSourceId"
        };
        let ids = read_strings(&file, path, ids_name)?;
        let train_ids = read_u64(&file, path, "INDEX/trainId")?;
        let mut sources: BTreeMap<String, (SourceKind, Vec<String>)> = BTreeMap::new();
        for id in ids.iter().filter(|s| !s.is_empty()) {
            let (root, rest) = id.split_once('/').unwrap_or((id.as_str(), ""));
            match root {
                "CONTROL" => {
                    sources
                        .entry(rest.to_string())
                        .or_insert((SourceKind::Control, vec![String::new()]));
                }
                "INSTRUMENT" => {
                    let (device, channel_group) = rest.split_once(':').unwrap_or((rest, ""));
                    let (channel, group) =
                        channel_group.split_once('/').unwrap_or((channel_group, ""));
                    let source = format!("{device}:{channel}");
                    let entry = sources
                        .entry(source)
                        .or_insert((SourceKind::Instrument, Vec::new()));
                    if !entry.1.iter().any(|g| g == group) {
                        entry.1.push(group.to_string());
                    }
                }
                _ => {}
            }
        }
        let mut index = BTreeMap::new();
        for (source, (_, groups)) in &sources {
            for group in groups {
                let base = if group.is_empty() {
                    format!("INDEX/{source}")
                } else {
                    format!("INDEX/{source}/{group}")
                };
                let (first, count) = if file.link_exists(&format!("{base}/count")) {
                    (
                        read_u64(&file, path, &format!("{base}/first"))?,
                        read_u64(&file, path, &format!("{base}/count"))?,
                    )
                } else {
                    // format 0.1: first/last/status
                    let first = read_u64(&file, path, &format!("{base}/first"))?;
                    let last = read_u64(&file, path, &format!("{base}/last"))?;
                    let status = read_u64(&file, path, &format!("{base}/status"))?;
                    let mut count = Vec::with_capacity(first.len());
                    for (row, ((f, l), s)) in first.iter().zip(&last).zip(&status).enumerate() {
                        if *s != 0 && l < f {
                            // last + 1 - first would wrap around to 2^64 rows.
                            return Err(ExdfError::Format {
                                file: path.display().to_string(),
                                message: format!(
                                    "{base}: row {row} (train {}) has last {l} < first {f}",
                                    train_ids.get(row).copied().unwrap_or(0)
                                ),
                            });
                        }
                        count.push(if *s == 0 { 0 } else { l + 1 - f });
                    }
                    (first, count)
                };
                // INDEX/trainId may be padded (zeros) beyond the index datasets' length.
                let used = train_ids.iter().rposition(|t| *t != 0).map_or(0, |p| p + 1);
                if first.len() < used || count.len() < used {
                    return Err(ExdfError::Format {
                        file: path.display().to_string(),
                        message: format!("{base}: index shorter than INDEX/trainId"),
                    });
                }
                index.insert((source.clone(), group.clone()), IndexGroup { first, count });
            }
        }
        Ok((
            FileInfo {
                path: path.to_path_buf(),
                prefix,
                run,
                aggregator,
                sequence,
                format,
                train_ids,
                sources,
                index,
            },
            file,
        ))
    }
}
