//! Saved summaries (psana's and tjlane's `save_summary`): named values stored in the master
//! beside the per-event datasets, at their own paths (`n_workers`, `pump_probe/n_on`).
//!
//! A value is either given up front ([`SmallData::save`](super::SmallData::save): a number,
//! an array or a string, written by worker 0 into every master) or contributed from the stream
//! ([`Row::saved`](super::Row::saved)) and reduced. Contributions are folded per batch on the
//! writer that owns the batch (in event-id order) and the batches' partials in batch order on
//! worker 0, like the run summaries: the result has the same bits at any worker count and
//! after a resume, which continues the fold from the manifest.

use serde::{Deserialize, Serialize};

use crate::event::{each_array, each_scalar, Array, DType, Element, Value};

/// How contributions to one saved summary combine. Every contribution must have the type and
/// shape of the first (values are never cast), except with [`Reduce::Last`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reduce {
    /// Element-wise sum (numbers; an integer overflow is an error, not a wrap).
    Sum,
    /// Element-wise minimum (numbers; a NaN never wins over a number).
    Min,
    /// Element-wise maximum (numbers; a NaN never wins over a number).
    Max,
    /// Logical and (bool).
    And,
    /// Logical or (bool).
    Or,
    /// Bitwise and (integers, bool).
    BitAnd,
    /// Bitwise or (integers, bool).
    BitOr,
    /// The latest contribution (batch order, then event id): for a value computed in one place,
    /// such as a result an ordered stage keeps up to date. It may change type or shape.
    Last,
}

impl Reduce {
    fn name(self) -> &'static str {
        match self {
            Reduce::Sum => "sum",
            Reduce::Min => "min",
            Reduce::Max => "max",
            Reduce::And => "logical and",
            Reduce::Or => "logical or",
            Reduce::BitAnd => "bitwise and",
            Reduce::BitOr => "bitwise or",
            Reduce::Last => "last",
        }
    }
}

/// A value given up front to [`SmallData::save`](super::SmallData::save).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Saved {
    /// A number or an array.
    Value(Value),
    /// A string (h5py reads it as `str` with `.asstr()`).
    Text(String),
}

impl From<Value> for Saved {
    fn from(value: Value) -> Saved {
        Saved::Value(value)
    }
}

impl From<&str> for Saved {
    fn from(text: &str) -> Saved {
        Saved::Text(text.to_string())
    }
}

impl From<String> for Saved {
    fn from(text: String) -> Saved {
        Saved::Text(text)
    }
}

macro_rules! saved_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Saved {
            fn from(x: $t) -> Saved {
                Saved::Value(Value::from(x))
            }
        }
        impl From<Vec<$t>> for Saved {
            fn from(x: Vec<$t>) -> Saved {
                Saved::Value(Value::from(x))
            }
        }
    )*};
}
saved_from!(bool, u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

/// One reduced saved summary: a batch's partial, or the run's total so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedTotal {
    /// Its path in the master.
    pub name: String,
    /// How its contributions combine.
    pub reduce: Reduce,
    /// The value.
    pub value: Value,
}

/// Why two contributions to a saved summary cannot be combined.
#[derive(Debug, thiserror::Error)]
#[error("saved summary {name:?} ({reduce}): {problem}")]
pub struct SavedError {
    /// The summary.
    pub name: String,
    /// Its reduction.
    pub reduce: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// Folds `value` (reduced by `reduce`) into `totals`: the first contribution to `name` starts
/// it, later ones combine with it.
pub(crate) fn fold(
    totals: &mut Vec<SavedTotal>,
    name: &str,
    reduce: Reduce,
    value: &Value,
) -> Result<(), SavedError> {
    let error = |problem: String| SavedError {
        name: name.to_string(),
        reduce: reduce.name(),
        problem,
    };
    let Some(total) = totals.iter_mut().find(|t| t.name == name) else {
        // Checked on its own too: a summary seen once must not hold a value its reduction
        // cannot combine.
        if reduce != Reduce::Last {
            defined(reduce, value.dtype()).map_err(error)?;
        }
        totals.push(SavedTotal {
            name: name.to_string(),
            reduce,
            value: value.clone(),
        });
        return Ok(());
    };
    if total.reduce != reduce {
        return Err(error(format!(
            "contributed with {} before and {} now",
            total.reduce.name(),
            reduce.name()
        )));
    }
    total.value = combine(reduce, &total.value, value).map_err(error)?;
    Ok(())
}

/// Folds the partials of one batch into the totals, in the order given.
pub(crate) fn fold_all(
    totals: &mut Vec<SavedTotal>,
    partials: &[SavedTotal],
) -> Result<(), SavedError> {
    for partial in partials {
        fold(totals, &partial.name, partial.reduce, &partial.value)?;
    }
    Ok(())
}

fn describe(value: &Value) -> String {
    format!("{} {:?}", value.dtype(), value.shape())
}

/// `a` combined with `b` element by element.
fn combine(reduce: Reduce, a: &Value, b: &Value) -> Result<Value, String> {
    if reduce == Reduce::Last {
        return Ok(b.clone());
    }
    if (a.dtype(), a.shape()) != (b.dtype(), b.shape()) {
        return Err(format!(
            "{} before, {} now; values are never cast",
            describe(a),
            describe(b)
        ));
    }
    crate::with_dtype!(a.dtype(), T => combine_typed::<T>(reduce, a, b))
}

fn elements<T: Element>(value: &Value) -> Vec<T> {
    match value {
        Value::Array(a) => T::view(a).expect("dtype checked").iter().copied().collect(),
        scalar => vec![T::from_value(scalar).expect("dtype checked")],
    }
}

/// Whether `reduce` is defined for values of `dtype`.
fn defined(reduce: Reduce, dtype: DType) -> Result<(), String> {
    let op = crate::with_dtype!(dtype, T => <T as Combine>::op(reduce).map(drop));
    op.ok_or_else(|| format!("not defined for {dtype}"))
}

fn combine_typed<T: Combine>(reduce: Reduce, a: &Value, b: &Value) -> Result<Value, String> {
    defined(reduce, a.dtype())?;
    let op = T::op(reduce).expect("defined");
    let out = elements::<T>(a)
        .into_iter()
        .zip(elements::<T>(b))
        .map(|(x, y)| op(x, y).ok_or_else(|| format!("{x:?} and {y:?} overflow {}", a.dtype())))
        .collect::<Result<Vec<T>, String>>()?;
    Ok(match a {
        Value::Array(_) => {
            let shape = ndarray::IxDyn(a.shape());
            Value::Array(Box::new(T::into_array(
                ndarray::ArrayD::from_shape_vec(shape, out).expect("same shape"),
            )))
        }
        _ => out[0].into_value(),
    })
}

/// The reductions an element type has: `None` where a reduction is not defined for it; an
/// operation returns `None` on integer overflow.
trait Combine: Element + std::fmt::Debug {
    fn op(reduce: Reduce) -> Option<fn(Self, Self) -> Option<Self>>;
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl Combine for $t {
            fn op(reduce: Reduce) -> Option<fn($t, $t) -> Option<$t>> {
                match reduce {
                    Reduce::Sum => Some(|x, y| x.checked_add(y)),
                    Reduce::Min => Some(|x, y| Some(x.min(y))),
                    Reduce::Max => Some(|x, y| Some(x.max(y))),
                    Reduce::BitAnd => Some(|x, y| Some(x & y)),
                    Reduce::BitOr => Some(|x, y| Some(x | y)),
                    Reduce::And | Reduce::Or | Reduce::Last => None,
                }
            }
        }
    )*};
}
integers!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! floats {
    ($($t:ty),*) => {$(
        impl Combine for $t {
            fn op(reduce: Reduce) -> Option<fn($t, $t) -> Option<$t>> {
                match reduce {
                    Reduce::Sum => Some(|x, y| Some(x + y)),
                    Reduce::Min => Some(|x, y| Some(x.min(y))),
                    Reduce::Max => Some(|x, y| Some(x.max(y))),
                    _ => None,
                }
            }
        }
    )*};
}
floats!(f32, f64);

impl Combine for bool {
    fn op(reduce: Reduce) -> Option<fn(bool, bool) -> Option<bool>> {
        match reduce {
            Reduce::And | Reduce::BitAnd => Some(|x, y| Some(x & y)),
            Reduce::Or | Reduce::BitOr => Some(|x, y| Some(x | y)),
            _ => None,
        }
    }
}

/// Writes `value` as dataset `name` of `file` (parent groups created).
pub(crate) fn write(file: &hdf5::File, name: &str, value: &Saved) -> hdf5::Result<()> {
    super::part_file::create_groups(file, name)?;
    let builder = file.new_dataset_builder();
    match value {
        Saved::Text(text) => {
            let text: hdf5::types::VarLenUnicode = text
                .parse()
                .map_err(|e| hdf5::Error::from(format!("{name}: {e}")))?;
            builder.with_data(&ndarray::arr0(text)).create(name)?;
        }
        Saved::Value(value) => {
            each_scalar!(
                value,
                x => drop(builder.with_data(&ndarray::arr0(*x)).create(name)?),
                array a => write_array(builder, name, a)?
            );
        }
    }
    Ok(())
}

fn write_array(builder: hdf5::DatasetBuilder, name: &str, array: &Array) -> hdf5::Result<()> {
    each_array!(array, a => builder.with_data(a).create(name).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(reduce: Reduce, values: &[Value]) -> Result<Value, SavedError> {
        let mut totals = Vec::new();
        for v in values {
            fold(&mut totals, "x", reduce, v)?;
        }
        Ok(totals.remove(0).value)
    }

    #[test]
    fn reductions_combine_element_by_element() {
        let a = Value::from(vec![1i32, 5, -3]);
        let b = Value::from(vec![4i32, 2, -7]);
        let both = [a.clone(), b.clone()];
        assert_eq!(
            run(Reduce::Sum, &both).unwrap(),
            Value::from(vec![5i32, 7, -10])
        );
        assert_eq!(
            run(Reduce::Min, &both).unwrap(),
            Value::from(vec![1i32, 2, -7])
        );
        assert_eq!(
            run(Reduce::Max, &both).unwrap(),
            Value::from(vec![4i32, 5, -3])
        );
        assert_eq!(
            run(Reduce::BitAnd, &both).unwrap(),
            Value::from(vec![0i32, 0, -7])
        );
        assert_eq!(
            run(Reduce::BitOr, &both).unwrap(),
            Value::from(vec![5i32, 7, -3])
        );
        assert_eq!(run(Reduce::Last, &both).unwrap(), b);
        let (t, f) = (
            Value::from(vec![true, true, false]),
            Value::from(vec![true, false, false]),
        );
        assert_eq!(run(Reduce::And, &[t.clone(), f.clone()]).unwrap(), f);
        assert_eq!(run(Reduce::Or, &[t.clone(), f]).unwrap(), t);
        assert_eq!(
            run(Reduce::Sum, &[Value::F64(0.5), Value::F64(0.25)]).unwrap(),
            Value::F64(0.75)
        );
        // NaN never wins over a number.
        let nan = Value::from(vec![f32::NAN, 1.0]);
        let min = run(Reduce::Min, &[nan, Value::from(vec![2.0f32, f32::NAN])]).unwrap();
        assert_eq!(min, Value::from(vec![2.0f32, 1.0]));
    }

    #[test]
    fn what_cannot_combine_is_named() {
        assert_eq!(run(Reduce::Sum, &[Value::U8(200)]).unwrap(), Value::U8(200));
        let e = run(Reduce::Sum, &[Value::U8(200), Value::U8(100)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "saved summary \"x\" (sum): 200 and 100 overflow uint8"
        );
        let e = run(Reduce::Sum, &[Value::F64(1.0), Value::F32(1.0)]).unwrap_err();
        assert!(
            e.to_string().contains("float64 [] before, float32 [] now"),
            "{e}"
        );
        let e = run(
            Reduce::Sum,
            &[Value::from(vec![1u16]), Value::from(vec![1u16, 2])],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("uint16 [1] before, uint16 [2] now"),
            "{e}"
        );
        let e = run(Reduce::And, &[Value::F64(1.0)]).unwrap_err();
        assert!(e.to_string().contains("not defined for float64"), "{e}");
        let mut totals = Vec::new();
        fold(&mut totals, "x", Reduce::Sum, &Value::I64(1)).unwrap();
        let e = fold(&mut totals, "x", Reduce::Max, &Value::I64(1)).unwrap_err();
        assert!(e.to_string().contains("sum before and max now"), "{e}");
    }
}
