//! Run summaries: sum, min, max, mean, count and fixed-bin histograms of a key, reduced per
//! batch on the writer that owns the batch and combined in batch order on worker 0, so the
//! floating-point result has the same bits whatever the number of workers or processes.
//! Histograms are the operators crate's [`Histogram`]: NaN values are counted apart, never in
//! a bin.

use serde::{Deserialize, Serialize};

use shotflow_operators::histogram::Histogram;

use super::Row;
use crate::event::Key;

/// What to summarise about a key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Summary {
    /// Element-wise sum, min, max, mean and the number of events with the key.
    Stats(String),
    /// Counts of a scalar key's values in `bins` equal bins over `[lo, hi)`, plus
    /// underflow, overflow and NaN.
    Histogram {
        /// The key.
        key: String,
        /// Lower edge.
        lo: f64,
        /// Upper edge.
        hi: f64,
        /// Number of bins.
        bins: usize,
    },
}

impl Summary {
    pub(crate) fn key(&self) -> &str {
        match self {
            Summary::Stats(k) => k,
            Summary::Histogram { key, .. } => key,
        }
    }
}

/// A partial (one batch) or final result of a [`Summary`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reduced {
    /// Element-wise statistics (a scalar key has one element).
    Stats {
        /// Events that had the key.
        count: u64,
        /// Element-wise sums.
        sum: Vec<f64>,
        /// Element-wise minima.
        min: Vec<f64>,
        /// Element-wise maxima.
        max: Vec<f64>,
        /// Per-event shape of the key.
        shape: Vec<usize>,
    },
    /// Histogram counts.
    Histogram(Histogram),
}

impl Reduced {
    /// An empty result (a batch, or a whole run, without the key).
    pub(crate) fn empty(summary: &Summary) -> Reduced {
        match summary {
            Summary::Stats(_) => Reduced::Stats {
                count: 0,
                sum: Vec::new(),
                min: Vec::new(),
                max: Vec::new(),
                shape: Vec::new(),
            },
            Summary::Histogram { lo, hi, bins, .. } => {
                Reduced::Histogram(Histogram::new(*lo, *hi, *bins))
            }
        }
    }

    /// Reduces one batch, in event order. The summary's key is a dataset path: `"x"` for the
    /// root group's `x`, `"andor/x"` for `x` of rows in group `andor`.
    pub(crate) fn of_batch(summary: &Summary, rows: &[Row]) -> Reduced {
        let name = summary.key();
        let root = Key::new(name);
        let mut out = Reduced::empty(summary);
        let values = rows.iter().filter_map(|row| match row.group {
            None => row.event.value(root),
            Some(group) => name
                .strip_prefix(group.name())
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|field| row.event.value(Key::new(field))),
        });
        for value in values {
            let values = match value.as_array() {
                Some(array) => array.to_f64_vec(),
                None => vec![value.as_f64().unwrap_or(f64::NAN)],
            };
            match (&mut out, summary) {
                (
                    Reduced::Stats {
                        count,
                        sum,
                        min,
                        max,
                        shape,
                    },
                    _,
                ) => {
                    if *count == 0 {
                        *shape = value.shape().to_vec();
                        *sum = vec![0.0; values.len()];
                        *min = vec![f64::INFINITY; values.len()];
                        *max = vec![f64::NEG_INFINITY; values.len()];
                    }
                    if values.len() != sum.len() {
                        continue; // the part writer reports the shape conflict
                    }
                    *count += 1;
                    for (i, v) in values.iter().enumerate() {
                        sum[i] += v;
                        min[i] = min[i].min(*v);
                        max[i] = max[i].max(*v);
                    }
                }
                (Reduced::Histogram(histogram), _) => histogram.extend(values),
            }
        }
        out
    }

    /// Adds a later batch's result.
    pub(crate) fn combine(&mut self, later: &Reduced) {
        match (self, later) {
            (Reduced::Histogram(a), Reduced::Histogram(b)) => a.merge(b),
            (
                Reduced::Stats {
                    count,
                    sum,
                    min,
                    max,
                    shape,
                },
                Reduced::Stats {
                    count: c2,
                    sum: s2,
                    min: n2,
                    max: x2,
                    shape: sh2,
                },
            ) => {
                if *c2 == 0 {
                    return;
                }
                if *count == 0 {
                    (*count, *sum, *min, *max, *shape) =
                        (*c2, s2.clone(), n2.clone(), x2.clone(), sh2.clone());
                    return;
                }
                *count += c2;
                for i in 0..sum.len().min(s2.len()) {
                    sum[i] += s2[i];
                    min[i] = min[i].min(n2[i]);
                    max[i] = max[i].max(x2[i]);
                }
            }
            _ => unreachable!("results of one summary have one kind"),
        }
    }
}

/// The counts as the master stores them: `[underflow, bins..., overflow]` (NaN apart).
///
/// # Examples
///
/// ```
/// use shotflow::smalldata::histogram_with_flows;
/// use shotflow_operators::histogram::Histogram;
///
/// let mut h = Histogram::new(0.0, 2.0, 2);
/// h.extend([-1.0, 0.5, 1.5, 1.7, 2.0, f64::NAN]);
/// assert_eq!(histogram_with_flows(&h), vec![1, 1, 2, 1]);
/// assert_eq!(h.nan, 1);
/// ```
pub fn histogram_with_flows(histogram: &Histogram) -> Vec<u64> {
    let mut out = Vec::with_capacity(histogram.counts.len() + 2);
    out.push(histogram.underflow);
    out.extend_from_slice(&histogram.counts);
    out.push(histogram.overflow);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    /// Regression: NaN used to land in the first bin (`NaN as usize` is 0).
    #[test]
    fn nan_values_are_counted_apart_not_in_the_first_bin() {
        let summary = Summary::Histogram {
            key: "x".into(),
            lo: 0.0,
            hi: 10.0,
            bins: 5,
        };
        let key = Key::new("x");
        let rows: Vec<Row> = [f64::NAN, 1.0, f64::NAN, 9.0, -1.0]
            .iter()
            .enumerate()
            .map(|(i, v)| Row::from(Event::new(i as u64).with(key, *v)))
            .collect();
        let Reduced::Histogram(h) = Reduced::of_batch(&summary, &rows) else {
            panic!("a histogram summary gives a histogram");
        };
        assert_eq!(h.counts, vec![1, 0, 0, 0, 1]);
        assert_eq!((h.underflow, h.overflow, h.nan), (1, 0, 2));
        assert_eq!(histogram_with_flows(&h), vec![1, 1, 0, 0, 0, 1, 0]);
    }
}
