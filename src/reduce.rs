//! Detector reductions on streams of events: thin timely operators around the pure functions
//! of `shotflow-operators`.

use ndarray::{ArrayD, ArrayView2, Ix2, IxDyn};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use crate::event::{Element, Event, Key, Value};
use crate::flow::Batch;
use shotflow_operators::Pixel;

/// Reductions of a 2-D frame field into new fields, per event.
pub trait FrameReduce<'scope> {
    /// For every event with a 2-D `frame` field of element type `T`, sets `output` to
    /// `reduce(frame)`; with `drop_frame`, the frame is removed afterwards (the usual case:
    /// heavy data stop at the reduction). Events without the frame pass unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use shotflow::prelude::*;
    /// use shotflow::reduce::FrameReduce;
    /// use shotflow_operators::photons::PhotonCounter;
    ///
    /// let config = Synthetic { events: 20, frame: Some([64, 32]), ..Synthetic::default() };
    /// let keys = config.keys();
    /// let photons = Key::new("photons");
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let out = Arc::clone(&seen);
    /// timely::example(move |scope| {
    ///     let counter = PhotonCounter::new(100.0, 60.0);
    ///     scope
    ///         .synthetic(&config)
    ///         .frame_reduce::<u16, _>(keys.frame, photons, true, move |frame| counter.count(frame).into())
    ///         .ordered("Collect", move |_, events: &[Event]| out.lock().unwrap().extend_from_slice(events));
    /// });
    /// let events = seen.lock().unwrap();
    /// assert_eq!(events.len(), 20);
    /// assert!(events.iter().all(|e| e.get::<u64>(photons).is_some() && !e.contains(keys.frame)));
    /// ```
    fn frame_reduce<T, F>(
        self,
        frame: Key,
        output: Key,
        drop_frame: bool,
        reduce: F,
    ) -> StreamVec<'scope, Batch, Event>
    where
        T: Element + Pixel,
        F: FnMut(ArrayView2<'_, T>) -> Value + 'static;

    /// Stacks the 2-D frames of a multi-module detector, one field per module (`modules`, in
    /// module order: an AGIPD pulse's 16 EXDF sources), into one `(modules, rows, columns)`
    /// field `output`, the data order of a `shotflow_operators::geometry::Detector` of that
    /// shape: `AzimuthalMap::for_detector` and `Assembly` take it as it is. A module missing
    /// from an event holds `fill` (the source has counted the event as missing fields); a
    /// module of another shape or element type is a missing module too, with a warning.
    /// Events without any of the modules pass unchanged. With `drop_modules`, the per-module
    /// fields are removed.
    ///
    /// ```
    /// use shotflow::prelude::*;
    /// use shotflow::reduce::FrameReduce;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let (m0, m1, all) = (Key::new("m0/data"), Key::new("m1/data"), Key::new("detector"));
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let out = Arc::clone(&seen);
    /// timely::example(move |scope| {
    ///     use timely::dataflow::operators::ToStream;
    ///     let event = Event::new(7)
    ///         .with(m1, ndarray::Array2::<f32>::from_elem((2, 3), 1.5).into_dyn());
    ///     vec![event].to_stream(scope)
    ///         .stack_modules::<f32>(vec![m0, m1], (2, 3), all, f32::NAN, true)
    ///         .ordered("Collect", move |_, events: &[Event]| out.lock().unwrap().extend_from_slice(events));
    /// });
    /// let events = seen.lock().unwrap();
    /// let stacked = events[0].array::<f32>(all).unwrap();
    /// assert_eq!(stacked.shape(), &[2, 2, 3]);
    /// assert!(stacked.index_axis(ndarray::Axis(0), 0).iter().all(|v| v.is_nan())); // m0 missing
    /// assert!(stacked.index_axis(ndarray::Axis(0), 1).iter().all(|v| *v == 1.5));
    /// assert!(!events[0].contains(m1));
    /// ```
    fn stack_modules<T>(
        self,
        modules: Vec<Key>,
        shape: (usize, usize),
        output: Key,
        fill: T,
        drop_modules: bool,
    ) -> StreamVec<'scope, Batch, Event>
    where
        T: Element;
}

impl<'scope> FrameReduce<'scope> for StreamVec<'scope, Batch, Event> {
    fn frame_reduce<T, F>(
        self,
        frame: Key,
        output: Key,
        drop_frame: bool,
        mut reduce: F,
    ) -> StreamVec<'scope, Batch, Event>
    where
        T: Element + Pixel,
        F: FnMut(ArrayView2<'_, T>) -> Value + 'static,
    {
        self.map(move |mut event| {
            let value = event
                .array::<T>(frame)
                .and_then(|view| view.into_dimensionality::<Ix2>().ok())
                .map(&mut reduce);
            if let Some(value) = value {
                event.set(output, value);
                if drop_frame {
                    event.remove(frame);
                }
            }
            event
        })
    }

    fn stack_modules<T>(
        self,
        modules: Vec<Key>,
        shape: (usize, usize),
        output: Key,
        fill: T,
        drop_modules: bool,
    ) -> StreamVec<'scope, Batch, Event>
    where
        T: Element,
    {
        let (rows, columns) = shape;
        let mut warned = false;
        self.map(move |mut event| {
            if !modules.iter().any(|&m| event.contains(m)) {
                return event;
            }
            let mut stacked = vec![fill; modules.len() * rows * columns];
            for (m, &key) in modules.iter().enumerate() {
                let Some(value) = event.value(key) else {
                    continue;
                };
                let view = event.array::<T>(key);
                match view {
                    Some(view) if view.shape() == [rows, columns] => {
                        let target = &mut stacked[m * rows * columns..(m + 1) * rows * columns];
                        for (t, v) in target.iter_mut().zip(view.iter()) {
                            *t = *v;
                        }
                    }
                    _ => {
                        if !warned {
                            tracing::warn!(
                                "event {}: module {m} ({}) is {:?}, not {rows}×{columns} of {:?}: stacked as missing",
                                event.id,
                                key.name(),
                                value.dtype(),
                                T::DTYPE,
                            );
                            warned = true;
                        }
                    }
                }
            }
            let array = ArrayD::from_shape_vec(IxDyn(&[modules.len(), rows, columns]), stacked)
                .expect("modules × rows × columns elements");
            event.set(output, Value::Array(Box::new(T::into_array(array))));
            if drop_modules {
                for &key in &modules {
                    event.remove(key);
                }
            }
            event
        })
    }
}
