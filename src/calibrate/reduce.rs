//! Calibrate and reduce on the stream in one pass: raw frames become their reductions
//! (photons, regions of interest, azimuthal sums) without the calibrated `f32` frame ever
//! being written (`shotflow_operators::fused`). For runs whose calibrated frames are only
//! reduced, this is the operator to use instead of [`super::Calibrate`] and a reduction.

use std::sync::Arc;

use ndarray::{Array1, Array2};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use super::Frames;
use crate::event::{Event, Key, Value};
use crate::flow::Batch;
use crate::runtime::fail;
use shotflow_operators::azimuthal::AzimuthalMap;
use shotflow_operators::fused::{Reduced, Reductions};
use shotflow_operators::gain::ModuleConstants;
use shotflow_operators::roi::Roi;
use shotflow_operators::simd::Isa;

/// What [`CalibrateReduce::calibrate_reduce`] reduces each calibrated frame to.
#[derive(Clone, Debug, Default)]
pub struct FrameReductions {
    /// Count photons of this size (in the constants' unit), rounding at half a photon.
    pub adu_per_photon: Option<f64>,
    /// Named regions of interest, each with an optional threshold below which pixels count
    /// as 0.
    pub rois: Vec<(String, Roi, Option<f64>)>,
    /// Integrate azimuthally through this map of one frame's pixels (its per-bin sums;
    /// [`AzimuthalMap::normalize`] makes the profile).
    pub azimuthal: Option<Arc<AzimuthalMap>>,
}

/// Calibrates a frame field of every event and keeps only its reductions.
pub trait CalibrateReduce<'scope> {
    /// Takes the raw u16 data at `frame`, as [`super::Calibrate::calibrate`] does (the same
    /// shapes, constants per module and cells), and replaces it by the reductions of each
    /// calibrated frame, computed in the same pass:
    ///
    /// * `<frame>_photons` (u64) with `adu_per_photon`;
    /// * `<frame>_<roi>_sum`, `_mean`, `_max` (f64) and `_count` (u64) per region;
    /// * `<frame>_azimuthal` (f64, one sum per bin) with a map;
    /// * `<frame>_invalid_pixels` (u64), the pixels without a valid gain stage, as `calibrate`
    ///   counts them.
    ///
    /// For a stack of frames or modules, each field holds one value per frame (the sums of the
    /// profile as `(frames, bins)`). The values have the bits of calibrating the frame and
    /// reducing it with `shotflow_operators::fused::reduce_frame`.
    ///
    /// An event whose data do not fit the constants ends the run with a message naming the
    /// event, the field and the shapes. Events without the field pass unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use ndarray::{Array4, ArrayD};
    /// use shotflow::calibrate::{CalibrateReduce, FrameReductions};
    /// use shotflow::prelude::*;
    /// use shotflow_operators::gain::{jungfrau::{JungfrauConstants, Unit}, ModuleConstants};
    /// use shotflow_operators::roi::Roi;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// // 1100 ADU over a pedestal of 1000, 10 ADU/keV: 10 keV in every pixel.
    /// let pedestal = Array4::from_elem((3, 1, 4, 4), 1000.0f32);
    /// let gain = Array4::from_elem((3, 1, 4, 4), 10.0f32);
    /// let module = ModuleConstants::Jungfrau(JungfrauConstants::new(pedestal, gain.view(), None, Unit::Energy).unwrap());
    /// let frame = Key::new("jungfrau/raw");
    /// let reductions = FrameReductions {
    ///     adu_per_photon: Some(10.0),
    ///     rois: vec![("centre".into(), Roi::new(1..3, 1..3), None)],
    ///     azimuthal: None,
    /// };
    /// let event = Event::new(7).with(frame, ArrayD::from_elem(vec![4, 4], 1100u16));
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let out = Arc::clone(&seen);
    /// timely::example(move |scope| {
    ///     vec![event].to_stream(scope).container::<Vec<_>>()
    ///         .calibrate_reduce(frame, Arc::new(vec![module]), None, Arc::new(reductions))
    ///         .ordered("Collect", move |_, events: &[Event]| out.lock().unwrap().extend_from_slice(events));
    /// });
    /// let events = seen.lock().unwrap();
    /// assert!(!events[0].contains(frame));
    /// assert_eq!(events[0].get::<u64>(Key::new("jungfrau/raw_photons")), Some(16));
    /// assert_eq!(events[0].get::<f64>(Key::new("jungfrau/raw_centre_sum")), Some(40.0));
    /// assert_eq!(events[0].get::<u64>(Key::new("jungfrau/raw_invalid_pixels")), Some(0));
    /// ```
    fn calibrate_reduce(
        self,
        frame: Key,
        modules: Arc<Vec<ModuleConstants>>,
        cell: Option<Key>,
        reductions: Arc<FrameReductions>,
    ) -> StreamVec<'scope, Batch, Event>;
}

/// The output fields of one frame field.
struct Outputs {
    photons: Key,
    rois: Vec<[Key; 4]>,
    azimuthal: Key,
    invalid: Key,
}

impl Outputs {
    fn new(frame: Key, reductions: &FrameReductions) -> Outputs {
        let key = |suffix: &str| Key::new(&format!("{}_{suffix}", frame.name()));
        Outputs {
            photons: key("photons"),
            rois: reductions
                .rois
                .iter()
                .map(|(name, ..)| {
                    ["sum", "mean", "max", "count"].map(|what| key(&format!("{name}_{what}")))
                })
                .collect(),
            azimuthal: key("azimuthal"),
            invalid: key("invalid_pixels"),
        }
    }
}

impl<'scope> CalibrateReduce<'scope> for StreamVec<'scope, Batch, Event> {
    fn calibrate_reduce(
        self,
        frame: Key,
        modules: Arc<Vec<ModuleConstants>>,
        cell: Option<Key>,
        reductions: Arc<FrameReductions>,
    ) -> StreamVec<'scope, Batch, Event> {
        let outputs = Outputs::new(frame, &reductions);
        let isa = Isa::detect();
        let mut scratch = Vec::new();
        let mut failed = false;
        self.map(move |mut event| {
            if failed {
                return event;
            }
            let reduced = reduce_event(
                &event,
                frame,
                &modules,
                cell,
                &reductions,
                isa,
                &mut scratch,
            );
            match reduced {
                Ok(Some((frames, stacked, invalid))) => {
                    event.remove(frame);
                    set(&mut event, &outputs, &reductions, &frames, stacked);
                    event.set(outputs.invalid, Value::U64(invalid));
                }
                Ok(None) => {}
                Err(message) => {
                    failed = true;
                    fail(format!(
                        "calibrating and reducing {} of event {}: {message}",
                        frame.name(),
                        event.id
                    ));
                }
            }
            event
        })
    }
}

/// Each frame's reductions, whether the data were a stack, and the invalid pixels of all.
type EventReductions = (Vec<Reduced>, bool, u64);

fn reduce_event(
    event: &Event,
    frame: Key,
    modules: &[ModuleConstants],
    cell: Option<Key>,
    reductions: &FrameReductions,
    isa: Isa,
    scratch: &mut Vec<f32>,
) -> Result<Option<EventReductions>, String> {
    let Some(frames) = Frames::of(event, frame, modules, cell)? else {
        return Ok(None);
    };
    let fused = Reductions {
        adu_per_photon: reductions.adu_per_photon,
        rois: reductions
            .rois
            .iter()
            .map(|(_, roi, threshold)| (roi.clone(), *threshold))
            .collect(),
        azimuthal: reductions.azimuthal.as_deref(),
        azimuthal_at: 0,
    };
    if let Some(map) = fused.azimuthal {
        if map.shape() != modules[0].pixels() {
            return Err(format!(
                "an azimuthal map of {:?} pixels for frames of {:?}",
                map.shape(),
                modules[0].pixels()
            ));
        }
    }
    let mut invalid = 0;
    let mut each = Vec::with_capacity(frames.count);
    for k in 0..frames.count {
        let (raw, constants, cell, what) = frames.get(k, modules);
        let (reduced, bad) = constants
            .calibrate_reduce(isa, raw, cell, &fused, scratch)
            .map_err(|e| format!("{what} {k}: {e}"))?;
        invalid += bad;
        each.push(reduced);
    }
    Ok(Some((each, frames.stacked, invalid)))
}

/// Sets the reductions' fields: scalars for one frame, one value per frame for a stack.
fn set(
    event: &mut Event,
    outputs: &Outputs,
    reductions: &FrameReductions,
    frames: &[Reduced],
    stacked: bool,
) {
    fn put<T>(event: &mut Event, key: Key, values: Vec<T>, stacked: bool)
    where
        T: Clone + Into<Value>,
        ndarray::ArrayD<T>: Into<Value>,
    {
        if stacked {
            event.set(key, Array1::from(values).into_dyn());
        } else {
            event.set(key, values[0].clone());
        }
    }
    if reductions.adu_per_photon.is_some() {
        put(
            event,
            outputs.photons,
            frames.iter().map(|r| r.photons).collect(),
            stacked,
        );
    }
    for (k, [sum, mean, max, count]) in outputs.rois.iter().enumerate() {
        let stats = |f: fn(&shotflow_operators::roi::RoiStats) -> f64| {
            frames.iter().map(|r| f(&r.rois[k])).collect::<Vec<f64>>()
        };
        put(event, *sum, stats(|s| s.sum), stacked);
        put(event, *mean, stats(|s| s.mean), stacked);
        put(event, *max, stats(|s| s.max), stacked);
        let counts = frames.iter().map(|r| r.rois[k].count).collect::<Vec<u64>>();
        put(event, *count, counts, stacked);
    }
    if let Some(map) = &reductions.azimuthal {
        let bins = map.bins_total();
        let sums: Vec<f64> = frames.iter().flat_map(|r| r.azimuthal.clone()).collect();
        let value = if stacked {
            Array2::from_shape_vec((frames.len(), bins), sums)
                .expect("one sum per bin and frame")
                .into_dyn()
        } else {
            Array1::from(sums).into_dyn()
        };
        event.set(outputs.azimuthal, value);
    }
}
