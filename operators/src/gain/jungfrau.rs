//! JUNGFRAU: the detector switches gain per pixel on its own; the top two bits of each raw u16
//! name the stage (`00` high, `01` medium, `11` low gain), the low 14 bits are the ADC value.
//!
//! The correction is psana's (`psana.detector.UtilsJungfrau.calib_jungfrau_single_panel`),
//! in the same float32 operations and order, so the results are the same bits:
//! `((raw & 0x3fff) − (pedestal + offset)[stage]) × (1 / gain[stage]) × mask`. Gain code `10`
//! names no stage: psana sets such a pixel to 0; here it is 0 too, and counted.

use ndarray::{Array2, Array4, ArrayView2, ArrayViewMut2, Axis};

use super::GainError;
use crate::fused::{reduce, reduce_frame, Reduced, Reductions};
use crate::simd::Isa;

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
        let scale = self.scale();
        let pedestal = self.pedestal.index_axis(Axis(1), cell);
        let factor = self.gain_factor.index_axis(Axis(1), cell);
        let mut counts = StageCounts::default();
        let Some(cm) = self.common_mode else {
            if let (Some(planes), Some(v), Some(o)) =
                (self.planes(cell), raw.as_slice(), out.as_slice_mut())
            {
                let mut c = [0u64; 4];
                calibrate_part(Isa::detect(), &planes, v, 0..v.len(), o, &mut c);
                return Ok(StageCounts {
                    stages: [c[0], c[1], c[2]],
                    invalid: c[3],
                });
            }
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

impl JungfrauConstants {
    /// Calibrates a frame and reduces it in one pass ([`crate::fused`]), the same bits as
    /// [`JungfrauConstants::calibrate`] followed by [`crate::fused::reduce_frame`]. Without
    /// common mode the calibrated frame is only ever a block of rows in `scratch`; psana's
    /// common mode takes medians over half-module columns, so with it the whole frame is
    /// calibrated into `scratch` first.
    ///
    /// ```
    /// use ndarray::{Array2, Array4};
    /// use shotflow_operators::fused::{reduce_frame, Reductions};
    /// use shotflow_operators::gain::jungfrau::{JungfrauConstants, Unit};
    /// use shotflow_operators::simd::Isa;
    ///
    /// let pedestal = Array4::from_elem((3, 1, 16, 64), 1000.0f32);
    /// let gain = Array4::from_elem((3, 1, 16, 64), 40.0f32);
    /// let c = JungfrauConstants::new(pedestal, gain.view(), None, Unit::Photons { energy: 9.0 }).unwrap();
    /// let raw = Array2::from_shape_fn((16, 64), |(r, x)| 1000 + ((r * x) % 900) as u16);
    /// let reductions = Reductions { adu_per_photon: Some(1.0), ..Reductions::default() };
    /// let (fused, _) = c.calibrate_reduce(Isa::detect(), raw.view(), 0, &reductions, &mut Vec::new()).unwrap();
    /// let mut frame = Array2::zeros((16, 64));
    /// c.calibrate(raw.view(), 0, frame.view_mut()).unwrap();
    /// assert_eq!(fused, reduce_frame(Isa::detect(), frame.view(), &reductions));
    /// ```
    pub fn calibrate_reduce(
        &self,
        isa: Isa,
        raw: ArrayView2<'_, u16>,
        cell: usize,
        reductions: &Reductions<'_>,
        scratch: &mut Vec<f32>,
    ) -> Result<(Reduced, StageCounts), GainError> {
        let pixels = &self.pedestal.shape()[2..];
        match (self.common_mode, self.planes(cell), raw.as_slice()) {
            (None, Some(planes), Some(v)) if raw.shape() == pixels => {
                let mut c = [0u64; 4];
                let reduced = reduce(isa, raw.dim(), 1, reductions, scratch, |range, out| {
                    calibrate_part(isa, &planes, v, range, out, &mut c)
                });
                let counts = StageCounts {
                    stages: [c[0], c[1], c[2]],
                    invalid: c[3],
                };
                Ok((reduced, counts))
            }
            _ => {
                // `calibrate` writes every pixel: no zeroing.
                scratch.resize(raw.len(), 0.0);
                let mut frame = ArrayViewMut2::from_shape(raw.dim(), scratch.as_mut_slice())
                    .expect("sized to the frame");
                let counts = self.calibrate(raw, cell, frame.view_mut())?;
                Ok((reduce_frame(isa, frame.view(), reductions), counts))
            }
        }
    }
}

/// One storage cell's constants as contiguous planes of the frame's pixels.
pub(crate) struct CellPlanes<'a> {
    pedestal: [&'a [f32]; 3],
    factor: [&'a [f32]; 3],
    mask: &'a [u8],
    scale: Option<f32>,
}

crate::dispatched! {
    /// Calibrates pixels `range` of a raw frame (contiguous, the whole frame) into `out`
    /// without common mode, psana's operations in psana's order; adds the pixels per stage
    /// (and invalid ones, last) into `counts`.
    pub(crate) fn calibrate_part(
        planes: &CellPlanes<'_>,
        raw: &[u16],
        range: std::ops::Range<usize>,
        out: &mut [f32],
        counts: &mut [u64; 4],
    ) -> () => calibrate_kernel;
}

#[inline(always)]
fn calibrate_kernel(
    planes: &CellPlanes<'_>,
    raw: &[u16],
    range: std::ops::Range<usize>,
    out: &mut [f32],
    counts: &mut [u64; 4],
) {
    use crate::simd::LANES;
    let r = range;
    let v = &raw[r.clone()];
    let [p0, p1, p2] = planes.pedestal.map(|p| &p[r.clone()]);
    let [f0, f1, f2] = planes.factor.map(|p| &p[r.clone()]);
    let mask = &planes.mask[r.clone()];
    let n = v.len();
    assert!(out.len() == n && p0.len() == n && mask.len() == n);
    // psana's order: ((adc − pedestal) × factor × mask) × (1 / photon energy). No closures or
    // `fold` in this loop: they were compiled without the caller's instruction set and called
    // per block, which made the AVX2 and AVX-512 copies slower than SSE2's.
    #[inline(always)]
    fn finish(value: f32, scale: Option<f32>) -> f32 {
        match scale {
            Some(s) => value * s,
            None => value,
        }
    }
    let scale = planes.scale;
    let mut high_pixels = 0u64;
    let mut start = 0;
    while start < n {
        let end = (start + LANES).min(n);
        let block = start..end;
        // A block all in the high-gain stage reads only that stage's planes.
        let full = end - start == LANES;
        let mut high = full;
        if full {
            let v: &[u16; LANES] = v[block.clone()].try_into().unwrap();
            for &value in v {
                high &= value >> 14 == 0;
            }
        }
        if high {
            let out: &mut [f32; LANES] = (&mut out[block.clone()]).try_into().unwrap();
            let v: &[u16; LANES] = v[block.clone()].try_into().unwrap();
            let (p0, f0): (&[f32; LANES], &[f32; LANES]) = (
                p0[block.clone()].try_into().unwrap(),
                f0[block.clone()].try_into().unwrap(),
            );
            let mask: &[u8; LANES] = mask[block].try_into().unwrap();
            for k in 0..LANES {
                out[k] = finish((v[k] as f32 - p0[k]) * f0[k] * (mask[k] as f32), scale);
            }
            high_pixels += LANES as u64;
        } else {
            // Every stage's constants by selection, without branches, so the block
            // vectorises; its counts stay in registers until it ends.
            let (v, out) = (&v[block.clone()], &mut out[block.clone()]);
            let (p0, p1, p2) = (&p0[block.clone()], &p1[block.clone()], &p2[block.clone()]);
            let (f0, f1, f2) = (&f0[block.clone()], &f1[block.clone()], &f2[block.clone()]);
            let mask = &mask[block.clone()];
            let len = out.len();
            assert!([v.len(), p0.len(), p1.len(), p2.len(), f0.len()] == [len; 5]);
            assert!([f1.len(), f2.len(), mask.len()] == [len; 3]);
            let (mut medium, mut low, mut invalid) = (0u32, 0u32, 0u32);
            for k in 0..len {
                let bits = v[k] >> 14;
                let (is1, is3, is2) = (bits == 1, bits == 3, bits == 2);
                let p = super::of_stage(is1, is3, [p0[k], p1[k], p2[k]]);
                let f = super::of_stage(is1, is3, [f0[k], f1[k], f2[k]]);
                let adc = (v[k] & ADC_MASK) as f32;
                let value = finish((adc - p) * f * (mask[k] as f32), scale);
                out[k] = if is2 { 0.0 } else { value };
                medium += is1 as u32;
                low += is3 as u32;
                invalid += is2 as u32;
            }
            counts[0] += (len as u32 - medium - low - invalid) as u64;
            counts[1] += medium as u64;
            counts[2] += low as u64;
            counts[3] += invalid as u64;
        }
        start = end;
    }
    counts[0] += high_pixels;
}

impl JungfrauConstants {
    /// What energies are multiplied by for the output unit (`None`: keV as they are).
    fn scale(&self) -> Option<f32> {
        match self.unit {
            Unit::Energy => None,
            Unit::Photons { energy } => Some(1.0f32 / energy),
        }
    }

    /// Cell `cell`'s planes, when the cell exists and the constants are in standard (C)
    /// layout, as loaded.
    fn planes(&self, cell: usize) -> Option<CellPlanes<'_>> {
        if cell >= self.cells() {
            return None;
        }
        fn plane(a: &Array4<f32>, stage: usize, cell: usize) -> Option<&[f32]> {
            a.view()
                .index_axis_move(Axis(0), stage)
                .index_axis_move(Axis(0), cell)
                .to_slice()
        }
        Some(CellPlanes {
            pedestal: [
                plane(&self.pedestal, 0, cell)?,
                plane(&self.pedestal, 1, cell)?,
                plane(&self.pedestal, 2, cell)?,
            ],
            factor: [
                plane(&self.gain_factor, 0, cell)?,
                plane(&self.gain_factor, 1, cell)?,
                plane(&self.gain_factor, 2, cell)?,
            ],
            mask: self.mask.as_slice()?,
            scale: self.scale(),
        })
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every instruction set gives the bits and counts of psana's formula evaluated pixel by
    /// pixel, on frames with blocks all in high gain and blocks of mixed and invalid codes,
    /// in keV and in photons.
    #[test]
    fn every_instruction_set_calibrates_like_the_pixel_formula() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let (cells, rows, cols) = (2, 12, 48);
        let pedestal =
            Array4::from_shape_fn((3, cells, rows, cols), |_| rng.gen_range(900.0..1100.0f32));
        let gain = Array4::from_shape_fn((3, cells, rows, cols), |(s, ..)| {
            [40.0, 1.5, 0.1][s] * rng.gen_range(0.9..1.1f32)
        });
        let mask = Array2::from_shape_fn((rows, cols), |_| (rng.gen::<f32>() > 0.03) as u8);
        let mut compared = 0;
        for unit in [Unit::Energy, Unit::Photons { energy: 9.5 }] {
            let c = JungfrauConstants::new(pedestal.clone(), gain.view(), Some(mask.clone()), unit)
                .unwrap();
            for cell in 0..cells {
                let raw = Array2::from_shape_fn((rows, cols), |(r, _)| {
                    let code = if r < 6 { 0 } else { rng.gen_range(0..4u16) };
                    (code << 14) | rng.gen_range(800..3000u16)
                });
                let scale = match unit {
                    Unit::Energy => None,
                    Unit::Photons { energy } => Some(1.0f32 / energy),
                };
                let mut want = [0u64; 4];
                let expected: Vec<u32> = raw
                    .indexed_iter()
                    .map(|((r, col), &v)| {
                        let Some(s) = stage_of(v) else {
                            want[3] += 1;
                            return 0.0f32.to_bits();
                        };
                        want[s] += 1;
                        let value = ((v & ADC_MASK) as f32 - c.pedestal[[s, cell, r, col]])
                            * c.gain_factor[[s, cell, r, col]]
                            * (mask[[r, col]] as f32);
                        scale.map_or(value, |k| value * k).to_bits()
                    })
                    .collect();
                let planes = c.planes(cell).unwrap();
                for isa in crate::simd::Isa::available() {
                    let mut out = vec![0.0f32; rows * cols];
                    let mut counts = [0u64; 4];
                    let v = raw.as_slice().unwrap();
                    calibrate_part(isa, &planes, v, 0..v.len(), &mut out, &mut counts);
                    let bits: Vec<u32> = out.iter().map(|x| x.to_bits()).collect();
                    assert_eq!(bits, expected, "{}", isa.name());
                    assert_eq!(counts, want, "{}", isa.name());
                    compared += out.len();
                }
            }
        }
        eprintln!("{compared} pixels compared");
    }
}
