//! Photon counting by threshold: the number of photons a pixel holds is its signal above the
//! pedestal divided by the single-photon ADU, rounded.

use ndarray::ArrayView2;

use crate::Pixel;

/// Counts photons in `frame`: each pixel contributes `round((value - pedestal) / adu_per_photon)`
/// if that is positive. Rounding at half a photon is the standard threshold choice for
/// direct-detection detectors at low occupancy.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use shotflow_operators::photons::count_photons;
///
/// // pedestal 100, one photon = 60 ADU: 158 → 1, 231 → 2, 125 → 0
/// let frame = array![[100u16, 158], [231, 125]];
/// assert_eq!(count_photons(frame.view(), 100.0, 60.0), 3);
/// ```
pub fn count_photons<T: Pixel>(
    frame: ArrayView2<'_, T>,
    pedestal: f64,
    adu_per_photon: f64,
) -> u64 {
    let inverse = 1.0 / adu_per_photon;
    // Truncating x + 0.5 rounds half up for x ≥ 0 and costs one conversion instead of a call to
    // `round`; negative signals are below one photon either way. The offset is folded in once.
    let offset = 0.5 - pedestal * inverse;
    let photons = |px: &T| {
        let p = px.to_f64() * inverse + offset;
        if p >= 1.0 {
            p as u64
        } else {
            0
        }
    };
    match frame.as_slice_memory_order() {
        Some(pixels) => pixels.iter().map(photons).sum(),
        None => frame.iter().map(photons).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn planted_photons_are_counted() {
        let mut frame = Array2::<u16>::from_elem((16, 16), 100);
        frame[[0, 0]] = 160; // one
        frame[[15, 15]] = 220; // two
        frame[[3, 4]] = 129; // below half a photon
        frame[[3, 5]] = 131; // above half a photon
        frame[[8, 8]] = 90; // below pedestal
        assert_eq!(count_photons(frame.view(), 100.0, 60.0), 4);
    }
}
