//! AGIPD's calibration kernel: one memory cell's constants as planes, walked in blocks of
//! [`LANES`] pixels, high-gain blocks on the fast path, on every instruction set.

use ndarray::{Array4, Axis};

use super::{AgipdConstants, StageCounts};
use crate::simd::LANES;

/// One memory cell's constants as contiguous planes of the frame's pixels.
pub(crate) struct CellPlanes<'a> {
    thresholds: [&'a [f32]; 2],
    offset: [&'a [f32]; 3],
    relative: [&'a [f32]; 3],
    /// Per block of [`LANES`] pixels, the lowest first threshold.
    floor: &'a [f32],
    /// The bad pixels, in frame order.
    bad: &'a [u32],
}

impl AgipdConstants {
    /// Cell `cell`'s planes, and what the kernels derive for it.
    pub(super) fn planes(&self, cell: usize) -> CellPlanes<'_> {
        // `AgipdConstants::new` put every array in standard layout.
        fn plane(a: &Array4<f32>, cell: usize, k: usize) -> &[f32] {
            a.view()
                .index_axis_move(Axis(0), cell)
                .index_axis_move(Axis(0), k)
                .to_slice()
                .expect("constants in standard layout")
        }
        let (rows, cols) = self.shape();
        let blocks = (rows * cols).div_ceil(LANES);
        CellPlanes {
            thresholds: [0, 1].map(|k| plane(&self.thresholds, cell, k)),
            offset: [0, 1, 2].map(|k| plane(&self.offset, cell, k)),
            relative: [0, 1, 2].map(|k| plane(&self.relative_gain, cell, k)),
            floor: &self.floor[cell * blocks..(cell + 1) * blocks],
            bad: &self.bad_pixels[self.bad_at[cell]..self.bad_at[cell + 1]],
        }
    }

    /// The pixels per stage and the bad ones, as the kernels count them.
    pub(super) fn counted(counts: [u64; 4]) -> StageCounts {
        StageCounts {
            stages: [counts[0], counts[1], counts[2]],
            invalid: counts[3],
        }
    }
}

crate::dispatched! {
    /// Calibrates pixels `range` of a frame (`raw`: contiguous analog and gain values of the
    /// whole frame) into `out` (`range.len()` values), and stage codes into `stages` when given;
    /// adds the pixels per stage (and bad ones, last) into `counts`.
    pub(crate) fn calibrate_part(
        planes: &CellPlanes<'_>,
        raw: (&[u16], &[u16]),
        range: std::ops::Range<usize>,
        out: &mut [f32],
        stages: Option<&mut [u8]>,
        counts: &mut [u64; 4],
    ) -> () => calibrate_kernel;
}

/// One block's pixels and constants, all of the same length.
struct Block<'a> {
    a: &'a [u16],
    g: &'a [u16],
    t: [&'a [f32]; 2],
    o: [&'a [f32]; 3],
    r: [&'a [f32]; 3],
}

impl<'a> Block<'a> {
    #[inline(always)]
    fn of(planes: &CellPlanes<'a>, a: &'a [u16], g: &'a [u16], at: std::ops::Range<usize>) -> Self {
        Block {
            a: &a[at.clone()],
            g: &g[at.clone()],
            t: planes.thresholds.map(|p| &p[at.clone()]),
            o: planes.offset.map(|p| &p[at.clone()]),
            r: planes.relative.map(|p| &p[at.clone()]),
        }
    }

    /// Any stages: every stage's constants by selection, without branches, so that it
    /// vectorises too. Returns the pixels in medium and low gain (bad ones included: they are
    /// mended afterwards).
    #[inline(always)]
    fn calibrate_mixed(&self, out: &mut [f32]) -> [u32; 2] {
        let n = out.len();
        let (a, g) = (&self.a[..n], &self.g[..n]);
        let (t0, t1) = (&self.t[0][..n], &self.t[1][..n]);
        let (o0, o1, o2) = (&self.o[0][..n], &self.o[1][..n], &self.o[2][..n]);
        let (r0, r1, r2) = (&self.r[0][..n], &self.r[1][..n], &self.r[2][..n]);
        let (mut medium, mut low) = (0u32, 0u32);
        for k in 0..n {
            let gv = g[k] as f32;
            // Not `g >= t`: "not below" is the stage the pixel loop gives, for any threshold.
            let (below0, below1) = (gv < t0[k], gv < t1[k]);
            let above0 = !below0;
            let above1 = above0 & !below1;
            let offset = super::super::of_stage(above0, above1, [o0[k], o1[k], o2[k]]);
            let relative = super::super::of_stage(above0, above1, [r0[k], r1[k], r2[k]]);
            out[k] = (a[k] as f32 - offset) * relative;
            medium += (above0 & !above1) as u32;
            low += above1 as u32;
        }
        [medium, low]
    }

    /// Each pixel's stage code (bad pixels are mended afterwards).
    #[inline(always)]
    fn codes(&self, codes: &mut [u8]) {
        let n = codes.len();
        let (g, t0, t1) = (&self.g[..n], &self.t[0][..n], &self.t[1][..n]);
        for k in 0..n {
            codes[k] = stage(g[k], t0[k], t1[k]) as u8;
        }
    }
}

/// The stage of a pixel with gain value `g`, as the pixel loop gives it for any thresholds.
#[inline(always)]
fn stage(g: u16, t0: f32, t1: f32) -> usize {
    // "Not below", not `>=`: the stage the pixel loop gives when a threshold is NaN.
    let (below0, below1) = ((g as f32) < t0, (g as f32) < t1);
    let above0 = !below0;
    above0 as usize + (above0 & !below1) as usize
}

/// Whether full block `j` of gain values lies below `floor` (then every pixel of it is in high
/// gain: `floor` is at most each pixel's first threshold).
#[inline(always)]
fn all_high(g: &[u16], floor: f32, j: usize) -> bool {
    let g: &[u16; LANES] = g[j * LANES..(j + 1) * LANES].try_into().unwrap();
    // A loop, not `fold`: `fold` with a closure was called, not inlined, from the kernels.
    let mut all = true;
    for &v in g {
        all &= (v as f32) < floor;
    }
    all
}

/// The lowest first threshold over the frame's block(s) of [`LANES`] pixels that the
/// [`LANES`] pixels from `at` overlap.
#[inline(always)]
fn floor(floors: &[f32], at: usize) -> f32 {
    let lo = floors[at / LANES];
    if at.is_multiple_of(LANES) {
        return lo;
    }
    match floors.get(at / LANES + 1) {
        Some(&hi) => lo.min(hi),
        None => lo,
    }
}

/// Blocks ahead whose "all high" is known (and whose other planes are asked for when not):
/// a memory latency's worth of blocks.
const AHEAD: usize = 8;

/// Pixels ahead whose raw values and first-stage constants are asked for. The hardware
/// prefetchers alone keep fewer of the four streams' lines in flight (calibration alone,
/// 352 cells: 8,170 frames/s without, 9,440 with 256 pixels ahead, 9,560 with 1,024).
const PREFETCH_PIXELS: usize = 512;

#[inline(always)]
fn calibrate_kernel(
    planes: &CellPlanes<'_>,
    (analog, gain): (&[u16], &[u16]),
    range: std::ops::Range<usize>,
    out: &mut [f32],
    mut stages: Option<&mut [u8]>,
    counts: &mut [u64; 4],
) {
    let n = range.len();
    assert_eq!(out.len(), n, "output of the wrong size");
    // Sliced once: the blocks below then index without bounds checks of their own (slicing
    // ten planes per block of 16 pixels cost more than calibrating them).
    let (a, g) = (&analog[range.clone()], &gain[range.clone()]);
    let (o0, r0) = (
        &planes.offset[0][range.clone()],
        &planes.relative[0][range.clone()],
    );
    let full = n / LANES;
    // Closures here would be compiled without the caller's instruction set and called:
    // everything in the loop is inlined code or `#[inline(always)]` functions.
    let mut high_pixels = 0u64;
    // Most pixels of most frames sit in the high-gain stage: a block of pixels that all do
    // reads only the first stage's planes, and the others are left to the memory they are in.
    // Blocks not all in high gain are sparse (bright spots), so the lines of the other
    // stages' planes they read are out of sequence: each would wait a full memory latency.
    // Each block's test is made AHEAD blocks early, kept in `known`, and such a block's lines
    // are asked for then.
    let mut known = [false; 2 * AHEAD];
    for j in 0..AHEAD.min(full) {
        known[j % (2 * AHEAD)] = all_high(g, floor(planes.floor, range.start + j * LANES), j);
    }
    let blocks = n.div_ceil(LANES);
    let [t0, t1] = planes.thresholds;
    let [_, o1, o2] = planes.offset;
    let [_, r1, r2] = planes.relative;
    for j in 0..blocks {
        let ahead = range.start + j * LANES + PREFETCH_PIXELS;
        if ahead < analog.len() {
            crate::simd::prefetch(&planes.offset[0][ahead]);
            crate::simd::prefetch(&planes.relative[0][ahead]);
            // Half as many bytes a pixel: a new line every other block.
            if j % 2 == 0 {
                crate::simd::prefetch(&analog[ahead]);
                crate::simd::prefetch(&gain[ahead]);
            }
        }
        let later = j + AHEAD;
        if later < full {
            let h = all_high(g, floor(planes.floor, range.start + later * LANES), later);
            known[later % (2 * AHEAD)] = h;
            if !h {
                let at = range.start + later * LANES;
                for plane in [t0, t1, o1, o2, r1, r2] {
                    crate::simd::prefetch(&plane[at]);
                }
            }
        }
        let at = j * LANES..((j + 1) * LANES).min(n);
        if j < full && known[j % (2 * AHEAD)] {
            let b = j * LANES..(j + 1) * LANES;
            let out: &mut [f32; LANES] = (&mut out[b.clone()]).try_into().unwrap();
            let a: &[u16; LANES] = a[b.clone()].try_into().unwrap();
            let (o0, r0): (&[f32; LANES], &[f32; LANES]) =
                (o0[b.clone()].try_into().unwrap(), r0[b].try_into().unwrap());
            for k in 0..LANES {
                out[k] = (a[k] as f32 - o0[k]) * r0[k];
            }
            high_pixels += LANES as u64;
        } else {
            let global = range.start + at.start..range.start + at.end;
            let block = Block::of(planes, analog, gain, global);
            let [medium, low] = block.calibrate_mixed(&mut out[at.clone()]);
            counts[0] += (at.len() as u32 - medium - low) as u64;
            counts[1] += medium as u64;
            counts[2] += low as u64;
        }
        if let Some(s) = stages.as_deref_mut() {
            let global = range.start + at.start..range.start + at.end;
            Block::of(planes, analog, gain, global).codes(&mut s[at]);
        }
    }
    counts[0] += high_pixels;
    // Bad pixels were calibrated and counted by their stage with the others: set them to 0
    // and count them as bad instead.
    let first = planes.bad.partition_point(|&p| (p as usize) < range.start);
    for &p in planes.bad[first..]
        .iter()
        .take_while(|&&p| (p as usize) < range.end)
    {
        let p = p as usize;
        // Below its block's floor, the pixel is in high gain without a look at its
        // thresholds, whose lines the fast path never brought in.
        let below = (gain[p] as f32) < planes.floor[p / LANES];
        counts[if below {
            0
        } else {
            stage(gain[p], t0[p], t1[p])
        }] -= 1;
        counts[3] += 1;
        out[p - range.start] = 0.0;
        if let Some(s) = stages.as_deref_mut() {
            s[p - range.start] = u8::MAX;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_constants, test_frame};
    use super::*;
    use crate::simd::Isa;
    use ndarray::Array2;
    use rand::SeedableRng;

    /// Every instruction set gives the bits, stage codes and counts of the pixel-by-pixel
    /// loop, on frames with blocks all in high gain and blocks of mixed stages and bad pixels.
    #[test]
    fn every_instruction_set_calibrates_like_the_pixel_loop() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let (cells, rows, cols) = (3, 16, 40);
        let c = test_constants(&mut rng, (cells, rows, cols), 0.02);
        let mut pixels = 0;
        for cell in 0..cells {
            let (analog, gain) = test_frame(&mut rng, (rows, cols), 8);
            let mut expected = Array2::zeros((rows, cols));
            let mut expected_stages = Array2::zeros((rows, cols));
            let want = c.calibrate_scalar(
                analog.view(),
                gain.view(),
                cell,
                expected.view_mut(),
                Some(expected_stages.view_mut()),
            );
            assert!(want.stages.iter().all(|n| *n > 0) && want.invalid > 0);
            let planes = c.planes(cell);
            for isa in Isa::available() {
                let mut out = vec![0.0f32; rows * cols];
                let mut codes = vec![0u8; rows * cols];
                let mut counts = [0u64; 4];
                // In parts that start off the blocks of LANES pixels, as the fused passes
                // call it (rows of 40 pixels).
                for part in [0, 37, 40, 333, rows * cols].windows(2) {
                    let range = part[0]..part[1];
                    calibrate_part(
                        isa,
                        &planes,
                        (analog.as_slice().unwrap(), gain.as_slice().unwrap()),
                        range.clone(),
                        &mut out[range.clone()],
                        Some(&mut codes[range]),
                        &mut counts,
                    );
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&out),
                    bits(expected.as_slice().unwrap()),
                    "{}",
                    isa.name()
                );
                assert_eq!(codes, expected_stages.as_slice().unwrap(), "{}", isa.name());
                assert_eq!(counts[..3], want.stages, "{}", isa.name());
                assert_eq!(counts[3], want.invalid, "{}", isa.name());
                pixels += out.len();
            }
        }
        eprintln!(
            "{pixels} pixels compared over {:?}",
            Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
        );
    }
}
