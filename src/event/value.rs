//! Field values: scalars and n-dimensional arrays of the numeric types detectors and
//! facilities produce, plus `bool`.
//!
//! Scalars are stored inline; arrays are boxed so that a [`Value`] stays 16 bytes and an event
//! of a few scalars is a few cache lines.

use std::fmt;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use serde::{Deserialize, Serialize};

/// The element type of a value.
///
/// The discriminants are the codes recordings store on disk ([`DType::code`]): they are fixed
/// here, not positions, so reordering the variants cannot change what files mean.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
#[repr(u8)]
pub enum DType {
    Bool = 0,
    U8 = 1,
    U16 = 2,
    U32 = 3,
    U64 = 4,
    I8 = 5,
    I16 = 6,
    I32 = 7,
    I64 = 8,
    F32 = 9,
    F64 = 10,
}

/// Runs `$body` with `$t` bound to the Rust element type of a [`DType`] value: the one dispatch
/// from a run-time dtype to typed code (readers, decoders, writers all use it).
///
/// # Examples
///
/// ```
/// use shotflow::event::DType;
///
/// let sizes: Vec<usize> = DType::ALL.iter().map(|d| shotflow::with_dtype!(*d, T => std::mem::size_of::<T>())).collect();
/// assert_eq!(sizes, [1, 1, 2, 4, 8, 1, 2, 4, 8, 4, 8]);
/// ```
#[macro_export]
macro_rules! with_dtype {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            $crate::event::DType::Bool => {
                type $t = bool;
                $body
            }
            $crate::event::DType::U8 => {
                type $t = u8;
                $body
            }
            $crate::event::DType::U16 => {
                type $t = u16;
                $body
            }
            $crate::event::DType::U32 => {
                type $t = u32;
                $body
            }
            $crate::event::DType::U64 => {
                type $t = u64;
                $body
            }
            $crate::event::DType::I8 => {
                type $t = i8;
                $body
            }
            $crate::event::DType::I16 => {
                type $t = i16;
                $body
            }
            $crate::event::DType::I32 => {
                type $t = i32;
                $body
            }
            $crate::event::DType::I64 => {
                type $t = i64;
                $body
            }
            $crate::event::DType::F32 => {
                type $t = f32;
                $body
            }
            $crate::event::DType::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 11] = [
        DType::Bool,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F32,
        DType::F64,
    ];

    /// NumPy's name for the type (`"uint16"`, `"float64"`, ...), as users see it in h5py.
    pub fn numpy_name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        crate::with_dtype!(self, T => std::mem::size_of::<T>())
    }

    /// The code that stands for this dtype in files (recordings).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The dtype a file's code stands for, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use shotflow::event::DType;
    /// assert_eq!(DType::from_code(DType::U16.code()), Some(DType::U16));
    /// assert_eq!(DType::from_code(11), None);
    /// ```
    pub fn from_code(code: u8) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| d.code() == code)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.numpy_name())
    }
}

/// An n-dimensional array of one of the supported element types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Array {
    Bool(ArrayD<bool>),
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
}

/// Applies `$body` to the typed array inside an [`Array`], whatever its element type.
macro_rules! each_array {
    ($array:expr, $a:ident => $body:expr) => {
        match $array {
            Array::Bool($a) => $body,
            Array::U8($a) => $body,
            Array::U16($a) => $body,
            Array::U32($a) => $body,
            Array::U64($a) => $body,
            Array::I8($a) => $body,
            Array::I16($a) => $body,
            Array::I32($a) => $body,
            Array::I64($a) => $body,
            Array::F32($a) => $body,
            Array::F64($a) => $body,
        }
    };
}
pub(crate) use each_array;

/// Applies `$body` to the scalar inside a [`Value`] (a reference, bound to `$x`), whatever its
/// type, and `$other` to an array value (bound to `$a`).
macro_rules! each_scalar {
    ($value:expr, $x:ident => $body:expr, array $a:ident => $other:expr) => {
        match $value {
            Value::Bool($x) => $body,
            Value::U8($x) => $body,
            Value::U16($x) => $body,
            Value::U32($x) => $body,
            Value::U64($x) => $body,
            Value::I8($x) => $body,
            Value::I16($x) => $body,
            Value::I32($x) => $body,
            Value::I64($x) => $body,
            Value::F32($x) => $body,
            Value::F64($x) => $body,
            Value::Array($a) => $other,
        }
    };
}
pub(crate) use each_scalar;

fn dtype_of_element<T: Element>(_: &T) -> DType {
    T::DTYPE
}

fn dtype_of_array<T: Element>(_: &ArrayD<T>) -> DType {
    T::DTYPE
}

impl Array {
    /// The elements as little-endian bytes in C order (this is a little-endian host): the
    /// array's own memory when it is one contiguous block of numbers, else a laid-out copy
    /// (strided views, and bool as 0/1 bytes). File and wire formats send these bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shotflow::event::Array;
    /// use ndarray::{ArrayD, IxDyn};
    /// use std::borrow::Cow;
    ///
    /// let a = Array::U16(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1u16, 0x0203]).unwrap());
    /// assert!(matches!(a.le_bytes(), Cow::Borrowed(&[1, 0, 3, 2])));
    /// let t = Array::U16(ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1u16, 2, 3, 4]).unwrap().reversed_axes());
    /// assert_eq!(&*t.le_bytes(), &[1, 0, 3, 0, 2, 0, 4, 0]);
    /// ```
    pub fn le_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        macro_rules! bytes {
            ($a:expr) => {
                match $a.as_slice() {
                    Some(s) => Cow::Borrowed(bytemuck::cast_slice(s)),
                    None => Cow::Owned($a.iter().flat_map(|x| x.to_le_bytes()).collect()),
                }
            };
        }
        match self {
            Array::Bool(a) => Cow::Owned(a.iter().map(|b| *b as u8).collect()),
            Array::U8(a) => bytes!(a),
            Array::U16(a) => bytes!(a),
            Array::U32(a) => bytes!(a),
            Array::U64(a) => bytes!(a),
            Array::I8(a) => bytes!(a),
            Array::I16(a) => bytes!(a),
            Array::I32(a) => bytes!(a),
            Array::I64(a) => bytes!(a),
            Array::F32(a) => bytes!(a),
            Array::F64(a) => bytes!(a),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        each_array!(self, a => dtype_of_array(a))
    }

    /// Shape (row-major).
    pub fn shape(&self) -> &[usize] {
        each_array!(self, a => a.shape())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each_array!(self, a => a.len())
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements converted to `f64`, in row-major order (`true` is 1).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        each_array!(self, a => a.iter().map(|x| x.to_f64()).collect())
    }

    /// The first element in row-major order as `f64`, without converting the others.
    pub fn first_f64(&self) -> Option<f64> {
        each_array!(self, a => a.iter().next().map(|x| x.to_f64()))
    }

    /// The sum of the elements as `f64`, on the stored type, with no copy: integers of up to
    /// 32 bits add up exactly in 64-bit integers (any order, so every vector lane is used; the
    /// result equals a row-major `f64` sum, which is exact too below 2⁵³; u16 and f32 on the
    /// CPU's best vector instructions, `shotflow_operators::simd`); `f32` adds up as `f64` in
    /// 16 lanes (the same bits on every CPU), other types as `f64` in row-major order.
    ///
    /// ```
    /// use shotflow::event::Array;
    /// use ndarray::ArrayD;
    ///
    /// let frame = Array::U16(ArrayD::<u16>::from_elem(vec![512, 128], 65535));
    /// assert_eq!(frame.sum_f64(), 65535.0 * 512.0 * 128.0);
    /// assert_eq!(frame.sum_f64(), frame.to_f64_vec().iter().sum::<f64>());
    /// ```
    pub fn sum_f64(&self) -> f64 {
        fn unsigned<T: Copy + Into<u64>>(a: &ndarray::ArrayD<T>) -> f64 {
            match a.as_slice() {
                Some(s) => s.iter().map(|&x| x.into()).sum::<u64>() as f64,
                None => a.iter().map(|&x| x.into()).sum::<u64>() as f64,
            }
        }
        fn signed<T: Copy + Into<i64>>(a: &ndarray::ArrayD<T>) -> f64 {
            match a.as_slice() {
                Some(s) => s.iter().map(|&x| x.into()).sum::<i64>() as f64,
                None => a.iter().map(|&x| x.into()).sum::<i64>() as f64,
            }
        }
        let isa = shotflow_operators::simd::Isa::detect();
        match self {
            Array::U8(a) => unsigned(a),
            Array::U16(a) => match a.as_slice() {
                Some(s) => shotflow_operators::simd::sum_u16(isa, s) as f64,
                None => unsigned(a),
            },
            Array::F32(a) => match a.as_slice() {
                Some(s) => shotflow_operators::simd::sum_f32(isa, s),
                None => a.iter().map(|&x| x as f64).sum(),
            },
            Array::F64(a) => a.iter().sum(),
            Array::U32(a) => unsigned(a),
            Array::I8(a) => signed(a),
            Array::I16(a) => signed(a),
            Array::I32(a) => signed(a),
            other => each_array!(other, a => a.iter().map(|x| x.to_f64()).sum()),
        }
    }
}

/// One field value: a scalar or an array.
///
/// # Examples
///
/// ```
/// use shotflow::event::{DType, Value};
/// use ndarray::ArrayD;
///
/// let energy = Value::from(1.25_f64);
/// assert_eq!(energy.dtype(), DType::F64);
/// assert!(energy.shape().is_empty());
///
/// let frame = Value::from(ArrayD::<u16>::zeros(vec![512, 128]));
/// assert_eq!(frame.dtype(), DType::U16);
/// assert_eq!(frame.shape(), &[512, 128]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Value {
    Bool(bool),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Array(Box<Array>),
}

impl Value {
    /// Element type (of the scalar, or of the array's elements).
    pub fn dtype(&self) -> DType {
        each_scalar!(self, x => dtype_of_element(x), array a => a.dtype())
    }

    /// Shape: empty for a scalar.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::Array(a) => a.shape(),
            _ => &[],
        }
    }

    /// A scalar converted to `f64` (`true` is 1); `None` for arrays.
    #[inline]
    pub fn as_f64(&self) -> Option<f64> {
        each_scalar!(self, x => Some(x.to_f64()), array _a => None)
    }

    /// A scalar's little-endian bytes (`bool` as one 0/1 byte); an array's, as
    /// [`Array::le_bytes`] gives them.
    pub fn le_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        each_scalar!(self, x => Cow::Owned(bytemuck::bytes_of(&x.to_raw()).to_vec()), array a => a.le_bytes())
    }

    /// Bytes of the value's elements: its size in memory and in a file, without headers.
    pub fn nbytes(&self) -> usize {
        match self {
            Value::Array(a) => a.len() * a.dtype().size(),
            scalar => scalar.dtype().size(),
        }
    }

    /// The array inside, if this is an array value.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A Rust type that can be a field element: `bool` and the fixed-width integers and floats.
///
/// It connects a Rust type with its [`DType`] and with the [`Value`] and [`Array`] variants that
/// hold it, so that typed access needs no conversion.
pub trait Element: Copy + Send + Sync + PartialEq + fmt::Debug + 'static {
    /// The dtype of this type.
    const DTYPE: DType;
    /// Wraps a scalar.
    fn into_value(self) -> Value;
    /// Unwraps a scalar of exactly this type.
    fn from_value(value: &Value) -> Option<Self>;
    /// Wraps an array.
    fn into_array(array: ArrayD<Self>) -> Array;
    /// Views an array of exactly this element type.
    fn view(array: &Array) -> Option<ArrayViewD<'_, Self>>;
    /// Lossy conversion to `f64` (`true` is 1), for reductions and summaries.
    fn to_f64(self) -> f64;
    /// The plain-bytes type this element travels as in files and on the wire (`u8` for
    /// `bool`, the type itself for numbers).
    type Raw: bytemuck::Pod;
    /// Elements from their raw form (no copy for numbers).
    fn from_raw(raw: Vec<Self::Raw>) -> Vec<Self>;
    /// One element in its raw form.
    fn to_raw(self) -> Self::Raw;
}

macro_rules! element {
    ($t:ty, $variant:ident, $x:ident => $to_f64:expr) => {
        element!($t, $variant, $x => $to_f64, $t, |raw: Vec<$t>| raw);
    };
    ($t:ty, $variant:ident, $x:ident => $to_f64:expr, $raw:ty, $from_raw:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            type Raw = $raw;
            fn from_raw(raw: Vec<$raw>) -> Vec<$t> {
                ($from_raw)(raw)
            }
            fn to_raw(self) -> $raw {
                self as $raw
            }
            fn into_value(self) -> Value {
                Value::$variant(self)
            }
            fn from_value(value: &Value) -> Option<Self> {
                match value {
                    Value::$variant(x) => Some(*x),
                    _ => None,
                }
            }
            fn into_array(array: ArrayD<Self>) -> Array {
                Array::$variant(array)
            }
            fn view(array: &Array) -> Option<ArrayViewD<'_, Self>> {
                match array {
                    Array::$variant(a) => Some(a.view()),
                    _ => None,
                }
            }
            #[inline]
            fn to_f64(self) -> f64 {
                let $x = self;
                $to_f64
            }
        }

        impl From<$t> for Value {
            fn from(x: $t) -> Value {
                Value::$variant(x)
            }
        }

        impl From<ArrayD<$t>> for Value {
            fn from(a: ArrayD<$t>) -> Value {
                Value::Array(Box::new(Array::$variant(a)))
            }
        }

        impl From<Vec<$t>> for Value {
            fn from(v: Vec<$t>) -> Value {
                let n = v.len();
                Value::from(ArrayD::from_shape_vec(IxDyn(&[n]), v).expect("1-d shape"))
            }
        }
    };
}

element!(bool, Bool, x => if x { 1.0 } else { 0.0 }, u8, |raw: Vec<u8>| raw
    .into_iter()
    .map(|b| b != 0)
    .collect());
element!(u8, U8, x => x as f64);
element!(u16, U16, x => x as f64);
element!(u32, U32, x => x as f64);
element!(u64, U64, x => x as f64);
element!(i8, I8, x => x as f64);
element!(i16, I16, x => x as f64);
element!(i32, I32, x => x as f64);
element!(i64, I64, x => x as f64);
element!(f32, F32, x => x as f64);
element!(f64, F64, x => x);

/// The value that marks a missing element, one rule for every format: NaN for floats; -99999
/// where the integer type holds it; else the type's minimum (signed) or maximum (unsigned);
/// false for bool. The smalldata output fills missing rows with it, and the XTC2 reader the
/// segments an event lacks.
///
/// ```
/// use shotflow::event::Missing;
/// assert_eq!(<u16 as Missing>::MISSING, u16::MAX);
/// assert_eq!(<i32 as Missing>::MISSING, -99_999);
/// assert!(<f32 as Missing>::MISSING.is_nan());
/// ```
pub trait Missing: Element {
    /// The missing value.
    const MISSING: Self;
}

macro_rules! missing {
    ($($t:ty => $v:expr),* $(,)?) => {$(impl Missing for $t { const MISSING: Self = $v; })*};
}
missing!(
    bool => false, u8 => u8::MAX, u16 => u16::MAX, u32 => u32::MAX, u64 => u64::MAX,
    i8 => i8::MIN, i16 => i16::MIN, i32 => -99_999, i64 => -99_999,
    f32 => f32::NAN, f64 => f64::NAN,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Recordings store these codes: changing one makes old files unreadable or, worse,
    /// misread. Pin them.
    #[test]
    fn dtype_codes_on_disk_are_pinned() {
        let codes: Vec<(DType, u8)> = DType::ALL.iter().map(|d| (*d, d.code())).collect();
        assert_eq!(
            codes,
            [
                (DType::Bool, 0),
                (DType::U8, 1),
                (DType::U16, 2),
                (DType::U32, 3),
                (DType::U64, 4),
                (DType::I8, 5),
                (DType::I16, 6),
                (DType::I32, 7),
                (DType::I64, 8),
                (DType::F32, 9),
                (DType::F64, 10),
            ]
        );
        for d in DType::ALL {
            assert_eq!(DType::from_code(d.code()), Some(d));
        }
    }

    #[test]
    fn values_stay_small() {
        // A scalar-heavy event must not pay for the array variant's size.
        assert_eq!(std::mem::size_of::<Value>(), 16);
    }

    #[test]
    fn typed_access_is_exact() {
        let v = Value::from(3_u16);
        assert_eq!(u16::from_value(&v), Some(3));
        assert_eq!(u32::from_value(&v), None);
        assert_eq!(v.as_f64(), Some(3.0));
        let a = Value::from(vec![1.5_f32, 2.5]);
        assert_eq!(a.shape(), &[2]);
        assert_eq!(f32::view(a.as_array().unwrap()).unwrap().sum(), 4.0);
        assert!(f64::view(a.as_array().unwrap()).is_none());
    }
}
