//! pyFAI PONI files: one flat panel at a distance, its point of normal incidence and three
//! rotations, as pyFAI's calibration writes them (PONI versions 1 and 2).
//!
//! A pixel `(i, j)` sits at `p₁ = (i + ½)·pixel1 − poni1`, `p₂ = (j + ½)·pixel2 − poni2` in the
//! detector plane, `L` = distance along its normal; pyFAI rotates that point by `rot1` (about
//! the vertical axis), `rot2` (horizontal) and `rot3` (the beam), in that order, and
//! [`rotate`] does the same, so 2θ, χ and the solid angle equal pyFAI's to float rounding.

use super::detector::{Detector, Panel, Vec3};
use super::GeometryError;

/// What a PONI file says.
#[derive(Clone, Debug, PartialEq)]
pub struct Poni {
    /// Sample to the point of normal incidence, m.
    pub distance: f64,
    /// Point of normal incidence along the rows (slow axis) and columns, m from the corner.
    pub poni1: f64,
    /// Along the columns.
    pub poni2: f64,
    /// Rotations, rad.
    pub rot1: f64,
    /// Second rotation.
    pub rot2: f64,
    /// Third rotation.
    pub rot3: f64,
    /// Pixel size along rows and columns, m.
    pub pixel1: f64,
    /// Along columns.
    pub pixel2: f64,
    /// Detector shape (rows, columns), if the file gives it.
    pub shape: Option<(usize, usize)>,
    /// Wavelength, m.
    pub wavelength: Option<f64>,
}

/// pyFAI's rotation of detector-plane coordinates `(p1, p2)` at distance `l` into the lab:
/// returns `(x, y, z)` = pyFAI's `(t2, t1, t3)`.
pub fn rotate(poni: &Poni, p1: f64, p2: f64, l: f64) -> Vec3 {
    let (s1, c1) = poni.rot1.sin_cos();
    let (s2, c2) = poni.rot2.sin_cos();
    let (s3, c3) = poni.rot3.sin_cos();
    let t1 = p1 * c2 * c3 + p2 * (c3 * s1 * s2 - c1 * s3) - l * (c1 * c3 * s2 + s1 * s3);
    let t2 = p1 * c2 * s3 + p2 * (c1 * c3 + s1 * s2 * s3) - l * (-c3 * s1 + c1 * s2 * s3);
    let t3 = p1 * s2 - p2 * c2 * s1 + l * c1 * c2;
    [t2, t1, t3]
}

impl Poni {
    /// The detector this geometry describes, of `shape` (rows, columns) pixels when the file
    /// does not say.
    pub fn detector(&self, shape: Option<(usize, usize)>) -> Result<Detector, GeometryError> {
        let (rows, columns) = self.shape.or(shape).ok_or(GeometryError::Shape)?;
        let corner = rotate(self, -self.poni1, -self.poni2, self.distance);
        let origin = rotate(self, 0.0, 0.0, 0.0);
        let step = |p1: f64, p2: f64| -> Vec3 {
            let v = rotate(self, p1, p2, 0.0);
            std::array::from_fn(|k| v[k] - origin[k])
        };
        let panel = Panel {
            name: "poni".into(),
            module: 0,
            min_ss: 0,
            min_fs: 0,
            ss_len: rows,
            fs_len: columns,
            corner,
            fs: step(0.0, self.pixel2),
            ss: step(self.pixel1, 0.0),
            bad: false,
        };
        let mut detector = Detector::new(vec![panel]).map_err(|e| GeometryError::Detector {
            file: "PONI".into(),
            source: e,
        })?;
        detector.photon_energy_ev = self.wavelength.map(|w| 1.239_841_984_332_002_6e-6 / w);
        Ok(detector)
    }
}

/// Parses the text of a PONI file; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Poni, GeometryError> {
    let at = |line: usize, message: String| GeometryError::Line {
        file: file.to_string(),
        line,
        message,
    };
    let mut values: Vec<(String, String, usize)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let Some((key, value)) = content.split_once(':') else {
            return Err(at(
                n + 1,
                format!("expected `Name: value`, got {content:?}"),
            ));
        };
        values.push((
            key.trim().to_ascii_lowercase(),
            value.trim().to_string(),
            n + 1,
        ));
    }
    let find = |name: &str| values.iter().find(|(k, _, _)| k == name);
    let number = |name: &str| -> Result<Option<f64>, GeometryError> {
        match find(name) {
            None => Ok(None),
            Some((_, v, line)) => v
                .parse::<f64>()
                .map(Some)
                .map_err(|_| at(*line, format!("{name}: {v:?} is not a number"))),
        }
    };
    let required = |name: &str| -> Result<f64, GeometryError> {
        number(name)?.ok_or_else(|| GeometryError::Missing {
            file: file.to_string(),
            what: name.to_string(),
        })
    };
    // Version 2 keeps the pixel size in a JSON object; version 1 in PixelSize1/2.
    let (mut pixel1, mut pixel2, mut shape) = (number("pixelsize1")?, number("pixelsize2")?, None);
    if let Some((_, config, line)) = find("detector_config") {
        let json: serde_json::Value =
            serde_json::from_str(config).map_err(|e| at(*line, format!("Detector_config: {e}")))?;
        pixel1 = pixel1.or(json["pixel1"].as_f64());
        pixel2 = pixel2.or(json["pixel2"].as_f64());
        // pyFAI 2025 added the detector's orientation; 3 is the one it always used.
        if let Some(o) = json.get("orientation") {
            if o.as_u64() != Some(3) {
                return Err(at(
                    *line,
                    format!(
                        "Detector_config: orientation {o} (only 3, pyFAI's default, is supported)"
                    ),
                ));
            }
        }
        if let Some(s) = json["max_shape"].as_array() {
            if let [Some(a), Some(b)] = [s.first(), s.get(1)].map(|v| v.and_then(|v| v.as_u64())) {
                shape = Some((a as usize, b as usize));
            }
        }
    }
    let poni = Poni {
        distance: required("distance")?,
        poni1: required("poni1")?,
        poni2: required("poni2")?,
        rot1: number("rot1")?.unwrap_or(0.0),
        rot2: number("rot2")?.unwrap_or(0.0),
        rot3: number("rot3")?.unwrap_or(0.0),
        pixel1: pixel1.ok_or_else(|| GeometryError::Missing {
            file: file.to_string(),
            what: "the pixel size (PixelSize1 or Detector_config pixel1)".into(),
        })?,
        pixel2: pixel2.ok_or_else(|| GeometryError::Missing {
            file: file.to_string(),
            what: "the pixel size (PixelSize2 or Detector_config pixel2)".into(),
        })?,
        shape,
        wavelength: number("wavelength")?,
    };
    let positive = |v: f64| v > 0.0;
    if !(positive(poni.distance) && positive(poni.pixel1) && positive(poni.pixel2)) {
        return Err(GeometryError::Missing {
            file: file.to_string(),
            what: "a positive distance and pixel size".into(),
        });
    }
    Ok(poni)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PONI: &str = "# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis
# Calibration done at Mon Nov 30 2026
poni_version: 2
Detector: Detector
Detector_config: {\"pixel1\": 0.0001, \"pixel2\": 0.0002, \"max_shape\": [100, 80]}
Distance: 0.1
Poni1: 0.005
Poni2: 0.008
Rot1: 0.0
Rot2: 0.0
Rot3: 0.0
Wavelength: 1.0332e-10
";

    #[test]
    fn an_untilted_panel_matches_the_flat_geometry() {
        let poni = parse(PONI, "a.poni").unwrap();
        assert_eq!(poni.shape, Some((100, 80)));
        let d = poni.detector(None).unwrap();
        let p = d.pixel_positions();
        // Row 50, column 40: (50.5·100 µm − 5 mm, 40.5·200 µm − 8 mm) from the PONI.
        let want = [40.5 * 2e-4 - 8e-3, 50.5 * 1e-4 - 5e-3, 0.1];
        assert!(p[50 * 80 + 40]
            .iter()
            .zip(&want)
            .all(|(a, b)| (a - b).abs() < 1e-15));
        assert!((d.photon_energy_ev.unwrap() - 12000.0).abs() < 1.0);
    }

    #[test]
    fn a_missing_distance_or_a_bad_number_is_named() {
        let e = parse(&PONI.replace("Distance: 0.1\n", ""), "a.poni").unwrap_err();
        assert_eq!(e.to_string(), "a.poni: no distance");
        let e = parse(&PONI.replace("Rot2: 0.0", "Rot2: zero"), "a.poni").unwrap_err();
        assert_eq!(e.to_string(), "a.poni:10: rot2: \"zero\" is not a number");
    }
}
