//! Detector reductions against references we did not write: pyFAI for azimuthal integration,
//! scipy.ndimage for droplets (tests/check_*.py).

mod common;

use std::path::Path;

use ndarray::Array2;
use shotflow_operators::azimuthal::{AzimuthalMap, Geometry, Radial};

fn run_check(script: &str, file: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let out = common::python_command()
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// Rings at three q values on a flat background, with a deterministic ripple.
fn ring_image(geometry: &Geometry, shape: (usize, usize)) -> Array2<f32> {
    Array2::from_shape_fn(shape, |(i, j)| {
        let (q, phi) = geometry.position(i, j, Radial::QInvNm);
        let ring = |q0: f64, w: f64, a: f64| a * (-(q - q0).powi(2) / (2.0 * w * w)).exp();
        (5.0 + ring(6.0, 0.15, 100.0)
            + ring(9.5, 0.2, 60.0)
            + ring(13.0, 0.3, 30.0)
            + (3.0 * phi).cos()
            + ((i * 31 + j * 17) % 7) as f64 * 0.1) as f32
    })
}

#[test]
fn azimuthal_integration_agrees_with_pyfai() {
    let shape = (256, 320);
    let geometry = Geometry {
        distance: 0.15,
        poni1: 0.0,
        poni2: 0.0,
        pixel1: 1e-4,
        pixel2: 1e-4,
        energy_kev: 9.3,
    }
    .with_center(100.3, 170.7);
    let image = ring_image(&geometry, shape);
    let mask = Array2::from_shape_fn(shape, |(i, j)| i == 40 || (j > 300 && i < 20));
    for (unit, name, lo, hi, bins) in [
        (Radial::QInvNm, "q_nm^-1", 0.5, 7.0, 200),
        (Radial::RadiusMm, "r_mm", 1.0, 20.0, 120),
        (Radial::TwoThetaDeg, "2th_deg", 1.0, 8.0, 90),
    ] {
        let map = AzimuthalMap::new(
            shape,
            &geometry,
            unit,
            bins,
            Some((lo, hi)),
            Some(mask.view()),
            1,
        )
        .unwrap();
        let profile = map.integrate(image.view());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("azimuthal.h5");
        {
            let file = hdf5::File::create(&path).unwrap();
            file.new_dataset_builder()
                .with_data(&image)
                .create("image")
                .unwrap();
            file.new_dataset_builder()
                .with_data(&mask.mapv(u8::from))
                .create("mask")
                .unwrap();
            file.new_dataset_builder()
                .with_data(&ndarray::Array1::from(profile))
                .create("profile")
                .unwrap();
            file.new_dataset_builder()
                .with_data(&ndarray::Array1::from(map.centers()))
                .create("centers")
                .unwrap();
            file.new_dataset_builder()
                .with_data(&ndarray::Array1::from(map.counts().to_vec()))
                .create("counts")
                .unwrap();
            let g = file.create_group("geometry").unwrap();
            for (k, v) in [
                ("distance", geometry.distance),
                ("poni1", geometry.poni1),
                ("poni2", geometry.poni2),
                ("pixel1", geometry.pixel1),
                ("pixel2", geometry.pixel2),
                ("energy_kev", geometry.energy_kev),
            ] {
                g.new_attr::<f64>()
                    .create(k)
                    .unwrap()
                    .write_scalar(&v)
                    .unwrap();
            }
            file.new_attr::<hdf5::types::VarLenUnicode>()
                .create("unit")
                .unwrap()
                .write_scalar(&name.parse::<hdf5::types::VarLenUnicode>().unwrap())
                .unwrap();
            for (k, v) in [("lo", lo), ("hi", hi)] {
                file.new_attr::<f64>()
                    .create(k)
                    .unwrap()
                    .write_scalar(&v)
                    .unwrap();
            }
            file.new_attr::<u64>()
                .create("bins")
                .unwrap()
                .write_scalar(&(bins as u64))
                .unwrap();
        }
        let report = run_check("check_azimuthal.py", &path);
        eprintln!("{name}: {report}");
    }
}

#[test]
fn droplets_agree_with_scipy_label() {
    use shotflow_operators::droplets::{droplets, Connectivity};
    // Planted photons: singles, touching pairs (edge and corner), clusters, and hits on every
    // edge and corner of the frame, on low noise below the threshold.
    let (rows, cols) = (64, 48);
    let mut frame =
        Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 7 + j * 13) % 11) as f64 * 0.5);
    let mut plant = |i: usize, j: usize, v: f64| frame[[i, j]] += v;
    for k in 0..40 {
        plant((k * 37) % rows, (k * 23) % cols, 60.0 + k as f64);
    }
    plant(10, 10, 60.0);
    plant(10, 11, 30.0); // edge pair
    plant(20, 20, 55.0);
    plant(21, 21, 45.0); // corner pair: one droplet only with 8-connectivity
    for (i, j) in [
        (0, 0),
        (0, cols - 1),
        (rows - 1, 0),
        (rows - 1, cols - 1),
        (0, 17),
        (33, 0),
    ] {
        plant(i, j, 80.0);
    }
    for (i, j) in [(40, 30), (40, 31), (41, 30), (41, 31), (42, 32)] {
        plant(i, j, 25.0);
    }
    let threshold = 10.0;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("droplets.h5");
    {
        let file = hdf5::File::create(&path).unwrap();
        file.new_dataset_builder()
            .with_data(&frame)
            .create("frame")
            .unwrap();
        file.new_attr::<f64>()
            .create("threshold")
            .unwrap()
            .write_scalar(&threshold)
            .unwrap();
        for (name, connectivity) in [("four", Connectivity::Four), ("eight", Connectivity::Eight)] {
            let found = droplets(frame.view(), threshold, connectivity);
            let table = Array2::from_shape_fn((found.len(), 4), |(k, c)| {
                let d = found[k];
                [d.adu, d.pixels as f64, d.row, d.col][c]
            });
            file.new_dataset_builder()
                .with_data(&table)
                .create(name)
                .unwrap();
        }
    }
    let report = run_check("check_droplets.py", &path);
    eprintln!("{report}");
}

#[test]
fn peak_finder_recovers_planted_peaks() {
    use shotflow_operators::peaks::PeakFinder;
    // Brute-force reference: Gaussian peaks planted at known sub-pixel positions on a noisy
    // background; the expected peaks are exactly the planted ones that are inside the
    // resolution limits and not split by the frame edge, with touching pairs merged.
    let (rows, cols) = (128, 160);
    let center = (64.0, 80.0);
    let noise = |i: usize, j: usize| ((i * 7919 + j * 104_729) % 13) as f64 - 6.0; // ±6 ADU
    let mut frame = Array2::from_shape_fn((rows, cols), |(i, j)| 100.0 + noise(i, j));
    let planted: Vec<(f64, f64, f64)> = vec![
        (20.3, 30.6, 900.0),
        (50.0, 120.2, 700.0),
        (100.7, 40.1, 1200.0),
        (90.2, 140.8, 800.0),
        (30.0, 100.0, 600.0),
        (110.4, 110.4, 1000.0),
    ];
    let add = |frame: &mut Array2<f64>, (pr, pc, a): (f64, f64, f64)| {
        for i in 0..rows {
            for j in 0..cols {
                let d2 = (i as f64 - pr).powi(2) + (j as f64 - pc).powi(2);
                frame[[i, j]] += a * (-d2 / (2.0 * 0.7f64.powi(2))).exp();
            }
        }
    };
    for p in &planted {
        add(&mut frame, *p);
    }
    // too close to the beam (inside min_res) and a weak bump under threshold: not peaks
    add(&mut frame, (64.0, 82.0, 900.0));
    add(&mut frame, (10.0, 10.0, 20.0));
    // a touching pair: one peak
    add(&mut frame, (70.0, 20.0, 800.0));
    add(&mut frame, (70.0, 21.6, 800.0));
    let finder = PeakFinder {
        adc_threshold: 150.0,
        min_snr: 6.0,
        min_pix_count: 2,
        max_pix_count: 40,
        local_bg_radius: 4,
        min_res: 5.0,
        max_res: 200.0,
        center,
        min_peaks: 5,
    };
    let found = finder.find(frame.view(), None);
    assert!(found.hit);
    let mut expected: Vec<(f64, f64)> = planted.iter().map(|p| (p.0, p.1)).collect();
    expected.push((70.0, 20.8));
    assert_eq!(found.peaks.len(), expected.len(), "{:?}", found.peaks);
    for (r, c) in expected {
        let nearest = found
            .peaks
            .iter()
            .map(|p| ((p.row - r).powi(2) + (p.col - c).powi(2)).sqrt())
            .fold(f64::INFINITY, f64::min);
        assert!(
            nearest < 0.3,
            "planted peak at ({r}, {c}) found {nearest:.2} px away"
        );
    }
    // a masked peak disappears; raising min_peaks makes the frame a non-hit
    let mut mask = Array2::from_elem((rows, cols), false);
    for i in 17..24 {
        for j in 27..35 {
            mask[[i, j]] = true;
        }
    }
    let masked = finder.find(frame.view(), Some(mask.view()));
    assert_eq!(masked.peaks.len(), found.peaks.len() - 1);
    let strict = PeakFinder {
        min_peaks: 8,
        ..finder
    };
    assert!(!strict.find(frame.view(), None).hit);
}
