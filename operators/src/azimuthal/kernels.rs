//! The per-frame kernels: gather-adds of pixels into their bins.

use crate::Pixel;

/// [`scatter`] for raw 16-bit frames into `sums` (maps of fewer than 65535 bins): u32 banks,
/// emptied into the sums every 2^16 pixels (a bank then holds at most 2^14 values below
/// 2^16), and no test or bounds check per pixel, so the loop has no branch (1.3–1.7× the speed
/// of u64 banks with the check here, and the clamp that stood in for the check cost another
/// two instructions a pixel).
///
/// # Safety
///
/// Every index is at most `sums.len()` (the spare bin, where skipped pixels go).
pub(super) unsafe fn scatter_u16(pixels: &[u16], index: &[u16], sums: &mut [f64]) {
    let n = sums.len();
    let stride = n + 1;
    debug_assert!(index.iter().all(|&i| i as usize <= n));
    let mut banks = vec![0u32; 4 * stride];
    let mut totals = vec![0u64; n];
    for (p, i) in pixels.chunks(1 << 16).zip(index.chunks(1 << 16)) {
        let (p4, rest_p) = p.split_at(p.len() / 4 * 4);
        let (i4, rest_i) = i.split_at(p4.len());
        let b = banks.as_mut_ptr();
        let add = |bank: usize, i: u16, p: u16| {
            // SAFETY: i ≤ n < stride (the caller's promise) and bank < 4.
            unsafe { *b.add(bank * stride + i as usize) += p as u32 }
        };
        for (p, i) in p4.chunks_exact(4).zip(i4.chunks_exact(4)) {
            add(0, i[0], p[0]);
            add(1, i[1], p[1]);
            add(2, i[2], p[2]);
            add(3, i[3], p[3]);
        }
        for (k, (p, i)) in rest_p.iter().zip(rest_i).enumerate() {
            add(k, *i, *p);
        }
        for (bin, t) in totals.iter_mut().enumerate() {
            *t += (0..4).map(|k| banks[k * stride + bin] as u64).sum::<u64>();
        }
        banks.fill(0);
    }
    for (s, t) in sums.iter_mut().zip(totals) {
        *s += t as f64;
    }
}

/// Banks of sums for calibrated (float) pixels: pixel `k` of a frame adds into bank
/// `k % BANKS` of its bin. Eight pixels in a row are eight banks, so they can be added as one
/// vector; a bin's banks are side by side (one cache line).
pub(super) const BANKS: usize = 8;

/// Gather-adds pixels into their bins' banks: pixel `offset + k` of the frame into bank
/// `(offset + k) % BANKS` (`banks` holds the bins' banks, bin after bin, plus a spare bin's,
/// where skipped pixels go).
///
/// Eight neighbouring pixels in one bin (about half of them on a module, more on a full
/// detector around its centre) are one vector add into the bin's banks, the others are added
/// one by one, without a bounds check. Each bank adds its pixels in the same order either
/// way, so the bits do not depend on the path. Measured on a 512×128 module and 300 bins, the
/// best of 40 × 200 frames: 47 µs a frame with the index clamped and checked, 44 µs
/// unchecked, 35 µs with the vector add; masked adds into the two bins of eight pixels that
/// straddle an edge took 59 µs. The instruction set makes no difference here, so it is not
/// dispatched.
///
/// # Safety
///
/// Every index is below `banks.len() / BANKS` (at most the spare bin).
pub(super) unsafe fn scatter<T: Pixel, I: Copy + Into<u64>>(
    pixels: &[T],
    index: &[I],
    offset: usize,
    banks: &mut [f64],
) {
    let bins = banks.len() / BANKS;
    assert!(bins > 0 && banks.len() == BANKS * bins && index.len() == pixels.len());
    debug_assert!(index.iter().all(|&i| (i.into() as usize) < bins));
    let base = banks.as_mut_ptr();
    let add = |bank: usize, bin: u64, p: T| {
        // SAFETY: bin < bins (the caller's promise) and bank < BANKS.
        unsafe { *base.add(bin as usize * BANKS + bank) += p.to_f64() }
    };
    // Up to the first pixel of bank 0, one at a time.
    let lead = ((BANKS - offset % BANKS) % BANKS).min(pixels.len());
    for k in 0..lead {
        add((offset + k) % BANKS, index[k].into(), pixels[k]);
    }
    let (pixels, index) = (&pixels[lead..], &index[lead..]);
    let whole = pixels.len() / BANKS * BANKS;
    for (p, i) in pixels[..whole]
        .chunks_exact(BANKS)
        .zip(index[..whole].chunks_exact(BANKS))
    {
        let (p, i): (&[T; BANKS], &[I; BANKS]) = (p.try_into().unwrap(), i.try_into().unwrap());
        let first: u64 = i[0].into();
        let mut same = true;
        for &bin in &i[1..] {
            same &= bin.into() == first;
        }
        if same {
            // SAFETY: first < bins, so the bin's BANKS banks lie inside `banks`, and no other
            // reference into them is alive.
            let lanes = unsafe { &mut *(base.add(first as usize * BANKS) as *mut [f64; BANKS]) };
            for k in 0..BANKS {
                lanes[k] += p[k].to_f64();
            }
        } else {
            for k in 0..BANKS {
                add(k, i[k].into(), p[k]);
            }
        }
    }
    for (k, (p, i)) in pixels[whole..].iter().zip(&index[whole..]).enumerate() {
        add(k, (*i).into(), *p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The vector adds of eight pixels in one bin give the bits of adding every pixel into
    /// its bank one by one, whatever the offset of the part, with runs, edges and the spare bin.
    #[test]
    fn runs_of_one_bin_add_like_pixel_by_pixel() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let bins = 40usize;
        // Runs of 1–20 pixels in one bin, some in the spare bin (skipped pixels).
        let mut index = Vec::new();
        while index.len() < 5_000 {
            let bin = rng.gen_range(0..=bins) as u16;
            index.extend(std::iter::repeat_n(bin, rng.gen_range(1..20)));
        }
        let pixels: Vec<f32> = (0..index.len()).map(|_| rng.gen_range(-5.0..1e4)).collect();
        let mut runs = 0;
        for offset in [0usize, 3, 8, 13] {
            let (p, i) = (&pixels[offset..], &index[offset..]);
            let mut want = vec![0.0f64; BANKS * (bins + 1)];
            for (k, (&p, &i)) in p.iter().zip(i).enumerate() {
                want[i as usize * BANKS + (offset + k) % BANKS] += p as f64;
            }
            let mut got = vec![0.0f64; BANKS * (bins + 1)];
            // Two parts, the second starting mid-run.
            let cut = 1_001;
            // SAFETY: every index is at most `bins`, the spare bin.
            unsafe {
                scatter(&p[..cut], &i[..cut], offset, &mut got);
                scatter(&p[cut..], &i[cut..], offset + cut, &mut got);
            }
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "offset {offset}");
            runs += i
                .chunks_exact(BANKS)
                .filter(|c| c.iter().all(|b| *b == c[0]))
                .count();
        }
        assert!(
            runs > 500,
            "{runs} runs of one bin: the vector path was hardly taken"
        );
        eprintln!(
            "{} pixels at 4 offsets compared, {runs} runs of eight in one bin",
            pixels.len()
        );
    }
}
