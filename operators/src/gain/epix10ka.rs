//! ePix10ka (LCLS-II): each pixel's gain mode comes from its configuration bits (`g`, `ga`, and
//! the ASIC's `trbit`) and, in the auto-switching modes, from data bit 14 of each raw value.
//! Seven gain ranges have their own pedestal and gain: `FH`, `FM`, `FL` (fixed high, medium,
//! low), `AHL_H`, `AML_M`, `AHL_L`, `AML_L` (auto-switching, before and after the switch).
//!
//! The algorithm is psana's (`psana.detector.UtilsEpix10ka`: `gain_maps_epix10ka_any_alg`,
//! `calib_epix10ka_any`) in the same float32 operations:
//! `((raw & 0x3fff) − pedestal[range]) × (1 / gain[range]) × mask`. A pixel whose bits match
//! no range gets pedestal 0 and factor 1, as psana's defaults; it is counted.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2};

use super::GainError;

/// The gain ranges, in the order of the constants' first axis.
pub const GAIN_RANGES: [&str; 7] = ["FH", "FM", "FL", "AHL_H", "AML_M", "AHL_L", "AML_L"];
/// Data bit 14: set once an auto-switching pixel switched to low gain.
pub const DATA_GAIN_BIT: u16 = 1 << 14;
/// The 14-bit ADC value.
pub const ADC_MASK: u16 = 0x3fff;
/// Configuration bits: `g` (4), `ga` (8), `trbit` (16).
pub const CONFIG_G: u8 = 4;
/// See [`CONFIG_G`].
pub const CONFIG_GA: u8 = 8;
/// See [`CONFIG_G`].
pub const CONFIG_TRBIT: u8 = 16;

/// The gain range (index into [`GAIN_RANGES`]) of a pixel with configuration bits `config` and
/// raw value `raw`; `None` when its bits match no range.
///
/// ```
/// use shotflow_operators::gain::epix10ka::{gain_range, CONFIG_G, CONFIG_GA, CONFIG_TRBIT};
///
/// assert_eq!(gain_range(CONFIG_TRBIT | CONFIG_GA | CONFIG_G, 1000), Some(0)); // FH
/// assert_eq!(gain_range(CONFIG_TRBIT, 1000), Some(3)); // AHL_H, not switched
/// assert_eq!(gain_range(CONFIG_TRBIT, (1 << 14) | 1000), Some(5)); // AHL_L, switched
/// ```
#[inline]
pub fn gain_range(config: u8, raw: u16) -> Option<usize> {
    // psana moves data bit 14 to bit 5 of the configuration bits.
    let bits = config | ((raw & DATA_GAIN_BIT) >> 9) as u8;
    let (m60, m28, m12) = (bits & 60, bits & 28, bits & 12);
    // psana's np.select: the first range that matches.
    if m28 == 28 {
        Some(0)
    } else if m28 == 12 {
        Some(1)
    } else if m12 == 8 {
        Some(2)
    } else {
        match m60 {
            16 => Some(3),
            0 => Some(4),
            48 => Some(5),
            32 => Some(6),
            _ => None,
        }
    }
}

/// Pixels per gain range, and those whose bits matched none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeCounts {
    /// Per range of [`GAIN_RANGES`].
    pub ranges: [u64; 7],
    /// Pixels in no range.
    pub unmatched: u64,
}

/// The constants of one ePix10ka segment (352×384 for a real one).
#[derive(Clone, Debug)]
pub struct Epix10kaConstants {
    /// Per range and pixel, the pedestal: `(7, rows, cols)`.
    pub pedestal: Array3<f32>,
    /// Per range and pixel, 1 / gain (0 where the gain is 0), as psana computes it.
    pub gain_factor: Array3<f32>,
    /// Good (1) and bad (0) pixels.
    pub mask: Array2<u8>,
    /// Each pixel's configuration bits (`g`, `ga`, `trbit`), from the run's configuration.
    pub config: Array2<u8>,
}

impl Epix10kaConstants {
    /// Constants from pedestals and gains `(7, rows, cols)`, a mask and the pixels'
    /// configuration bits.
    pub fn new(
        pedestal: Array3<f32>,
        gain: ArrayView3<'_, f32>,
        mask: Option<Array2<u8>>,
        config: Array2<u8>,
    ) -> Result<Epix10kaConstants, GainError> {
        let (ranges, rows, cols) = pedestal.dim();
        if ranges != 7 || gain.dim() != pedestal.dim() || config.dim() != (rows, cols) {
            return Err(GainError::Shape(format!(
                "ePix10ka pedestals {:?}, gains {:?}, configuration {:?}: expected (7, rows, \
                 cols) twice and (rows, cols)",
                pedestal.shape(),
                gain.shape(),
                config.shape()
            )));
        }
        let mask = mask.unwrap_or_else(|| Array2::ones((rows, cols)));
        if mask.dim() != (rows, cols) {
            return Err(GainError::Shape(format!(
                "ePix10ka mask {:?} for pixels ({rows}, {cols})",
                mask.shape()
            )));
        }
        let gain_factor = gain.mapv(|g| if g != 0.0 { 1.0f32 / g } else { 0.0 });
        Ok(Epix10kaConstants {
            pedestal,
            gain_factor,
            mask,
            config,
        })
    }

    /// Calibrates `raw` into `out`; returns the pixels per gain range.
    ///
    /// ```
    /// use ndarray::{array, Array2, Array3};
    /// use shotflow_operators::gain::epix10ka::{Epix10kaConstants, CONFIG_TRBIT};
    ///
    /// let pedestal = Array3::from_shape_fn((7, 1, 2), |(r, ..)| 1000.0 + r as f32);
    /// let gain = Array3::from_elem((7, 1, 2), 2.0f32);
    /// let c = Epix10kaConstants::new(pedestal, gain.view(), None, Array2::from_elem((1, 2), CONFIG_TRBIT)).unwrap();
    /// let raw = array![[1103u16, (1 << 14) | 1105]]; // AHL_H (range 3), then switched: AHL_L (5)
    /// let mut out = Array2::zeros((1, 2));
    /// let counts = c.calibrate(raw.view(), out.view_mut()).unwrap();
    /// assert_eq!(out, array![[50.0f32, 50.0]]);
    /// assert_eq!(counts.ranges, [0, 0, 0, 1, 0, 1, 0]);
    /// ```
    pub fn calibrate(
        &self,
        raw: ArrayView2<'_, u16>,
        mut out: ArrayViewMut2<'_, f32>,
    ) -> Result<RangeCounts, GainError> {
        let pixels = self.config.dim();
        if raw.dim() != pixels || out.dim() != pixels {
            return Err(GainError::Shape(format!(
                "ePix10ka frame {:?} (output {:?}) for constants of {pixels:?}",
                raw.shape(),
                out.shape()
            )));
        }
        let mut counts = RangeCounts::default();
        for ((r, c), o) in out.indexed_iter_mut() {
            let v = raw[[r, c]];
            let (pedestal, factor) = match gain_range(self.config[[r, c]], v) {
                Some(range) => {
                    counts.ranges[range] += 1;
                    (
                        self.pedestal[[range, r, c]],
                        self.gain_factor[[range, r, c]],
                    )
                }
                None => {
                    counts.unmatched += 1;
                    (0.0, 1.0)
                }
            };
            *o = ((v & ADC_MASK) as f32 - pedestal) * factor * self.mask[[r, c]] as f32;
        }
        Ok(counts)
    }
}
