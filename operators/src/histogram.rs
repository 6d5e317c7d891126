//! Fixed-bin histograms of per-event values, mergeable across workers.

use serde::{Deserialize, Serialize};

/// A histogram with `bins` equal bins over `[lo, hi)`, plus underflow, overflow and NaN counts.
///
/// # Examples
///
/// ```
/// use shotflow_operators::histogram::Histogram;
///
/// let mut a = Histogram::new(0.0, 10.0, 5);
/// let mut b = a.clone();
/// a.extend([1.0, 3.0, 3.5]);
/// b.extend([-1.0, 9.99, 10.0, f64::NAN]);
/// a.merge(&b);
/// assert_eq!(a.counts, vec![1, 2, 0, 0, 1]);
/// assert_eq!((a.underflow, a.overflow, a.nan), (1, 1, 1));
/// assert_eq!(a.edges()[5], 10.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Counts per bin.
    pub counts: Vec<u64>,
    /// Values below `lo`.
    pub underflow: u64,
    /// Values at or above `hi`.
    pub overflow: u64,
    /// NaN values.
    pub nan: u64,
}

impl Histogram {
    /// An empty histogram (`bins` is at least 1).
    pub fn new(lo: f64, hi: f64, bins: usize) -> Histogram {
        Histogram {
            lo,
            hi,
            counts: vec![0; bins.max(1)],
            underflow: 0,
            overflow: 0,
            nan: 0,
        }
    }

    /// Counts one value.
    #[inline]
    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            self.nan += 1;
        } else if v < self.lo {
            self.underflow += 1;
        } else if v >= self.hi {
            self.overflow += 1;
        } else {
            let n = self.counts.len();
            let bin = (((v - self.lo) / (self.hi - self.lo)) * n as f64) as usize;
            self.counts[bin.min(n - 1)] += 1;
        }
    }

    /// Counts many values.
    pub fn extend(&mut self, values: impl IntoIterator<Item = f64>) {
        values.into_iter().for_each(|v| self.add(v));
    }

    /// Adds another histogram of the same binning (counts are integers: any merge order gives
    /// the same result).
    ///
    /// # Panics
    ///
    /// If the binnings differ.
    pub fn merge(&mut self, other: &Histogram) {
        assert!(
            self.lo == other.lo && self.hi == other.hi && self.counts.len() == other.counts.len(),
            "histograms with different bins cannot be merged"
        );
        self.counts
            .iter_mut()
            .zip(&other.counts)
            .for_each(|(a, b)| *a += b);
        self.underflow += other.underflow;
        self.overflow += other.overflow;
        self.nan += other.nan;
    }

    /// The `bins + 1` bin edges.
    pub fn edges(&self) -> Vec<f64> {
        let n = self.counts.len();
        (0..=n)
            .map(|i| self.lo + (self.hi - self.lo) * i as f64 / n as f64)
            .collect()
    }
}
