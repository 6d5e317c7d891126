//! CrystFEL `.geom` files, as EuXFEL, LCLS and SwissFEL exchange multi-module geometries.
//!
//! What is read: global defaults (`res`, `clen`, `coffset`, `photon_energy`, `dim1`…), which
//! apply to the panels declared after them as in CrystFEL; per panel `min_fs`/`max_fs`/
//! `min_ss`/`max_ss`, `fs`/`ss` vectors (`+0.0x -1.0y +0.0z`), `corner_x`/`corner_y` (pixels),
//! `coffset` and `clen` (m), `res` (pixels per metre), `dim1` (the module index, the data's
//! first axis), `no_index`; bad regions in lab pixels (`badX/min_x`, `max_x`, `min_y`,
//! `max_y`) or in one panel's data (`badX/min_fs`…, `badX/panel`). Rigid groups, masks held in
//! the data file and `adu_per_eV` describe refinement and calibration, not positions: they
//! are accepted and not used. Anything else is an error naming the line.

use std::collections::BTreeMap;

use super::detector::{Detector, Panel, Vec3};
use super::GeometryError;

/// Values of one panel (or the defaults) as the file gives them.
#[derive(Clone, Debug, Default)]
struct Values {
    res: Option<f64>,
    clen: Option<f64>,
    coffset: Option<f64>,
    min_fs: Option<usize>,
    max_fs: Option<usize>,
    min_ss: Option<usize>,
    max_ss: Option<usize>,
    fs: Option<Vec3>,
    ss: Option<Vec3>,
    corner_x: Option<f64>,
    corner_y: Option<f64>,
    module: Option<usize>,
    bad: bool,
}

/// A bad region.
#[derive(Clone, Debug, Default)]
struct Bad {
    line: usize,
    xy: [Option<f64>; 4],
    fsss: [Option<usize>; 4],
    panel: Option<String>,
}

const IGNORED: &[&str] = &[
    "adu_per_ev",
    "adu_per_photon",
    "data",
    "mask",
    "mask_file",
    "mask_good",
    "mask_bad",
    "dim0",
    "dim2",
    "dim3",
    "max_adu",
    "flag_morethan",
    "flag_lessthan",
    "photon_energy_bandwidth",
    "peak_list",
    "peak_list_type",
    "detector_shift_x",
    "detector_shift_y",
    "bandwidth",
    "saturation_map",
    "saturation_map_file",
    "coffset_per_panel",
];

/// Parses the text of a CrystFEL geometry file; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Detector, GeometryError> {
    let at = |line: usize, message: String| GeometryError::Line {
        file: file.to_string(),
        line,
        message,
    };
    let mut defaults = Values::default();
    let mut panels: BTreeMap<String, (usize, Values)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut bads: BTreeMap<String, Bad> = BTreeMap::new();
    let mut photon_energy = None;
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let content = raw.split(';').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(at(
                line,
                format!("expected `name = value`, got {content:?}"),
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        let (owner, property) = match key.split_once('/') {
            Some((owner, property)) => (Some(owner.trim()), property.trim()),
            None => (None, key),
        };
        let property = property.to_ascii_lowercase();
        if owner.is_none() && property.starts_with("rigid_group") {
            continue;
        }
        if let Some(name) = owner.filter(|o| o.starts_with("bad")) {
            let bad = bads.entry(name.to_string()).or_insert_with(|| Bad {
                line,
                ..Bad::default()
            });
            let number = || -> Result<Option<f64>, GeometryError> {
                value
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| at(line, format!("{key}: {value:?} is not a number")))
            };
            match property.as_str() {
                "min_x" => bad.xy[0] = number()?,
                "max_x" => bad.xy[1] = number()?,
                "min_y" => bad.xy[2] = number()?,
                "max_y" => bad.xy[3] = number()?,
                "min_fs" | "max_fs" | "min_ss" | "max_ss" => {
                    let i = ["min_fs", "max_fs", "min_ss", "max_ss"]
                        .iter()
                        .position(|p| *p == property)
                        .expect("listed");
                    bad.fsss[i] = Some(integer(value).ok_or_else(|| {
                        at(line, format!("{key}: {value:?} is not a pixel index"))
                    })?);
                }
                "panel" => bad.panel = Some(value.to_string()),
                _ => return Err(at(line, format!("unknown property of a bad region: {key}"))),
            }
            continue;
        }
        if owner.is_none() && property == "photon_energy" {
            // A number of eV, or the name of a field in the data: then the run says it.
            photon_energy = value.parse::<f64>().ok();
            continue;
        }
        let values = match owner {
            Some(name) => {
                if !panels.contains_key(name) {
                    order.push(name.to_string());
                    panels.insert(name.to_string(), (line, defaults.clone()));
                }
                &mut panels.get_mut(name).expect("inserted").1
            }
            None => &mut defaults,
        };
        set(values, &property, value).map_err(|message| at(line, format!("{key}: {message}")))?;
    }

    let mut built = Vec::new();
    for name in &order {
        let (line, v) = &panels[name];
        let missing = |what: &str| at(*line, format!("panel {name} has no {what}"));
        let res = v.res.ok_or_else(|| missing("res (pixels per metre)"))?;
        if res.is_nan() || res <= 0.0 {
            return Err(at(
                *line,
                format!("panel {name}: res {res} is not positive"),
            ));
        }
        let (min_fs, max_fs) = (
            v.min_fs.ok_or_else(|| missing("min_fs"))?,
            v.max_fs.ok_or_else(|| missing("max_fs"))?,
        );
        let (min_ss, max_ss) = (
            v.min_ss.ok_or_else(|| missing("min_ss"))?,
            v.max_ss.ok_or_else(|| missing("max_ss"))?,
        );
        if max_fs < min_fs || max_ss < min_ss {
            return Err(at(
                *line,
                format!("panel {name}: fs {min_fs}..={max_fs}, ss {min_ss}..={max_ss} is empty"),
            ));
        }
        let fs = v.fs.ok_or_else(|| missing("fs vector"))?;
        let ss = v.ss.ok_or_else(|| missing("ss vector"))?;
        let z = v.clen.unwrap_or(0.0) + v.coffset.unwrap_or(0.0);
        built.push(Panel {
            name: name.clone(),
            module: v.module.unwrap_or(0),
            min_ss,
            min_fs,
            ss_len: max_ss - min_ss + 1,
            fs_len: max_fs - min_fs + 1,
            // Pixels to metres by dividing by `res`, as CrystFEL and extra_geom do: a corner
            // half-way between two pixels then rounds the way theirs does.
            corner: [
                v.corner_x.ok_or_else(|| missing("corner_x"))? / res,
                v.corner_y.ok_or_else(|| missing("corner_y"))? / res,
                z,
            ],
            // Vectors are in pixels: one step of one pixel, in metres.
            fs: fs.map(|c| c / res),
            ss: ss.map(|c| c / res),
            bad: v.bad,
        });
    }
    let mut detector = Detector::new(built).map_err(|e| GeometryError::Detector {
        file: file.to_string(),
        source: e,
    })?;
    detector.photon_energy_ev = photon_energy;
    detector.bad_pixels = bad_pixels(&detector, &bads, file)?;
    Ok(detector)
}

/// The data-array pixels in the file's bad regions.
fn bad_pixels(
    detector: &Detector,
    bads: &BTreeMap<String, Bad>,
    file: &str,
) -> Result<Vec<usize>, GeometryError> {
    let (_, rows, columns) = detector.shape();
    let mut out = Vec::new();
    for (name, bad) in bads {
        let at = |message: String| GeometryError::Line {
            file: file.to_string(),
            line: bad.line,
            message: format!("bad region {name}: {message}"),
        };
        if let [Some(min_x), Some(max_x), Some(min_y), Some(max_y)] = bad.xy {
            // Lab coordinates in pixels of each panel's own size, as CrystFEL compares them.
            for panel in &detector.panels {
                let res = 1.0 / panel.pixel_size();
                for ss in 0..panel.ss_len {
                    for fs in 0..panel.fs_len {
                        let p = panel.pixel_centre(ss, fs);
                        let (x, y) = (p[0] * res, p[1] * res);
                        if (min_x..=max_x).contains(&x) && (min_y..=max_y).contains(&y) {
                            out.push(
                                (panel.module * rows + panel.min_ss + ss) * columns
                                    + panel.min_fs
                                    + fs,
                            );
                        }
                    }
                }
            }
        } else if let [Some(min_fs), Some(max_fs), Some(min_ss), Some(max_ss)] = bad.fsss {
            let panel_name = bad
                .panel
                .as_ref()
                .ok_or_else(|| at("a region in data coordinates needs `panel`".into()))?;
            let panel = detector
                .panels
                .iter()
                .find(|p| p.name == *panel_name)
                .ok_or_else(|| at(format!("no panel {panel_name}")))?;
            for ss in min_ss..=max_ss {
                for fs in min_fs..=max_fs {
                    // Data coordinates of the module, as the panel's min/max are.
                    if ss >= panel.min_ss
                        && ss < panel.min_ss + panel.ss_len
                        && fs >= panel.min_fs
                        && fs < panel.min_fs + panel.fs_len
                    {
                        out.push((panel.module * rows + ss) * columns + fs);
                    }
                }
            }
        } else {
            return Err(at(
                "give min_x, max_x, min_y and max_y, or min_fs, max_fs, min_ss, max_ss and panel"
                    .into(),
            ));
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn integer(value: &str) -> Option<usize> {
    value.parse::<usize>().ok()
}

/// Sets one property of a panel (or of the defaults).
fn set(values: &mut Values, property: &str, value: &str) -> Result<(), String> {
    let number = || {
        value
            .parse::<f64>()
            .map_err(|_| format!("{value:?} is not a number"))
    };
    let index = || integer(value).ok_or_else(|| format!("{value:?} is not a pixel index"));
    match property {
        "res" => values.res = Some(number()?),
        "clen" => {
            // A number of metres, or the name of a field in the data (then unknown here).
            values.clen = value.parse::<f64>().ok();
        }
        "coffset" => values.coffset = Some(number()?),
        "min_fs" => values.min_fs = Some(index()?),
        "max_fs" => values.max_fs = Some(index()?),
        "min_ss" => values.min_ss = Some(index()?),
        "max_ss" => values.max_ss = Some(index()?),
        "corner_x" => values.corner_x = Some(number()?),
        "corner_y" => values.corner_y = Some(number()?),
        "fs" => values.fs = Some(vector(value)?),
        "ss" => values.ss = Some(vector(value)?),
        "no_index" => values.bad = value != "0" && !value.eq_ignore_ascii_case("false"),
        "dim1" => {
            values.module = match value {
                "ss" | "fs" | "%" => None,
                v => Some(integer(v).ok_or_else(|| format!("{v:?} is not a module index"))?),
            }
        }
        p if IGNORED.contains(&p) => {}
        p => return Err(format!("unknown property {p:?}")),
    }
    Ok(())
}

/// `+0.0024x -0.9999y +0.0z` (terms in any order; `x`, `y`, `z`; a missing number is 1).
fn vector(text: &str) -> Result<Vec3, String> {
    let mut out = [0.0; 3];
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut rest = compact.as_str();
    if rest.is_empty() {
        return Err("an empty vector".into());
    }
    while !rest.is_empty() {
        // A sign starts the next term, unless it is an exponent's (`2e-3x`).
        let bytes = rest.as_bytes();
        let end = (1..bytes.len())
            .find(|&i| {
                (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E')
            })
            .unwrap_or(rest.len());
        let (term, tail) = rest.split_at(end);
        rest = tail;
        let axis = term.chars().last().expect("non-empty");
        let k = match axis {
            'x' => 0,
            'y' => 1,
            'z' => 2,
            _ => return Err(format!("{text:?}: term {term:?} names no axis x, y or z")),
        };
        let coefficient = &term[..term.len() - 1];
        let c = match coefficient {
            "" | "+" => 1.0,
            "-" => -1.0,
            c => c
                .parse::<f64>()
                .map_err(|_| format!("{text:?}: {c:?} is not a number"))?,
        };
        out[k] += c;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_read_as_crystfel_writes_them() {
        assert_eq!(vector("+0.0x -1.0y").unwrap(), [0.0, -1.0, 0.0]);
        assert_eq!(vector("x +y").unwrap(), [1.0, 1.0, 0.0]);
        assert_eq!(vector("-0.5z +2e-3x").unwrap(), [2e-3, 0.0, -0.5]);
        assert!(vector("+1.0q").unwrap_err().contains("no axis"));
    }

    const TWO_PANELS: &str = "\
res = 5000 ; 200 µm
clen = 0.12
photon_energy = 9300

m0/dim1 = 0
m0/min_fs = 0
m0/max_fs = 3
m0/min_ss = 0
m0/max_ss = 1
m0/fs = +1.0x
m0/ss = +1.0y
m0/corner_x = -10
m0/corner_y = 5
m0/coffset = 0.001

m1/dim1 = 1
m1/min_fs = 0
m1/max_fs = 3
m1/min_ss = 0
m1/max_ss = 1
m1/fs = -1.0y
m1/ss = +1.0x
m1/corner_x = 20
m1/corner_y = -3

bad0/min_x = -10
bad0/max_x = -8.4
bad0/min_y = 5
bad0/max_y = 5.6
";

    #[test]
    fn panels_land_where_their_corners_and_vectors_say() {
        let d = parse(TWO_PANELS, "two.geom").unwrap();
        assert_eq!(d.shape(), (2, 2, 4));
        assert_eq!(d.photon_energy_ev, Some(9300.0));
        let p = d.pixel_positions();
        let close = |a: Vec3, b: Vec3| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-12);
        // Module 0, row 1, column 2: corner + 2.5 fs + 1.5 ss pixels.
        assert!(close(
            p[6],
            [(-10.0 + 2.5) / 5000.0, (5.0 + 1.5) / 5000.0, 0.121]
        ));
        // Module 1, row 0, column 0: fs runs down, ss runs right.
        assert!(close(
            p[8],
            [(20.0 + 0.5) / 5000.0, (-3.0 - 0.5) / 5000.0, 0.12]
        ));
        // The bad region covers the first two pixels of module 0's first row.
        assert_eq!(d.bad_pixels, vec![0, 1]);
        assert_eq!(d.mask().iter().filter(|m| **m).count(), 2);
    }

    #[test]
    fn errors_name_the_line() {
        let broken = TWO_PANELS.replace("m1/corner_y = -3", "m1/corner_y = three");
        let e = parse(&broken, "two.geom").unwrap_err().to_string();
        assert_eq!(e, "two.geom:24: m1/corner_y: \"three\" is not a number");
        let unknown = TWO_PANELS.replace("m0/coffset", "m0/cofset");
        let e = parse(&unknown, "two.geom").unwrap_err().to_string();
        assert!(
            e.starts_with("two.geom:14: m0/cofset: unknown property"),
            "{e}"
        );
        let partial = TWO_PANELS.replace("m1/max_ss = 1\n", "");
        let e = parse(&partial, "two.geom").unwrap_err().to_string();
        assert_eq!(e, "two.geom:16: panel m1 has no max_ss");
        let overlap = TWO_PANELS.replace("m1/dim1 = 1", "m1/dim1 = 0");
        let e = parse(&overlap, "two.geom").unwrap_err().to_string();
        assert!(
            e.contains("panels m0 and m1 both cover module 0, row 0, column 0"),
            "{e}"
        );
    }
}
