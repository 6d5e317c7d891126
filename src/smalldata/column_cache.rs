//! Typed per-key write caches, and the fill value that marks a missing row.
//!
//! One rule gives the fill value of every dtype ([`Missing`]), and the same value is used for
//! rows cached in memory, for the part files' HDF5 fill property (rows created by a resize,
//! e.g. a key first seen late) and for the master's virtual-dataset fill (a part file that
//! never saw the key). psana wraps -99999 into narrow integers and clamps it in the VDS, so
//! one missing event reads as two different numbers there.

use hdf5::H5Type;

use crate::event::{DType, Element, EventId, Key, Missing, Value};

/// The "missing" value of an element type.
pub trait Fill: Element + H5Type {
    /// The fill value.
    const FILL: Self;
    /// Converts a small integer (used for the zero fill of `_len` datasets).
    fn from_i64(v: i64) -> Self;
    /// Wraps a vector of this type as a cache.
    fn cache(values: Vec<Self>) -> Data;
    /// True for NaN: the float fill, which no comparison finds.
    fn is_missing(&self) -> bool {
        self.to_f64().is_nan()
    }
}

macro_rules! fill {
    ($($t:ty, $variant:ident),* $(,)?) => {$(impl Fill for $t {
        const FILL: Self = <$t as Missing>::MISSING;
        fn from_i64(v: i64) -> Self { v as $t }
        fn cache(values: Vec<Self>) -> Data { Data::$variant(values) }
    })*};
}
impl Fill for bool {
    const FILL: Self = <bool as Missing>::MISSING;
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    fn cache(values: Vec<Self>) -> Data {
        Data::Bool(values)
    }
}
fill!(
    u8, U8, u16, U16, u32, U32, u64, U64, i8, I8, i16, I16, i32, I32, i64, I64, f32, F32, f64, F64,
);

/// Cached rows of one key, flattened row-major.
#[derive(Debug)]
#[allow(missing_docs)]
pub enum Data {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Applies `$body` with `$v` bound to the typed vector and `$t` to its element type.
macro_rules! with_data {
    ($data:expr, $v:ident : $t:ident => $body:expr) => {
        match $data {
            $crate::smalldata::column_cache::Data::Bool($v) => {
                type $t = bool;
                $body
            }
            $crate::smalldata::column_cache::Data::U8($v) => {
                type $t = u8;
                $body
            }
            $crate::smalldata::column_cache::Data::U16($v) => {
                type $t = u16;
                $body
            }
            $crate::smalldata::column_cache::Data::U32($v) => {
                type $t = u32;
                $body
            }
            $crate::smalldata::column_cache::Data::U64($v) => {
                type $t = u64;
                $body
            }
            $crate::smalldata::column_cache::Data::I8($v) => {
                type $t = i8;
                $body
            }
            $crate::smalldata::column_cache::Data::I16($v) => {
                type $t = i16;
                $body
            }
            $crate::smalldata::column_cache::Data::I32($v) => {
                type $t = i32;
                $body
            }
            $crate::smalldata::column_cache::Data::I64($v) => {
                type $t = i64;
                $body
            }
            $crate::smalldata::column_cache::Data::F32($v) => {
                type $t = f32;
                $body
            }
            $crate::smalldata::column_cache::Data::F64($v) => {
                type $t = f64;
                $body
            }
        }
    };
}
pub(crate) use with_data;

impl Data {
    /// An empty cache for `dtype`.
    pub fn new(dtype: DType) -> Data {
        crate::with_dtype!(dtype, T => T::cache(Vec::new()))
    }
}

/// A value whose dtype or shape differs from the key's first value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("key {key:?} at event {event}: got {got}, but its first value (event {first_event}) fixed it as {expected}; values are never cast")]
pub struct SchemaError {
    /// The key.
    pub key: String,
    /// The event whose value conflicts.
    pub event: EventId,
    /// The event that fixed the schema.
    pub first_event: EventId,
    /// Type and shape fixed by the first value, e.g. `float64[8]`.
    pub expected: String,
    /// Type and shape of the conflicting value.
    pub got: String,
}

/// `float32[8]`, `uint16[512, 128]`, `int64` (scalar).
pub fn describe(dtype: DType, shape: &[usize]) -> String {
    if shape.is_empty() {
        dtype.to_string()
    } else {
        format!("{dtype}{shape:?}")
    }
}

/// The cache of one key in a part file.
#[derive(Debug)]
pub(crate) struct Column {
    pub key: Key,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
    /// Rows in `data`.
    pub cached: usize,
    /// The part file's row index after the last row this column received (to spot events
    /// that lack the key).
    pub filled_to: usize,
    pub first_event: EventId,
    /// A `var_` column: the first axis of each value is ragged, rows are concatenated.
    pub ragged: bool,
    /// Rows (aligned) or elements along the ragged axis already in the file.
    pub written: usize,
}

fn extend<T: Fill>(out: &mut Vec<T>, value: &Value) {
    match value {
        Value::Array(array) => {
            let view = T::view(array).expect("dtype checked");
            // A dynamic-rank iterator costs an index computation per element; rows are almost
            // always contiguous.
            match view.as_slice() {
                Some(slice) => out.extend_from_slice(slice),
                None => out.extend(view.iter().copied()),
            }
        }
        scalar => out.push(T::from_value(scalar).expect("dtype checked")),
    }
}

impl Column {
    pub fn new(key: Key, value: &Value, event: EventId) -> Column {
        Column {
            key,
            dtype: value.dtype(),
            shape: value.shape().to_vec(),
            data: Data::new(value.dtype()),
            cached: 0,
            filled_to: 0,
            first_event: event,
            ragged: false,
            written: 0,
        }
    }

    /// A ragged (`var_`) column: its rows have the value's trailing shape.
    pub fn new_ragged(key: Key, value: &Value, event: EventId) -> Result<Column, SchemaError> {
        if value.shape().is_empty() {
            return Err(SchemaError {
                key: key.name().to_string(),
                event,
                first_event: event,
                expected: "an array (var_ keys hold a variable-length first axis)".into(),
                got: describe(value.dtype(), value.shape()),
            });
        }
        let mut column = Column::new(key, value, event);
        column.shape.remove(0);
        column.ragged = true;
        Ok(column)
    }

    /// Appends a ragged value; returns its length along the ragged axis.
    pub fn push_ragged(&mut self, value: &Value, event: EventId) -> Result<usize, SchemaError> {
        let shape = value.shape();
        let fits = !shape.is_empty()
            && value.dtype() == self.dtype
            && shape.len() == self.shape.len() + 1
            && shape[1..].iter().zip(&self.shape).all(|(a, b)| a == b);
        if !fits {
            let mut expected = vec![0];
            expected.extend_from_slice(&self.shape);
            return Err(SchemaError {
                key: self.key.name().to_string(),
                event,
                first_event: self.first_event,
                expected: describe(self.dtype, &expected).replacen('0', "n", 1),
                got: describe(value.dtype(), shape),
            });
        }
        with_data!(&mut self.data, v: T => extend::<T>(v, value));
        self.cached += shape[0];
        Ok(shape[0])
    }

    /// Elements per row.
    pub fn row_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_len() * self.dtype.size()
    }

    pub fn push(&mut self, value: &Value, event: EventId) -> Result<(), SchemaError> {
        let shape = value.shape();
        // Element-wise: slice equality calls memcmp, which dominated profiles of small rows.
        let same_shape =
            shape.len() == self.shape.len() && shape.iter().zip(&self.shape).all(|(a, b)| a == b);
        if value.dtype() != self.dtype || !same_shape {
            return Err(SchemaError {
                key: self.key.name().to_string(),
                event,
                first_event: self.first_event,
                expected: describe(self.dtype, &self.shape),
                got: describe(value.dtype(), value.shape()),
            });
        }
        with_data!(&mut self.data, v: T => extend::<T>(v, value));
        self.cached += 1;
        Ok(())
    }

    pub fn push_fill(&mut self, rows: usize) {
        let n = rows * self.row_len();
        with_data!(&mut self.data, v: T => v.extend(std::iter::repeat_n(T::FILL, n)));
        self.cached += rows;
    }

    pub fn clear(&mut self) {
        with_data!(&mut self.data, v: T => { let _: &mut Vec<T> = v; v.clear() });
        self.cached = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_values_are_representable_and_distinct_from_zero() {
        assert_eq!(<i16 as Fill>::FILL, -32768);
        assert_eq!(<i32 as Fill>::FILL, -99_999);
        assert_eq!(<u16 as Fill>::FILL, 65535);
        assert!(<f32 as Fill>::FILL.is_nan());
    }

    #[test]
    fn conflicting_values_name_key_event_and_types() {
        let key = Key::new("detector/sum");
        let mut column = Column::new(key, &Value::F64(1.0), 10);
        column.push(&Value::F64(1.0), 10).unwrap();
        let error = column.push(&Value::F32(2.0), 11).unwrap_err();
        assert_eq!(
            error.to_string(),
            "key \"detector/sum\" at event 11: got float32, but its first value (event 10) fixed it as float64; values are never cast"
        );
        let error = column
            .push(&Value::from(vec![1.0f64, 2.0]), 12)
            .unwrap_err();
        assert_eq!(error.got, "float64[2]");
    }
}
