//! Hit finding with a peakfinder8-style peak finder (Cheetah / OnDA / psocake): a pixel is a
//! peak candidate when it stands `min_snr` standard deviations above the background of its
//! resolution ring and above `adc_threshold`; touching candidates form one peak; a peak is kept
//! if its pixel count is within limits and its background-subtracted intensity over the
//! local background noise is at least `min_snr`. A frame is a hit with at least `min_peaks`
//! peaks.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::geometry::{AssembleError, Assembly, Detector, Vec3};
use crate::Pixel;

/// Peak-finder parameters (peakfinder8's names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakFinder {
    /// Pixels at or below this ADU are never peak pixels.
    pub adc_threshold: f64,
    /// Minimum signal-to-noise, for pixels against their ring and for whole peaks.
    pub min_snr: f64,
    /// Smallest peak, pixels.
    pub min_pix_count: usize,
    /// Largest peak, pixels.
    pub max_pix_count: usize,
    /// Half-width of the square around a peak whose non-peak pixels give its local background.
    pub local_bg_radius: usize,
    /// Smallest radius (pixels from the beam centre) searched.
    pub min_res: f64,
    /// Largest radius searched.
    pub max_res: f64,
    /// Beam centre (row, column), pixels.
    pub center: (f64, f64),
    /// Peaks needed for a hit.
    pub min_peaks: usize,
}

/// One peak.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// Intensity-weighted row (background subtracted).
    pub row: f64,
    /// Intensity-weighted column.
    pub col: f64,
    /// Background-subtracted intensity, ADU.
    pub intensity: f64,
    /// Pixels.
    pub pixels: usize,
    /// Maximum pixel value above background.
    pub max: f64,
    /// Intensity over the local background noise.
    pub snr: f64,
}

/// Peaks of one frame and the hit decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peaks {
    /// The peaks, in row-major order of their first pixel.
    pub peaks: Vec<Peak>,
    /// At least `min_peaks` peaks.
    pub hit: bool,
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

impl PeakFinder {
    /// Finds the peaks of `frame`; `mask[i, j] == true` excludes a pixel.
    ///
    /// # Examples
    ///
    /// ```
    /// use ndarray::Array2;
    /// use shotflow_operators::peaks::PeakFinder;
    ///
    /// let mut frame = Array2::from_shape_fn((64, 64), |(i, j)| 10.0 + ((i * 7 + j * 3) % 5) as f32);
    /// frame[[20, 30]] += 300.0;
    /// frame[[20, 31]] += 150.0;
    /// let finder = PeakFinder { adc_threshold: 50.0, min_snr: 6.0, min_pix_count: 1, max_pix_count: 20,
    ///     local_bg_radius: 3, min_res: 0.0, max_res: 100.0, center: (32.0, 32.0), min_peaks: 1 };
    /// let found = finder.find(frame.view(), None);
    /// assert!(found.hit);
    /// assert_eq!(found.peaks.len(), 1);
    /// assert_eq!(found.peaks[0].pixels, 2);
    /// assert!((found.peaks[0].col - 30.33).abs() < 0.01);
    /// ```
    pub fn find<T: Pixel>(
        &self,
        frame: ArrayView2<'_, T>,
        mask: Option<ArrayView2<'_, bool>>,
    ) -> Peaks {
        let (rows, cols) = frame.dim();
        let value = |i: usize, j: usize| frame[[i, j]].to_f64();
        let masked = |i: usize, j: usize| mask.as_ref().is_some_and(|m| m[[i, j]]);
        let radius = |i: usize, j: usize| {
            ((i as f64 - self.center.0).powi(2) + (j as f64 - self.center.1).powi(2)).sqrt()
        };
        self.search((rows, cols), value, masked, radius, |_, _| true)
    }

    /// Finds the peaks of all modules of an event (`pixels` in data order) with the radius
    /// of each pixel from the detector's geometry, as Cheetah and OM take it from their pixel
    /// maps: rings follow the real geometry, peaks never span two panels, and each peak is
    /// also placed in the lab and in the assembled image. `center` is not used; `min_res` and
    /// `max_res` are radii in pixels of the panel's size. `mask` (data order, `true` =
    /// excluded) adds to the geometry's own.
    ///
    /// ```
    /// use shotflow_operators::geometry::{Detector, Panel};
    /// use shotflow_operators::peaks::{PeakFinder, RadiusMap};
    ///
    /// // Two 32×32 modules of 100 µm pixels left and right of the beam.
    /// let module = |m: usize, x: f64| Panel { name: format!("m{m}"), module: m, min_ss: 0, min_fs: 0,
    ///     ss_len: 32, fs_len: 32, corner: [x, -1.6e-3, 0.1], fs: [1e-4, 0.0, 0.0], ss: [0.0, 1e-4, 0.0],
    ///     bad: false };
    /// let detector = Detector::new(vec![module(0, -3.3e-3), module(1, 1e-4)]).unwrap();
    /// let map = RadiusMap::new(&detector).unwrap();
    /// let mut pixels: Vec<f32> = (0..2048).map(|k| 10.0 + (k % 5) as f32).collect();
    /// pixels[1024 + 20 * 32 + 5] += 400.0; // module 1, row 20, column 5
    /// let finder = PeakFinder { adc_threshold: 50.0, min_snr: 6.0, min_pix_count: 1, max_pix_count: 20,
    ///     local_bg_radius: 3, min_res: 0.0, max_res: 100.0, center: (0.0, 0.0), min_peaks: 1 };
    /// let found = finder.find_located(&map, &pixels, None);
    /// assert_eq!(found.len(), 1);
    /// let lab = found[0].lab;
    /// assert!((lab[0] - 6.5e-4).abs() < 1e-12 && (lab[1] - 0.45e-3).abs() < 1e-12);
    /// assert_eq!(found[0].peak.row, 52.0); // data row: module 1 starts at row 32
    /// // In the assembled image (origin at the left module's corner): row 20, column 39.
    /// assert!((found[0].image.0 - 20.0).abs() < 1e-9 && (found[0].image.1 - 39.0).abs() < 1e-9);
    /// ```
    pub fn find_located<T: Pixel>(
        &self,
        map: &RadiusMap,
        pixels: &[T],
        mask: Option<&[bool]>,
    ) -> Vec<LocatedPeak> {
        let cols = map.columns;
        assert_eq!(
            pixels.len(),
            map.radius.len(),
            "pixel count differs from the detector's"
        );
        let value = |i: usize, j: usize| pixels[i * cols + j].to_f64();
        let masked = |i: usize, j: usize| {
            let k = i * cols + j;
            map.excluded[k] || mask.is_some_and(|m| m[k])
        };
        let radius = |i: usize, j: usize| map.radius[i * cols + j];
        let same = |a: (usize, usize), b: (usize, usize)| {
            map.panel[a.0 * cols + a.1] == map.panel[b.0 * cols + b.1]
        };
        let found = self.search((map.radius.len() / cols, cols), value, masked, radius, same);
        found
            .peaks
            .into_iter()
            .map(|peak| {
                let k = (peak.row.round() as usize) * cols + peak.col.round() as usize;
                let panel = &map.detector.panels[map.panel[k] as usize];
                let rows = map.detector.shape().1;
                // Fractional data coordinates within the panel, pixel centres at +½.
                let ss = peak.row - (panel.module * rows + panel.min_ss) as f64 + 0.5;
                let fs = peak.col - panel.min_fs as f64 + 0.5;
                let lab: Vec3 =
                    std::array::from_fn(|c| panel.corner[c] + fs * panel.fs[c] + ss * panel.ss[c]);
                let size = panel.pixel_size();
                let (cy, cx) = map.centre;
                LocatedPeak {
                    peak,
                    lab,
                    image: (
                        lab[1] / size + cy as f64 - 0.5,
                        lab[0] / size + cx as f64 - 0.5,
                    ),
                }
            })
            .collect()
    }

    /// The peak search on a `shape` image: `radius` gives each pixel's ring, and two
    /// neighbouring candidates join one peak only when `same` says they are on one panel.
    fn search(
        &self,
        shape: (usize, usize),
        value: impl Fn(usize, usize) -> f64,
        masked: impl Fn(usize, usize) -> bool,
        radius: impl Fn(usize, usize) -> f64,
        same: impl Fn((usize, usize), (usize, usize)) -> bool,
    ) -> Peaks {
        let (rows, cols) = shape;
        // Ring statistics: iteratively drop pixels above mean + snr·sd (the peaks themselves).
        let mut rings = 1;
        for i in 0..rows {
            for j in 0..cols {
                let r = radius(i, j);
                if r.is_finite() {
                    rings = rings.max(r as usize + 1);
                }
            }
        }
        let mut members: Vec<Vec<f64>> = vec![Vec::new(); rings];
        for i in 0..rows {
            for j in 0..cols {
                if !masked(i, j) && radius(i, j).is_finite() {
                    members[radius(i, j) as usize].push(value(i, j));
                }
            }
        }
        let thresholds: Vec<f64> = members
            .iter_mut()
            .map(|ring| {
                let mut cut = f64::INFINITY;
                for _ in 0..5 {
                    ring.retain(|v| *v < cut);
                    let (mean, sd) = mean_sd(ring);
                    cut = mean + self.min_snr * sd;
                }
                cut.max(self.adc_threshold)
            })
            .collect();
        let candidate = |i: usize, j: usize| {
            let r = radius(i, j);
            !masked(i, j)
                && r.is_finite()
                && r >= self.min_res
                && r <= self.max_res
                && value(i, j) > thresholds[r as usize]
        };
        // 8-connected flood fill of candidates.
        let mut seen = vec![false; rows * cols];
        let mut peaks = Vec::new();
        let mut stack = Vec::new();
        for i in 0..rows {
            for j in 0..cols {
                if seen[i * cols + j] || !candidate(i, j) {
                    continue;
                }
                let mut pixels = Vec::new();
                seen[i * cols + j] = true;
                stack.push((i, j));
                while let Some((a, b)) = stack.pop() {
                    pixels.push((a, b));
                    for da in -1i64..=1 {
                        for db in -1i64..=1 {
                            let (x, y) = (a as i64 + da, b as i64 + db);
                            if x < 0 || y < 0 || x >= rows as i64 || y >= cols as i64 {
                                continue;
                            }
                            let (x, y) = (x as usize, y as usize);
                            if !seen[x * cols + y] && same((a, b), (x, y)) && candidate(x, y) {
                                seen[x * cols + y] = true;
                                stack.push((x, y));
                            }
                        }
                    }
                }
                if pixels.len() < self.min_pix_count || pixels.len() > self.max_pix_count {
                    continue;
                }
                // Local background: non-candidate, unmasked pixels in the square around the peak.
                let (r0, r1) = pixels
                    .iter()
                    .fold((usize::MAX, 0), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
                let (c0, c1) = pixels
                    .iter()
                    .fold((usize::MAX, 0), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
                let rr = self.local_bg_radius;
                let mut background = Vec::new();
                for x in r0.saturating_sub(rr)..(r1 + rr + 1).min(rows) {
                    for y in c0.saturating_sub(rr)..(c1 + rr + 1).min(cols) {
                        if !masked(x, y) && !candidate(x, y) {
                            background.push(value(x, y));
                        }
                    }
                }
                let (bg, noise) = mean_sd(&background);
                let mut total = 0.0;
                let (mut wr, mut wc, mut max) = (0.0, 0.0, f64::NEG_INFINITY);
                for &(x, y) in &pixels {
                    let v = value(x, y) - bg;
                    total += v;
                    wr += v * x as f64;
                    wc += v * y as f64;
                    max = max.max(v);
                }
                let snr = if noise > 0.0 {
                    total / (noise * (pixels.len() as f64).sqrt())
                } else {
                    f64::INFINITY
                };
                if snr < self.min_snr {
                    continue;
                }
                peaks.push(Peak {
                    row: wr / total,
                    col: wc / total,
                    intensity: total,
                    pixels: pixels.len(),
                    max,
                    snr,
                });
            }
        }
        Peaks {
            hit: peaks.len() >= self.min_peaks,
            peaks,
        }
    }
}

/// A peak of a multi-module event, where it is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocatedPeak {
    /// The peak, its row and column in the data array seen as `(modules × rows, columns)`.
    pub peak: Peak,
    /// Its position in the lab, metres.
    pub lab: Vec3,
    /// Its position (row, column) in the image [`Assembly`] makes.
    pub image: (f64, f64),
}

/// What the peak finder needs of a detector's geometry: each pixel's radius from the beam
/// (in pixels of its panel's size), its panel, the excluded pixels, and the assembled image's
/// centre.
#[derive(Clone, Debug)]
pub struct RadiusMap {
    detector: Detector,
    columns: usize,
    radius: Vec<f64>,
    panel: Vec<u32>,
    excluded: Vec<bool>,
    centre: (i64, i64),
}

impl RadiusMap {
    /// The map of `detector` (fails when its panels cannot be assembled on a pixel grid).
    pub fn new(detector: &Detector) -> Result<RadiusMap, AssembleError> {
        let centre = Assembly::new(detector)?.centre();
        let (_, rows, columns) = detector.shape();
        let mut radius = vec![f64::NAN; detector.pixels()];
        let mut panel = vec![u32::MAX; detector.pixels()];
        for (p, one) in detector.panels.iter().enumerate() {
            let size = one.pixel_size();
            for ss in 0..one.ss_len {
                for fs in 0..one.fs_len {
                    let k = (one.module * rows + one.min_ss + ss) * columns + one.min_fs + fs;
                    let c = one.pixel_centre(ss, fs);
                    radius[k] = c[0].hypot(c[1]) / size;
                    panel[k] = p as u32;
                }
            }
        }
        Ok(RadiusMap {
            excluded: detector.mask(),
            detector: detector.clone(),
            columns,
            radius,
            panel,
            centre,
        })
    }
}

#[cfg(test)]
mod geometry_tests {
    use super::*;
    use crate::geometry::Panel;

    /// Two modules stacked in the data array but far apart in the lab: a bright pair on the
    /// last row of one and the first row of the other are two peaks, each where the
    /// assembled image shows it.
    #[test]
    fn peaks_never_span_two_panels_and_land_where_the_image_shows_them() {
        let module = |m: usize, y: f64| Panel {
            name: format!("m{m}"),
            module: m,
            min_ss: 0,
            min_fs: 0,
            ss_len: 16,
            fs_len: 128,
            corner: [-6.4e-3, y, 0.1],
            fs: [1e-4, 0.0, 0.0],
            ss: [0.0, 1e-4, 0.0],
            bad: false,
        };
        let detector = Detector::new(vec![module(0, 1e-3), module(1, -3e-3)]).unwrap();
        let map = RadiusMap::new(&detector).unwrap();
        let mut pixels: Vec<f64> = (0..4096).map(|k| 10.0 + (k % 3) as f64).collect();
        pixels[15 * 128 + 70] += 500.0; // module 0, last row
        pixels[16 * 128 + 70] += 500.0; // module 1, first row: adjacent in the data only
        let finder = PeakFinder {
            adc_threshold: 50.0,
            min_snr: 5.0,
            min_pix_count: 1,
            max_pix_count: 10,
            local_bg_radius: 2,
            min_res: 0.0,
            max_res: 1e3,
            center: (0.0, 0.0),
            min_peaks: 2,
        };
        let found = finder.find_located(&map, &pixels, None);
        assert_eq!(found.len(), 2, "{found:?}");
        let image = Assembly::new(&detector)
            .unwrap()
            .assemble(&pixels, f64::NAN);
        for peak in &found {
            let (r, c) = (peak.image.0.round() as usize, peak.image.1.round() as usize);
            assert!(
                image[[r, c]] > 500.0,
                "the image shows the peak at {:?}",
                peak.image
            );
            assert!((peak.lab[2] - 0.1).abs() < 1e-15);
        }
        // Ring statistics from the geometry: a module far from the beam has rings of its own.
        assert!(found.iter().all(|p| p.peak.pixels == 1));
    }
}
