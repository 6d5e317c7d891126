//! The per-frame kernels: gather-adds of pixels into their bins.

use crate::Pixel;

/// [`scatter`] for raw 16-bit frames into `sums` (maps of fewer than 65535 bins): u32 banks,
/// emptied into the sums every 2^16 pixels (a bank then holds at most 2^14 values below
/// 2^16), and the bank index clamped rather than checked, so the loop has no branch and no
/// bounds check (1.3–1.7× the speed of u64 banks with the check here).
pub(super) fn scatter_u16(pixels: &[u16], index: &[u16], sums: &mut [f64]) {
    let n = sums.len();
    let stride = n + 1;
    let mut banks = vec![0u32; 4 * stride];
    let (b0, rest) = banks.split_at_mut(stride);
    let (b1, rest) = rest.split_at_mut(stride);
    let (b2, b3) = rest.split_at_mut(stride);
    let mut totals = vec![0u64; n];
    let mut flush = |b0: &mut [u32], b1: &mut [u32], b2: &mut [u32], b3: &mut [u32]| {
        for (b, t) in totals.iter_mut().enumerate() {
            *t += b0[b] as u64 + b1[b] as u64 + b2[b] as u64 + b3[b] as u64;
        }
        for bank in [&mut *b0, &mut *b1, &mut *b2, &mut *b3] {
            bank.fill(0);
        }
    };
    for (p, i) in pixels.chunks(1 << 16).zip(index.chunks(1 << 16)) {
        let (p4, rest_p) = p.split_at(p.len() / 4 * 4);
        let (i4, rest_i) = i.split_at(p4.len());
        // Skipped pixels (u16::MAX) land in the spare bin n.
        for (p, i) in p4.chunks_exact(4).zip(i4.chunks_exact(4)) {
            b0[(i[0] as usize).min(n)] += p[0] as u32;
            b1[(i[1] as usize).min(n)] += p[1] as u32;
            b2[(i[2] as usize).min(n)] += p[2] as u32;
            b3[(i[3] as usize).min(n)] += p[3] as u32;
        }
        for (k, (p, i)) in rest_p.iter().zip(rest_i).enumerate() {
            let bank = match k {
                0 => &mut *b0,
                1 => &mut *b1,
                2 => &mut *b2,
                _ => &mut *b3,
            };
            bank[(*i as usize).min(n)] += *p as u32;
        }
        flush(b0, b1, b2, b3);
    }
    for (s, t) in sums.iter_mut().zip(totals) {
        *s += t as f64;
    }
}

/// Banks of sums for calibrated (float) pixels: pixel `k` of a frame adds into bank
/// `k % BANKS`. A float add takes 4 cycles and a bin's sum goes through a store and a load
/// between two adds; with 8 banks, two adds into one bank's bin are 8 pixels apart, so the
/// chains overlap (1.4× the speed of 4 banks here).
pub(super) const BANKS: usize = 8;

/// Gather-adds pixels into their bins' banks: pixel `offset + k` of the frame into bank
/// `(offset + k) % BANKS` (`banks` holds `BANKS` banks of the bins plus a spare bin).
/// Skipped pixels (`skip`, above every bin) go to the spare bin: the index is clamped to it.
pub(super) fn scatter<T: Pixel, I: Copy + Into<u64>>(
    pixels: &[T],
    index: &[I],
    offset: usize,
    banks: &mut [f64],
) {
    let stride = banks.len() / BANKS;
    assert!(stride > 0 && banks.len() == BANKS * stride && index.len() == pixels.len());
    let n = stride - 1;
    let slot = |i: I| (i.into() as usize).min(n);
    let mut add = |bank: usize, i: I, p: T| {
        // SAFETY: bank < BANKS and slot ≤ n < stride, so the index is below BANKS × stride.
        unsafe { *banks.get_unchecked_mut(bank * stride + slot(i)) += p.to_f64() }
    };
    // Up to the first pixel of bank 0, one at a time.
    let lead = ((BANKS - offset % BANKS) % BANKS).min(pixels.len());
    for k in 0..lead {
        add((offset + k) % BANKS, index[k], pixels[k]);
    }
    let (pixels, index) = (&pixels[lead..], &index[lead..]);
    let whole = pixels.len() / BANKS * BANKS;
    for (p, i) in pixels[..whole]
        .chunks_exact(BANKS)
        .zip(index[..whole].chunks_exact(BANKS))
    {
        for bank in 0..BANKS {
            add(bank, i[bank], p[bank]);
        }
    }
    for (k, (p, i)) in pixels[whole..].iter().zip(&index[whole..]).enumerate() {
        add(k, *i, *p);
    }
}
