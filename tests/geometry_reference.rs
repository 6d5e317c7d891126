//! Detector geometry against references we did not write: extra_geom's pixel positions for
//! the multi-module detectors it models, read from the CrystFEL files it writes, and pyFAI's
//! 2θ, χ, solid angle and polarisation for a tilted panel from the PONI file it writes
//! (tests/check_geometry.py).

mod common;

use std::path::Path;
use std::process::Command;

use shotflow_operators::geometry;

fn references() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_geometry.py");
    let out = Command::new(common::python())
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
    for name in ["agipd", "lpd", "jungfrau", "epix10k"] {
        let detector = geometry::load(&dir.path().join(format!("{name}.geom")), None).unwrap();
        let reference = dir.path().join(format!("{name}.h5"));
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
