//! Writing XTC2: Names, ShapesData, Parents and datagrams laid out byte for byte as the DAQ
//! and psana's writers lay them out, and the smd file that goes with a big file. What
//! `shotflow simulate --format xtc2` writes, and what psana reads back in CI.

use super::format::{DataType, Transition, XTC_HEADER};
use super::names::{Field, Names};
use crate::event::{Array, Value};

/// Type ids of the `Xtc`s written.
const PARENT: u16 = 0;
const SHAPES_DATA: u16 = 1;
const SHAPES: u16 = 2;
const DATA: u16 = 3;
const NAMES: u16 = 4;

/// An `Xtc`: header then payload.
pub fn xtc(src: u32, damage: u16, kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(XTC_HEADER + payload.len());
    out.extend_from_slice(&src.to_le_bytes());
    out.extend_from_slice(&damage.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&((XTC_HEADER + payload.len()) as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A Parent holding `children` (each a whole `Xtc`).
pub fn parent(src: u32, children: &[Vec<u8>]) -> Vec<u8> {
    xtc(src, 0, PARENT, &children.concat())
}

fn char256(text: &str) -> [u8; 256] {
    let mut out = [0u8; 256];
    let n = text.len().min(255);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

/// A Names `Xtc` for NamesId `id`.
pub fn names(id: u32, def: &Names) -> Vec<u8> {
    let mut p = Vec::with_capacity(1036 + 524 * def.fields.len());
    let arrays = def.arrays() as u32;
    p.extend_from_slice(&arrays.to_le_bytes());
    p.extend_from_slice(&char256(&def.det_type));
    p.extend_from_slice(&char256(&def.det_name));
    p.extend_from_slice(&char256(&def.det_id));
    p.extend_from_slice(&char256(&def.alg));
    p.extend_from_slice(&def.version.to_le_bytes());
    p.extend_from_slice(&def.segment.to_le_bytes());
    for f in &def.fields {
        p.extend_from_slice(&char256(""));
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&char256(&f.raw_name));
        p.extend_from_slice(&(f.dtype as u32).to_le_bytes());
        p.extend_from_slice(&f.rank.to_le_bytes());
    }
    xtc(id, 0, NAMES, &p)
}

/// A ShapesData `Xtc` of NamesId `id`: `values` in the order of `def`'s fields (a string as a
/// rank-1 u8 array of its bytes; it is stored with its NUL, its length rounded up to a
/// multiple of 4, as `set_string` stores it).
///
/// # Panics
///
/// If the values do not match the fields' count or ranks (a bug in the writer's caller).
pub fn shapes_data(id: u32, def: &Names, values: &[Value], damage: u16) -> Vec<u8> {
    assert_eq!(
        values.len(),
        def.fields.len(),
        "{}: one value per field",
        def.det_name
    );
    let (mut shapes, mut data) = (Vec::new(), Vec::new());
    for (field, value) in def.fields.iter().zip(values) {
        let (name, dtype, rank) = (&field.raw_name, &field.dtype, &field.rank);
        if *dtype == DataType::CharStr {
            let Value::Array(a) = value else {
                panic!("{name}: a string is a u8 array")
            };
            let Array::U8(bytes) = a.as_ref() else {
                panic!("{name}: a string is a u8 array")
            };
            let mut text: Vec<u8> = bytes.iter().copied().collect();
            text.push(0);
            text.resize(text.len().div_ceil(4) * 4, 0);
            let mut dims = [0u32; 5];
            dims[0] = text.len() as u32;
            dims.iter()
                .for_each(|d| shapes.extend_from_slice(&d.to_le_bytes()));
            data.extend_from_slice(&text);
            continue;
        }
        assert_eq!(value.shape().len(), *rank as usize, "{name}: rank");
        if *rank > 0 {
            let mut dims = [0u32; 5];
            for (d, n) in dims.iter_mut().zip(value.shape()) {
                *d = *n as u32;
            }
            dims.iter()
                .for_each(|d| shapes.extend_from_slice(&d.to_le_bytes()));
        }
        data.extend_from_slice(&value.le_bytes());
    }
    let children = [xtc(0, 0, SHAPES, &shapes), xtc(0, 0, DATA, &data)];
    xtc(id, damage, SHAPES_DATA, &children.concat())
}

/// A datagram: header (time, env with the transition and readout group 0) and a root Parent
/// holding `children`.
pub fn dgram(timestamp: u64, transition: Transition, children: &[Vec<u8>], damage: u16) -> Vec<u8> {
    let env = ((transition.id() as u32) << 24) | 1;
    let root = xtc(0, damage, PARENT, &children.concat());
    let mut out = Vec::with_capacity(12 + root.len());
    out.extend_from_slice(&timestamp.to_le_bytes());
    out.extend_from_slice(&env.to_le_bytes());
    out.extend_from_slice(&root);
    out
}

/// NamesId of the smdinfo block, as `smdwriter` declares it (node 512, id 0).
pub const SMD_NAMES_ID: u32 = 0x20000;

/// The smdinfo schema.
pub fn smd_names() -> Names {
    Names {
        det_type: "offset".into(),
        det_name: "smdinfo".into(),
        det_id: String::new(),
        alg: "offsetAlg".into(),
        version: 0,
        segment: 0,
        fields: vec![
            Field::new("intOffset", DataType::U64, 0),
            Field::new("intDgramSize", DataType::U64, 0),
        ],
    }
}

/// The smd file's datagram for a big datagram `big` at `offset` of its chunk, as `smdwriter`
/// makes it: the Configure with the smdinfo Names added, an L1Accept replaced by its offset
/// and size, an EndRun reduced to its header, any other transition copied.
pub fn smd_datagram(big: &[u8], offset: u64) -> Vec<u8> {
    let d = super::format::Dgram::parse(big).expect("a whole datagram");
    match d.transition() {
        Transition::Configure => {
            let mut out = big.to_vec();
            let extra = names(SMD_NAMES_ID, &smd_names());
            out.extend_from_slice(&extra);
            let extent = d.xtc.extent + extra.len() as u32;
            out[20..24].copy_from_slice(&extent.to_le_bytes());
            out
        }
        Transition::L1Accept => {
            let values = [Value::U64(offset), Value::U64(big.len() as u64)];
            let block = shapes_data(SMD_NAMES_ID, &smd_names(), &values, 0);
            dgram(d.timestamp, Transition::L1Accept, &[block], 0)
        }
        Transition::EndRun => {
            let mut out = big[..24].to_vec();
            out[20..24].copy_from_slice(&(XTC_HEADER as u32).to_le_bytes());
            out
        }
        _ => big.to_vec(),
    }
}
