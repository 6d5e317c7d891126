//! Turned panels (fast scan along image columns, as AGIPD's and LPD's are) copied by
//! transposing 8×8 blocks of 2-byte or 4×4 blocks of 4-byte pixels in SSE2 registers (part of
//! every x86-64 CPU): one load and one store per block row instead of one per pixel.

use super::Tile;

/// Copies `tile` of `data` into `image` when its pixels are 2 or 4 bytes and the CPU is
/// x86-64; `false` (nothing copied) otherwise.
pub(super) fn copy<T: Copy>(tile: &Tile, data: &[T], image: &mut [T]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let block = match std::mem::size_of::<T>() {
            2 => 8,
            4 => 4,
            _ => return false,
        };
        if tile.ss_step.abs() != 1 {
            return false;
        }
        // Every index the tile touches, checked once: the unsafe loops below stay inside.
        let last_read = tile.first + (tile.ss_len - 1) * tile.columns + tile.fs_len;
        let corners = [
            tile.at,
            tile.at + (tile.fs_len as isize - 1) * tile.fs_step,
            tile.at + (tile.ss_len as isize - 1) * tile.ss_step,
            tile.at
                + (tile.fs_len as isize - 1) * tile.fs_step
                + (tile.ss_len as isize - 1) * tile.ss_step,
        ];
        let inside = corners
            .iter()
            .all(|&c| c >= 0 && (c as usize) < image.len());
        if last_read > data.len() || !inside {
            return false;
        }
        let (ss_blocks, fs_blocks) = (tile.ss_len / block, tile.fs_len / block);
        // SAFETY: every block's reads lie in `first..last_read` and its writes between the
        // tile's corners in the image, all checked above; T is Copy, so a bitwise copy of
        // its 2 or 4 bytes is a copy of the value.
        unsafe {
            let (src, dst) = (data.as_ptr() as *const u8, image.as_mut_ptr() as *mut u8);
            match (block, tile.ss_step) {
                (8, 1) => blocks::<8, false>(tile, src, dst),
                (8, _) => blocks::<8, true>(tile, src, dst),
                (_, 1) => blocks::<4, false>(tile, src, dst),
                _ => blocks::<4, true>(tile, src, dst),
            }
        }
        // The edges beyond whole blocks, pixel by pixel.
        let put = |image: &mut [T], ss: usize, fs: usize| {
            let at = tile.at + fs as isize * tile.fs_step + ss as isize * tile.ss_step;
            image[at as usize] = data[tile.first + ss * tile.columns + fs];
        };
        for ss in 0..tile.ss_len {
            let fs_from = if ss < ss_blocks * block {
                fs_blocks * block
            } else {
                0
            };
            for fs in fs_from..tile.fs_len {
                put(image, ss, fs);
            }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (tile, data, image);
        false
    }
}

/// The whole `BLOCK`×`BLOCK` blocks of a turned tile (`BLOCK` 8: 2-byte pixels, 4: 4-byte),
/// its slow scan running backwards along image rows when `REVERSE`.
///
/// # Safety
///
/// The tile's pixels must lie inside `src` and its image pixels inside `dst`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn blocks<const BLOCK: usize, const REVERSE: bool>(
    tile: &Tile,
    src: *const u8,
    dst: *mut u8,
) {
    let bytes = 16 / BLOCK;
    let row_bytes = tile.columns * bytes;
    for fb in 0..tile.fs_len / BLOCK {
        let fs0 = fb * BLOCK;
        // Where each of the block's columns (an image row) starts, at the tile's first
        // slow-scan pixel; the block's slow-scan offset moves them all alike.
        let rows: [isize; BLOCK] =
            std::array::from_fn(|c| tile.at + (fs0 + c) as isize * tile.fs_step);
        for sb in 0..tile.ss_len / BLOCK {
            let ss0 = sb * BLOCK;
            let read = src.add((tile.first + ss0 * tile.columns + fs0) * bytes);
            let shift = if REVERSE {
                -((ss0 + BLOCK - 1) as isize)
            } else {
                ss0 as isize
            };
            if BLOCK == 8 {
                let columns = sse2::transpose8x16(read, row_bytes);
                for c in 0..8 {
                    let v = if REVERSE {
                        sse2::reverse16(columns[c])
                    } else {
                        columns[c]
                    };
                    sse2::store(dst.add((rows[c] + shift) as usize * bytes), v);
                }
            } else {
                let columns = sse2::transpose4x32(read, row_bytes);
                for c in 0..4 {
                    let v = if REVERSE {
                        sse2::reverse32(columns[c])
                    } else {
                        columns[c]
                    };
                    sse2::store(dst.add((rows[c] + shift) as usize * bytes), v);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// The 8 columns of 8 rows of 8 two-byte values at `read`, rows `row_bytes` apart.
    ///
    /// # Safety
    ///
    /// The 8 rows of 16 bytes must be readable.
    #[inline(always)]
    pub unsafe fn transpose8x16(read: *const u8, row_bytes: usize) -> [__m128i; 8] {
        let r: [__m128i; 8] =
            std::array::from_fn(|k| _mm_loadu_si128(read.add(k * row_bytes) as *const __m128i));
        let a = [
            _mm_unpacklo_epi16(r[0], r[1]),
            _mm_unpackhi_epi16(r[0], r[1]),
            _mm_unpacklo_epi16(r[2], r[3]),
            _mm_unpackhi_epi16(r[2], r[3]),
            _mm_unpacklo_epi16(r[4], r[5]),
            _mm_unpackhi_epi16(r[4], r[5]),
            _mm_unpacklo_epi16(r[6], r[7]),
            _mm_unpackhi_epi16(r[6], r[7]),
        ];
        let b = [
            _mm_unpacklo_epi32(a[0], a[2]),
            _mm_unpackhi_epi32(a[0], a[2]),
            _mm_unpacklo_epi32(a[1], a[3]),
            _mm_unpackhi_epi32(a[1], a[3]),
            _mm_unpacklo_epi32(a[4], a[6]),
            _mm_unpackhi_epi32(a[4], a[6]),
            _mm_unpacklo_epi32(a[5], a[7]),
            _mm_unpackhi_epi32(a[5], a[7]),
        ];
        [
            _mm_unpacklo_epi64(b[0], b[4]),
            _mm_unpackhi_epi64(b[0], b[4]),
            _mm_unpacklo_epi64(b[1], b[5]),
            _mm_unpackhi_epi64(b[1], b[5]),
            _mm_unpacklo_epi64(b[2], b[6]),
            _mm_unpackhi_epi64(b[2], b[6]),
            _mm_unpacklo_epi64(b[3], b[7]),
            _mm_unpackhi_epi64(b[3], b[7]),
        ]
    }

    /// The 4 columns of 4 rows of 4 four-byte values at `read`, rows `row_bytes` apart.
    ///
    /// # Safety
    ///
    /// The 4 rows of 16 bytes must be readable.
    #[inline(always)]
    pub unsafe fn transpose4x32(read: *const u8, row_bytes: usize) -> [__m128i; 4] {
        let r: [__m128i; 4] =
            std::array::from_fn(|k| _mm_loadu_si128(read.add(k * row_bytes) as *const __m128i));
        let a = [
            _mm_unpacklo_epi32(r[0], r[1]),
            _mm_unpackhi_epi32(r[0], r[1]),
            _mm_unpacklo_epi32(r[2], r[3]),
            _mm_unpackhi_epi32(r[2], r[3]),
        ];
        [
            _mm_unpacklo_epi64(a[0], a[2]),
            _mm_unpackhi_epi64(a[0], a[2]),
            _mm_unpacklo_epi64(a[1], a[3]),
            _mm_unpackhi_epi64(a[1], a[3]),
        ]
    }

    /// The 8 two-byte lanes in reverse order.
    #[inline(always)]
    pub fn reverse16(v: __m128i) -> __m128i {
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            let v = _mm_shufflehi_epi16(_mm_shufflelo_epi16(v, 0x1B), 0x1B);
            _mm_shuffle_epi32(v, 0x4E)
        }
    }

    /// The 4 four-byte lanes in reverse order.
    #[inline(always)]
    pub fn reverse32(v: __m128i) -> __m128i {
        // SAFETY: SSE2 is part of x86-64.
        unsafe { _mm_shuffle_epi32(v, 0x1B) }
    }

    /// Stores 16 bytes at `at`.
    ///
    /// # Safety
    ///
    /// The 16 bytes must be writable.
    #[inline(always)]
    pub unsafe fn store(at: *mut u8, v: __m128i) {
        _mm_storeu_si128(at as *mut __m128i, v)
    }
}
