//! The instruction set the hot kernels run with, chosen at run time, so that one binary built
//! for baseline x86-64 (SSE2) still uses AVX2 or AVX-512 where the CPU has them.
//!
//! Each hot kernel is written once, as plain Rust over contiguous slices that the compiler
//! vectorises, and [`dispatched!`](crate::dispatched) compiles it three times: for the
//! baseline, for AVX2 (with FMA, BMI1/2) and for AVX-512 (F, BW, VL, DQ). The copy that runs
//! is picked by an [`Isa`] argument, which only [`Isa::detect`] and [`Isa::available`] make,
//! after asking the CPU, so a path the CPU lacks is never called.
//!
//! The three copies give the same bits. Element-wise kernels do the same float operations per
//! pixel whatever the vector width (Rust never fuses a multiply and an add on its own), and
//! the reductions over floats keep their own fixed set of lanes ([`LANES`]), so the order of
//! the adds does not depend on the instruction set.
//!
//! ```
//! use shotflow_operators::simd::{self, Isa};
//!
//! let pixels: Vec<u16> = (0..10_000).map(|k| (k % 300) as u16).collect();
//! let expected: u64 = pixels.iter().map(|&v| v as u64).sum();
//! for isa in Isa::available() {
//!     assert_eq!(simd::sum_u16(isa, &pixels), expected, "{}", isa.name());
//! }
//! ```

use std::sync::OnceLock;

/// The lanes of the float reductions: sums over floats add element `k` into lane `k % LANES`
/// and the lanes together at the end, on every instruction set.
pub const LANES: usize = 16;

/// An instruction set the kernels can run with, on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Isa {
    pub(crate) level: Level,
}

/// The instruction sets, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Level {
    Baseline,
    Avx2,
    Avx512,
}

impl Isa {
    /// The baseline every x86-64 (and every other target) has: SSE2 on x86-64.
    pub fn baseline() -> Isa {
        Isa {
            level: Level::Baseline,
        }
    }

    /// The best instruction set for this CPU, asked once: the widest it has, except AVX2 on
    /// Intel's Skylake-SP generation (Skylake-SP, Cascade Lake, Cooper Lake), where 512-bit
    /// arithmetic lowers the core's clock.
    /// `SHOTFLOW_ISA=sse2|avx2|avx512` chooses any that the CPU has (to compare the paths, or
    /// to rule one out); an unknown value is ignored with a message on stderr.
    pub fn detect() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let widest = *Isa::available()
                .last()
                .expect("the baseline is always there");
            let best = if avx512_lowers_clock() {
                widest.min(Isa { level: Level::Avx2 })
            } else {
                widest
            };
            match std::env::var("SHOTFLOW_ISA") {
                Ok(name) => match Isa::available().into_iter().find(|i| i.name() == name) {
                    Some(isa) => isa,
                    None => {
                        eprintln!(
                            "shotflow: SHOTFLOW_ISA={name} is not one this CPU has ({}): using {}",
                            Isa::available()
                                .iter()
                                .map(|i| i.name())
                                .collect::<Vec<_>>()
                                .join(", "),
                            best.name()
                        );
                        best
                    }
                },
                Err(_) => best,
            }
        })
    }

    /// Every instruction set this CPU has, the baseline first.
    pub fn available() -> Vec<Isa> {
        let mut all = vec![Isa::baseline()];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("bmi1")
                && is_x86_feature_detected!("bmi2")
            {
                all.push(Isa { level: Level::Avx2 });
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512dq")
                {
                    all.push(Isa {
                        level: Level::Avx512,
                    });
                }
            }
        }
        all
    }

    /// `sse2` (the baseline), `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self.level {
            Level::Baseline => "sse2",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// Whether this is an Intel core of the Skylake-SP generation (CPUID family 6, model 0x55:
/// Skylake-SP and -X, Cascade Lake, Cooper Lake), whose clock drops while it runs 512-bit
/// arithmetic, for every instruction it runs then. On such a Xeon (2 cores of a VM at 2.0 GHz)
/// AGIPD calibration ran at 7,320 frames/s with AVX2 against 6,420 with AVX-512, and the whole
/// module chain no slower, in alternating processes. On a Sapphire/Emerald Rapids VM AVX-512
/// was the fastest; AMD's cores with AVX-512 were not measured.
fn avx512_lowers_clock() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // SAFETY: CPUID exists on every x86-64, and leaves 0 and 1 on every one of them.
        #[allow(unused_unsafe)]
        let (vendor, signature) = unsafe { (__cpuid(0), __cpuid(1).eax) };
        // "GenuineIntel", in the order the registers hold it.
        let intel = (vendor.ebx, vendor.edx, vendor.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e);
        let family = (signature >> 8) & 0xf;
        let model = ((signature >> 4) & 0xf) | (((signature >> 16) & 0xf) << 4);
        intel && family == 6 && model == 0x55
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Defines `$name(isa, args…)`, which runs the `#[inline(always)]` kernel `$kernel(args…)`
/// compiled for `isa`. The kernel is inlined into one function per instruction set, each
/// compiled with `#[target_feature]`, so the compiler vectorises it for that set.
#[macro_export]
#[doc(hidden)]
macro_rules! dispatched {
    ($(#[$attr:meta])* $vis:vis fn $name:ident $([$($gen:tt)*])? ($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty => $kernel:path;) => {
        $(#[$attr])*
        $vis fn $name $(<$($gen)*>)? (isa: $crate::simd::Isa, $($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                fn avx512 $(<$($gen)*>)? ($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                fn avx2 $(<$($gen)*>)? ($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                match isa.level {
                    // SAFETY: an `Isa` above the baseline is only made after the CPU said it
                    // has these features (`Isa::available`).
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Baseline => {}
                }
            }
            let _ = isa;
            $kernel($($arg),*)
        }
    };
}

/// Asks the CPU to bring the cache line holding `value` into the caches, without waiting for
/// it: for the few lines a kernel will read out of sequence, which the hardware prefetchers
/// cannot foresee.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, and the address is of a live reference.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

dispatched! {
    /// The sum of raw 16-bit pixels: the plain pass over the bytes that the benches measure
    /// every reduction against.
    pub fn sum_u16(pixels: &[u16]) -> u64 => sum_u16_kernel;
}

#[inline(always)]
fn sum_u16_kernel(pixels: &[u16]) -> u64 {
    // u32 lanes per chunk of 2^15 pixels of at most 2^16 − 1 cannot overflow.
    pixels
        .chunks(1 << 15)
        .map(|chunk| chunk.iter().map(|&v| v as u32).sum::<u32>() as u64)
        .sum()
}

dispatched! {
    /// The wrapping sum of `bytes` read as little-endian 64-bit words (a last partial word
    /// padded with zeros): a plain pass over any bytes, the reference for reductions that read
    /// constants or maps beside the frame.
    pub fn sum_words(bytes: &[u8]) -> u64 => sum_words_kernel;
}

#[inline(always)]
fn sum_words_kernel(bytes: &[u8]) -> u64 {
    // One reduction over contiguous words, which the compiler vectorises with plain loads.
    // (Eight lanes added block by block were vectorised across blocks with gathers under
    // AVX-512: half the memory's speed on a Skylake-SP core.)
    let words = bytes.chunks_exact(8);
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    words
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .fold(u64::from_le_bytes(last), u64::wrapping_add)
}

dispatched! {
    /// The sum of the raw values at or above `threshold`, how many they are, and the maximum
    /// of all values (0 for none): exact integer sums, so any lane order gives the same.
    pub fn sum_above_u16(values: &[u16], threshold: u32) -> (u64, u64, u16) => sum_above_u16_kernel;
}

#[inline(always)]
fn sum_above_u16_kernel(values: &[u16], threshold: u32) -> (u64, u64, u16) {
    let (mut sum, mut count, mut max) = (0u64, 0u64, 0u16);
    // u32 sums of 2^15 values below 2^16 cannot overflow.
    for chunk in values.chunks(1 << 15) {
        let mut s = 0u32;
        let mut n = 0u32;
        let mut m = 0u16;
        for &v in chunk {
            let keep = v as u32 >= threshold;
            s += if keep { v as u32 } else { 0 };
            n += keep as u32;
            m = m.max(v);
        }
        sum += s as u64;
        count += n as u64;
        max = max.max(m);
    }
    (sum, count, max)
}

dispatched! {
    /// The sum of `values` in `f64`, in [`LANES`] lanes: the same bits on every instruction
    /// set (NaN and infinities propagate as in any sum).
    ///
    /// ```
    /// use shotflow_operators::simd::{sum_f32, Isa};
    ///
    /// assert_eq!(sum_f32(Isa::detect(), &[1.5, -0.25, 2.0]), 3.25);
    /// assert!(sum_f32(Isa::detect(), &[1.0, f32::NAN]).is_nan());
    /// ```
    pub fn sum_f32(values: &[f32]) -> f64 => sum_f32_kernel;
}

#[inline(always)]
fn sum_f32_kernel(values: &[f32]) -> f64 {
    let mut sums = [0.0f64; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for k in 0..LANES {
            sums[k] += chunk[k] as f64;
        }
    }
    for (k, &v) in chunks.remainder().iter().enumerate() {
        sums[k] += v as f64;
    }
    sums.iter().sum()
}

dispatched! {
    /// The sum of `values` in `f64`, in [`LANES`] lanes (the same bits on every instruction
    /// set), the number of values at or above `threshold` (the sum counts only those), and
    /// the maximum of all values (`−∞` for none).
    ///
    /// ```
    /// use shotflow_operators::simd::{sum_above_f32, Isa};
    ///
    /// let (sum, count, max) = sum_above_f32(Isa::detect(), &[1.0, 5.0, -2.0, 7.5], 2.0);
    /// assert_eq!((sum, count, max), (12.5, 2, 7.5));
    /// ```
    pub fn sum_above_f32(values: &[f32], threshold: f32) -> (f64, u64, f32) => sum_above_f32_kernel;
}

#[inline(always)]
fn sum_above_f32_kernel(values: &[f32], threshold: f32) -> (f64, u64, f32) {
    let mut sums = [0.0f64; LANES];
    // Counts and maxima in half as many lanes (exact in any lanes), each taking two values
    // an iteration: sixteen of each beside the sixteen sums spilled a sum to the stack under
    // AVX2, a chain through memory in every iteration.
    const HALF: usize = LANES / 2;
    let mut counts = [0u32; HALF];
    let mut maxima = [f32::NEG_INFINITY; HALF];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for h in 0..2 {
            for k in 0..HALF {
                let v = chunk[h * HALF + k];
                let keep = v >= threshold;
                sums[h * HALF + k] += if keep { v as f64 } else { 0.0 };
                counts[k] += keep as u32;
                maxima[k] = if v > maxima[k] { v } else { maxima[k] };
            }
        }
    }
    for (k, &v) in chunks.remainder().iter().enumerate() {
        let keep = v >= threshold;
        sums[k] += if keep { v as f64 } else { 0.0 };
        counts[k % HALF] += keep as u32;
        let m = &mut maxima[k % HALF];
        *m = if v > *m { v } else { *m };
    }
    let sum = sums.iter().sum();
    let count = counts.iter().map(|&c| c as u64).sum();
    let max = maxima.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (sum, count, max)
}

dispatched! {
    /// Photons in `values`: each contributes `trunc(max(v × inverse + offset, 0))`, at most
    /// 2^20, which is `round_half_up((v − pedestal) / adu)` for `inverse = 1 / adu` and
    /// `offset = 0.5 − pedestal / adu` (see [`crate::photons::count_photons`]).
    pub fn photons[T: crate::Pixel](values: &[T], inverse: f32, offset: f32) -> u64 => photons_kernel;
}

/// Most photons one pixel counts: a bound that lets 2^11 of them add in u32 lanes.
pub const MAX_PHOTONS_PER_PIXEL: u32 = 1 << 20;

#[inline(always)]
fn photons_kernel<T: crate::Pixel>(values: &[T], inverse: f32, offset: f32) -> u64 {
    // Truncating x + 0.5 rounds half up for x ≥ 0; negative signals are below one photon.
    // In f32 the loop vectorises (5× faster than f64 and `round`); 16-bit pixels are exact
    // in f32.
    values
        .chunks(1 << 11)
        .map(|chunk| {
            chunk
                .iter()
                .map(|v| {
                    // Clamped first, the truncation is in range, so it needs none of the
                    // saturating `as` cast's checks, which kept this loop from vectorising
                    // (1.25 against 14 GB/s on AVX-512). `max` maps NaN to 0.
                    let x = (v.to_f32() * inverse + offset)
                        .max(0.0)
                        .min(MAX_PHOTONS_PER_PIXEL as f32);
                    // SAFETY: x is finite and within 0..=2^20. Signed: x86 converts f32
                    // to i32 in one instruction, to u32 in six.
                    unsafe { x.to_int_unchecked::<i32>() as u32 }
                })
                .sum::<u32>() as u64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_sums_like_the_scalar_reference() {
        let pixels: Vec<u16> = (0..100_003u32)
            .map(|k| (k.wrapping_mul(2_654_435_761) >> 16) as u16)
            .collect();
        let values: Vec<f32> = pixels
            .iter()
            .map(|&v| (v as f32 - 30_000.0) / 7.0)
            .collect();
        let exact: u64 = pixels.iter().map(|&v| v as u64).sum();
        let naive: f64 = values
            .iter()
            .filter(|v| **v >= 10.0)
            .map(|&v| v as f64)
            .sum();
        let base = sum_above_f32(Isa::baseline(), &values, 10.0);
        for isa in Isa::available() {
            assert_eq!(sum_u16(isa, &pixels), exact, "{}", isa.name());
            let above: Vec<u16> = pixels.iter().copied().filter(|&v| v >= 40_000).collect();
            assert_eq!(
                sum_above_u16(isa, &pixels, 40_000),
                (
                    above.iter().map(|&v| v as u64).sum(),
                    above.len() as u64,
                    *pixels.iter().max().unwrap()
                ),
                "{}",
                isa.name()
            );
            let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
            let words = bytes.chunks(8).fold(0u64, |a, w| {
                let mut word = [0u8; 8];
                word[..w.len()].copy_from_slice(w);
                a.wrapping_add(u64::from_le_bytes(word))
            });
            assert_eq!(sum_words(isa, &bytes), words, "{}", isa.name());
            // The same lanes, so the same bits as the baseline, and within f64 rounding of a
            // sequential sum.
            let all = sum_f32(isa, &values);
            assert_eq!(all.to_bits(), sum_f32(Isa::baseline(), &values).to_bits());
            let sequential: f64 = values.iter().map(|&v| v as f64).sum();
            assert!((all - sequential).abs() <= sequential.abs() * 1e-12);
            let got = sum_above_f32(isa, &values, 10.0);
            assert_eq!(got.0.to_bits(), base.0.to_bits(), "{}", isa.name());
            assert_eq!((got.1, got.2), (base.1, base.2), "{}", isa.name());
            assert!((got.0 - naive).abs() <= naive.abs() * 1e-12);
            let expected_photons: u64 = values
                .iter()
                .map(|&v| {
                    ((v * 0.1 + 0.5).max(0.0) as i32 as u32).min(MAX_PHOTONS_PER_PIXEL) as u64
                })
                .sum();
            assert_eq!(photons(isa, &values, 0.1, 0.5), expected_photons);
            assert_eq!(
                photons(isa, &pixels, 0.1, 0.5),
                photons(Isa::baseline(), &pixels, 0.1, 0.5)
            );
        }
        eprintln!(
            "{} pixels compared on {:?}",
            pixels.len(),
            Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
        );
    }
}
