//! The per-frame kernels: gather-adds of pixels into their bins.

use crate::Pixel;

/// [`scatter`] for raw 16-bit frames, with `u64` banks.
pub(super) fn scatter_u16(pixels: &[u16], index: &[u16], sums: &mut [f64]) {
    let n = sums.len();
    let stride = n + 1;
    let slot = |i: u16| if i == u16::MAX { n } else { i as usize };
    let mut banks = vec![0u64; 4 * stride];
    let (p4, rest_p) = pixels.split_at(pixels.len() / 4 * 4);
    let (i4, rest_i) = index.split_at(p4.len());
    for (p, i) in p4.chunks_exact(4).zip(i4.chunks_exact(4)) {
        banks[slot(i[0])] += p[0] as u64;
        banks[stride + slot(i[1])] += p[1] as u64;
        banks[2 * stride + slot(i[2])] += p[2] as u64;
        banks[3 * stride + slot(i[3])] += p[3] as u64;
    }
    for (p, i) in rest_p.iter().zip(rest_i) {
        banks[slot(*i)] += *p as u64;
    }
    for (b, s) in sums.iter_mut().enumerate() {
        *s += (banks[b] + banks[stride + b] + banks[2 * stride + b] + banks[3 * stride + b]) as f64;
    }
}

/// Gather-adds pixels into their bins. Neighbouring pixels usually share a bin, and adding
/// into one accumulator would chain every add through the store of the previous one; four
/// interleaved accumulator banks break that chain. Skipped pixels go to a spare bin at the
/// end instead of a branch.
pub(super) fn scatter<T: Pixel, I: Copy + Into<u64> + PartialEq>(
    pixels: &[T],
    index: &[I],
    skip: I,
    sums: &mut [f64],
) {
    let n = sums.len();
    let stride = n + 1;
    let slot = |i: I| if i == skip { n } else { i.into() as usize };
    let mut banks = vec![0.0f64; 4 * stride];
    let (p4, rest_p) = pixels.split_at(pixels.len() / 4 * 4);
    let (i4, rest_i) = index.split_at(p4.len());
    for (p, i) in p4.chunks_exact(4).zip(i4.chunks_exact(4)) {
        banks[slot(i[0])] += p[0].to_f64();
        banks[stride + slot(i[1])] += p[1].to_f64();
        banks[2 * stride + slot(i[2])] += p[2].to_f64();
        banks[3 * stride + slot(i[3])] += p[3].to_f64();
    }
    for (p, i) in rest_p.iter().zip(rest_i) {
        banks[slot(*i)] += p.to_f64();
    }
    for (b, s) in sums.iter_mut().enumerate() {
        *s += banks[b] + banks[stride + b] + banks[2 * stride + b] + banks[3 * stride + b];
    }
}
