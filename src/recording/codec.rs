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
//! The padding keeps every array 8-byte aligned within the payload.

use ndarray::{ArrayD, IxDyn};

use crate::event::{DType, Element, Event, Key, Value};

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
            out.push(value.dtype().code());
            let (rank, shape) = match value {
                Value::Array(a) => (a.shape().len() as u8, a.shape().to_vec()),
                _ => (u8::MAX, Vec::new()), // a scalar, as opposed to a 0-d array
            };
            out.push(rank);
            for d in &shape {
                out.extend_from_slice(&(*d as u64).to_le_bytes());
            }
            out.resize(out.len().next_multiple_of(8), 0);
            out.extend_from_slice(&value.le_bytes());
        }
    }
}

/// Why a payload could not be decoded.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Reading the bytes failed.
    Io(std::io::Error),
    /// The bytes are not a payload.
    Format(String),
}

impl From<&str> for DecodeError {
    fn from(message: &str) -> Self {
        DecodeError::Format(message.to_string())
    }
}

impl From<String> for DecodeError {
    fn from(message: String) -> Self {
        DecodeError::Format(message)
    }
}

/// Where a payload's bytes come from: memory, or a file read while it is decoded.
pub(crate) trait Payload {
    /// Fills `out` with the next bytes.
    fn fill(&mut self, out: &mut [u8]) -> Result<(), DecodeError>;
    /// Bytes read so far.
    fn position(&self) -> u64;
    /// Bytes left.
    fn remaining(&self) -> u64;
}

/// One frame's payload of `length` bytes read from `reader` as it is decoded: arrays are read
/// straight into their own buffers, a MiB at a time, and the CRC-32 is taken of each piece
/// while it is still in cache. Reading a payload whole and then decoding it passed over every
/// byte three times (read, checksum, copy out).
pub(crate) struct Streamed<'a, R> {
    reader: &'a mut R,
    at: u64,
    length: u64,
    crc: crc32fast::Hasher,
}

impl<'a, R: std::io::Read> Streamed<'a, R> {
    pub(crate) fn new(reader: &'a mut R, length: u64) -> Self {
        Streamed {
            reader,
            at: 0,
            length,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// Reads what decoding left (a damaged payload may stop early) and returns the CRC-32 of
    /// the whole payload.
    pub(crate) fn finish(mut self) -> Result<u32, std::io::Error> {
        let mut scratch = vec![0u8; (1 << 20).min(self.remaining() as usize)];
        while self.remaining() > 0 {
            let n = scratch.len().min(self.remaining() as usize);
            self.reader.read_exact(&mut scratch[..n])?;
            self.crc.update(&scratch[..n]);
            self.at += n as u64;
        }
        Ok(self.crc.finalize())
    }
}

impl<R: std::io::Read> Payload for Streamed<'_, R> {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), DecodeError> {
        if out.len() as u64 > self.remaining() {
            return Err("payload ends early".into());
        }
        for piece in out.chunks_mut(1 << 20) {
            self.reader.read_exact(piece).map_err(DecodeError::Io)?;
            self.crc.update(piece);
        }
        self.at += out.len() as u64;
        Ok(())
    }
    fn position(&self) -> u64 {
        self.at
    }
    fn remaining(&self) -> u64 {
        self.length - self.at
    }
}

fn read_u8(p: &mut impl Payload) -> Result<u8, DecodeError> {
    let mut b = [0u8; 1];
    p.fill(&mut b)?;
    Ok(b[0])
}
fn read_u16(p: &mut impl Payload) -> Result<u16, DecodeError> {
    let mut b = [0u8; 2];
    p.fill(&mut b)?;
    Ok(u16::from_le_bytes(b))
}
fn read_u32(p: &mut impl Payload) -> Result<u32, DecodeError> {
    let mut b = [0u8; 4];
    p.fill(&mut b)?;
    Ok(u32::from_le_bytes(b))
}
fn read_u64(p: &mut impl Payload) -> Result<u64, DecodeError> {
    let mut b = [0u8; 8];
    p.fill(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// `count` elements, read into their own (aligned) buffer: one copy.
fn elements<T: bytemuck::Pod>(p: &mut impl Payload, count: usize) -> Result<Vec<T>, DecodeError> {
    let bytes = count
        .checked_mul(std::mem::size_of::<T>())
        .ok_or("array too large")?;
    // Checked before allocating: a damaged shape must not ask for terabytes.
    if bytes as u64 > p.remaining() {
        return Err("payload ends early".into());
    }
    let mut out = vec![T::zeroed(); count];
    p.fill(bytemuck::cast_slice_mut(&mut out))?;
    Ok(out)
}

/// Decodes one payload written by [`encode`] from `p`.
pub(crate) fn decode_from(p: &mut impl Payload) -> Result<Vec<Event>, DecodeError> {
    let n = read_u32(p)? as usize;
    let mut events = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let mut event = Event::with_capacity(read_u64(p)?, 0);
        let fields = read_u16(p)?;
        for _ in 0..fields {
            let mut name = vec![0u8; read_u16(p)? as usize];
            p.fill(&mut name)?;
            let name = std::str::from_utf8(&name).map_err(|e| e.to_string())?;
            let key = Key::new(name);
            let code = read_u8(p)?;
            let dtype =
                DType::from_code(code).ok_or_else(|| format!("unknown dtype code {code}"))?;
            let rank = read_u8(p)?;
            let scalar = rank == u8::MAX;
            let shape: Vec<usize> = if scalar {
                Vec::new()
            } else {
                (0..rank)
                    .map(|_| read_u64(p).map(|d| d as usize))
                    .collect::<Result<_, _>>()?
            };
            let count: usize = if scalar {
                1
            } else {
                shape
                    .iter()
                    .try_fold(1usize, |n, d| n.checked_mul(*d))
                    .ok_or("array too large")?
            };
            let mut padding = [0u8; 8];
            let pad = (p.position().next_multiple_of(8) - p.position()) as usize;
            p.fill(&mut padding[..pad])?;
            let value = crate::with_dtype!(dtype, T => {
                let data = T::from_raw(elements::<<T as Element>::Raw>(p, count)?);
                if scalar {
                    data[0].into_value()
                } else {
                    Value::from(
                        ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| e.to_string())?,
                    )
                }
            });
            event.set(key, value);
        }
        events.push(event);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let mut reader = bytes;
        let mut payload = Streamed::new(&mut reader, bytes.len() as u64);
        let events = decode_from(&mut payload)?;
        assert_eq!(payload.remaining(), 0);
        Ok(events)
    }

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

    #[test]
    fn a_damaged_shape_is_an_error_not_an_allocation() {
        let e = Event::new(1).with(Key::new("a"), ArrayD::<f64>::zeros(IxDyn(&[4])));
        let mut bytes = Vec::new();
        encode(&[e], &mut bytes);
        // u32 events | u64 id | u16 fields | u16 name length | "a" | dtype | rank | shape
        let shape_at = 4 + 8 + 2 + 2 + 1 + 1 + 1;
        bytes[shape_at..shape_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        match decode(&bytes) {
            Err(DecodeError::Format(message)) => assert!(
                message.contains("ends early") || message.contains("too large"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
