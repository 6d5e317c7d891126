//! Binning by a scan variable with laser on/off labels: the pump-probe curve.
//!
//! [`ScanBins`] accumulates, per scan bin and laser state, the number of shots and the sums
//! of a scalar signal and of an array signal (e.g. an azimuthal profile). Accumulators merge
//! by adding, so workers can bin their own shots and one worker combines them.
//!
//! Why not differential dataflow here: this aggregation only ever grows (shots are never
//! retracted), while differential's `reduce` maintains arrangements that support retraction
//! and pays memory per key and time per update for it; its sums must also be abelian-group
//! differences, which floating-point sums are not exactly (the result would depend on
//! consolidation order). The engine instead reduces per batch and combines the partials in
//! batch order on one worker as the frontier completes each batch: the curve updates as the
//! run progresses, and its floating-point bits do not depend on the number of workers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How scan values map to bins.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScanAxis {
    /// Every distinct value is a bin (a stepped motor's set points).
    SetPoints,
    /// `bins` equal bins over `[lo, hi)`; values outside are dropped (a continuous scan).
    Uniform {
        /// Lower edge.
        lo: f64,
        /// Upper edge.
        hi: f64,
        /// Number of bins.
        bins: usize,
    },
}

/// Sums of one bin and laser state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BinSums {
    /// Shots.
    pub count: u64,
    /// Sum of the scalar signal.
    pub sum: f64,
    /// Sum of squares of the scalar signal (for the standard error).
    pub sum_sq: f64,
    /// Element-wise sum of the array signal.
    pub array: Vec<f64>,
}

impl BinSums {
    /// Mean of the scalar signal.
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// Standard error of the mean.
    pub fn sem(&self) -> f64 {
        let n = self.count as f64;
        let var = (self.sum_sq / n - self.mean().powi(2)).max(0.0);
        (var / (n - 1.0).max(1.0)).sqrt()
    }

    fn add(&mut self, other: &BinSums) {
        self.count += other.count;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        if self.array.is_empty() {
            self.array = other.array.clone();
        } else {
            self.array
                .iter_mut()
                .zip(&other.array)
                .for_each(|(a, b)| *a += b);
        }
    }
}

/// The pump-probe accumulator.
///
/// # Examples
///
/// ```
/// use shotflow_operators::binning::{ScanAxis, ScanBins};
///
/// let mut worker_a = ScanBins::new(ScanAxis::SetPoints);
/// let mut worker_b = ScanBins::new(ScanAxis::SetPoints);
/// worker_a.add(0.5, true, 10.0, &[1.0, 2.0]);
/// worker_a.add(0.5, false, 4.0, &[1.0, 1.0]);
/// worker_b.add(0.5, true, 12.0, &[3.0, 2.0]);
/// worker_a.merge(&worker_b);
/// let curve = worker_a.difference();
/// assert_eq!(curve, vec![(0.5, 11.0 - 4.0)]);
/// assert_eq!(worker_a.get(0.5, true).unwrap().array, vec![4.0, 4.0]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanBins {
    axis: ScanAxis,
    /// (bin key, laser on) → sums; the key is the value's bits for set points, else the bin.
    bins: BTreeMap<(u64, bool), BinSums>,
}

impl ScanBins {
    /// An empty accumulator.
    pub fn new(axis: ScanAxis) -> ScanBins {
        ScanBins {
            axis,
            bins: BTreeMap::new(),
        }
    }

    fn key(&self, scan: f64) -> Option<u64> {
        match self.axis {
            ScanAxis::SetPoints => (!scan.is_nan()).then(|| scan.to_bits()),
            ScanAxis::Uniform { lo, hi, bins } => (scan >= lo && scan < hi)
                .then(|| ((((scan - lo) / (hi - lo)) * bins as f64) as u64).min(bins as u64 - 1)),
        }
    }

    fn center(&self, key: u64) -> f64 {
        match self.axis {
            ScanAxis::SetPoints => f64::from_bits(key),
            ScanAxis::Uniform { lo, hi, bins } => lo + (key as f64 + 0.5) * (hi - lo) / bins as f64,
        }
    }

    /// Adds one shot; returns false if its scan value falls in no bin.
    pub fn add(&mut self, scan: f64, laser_on: bool, signal: f64, array: &[f64]) -> bool {
        let Some(key) = self.key(scan) else {
            return false;
        };
        let sums = self.bins.entry((key, laser_on)).or_default();
        sums.add(&BinSums {
            count: 1,
            sum: signal,
            sum_sq: signal * signal,
            array: array.to_vec(),
        });
        true
    }

    /// Adds another accumulator of the same axis.
    pub fn merge(&mut self, other: &ScanBins) {
        assert_eq!(
            self.axis, other.axis,
            "scan bins with different axes cannot be merged"
        );
        for (k, v) in &other.bins {
            self.bins.entry(*k).or_default().add(v);
        }
    }

    /// The sums of the bin holding `scan`, laser on or off.
    pub fn get(&self, scan: f64, laser_on: bool) -> Option<&BinSums> {
        self.bins.get(&(self.key(scan)?, laser_on))
    }

    /// Every bin: (scan value or bin centre, laser on, sums), in increasing scan value.
    pub fn iter(&self) -> Vec<(f64, bool, &BinSums)> {
        let mut out: Vec<_> = self
            .bins
            .iter()
            .map(|((k, on), s)| (self.center(*k), *on, s))
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out
    }

    /// The pump-probe difference of the scalar signal, mean(on) − mean(off), for bins with
    /// both states.
    pub fn difference(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for (center, on, sums) in self.iter() {
            if on {
                if let Some(off) = self
                    .bins
                    .get(&(self.key(center).unwrap_or(u64::MAX), false))
                {
                    out.push((center, sums.mean() - off.mean()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_bins_and_merge_order() {
        let shots: Vec<(f64, bool, f64)> = (0..1000)
            .map(|i| ((i % 97) as f64 * 0.01, i % 2 == 0, (i % 13) as f64))
            .collect();
        let axis = ScanAxis::Uniform {
            lo: 0.0,
            hi: 1.0,
            bins: 10,
        };
        let mut all = ScanBins::new(axis);
        shots.iter().for_each(|s| {
            all.add(s.0, s.1, s.2, &[]);
        });
        let (mut a, mut b) = (ScanBins::new(axis), ScanBins::new(axis));
        for (i, s) in shots.iter().enumerate() {
            if i % 3 == 0 { &mut a } else { &mut b }.add(s.0, s.1, s.2, &[]);
        }
        a.merge(&b);
        for ((x, on, s), (y, on2, t)) in all.iter().into_iter().zip(a.iter()) {
            assert_eq!((x, on, s.count), (y, on2, t.count));
            assert!((s.sum - t.sum).abs() < 1e-9);
        }
        // hand check: bin 0 holds scan values 0.00..0.09
        let n0: u64 = shots.iter().filter(|s| s.0 < 0.1).count() as u64;
        assert_eq!(
            all.iter()
                .iter()
                .filter(|(c, _, _)| (*c - 0.05).abs() < 1e-12)
                .map(|(_, _, s)| s.count)
                .sum::<u64>(),
            n0
        );
        assert!(!all.add(1.5, true, 0.0, &[]));
    }
}
