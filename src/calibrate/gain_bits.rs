//! EuXFEL stores a JUNGFRAU frame as two fields: `data.adc`, the 14-bit ADC values, and
//! `data.gain`, each pixel's gain bits (0, 1 or 3) as bytes. The detector sends both in one
//! 16-bit word, gain bits on top, which is what psana and [`super::Calibrate`] read; this
//! operator puts the two back together, so one calibration serves both facilities.

use ndarray::Zip;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use crate::event::{Array, Event, Key, Value};
use crate::flow::Batch;
use crate::runtime::fail;

/// Folds a separate gain field into the top bits of raw JUNGFRAU frames.
pub trait FoldGainBits<'scope> {
    /// Replaces the u16 ADC values at `adc` by the detector's raw words: `gain << 14 | adc`,
    /// with the u8 gain bits at `gain` (same shape). A gain of 2 (`0b10`, no valid stage) is
    /// kept, so that the calibration flags and counts its pixel as psana does. ADC values of
    /// 2^14 or more and gains above 3 end the run with a message naming the event, the field
    /// and the first such pixel, and so does an event with ADC values but no gain bits (its
    /// stages would be unknown). Events without ADC values pass unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use ndarray::ArrayD;
    /// use shotflow::calibrate::FoldGainBits;
    /// use shotflow::prelude::*;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let (adc, gain) = (Key::new("JNGFR01:daqOutput/data.adc"), Key::new("JNGFR01:daqOutput/data.gain"));
    /// let event = Event::new(1)
    ///     .with(adc, ArrayD::from_shape_vec(vec![1, 3], vec![5u16, 6, 7]).unwrap())
    ///     .with(gain, ArrayD::from_shape_vec(vec![1, 3], vec![0u8, 1, 3]).unwrap());
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let out = Arc::clone(&seen);
    /// timely::example(move |scope| {
    ///     vec![event].to_stream(scope).container::<Vec<_>>()
    ///         .fold_gain_bits(adc, gain)
    ///         .ordered("Collect", move |_, events: &[Event]| out.lock().unwrap().extend_from_slice(events));
    /// });
    /// let events = seen.lock().unwrap();
    /// let words = events[0].array::<u16>(adc).unwrap();
    /// assert_eq!(words.as_slice().unwrap(), &[5, 0x4006, 0xC007]);
    /// ```
    fn fold_gain_bits(self, adc: Key, gain: Key) -> StreamVec<'scope, Batch, Event>;
}

impl<'scope> FoldGainBits<'scope> for StreamVec<'scope, Batch, Event> {
    fn fold_gain_bits(self, adc: Key, gain: Key) -> StreamVec<'scope, Batch, Event> {
        let mut failed = false;
        self.map(move |mut event| {
            if !failed {
                if let Err(message) = fold(&mut event, adc, gain) {
                    failed = true;
                    fail(format!(
                        "folding {} into {} of event {}: {message}",
                        gain.name(),
                        adc.name(),
                        event.id
                    ));
                }
            }
            event
        })
    }
}

fn fold(event: &mut Event, adc: Key, gain: Key) -> Result<(), String> {
    let Some(a) = event.value(adc) else {
        return Ok(());
    };
    let Some(g) = event.value(gain) else {
        return Err("ADC values without gain bits: their stages are unknown".into());
    };
    let (Some(Array::U16(a)), Some(Array::U8(g))) = (a.as_array(), g.as_array()) else {
        return Err(format!(
            "{} ADC values and {} gain bits, where u16 and u8 were expected",
            a.dtype().numpy_name(),
            g.dtype().numpy_name()
        ));
    };
    if a.shape() != g.shape() {
        return Err(format!(
            "ADC values of shape {:?} and gain bits of shape {:?}",
            a.shape(),
            g.shape()
        ));
    }
    // One read of each to check them (an OR of all), and where one fails, its index.
    let at = |k: usize| -> Vec<usize> {
        let mut at = vec![0; a.ndim()];
        let mut k = k;
        for (d, n) in at.iter_mut().zip(a.shape()).rev() {
            *d = k % n;
            k /= n;
        }
        at
    };
    if a.iter().fold(0, |m, v| m | v) >> 14 != 0 {
        let (k, v) = a
            .iter()
            .enumerate()
            .find(|(_, v)| **v >> 14 != 0)
            .expect("one");
        return Err(format!(
            "ADC value {v} at {:?} has more than 14 bits",
            at(k)
        ));
    }
    if g.iter().fold(0, |m, v| m | v) > 3 {
        let (k, v) = g.iter().enumerate().find(|(_, v)| **v > 3).expect("one");
        return Err(format!("gain {v} at {:?} is not 0, 1, 2 or 3", at(k)));
    }
    let (Some(Value::Array(g)), Some(Value::Array(words))) =
        (event.remove(gain), event.remove(adc))
    else {
        unreachable!("checked above")
    };
    let (Array::U8(g), Array::U16(mut words)) = (*g, *words) else {
        unreachable!("checked above")
    };
    // In place: a train of 16 JUNGFRAU frames is 16 MB.
    Zip::from(&mut words)
        .and(&g)
        .for_each(|w, &g| *w |= (g as u16) << 14);
    event.set(adc, words);
    event.set(gain, g);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn event(adc: Vec<u16>, gain: Option<Vec<u8>>) -> Event {
        let n = adc.len();
        let e = Event::new(3).with(
            Key::new("m/data.adc"),
            ArrayD::from_shape_vec(vec![1, n], adc).unwrap(),
        );
        match gain {
            Some(g) => e.with(
                Key::new("m/data.gain"),
                ArrayD::from_shape_vec(vec![1, g.len()], g).unwrap(),
            ),
            None => e,
        }
    }

    /// Every gain code over 14-bit values, and each way the two fields can disagree, named.
    #[test]
    fn gain_bits_fold_over_adc_values_and_bad_fields_are_named() {
        let (adc, gain) = (Key::new("m/data.adc"), Key::new("m/data.gain"));
        let mut e = event(vec![0, 1, 0x3fff, 77], Some(vec![0, 1, 2, 3]));
        fold(&mut e, adc, gain).unwrap();
        let words = e.array::<u16>(adc).unwrap();
        assert_eq!(words.as_slice().unwrap(), &[0, 0x4001, 0xbfff, 0xc04d]);
        assert_eq!(e.array::<u8>(gain).unwrap().len(), 4, "the gain bits stay");
        let cases = [
            (
                event(vec![1, 0x4000], Some(vec![0, 0])),
                "ADC value 16384 at [0, 1] has more than 14 bits",
            ),
            (
                event(vec![1, 2], Some(vec![0, 4])),
                "gain 4 at [0, 1] is not 0, 1, 2 or 3",
            ),
            (
                event(vec![1, 2], Some(vec![0])),
                "ADC values of shape [1, 2] and gain bits of shape [1, 1]",
            ),
            (event(vec![1, 2], None), "ADC values without gain bits"),
        ];
        for (mut e, expected) in cases {
            let error = fold(&mut e, adc, gain).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        let mut no_adc = Event::new(4);
        fold(&mut no_adc, adc, gain).unwrap();
        eprintln!("4 words folded, 4 bad events named");
    }
}
