//! JUNGFRAU: the detector switches gain per pixel on its own; the top two bits of each raw u16
//! name the stage (`00` high, `01` medium, `11` low gain), the low 14 bits are the ADC value.
//!
//! The correction is psana's (`psana.detector.UtilsJungfrau.calib_jungfrau_single_panel`),
//! in the same float32 operations and order, so the results are the same bits:
//! `((raw & 0x3fff) − (pedestal + offset)[stage]) × (1 / gain[stage]) × mask`. Gain code `10`
//! names no stage: psana sets such a pixel to 0; here it is 0 too, and counted.

use ndarray::{Array2, Array4, ArrayView2, ArrayViewMut2, Axis};

use super::GainError;

/// The 14-bit ADC value.
pub const ADC_MASK: u16 = 0x3fff;
/// Gain bits that name no stage.
pub const INVALID_GAIN: u16 = 0b10;

/// What the calibrated values are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    /// Energy, as the gain constants give it (keV when gains are ADU/keV).
    Energy,
    /// Photons: the energy divided by the photon energy (same unit as the gains').
    Photons {
        /// Photon energy.
        energy: f32,
    },
}

/// The constants of one JUNGFRAU module (512×1024 for a real one; any shape works).
#[derive(Clone, Debug)]
pub struct JungfrauConstants {
    /// Pedestal plus offset, per stage (3), storage cell and pixel, ADU: `(3, cells, rows, cols)`.
    pub pedestal: Array4<f32>,
    /// 1 / gain per stage, cell and pixel (psana's `gfac`: 0 where the gain is 0).
    pub gain_factor: Array4<f32>,
    /// Good pixels (1) and bad ones (0), psana's mask.
    pub mask: Array2<u8>,
    /// Output unit.
    pub unit: Unit,
}

/// How many pixels of a frame were in each stage, and how many had the invalid gain code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageCounts {
    /// Pixels per stage 0, 1, 2.
    pub stages: [u64; 3],
    /// Pixels with gain bits `10` (set to 0).
    pub invalid: u64,
}

impl StageCounts {
    /// Adds another frame's counts.
    pub fn add(&mut self, other: &StageCounts) {
        for (a, b) in self.stages.iter_mut().zip(other.stages) {
            *a += b;
        }
        self.invalid += other.invalid;
    }
}

impl JungfrauConstants {
    /// Constants from pedestals (plus offsets) and gains, `(3, cells, rows, cols)` each, and a
    /// mask `(rows, cols)` (`None`: every pixel good). The gain factors are `1 / gain` in
    /// float32, 0 where a gain is 0, as psana computes them.
    ///
    /// ```
    /// use ndarray::{Array2, Array4};
    /// use shotflow_operators::gain::jungfrau::{JungfrauConstants, Unit};
    ///
    /// let pedestal = Array4::from_elem((3, 1, 2, 2), 1000.0f32);
    /// let gain = Array4::from_shape_fn((3, 1, 2, 2), |(s, ..)| [40.0f32, 1.5, 0.1][s]);
    /// let constants = JungfrauConstants::new(pedestal, gain.view(), None, Unit::Energy).unwrap();
    /// assert_eq!(constants.gain_factor[[0, 0, 0, 0]], 1.0 / 40.0);
    /// ```
    pub fn new(
        pedestal: Array4<f32>,
        gain: ndarray::ArrayView4<'_, f32>,
        mask: Option<Array2<u8>>,
        unit: Unit,
    ) -> Result<JungfrauConstants, GainError> {
        let shape = pedestal.shape().to_vec();
        if shape[0] != 3 || gain.shape() != shape.as_slice() {
            return Err(GainError::Shape(format!(
                "JUNGFRAU pedestals {shape:?} and gains {:?}: both must be (3, cells, rows, cols)",
                gain.shape()
            )));
        }
        let mask = mask.unwrap_or_else(|| Array2::ones((shape[2], shape[3])));
        if mask.shape() != &shape[2..] {
            return Err(GainError::Shape(format!(
                "JUNGFRAU mask {:?} for pixels {:?}",
                mask.shape(),
                &shape[2..]
            )));
        }
        let gain_factor = gain.mapv(|g| if g != 0.0 { 1.0f32 / g } else { 0.0 });
        Ok(JungfrauConstants {
            pedestal,
            gain_factor,
            mask,
            unit,
        })
    }

    /// Storage cells the constants have.
    pub fn cells(&self) -> usize {
        self.pedestal.shape()[1]
    }

    /// Calibrates `raw` (recorded in storage cell `cell`) into `out`; returns how many pixels
    /// were in each stage.
    ///
    /// ```
    /// use ndarray::{array, Array2, Array4};
    /// use shotflow_operators::gain::jungfrau::{JungfrauConstants, Unit};
    ///
    /// let pedestal = Array4::from_shape_fn((3, 1, 1, 3), |(s, ..)| [1000.0f32, 2000.0, 3000.0][s]);
    /// let gain = Array4::from_shape_fn((3, 1, 1, 3), |(s, ..)| [40.0f32, 2.0, 0.5][s]);
    /// let c = JungfrauConstants::new(pedestal, gain.view(), None, Unit::Energy).unwrap();
    /// // 1400 ADU in high gain, 2100 in medium, and gain bits 10 (invalid).
    /// let raw = array![[1400u16, (1 << 14) | 2100, (2 << 14) | 5000]];
    /// let mut out = Array2::zeros((1, 3));
    /// let counts = c.calibrate(raw.view(), 0, out.view_mut()).unwrap();
    /// assert_eq!(out, array![[10.0f32, 50.0, 0.0]]);
    /// assert_eq!((counts.stages, counts.invalid), ([1, 1, 0], 1));
    /// ```
    pub fn calibrate(
        &self,
        raw: ArrayView2<'_, u16>,
        cell: usize,
        mut out: ArrayViewMut2<'_, f32>,
    ) -> Result<StageCounts, GainError> {
        let pixels = &self.pedestal.shape()[2..];
        if raw.shape() != pixels || out.shape() != pixels {
            return Err(GainError::Shape(format!(
                "JUNGFRAU frame {:?} (output {:?}) for constants of {pixels:?}",
                raw.shape(),
                out.shape()
            )));
        }
        if cell >= self.cells() {
            return Err(GainError::Cell {
                cell,
                cells: self.cells(),
            });
        }
        let scale = match self.unit {
            Unit::Energy => None,
            Unit::Photons { energy } => Some(1.0f32 / energy),
        };
        let pedestal = self.pedestal.index_axis(Axis(1), cell);
        let factor = self.gain_factor.index_axis(Axis(1), cell);
        let mut counts = StageCounts::default();
        for (r, (raw_row, out_row)) in raw.rows().into_iter().zip(out.rows_mut()).enumerate() {
            let mask_row = self.mask.row(r);
            for (c, ((v, o), m)) in raw_row.iter().zip(out_row).zip(mask_row).enumerate() {
                let bits = v >> 14;
                let stage = match bits {
                    0 => 0,
                    1 => 1,
                    3 => 2,
                    _ => {
                        counts.invalid += 1;
                        *o = 0.0;
                        continue;
                    }
                };
                counts.stages[stage] += 1;
                let adc = (v & ADC_MASK) as f32;
                let value = (adc - pedestal[[stage, r, c]]) * factor[[stage, r, c]] * (*m as f32);
                *o = match scale {
                    Some(s) => value * s,
                    None => value,
                };
            }
        }
        Ok(counts)
    }
}
