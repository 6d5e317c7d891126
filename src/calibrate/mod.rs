//! Calibration as an operator on the stream: raw frames of gain-switching detectors
//! (`shotflow_operators::gain`) become calibrated `f32` frames, per event, on whichever worker
//! holds the event. Sources stay raw, so a run can be recorded, replayed or served raw and
//! calibrated anywhere downstream.

#[cfg(feature = "hdf5")]
pub mod constants_file;
mod gain_bits;
mod reduce;

pub use gain_bits::FoldGainBits;
pub use reduce::{CalibrateReduce, FrameReductions};

use std::sync::Arc;

use ndarray::{Array3, ArrayD, ArrayViewD, Axis};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use crate::event::{Array, Event, Key, Value};
use crate::flow::Batch;
use crate::runtime::fail;
use shotflow_operators::gain::ModuleConstants;

/// Calibrates a frame field of every event.
pub trait Calibrate<'scope> {
    /// Replaces the raw u16 data at `frame` by calibrated f32 frames, with one set of constants
    /// per module in `modules`: a `(rows, cols)` frame (or `(2, rows, cols)` for AGIPD) for one
    /// module, `(modules, rows, cols)` (AGIPD `(modules, 2, rows, cols)`) for several; the
    /// result is `(rows, cols)` or `(modules, rows, cols)`. The memory or storage cell comes
    /// from the integer field `cell`, 0 without one: a scalar for the whole event, or an array
    /// of one cell per frame (EXDF's `image.cellId`, `(frames,)` or `(frames, 1)`), when the
    /// data are one module's frames `(frames, rows, cols)` (AGIPD `(frames, 2, rows, cols)`),
    /// calibrated into `(frames, rows, cols)`. Rows of several frames each, with as many
    /// cells (EuXFEL JUNGFRAU's `(trains, 16, rows, cols)` and `data.memoryCell`
    /// `(trains, 16)`), are that many frames. The pixels that had no valid gain stage are
    /// counted in the u64 field `<frame>_invalid_pixels`.
    ///
    /// An event whose data do not fit the constants ends the run with a message naming the
    /// event, the field and the shapes. Events without the field pass unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use ndarray::{Array4, ArrayD};
    /// use shotflow::calibrate::Calibrate;
    /// use shotflow::prelude::*;
    /// use shotflow_operators::gain::{jungfrau::{JungfrauConstants, Unit}, ModuleConstants};
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let pedestal = Array4::from_elem((3, 1, 2, 2), 1000.0f32);
    /// let gain = Array4::from_elem((3, 1, 2, 2), 10.0f32);
    /// let module = ModuleConstants::Jungfrau(JungfrauConstants::new(pedestal, gain.view(), None, Unit::Energy).unwrap());
    /// let frame = Key::new("jungfrau/raw");
    /// let event = Event::new(7).with(frame, ArrayD::from_elem(vec![2, 2], 1100u16));
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let out = Arc::clone(&seen);
    /// timely::example(move |scope| {
    ///     vec![event].to_stream(scope).container::<Vec<_>>()
    ///         .calibrate(frame, Arc::new(vec![module]), None)
    ///         .ordered("Collect", move |_, events: &[Event]| out.lock().unwrap().extend_from_slice(events));
    /// });
    /// let events = seen.lock().unwrap();
    /// let calibrated = events[0].array::<f32>(frame).unwrap();
    /// assert!(calibrated.iter().all(|v| *v == 10.0));
    /// assert_eq!(events[0].get::<u64>(Key::new("jungfrau/raw_invalid_pixels")), Some(0));
    /// ```
    fn calibrate(
        self,
        frame: Key,
        modules: Arc<Vec<ModuleConstants>>,
        cell: Option<Key>,
    ) -> StreamVec<'scope, Batch, Event>;
}

impl<'scope> Calibrate<'scope> for StreamVec<'scope, Batch, Event> {
    fn calibrate(
        self,
        frame: Key,
        modules: Arc<Vec<ModuleConstants>>,
        cell: Option<Key>,
    ) -> StreamVec<'scope, Batch, Event> {
        let invalid = invalid_pixels(frame);
        let mut failed = false;
        self.map(move |mut event| {
            if failed {
                return event;
            }
            match calibrate_event(&mut event, frame, &modules, cell, invalid) {
                Ok(()) => {}
                Err(message) => {
                    failed = true;
                    fail(format!(
                        "calibrating {} of event {}: {message}",
                        frame.name(),
                        event.id
                    ));
                }
            }
            event
        })
    }
}

/// The u64 field where [`Calibrate::calibrate`] counts the pixels of `frame` that had no valid
/// gain stage: `<frame>_invalid_pixels`.
///
/// ```
/// use shotflow::event::Key;
/// let key = shotflow::calibrate::invalid_pixels(Key::new("JNGFR01:daqOutput/data.adc"));
/// assert_eq!(key.name(), "JNGFR01:daqOutput/data.adc_invalid_pixels");
/// ```
pub fn invalid_pixels(frame: Key) -> Key {
    Key::new(&format!("{}_invalid_pixels", frame.name()))
}

/// An event's raw frames, each with its constants and memory cell: what both calibrating
/// operators walk.
pub(crate) struct Frames<'e> {
    raw: ArrayViewD<'e, u16>,
    /// `(frames or modules, …)` rather than one frame.
    pub(crate) stacked: bool,
    /// One cell per frame (of one module) rather than one for the event.
    per_frame: bool,
    cells: Vec<usize>,
    /// Frames (or modules) in the data.
    pub(crate) count: usize,
}

impl<'e> Frames<'e> {
    /// `event`'s raw `frame` checked against `modules` and the cells in `cell`; `None` when
    /// the event has no such field.
    pub(crate) fn of(
        event: &'e Event,
        frame: Key,
        modules: &[ModuleConstants],
        cell: Option<Key>,
    ) -> Result<Option<Frames<'e>>, String> {
        let Some(value) = event.value(frame) else {
            return Ok(None);
        };
        let Some(Array::U16(raw)) = value.as_array() else {
            return Err(format!(
                "{} data where raw u16 frames were expected",
                value.dtype().numpy_name()
            ));
        };
        // One cell for the event (a scalar), or one per frame (an array: EXDF's
        // `image.cellId`, `(frames,)` or `(frames, 1)`, beside `(frames, [2,] rows, cols)` data
        // of one module).
        let cells: Vec<usize> = match cell.map(|key| (key, event.value(key))) {
            None | Some((_, None)) => vec![0],
            Some((key, Some(value))) => {
                let numbers = match value.as_array() {
                    Some(a) => a.to_f64_vec(),
                    None => value.as_f64().into_iter().collect(),
                };
                numbers
                    .into_iter()
                    .map(|c| match c >= 0.0 && c.fract() == 0.0 {
                        true => Ok(c as usize),
                        false => Err(format!("cell {c} in {}", key.name())),
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let per_frame =
            cell.is_some_and(|key| event.value(key).and_then(Value::as_array).is_some());
        let Some(first) = modules.first() else {
            return Err("no module constants".into());
        };
        let per_module = match first {
            ModuleConstants::Agipd(_) => 3,
            _ => 2,
        };
        let mut shape = raw.shape().to_vec();
        let mut raw = raw.view();
        // EXDF rows of several frames each (JUNGFRAU's `(trains, cells, rows, cols)`, with
        // `(trains, cells)` cells) are that many frames, one cell each.
        if per_frame && shape.len() > per_module + 1 {
            let frames = shape[..shape.len() - per_module].iter().product();
            shape = [vec![frames], shape[shape.len() - per_module..].to_vec()].concat();
            raw = raw
                .into_shape_with_order(shape.clone())
                .map_err(|e| format!("frames of shape {:?}: {e}", value.shape()))?;
        }
        let stacked = shape.len() == per_module + 1;
        let count = if stacked { shape[0] } else { 1 };
        let fits = if per_frame {
            stacked && modules.len() == 1 && count == cells.len()
        } else {
            (shape.len() == per_module || stacked) && count == modules.len()
        };
        if !fits {
            return Err(if per_frame {
                format!(
                    "data of shape {shape:?} with {} per-frame cells in {}, for {} module(s) of \
                     {} constants: per-frame cells need one module's frames, one cell each",
                    cells.len(),
                    cell.map_or("", |k| k.name()),
                    modules.len(),
                    first.detector()
                )
            } else {
                format!(
                    "data of shape {shape:?} for {} module(s) of {} constants",
                    modules.len(),
                    first.detector()
                )
            });
        }
        Ok(Some(Frames {
            raw,
            stacked,
            per_frame,
            cells,
            count,
        }))
    }

    /// Frame (or module) `k`: its raw data, its constants, its cell, and what errors call it.
    pub(crate) fn get<'m>(
        &self,
        k: usize,
        modules: &'m [ModuleConstants],
    ) -> (
        ArrayViewD<'e, u16>,
        &'m ModuleConstants,
        usize,
        &'static str,
    ) {
        let raw = if self.stacked {
            self.raw.clone().index_axis_move(Axis(0), k)
        } else {
            self.raw.clone()
        };
        if self.per_frame {
            (raw, &modules[0], self.cells[k], "frame")
        } else {
            (raw, &modules[k], self.cells[0], "module")
        }
    }
}

/// Calibrates `event`'s `frame` in place.
fn calibrate_event(
    event: &mut Event,
    frame: Key,
    modules: &[ModuleConstants],
    cell: Option<Key>,
    invalid: Key,
) -> Result<(), String> {
    let Some(frames) = Frames::of(event, frame, modules, cell)? else {
        return Ok(());
    };
    let (rows, cols) = modules[0].pixels();
    let mut out = Array3::<f32>::zeros((frames.count, rows, cols));
    let mut bad = 0;
    for k in 0..frames.count {
        let (raw, constants, cell, what) = frames.get(k, modules);
        bad += constants
            .calibrate(raw, cell, out.index_axis_mut(Axis(0), k))
            .map_err(|e| format!("{what} {k}: {e}"))?;
    }
    let calibrated: ArrayD<f32> = if frames.stacked {
        out.into_dyn()
    } else {
        out.index_axis_move(Axis(0), 0).into_dyn()
    };
    event.set(frame, calibrated);
    event.set(invalid, Value::U64(bad));
    Ok(())
}
