//! Assembled images: an event's modules laid out as one 2-D picture, as extra_geom's
//! `position_modules` lays them out (each panel snapped to the nearest whole pixel and turned
//! by a multiple of 90°), for plots, the dashboard and users who want the picture.
//!
//! Rows follow the lab's `y` and columns its `x`, both increasing with the index (extra_geom's
//! convention: plot with the origin at the bottom left to see the detector as the beam does).

use ndarray::Array2;

use super::detector::Detector;

/// Why a detector cannot be assembled on a grid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AssembleError {
    /// A panel that is not turned by a multiple of 90° in the detector plane.
    #[error(
        "panel {0} is not aligned with the image axes (its pixel vectors round to {1:?} and {2:?})"
    )]
    NotAligned(String, [i64; 2], [i64; 2]),
}

/// Where one panel's data go in the image.
#[derive(Clone, Debug)]
struct Tile {
    /// First element of the panel in the data array, and the data's row length.
    first: usize,
    columns: usize,
    ss_len: usize,
    fs_len: usize,
    /// The image row and column of the panel's first element, and the image steps taken by one
    /// step along fast and slow scan (`±1` or `±width`).
    at: isize,
    fs_step: isize,
    ss_step: isize,
}

/// A precomputed layout: which image pixel each panel's data go to.
///
/// # Examples
///
/// ```
/// use shotflow_operators::geometry::{Assembly, Detector, Panel};
///
/// // Two 2×3 panels side by side, the second turned by 180°.
/// let panel = |name: &str, module, corner: [f64; 3], sign: f64| Panel {
///     name: name.into(), module, min_ss: 0, min_fs: 0, ss_len: 2, fs_len: 3, corner,
///     fs: [sign * 1e-4, 0.0, 0.0], ss: [0.0, sign * 1e-4, 0.0], bad: false,
/// };
/// let detector = Detector::new(vec![
///     panel("a", 0, [0.0, 0.0, 0.1], 1.0),
///     panel("b", 1, [7e-4, 2e-4, 0.1], -1.0),
/// ]).unwrap();
/// let assembly = Assembly::new(&detector).unwrap();
/// let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
/// let image = assembly.assemble(&data, f32::NAN);
/// assert_eq!(image.dim(), (2, 7));
/// assert_eq!(image.row(0).to_vec()[..3], [0.0, 1.0, 2.0]);
/// assert_eq!(image.row(1).to_vec()[4..], [8.0, 7.0, 6.0]); // panel b's first row, reversed
/// ```
#[derive(Clone, Debug)]
pub struct Assembly {
    shape: (usize, usize),
    centre: (i64, i64),
    tiles: Vec<Tile>,
    pixels: usize,
}

impl Assembly {
    /// The layout of `detector`'s panels in one image.
    pub fn new(detector: &Detector) -> Result<Assembly, AssembleError> {
        let (_, rows, columns) = detector.shape();
        // Each panel in whole pixels of its own size, (y, x), as extra_geom snaps it.
        struct Snapped {
            corner: [i64; 2],
            dims: [i64; 2],
            fs: [i64; 2],
            ss: [i64; 2],
        }
        let mut snapped = Vec::new();
        for panel in &detector.panels {
            let size = panel.pixel_size();
            let grid = |v: [f64; 3]| -> [i64; 2] {
                [
                    (v[1] / size).round_ties_even() as i64,
                    (v[0] / size).round_ties_even() as i64,
                ]
            };
            let (corner, fs, ss) = (grid(panel.corner), grid(panel.fs), grid(panel.ss));
            let unit = |v: [i64; 2]| v[0].abs() + v[1].abs() == 1;
            if !unit(fs) || !unit(ss) || fs[0] != 0 && ss[0] != 0 {
                return Err(AssembleError::NotAligned(panel.name.clone(), fs, ss));
            }
            let (ss_len, fs_len) = (panel.ss_len as i64, panel.fs_len as i64);
            // The image rectangle the panel covers: its corner moves back along a negative
            // vector by the panel's length.
            let shift = |v: [i64; 2], len: i64| [v[0].min(0) * len, v[1].min(0) * len];
            let (a, b) = (shift(fs, fs_len), shift(ss, ss_len));
            let dims = if fs[0] == 0 {
                [ss_len, fs_len]
            } else {
                [fs_len, ss_len]
            };
            snapped.push(Snapped {
                corner: [corner[0] + a[0] + b[0], corner[1] + a[1] + b[1]],
                dims,
                fs,
                ss,
            });
        }
        let min = |k: usize| snapped.iter().map(|s| s.corner[k]).min().unwrap_or(0);
        let origin = [min(0), min(1)];
        let max = |k: usize| {
            snapped
                .iter()
                .map(|s| s.corner[k] - origin[k] + s.dims[k])
                .max()
                .unwrap_or(0)
        };
        let (height, width) = (max(0) as usize, max(1) as usize);
        let tiles = detector
            .panels
            .iter()
            .zip(&snapped)
            .map(|(panel, s)| {
                let step = |v: [i64; 2]| (v[0] * width as i64 + v[1]) as isize;
                // The image pixel of the panel's first element: its rectangle's corner, moved
                // to the far side along each negative vector.
                let far =
                    |v: [i64; 2], k: usize, len: usize| if v[k] < 0 { len as i64 - 1 } else { 0 };
                let first = |k: usize| {
                    s.corner[k] - origin[k]
                        + far(s.fs, k, panel.fs_len)
                        + far(s.ss, k, panel.ss_len)
                };
                let (first_y, first_x) = (first(0), first(1));
                Tile {
                    first: (panel.module * rows + panel.min_ss) * columns + panel.min_fs,
                    columns,
                    ss_len: panel.ss_len,
                    fs_len: panel.fs_len,
                    at: (first_y * width as i64 + first_x) as isize,
                    fs_step: step(s.fs),
                    ss_step: step(s.ss),
                }
            })
            .collect();
        Ok(Assembly {
            shape: (height, width),
            centre: (-origin[0], -origin[1]),
            tiles,
            pixels: detector.pixels(),
        })
    }

    /// The image's shape (rows, columns).
    pub fn shape(&self) -> (usize, usize) {
        self.shape
    }

    /// The image pixel (row, column) of the beam: where the lab's `x = y = 0` falls.
    pub fn centre(&self) -> (i64, i64) {
        self.centre
    }

    /// Copies `data` (data order) into `image` (row-major, [`Assembly::shape`]); pixels that
    /// no panel covers keep what they held.
    ///
    /// # Panics
    ///
    /// If `data` or `image` have the wrong length.
    pub fn assemble_into<T: Copy>(&self, data: &[T], image: &mut [T]) {
        assert_eq!(
            data.len(),
            self.pixels,
            "data length differs from the detector's"
        );
        assert_eq!(image.len(), self.shape.0 * self.shape.1, "image size");
        for tile in &self.tiles {
            if tile.fs_step.abs() == 1 {
                // Fast scan along image rows: one row of data per image row.
                for ss in 0..tile.ss_len {
                    let source = &data[tile.first + ss * tile.columns..][..tile.fs_len];
                    let start = tile.at + ss as isize * tile.ss_step;
                    if tile.fs_step == 1 {
                        let start = start as usize;
                        image[start..start + tile.fs_len].copy_from_slice(source);
                    } else {
                        let end = start as usize + 1;
                        let target = &mut image[end - tile.fs_len..end];
                        for (t, value) in target.iter_mut().rev().zip(source) {
                            *t = *value;
                        }
                    }
                }
            } else if turned::copy(tile, data, image) {
                // Copied by transposing blocks in SIMD registers.
            } else {
                // Fast scan along image columns (a turned panel): write image rows one after
                // another, reading the panel's columns; a panel fits in the L1/L2 cache, so
                // the strided reads cost less than strided writes into the large image.
                let panel =
                    &data[tile.first..tile.first + (tile.ss_len - 1) * tile.columns + tile.fs_len];
                for fs in 0..tile.fs_len {
                    let start = tile.at + fs as isize * tile.fs_step;
                    let column = panel[fs..].iter().step_by(tile.columns);
                    if tile.ss_step == 1 {
                        let start = start as usize;
                        for (t, v) in image[start..start + tile.ss_len].iter_mut().zip(column) {
                            *t = *v;
                        }
                    } else {
                        let end = start as usize + 1;
                        let target = &mut image[end - tile.ss_len..end];
                        for (t, v) in target.iter_mut().rev().zip(column) {
                            *t = *v;
                        }
                    }
                }
            }
        }
    }

    /// The image of `data`, `fill` where no panel is.
    pub fn assemble<T: Copy>(&self, data: &[T], fill: T) -> Array2<T> {
        let mut image = Array2::from_elem(self.shape, fill);
        self.assemble_into(
            data,
            image.as_slice_mut().expect("a fresh array is contiguous"),
        );
        image
    }
}

mod turned;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Panel;

    /// Turned panels in every orientation, of sizes that leave partial blocks, assembled from
    /// 2-, 4- and 8-byte pixels: the SIMD transposes (2 and 4 bytes) put every pixel where the
    /// pixel-by-pixel copy (8 bytes) does.
    #[test]
    fn simd_transposes_equal_the_pixel_by_pixel_copy() {
        let p = 1e-4;
        let orientations = [
            ([0.0, p, 0.0], [p, 0.0, 0.0]),
            ([0.0, -p, 0.0], [p, 0.0, 0.0]),
            ([0.0, p, 0.0], [-p, 0.0, 0.0]),
            ([0.0, -p, 0.0], [-p, 0.0, 0.0]),
            ([p, 0.0, 0.0], [0.0, -p, 0.0]),
        ];
        let panels: Vec<Panel> = orientations
            .iter()
            .enumerate()
            .map(|(m, &(fs, ss))| Panel {
                name: format!("m{m}"),
                module: m,
                min_ss: 0,
                min_fs: 0,
                ss_len: 21,
                fs_len: 35,
                corner: [m as f64 * 80.0 * p, 40.0 * p * (m % 2) as f64, 0.1],
                fs,
                ss,
                bad: false,
            })
            .collect();
        let detector = Detector::new(panels).unwrap();
        let assembly = Assembly::new(&detector).unwrap();
        let n = detector.pixels();
        let wide = assembly.assemble(&(0..n).map(|k| k as f64).collect::<Vec<_>>(), -1.0);
        let short = assembly.assemble(&(0..n).map(|k| k as u16).collect::<Vec<_>>(), u16::MAX);
        let single = assembly.assemble(&(0..n).map(|k| k as f32).collect::<Vec<_>>(), -1.0);
        assert_eq!(
            short,
            wide.mapv(|v| if v < 0.0 { u16::MAX } else { v as u16 })
        );
        assert_eq!(single, wide.mapv(|v| v as f32));
        assert_eq!(
            wide.iter().filter(|v| **v >= 0.0).count(),
            n,
            "every pixel placed"
        );
    }
}
