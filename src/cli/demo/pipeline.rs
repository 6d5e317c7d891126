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
//! Frames never leave the worker that generated them; only the reduced rows move.

#![allow(dead_code)] // the binary uses part of it, the tests the rest

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shotflow::event::{Event, EventId, HasEventId, Key};
use shotflow::exdf::simulate::{names, Simulation};
use shotflow::exdf::{ExdfRun, ExdfSource, ExplodePulses, Selector};
use shotflow::flow::Settings;
use shotflow::runtime::{execute_with, Plan, RunError};
use shotflow::sink::SinkExt;
use shotflow::smalldata::{SmallData, SmallDataExt};
use shotflow::source::synthetic::{PEDESTAL, PHOTON_ADU};
use shotflow::source::{Synthetic, SyntheticSource};
use shotflow_operators::azimuthal::{AzimuthalMap, Geometry, Radial};
use shotflow_operators::binning::{ScanAxis, ScanBins};
use shotflow_operators::photons::PhotonCounter;
use shotflow_operators::roi::{roi_stats, Roi};
use timely::dataflow::operators::vec::{Filter, Map};

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
    /// Panic while reducing this event id: shows (and tests) how a failing worker ends a run.
    pub fail_at: Option<EventId>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            source: Synthetic::default(),
            energy_cut: 0.7,
            fail_at: None,
            output: None,
            run: None,
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

/// The demo's detector geometry: 200 µm pixels (AGIPD), 12 cm from the sample, 9.3 keV, beam
/// at the frame centre.
pub fn demo_geometry(shape: [usize; 2]) -> Geometry {
    Geometry {
        distance: 0.12,
        poni1: 0.0,
        poni2: 0.0,
        pixel1: 2e-4,
        pixel2: 2e-4,
        energy_kev: 9.3,
    }
    .with_center(shape[0] as f64 / 2.0, shape[1] as f64 / 2.0)
}

type Maps = Vec<([usize; 2], AzimuthalMap)>;

thread_local! {
    /// Pixel maps per frame shape: built once per worker, used for every frame.
    static MAPS: std::cell::RefCell<Maps> = const { std::cell::RefCell::new(Vec::new()) };
    static COUNTER: PhotonCounter = PhotonCounter::new(PEDESTAL as f64, PHOTON_ADU as f64);
}

/// Photons, the central ROI sum (pixels from half a photon up) and the azimuthal profile
/// (mean ADU above pedestal per q bin) of a 2-D u16 frame field; zeros and no profile without
/// a frame.
fn frame_stats(event: &Event, key: Key) -> (u64, f64, Vec<f32>) {
    let Some(frame) = event.array::<u16>(key) else {
        return (0, 0.0, Vec::new());
    };
    let frame = frame
        .into_dimensionality::<ndarray::Ix2>()
        .expect("detector frames are 2-D");
    let shape = [frame.nrows(), frame.ncols()];
    let threshold = PEDESTAL as f64 + PHOTON_ADU as f64 / 2.0;
    let azav = MAPS.with(|maps| {
        let mut maps = maps.borrow_mut();
        if !maps.iter().any(|(s, _)| *s == shape) {
            let geometry = demo_geometry(shape);
            let map = AzimuthalMap::new(
                (shape[0], shape[1]),
                &geometry,
                Radial::QInvNm,
                AZAV_BINS,
                None,
                None,
                1,
            )
            .expect("bins over the frame's q range");
            maps.push((shape, map));
        }
        let map = &maps
            .iter()
            .find(|(s, _)| *s == shape)
            .expect("just added")
            .1;
        map.integrate(frame)
            .iter()
            .map(|v| (v - PEDESTAL as f64) as f32)
            .collect()
    });
    (
        COUNTER.with(|c| c.count(frame)),
        roi_stats(frame, demo_roi(shape), Some(threshold)).sum,
        azav,
    )
}

/// Reduces one synthetic event to a row (the demo's per-event map, usable on its own).
pub fn reduce(config: &Synthetic, event: &Event) -> ShotRow {
    let keys = config.keys();
    let (photons, roi_sum, azav) = frame_stats(event, keys.frame);
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

/// The fields of a simulated run that the demo reads.
#[derive(Clone, Copy, Debug)]
pub struct RunKeys {
    /// Detector frames (module 0), `[frames, rows, cols]` per train.
    pub frame: Key,
    /// Pulse ids of the frames.
    pub pulse_id: Key,
    /// XGM per-pulse energies, µJ, `[1000]` per train.
    pub intensity: Key,
    /// Delay motor position, ps.
    pub delay: Key,
    /// Pump-laser shutter, 0 or 1.
    pub shutter: Key,
}

impl Default for RunKeys {
    fn default() -> Self {
        let module = names::agipd(0);
        RunKeys {
            frame: Key::new(&format!("{module}/image.data")),
            pulse_id: Key::new(&format!("{module}/image.pulseId")),
            intensity: Key::new(&format!("{}/data.intensityTD", names::XGM_OUTPUT)),
            delay: Key::new(&format!("{}/actualPosition.value", names::DELAY)),
            shutter: Key::new(&format!("{}/isOpen.value", names::SHUTTER)),
        }
    }
}

/// What the demo selects from a simulated run.
pub fn run_selectors() -> Vec<Selector> {
    [
        format!("{}:image.data", names::agipd(0)),
        format!("{}:image.pulseId", names::agipd(0)),
        format!("{}:data.intensityTD", names::XGM_OUTPUT),
        format!("{}:actualPosition.value", names::DELAY),
        format!("{}:isOpen.value", names::SHUTTER),
    ]
    .iter()
    .map(|s| Selector::parse(s).expect("valid selector"))
    .collect()
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
    let (photons, roi_sum, azav) = frame_stats(event, keys.frame);
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

/// What the demo found.
#[derive(Clone, Debug)]
pub struct DemoReport {
    /// Events produced by the source.
    pub events: u64,
    /// The pump-probe curve of the kept events.
    pub curve: Curve,
    /// Wall time of the dataflow on this process.
    pub elapsed: Duration,
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
            let dir = std::env::temp_dir().join(format!("shotflow-demo-{}", std::process::id()));
            simulation
                .write(&dir)
                .map_err(|e| RunError::Launch(format!("simulating the demo run: {e}")))?;
            let run = ExdfRun::open(&dir).map_err(|e| RunError::Launch(e.to_string()))?;
            let selected = run
                .select(&run_selectors())
                .map_err(|e| RunError::Launch(e.to_string()))?;
            Some((dir, Arc::new(run), Arc::new(selected)))
        }
        None => None,
    };
    let input = simulated
        .as_ref()
        .map(|(_, run, selected)| (Arc::clone(run), Arc::clone(selected)));
    let results = execute_with(plan, settings, move |worker| {
        let curve = Arc::new(Mutex::new(Curve::default()));
        let produced = Arc::new(Mutex::new(0u64));
        let (source, cut, fail_at) = (config.source.clone(), config.energy_cut, config.fail_at);
        let output = config.output.clone();
        let (c, p) = (Arc::clone(&curve), Arc::clone(&produced));
        let input = input.clone();
        worker.dataflow(|scope| {
            let rows = match input {
                Some((run, selected)) => {
                    let keys = RunKeys::default();
                    scope
                        .exdf(run, selected, 2)
                        .map(move |train| pulse_energies_per_frame(train, &keys))
                        .explode_pulses(keys.pulse_id)
                        .map(move |pulse| reduce_pulse(&pulse, &keys))
                }
                None => scope
                    .synthetic(&source)
                    .map(move |event| reduce(&source, &event)),
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
                kept.clone().map(|row| row.to_event()).smalldata(smalldata);
            }
            kept.ordered("PumpProbe", move |_batch, rows: &[ShotRow]| {
                let mut curve = c.lock().unwrap();
                rows.iter().for_each(|row| curve.add(row));
            });
        });
        shotflow::runtime::run_to_completion(worker)?;
        let curve = std::mem::take(&mut *curve.lock().unwrap());
        let events = *produced.lock().unwrap();
        Ok::<_, shotflow::runtime::Aborted>((worker.index(), curve, events))
    });
    if let Some((dir, _, _)) = &simulated {
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
            plan: plan.describe(),
            input: match &config.run {
                Some(s) => format!(
                    "simulated EuXFEL run read from disk ({} trains × {} pulses, AGIPD module 0)",
                    s.trains, s.frames
                ),
                None => "synthetic pump-probe shots".to_string(),
            },
        }))
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        writeln!(f, "shotflow demo: {} on {}", self.input, self.plan)?;
        writeln!(
            f,
            "  events {:>9}   kept {:>9} ({:.1}%)   {:.3} s   {:.0} events/s",
            self.events,
            self.curve.kept,
            100.0 * self.curve.kept as f64 / self.events.max(1) as f64,
            seconds,
            self.events as f64 / seconds
        )?;
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
