//! The pixel types detectors produce.

/// A pixel value that reductions can accumulate: detectors give `u16` (AGIPD, JUNGFRAU raw,
/// ePix), `f32` (calibrated), and a few others.
///
/// # Examples
///
/// ```
/// use shotflow_operators::Pixel;
/// assert_eq!(7u16.to_f64(), 7.0);
/// assert_eq!(true.to_f64(), 1.0);
/// ```
pub trait Pixel: Copy + Send + Sync + 'static {
    /// The value as `f64`.
    fn to_f64(self) -> f64;
    /// The value as `f32` (exact for 8- and 16-bit detectors), for vectorised inner loops.
    fn to_f32(self) -> f32;
    /// The slice as raw 16-bit detector values, when that is what it is (lookup-table paths).
    fn as_u16(pixels: &[Self]) -> Option<&[u16]> {
        let _ = pixels;
        None
    }
    /// The slice as calibrated `f32` values, when that is what it is (vectorised paths).
    fn as_f32(pixels: &[Self]) -> Option<&[f32]> {
        let _ = pixels;
        None
    }
}

macro_rules! pixel {
    ($($t:ty),*) => {$(
        impl Pixel for $t {
            #[inline(always)]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)]
            fn to_f32(self) -> f32 { self as f32 }
        }
    )*};
}
pixel!(u8, u32, u64, i8, i16, i32, i64, f64);

impl Pixel for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    fn as_f32(pixels: &[f32]) -> Option<&[f32]> {
        Some(pixels)
    }
}

impl Pixel for u16 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn as_u16(pixels: &[u16]) -> Option<&[u16]> {
        Some(pixels)
    }
}

impl Pixel for bool {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self.to_f64() as f32
    }
}
