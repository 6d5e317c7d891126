//! The payload of a recorded batch: events with their arrays as raw little-endian bytes, so
//! that writing and reading a frame is a copy, not a per-element serialisation (bincode of an
//! `ndarray` writes element by element: 4× slower for detector frames).
//!
//! ```text
//! u32 events, then per event: u64 id | u16 fields, then per field:
//!   u16 name length | name | u8 dtype | u8 rank | rank × u64 shape | zero padding to a
//!   multiple of 8 bytes from the payload start | raw elements
//! ```
//!
//! The padding lets a reader that loads the payload into 8-byte aligned memory take each
//! array's elements with one copy.

use ndarray::{ArrayD, IxDyn};

use crate::event::{Array, DType, Event, Key, Value};

const DTYPES: [DType; 11] = DType::ALL;

fn dtype_code(dtype: DType) -> u8 {
    DTYPES
        .iter()
        .position(|d| *d == dtype)
        .expect("every dtype is listed") as u8
}

fn raw_bytes(value: &Value) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    macro_rules! slice {
        ($a:expr) => {
            match $a.as_slice() {
                Some(s) => Cow::Borrowed(bytemuck::cast_slice(s)),
                None => Cow::Owned(
                    bytemuck::cast_slice(&$a.iter().copied().collect::<Vec<_>>()).to_vec(),
                ),
            }
        };
    }
    match value {
        Value::Bool(x) => Cow::Owned(vec![*x as u8]),
        Value::U8(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::U16(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::U32(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::U64(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::I8(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::I16(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::I32(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::I64(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::F32(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::F64(x) => Cow::Owned(x.to_le_bytes().to_vec()),
        Value::Array(a) => match a.as_ref() {
            Array::Bool(a) => Cow::Owned(a.iter().map(|b| *b as u8).collect()),
            Array::U8(a) => slice!(a),
            Array::U16(a) => slice!(a),
            Array::U32(a) => slice!(a),
            Array::U64(a) => slice!(a),
            Array::I8(a) => slice!(a),
            Array::I16(a) => slice!(a),
            Array::I32(a) => slice!(a),
            Array::I64(a) => slice!(a),
            Array::F32(a) => slice!(a),
            Array::F64(a) => slice!(a),
        },
    }
}

/// Appends the encoding of `events` to `out`.
pub(crate) fn encode(events: &[Event], out: &mut Vec<u8>) {
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for event in events {
        out.extend_from_slice(&event.id.to_le_bytes());
        out.extend_from_slice(&(event.len() as u16).to_le_bytes());
        for (key, value) in event.fields() {
            let name = key.name().as_bytes();
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            out.push(dtype_code(value.dtype()));
            let (rank, shape) = match value {
                Value::Array(a) => (a.shape().len() as u8, a.shape().to_vec()),
                _ => (u8::MAX, Vec::new()), // a scalar, as opposed to a 0-d array
            };
            out.push(rank);
            for d in &shape {
                out.extend_from_slice(&(*d as u64).to_le_bytes());
            }
            out.resize(out.len().next_multiple_of(8), 0);
            out.extend_from_slice(&raw_bytes(value));
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or("payload ends early")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

fn typed<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    match bytemuck::try_cast_slice::<u8, T>(bytes) {
        // An aligned payload: one copy.
        Ok(elements) => elements.to_vec(),
        // Otherwise through a fresh, aligned buffer.
        Err(_) => {
            let mut out = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
            bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(bytes);
            out
        }
    }
}

/// Decodes a payload written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Event>, String> {
    let mut c = Cursor { bytes, at: 0 };
    let n = c.u32()? as usize;
    let mut events = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let mut event = Event::with_capacity(c.u64()?, 0);
        let fields = c.u16()?;
        for _ in 0..fields {
            let name_len = c.u16()? as usize;
            let name = std::str::from_utf8(c.take(name_len)?).map_err(|e| e.to_string())?;
            let key = Key::new(name);
            let dtype = *DTYPES.get(c.u8()? as usize).ok_or("unknown dtype")?;
            let rank = c.u8()?;
            let shape: Vec<usize> = if rank == u8::MAX {
                Vec::new()
            } else {
                (0..rank)
                    .map(|_| c.u64().map(|d| d as usize))
                    .collect::<Result<_, _>>()?
            };
            let count: usize = if rank == u8::MAX {
                1
            } else {
                shape.iter().product()
            };
            c.take(c.at.next_multiple_of(8) - c.at)?;
            let raw = c.take(count.checked_mul(dtype.size()).ok_or("array too large")?)?;
            macro_rules! value {
                ($t:ty, $variant:ident) => {{
                    let data: Vec<$t> = typed(raw);
                    if rank == u8::MAX {
                        Value::$variant(data[0])
                    } else {
                        Value::from(
                            ArrayD::from_shape_vec(IxDyn(&shape), data)
                                .map_err(|e| e.to_string())?,
                        )
                    }
                }};
            }
            let value = match dtype {
                DType::Bool => {
                    let data: Vec<bool> = raw.iter().map(|b| *b != 0).collect();
                    if rank == u8::MAX {
                        Value::Bool(data[0])
                    } else {
                        Value::from(
                            ArrayD::from_shape_vec(IxDyn(&shape), data)
                                .map_err(|e| e.to_string())?,
                        )
                    }
                }
                DType::U8 => value!(u8, U8),
                DType::U16 => value!(u16, U16),
                DType::U32 => value!(u32, U32),
                DType::U64 => value!(u64, U64),
                DType::I8 => value!(i8, I8),
                DType::I16 => value!(i16, I16),
                DType::I32 => value!(i32, I32),
                DType::I64 => value!(i64, I64),
                DType::F32 => value!(f32, F32),
                DType::F64 => value!(f64, F64),
            };
            event.set(key, value);
        }
        events.push(event);
    }
    if c.at != bytes.len() {
        return Err(format!(
            "{} bytes left after {n} events",
            bytes.len() - c.at
        ));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_and_shape_round_trips() {
        let mut e = Event::new(42);
        e.set(Key::new("b"), true);
        e.set(Key::new("i8"), -3i8);
        e.set(Key::new("u64"), u64::MAX);
        e.set(Key::new("f32"), 1.5f32);
        e.set(
            Key::new("frame"),
            ArrayD::<u16>::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 4 + i[1]) as u16),
        );
        e.set(
            Key::new("mask"),
            ArrayD::<bool>::from_shape_fn(IxDyn(&[2, 2]), |i| i[0] == i[1]),
        );
        e.set(
            Key::new("zero_d"),
            ArrayD::<f64>::from_elem(IxDyn(&[]), 7.0),
        );
        e.set(Key::new("empty"), ArrayD::<i32>::zeros(IxDyn(&[0, 5])));
        let transposed = ArrayD::<f64>::from_shape_fn(IxDyn(&[2, 3]), |i| (i[0] * 3 + i[1]) as f64)
            .reversed_axes();
        e.set(Key::new("strided"), transposed);
        let mut bytes = Vec::new();
        encode(&[e.clone(), Event::new(43)], &mut bytes);
        let back = decode(&bytes).unwrap();
        assert_eq!(back, vec![e, Event::new(43)]);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
