//! `--geometry FILE` for commands that reduce detector frames: the azimuthal profile of a
//! whole multi-module detector per train, every module's pulses integrated together through
//! the geometry.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use shotflow::event::{Event, Key};
use shotflow::exdf::modules::{ModuleLayout, JUNGFRAU};
use shotflow::exdf::Selected;
use shotflow_operators::azimuthal::{AzimuthalMap, Corrections, Radial};
use shotflow_operators::geometry::{self, Detector};
use shotflow_operators::Pixel;

/// Options of the azimuthal profile over a detector geometry.
#[derive(clap::Args, Clone, Debug)]
pub struct GeometryArgs {
    /// Detector geometry, CrystFEL `.geom` or pyFAI `.poni` (the extension decides): adds each
    /// train's azimuthal profile of the whole detector, `<detector>/azav` (the mean over its
    /// pulses, corrected), `<detector>/azav_pulses` and `<detector>/azav_modules`. The module sources are the selected
    /// `…/DET/<m>CH0:xtdf` `image.data` keys; `<m>` is the geometry's module.
    #[arg(long)]
    pub geometry: Option<PathBuf>,
    /// Photon energy, keV (default: the geometry file's).
    #[arg(long, requires = "geometry")]
    pub energy: Option<f64>,
    /// Radial bins.
    #[arg(long, default_value_t = 512, requires = "geometry")]
    pub bins: usize,
    /// Radial unit: q (nm⁻¹), 2th (degrees) or r (mm from the beam axis).
    #[arg(long, default_value = "q", value_parser = parse_unit, requires = "geometry")]
    pub unit: Radial,
    /// Polarisation factor (pyFAI's, -1 to 1; 0.95–0.99 at an XFEL); none by default.
    #[arg(long, allow_negative_numbers = true, requires = "geometry")]
    pub polarization: Option<f64>,
    /// Do not correct for the pixels' solid angle (pyFAI corrects by default).
    #[arg(long, requires = "geometry")]
    pub no_solid_angle: bool,
}

fn parse_unit(text: &str) -> Result<Radial, String> {
    match text {
        "q" | "q_nm^-1" => Ok(Radial::QInvNm),
        "2th" | "2th_deg" => Ok(Radial::TwoThetaDeg),
        "r" | "r_mm" => Ok(Radial::RadiusMm),
        _ => Err(format!("{text:?}: give q, 2th or r")),
    }
}

impl GeometryArgs {
    /// What determines the profiles, for a fingerprint.
    pub fn fingerprint(&self) -> Vec<(String, String)> {
        let Some(path) = &self.geometry else {
            return Vec::new();
        };
        vec![(
            "geometry".into(),
            format!(
                "{}; energy {:?} keV, {} bins of {:?}, polarization {:?}, solid angle {}",
                crate::cli::file_digest(Some(path)),
                self.energy,
                self.bins,
                self.unit,
                self.polarization,
                !self.no_solid_angle
            ),
        )]
    }

    /// The geometry file's detector, the photon energy (keV) and the corrections, checked;
    /// `None` without `--geometry`.
    fn detector(&self) -> Result<Option<(Detector, f64, Corrections)>> {
        let Some(path) = &self.geometry else {
            return Ok(None);
        };
        let detector = geometry::load(path, None)?;
        if let Some(p) = self.polarization.filter(|p| !(-1.0..=1.0).contains(p)) {
            bail!("--polarization {p}: a factor from -1 to 1");
        }
        let energy = match (self.energy, detector.photon_energy_ev) {
            (Some(kev), _) if kev.is_finite() && kev > 0.0 => kev,
            (Some(kev), _) => bail!("--energy {kev}: a positive number of keV"),
            (None, Some(ev)) => ev / 1e3,
            (None, None) => bail!("{}: no photon energy; give --energy KEV", path.display()),
        };
        let corrections = Corrections {
            solid_angle: !self.no_solid_angle,
            polarization: self.polarization,
        };
        Ok(Some((detector, energy, corrections)))
    }

    /// The profile of the detector whose modules are among `selected`, or `None` without a
    /// geometry.
    ///
    /// `calibrated`: the fields calibrated before the profile, with their calibrated frames'
    /// `(rows, cols)` (an AGIPD module's raw frames hold analog and gain planes, its calibrated
    /// ones one).
    pub fn profile(
        &self,
        selected: &[Selected],
        calibrated: &[(Key, (usize, usize))],
    ) -> Result<Option<Arc<TrainProfile>>> {
        let Some((detector, energy, corrections)) = self.detector()? else {
            return Ok(None);
        };
        let path = self.geometry.as_ref().expect("a geometry");
        let modules = module_fields(&detector, selected, calibrated)
            .with_context(|| format!("--geometry {}", path.display()))?;
        TrainProfile::new(
            &detector,
            modules,
            energy,
            self.unit,
            self.bins,
            corrections,
        )
        .map(|p| Some(Arc::new(p)))
        .with_context(|| format!("--geometry {}", path.display()))
    }

    /// The azimuthal map of the geometry's whole detector, for events whose detector arrives
    /// as one array of the geometry's data shape (an XTC2 detector's stacked segments), or
    /// `None` without a geometry.
    pub fn event_map(&self) -> Result<Option<EventProfile>> {
        let Some((detector, energy, corrections)) = self.detector()? else {
            return Ok(None);
        };
        let map = AzimuthalMap::for_detector(
            &detector,
            energy,
            self.unit,
            self.bins,
            None,
            1,
            corrections,
            None,
        )?;
        let (modules, rows, columns) = detector.shape();
        Ok(Some(EventProfile {
            map: Arc::new(map),
            shape: (modules, rows, columns),
        }))
    }
}

/// The azimuthal profile of an event's detector array whose shape is the geometry's.
#[derive(Clone)]
pub struct EventProfile {
    map: Arc<AzimuthalMap>,
    shape: (usize, usize, usize),
}

impl EventProfile {
    /// The radial bins' centres.
    pub fn centers(&self) -> Vec<f64> {
        self.map.centers()
    }

    /// Whether an array of `shape` is the geometry's detector: `(modules, rows, columns)`, or
    /// `(rows, columns)` and `(1, rows, columns)` for one module.
    pub fn fits(&self, shape: &[usize]) -> bool {
        let (m, r, c) = self.shape;
        shape == [m, r, c] || (m == 1 && shape == [r, c])
    }

    /// Sets `<det>/azav` for every array field of `event` that fits the geometry, `<det>`
    /// being the field's detector (its first path component).
    pub fn apply(&self, event: &mut Event) {
        let mut profiles = Vec::new();
        for (key, value) in event.fields() {
            if !self.fits(value.shape()) {
                continue;
            }
            let det = key.name().split('/').next().unwrap_or("");
            let dtype = value.dtype();
            let profile = shotflow::with_dtype!(dtype, T => self.integrate::<T>(event, *key));
            if let Some(p) = profile {
                profiles.push((Key::new(&format!("{det}/azav")), p));
            }
        }
        for (key, profile) in profiles {
            event.set(key, profile);
        }
    }

    fn integrate<T: shotflow::event::Element + Pixel>(
        &self,
        event: &Event,
        key: Key,
    ) -> Option<Vec<f64>> {
        let array = event.array::<T>(key)?;
        let array = array.as_standard_layout();
        Some(
            self.map
                .integrate_slice(array.as_slice().expect("standard layout")),
        )
    }
}

/// The frame field of each of the detector's modules, and the detector's name (the source name
/// before `/DET/`), as extra-data numbers modules: AGIPD, LPD and DSSC's `image.data` of
/// `…/DET/<m>CH…` is module `m`; JUNGFRAU's `data.adc` of `…/DET/JNGFR<n>:…` is module `n - 1`.
fn module_fields(
    detector: &Detector,
    selected: &[Selected],
    calibrated: &[(Key, (usize, usize))],
) -> Result<(String, Vec<Key>)> {
    let (modules, rows, columns) = detector.shape();
    let mut found: Vec<Option<&Selected>> = vec![None; modules];
    let mut name = None;
    for s in selected {
        let Some(layout) = ModuleLayout::of_frames(&s.key.name) else {
            continue;
        };
        let (Some(m), Some((detector_name, _))) =
            (layout.module(&s.source), s.source.split_once("/DET/"))
        else {
            continue;
        };
        if m >= modules {
            bail!(
                "{} is module {m}, and the geometry has {modules} modules",
                s.source
            );
        }
        let frame = match calibrated.iter().find(|(field, _)| *field == s.field) {
            Some((_, (r, c))) => vec![*r, *c],
            None => s.key.shape.clone(),
        };
        if frame[..] != [rows, columns] {
            // Raw JUNGFRAU rows hold a train's 16 frames, without their gain bits.
            let hint = if layout == JUNGFRAU {
                " (JUNGFRAU's raw data.adc is profiled calibrated: --calibrate it)"
            } else {
                ""
            };
            bail!(
                "{}: {} frames of {frame:?}, and the geometry's modules are \
                 {rows}×{columns}{hint}",
                s.source,
                s.key.name
            );
        }
        found[m] = Some(s);
        name.get_or_insert_with(|| detector_name.to_string());
    }
    let missing: Vec<usize> = (0..modules).filter(|m| found[*m].is_none()).collect();
    if !missing.is_empty() {
        bail!(
            "no selected module frames (image.data; JUNGFRAU's data.adc) for modules \
             {missing:?} of the geometry's {modules} (select them, e.g. \
             'SPB_DET_AGIPD1M-1/DET/*CH0:xtdf' or 'SPB_IRDA_JF4M/DET/JNGFR*:daqOutput:data.adc')"
        );
    }
    let fields = found.iter().map(|s| s.expect("checked").field).collect();
    Ok((name.expect("at least one module"), fields))
}

/// A train's azimuthal profile over all the detector's modules: the mean over its pulses, each
/// bin Σ signal / Σ corrections of the pixels of the modules the train has (a module missing
/// from a train is left out of both sums, not counted as zeros).
pub struct TrainProfile {
    map: AzimuthalMap,
    /// Per module, each bin's normalisation from that module's pixels.
    module_norms: Vec<Vec<f64>>,
    modules: Vec<Key>,
    module_pixels: usize,
    /// `<detector>/azav`, `<detector>/azav_pulses` and `<detector>/azav_modules`.
    pub keys: (Key, Key, Key),
    warned: std::sync::atomic::AtomicBool,
}

impl TrainProfile {
    fn new(
        detector: &Detector,
        (name, modules): (String, Vec<Key>),
        energy_kev: f64,
        unit: Radial,
        bins: usize,
        corrections: Corrections,
    ) -> Result<TrainProfile> {
        let map = AzimuthalMap::for_detector(
            detector,
            energy_kev,
            unit,
            bins,
            None,
            1,
            corrections,
            None,
        )?;
        let (count, rows, columns) = detector.shape();
        let module_pixels = rows * columns;
        let module_norms = (0..count)
            .map(|m| map.norm_of_part(m * module_pixels, module_pixels))
            .collect();
        Ok(TrainProfile {
            map,
            module_norms,
            modules,
            module_pixels,
            keys: (
                Key::new(&format!("{name}/azav")),
                Key::new(&format!("{name}/azav_pulses")),
                Key::new(&format!("{name}/azav_modules")),
            ),
            warned: Default::default(),
        })
    }

    /// The radial bins' centres.
    pub fn centers(&self) -> Vec<f64> {
        self.map.centers()
    }

    /// Sets the train's profile, pulse count and module count on `row`; a train without any
    /// module frame gets none of them. A module whose frames disagree with the first module's
    /// pulse count is left out of that train's profile, with a warning, as `stack_modules`
    /// leaves out a module of the wrong shape; `azav_modules` says how many were integrated.
    pub fn apply(&self, train: &Event, row: &mut Event) {
        let mut sums = vec![0.0; self.map.counts().len()];
        let mut norm = vec![0.0; sums.len()];
        let mut pulses = None;
        let mut integrated = 0u64;
        for (m, key) in self.modules.iter().enumerate() {
            let Some(value) = train.value(*key) else {
                continue;
            };
            let n = value.shape().first().copied().unwrap_or(0);
            let elements: usize = value.shape().iter().product();
            if elements != n * self.module_pixels || pulses.is_some_and(|p| p != n) {
                self.warn_once(train, *key, value.shape(), pulses);
                continue;
            }
            pulses = Some(n);
            shotflow::with_dtype!(value.dtype(), T => self.add_module::<T>(train, *key, m, &mut sums));
            for (total, part) in norm.iter_mut().zip(&self.module_norms[m]) {
                *total += part * n as f64;
            }
            integrated += 1;
        }
        let Some(pulses) = pulses else {
            return;
        };
        let profile: Vec<f64> = sums
            .iter()
            .zip(&norm)
            .map(|(s, n)| if *n == 0.0 { f64::NAN } else { s / n })
            .collect();
        row.set(self.keys.0, profile);
        row.set(self.keys.1, pulses as u64);
        row.set(self.keys.2, integrated);
    }

    fn warn_once(&self, train: &Event, key: Key, shape: &[usize], pulses: Option<usize>) {
        use std::sync::atomic::Ordering;
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "train {}: {} has frames {shape:?}, not {} pulses of the geometry's module: left \
                 out of the azimuthal profile (azav_modules counts the modules integrated; \
                 further trains are not reported)",
                train.id,
                key.name(),
                pulses.map_or("whole".to_string(), |p| p.to_string()),
            );
        }
    }

    /// Adds module `m`'s frames (pulses × rows × columns) of `train` into `sums`.
    fn add_module<T: shotflow::event::Element + Pixel>(
        &self,
        train: &Event,
        key: Key,
        m: usize,
        sums: &mut [f64],
    ) {
        let Some(frames) = train.array::<T>(key) else {
            return;
        };
        let frames = frames.as_standard_layout();
        let pixels = frames.as_slice().expect("standard layout");
        for pulse in pixels.chunks_exact(self.module_pixels) {
            self.map
                .accumulate_part(m * self.module_pixels, pulse, sums);
        }
    }
}
