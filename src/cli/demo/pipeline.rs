//! The showcase pipeline behind `shotflow demo`: a pump-probe reduction of synthetic shots or
//! of a simulated EuXFEL run. It is application code built on the library's public API only
//! (the integration tests include this file to compare it with sequential references).
//!
//! ```text
//! synthetic shots ─▶ reduce each frame ─▶ cut on pulse energy ─▶ ordered sink on worker 0
//!  (frame, I0,        (photon count, ROI    (drop weak shots)       (photons / I0 binned by
//!   delay, laser)      sum; frame dropped)                            delay, laser on and off)
//! ```
//!
//! Frames never leave the worker that generated them; only the reduced rows move. The
//! azimuthal profile integrates over the whole detector, every module at once, through its
//! geometry: a simulated run's AGIPD 1M modules (a quadrant by default) or the flat panel of
//! the synthetic shots, or a geometry file the user gives.

#![allow(dead_code)] // the binary uses part of it, the tests the rest

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndarray::{ArrayView2, Ix2};
use serde::{Deserialize, Serialize};
use shotflow::event::{Event, EventId, HasEventId, Key};
use shotflow::exdf::simulate::{names, Simulation};
use shotflow::exdf::{ExdfRun, ExdfSource, ExplodePulses, Selector};
use shotflow::flow::Settings;
use shotflow::monitor::{publish, Plot};
use shotflow::runtime::{execute_with, Plan, RunError};
use shotflow::sink::SinkExt;
use shotflow::smalldata::{Reduce, Row, SavePerBatch, SmallData, SmallDataExt};
use shotflow::source::synthetic::{PEDESTAL, PHOTON_ADU};
use shotflow::source::{Synthetic, SyntheticSource};
use shotflow::xtc2::{Xtc2Run, Xtc2Selector, Xtc2Simulation, Xtc2Source};
use shotflow_operators::azimuthal::{AzimuthalMap, Corrections, Radial};
use shotflow_operators::binning::{ScanAxis, ScanBins};
use shotflow_operators::fused::Reductions;
use shotflow_operators::gain::jungfrau::{JungfrauConstants, Unit};
use shotflow_operators::gain::ModuleConstants;
use shotflow_operators::geometry::{AgipdLayout, Detector, GeometryError, Poni};
use shotflow_operators::histogram::Histogram;
use shotflow_operators::photons::PhotonCounter;
use shotflow_operators::roi::{roi_stats, Roi};
use shotflow_operators::simd::Isa;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::Concat;

/// Options of the demo pipeline.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// The synthetic run.
    pub source: Synthetic,
    /// Shots with a pulse energy below this (mJ) are dropped.
    pub energy_cut: f64,
    /// The per-shot smalldata output (`None`: no file); see [`demo_output`].
    pub output: Option<SmallData>,
    /// Read a simulated EuXFEL run from disk (written to a temporary directory first) instead
    /// of the in-memory synthetic source: one event per pulse.
    pub run: Option<Simulation>,
    /// Read a simulated LCLS-II run (XTC2, written to a temporary directory first) instead: one
    /// event per L1Accept, its Jungfrau frame reduced.
    pub xtc2: Option<Xtc2Simulation>,
    /// Panic while reducing this event id: shows (and tests) how a failing worker ends a run.
    pub fail_at: Option<EventId>,
    /// The detector of the synthetic shots (one module of the frame's shape); default: a flat
    /// panel 12 cm from the sample, beam at its centre ([`flat_detector`]). A simulated run's
    /// detector is its [`Simulation::geometry`] (default: [`run_detector`]).
    pub geometry: Option<Arc<Detector>>,
    /// Calibrate the raw module frames with these constants (one per module, or one for all)
    /// before reducing them: then photons, ROI sums and profiles are in the constants' unit
    /// (photons for [`demo_constants`]) and no pedestal is subtracted.
    pub constants: Option<Arc<Vec<ModuleConstants>>>,
}

/// Constants that calibrate the simulated detector into photons: JUNGFRAU's layout (one
/// storage cell, every pixel in high gain), the pedestal [`PEDESTAL`] and a gain of
/// [`PHOTON_ADU`] per photon of [`ENERGY_KEV`] (in ADU/keV), output in photons. A demo run
/// with them gives the same curve as without (`shotflow demo --write-constants FILE`).
pub fn demo_constants(shape: [usize; 2]) -> ModuleConstants {
    let pedestal = ndarray::Array4::from_elem((3, 1, shape[0], shape[1]), PEDESTAL as f32);
    let gain = ndarray::Array4::from_elem(
        (3, 1, shape[0], shape[1]),
        (PHOTON_ADU as f64 / ENERGY_KEV) as f32,
    );
    let unit = Unit::Photons {
        energy: ENERGY_KEV as f32,
    };
    ModuleConstants::Jungfrau(
        JungfrauConstants::new(pedestal, gain.view(), None, unit).expect("matching shapes"),
    )
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            source: Synthetic::default(),
            energy_cut: 0.7,
            fail_at: None,
            output: None,
            run: None,
            xtc2: None,
            geometry: None,
            constants: None,
        }
    }
}

/// The demo's smalldata output at `path`: per-shot rows, with statistics of the photon count
/// and the ROI sum and a histogram of the pulse energy as run summaries.
pub fn demo_output(path: impl Into<std::path::PathBuf>) -> SmallData {
    SmallData::new(path)
        .stats("photons")
        .stats("roi_sum")
        .histogram("pulse_energy", 0.0, 3.0, 30)
}

/// One shot reduced to a row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShotRow {
    /// Event id.
    pub id: EventId,
    /// Pulse energy, mJ.
    pub pulse_energy: f64,
    /// Delay, ps.
    pub delay: f64,
    /// Pump laser fired.
    pub laser_on: bool,
    /// Photons counted in the frame (0 without a frame).
    pub photons: u64,
    /// Sum of the pixels at or above half a photon in the central region, ADU.
    pub roi_sum: f64,
    /// Azimuthal profile of the frame, mean ADU above pedestal per q bin ([`AZAV_BINS`]).
    pub azav: Vec<f32>,
}

impl ShotRow {
    /// The row as an event, for the smalldata sink.
    pub fn to_event(&self) -> Event {
        Event::with_capacity(self.id, 5)
            .with(Key::new("pulse_energy"), self.pulse_energy)
            .with(Key::new("delay"), self.delay)
            .with(Key::new("laser_on"), self.laser_on)
            .with(Key::new("photons"), self.photons)
            .with(Key::new("roi_sum"), self.roi_sum)
            .with(Key::new("azav"), self.azav.clone())
    }
}

impl HasEventId for ShotRow {
    fn event_id(&self) -> EventId {
        self.id
    }
}

/// The region summed in [`ShotRow::roi_sum`] for a frame of `[rows, cols]`: the middle half.
pub fn demo_roi(shape: [usize; 2]) -> Roi {
    Roi::new(
        shape[0] / 4..3 * shape[0] / 4,
        shape[1] / 4..3 * shape[1] / 4,
    )
}

/// q bins of the demo's azimuthal profile.
pub const AZAV_BINS: usize = 64;

/// Photon energy of the demo when the geometry does not give one, keV.
pub const ENERGY_KEV: f64 = 9.3;

/// What the azimuthal profile corrects for, as a pyFAI user would: solid angle, and the
/// horizontal polarisation of an XFEL beam.
pub const CORRECTIONS: Corrections = Corrections {
    solid_angle: true,
    polarization: Some(0.99),
};

/// The synthetic shots' detector: one flat panel of `shape` 200 µm pixels (AGIPD's), 12 cm
/// from the sample, beam at its centre.
pub fn flat_detector(shape: [usize; 2]) -> Detector {
    let pixel = 2e-4;
    Poni {
        distance: 0.12,
        poni1: shape[0] as f64 / 2.0 * pixel,
        poni2: shape[1] as f64 / 2.0 * pixel,
        rot1: 0.0,
        rot2: 0.0,
        rot3: 0.0,
        pixel1: pixel,
        pixel2: pixel,
        shape: Some((shape[0], shape[1])),
        wavelength: None,
    }
    .detector(None)
    .expect("a panel with pixels")
}

/// A simulated run's default detector: the first `modules` modules of AGIPD 1M's layout
/// (extra_geom's from_quad_positions), scaled to `frame` when it is not 512×128.
pub fn run_detector(modules: usize, frame: [usize; 2]) -> Result<Detector, GeometryError> {
    run_layout(modules, frame).detector()
}

/// The layout of [`run_detector`].
pub fn run_layout(modules: usize, frame: [usize; 2]) -> AgipdLayout {
    AgipdLayout {
        modules,
        module_shape: (frame[0], frame[1]),
        photon_energy_ev: ENERGY_KEV * 1e3,
        ..AgipdLayout::default()
    }
}

/// A detector's azimuthal map, with what the frames' pedestal adds to each bin.
struct Profile {
    detector: Arc<Detector>,
    map: AzimuthalMap,
    pedestal: Vec<f64>,
}

thread_local! {
    /// Maps per detector: built once per worker, used for every frame.
    static PROFILES: std::cell::RefCell<Vec<Arc<Profile>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The block of calibrated rows between calibration and reductions (`--constants`),
    /// reused from frame to frame.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Flat panels per frame shape, for the synthetic shots.
    static FLAT: std::cell::RefCell<Vec<([usize; 2], Arc<Detector>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The demo's photon counter.
const COUNTER: PhotonCounter = PhotonCounter::new(PEDESTAL as f64, PHOTON_ADU as f64);

/// The flat panel of a frame shape, made once per worker.
fn flat(shape: &[usize; 2]) -> Arc<Detector> {
    FLAT.with(|flat| {
        let mut flat = flat.borrow_mut();
        if let Some((_, d)) = flat.iter().find(|(s, _)| s == shape) {
            return Arc::clone(d);
        }
        let d = Arc::new(flat_detector(*shape));
        flat.push((*shape, Arc::clone(&d)));
        d
    })
}

fn profile(detector: &Arc<Detector>) -> Arc<Profile> {
    PROFILES.with(|profiles| {
        let mut profiles = profiles.borrow_mut();
        if let Some(p) = profiles
            .iter()
            .find(|p| Arc::ptr_eq(&p.detector, detector) || p.detector == *detector)
        {
            return Arc::clone(p);
        }
        let energy = detector.photon_energy_ev.map_or(ENERGY_KEV, |ev| ev / 1e3);
        let map = AzimuthalMap::for_detector(
            detector,
            energy,
            Radial::QInvNm,
            AZAV_BINS,
            None,
            1,
            CORRECTIONS,
            None,
        )
        .expect("bins over the detector's q range");
        let pedestal = map
            .counts()
            .iter()
            .map(|&c| c as f64 * PEDESTAL as f64)
            .collect();
        let p = Arc::new(Profile {
            detector: Arc::clone(detector),
            map,
            pedestal,
        });
        profiles.push(Arc::clone(&p));
        p
    })
}

/// Photons, the ROI sum (pixels from half a photon up, in the middle half of every module)
/// and the azimuthal profile (ADU above pedestal per q bin, corrected) of a detector's 2-D u16
/// module frames, `(module, frame)`; zeros and no profile without a frame.
///
/// With `constants`, each module frame is calibrated first (module `m` by `constants[m]`, or
/// all by the one set given) and reduced in the constants' unit: photons of size 1, the ROI
/// from half a photon, no pedestal.
fn frame_stats(
    frames: &[(usize, ArrayView2<'_, u16>)],
    detector: &Arc<Detector>,
    constants: Option<&[ModuleConstants]>,
) -> (u64, f64, Vec<f32>) {
    if frames.is_empty() {
        return (0, 0.0, Vec::new());
    }
    let profile = profile(detector);
    let (_, rows, columns) = detector.shape();
    let threshold = PEDESTAL as f64 + PHOTON_ADU as f64 / 2.0;
    let mut sums = vec![0.0; AZAV_BINS];
    let (mut photons, mut roi_sum) = (0, 0.0);
    if let Some(constants) = constants {
        // Calibrated and reduced in one pass (`shotflow_operators::fused`): the same bits as
        // calibrating the frame, then counting photons, summing the region and integrating,
        // without the calibrated frame written out.
        let mut reductions = Reductions {
            adu_per_photon: Some(1.0),
            rois: vec![(demo_roi([rows, columns]), Some(0.5))],
            azimuthal: Some(&profile.map),
            azimuthal_at: 0,
        };
        SCRATCH.with_borrow_mut(|scratch| {
            for (module, frame) in frames {
                let c = &constants[if constants.len() == 1 { 0 } else { *module }];
                reductions.azimuthal_at = module * rows * columns;
                let (reduced, _) = c
                    .calibrate_reduce(Isa::detect(), frame.into_dyn(), 0, &reductions, scratch)
                    .expect("constants checked against the frames' shape at start");
                photons += reduced.photons;
                roi_sum += reduced.rois[0].sum;
                for (s, v) in sums.iter_mut().zip(&reduced.azimuthal) {
                    *s += v;
                }
            }
        });
        let azav = profile.map.normalize(&sums);
        return (photons, roi_sum, azav.iter().map(|v| *v as f32).collect());
    }
    for (module, frame) in frames {
        let shape = [frame.nrows(), frame.ncols()];
        assert_eq!(
            shape,
            [rows, columns],
            "module frames of the detector's shape"
        );
        photons += COUNTER.count(*frame);
        roi_sum += roi_stats(*frame, demo_roi(shape), Some(threshold)).sum;
        let pixels = frame.as_slice().expect("frames in standard layout");
        profile
            .map
            .accumulate_part(module * rows * columns, pixels, &mut sums);
    }
    // Subtracting the pedestal from the sums, not from every pixel, keeps the raw u16 kernel.
    sums.iter_mut()
        .zip(&profile.pedestal)
        .for_each(|(s, p)| *s -= p);
    let azav = profile
        .map
        .normalize(&sums)
        .iter()
        .map(|v| *v as f32)
        .collect();
    (photons, roi_sum, azav)
}

/// Reduces one synthetic event to a row (the demo's per-event map, usable on its own).
pub fn reduce(config: &DemoConfig, event: &Event) -> ShotRow {
    let keys = config.source.keys();
    let frame = event.array::<u16>(keys.frame).map(|f| {
        f.into_dimensionality::<Ix2>()
            .expect("detector frames are 2-D")
    });
    let (photons, roi_sum, azav) = match frame {
        Some(frame) => {
            let detector = config
                .geometry
                .clone()
                .unwrap_or_else(|| flat(&[frame.nrows(), frame.ncols()]));
            frame_stats(
                &[(0, frame)],
                &detector,
                config.constants.as_deref().map(Vec::as_slice),
            )
        }
        None => (0, 0.0, Vec::new()),
    };
    ShotRow {
        id: event.id,
        pulse_energy: event.get_f64(keys.pulse_energy).unwrap_or(f64::NAN),
        delay: event.get_f64(keys.delay).unwrap_or(f64::NAN),
        laser_on: event.get::<bool>(keys.laser_on).unwrap_or(false),
        photons,
        roi_sum,
        azav,
    }
}

/// The fields of a simulated run that the demo reads, and the detector its modules make.
#[derive(Clone, Debug)]
pub struct RunKeys {
    /// Detector frames, one field per module, `[frames, rows, cols]` per train.
    pub frames: Vec<Key>,
    /// Pulse ids of the frames (module 0's).
    pub pulse_id: Key,
    /// XGM per-pulse energies, µJ, `[1000]` per train.
    pub intensity: Key,
    /// Delay motor position, ps.
    pub delay: Key,
    /// Pump-laser shutter, 0 or 1.
    pub shutter: Key,
    /// The detector.
    pub detector: Arc<Detector>,
    /// Constants to calibrate the module frames with first (see [`DemoConfig::constants`]).
    pub constants: Option<Arc<Vec<ModuleConstants>>>,
}

impl RunKeys {
    /// The fields of a run of `detector`'s modules.
    pub fn new(detector: Arc<Detector>) -> RunKeys {
        let module = names::agipd(0);
        RunKeys {
            frames: (0..detector.shape().0)
                .map(|m| Key::new(&format!("{}/image.data", names::agipd(m))))
                .collect(),
            pulse_id: Key::new(&format!("{module}/image.pulseId")),
            intensity: Key::new(&format!("{}/data.intensityTD", names::XGM_OUTPUT)),
            delay: Key::new(&format!("{}/actualPosition.value", names::DELAY)),
            shutter: Key::new(&format!("{}/isOpen.value", names::SHUTTER)),
            detector,
            constants: None,
        }
    }

    /// What the demo selects from a simulated run.
    pub fn selectors(&self) -> Vec<Selector> {
        (0..self.frames.len())
            .map(|m| format!("{}:image.data", names::agipd(m)))
            .chain([
                format!("{}:image.pulseId", names::agipd(0)),
                format!("{}:data.intensityTD", names::XGM_OUTPUT),
                format!("{}:actualPosition.value", names::DELAY),
                format!("{}:isOpen.value", names::SHUTTER),
            ])
            .map(|s| Selector::parse(&s).expect("valid selector"))
            .collect()
    }
}

/// The detector of a simulated run: its geometry, or the default [`run_detector`].
pub fn simulated_detector(simulation: &Simulation) -> Result<Arc<Detector>, GeometryError> {
    match &simulation.geometry {
        Some(d) => Ok(Arc::clone(d)),
        None => run_detector(simulation.modules, simulation.frame).map(Arc::new),
    }
}

/// Keeps the XGM energies of the recorded pulses only, so that exploding the train gives each
/// pulse its own energy.
pub fn pulse_energies_per_frame(mut train: Event, keys: &RunKeys) -> Event {
    let frames = train
        .value(keys.pulse_id)
        .map(|v| v.shape().first().copied().unwrap_or(0));
    if let (Some(n), Some(xgm)) = (frames, train.array::<f32>(keys.intensity)) {
        let energies: Vec<f32> = xgm.iter().take(n).copied().collect();
        train.set(keys.intensity, energies);
    }
    train
}

/// Reduces one pulse event of a simulated run to a row.
pub fn reduce_pulse(event: &Event, keys: &RunKeys) -> ShotRow {
    let frames: Vec<(usize, ArrayView2<'_, u16>)> = keys
        .frames
        .iter()
        .enumerate()
        .filter_map(|(m, key)| {
            let frame = event.array::<u16>(*key)?;
            Some((
                m,
                frame
                    .into_dimensionality::<Ix2>()
                    .expect("detector frames are 2-D"),
            ))
        })
        .collect();
    let constants = keys.constants.as_deref().map(Vec::as_slice);
    let (photons, roi_sum, azav) = frame_stats(&frames, &keys.detector, constants);
    ShotRow {
        id: event.id,
        pulse_energy: event
            .get_f64(keys.intensity)
            .map_or(f64::NAN, |uj| uj / 1000.0),
        delay: event.get_f64(keys.delay).unwrap_or(f64::NAN),
        laser_on: event.get_f64(keys.shutter).is_some_and(|v| v != 0.0),
        photons,
        roi_sum,
        azav,
    }
}

/// What the demo reads of a simulated XTC2 run.
pub fn xtc2_selectors() -> Vec<Xtc2Selector> {
    [
        "jungfrau:raw:raw",
        "gmd:raw:energy",
        "evr:raw:laser",
        "scan:raw:delay",
    ]
    .iter()
    .map(|s| Xtc2Selector::parse(s).expect("valid selector"))
    .collect()
}

/// Reduces one event of a simulated XTC2 run to a row: the Jungfrau's one module integrated
/// over its flat panel, the pulse energy from the gas monitor, the delay from the scan's step
/// value, the laser from the event receiver.
pub fn reduce_xtc2(event: &Event) -> ShotRow {
    reduce_xtc2_calibrated(event, None)
}

/// [`reduce_xtc2`], the Jungfrau's frame calibrated with `constants` first.
pub fn reduce_xtc2_calibrated(event: &Event, constants: Option<&[ModuleConstants]>) -> ShotRow {
    let frame = event
        .array::<u16>(Key::new("jungfrau/raw/raw"))
        .and_then(|f| {
            f.index_axis_move(ndarray::Axis(0), 0)
                .into_dimensionality::<Ix2>()
                .ok()
        });
    let (photons, roi_sum, azav) = match frame {
        Some(frame) => {
            let detector = flat(&[frame.nrows(), frame.ncols()]);
            frame_stats(&[(0, frame)], &detector, constants)
        }
        None => (0, 0.0, Vec::new()),
    };
    ShotRow {
        id: event.id,
        pulse_energy: event
            .get_f64(Key::new("gmd/raw/energy"))
            .unwrap_or(f64::NAN),
        delay: event
            .get_f64(Key::new("scan/raw/delay"))
            .unwrap_or(f64::NAN),
        laser_on: event.get::<u8>(Key::new("evr/raw/laser")) == Some(1),
        photons,
        roi_sum,
        azav,
    }
}

/// Normalised signal (photons per mJ) at one delay: a view of the curve's scan bins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DelayPoint {
    /// Delay, ps.
    pub delay: f64,
    /// Shots with the laser on.
    pub n_on: u64,
    /// Sum of photons / pulse energy, laser on.
    pub sum_on: f64,
    /// Shots with the laser off.
    pub n_off: u64,
    /// Sum of photons / pulse energy, laser off.
    pub sum_off: f64,
}

impl DelayPoint {
    /// Mean normalised signal with the laser on.
    pub fn mean_on(&self) -> f64 {
        self.sum_on / self.n_on as f64
    }
    /// Mean normalised signal with the laser off.
    pub fn mean_off(&self) -> f64 {
        self.sum_off / self.n_off as f64
    }
}

/// The pump-probe curve: the operators crate's scan binning by delay set point, laser on and
/// off. Rows are added in event order (the demo's ordered sink on worker 0, or a sequential
/// reference in the tests), so the sums have the same bits at any worker count.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// Rows kept.
    pub kept: u64,
    /// Photons per mJ, binned by delay and laser state.
    pub bins: ScanBins,
}

impl Default for Curve {
    fn default() -> Self {
        Curve {
            kept: 0,
            bins: ScanBins::new(ScanAxis::SetPoints),
        }
    }
}

impl Curve {
    /// Adds one row.
    pub fn add(&mut self, row: &ShotRow) {
        self.kept += 1;
        let signal = row.photons as f64 / row.pulse_energy;
        self.bins.add(row.delay, row.laser_on, signal, &[]);
    }

    /// The points in increasing delay.
    pub fn sorted(&self) -> Vec<DelayPoint> {
        let mut points: Vec<DelayPoint> = Vec::new();
        for (delay, laser_on, sums) in self.bins.iter() {
            if points
                .last()
                .is_none_or(|p| p.delay.to_bits() != delay.to_bits())
            {
                points.push(DelayPoint {
                    delay,
                    ..DelayPoint::default()
                });
            }
            let point = points.last_mut().expect("pushed");
            if laser_on {
                (point.n_on, point.sum_on) = (sums.count, sums.sum);
            } else {
                (point.n_off, point.sum_off) = (sums.count, sums.sum);
            }
        }
        points
    }
}

/// The delays the demo's scan visits, in increasing order: the axis of the pump-probe curve
/// it saves into its output.
pub fn delay_set_points(config: &DemoConfig) -> Vec<f64> {
    let mut delays: Vec<f64> = if let Some(x) = &config.xtc2 {
        let steps = x.events.div_ceil(x.events_per_step.max(1));
        (0..steps).map(|s| x.delay(s)).collect()
    } else if let Some(run) = &config.run {
        (0..run.trains).map(|t| run.delay(t)).collect()
    } else {
        let source = &config.source;
        let steps = source.delay_steps.max(1) as u64;
        let per_step = source.events.div_ceil(steps).max(1);
        (0..steps)
            .map(|s| s * per_step)
            .take_while(|&i| i < source.events)
            .map(|i| source.delay_of(i))
            .collect()
    };
    delays.sort_by(f64::total_cmp);
    delays.dedup_by(|a, b| a.to_bits() == b.to_bits());
    delays
}

/// One batch's share of the pump-probe curve over fixed delays: what the demo contributes to
/// the saved summaries `pump_probe/{n_on,sum_on,n_off,sum_off}` (reduced by sum).
#[derive(Clone, Debug, Default)]
pub struct CurveSums {
    n_on: Vec<u64>,
    sum_on: Vec<f64>,
    n_off: Vec<u64>,
    sum_off: Vec<f64>,
}

impl CurveSums {
    /// Adds one row at its delay's place among `delays`. A delay off the scan's set points
    /// (none in the demo's own data) adds nothing; the printed curve still has it.
    pub fn add(&mut self, delays: &[f64], row: &ShotRow) {
        if self.n_on.len() != delays.len() {
            *self = CurveSums::sized(delays.len());
        }
        let Some(k) = delays
            .iter()
            .position(|d| d.to_bits() == row.delay.to_bits())
        else {
            return;
        };
        let signal = row.photons as f64 / row.pulse_energy;
        if row.laser_on {
            self.n_on[k] += 1;
            self.sum_on[k] += signal;
        } else {
            self.n_off[k] += 1;
            self.sum_off[k] += signal;
        }
    }

    fn sized(n: usize) -> CurveSums {
        CurveSums {
            n_on: vec![0; n],
            sum_on: vec![0.0; n],
            n_off: vec![0; n],
            sum_off: vec![0.0; n],
        }
    }

    /// The saved summaries' fields.
    pub fn fields(self, event: &mut Event) {
        event.set(Key::new("pump_probe/n_on"), self.n_on);
        event.set(Key::new("pump_probe/sum_on"), self.sum_on);
        event.set(Key::new("pump_probe/n_off"), self.n_off);
        event.set(Key::new("pump_probe/sum_off"), self.sum_off);
    }
}

/// Upper edge of the dashboard's photons-per-shot histogram.
const PHOTON_BINS_TOP: f64 = 1200.0;

/// Publishes the pump-probe curve so far and the photons-per-shot histogram to the dashboard.
fn publish_curve(curve: &Curve, photons: &Histogram) {
    let points = curve.sorted();
    publish(
        "pump-probe",
        Plot::Series {
            x_label: "delay / ps".into(),
            y_label: "photons / mJ".into(),
            x: points.iter().map(|p| p.delay).collect(),
            lines: vec![
                (
                    "laser on".into(),
                    points.iter().map(DelayPoint::mean_on).collect(),
                ),
                (
                    "laser off".into(),
                    points.iter().map(DelayPoint::mean_off).collect(),
                ),
                (
                    "on - off".into(),
                    points.iter().map(|p| p.mean_on() - p.mean_off()).collect(),
                ),
            ],
        },
    );
    publish(
        "photons per shot",
        Plot::Histogram {
            x_label: "photons".into(),
            edges: photons.edges(),
            counts: photons.counts.clone(),
        },
    );
}

/// What the demo found.
#[derive(Clone, Debug)]
pub struct DemoReport {
    /// Events produced by the source.
    pub events: u64,
    /// The pump-probe curve of the kept events.
    pub curve: Curve,
    /// Wall time of the dataflow on this process: reading and reducing, not simulating.
    pub elapsed: Duration,
    /// Wall time spent writing the simulated input to disk before the dataflow started.
    pub simulating: Duration,
    /// Where it ran.
    pub plan: String,
    /// What it read.
    pub input: String,
}

/// Runs the demo on `plan` with the run `settings`. Returns the report on process 0 (worker 0
/// collects the results) and `None` on other processes.
pub fn run(
    config: &DemoConfig,
    plan: &Plan,
    mut settings: Settings,
) -> Result<Option<DemoReport>, RunError> {
    let started = Instant::now();
    let config = config.clone();
    if let Some(output) = &config.output {
        // A resumed run's sources skip what the output committed.
        settings.start = output
            .prepare(plan.process())
            .map_err(|e| RunError::Launch(e.to_string()))?;
    }
    // Every process writes the same (deterministic) run into its own directory, so processes
    // on hosts without a shared filesystem read identical data.
    let simulated = match &config.run {
        Some(simulation) => {
            // The photons follow the detector the profile integrates over.
            let detector = simulated_detector(simulation)
                .map_err(|e| RunError::Launch(format!("the demo's detector: {e}")))?;
            let simulation = Simulation {
                geometry: Some(Arc::clone(&detector)),
                ..simulation.clone()
            };
            let dir = std::env::temp_dir().join(format!("shotflow-demo-{}", std::process::id()));
            simulation
                .write(&dir)
                .map_err(|e| RunError::Launch(format!("simulating the demo run: {e}")))?;
            let keys = RunKeys {
                constants: config.constants.clone(),
                ..RunKeys::new(detector)
            };
            let run = ExdfRun::open(&dir).map_err(|e| RunError::Launch(e.to_string()))?;
            let selected = run
                .select(&keys.selectors())
                .map_err(|e| RunError::Launch(e.to_string()))?;
            Some((dir, Arc::new(run), Arc::new(selected), keys))
        }
        None => None,
    };
    let input = simulated
        .as_ref()
        .map(|(_, run, selected, keys)| (Arc::clone(run), Arc::clone(selected), keys.clone()));
    let lcls = match &config.xtc2 {
        Some(simulation) => {
            let dir =
                std::env::temp_dir().join(format!("shotflow-demo-xtc2-{}", std::process::id()));
            simulation
                .write(&dir)
                .map_err(|e| RunError::Launch(format!("simulating the demo's XTC2 run: {e}")))?;
            let run = Xtc2Run::open(&dir).map_err(|e| RunError::Launch(e.to_string()))?;
            Some((dir, Arc::new(run)))
        }
        None => None,
    };
    let xtc2_run = lcls.as_ref().map(|(_, run)| Arc::clone(run));
    let delays = Arc::new(delay_set_points(&config));
    let mut shared = config.clone();
    shared.output = shared
        .output
        .map(|output| output.save("pump_probe/delay", delays.to_vec()));
    // The rate the demo reports is the pipeline's, not the simulator's.
    let simulating = if simulated.is_some() || lcls.is_some() {
        started.elapsed()
    } else {
        Duration::ZERO
    };
    let started = Instant::now();
    let results = execute_with(plan, settings, move |worker| {
        let config = &shared;
        let curve = Arc::new(Mutex::new(Curve::default()));
        let produced = Arc::new(Mutex::new(0u64));
        let (cut, fail_at) = (config.energy_cut, config.fail_at);
        let demo = config.clone();
        let output = config.output.clone();
        let (c, p) = (Arc::clone(&curve), Arc::clone(&produced));
        let input = input.clone();
        let xtc2_run = xtc2_run.clone();
        let constants = config.constants.clone();
        let delays = Arc::clone(&delays);
        worker.dataflow(|scope| {
            let rows = match (input, xtc2_run) {
                (_, Some(run)) => {
                    scope
                        .xtc2(run, Arc::new(xtc2_selectors()), 64)
                        .map(move |event| {
                            reduce_xtc2_calibrated(&event, constants.as_deref().map(Vec::as_slice))
                        })
                }
                (Some((run, selected, keys)), None) => {
                    let per_train = keys.clone();
                    scope
                        .exdf(run, selected, 2)
                        .map(move |train| pulse_energies_per_frame(train, &per_train))
                        .explode_pulses(keys.pulse_id)
                        .map(move |pulse| reduce_pulse(&pulse, &keys))
                }
                (None, None) => scope
                    .synthetic(&config.source)
                    .map(move |event| reduce(&demo, &event)),
            }
            .map(move |row| {
                if fail_at == Some(row.id) {
                    panic!("injected failure at event {}", row.id);
                }
                row
            });
            // Every worker reports how many rows it made, so worker 0 can count the whole run.
            rows.clone()
                .map(|row| (row.id, 1u64))
                .ordered("Produced", move |_batch, rows| {
                    *p.lock().unwrap() += rows.len() as u64
                });
            let kept = rows.filter(move |row| row.pulse_energy >= cut);
            if let Some(smalldata) = output {
                // The curve's sums go into the output too, one contribution per batch where
                // the batch was reduced, so a notebook reads the curve from the file.
                let delays = Arc::clone(&delays);
                let saved = kept.clone().save_per_batch(
                    Reduce::Sum,
                    move |sums: &mut CurveSums, row: &ShotRow| sums.add(&delays, row),
                    CurveSums::fields,
                );
                kept.clone()
                    .map(|row| Row::from(row.to_event()))
                    .concat(saved)
                    .smalldata(smalldata);
            }
            // The dashboard's result plots (when one runs) follow the curve batch by batch.
            let mut photons = Histogram::new(0.0, PHOTON_BINS_TOP, 60);
            kept.ordered("PumpProbe", move |_batch, rows: &[ShotRow]| {
                let mut curve = c.lock().unwrap();
                rows.iter().for_each(|row| curve.add(row));
                photons.extend(rows.iter().map(|row| row.photons as f64));
                publish_curve(&curve, &photons);
            });
        });
        shotflow::runtime::run_to_completion(worker)?;
        let curve = std::mem::take(&mut *curve.lock().unwrap());
        let events = *produced.lock().unwrap();
        Ok::<_, shotflow::runtime::Aborted>((worker.index(), curve, events))
    });
    if let Some((dir, _, _, _)) = &simulated {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some((dir, _)) = &lcls {
        let _ = std::fs::remove_dir_all(dir);
    }
    let results = results?;
    Ok(results
        .into_iter()
        .find(|(index, _, _)| *index == 0)
        .map(|(_, curve, events)| DemoReport {
            events,
            curve,
            elapsed: started.elapsed(),
            simulating,
            plan: plan.describe(),
            input: match (&config.run, &config.xtc2) {
                (_, Some(x)) => format!(
                    "simulated LCLS-II run (XTC2) read from disk ({} events, Jungfrau {}×{})",
                    x.events, x.frame[0], x.frame[1]
                ),
                (Some(s), None) => {
                    let (modules, [rows, columns]) = s.layout();
                    format!(
                        "simulated EuXFEL run read from disk ({} trains × {} pulses, {modules} \
                         detector modules of {rows}×{columns})",
                        s.trains, s.frames
                    )
                }
                (None, None) => "synthetic pump-probe shots".to_string(),
            },
        }))
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        writeln!(f, "shotflow demo: {} on {}", self.input, self.plan)?;
        writeln!(
            f,
            "  events {:>9}   kept {:>9} ({:.1}%)   {:.3} s   {:.0} events/s (reading and reducing)",
            self.events,
            self.curve.kept,
            100.0 * self.curve.kept as f64 / self.events.max(1) as f64,
            seconds,
            self.events as f64 / seconds
        )?;
        if !self.simulating.is_zero() {
            writeln!(
                f,
                "  (before that, {:.3} s simulating the input onto disk)",
                self.simulating.as_secs_f64()
            )?;
        }
        writeln!(
            f,
            "  {:>9} {:>8} {:>14} {:>8} {:>14} {:>12}",
            "delay/ps", "n(on)", "photons/mJ on", "n(off)", "photons/mJ off", "on - off"
        )?;
        for p in self.curve.sorted() {
            writeln!(
                f,
                "  {:>9.3} {:>8} {:>14.2} {:>8} {:>14.2} {:>12.2}",
                p.delay,
                p.n_on,
                p.mean_on(),
                p.n_off,
                p.mean_off(),
                p.mean_on() - p.mean_off()
            )?;
        }
        Ok(())
    }
}
