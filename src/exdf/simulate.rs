//! Writing realistic EXDF 1.0 runs: what `shotflow simulate` and the demo use, so the reader
//! is exercised on files with the facility's layout, and what extra-data reads and validates.
//!
//! A simulated SPB-like pump-probe run holds, for `trains` trains from train id `first_train`:
//!
//! * `modules` AGIPD-like modules, `SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf`, in aggregators
//!   `AGIPD{m:02}`: per train `frames` frames (`image.data` u16 512×128 by default: pedestal,
//!   noise, photons on a ring scaling with the pulse energy), `image.pulseId`,
//!   `image.cellId`, `image.trainId`, and `header.pulseCount`;
//! * in aggregator `DA01`, the XGM `SA1_XTD2_XGM/DOOCS/MAIN` (control `pulseEnergy.photonFlux`)
//!   and its `:output` channel (`data.intensityTD`, f4\[1000\], per-pulse energies in the first
//!   `frames` entries); the delay motor `SPB_IRU_MOTORS/MDL/DELAY` (`actualPosition`, stepping
//!   through a scan) and the pump-laser shutter `SPB_LAS_SYS/PPL/SHUTTER` (`isOpen`, every
//!   other train).
//!
//! With a [`Simulation::geometry`], the modules and their shape are the detector's, and the
//! photons of a pulse land where a powder ring crosses its panels, on every module at once.
//!
//! Detector and DA01 files are split into sequences of different lengths, so their boundaries
//! do not line up, as at the facility. Everything is a function of the seed.

use std::path::Path;
use std::sync::Arc;

use hdf5::types::VarLenAscii;
use ndarray::{s, Array1, Array2, Array3};
use rand_distr::{Distribution, Gamma, Poisson};
use shotflow_operators::geometry::Detector;

use super::ExdfError;
use crate::source::ring::Ring;
use crate::source::synthetic::{event_rng, noise_frame, noise_table, render_frame, PHOTON_ADU};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Simulation {
    /// Run number (file names).
    pub run: u32,
    /// Number of trains.
    pub trains: u64,
    /// First train id.
    pub first_train: u64,
    /// Detector modules (the geometry's, when there is one).
    pub modules: usize,
    /// Frames per train.
    pub frames: usize,
    /// Frame shape of one module (the geometry's, when there is one).
    pub frame: [usize; 2],
    /// Trains per detector sequence file (DA01 files hold 1.5× as many).
    pub trains_per_file: u64,
    /// Mean photons per frame at 1 mJ.
    pub photons: f64,
    /// Delay scan steps.
    pub delay_steps: u64,
    /// Seed.
    pub seed: u64,
    /// The detector whose modules are simulated: photons fall on a ring through its geometry.
    /// Without it, each module has a ring of its own around its centre.
    pub geometry: Option<Arc<Detector>>,
}

impl Default for Simulation {
    fn default() -> Self {
        Simulation {
            run: 1,
            trains: 64,
            first_train: 1_000_000_000,
            modules: 2,
            frames: 16,
            frame: [512, 128],
            trains_per_file: 32,
            photons: 300.0,
            delay_steps: 8,
            seed: 2026,
            geometry: None,
        }
    }
}

/// The control and instrument source names of a simulated run.
pub mod names {
    /// XGM (control).
    pub const XGM: &str = "SA1_XTD2_XGM/DOOCS/MAIN";
    /// XGM pipeline channel.
    pub const XGM_OUTPUT: &str = "SA1_XTD2_XGM/DOOCS/MAIN:output";
    /// Delay motor.
    pub const DELAY: &str = "SPB_IRU_MOTORS/MDL/DELAY";
    /// Pump-laser shutter.
    pub const SHUTTER: &str = "SPB_LAS_SYS/PPL/SHUTTER";
    /// Detector module `m`.
    pub fn agipd(m: usize) -> String {
        format!("SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf")
    }
}

impl Simulation {
    /// The pulse energies (mJ) of train `t` (index from 0), one per frame.
    pub fn pulse_energies(&self, t: u64) -> Vec<f32> {
        let mut rng = event_rng(self.seed ^ 0x58474d, t);
        let gamma = Gamma::new(12.0, 1.0 / 12.0).unwrap();
        (0..self.frames)
            .map(|_| gamma.sample(&mut rng) as f32)
            .collect()
    }

    /// The delay (ps) of train `t`.
    pub fn delay(&self, t: u64) -> f64 {
        let steps = self.delay_steps.max(1);
        let per = self.trains.div_ceil(steps).max(1);
        -1.0 + 0.5 * (t / per).min(steps - 1) as f64
    }

    /// Whether the pump laser fired in train `t`.
    pub fn laser_on(&self, t: u64) -> bool {
        t.is_multiple_of(2)
    }

    /// Modules and the shape of one module's frame: the geometry's, or `modules` and `frame`.
    pub fn layout(&self) -> (usize, [usize; 2]) {
        match &self.geometry {
            Some(detector) => {
                let (modules, rows, columns) = detector.shape();
                (modules, [rows, columns])
            }
            None => (self.modules, self.frame),
        }
    }

    /// Writes the run into `dir` (created if needed). Returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>, ExdfError> {
        std::fs::create_dir_all(dir).map_err(|e| ExdfError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let mut written = Vec::new();
        let per = self.trains_per_file.max(1);
        let ring = self.geometry.as_deref().map(Ring::new);
        for m in 0..self.layout().0 {
            for (seq, lo) in (0..self.trains).step_by(per as usize).enumerate() {
                let hi = (lo + per).min(self.trains);
                let path = dir.join(format!("RAW-R{:04}-AGIPD{m:02}-S{seq:05}.h5", self.run));
                self.write_detector_file(&path, m, seq as u32, lo..hi, ring.as_ref())?;
                written.push(path);
            }
        }
        let per_da = (per * 3 / 2).max(1);
        for (seq, lo) in (0..self.trains).step_by(per_da as usize).enumerate() {
            let hi = (lo + per_da).min(self.trains);
            let path = dir.join(format!("RAW-R{:04}-DA01-S{seq:05}.h5", self.run));
            self.write_da_file(&path, seq as u32, lo..hi)?;
            written.push(path);
        }
        Ok(written)
    }

    fn create(
        &self,
        path: &Path,
        seq: u32,
        sources: &[(&str, String)],
        trains: std::ops::Range<u64>,
    ) -> Result<hdf5::File, ExdfError> {
        let err = |what: &str| {
            let what = what.to_string();
            move |e: hdf5::Error| ExdfError::hdf5(path, &what, e)
        };
        let file = hdf5::File::create(path).map_err(err("create"))?;
        let text = |name: &str, value: &str| -> Result<(), ExdfError> {
            let v = VarLenAscii::from_ascii(value).expect("ascii");
            file.new_dataset_builder()
                .with_data(&[v])
                .create(name)
                .map(|_| ())
                .map_err(err(name))
        };
        let number = |name: &str, value: u32| -> Result<(), ExdfError> {
            file.new_dataset_builder()
                .with_data(&[value])
                .create(name)
                .map(|_| ())
                .map_err(err(name))
        };
        file.create_group("METADATA").map_err(err("METADATA"))?;
        text("METADATA/creationDate", "20261121T000000Z")?;
        text("METADATA/updateDate", "20261121T000000Z")?;
        text("METADATA/dataFormatVersion", "1.0")?;
        text("METADATA/daqLibrary", "shotflow simulate")?;
        text("METADATA/karaboFramework", "2.16")?;
        text("METADATA/runType", "pump-probe (simulated)")?;
        text("METADATA/sample", "simulated")?;
        number("METADATA/proposalNumber", 9999)?;
        number("METADATA/runNumber", self.run)?;
        number("METADATA/sequenceNumber", seq)?;
        file.create_group("METADATA/dataSources")
            .map_err(err("METADATA/dataSources"))?;
        let list = |name: &str, values: Vec<String>| -> Result<(), ExdfError> {
            let v: Vec<VarLenAscii> = values
                .iter()
                .map(|s| VarLenAscii::from_ascii(s).expect("ascii"))
                .collect();
            file.new_dataset_builder()
                .with_data(&Array1::from(v))
                .create(name)
                .map(|_| ())
                .map_err(err(name))
        };
        list(
            "METADATA/dataSources/root",
            sources.iter().map(|(r, _)| r.to_string()).collect(),
        )?;
        list(
            "METADATA/dataSources/deviceId",
            sources.iter().map(|(_, d)| d.clone()).collect(),
        )?;
        list(
            "METADATA/dataSources/dataSourceId",
            sources.iter().map(|(r, d)| format!("{r}/{d}")).collect(),
        )?;
        let ids: Array1<u64> = trains.clone().map(|t| self.first_train + t).collect();
        let n = ids.len();
        file.new_dataset_builder()
            .with_data(&ids)
            .create("INDEX/trainId")
            .map_err(err("INDEX/trainId"))?;
        let stamps: Array1<u64> = trains
            .map(|t| 1_763_683_200_000_000_000 + t * 100_000_000)
            .collect();
        file.new_dataset_builder()
            .with_data(&stamps)
            .create("INDEX/timestamp")
            .map_err(err("INDEX/timestamp"))?;
        file.new_dataset_builder()
            .with_data(&Array1::from_elem(n, 1i32))
            .create("INDEX/flag")
            .map_err(err("INDEX/flag"))?;
        Ok(file)
    }

    fn write_index(
        file: &hdf5::File,
        path: &Path,
        base: &str,
        counts: &[u64],
    ) -> Result<(), ExdfError> {
        let err = |e| ExdfError::hdf5(path, base, e);
        let first: Array1<u64> = counts
            .iter()
            .scan(0u64, |acc, c| {
                let f = *acc;
                *acc += c;
                Some(f)
            })
            .collect();
        file.new_dataset_builder()
            .with_data(&first)
            .create(format!("{base}/first").as_str())
            .map_err(err)?;
        file.new_dataset_builder()
            .with_data(&Array1::from(counts.to_vec()))
            .create(format!("{base}/count").as_str())
            .map_err(err)?;
        Ok(())
    }

    fn write_detector_file(
        &self,
        path: &Path,
        m: usize,
        seq: u32,
        trains: std::ops::Range<u64>,
        ring: Option<&Ring>,
    ) -> Result<(), ExdfError> {
        let source = names::agipd(m);
        let groups = ["image", "header"];
        let sources: Vec<(&str, String)> = groups
            .iter()
            .map(|g| ("INSTRUMENT", format!("{source}/{g}")))
            .collect();
        let file = self.create(path, seq, &sources, trains.clone())?;
        let err = |what: &str| {
            let what = what.to_string();
            move |e| ExdfError::hdf5(path, &what, e)
        };
        let n = (trains.end - trains.start) as usize;
        let rows = n * self.frames;
        let frame = self.layout().1;
        let [h, w] = frame;
        let base = format!("INSTRUMENT/{source}/image");
        let data = file
            .new_dataset::<u16>()
            .shape([rows, h, w])
            .chunk([1, h, w])
            .create(format!("{base}/data").as_str())
            .map_err(err("image/data"))?;
        let noise = noise_table(self.seed);
        let mut pulse_ids = Vec::with_capacity(rows);
        let mut cell_ids = Vec::with_capacity(rows);
        let mut train_ids = Vec::with_capacity(rows);
        for (i, t) in trains.clone().enumerate() {
            let energies = self.pulse_energies(t);
            let pump = if self.laser_on(t) && self.delay(t) > 0.0 {
                1.0 + 0.5 * (1.0 - (-self.delay(t) / 0.8).exp())
            } else {
                1.0
            };
            let mut block = Array3::<u16>::zeros((self.frames, h, w));
            for (p, energy) in energies.iter().enumerate() {
                let mut rng = event_rng(self.seed ^ ((m as u64 + 1) * 0x9e37), t * 4096 + p as u64);
                let photons = self.photons * *energy as f64 * pump;
                let image: Array2<u16> = match ring {
                    None => render_frame(&mut rng, &noise, frame, photons),
                    Some(ring) => {
                        let mut image = noise_frame(&mut rng, &noise, frame);
                        // The pulse's photons, the same for every module's file.
                        let mut pulse = event_rng(self.seed ^ 0x7269_6e67, t * 4096 + p as u64);
                        let n = Poisson::new(photons).map_or(0, |d| d.sample(&mut pulse) as usize);
                        let pixels = image.as_slice_mut().expect("a standard-layout frame");
                        for (module, k) in ring.hits(&mut pulse, n) {
                            if module == m {
                                pixels[k] = pixels[k].saturating_add(PHOTON_ADU);
                            }
                        }
                        image
                    }
                };
                block.slice_mut(s![p, .., ..]).assign(&image);
                pulse_ids.push(p as u64 * 4);
                cell_ids.push(p as u16);
                train_ids.push(self.first_train + t);
            }
            let row = i * self.frames;
            data.write_slice(&block, s![row..row + self.frames, .., ..])
                .map_err(err("image/data"))?;
        }
        let put = |name: &str, values: Vec<u64>| -> Result<(), ExdfError> {
            file.new_dataset_builder()
                .with_data(&Array1::from(values))
                .create(name)
                .map(|_| ())
                .map_err(err(name))
        };
        put(&format!("{base}/pulseId"), pulse_ids)?;
        put(&format!("{base}/trainId"), train_ids)?;
        file.new_dataset_builder()
            .with_data(&Array1::from(cell_ids))
            .create(format!("{base}/cellId").as_str())
            .map_err(err("image/cellId"))?;
        let header = format!("INSTRUMENT/{source}/header");
        put(&format!("{header}/pulseCount"), vec![self.frames as u64; n])?;
        put(
            &format!("{header}/trainId"),
            trains.clone().map(|t| self.first_train + t).collect(),
        )?;
        Self::write_index(
            &file,
            path,
            &format!("INDEX/{source}/image"),
            &vec![self.frames as u64; n],
        )?;
        Self::write_index(&file, path, &format!("INDEX/{source}/header"), &vec![1; n])?;
        Ok(())
    }

    fn write_da_file(
        &self,
        path: &Path,
        seq: u32,
        trains: std::ops::Range<u64>,
    ) -> Result<(), ExdfError> {
        let sources = vec![
            ("CONTROL", names::XGM.to_string()),
            ("CONTROL", names::DELAY.to_string()),
            ("CONTROL", names::SHUTTER.to_string()),
            ("INSTRUMENT", format!("{}/data", names::XGM_OUTPUT)),
        ];
        let file = self.create(path, seq, &sources, trains.clone())?;
        let err = |what: &str| {
            let what = what.to_string();
            move |e| ExdfError::hdf5(path, &what, e)
        };
        let n = (trains.end - trains.start) as usize;
        let stamps: Vec<u64> = trains
            .clone()
            .map(|t| 1_763_683_200_000_000_000 + t * 100_000_000)
            .collect();
        let control =
            |source: &str, key: &str, values: Array1<f64>, as_u8: bool| -> Result<(), ExdfError> {
                for root in ["CONTROL", "RUN"] {
                    let base = format!("{root}/{source}/{key}");
                    let (values, stamps) = if root == "RUN" {
                        (
                            values.slice(s![..1]).to_owned(),
                            Array1::from(stamps[..1].to_vec()),
                        )
                    } else {
                        (values.clone(), Array1::from(stamps.clone()))
                    };
                    if as_u8 {
                        let v: Array1<u8> = values.mapv(|x| x as u8);
                        file.new_dataset_builder()
                            .with_data(&v)
                            .create(format!("{base}/value").as_str())
                            .map_err(err(&base))?;
                    } else {
                        file.new_dataset_builder()
                            .with_data(&values)
                            .create(format!("{base}/value").as_str())
                            .map_err(err(&base))?;
                    }
                    file.new_dataset_builder()
                        .with_data(&stamps)
                        .create(format!("{base}/timestamp").as_str())
                        .map_err(err(&base))?;
                }
                Ok(())
            };
        let flux: Array1<f64> = trains
            .clone()
            .map(|t| {
                self.pulse_energies(t)
                    .iter()
                    .map(|e| *e as f64)
                    .sum::<f64>()
                    / self.frames.max(1) as f64
                    * 1000.0
            })
            .collect();
        control(names::XGM, "pulseEnergy/photonFlux", flux, false)?;
        control(
            names::DELAY,
            "actualPosition",
            trains.clone().map(|t| self.delay(t)).collect(),
            false,
        )?;
        control(
            names::SHUTTER,
            "isOpen",
            trains
                .clone()
                .map(|t| if self.laser_on(t) { 1.0 } else { 0.0 })
                .collect(),
            true,
        )?;
        for source in [names::XGM, names::DELAY, names::SHUTTER] {
            Self::write_index(&file, path, &format!("INDEX/{source}"), &vec![1; n])?;
        }
        let mut intensity = Array2::<f32>::zeros((n, 1000));
        for (i, t) in trains.clone().enumerate() {
            for (p, e) in self.pulse_energies(t).iter().enumerate().take(1000) {
                intensity[[i, p]] = *e * 1000.0; // µJ
            }
        }
        let base = format!("INSTRUMENT/{}/data", names::XGM_OUTPUT);
        file.new_dataset_builder()
            .with_data(&intensity)
            .create(format!("{base}/intensityTD").as_str())
            .map_err(err("intensityTD"))?;
        let ids: Array1<u64> = trains.map(|t| self.first_train + t).collect();
        file.new_dataset_builder()
            .with_data(&ids)
            .create(format!("{base}/trainId").as_str())
            .map_err(err("trainId"))?;
        Self::write_index(
            &file,
            path,
            &format!("INDEX/{}/data", names::XGM_OUTPUT),
            &vec![1; n],
        )?;
        Ok(())
    }
}
