//! Normalisation by the incoming pulse energy (I0) and cuts on it.

use serde::{Deserialize, Serialize};

/// A window on the pulse energy: shots outside it are dropped before normalising, because a
/// signal divided by a tiny or saturated I0 is noise.
///
/// # Examples
///
/// ```
/// use shotflow_operators::normalize::I0Cut;
///
/// let cut = I0Cut { min: 0.5, max: 2.0 };
/// assert_eq!(cut.normalize(30.0, 1.5), Some(20.0));
/// assert_eq!(cut.normalize(30.0, 0.1), None);
/// assert_eq!(cut.normalize(30.0, f64::NAN), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct I0Cut {
    /// Smallest accepted I0.
    pub min: f64,
    /// Largest accepted I0.
    pub max: f64,
}

impl I0Cut {
    /// True if `i0` is inside the window (NaN never is).
    pub fn accepts(&self, i0: f64) -> bool {
        i0 >= self.min && i0 <= self.max
    }

    /// `signal / i0` for accepted shots.
    pub fn normalize(&self, signal: f64, i0: f64) -> Option<f64> {
        self.accepts(i0).then(|| signal / i0)
    }

    /// Normalises an array in place; returns false (and leaves it) for a rejected shot.
    pub fn normalize_slice(&self, values: &mut [f64], i0: f64) -> bool {
        if !self.accepts(i0) {
            return false;
        }
        values.iter_mut().for_each(|v| *v /= i0);
        true
    }
}
