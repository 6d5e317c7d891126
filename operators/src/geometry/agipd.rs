//! AGIPD 1M's layout from four quadrant positions, as EuXFEL's extra_geom builds it
//! (`AGIPD_1MGeometry.from_quad_positions`), written as a CrystFEL file: the starting point of
//! every AGIPD geometry before refinement, and the demo's detector.

use std::fmt::Write as _;

use super::{crystfel, Detector, GeometryError};

/// AGIPD 1M: 16 modules of 8 tiles (64 × 128 pixels of 200 µm), four modules per quadrant,
/// 2 pixels between tiles and 29 between modules. `modules` below 16 keeps the first ones (4:
/// one quadrant). A module shape other than 512 × 128 scales the layout to it: tiles, gaps and
/// quadrant positions shrink or grow with the shape, the pixel size stays.
///
/// ```
/// use shotflow_operators::geometry::AgipdLayout;
///
/// let detector = AgipdLayout::default().detector().unwrap();
/// assert_eq!(detector.shape(), (16, 512, 128));
/// assert_eq!(detector.panels.len(), 128);
/// let quadrant = AgipdLayout { modules: 4, module_shape: (64, 16), ..AgipdLayout::default() };
/// assert_eq!(quadrant.detector().unwrap().shape(), (4, 64, 16));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct AgipdLayout {
    /// Each quadrant's first tile corner `(x, y)`, in pixels of a 512 × 128 module.
    pub quad_positions: [(f64, f64); 4],
    /// Modules, 1 to 16.
    pub modules: usize,
    /// Rows (slow scan) and columns (fast scan) of one module's data.
    pub module_shape: (usize, usize),
    /// Sample to detector, m.
    pub clen: f64,
    /// Photon energy, eV.
    pub photon_energy_ev: f64,
}

impl Default for AgipdLayout {
    /// The quadrant positions of extra_geom's documentation, 12 cm, 9.3 keV.
    fn default() -> Self {
        AgipdLayout {
            quad_positions: [
                (-525.0, 625.0),
                (-550.0, -10.0),
                (520.0, -160.0),
                (542.5, 475.0),
            ],
            modules: 16,
            module_shape: (512, 128),
            clen: 0.12,
            photon_energy_ev: 9300.0,
        }
    }
}

/// AGIPD's pixels per metre.
const RES: f64 = 5000.0;

impl AgipdLayout {
    /// The layout as the text of a CrystFEL file (panels `p<module>a<tile>`); an error when
    /// `modules` is not 1 to 16 or a module has no pixels.
    pub fn crystfel(&self) -> Result<String, GeometryError> {
        let (rows, columns) = self.module_shape;
        if !(1..=16).contains(&self.modules) || rows == 0 || columns == 0 {
            return Err(GeometryError::File {
                file: "AGIPD 1M layout".into(),
                message: format!(
                    "{} modules of {rows}x{columns} pixels: AGIPD 1M has 1 to 16 modules",
                    self.modules
                ),
            });
        }
        // Tiles along the slow scan, as AGIPD's 8 ASICs of 64 rows.
        let tiles = if rows.is_multiple_of(8) { 8 } else { 1 };
        let tile_rows = rows / tiles;
        let (sx, sy) = (rows as f64 / 512.0, columns as f64 / 128.0);
        let (asic_gap, panel_gap) = (2.0 * sx, 29.0 * sy);
        let mut text = format!(
            "; AGIPD 1M layout ({} modules of {rows}x{columns} pixels), as extra_geom's \
             from_quad_positions builds it\n\
             dim0 = %\nres = {RES}\nclen = {}\nphoton_energy = {}\n\n",
            self.modules, self.clen, self.photon_energy_ev
        );
        for m in 0..self.modules {
            let (quad, in_quad) = (m / 4, m % 4);
            let (qx, qy) = self.quad_positions[quad];
            // Quadrants 1-2 run along +x, 3-4 along -x; their fast scan the other way in y.
            let (x_orient, y_orient) = if quad < 2 { (1.0, -1.0) } else { (-1.0, 1.0) };
            let corner_y = qy * sy - in_quad as f64 * (columns as f64 + panel_gap);
            for a in 0..tiles {
                let corner_x = qx * sx + x_orient * (tile_rows as f64 + asic_gap) * a as f64;
                let name = format!("p{m}a{a}");
                let _ = write!(
                    text,
                    "{name}/dim1 = {m}\n{name}/dim2 = ss\n{name}/dim3 = fs\n\
                     {name}/min_fs = 0\n{name}/max_fs = {}\n\
                     {name}/min_ss = {}\n{name}/max_ss = {}\n\
                     {name}/fs = {:+.1}y\n{name}/ss = {:+.1}x\n\
                     {name}/corner_x = {corner_x:?}\n{name}/corner_y = {corner_y:?}\n\
                     {name}/coffset = 0.0\n\n",
                    columns - 1,
                    a * tile_rows,
                    (a + 1) * tile_rows - 1,
                    y_orient,
                    x_orient,
                );
            }
        }
        Ok(text)
    }

    /// The detector of [`AgipdLayout::crystfel`], read back as any CrystFEL file is.
    pub fn detector(&self) -> Result<Detector, GeometryError> {
        crystfel::parse(&self.crystfel()?, "agipd_1m.geom")
    }
}
