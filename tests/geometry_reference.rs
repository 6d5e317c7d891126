//! Detector geometry against references we did not write: extra_geom's pixel positions for
//! the multi-module detectors it models, read from the CrystFEL files it writes, and pyFAI's
//! 2θ, χ, solid angle and polarisation for a tilted panel from the PONI file it writes
//! (tests/check_geometry.py).

mod common;

use std::path::Path;

use shotflow_operators::azimuthal::{self, AzimuthalMap, Corrections, Radial, SplitMap};
use shotflow_operators::geometry;

/// The reference files, written once for all the tests here (extra_geom and pyFAI take a
/// few seconds for millions of pixels).
fn references() -> &'static tempfile::TempDir {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_geometry.py");
        let out = common::python_command()
            .arg(script)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        dir
    })
}

fn read(path: &Path, name: &str) -> Vec<f64> {
    hdf5::File::open(path)
        .unwrap()
        .dataset(name)
        .unwrap()
        .read_raw::<f64>()
        .unwrap()
}

#[test]
fn pixel_positions_equal_extra_geom_for_its_detectors() {
    let dir = references();
    let mut compared = 0;
    // `agipd layout`: shotflow's own AGIPD 1M layout (what the demo uses), built from the
    // same quadrant positions that extra_geom's from_quad_positions was given.
    for name in ["agipd", "agipd layout", "lpd", "jungfrau", "epix10k"] {
        let detector = match name {
            "agipd layout" => geometry::AgipdLayout::default().detector().unwrap(),
            _ => geometry::load(&dir.path().join(format!("{name}.geom")), None).unwrap(),
        };
        let reference = dir
            .path()
            .join(format!("{}.h5", name.split(' ').next().unwrap()));
        let file = hdf5::File::open(&reference).unwrap();
        let positions = file.dataset("positions").unwrap();
        let shape = positions.shape();
        let clen = file.attr("clen").unwrap().read_scalar::<f64>().unwrap();
        assert_eq!(
            detector.shape(),
            (shape[0], shape[1], shape[2]),
            "{name}: data shape"
        );
        let want = read(&reference, "positions");
        let got = detector.pixel_positions();
        assert_eq!(got.len() * 3, want.len());
        let mut worst = 0.0f64;
        for (k, p) in got.iter().enumerate() {
            // extra_geom leaves the camera length out of z.
            let ours = [p[0], p[1], p[2] - clen];
            for c in 0..3 {
                worst = worst.max((ours[c] - want[3 * k + c]).abs());
            }
        }
        assert!(worst < 1e-12, "{name}: positions differ by up to {worst} m");
        compared += got.len();
        eprintln!(
            "{name}: {} modules × {}×{}: {} pixel centres equal extra_geom's (max |Δ| {worst:.1e} m)",
            shape[0],
            shape[1],
            shape[2],
            got.len()
        );
    }
    eprintln!("{compared} pixel positions compared");
}

#[test]
fn a_tilted_panel_has_pyfais_angles_and_solid_angles() {
    let dir = references();
    let detector = geometry::load(&dir.path().join("tilted.poni"), None).unwrap();
    assert_eq!(detector.shape(), (1, 180, 240));
    let reference = dir.path().join("tilted.h5");
    let (tth, chi, solid) = (
        read(&reference, "tth"),
        read(&reference, "chi"),
        read(&reference, "solid_angle"),
    );
    let positions = detector.pixel_positions();
    let ours = detector.solid_angles();
    let (mut worst_tth, mut worst_chi, mut worst_sa) = (0.0f64, 0.0f64, 0.0f64);
    for (k, p) in positions.iter().enumerate() {
        let two_theta = p[0].hypot(p[1]).atan2(p[2]);
        let azimuth = p[1].atan2(p[0]);
        worst_tth = worst_tth.max((two_theta - tth[k]).abs());
        worst_chi = worst_chi.max((azimuth - chi[k]).abs());
        worst_sa = worst_sa.max((ours[k] - solid[k]).abs() / solid[k]);
    }
    eprintln!(
        "{} pixels: max |Δ2θ| {worst_tth:.1e} rad, |Δχ| {worst_chi:.1e} rad, solid angle {worst_sa:.1e} relative",
        positions.len()
    );
    assert!(worst_tth < 1e-9 && worst_chi < 1e-9, "angles differ");
    assert!(worst_sa < 1e-6, "solid angles differ");
}

/// Writes what `check_azimuthal_geometry.py` compares, runs it and returns its report.
#[allow(clippy::too_many_arguments)]
fn compare_with_pyfai(
    dir: &Path,
    name: &str,
    detector: &geometry::Detector,
    energy_kev: f64,
    unit: (Radial, &str, f64, f64, usize),
    corrections: Corrections,
    split: bool,
    geometry_attrs: impl FnOnce(&hdf5::File),
) -> String {
    let (radial, unit_name, lo, hi, bins) = unit;
    let (modules, rows, columns) = detector.shape();
    let shape = (modules * rows, columns);
    let wavelength = 1.239_841_984_332_002_6 / energy_kev;
    // Rings in q on a background with a ripple along the azimuth, from the pixel's position.
    let image: Vec<f32> = detector
        .pixel_positions()
        .iter()
        .enumerate()
        .map(|(k, &p)| {
            let (_, two_theta, chi) = azimuthal::radial(p, Radial::QInvNm, wavelength);
            let q = 4.0 * std::f64::consts::PI * (two_theta / 2.0).sin() / wavelength;
            let ring = |q0: f64, w: f64, a: f64| a * (-(q - q0).powi(2) / (2.0 * w * w)).exp();
            (5.0 + ring(6.0, 0.15, 100.0)
                + ring(9.5, 0.2, 60.0)
                + (3.0 * chi).cos()
                + (k % 7) as f64 * 0.1) as f32
        })
        .collect();
    let mask: Vec<bool> = (0..image.len()).map(|k| k % 97 == 0).collect();
    let (profile, centers, counts) = if split {
        let map = SplitMap::for_detector(
            detector,
            energy_kev,
            radial,
            bins,
            Some((lo, hi)),
            corrections,
            Some(&mask),
        )
        .unwrap();
        (map.integrate_slice(&image), map.centers(), vec![0u32; bins])
    } else {
        let map = AzimuthalMap::for_detector(
            detector,
            energy_kev,
            radial,
            bins,
            Some((lo, hi)),
            1,
            corrections,
            Some(&mask),
        )
        .unwrap();
        (
            map.integrate_slice(&image),
            map.centers(),
            map.counts().to_vec(),
        )
    };
    let path = dir.join(format!("{name}-azimuthal.h5"));
    {
        let file = hdf5::File::create(&path).unwrap();
        let image = ndarray::Array2::from_shape_vec(shape, image).unwrap();
        let mask =
            ndarray::Array2::from_shape_vec(shape, mask.iter().map(|&m| u8::from(m)).collect())
                .unwrap();
        file.new_dataset_builder()
            .with_data(&image)
            .create("image")
            .unwrap();
        file.new_dataset_builder()
            .with_data(&mask)
            .create("mask")
            .unwrap();
        for (key, values) in [("profile", profile), ("centers", centers)] {
            file.new_dataset_builder()
                .with_data(&ndarray::Array1::from(values))
                .create(key)
                .unwrap();
        }
        file.new_dataset_builder()
            .with_data(&ndarray::Array1::from(counts))
            .create("counts")
            .unwrap();
        let text = |s: &str| s.parse::<hdf5::types::VarLenUnicode>().unwrap();
        file.new_attr::<hdf5::types::VarLenUnicode>()
            .create("unit")
            .unwrap()
            .write_scalar(&text(unit_name))
            .unwrap();
        for (key, value) in [
            ("lo", lo),
            ("hi", hi),
            ("bins", bins as f64),
            ("wavelength", wavelength * 1e-9),
            ("polarization", corrections.polarization.unwrap_or(0.0)),
            ("solid_angle", f64::from(u8::from(corrections.solid_angle))),
            ("split", f64::from(u8::from(split))),
        ] {
            file.new_attr::<f64>()
                .create(key)
                .unwrap()
                .write_scalar(&value)
                .unwrap();
        }
        geometry_attrs(&file);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_azimuthal_geometry.py");
    let out = common::python_command()
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} {unit_name}: {report}");
    report
}

#[test]
fn azimuthal_profiles_of_a_tilted_panel_equal_pyfais_with_corrections() {
    let dir = references();
    let poni = dir.path().join("tilted.poni");
    let detector = geometry::load(&poni, None).unwrap();
    let energy = detector.photon_energy_ev.unwrap() / 1e3;
    let corrections = Corrections {
        solid_angle: true,
        polarization: Some(0.95),
    };
    for (unit, split) in [
        ((Radial::QInvNm, "q_nm^-1", 4.0, 20.0, 150), false),
        ((Radial::TwoThetaDeg, "2th_deg", 4.0, 17.0, 120), false),
        ((Radial::RadiusMm, "r_mm", 6.0, 26.0, 100), false),
        ((Radial::QInvNm, "q_nm^-1", 4.0, 20.0, 150), true),
        ((Radial::TwoThetaDeg, "2th_deg", 4.0, 17.0, 60), true),
    ] {
        let report = compare_with_pyfai(
            dir.path(),
            "tilted",
            &detector,
            energy,
            unit,
            corrections,
            split,
            |f| {
                f.new_attr::<hdf5::types::VarLenUnicode>()
                    .create("poni")
                    .unwrap()
                    .write_scalar(
                        &poni
                            .display()
                            .to_string()
                            .parse::<hdf5::types::VarLenUnicode>()
                            .unwrap(),
                    )
                    .unwrap();
            },
        );
        eprint!("tilted panel, {}, split {split}: {report}", unit.1);
    }
}

#[test]
fn azimuthal_profiles_of_agipd_1m_equal_pyfais_given_its_pixel_corners() {
    let dir = references();
    let detector = geometry::load(&dir.path().join("agipd.geom"), None).unwrap();
    let clen = 0.12;
    let corners = detector.pixel_corners();
    let (modules, rows, columns) = detector.shape();
    // pyFAI takes corners as (z, y, x), z from the distance it is given.
    let flat: Vec<f64> = corners
        .iter()
        .flat_map(|c| c.iter().flat_map(|p| [p[2] - clen, p[1], p[0]]))
        .collect();
    let corners = ndarray::Array4::from_shape_vec((modules * rows, columns, 4, 3), flat).unwrap();
    let on = Corrections {
        solid_angle: true,
        polarization: Some(0.99),
    };
    for (corrections, unit, split) in [
        (on, (Radial::QInvNm, "q_nm^-1", 0.5, 9.0, 200), false),
        (
            Corrections::default(),
            (Radial::TwoThetaDeg, "2th_deg", 0.5, 6.0, 150),
            false,
        ),
        (on, (Radial::QInvNm, "q_nm^-1", 0.5, 9.0, 200), true),
    ] {
        let corners = corners.clone();
        let report = compare_with_pyfai(
            dir.path(),
            "agipd",
            &detector,
            9.3,
            unit,
            corrections,
            split,
            move |f| {
                f.new_dataset_builder()
                    .with_data(&corners)
                    .create("corners")
                    .unwrap();
                f.new_attr::<f64>()
                    .create("dist")
                    .unwrap()
                    .write_scalar(&clen)
                    .unwrap();
            },
        );
        eprint!(
            "AGIPD 1M (16 modules), {} {corrections:?}, split {split}: {report}",
            unit.1
        );
    }
}

#[test]
fn assembled_images_equal_extra_geoms() {
    let dir = references();
    let mut compared = 0;
    for name in ["agipd", "lpd", "jungfrau", "epix10k"] {
        let detector = geometry::load(&dir.path().join(format!("{name}.geom")), None).unwrap();
        let assembly = geometry::Assembly::new(&detector).unwrap();
        let reference = dir.path().join(format!("{name}.h5"));
        let file = hdf5::File::open(&reference).unwrap();
        let want = file.dataset("assembled").unwrap().read_2d::<f32>().unwrap();
        let centre = file.dataset("centre").unwrap().read_raw::<i64>().unwrap();
        let data: Vec<f32> = (0..detector.pixels()).map(|k| k as f32).collect();
        let got = assembly.assemble(&data, f32::NAN);
        assert_eq!(got.dim(), want.dim(), "{name}: image shape");
        assert_eq!(
            (assembly.centre().0, assembly.centre().1),
            (centre[0], centre[1]),
            "{name}: centre"
        );
        let differ = got
            .iter()
            .zip(want.iter())
            .filter(|(a, b)| !(a == b || a.is_nan() && b.is_nan()))
            .count();
        assert_eq!(differ, 0, "{name}: {differ} image pixels differ");
        compared += got.len();
        eprintln!(
            "{name}: {:?} image equals extra_geom's, centre {centre:?}",
            got.dim()
        );
    }
    eprintln!("{compared} image pixels compared");
}

/// Panels at different distances: solid angles as pyFAI computes them for the same pixel
/// corners (each pixel relative to normal incidence at its own panel's distance).
#[test]
fn solid_angles_of_panels_at_different_distances_equal_pyfais() {
    let dir = references();
    let detector = geometry::load(&dir.path().join("stepped.geom"), None).unwrap();
    assert_eq!(detector.shape(), (2, 4, 4));
    let want = read(&dir.path().join("stepped.h5"), "solid_angle");
    let got = detector.solid_angles();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() / b)
        .fold(0.0f64, f64::max);
    eprintln!(
        "{} pixels on two panels 10 mm apart: solid angle within {worst:.1e} of pyFAI's",
        got.len()
    );
    assert!(worst < 1e-6, "solid angles differ by {worst:e}");
}
