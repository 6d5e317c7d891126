//! The detector model: panels placed in the lab frame, each pixel a 3-D position.

use serde::{Deserialize, Serialize};

/// A point or vector in the lab frame, metres: `x` horizontal, `y` vertical, `z` along the
/// beam from the sample (pyFAI's `t2`, `t1`, `t3`; CrystFEL's `x`, `y` and `clen + coffset`).
pub type Vec3 = [f64; 3];

/// One rectangular panel: a block of the data array and where its pixels are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Panel {
    /// Name (`p0a0` in a CrystFEL file).
    pub name: String,
    /// Module: the index along the data array's first axis.
    pub module: usize,
    /// First slow-scan (row) and fast-scan (column) index of the panel in its module's data.
    pub min_ss: usize,
    /// First fast-scan index.
    pub min_fs: usize,
    /// Rows (slow scan).
    pub ss_len: usize,
    /// Columns (fast scan).
    pub fs_len: usize,
    /// The outer corner of the panel's first pixel (the corner at index `(min_ss, min_fs)`).
    pub corner: Vec3,
    /// One pixel step along the fast-scan direction.
    pub fs: Vec3,
    /// One pixel step along the slow-scan direction.
    pub ss: Vec3,
    /// Excluded from every reduction (CrystFEL `no_index`).
    pub bad: bool,
}

impl Panel {
    /// The centre of the panel's pixel at `(ss, fs)` (relative to the panel).
    pub fn pixel_centre(&self, ss: usize, fs: usize) -> Vec3 {
        let (a, b) = (fs as f64 + 0.5, ss as f64 + 0.5);
        std::array::from_fn(|k| self.corner[k] + a * self.fs[k] + b * self.ss[k])
    }

    /// The four corners of that pixel, in the order pyFAI's `set_pixel_corners` reads them
    /// (going round the pixel from its first corner).
    pub fn pixel_corners(&self, ss: usize, fs: usize) -> [Vec3; 4] {
        let at = |a: f64, b: f64| -> Vec3 {
            std::array::from_fn(|k| self.corner[k] + a * self.fs[k] + b * self.ss[k])
        };
        let (a, b) = (fs as f64, ss as f64);
        [
            at(a, b),
            at(a, b + 1.0),
            at(a + 1.0, b + 1.0),
            at(a + 1.0, b),
        ]
    }

    /// The length of one fast-scan step, m: the pixel size CrystFEL's `res` and extra_geom's
    /// snapping count in.
    pub fn pixel_size(&self) -> f64 {
        dot(self.fs, self.fs).sqrt()
    }

    /// The area of one pixel, m² (the pixel's vectors' cross product).
    pub fn pixel_area(&self) -> f64 {
        let c = cross(self.fs, self.ss);
        (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt()
    }

    /// The unit normal of the panel, facing the sample.
    pub fn normal(&self) -> Vec3 {
        let c = cross(self.fs, self.ss);
        let n = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt();
        let sign = if c[2] < 0.0 { -1.0 } else { 1.0 };
        c.map(|v| sign * v / n)
    }
}

pub(crate) fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// A detector of any number of modules and panels, and the data array they fill:
/// `(modules, rows, columns)`.
///
/// # Examples
///
/// ```
/// use shotflow_operators::geometry::{Detector, Panel};
///
/// // One 2×3 panel of 100 µm pixels, 0.1 m from the sample, its first corner on the beam.
/// let panel = Panel {
///     name: "p0".into(), module: 0, min_ss: 0, min_fs: 0, ss_len: 2, fs_len: 3,
///     corner: [0.0, 0.0, 0.1], fs: [1e-4, 0.0, 0.0], ss: [0.0, 1e-4, 0.0], bad: false,
/// };
/// let detector = Detector::new(vec![panel]).unwrap();
/// assert_eq!(detector.shape(), (1, 2, 3));
/// let positions = detector.pixel_positions();
/// let want = [2.5e-4, 1.5e-4, 0.1]; // row 1, column 2
/// assert!(positions[5].iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-15));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    /// The panels.
    pub panels: Vec<Panel>,
    /// The data array's shape: modules, rows, columns.
    shape: (usize, usize, usize),
    /// Photon energy the geometry file gives, eV.
    pub photon_energy_ev: Option<f64>,
    /// Pixels to leave out beyond the bad panels (data order), from the file's bad regions.
    pub bad_pixels: Vec<usize>,
}

/// Why a detector cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectorError {
    /// No panel.
    #[error("a detector needs at least one panel")]
    NoPanels,
    /// Two panels claim one pixel of the data array.
    #[error("panels {first} and {second} both cover module {module}, row {row}, column {column}")]
    Overlap {
        /// One panel.
        first: String,
        /// The other.
        second: String,
        /// Where.
        module: usize,
        /// Row.
        row: usize,
        /// Column.
        column: usize,
    },
    /// A panel's pixel vectors are parallel or zero.
    #[error("panel {0}: its fast- and slow-scan vectors do not span a plane")]
    Degenerate(String),
}

impl Detector {
    /// The detector made of `panels`; its data array is the smallest that holds them all.
    pub fn new(panels: Vec<Panel>) -> Result<Detector, DetectorError> {
        if panels.is_empty() {
            return Err(DetectorError::NoPanels);
        }
        for panel in &panels {
            if panel.pixel_area() == 0.0 || panel.ss_len == 0 || panel.fs_len == 0 {
                return Err(DetectorError::Degenerate(panel.name.clone()));
            }
        }
        let modules = panels.iter().map(|p| p.module + 1).max().unwrap_or(1);
        let rows = panels
            .iter()
            .map(|p| p.min_ss + p.ss_len)
            .max()
            .unwrap_or(0);
        let columns = panels
            .iter()
            .map(|p| p.min_fs + p.fs_len)
            .max()
            .unwrap_or(0);
        let detector = Detector {
            panels,
            shape: (modules, rows, columns),
            photon_energy_ev: None,
            bad_pixels: Vec::new(),
        };
        detector.check_overlaps()?;
        Ok(detector)
    }

    fn check_overlaps(&self) -> Result<(), DetectorError> {
        let mut owner: Vec<u32> = vec![u32::MAX; self.pixels()];
        for (p, panel) in self.panels.iter().enumerate() {
            for (ss, fs, k) in self.panel_pixels(panel) {
                if owner[k] != u32::MAX {
                    return Err(DetectorError::Overlap {
                        first: self.panels[owner[k] as usize].name.clone(),
                        second: panel.name.clone(),
                        module: panel.module,
                        row: panel.min_ss + ss,
                        column: panel.min_fs + fs,
                    });
                }
                owner[k] = p as u32;
            }
        }
        Ok(())
    }

    /// `(row in panel, column in panel, index in the data array)` of each pixel of `panel`.
    fn panel_pixels<'a>(
        &self,
        panel: &'a Panel,
    ) -> impl Iterator<Item = (usize, usize, usize)> + 'a {
        let (_, rows, columns) = self.shape;
        (0..panel.ss_len).flat_map(move |ss| {
            (0..panel.fs_len).map(move |fs| {
                let k = (panel.module * rows + panel.min_ss + ss) * columns + panel.min_fs + fs;
                (ss, fs, k)
            })
        })
    }

    /// The data array's shape: `(modules, rows, columns)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    /// Pixels in the data array.
    pub fn pixels(&self) -> usize {
        self.shape.0 * self.shape.1 * self.shape.2
    }

    /// The centre of every pixel of the data array, in data order; `NaN` where no panel is.
    pub fn pixel_positions(&self) -> Vec<Vec3> {
        let mut out = vec![[f64::NAN; 3]; self.pixels()];
        for panel in &self.panels {
            for (ss, fs, k) in self.panel_pixels(panel) {
                out[k] = panel.pixel_centre(ss, fs);
            }
        }
        out
    }

    /// The four corners of every pixel, in data order (`NaN` where no panel is).
    pub fn pixel_corners(&self) -> Vec<[Vec3; 4]> {
        let mut out = vec![[[f64::NAN; 3]; 4]; self.pixels()];
        for panel in &self.panels {
            for (ss, fs, k) in self.panel_pixels(panel) {
                out[k] = panel.pixel_corners(ss, fs);
            }
        }
        out
    }

    /// Pixels that no reduction should use: outside every panel, on a bad panel, or in a bad
    /// region of the geometry file (data order).
    pub fn mask(&self) -> Vec<bool> {
        let mut mask = vec![true; self.pixels()];
        for panel in &self.panels {
            for (_, _, k) in self.panel_pixels(panel) {
                mask[k] = panel.bad;
            }
        }
        for &k in &self.bad_pixels {
            mask[k] = true;
        }
        mask
    }

    /// Per pixel: solid angle relative to a pixel at normal incidence at its own panel's
    /// distance along the normal (pyFAI's `solidAngleArray`, `absolute=False`, also for panels
    /// at different distances): the cosine of the angle between the ray and the panel's
    /// normal, times the squared ratio of the panel's distance to the pixel's.
    pub fn solid_angles(&self) -> Vec<f64> {
        let mut out = vec![f64::NAN; self.pixels()];
        for panel in &self.panels {
            let normal = panel.normal();
            // The panel plane's distance from the sample along its normal.
            let plane = dot(panel.corner, normal).abs();
            for (ss, fs, k) in self.panel_pixels(panel) {
                let p = panel.pixel_centre(ss, fs);
                let r = dot(p, p).sqrt();
                let cos = dot(p, normal).abs() / r;
                out[k] = cos * (plane / r) * (plane / r);
            }
        }
        out
    }
}

pub(crate) fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
