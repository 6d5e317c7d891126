//! Decoding one datagram: walking its nested `Xtc`s, collecting a Configure's Names, and
//! turning each ShapesData into typed values by its schema.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use super::format::{u32_at, DataType, Dgram, Xtc, XtcKind, CORRUPTED, DGRAM_HEADER, XTC_HEADER};
use super::names::{Names, NamesTable};
use crate::event::{Array, Element, Value};

/// The values of one ShapesData: one detector segment's algorithm in one datagram.
#[derive(Clone, Debug)]
pub struct Block {
    /// Its schema.
    pub names: Arc<Names>,
    /// Its damage bits.
    pub damage: u16,
    /// One value per field of `names` (an ENUMDICT entry's code too); a string is the bytes
    /// before its NUL.
    pub values: Vec<Value>,
}

/// Calls `visit(offset, header)` for every `Xtc` under the datagram's root, depth first,
/// entering Parents (but not the payload of a Parent marked Corrupted). `Err` names the
/// offset of a child that does not fit its parent.
pub fn walk(
    buf: &[u8],
    visit: &mut dyn FnMut(usize, &Xtc) -> Result<(), String>,
) -> Result<(), String> {
    let root = Xtc::at(buf, DGRAM_HEADER - XTC_HEADER).ok_or("no root Xtc header")?;
    walk_parent(buf, DGRAM_HEADER - XTC_HEADER, &root, visit, 0)
}

fn walk_parent(
    buf: &[u8],
    at: usize,
    parent: &Xtc,
    visit: &mut dyn FnMut(usize, &Xtc) -> Result<(), String>,
    depth: usize,
) -> Result<(), String> {
    if parent.damage & CORRUPTED != 0 {
        return Ok(());
    }
    if depth > 64 {
        return Err(format!("byte {at}: Parents nested more than 64 deep"));
    }
    let end = at + parent.extent as usize;
    if end > buf.len() {
        return Err(format!(
            "byte {at}: an Xtc of {} bytes beyond its datagram's {}",
            parent.extent,
            buf.len()
        ));
    }
    let mut p = at + XTC_HEADER;
    while p < end {
        let child = Xtc::at(&buf[..end], p).ok_or_else(|| {
            format!(
                "byte {p}: {} bytes left in a Parent, less than an Xtc header",
                end - p
            )
        })?;
        if (child.extent as usize) < XTC_HEADER || p + child.extent as usize > end {
            return Err(format!(
                "byte {p}: an Xtc of extent {} in a Parent ending at byte {end}",
                child.extent
            ));
        }
        visit(p, &child)?;
        if child.kind() == XtcKind::Parent {
            walk_parent(buf, p, &child, visit, depth + 1)?;
        }
        p += child.extent as usize;
    }
    Ok(())
}

/// The Names a Configure datagram declares (the stream's whole new table).
pub fn configure_names(buf: &[u8]) -> Result<NamesTable, String> {
    let mut table = NamesTable::default();
    walk(buf, &mut |at, xtc| {
        if xtc.kind() == XtcKind::Names {
            let names = Names::parse(buf, at, xtc).map_err(|e| format!("byte {at}: {e}"))?;
            table.insert(xtc.names_id(), names)?;
        }
        Ok(())
    })?;
    Ok(table)
}

/// Every ShapesData of a datagram, decoded with `table`; `only` keeps those whose schema it
/// accepts (the others are not decoded at all).
pub fn blocks(
    buf: &[u8],
    table: &NamesTable,
    only: &dyn Fn(&Names) -> bool,
) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    walk(buf, &mut |at, xtc| {
        if xtc.kind() != XtcKind::ShapesData {
            return Ok(());
        }
        let names = table.get(xtc.names_id()).ok_or_else(|| {
            format!(
                "byte {at}: ShapesData of NamesId {:#x}, which the Configure does not declare",
                xtc.names_id()
            )
        })?;
        if !only(names) {
            return Ok(());
        }
        let values = shapes_data(buf, at, xtc, names).map_err(|e| {
            format!(
                "byte {at}: {}/{} segment {}: {e}",
                names.det_name, names.alg, names.segment
            )
        })?;
        out.push(Block {
            names: Arc::clone(names),
            damage: xtc.damage & 0x0FFF,
            values,
        });
        Ok(())
    })?;
    Ok(out)
}

/// The values of the ShapesData at `at`.
fn shapes_data(buf: &[u8], at: usize, xtc: &Xtc, names: &Names) -> Result<Vec<Value>, String> {
    let end = at + xtc.extent as usize;
    let (mut shapes, mut data) = (None, None);
    let mut p = at + XTC_HEADER;
    while p < end {
        let child = Xtc::at(&buf[..end], p).ok_or("a truncated child")?;
        if (child.extent as usize) < XTC_HEADER || p + child.extent as usize > end {
            return Err(format!(
                "a child of extent {} beyond the ShapesData",
                child.extent
            ));
        }
        let payload = &buf[p + XTC_HEADER..p + child.extent as usize];
        match child.kind() {
            XtcKind::Shapes => shapes = Some(payload),
            XtcKind::Data => data = Some(payload),
            _ => {}
        }
        p += child.extent as usize;
    }
    let data = data.ok_or("no Data")?;
    let shapes = shapes.unwrap_or(&[]);
    if shapes.len() / 20 < names.arrays() {
        return Err(format!(
            "{} array fields and {} shapes",
            names.arrays(),
            shapes.len() / 20
        ));
    }
    let mut values = Vec::with_capacity(names.fields.len());
    let (mut pos, mut shape_index) = (0usize, 0usize);
    for field in &names.fields {
        let dims: Vec<usize> = if field.rank == 0 {
            Vec::new()
        } else {
            let s = shape_index * 20;
            shape_index += 1;
            (0..field.rank as usize)
                .map(|k| u32_at(shapes, s + 4 * k).expect("counted above") as usize)
                .collect()
        };
        let count = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| format!("field {}: shape {dims:?} overflows", field.name))?;
        let bytes = count
            .checked_mul(field.dtype.size())
            .filter(|b| pos + b <= data.len())
            .ok_or_else(|| {
                format!(
                    "field {}: shape {dims:?} needs more than the {} bytes of Data left",
                    field.raw_name,
                    data.len() - pos
                )
            })?;
        let raw = &data[pos..pos + bytes];
        pos += bytes;
        values.push(
            value(field.dtype, &dims, raw).map_err(|e| format!("field {}: {e}", field.name))?,
        );
    }
    Ok(values)
}

/// A field's value from its bytes.
fn value(dtype: DataType, dims: &[usize], raw: &[u8]) -> Result<Value, String> {
    fn typed<T: Element>(dims: &[usize], raw: &[u8], from: fn(&[u8]) -> T) -> Value {
        let items: Vec<T> = if cfg!(target_endian = "little") {
            // The file's little-endian bytes are the elements' memory: one copy, any alignment.
            T::from_raw(bytemuck::pod_collect_to_vec::<u8, T::Raw>(raw))
        } else {
            raw.chunks_exact(std::mem::size_of::<T>())
                .map(from)
                .collect()
        };
        if dims.is_empty() {
            return items[0].into_value();
        }
        let array = ArrayD::from_shape_vec(IxDyn(dims), items).expect("counted from the dims");
        Value::Array(Box::new(T::into_array(array)))
    }
    macro_rules! le {
        ($t:ty) => {
            |b: &[u8]| <$t>::from_le_bytes(b.try_into().expect("element-sized chunk"))
        };
    }
    Ok(match dtype {
        DataType::U8 => typed::<u8>(dims, raw, |b| b[0]),
        DataType::I8 => typed::<i8>(dims, raw, |b| b[0] as i8),
        DataType::U16 => typed::<u16>(dims, raw, le!(u16)),
        DataType::I16 => typed::<i16>(dims, raw, le!(i16)),
        DataType::U32 => typed::<u32>(dims, raw, le!(u32)),
        DataType::I32 | DataType::EnumVal | DataType::EnumDict => typed::<i32>(dims, raw, le!(i32)),
        DataType::U64 => typed::<u64>(dims, raw, le!(u64)),
        DataType::I64 => typed::<i64>(dims, raw, le!(i64)),
        DataType::F32 => typed::<f32>(dims, raw, le!(f32)),
        DataType::F64 => typed::<f64>(dims, raw, le!(f64)),
        DataType::CharStr => {
            let end = raw
                .iter()
                .position(|&b| b == 0)
                .ok_or("a string without its terminating NUL")?;
            Value::Array(Box::new(Array::U8(
                ArrayD::from_shape_vec(IxDyn(&[end]), raw[..end].to_vec()).expect("1-D"),
            )))
        }
    })
}

/// The header of the datagram in `buf`, checked against the buffer's length.
pub fn header(buf: &[u8]) -> Result<Dgram, String> {
    let d = Dgram::parse(buf).ok_or("less than a datagram header")?;
    if d.size() as usize != buf.len() {
        return Err(format!(
            "a datagram of {} bytes in {} bytes",
            d.size(),
            buf.len()
        ));
    }
    Ok(d)
}
