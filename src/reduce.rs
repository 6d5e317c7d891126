//! Detector reductions on streams of events: thin timely operators around the pure functions
//! of `shotflow-operators`.

use ndarray::{ArrayView2, Ix2};
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
}
