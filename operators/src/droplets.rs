//! Droplet photon finding: connected groups of pixels above a threshold, each reported with
//! its total ADU, pixel count and intensity-weighted position, as in the droplet algorithms
//! of psana smalldata_tools and XPCS analyses at low photon occupancy.

use serde::{Deserialize, Serialize};

use crate::Pixel;

/// One droplet.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Droplet {
    /// Sum of the droplet's pixel values (pedestal already subtracted by the caller), ADU.
    pub adu: f64,
    /// Pixels in the droplet.
    pub pixels: u32,
    /// Intensity-weighted row.
    pub row: f64,
    /// Intensity-weighted column.
    pub col: f64,
}

impl Droplet {
    /// Photons in the droplet, `round(adu / adu_per_photon)`.
    pub fn photons(&self, adu_per_photon: f64) -> u64 {
        (self.adu / adu_per_photon).round().max(0.0) as u64
    }
}

/// Which neighbours join pixels into one droplet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Connectivity {
    /// Edge neighbours (up, down, left, right): scipy.ndimage.label's default.
    Four,
    /// Edge and corner neighbours.
    Eight,
}

/// Finds droplets: pixels with value `> threshold` joined by `connectivity`. Droplets are
/// returned in the order of their first pixel in row-major order (scipy's label order).
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// use shotflow_operators::droplets::{droplets, Connectivity};
///
/// let frame = array![
///     [0.0f32, 50.0, 10.0, 0.0],
///     [0.0, 0.0, 0.0, 0.0],
///     [0.0, 0.0, 0.0, 70.0],
/// ];
/// let found = droplets(frame.view(), 5.0, Connectivity::Four);
/// assert_eq!(found.len(), 2);
/// assert_eq!((found[0].adu, found[0].pixels), (60.0, 2));
/// assert_eq!(found[1].photons(60.0), 1);
/// ```
pub fn droplets<T: Pixel>(
    frame: ndarray::ArrayView2<'_, T>,
    threshold: f64,
    connectivity: Connectivity,
) -> Vec<Droplet> {
    let (rows, cols) = frame.dim();
    // Union-find over pixel indices; only pixels above threshold take part.
    let mut parent: Vec<u32> = vec![u32::MAX; rows * cols];
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let up = parent[parent[x as usize] as usize];
            parent[x as usize] = up;
            x = up;
        }
        x
    }
    let union = |parent: &mut [u32], a: u32, b: u32| {
        let (ra, rb) = (find(parent, a), find(parent, b));
        if ra != rb {
            // The earlier pixel is the root, so roots are first pixels in row-major order.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            parent[hi as usize] = lo;
        }
    };
    let above = |i: usize, j: usize| frame[[i, j]].to_f64() > threshold;
    for i in 0..rows {
        for j in 0..cols {
            if !above(i, j) {
                continue;
            }
            let k = (i * cols + j) as u32;
            parent[k as usize] = k;
            if j > 0 && above(i, j - 1) {
                union(&mut parent, k, k - 1);
            }
            if i > 0 {
                if above(i - 1, j) {
                    union(&mut parent, k, k - cols as u32);
                }
                if connectivity == Connectivity::Eight {
                    if j > 0 && above(i - 1, j - 1) {
                        union(&mut parent, k, k - cols as u32 - 1);
                    }
                    if j + 1 < cols && above(i - 1, j + 1) {
                        union(&mut parent, k, k - cols as u32 + 1);
                    }
                }
            }
        }
    }
    let mut slot: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut out: Vec<(Droplet, f64, f64)> = Vec::new();
    for i in 0..rows {
        for j in 0..cols {
            let k = (i * cols + j) as u32;
            if parent[k as usize] == u32::MAX {
                continue;
            }
            let root = find(&mut parent, k);
            let at = *slot.entry(root).or_insert_with(|| {
                out.push((
                    Droplet {
                        adu: 0.0,
                        pixels: 0,
                        row: 0.0,
                        col: 0.0,
                    },
                    0.0,
                    0.0,
                ));
                out.len() - 1
            });
            let v = frame[[i, j]].to_f64();
            let (d, wr, wc) = &mut out[at];
            d.adu += v;
            d.pixels += 1;
            *wr += v * i as f64;
            *wc += v * j as f64;
        }
    }
    out.into_iter()
        .map(|(mut d, wr, wc)| {
            d.row = wr / d.adu;
            d.col = wc / d.adu;
            d
        })
        .collect()
}
