//! The karabo-bridge message format, protocol 2.2: one ZeroMQ multipart message per train;
//! per source (sorted by name) a msgpack header `{source, content: "msgpack", metadata}` and
//! a msgpack map of the non-array keys, then per array a header `{source, content: "array",
//! path, dtype, shape}` and the raw C-order bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use rmpv::Value as Mp;

use crate::event::{DType, Element, Event, Key, Value};

/// A message that does not follow the protocol.
#[derive(Debug, thiserror::Error)]
#[error("karabo-bridge message: {0}")]
pub struct ProtocolError(pub String);

fn err(message: impl Into<String>) -> ProtocolError {
    ProtocolError(message.into())
}

fn unpack(bytes: &[u8]) -> Result<Mp, ProtocolError> {
    rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| err(format!("bad msgpack: {e}")))
}

fn get<'a>(map: &'a Mp, key: &str) -> Option<&'a Mp> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn dtype_of(name: &str) -> Option<DType> {
    DType::ALL
        .iter()
        .copied()
        .find(|d| d.numpy_name() == name || (name == "bool" && *d == DType::Bool))
}

/// Decodes one train. Returns the event (id = `timestamp.tid` of the first source that has
/// it) and the number of values skipped because shotflow has no type for them (strings,
/// nested lists).
///
/// The parts can be `Vec<u8>` or received `zmq::Message`s: arrays are copied once, straight
/// from the message buffers into the event.
pub fn decode<P: std::ops::Deref<Target = [u8]>>(
    parts: &[P],
) -> Result<(Event, usize), ProtocolError> {
    if parts.len() < 2 || !parts.len().is_multiple_of(2) {
        return Err(err(format!(
            "{} parts; protocol 2.2 sends header/payload pairs",
            parts.len()
        )));
    }
    let mut event = Event::new(0);
    let mut train = None;
    let mut skipped = 0;
    for pair in parts.chunks_exact(2) {
        let header = unpack(&pair[0])?;
        let source = get(&header, "source")
            .and_then(Mp::as_str)
            .ok_or_else(|| err("header without source"))?
            .to_string();
        match get(&header, "content").and_then(Mp::as_str) {
            Some("msgpack") => {
                if train.is_none() {
                    train = get(&header, "metadata")
                        .and_then(|m| get(m, "timestamp.tid"))
                        .and_then(Mp::as_u64);
                }
                let data = unpack(&pair[1])?;
                for (k, v) in data
                    .as_map()
                    .ok_or_else(|| err(format!("{source}: data is not a map")))?
                {
                    let Some(k) = k.as_str() else { continue };
                    let key = Key::new(&format!("{source}/{k}"));
                    let value = match v {
                        Mp::Boolean(b) => Value::Bool(*b),
                        Mp::Integer(i) => match (i.as_i64(), i.as_u64()) {
                            (Some(x), _) => Value::I64(x),
                            (None, Some(x)) => Value::U64(x),
                            _ => {
                                skipped += 1;
                                continue;
                            }
                        },
                        Mp::F32(x) => Value::F32(*x),
                        Mp::F64(x) => Value::F64(*x),
                        _ => {
                            skipped += 1;
                            continue;
                        }
                    };
                    event.set(key, value);
                }
            }
            Some("array") => {
                let path = get(&header, "path")
                    .and_then(Mp::as_str)
                    .ok_or_else(|| err(format!("{source}: array without path")))?;
                let dtype_name = get(&header, "dtype").and_then(Mp::as_str).unwrap_or("");
                let Some(dtype) = dtype_of(dtype_name) else {
                    skipped += 1;
                    continue;
                };
                let shape: Vec<usize> = get(&header, "shape")
                    .and_then(Mp::as_array)
                    .ok_or_else(|| err(format!("{source}/{path}: array without shape")))?
                    .iter()
                    .map(|d| {
                        d.as_u64()
                            .and_then(|d| usize::try_from(d).ok())
                            .ok_or_else(|| err(format!("{source}/{path}: bad shape {d}")))
                    })
                    .collect::<Result<_, _>>()?;
                // A hostile shape must not overflow into a small, "matching" size.
                let expected = shape
                    .iter()
                    .try_fold(dtype.size(), |n, d| n.checked_mul(*d))
                    .ok_or_else(|| err(format!("{source}/{path}: shape {shape:?} overflows")))?;
                let raw: &[u8] = &pair[1];
                if raw.len() != expected {
                    return Err(err(format!(
                        "{source}/{path}: {} bytes for {dtype_name} {shape:?} ({expected} expected)",
                        raw.len(),
                    )));
                }
                let value = crate::with_dtype!(dtype, T => Value::from(
                    ArrayD::from_shape_vec(
                        IxDyn(&shape),
                        T::from_raw(pod_vec::<<T as Element>::Raw>(raw)),
                    )
                    .map_err(|e| err(e.to_string()))?,
                ));
                event.set(Key::new(&format!("{source}/{path}")), value);
            }
            other => return Err(err(format!("{source}: unknown content {other:?}"))),
        }
    }
    event.id = train.ok_or_else(|| err("no source carries metadata timestamp.tid"))?;
    Ok((event, skipped))
}

fn pack(value: &Mp) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

fn mp_str(s: &str) -> Mp {
    Mp::String(s.into())
}

/// Encodes one event as a train: fields `"<source>/<key>"` are grouped by source (the name
/// up to the last `/`); arrays go as raw parts, scalars into the msgpack map.
pub fn encode(event: &Event) -> Vec<Vec<u8>> {
    encode_parts(event)
        .into_iter()
        .map(Cow::into_owned)
        .collect()
}

/// [`encode`], with contiguous arrays borrowed from the event ([`Array::le_bytes`](crate::event::Array::le_bytes)) instead of
/// copied, for a sender that can hand ZeroMQ memory it keeps alive.
pub fn encode_parts(event: &Event) -> Vec<Cow<'_, [u8]>> {
    let mut sources: BTreeMap<&str, Vec<(&str, &Value)>> = BTreeMap::new();
    for (key, value) in event.fields() {
        let name = key.name();
        let (source, k) = name.rsplit_once('/').unwrap_or(("shotflow", name));
        sources.entry(source).or_default().push((k, value));
    }
    let mut parts = Vec::new();
    for (source, fields) in sources {
        let metadata = Mp::Map(vec![
            (mp_str("source"), mp_str(source)),
            (mp_str("timestamp.tid"), Mp::from(event.id)),
        ]);
        parts.push(Cow::Owned(pack(&Mp::Map(vec![
            (mp_str("source"), mp_str(source)),
            (mp_str("content"), mp_str("msgpack")),
            (mp_str("metadata"), metadata),
        ]))));
        let scalars: Vec<(Mp, Mp)> = fields
            .iter()
            .filter_map(|(k, v)| {
                let mp = match v {
                    Value::Bool(x) => Mp::from(*x),
                    Value::U8(x) => Mp::from(*x),
                    Value::U16(x) => Mp::from(*x),
                    Value::U32(x) => Mp::from(*x),
                    Value::U64(x) => Mp::from(*x),
                    Value::I8(x) => Mp::from(*x),
                    Value::I16(x) => Mp::from(*x),
                    Value::I32(x) => Mp::from(*x),
                    Value::I64(x) => Mp::from(*x),
                    Value::F32(x) => Mp::F32(*x),
                    Value::F64(x) => Mp::F64(*x),
                    Value::Array(_) => return None,
                };
                Some((mp_str(k), mp))
            })
            .collect();
        parts.push(Cow::Owned(pack(&Mp::Map(scalars))));
        for (k, v) in fields {
            let Some(array) = v.as_array() else { continue };
            parts.push(Cow::Owned(pack(&Mp::Map(vec![
                (mp_str("source"), mp_str(source)),
                (mp_str("content"), mp_str("array")),
                (mp_str("path"), mp_str(k)),
                (mp_str("dtype"), mp_str(array.dtype().numpy_name())),
                (
                    mp_str("shape"),
                    Mp::Array(array.shape().iter().map(|d| Mp::from(*d as u64)).collect()),
                ),
            ]))));
            parts.push(array.le_bytes());
        }
    }
    parts
}

/// Elements from raw little-endian bytes (this is a little-endian host): one copy when the
/// buffer is aligned, else through an aligned buffer.
fn pod_vec<T: bytemuck::Pod>(raw: &[u8]) -> Vec<T> {
    match bytemuck::try_cast_slice::<u8, T>(raw) {
        Ok(elements) => elements.to_vec(),
        Err(_) => {
            let mut out = vec![T::zeroed(); raw.len() / std::mem::size_of::<T>()];
            bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(raw);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode() {
        let event = Event::new(10_042)
            .with(
                Key::new("SA1_XTD2_XGM/DOOCS/MAIN/pulseEnergy.photonFlux.value"),
                1.5f64,
            )
            .with(
                Key::new("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image.data"),
                ArrayD::<u16>::from_elem(IxDyn(&[2, 3, 4]), 7),
            )
            .with(
                Key::new("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/header.pulseCount"),
                2i64,
            );
        let (back, skipped) = decode(&encode(&event)).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(back.id, 10_042);
        assert_eq!(
            back.get::<f64>(Key::new(
                "SA1_XTD2_XGM/DOOCS/MAIN/pulseEnergy.photonFlux.value"
            )),
            Some(1.5)
        );
        assert_eq!(
            back.array::<u16>(Key::new("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf/image.data"))
                .unwrap()
                .shape(),
            &[2, 3, 4]
        );
        let mut bad = encode(&event);
        bad.last_mut().unwrap().pop(); // the array bytes of the last source
        assert!(decode(&bad)
            .unwrap_err()
            .to_string()
            .contains("bytes for uint16"));
        assert!(decode(&[vec![0xc1], vec![]]).is_err());
    }
}
