//! Calibration constants in HDF5, one file per module.
//!
//! | detector (`detector` attribute) | datasets (float32 unless said) |
//! |---|---|
//! | `jungfrau` | `pedestal` (3, cells, rows, cols): pedestal + offset per stage, ADU; `gain` (3, cells, rows, cols): ADU per keV; `mask` (rows, cols) u8, optional |
//! | `epix10ka` | `pedestal` (7, rows, cols) and `gain` (7, rows, cols) in psana's range order FH, FM, FL, AHL_H, AML_M, AHL_L, AML_L; `config` (rows, cols) u8: the pixels' configuration bits; `mask` (rows, cols) u8, optional |
//! | `agipd` | `thresholds` (cells, 2, rows, cols), `offset` (cells, 3, rows, cols), `relative_gain` (cells, 3, rows, cols), `bad` (cells, rows, cols) u8 |
//!
//! The stage-first layouts of JUNGFRAU and ePix10ka are psana's (its calibration database
//! gives `(3, segments, 512, 1024)` and `(7, segments, 352, 384)`, a segment here being a
//! file); AGIPD's is cell-major, so that one frame's constants are one block in memory (EuXFEL's
//! own constants files store `(cols, rows, cells, stages)`; transpose them once to write this).
//! A JUNGFRAU file may say `unit = "photons"` with `photon_energy` (keV) to get photons.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3, Array4};
use shotflow_operators::gain::agipd::AgipdConstants;
use shotflow_operators::gain::epix10ka::Epix10kaConstants;
use shotflow_operators::gain::jungfrau::{JungfrauConstants, Unit};
use shotflow_operators::gain::ModuleConstants;

/// A constants file that cannot be used, named with what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConstantsError {
    /// The file or one of its datasets cannot be read.
    #[error("{file}: {what}: {message}")]
    Hdf5 {
        /// The file.
        file: PathBuf,
        /// The dataset or attribute.
        what: String,
        /// HDF5's message.
        message: String,
    },
    /// The file's contents do not make constants.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn hdf5_error(file: &Path, what: &str) -> impl Fn(hdf5::Error) -> ConstantsError {
    let (file, what) = (file.to_path_buf(), what.to_string());
    move |e| ConstantsError::Hdf5 {
        file: file.clone(),
        what: what.clone(),
        message: e.to_string(),
    }
}

/// Reads one module's constants.
///
/// ```
/// use ndarray::Array4;
/// use shotflow::calibrate::constants_file::{load, save};
/// use shotflow_operators::gain::{jungfrau::{JungfrauConstants, Unit}, ModuleConstants};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("jungfrau-m0.h5");
/// let pedestal = Array4::from_elem((3, 1, 4, 8), 1000.0f32);
/// let gain = Array4::from_elem((3, 1, 4, 8), 40.0f32);
/// let module = ModuleConstants::Jungfrau(JungfrauConstants::new(pedestal, gain.view(), None, Unit::Energy).unwrap());
/// save(&path, &module).unwrap();
/// let ModuleConstants::Jungfrau(back) = load(&path).unwrap() else { unreachable!() };
/// assert_eq!(back.gain_factor[[0, 0, 0, 0]], 1.0 / 40.0);
/// ```
pub fn load(path: &Path) -> Result<ModuleConstants, ConstantsError> {
    let file = hdf5::File::open(path).map_err(hdf5_error(path, "open"))?;
    let invalid = |message: String| ConstantsError::Invalid {
        file: path.to_path_buf(),
        message,
    };
    let detector: String = file
        .attr("detector")
        .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>())
        .map(|s| s.as_str().to_string())
        .map_err(hdf5_error(path, "attribute detector"))?;
    let f4 = |name: &str| -> Result<Array4<f32>, ConstantsError> {
        file.dataset(name)
            .and_then(|d| d.read::<f32, ndarray::Ix4>())
            .map_err(hdf5_error(path, name))
    };
    let f3 = |name: &str| -> Result<Array3<f32>, ConstantsError> {
        file.dataset(name)
            .and_then(|d| d.read::<f32, ndarray::Ix3>())
            .map_err(hdf5_error(path, name))
    };
    let u8_2 = |name: &str| -> Result<Option<Array2<u8>>, ConstantsError> {
        if file.link_exists(name) {
            file.dataset(name)
                .and_then(|d| d.read::<u8, ndarray::Ix2>())
                .map(Some)
                .map_err(hdf5_error(path, name))
        } else {
            Ok(None)
        }
    };
    let module = match detector.as_str() {
        "jungfrau" => {
            let unit = match file.attr("unit") {
                Ok(a) => {
                    let unit = a
                        .read_scalar::<hdf5::types::VarLenUnicode>()
                        .map_err(hdf5_error(path, "attribute unit"))?;
                    match unit.as_str() {
                        "keV" => Unit::Energy,
                        "photons" => Unit::Photons {
                            energy: file
                                .attr("photon_energy")
                                .and_then(|a| a.read_scalar::<f32>())
                                .map_err(hdf5_error(path, "attribute photon_energy"))?,
                        },
                        other => return Err(invalid(format!("unit {other:?}: keV or photons"))),
                    }
                }
                Err(_) => Unit::Energy,
            };
            let gain = f4("gain")?;
            ModuleConstants::Jungfrau(
                JungfrauConstants::new(f4("pedestal")?, gain.view(), u8_2("mask")?, unit)
                    .map_err(|e| invalid(e.to_string()))?,
            )
        }
        "epix10ka" => {
            let config = u8_2("config")?.ok_or_else(|| invalid("no dataset config".into()))?;
            let gain = f3("gain")?;
            ModuleConstants::Epix10ka(
                Epix10kaConstants::new(f3("pedestal")?, gain.view(), u8_2("mask")?, config)
                    .map_err(|e| invalid(e.to_string()))?,
            )
        }
        "agipd" => {
            let bad: Array3<u8> = file
                .dataset("bad")
                .and_then(|d| d.read::<u8, ndarray::Ix3>())
                .map_err(hdf5_error(path, "bad"))?;
            ModuleConstants::Agipd(
                AgipdConstants::new(
                    f4("thresholds")?,
                    f4("offset")?,
                    f4("relative_gain")?,
                    bad.mapv(|b| b != 0),
                )
                .map_err(|e| invalid(e.to_string()))?,
            )
        }
        other => {
            return Err(invalid(format!(
                "detector {other:?}: jungfrau, epix10ka or agipd"
            )))
        }
    };
    Ok(module)
}

/// Writes `data` as dataset `name` of `file`.
fn put<'d, T: hdf5::H5Type + 'd, D: ndarray::Dimension>(
    file: &hdf5::File,
    path: &Path,
    name: &str,
    data: ndarray::ArrayView<'d, T, D>,
) -> Result<(), ConstantsError> {
    file.new_dataset_builder()
        .with_data(data)
        .create(name)
        .map(drop)
        .map_err(hdf5_error(path, name))
}

/// Writes the scalar attribute `name` of `file`.
fn put_attr<T: hdf5::H5Type>(
    file: &hdf5::File,
    path: &Path,
    name: &str,
    value: &T,
) -> Result<(), ConstantsError> {
    file.new_attr::<T>()
        .create(name)
        .and_then(|a| a.write_scalar(value))
        .map_err(hdf5_error(path, &format!("attribute {name}")))
}

/// Writes one module's constants in the layout [`load`] reads. JUNGFRAU and ePix10ka gains
/// are written back from their factors (`1 / factor`; a factor of 0 writes a gain of 0).
pub fn save(path: &Path, module: &ModuleConstants) -> Result<(), ConstantsError> {
    let file = hdf5::File::create(path).map_err(hdf5_error(path, "create"))?;
    let text = |s: &str| -> hdf5::types::VarLenUnicode { s.parse().expect("no NUL") };
    put_attr(&file, path, "detector", &text(module.detector()))?;
    let inverse = |f: f32| if f != 0.0 { 1.0 / f } else { 0.0 };
    match module {
        ModuleConstants::Jungfrau(c) => {
            put(&file, path, "pedestal", c.pedestal.view())?;
            put(&file, path, "gain", c.gain_factor.mapv(inverse).view())?;
            put(&file, path, "mask", c.mask.view())?;
            match c.unit {
                Unit::Energy => put_attr(&file, path, "unit", &text("keV"))?,
                Unit::Photons { energy } => {
                    put_attr(&file, path, "unit", &text("photons"))?;
                    put_attr(&file, path, "photon_energy", &energy)?;
                }
            }
        }
        ModuleConstants::Epix10ka(c) => {
            put(&file, path, "pedestal", c.pedestal.view())?;
            put(&file, path, "gain", c.gain_factor.mapv(inverse).view())?;
            put(&file, path, "mask", c.mask.view())?;
            put(&file, path, "config", c.config.view())?;
        }
        ModuleConstants::Agipd(c) => {
            put(&file, path, "thresholds", c.thresholds())?;
            put(&file, path, "offset", c.offset())?;
            put(&file, path, "relative_gain", c.relative_gain())?;
            put(&file, path, "bad", c.bad().mapv(|b| b as u8).view())?;
        }
    }
    Ok(())
}
