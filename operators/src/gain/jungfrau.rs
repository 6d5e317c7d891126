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

/// psana's JUNGFRAU common mode (`cmpars = (7, mode, cormax, npix_min)`): medians of the
/// good high-gain pixels, in ADU after the pedestal and before the gain, subtracted from those
/// pixels only. The module is split as psana splits it: two halves of rows, 16 banks of
/// columns.
///
/// ```
/// use ndarray::{Array2, Array4};
/// use shotflow_operators::gain::jungfrau::{CommonMode, JungfrauConstants, Unit};
///
/// // A 2×32 module: psana's split (two halves of rows, 16 banks of columns) at toy size.
/// let pedestal = Array4::from_elem((3, 1, 2, 32), 1000.0f32);
/// let gain = Array4::from_elem((3, 1, 2, 32), 1.0f32);
/// let mut c = JungfrauConstants::new(pedestal, gain.view(), None, Unit::Energy).unwrap();
/// c.common_mode = Some(CommonMode { mode: 2, cormax: 100.0, npix_min: 0 });
/// // Column 0 is 7 ADU high in both rows: its median (per half, 1 row each) removes it.
/// let raw = Array2::from_shape_fn((2, 32), |(_, x)| if x == 0 { 1007u16 } else { 1000 });
/// let mut out = Array2::zeros((2, 32));
/// c.calibrate(raw.view(), 0, out.view_mut()).unwrap();
/// assert!(out.iter().all(|v| *v == 0.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CommonMode {
    /// Bits: 4 per bank (half × 1/16 of the columns), 1 per row within each bank, 2 per column
    /// within each half; applied in that order.
    pub mode: u8,
    /// Medians of this size or more are not applied (ADU).
    pub cormax: f32,
    /// Rows and columns need more good pixels than this (a bank needs at least this many).
    pub npix_min: usize,
}

impl CommonMode {
    /// psana's default for JUNGFRAU: `cmpars = (7, 3, 200, 10)` (rows and columns).
    pub const PSANA: CommonMode = CommonMode {
        mode: 3,
        cormax: 200.0,
        npix_min: 10,
    };
}

/// The median of `values` as numpy computes it for float32 (the mean of the two middle values
/// for an even count, in float32); sorts `values`.
fn median(values: &mut [f32]) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f32::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Subtracts the common mode from `adu` (pedestal-subtracted ADU) where `good` (good pixels
/// in high gain), as psana's `calib_jungfrau_single_panel` does with `UtilsCommonMode`.
fn subtract_common_mode(
    adu: &mut ArrayViewMut2<'_, f32>,
    good: &ndarray::Array2<bool>,
    cm: CommonMode,
) {
    let (rows, cols) = adu.dim();
    let (half, bank) = (rows / 2, cols / 16);
    let mut values = Vec::with_capacity(rows.max(cols));
    // psana applies a median only where it is smaller than cormax.
    let allowed = |m: f32| m.abs() < cm.cormax;
    if cm.mode & 4 != 0 && half > 0 && bank > 0 {
        for h in 0..2 {
            for b in 0..16 {
                let (r0, c0) = (h * half, b * bank);
                values.clear();
                for r in r0..r0 + half {
                    for c in c0..c0 + bank {
                        if good[[r, c]] {
                            values.push(adu[[r, c]]);
                        }
                    }
                }
                if values.len() < cm.npix_min {
                    continue;
                }
                if let Some(m) = median(&mut values).filter(|m| allowed(*m)) {
                    for r in r0..r0 + half {
                        for c in c0..c0 + bank {
                            if good[[r, c]] {
                                adu[[r, c]] -= m;
                            }
                        }
                    }
                }
            }
        }
    }
    if cm.mode & 1 != 0 && bank > 0 {
        for b in 0..16 {
            let c0 = b * bank;
            for r in 0..rows {
                values.clear();
                values.extend(
                    (c0..c0 + bank)
                        .filter(|c| good[[r, *c]])
                        .map(|c| adu[[r, c]]),
                );
                if values.len() <= cm.npix_min {
                    continue;
                }
                if let Some(m) = median(&mut values).filter(|m| allowed(*m)) {
                    for c in c0..c0 + bank {
                        if good[[r, c]] {
                            adu[[r, c]] -= m;
                        }
                    }
                }
            }
        }
    }
    if cm.mode & 2 != 0 && half > 0 {
        for h in 0..2 {
            let r0 = h * half;
            for c in 0..cols {
                values.clear();
                values.extend(
                    (r0..r0 + half)
                        .filter(|r| good[[*r, c]])
                        .map(|r| adu[[r, c]]),
                );
                if values.len() <= cm.npix_min {
                    continue;
                }
                if let Some(m) = median(&mut values).filter(|m| allowed(*m)) {
                    for r in r0..r0 + half {
                        if good[[r, c]] {
                            adu[[r, c]] -= m;
                        }
                    }
                }
            }
        }
    }
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
    /// Common-mode correction (`None`: off).
    pub common_mode: Option<CommonMode>,
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

/// The stage of a raw value: `None` for the invalid gain code `10`.
#[inline]
fn stage_of(raw: u16) -> Option<usize> {
    match raw >> 14 {
        0 => Some(0),
        1 => Some(1),
        3 => Some(2),
        _ => None,
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
            common_mode: None,
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
        let Some(cm) = self.common_mode else {
            for (r, (raw_row, out_row)) in raw.rows().into_iter().zip(out.rows_mut()).enumerate() {
                let mask_row = self.mask.row(r);
                for (c, ((v, o), m)) in raw_row.iter().zip(out_row).zip(mask_row).enumerate() {
                    let Some(stage) = stage_of(*v) else {
                        counts.invalid += 1;
                        *o = 0.0;
                        continue;
                    };
                    counts.stages[stage] += 1;
                    let adc = (v & ADC_MASK) as f32;
                    let value =
                        (adc - pedestal[[stage, r, c]]) * factor[[stage, r, c]] * (*m as f32);
                    *o = match scale {
                        Some(s) => value * s,
                        None => value,
                    };
                }
            }
            return Ok(counts);
        };
        // With common mode, psana's order: ADU minus pedestal for every pixel (an invalid one
        // keeps its ADC value), the medians of the good high-gain pixels, then the gain.
        let mut good = ndarray::Array2::from_elem(raw.dim(), false);
        for ((r, c), o) in out.indexed_iter_mut() {
            let v = raw[[r, c]];
            let adc = (v & ADC_MASK) as f32;
            *o = match stage_of(v) {
                Some(stage) => {
                    good[[r, c]] = stage == 0 && self.mask[[r, c]] != 0;
                    adc - pedestal[[stage, r, c]]
                }
                None => adc,
            };
        }
        subtract_common_mode(&mut out, &good, cm);
        for ((r, c), o) in out.indexed_iter_mut() {
            let v = raw[[r, c]];
            let Some(stage) = stage_of(v) else {
                counts.invalid += 1;
                *o = 0.0;
                continue;
            };
            counts.stages[stage] += 1;
            let value = *o * factor[[stage, r, c]] * (self.mask[[r, c]] as f32);
            *o = match scale {
                Some(s) => value * s,
                None => value,
            };
        }
        Ok(counts)
    }
}
