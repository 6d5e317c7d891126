//! `--geometry FILE` from the command line, against references we did not write: a run of all
//! 16 AGIPD 1M modules whose photons follow an extra_geom-written CrystFEL file, extracted
//! with its per-train azimuthal profile at 1, 2 and 3 workers and on 2 processes, equals
//! extra-data's stacked modules integrated by pyFAI over extra_geom's pixel corners
//! (tests/check_extract_azimuthal.py). Raw AGIPD and EuXFEL JUNGFRAU runs, calibrated on the
//! way, equal their facility's correction integrated the same way. The demo takes the same
//! file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cluster_args, datasets, spawn, wait_bounded};
use shotflow_operators::azimuthal::{AzimuthalMap, Corrections, Radial};
use shotflow_operators::geometry;

const SHOTFLOW: &str = env!("CARGO_BIN_EXE_shotflow");
const MODULES: &str = "SPB_DET_AGIPD1M-1/DET/*CH0:xtdf:image.data";
const BINS: usize = 200;

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// An AGIPD 1M geometry written by extra_geom.
fn agipd_geometry(dir: &Path) -> PathBuf {
    extra_geom_writes(
        &dir.join("agipd.geom"),
        "AGIPD_1MGeometry.from_quad_positions(\
         quad_pos=[(-520, 630), (-545, -5), (525, -155), (545, 480)])",
    )
}

/// The CrystFEL file extra_geom writes at `path` for `extra_geom.<geometry>` (9.3 keV, the
/// sample 0.12 m away).
fn extra_geom_writes(path: &Path, geometry: &str) -> PathBuf {
    let write = format!(
        "import sys, extra_geom\n\
         g = extra_geom.{geometry}\n\
         g.write_crystfel_geom(sys.argv[1], photon_energy=9300, clen=0.12)\n"
    );
    ok(
        common::python_command()
            .args(["-c", &write])
            .arg(path)
            .output()
            .unwrap(),
        "extra_geom",
    );
    path.to_path_buf()
}

/// An AGIPD 1M geometry written by extra_geom, and a 3-train run of 2 pulses simulated on it.
fn agipd_run(dir: &Path) -> (PathBuf, PathBuf) {
    let geom = agipd_geometry(dir);
    let run = dir.join("r0001");
    ok(
        Command::new(SHOTFLOW)
            .arg("simulate")
            .arg(&run)
            .arg("--geometry")
            .arg(&geom)
            .args(["--trains", "3", "--frames", "2", "--trains-per-file", "2"])
            .output()
            .unwrap(),
        "simulate",
    );
    (geom, run)
}

fn extract_args(run: &Path, geom: &Path, output: &Path) -> Vec<String> {
    profile_args(run, MODULES, geom, output)
}

/// `shotflow extract RUN --select SELECT` with the detector's profile through `geom`.
fn profile_args(run: &Path, select: &str, geom: &Path, output: &Path) -> Vec<String> {
    [
        "extract",
        &run.display().to_string(),
        "--select",
        select,
        "--geometry",
        &geom.display().to_string(),
        "--bins",
        &BINS.to_string(),
        "--polarization",
        "0.99",
        "--output",
        &output.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs the extraction `args(output)` as 2 processes of 1 worker on loopback.
fn in_two_processes(args: impl Fn(&Path) -> Vec<String>, output: &Path) {
    let rendezvous = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            let mut args = args(output);
            args.extend(cluster_args(2, p, 1, rendezvous.path()));
            spawn(SHOTFLOW, &args)
        })
        .collect();
    for child in children {
        ok(
            wait_bounded(child, std::time::Duration::from_secs(120)),
            "2 processes",
        );
    }
}

/// tests/check_extract_azimuthal.py on `output`, extracted from `run` with [`extract_args`]
/// (and every module calibrated with `constants`, when given): the bins' range as extract
/// computes it, for pyFAI's radial_range. Returns its report, which must end in "ok".
fn pyfai_agrees(run: &Path, geom: &Path, output: &Path, constants: Option<&Path>) -> String {
    let detector = geometry::load(geom, None).unwrap();
    let corrections = Corrections {
        solid_angle: true,
        polarization: Some(0.99),
    };
    let map = AzimuthalMap::for_detector(
        &detector,
        9.3,
        Radial::QInvNm,
        BINS,
        None,
        1,
        corrections,
        None,
    )
    .unwrap();
    let (lo, hi) = map.range();
    let report = ok(
        common::python_command()
            .arg(common::reference_script("check_extract_azimuthal.py"))
            .arg(run)
            .arg(geom)
            .arg(output)
            .args([
                format!("{lo:?}"),
                format!("{hi:?}"),
                BINS.to_string(),
                "9.3".into(),
                "0.99".into(),
            ])
            .args(constants)
            .output()
            .unwrap(),
        "pyFAI reference",
    );
    eprint!("{report}");
    assert!(report.trim_end().ends_with("ok"), "{report}");
    report
}

/// The extraction `args(output)` of `run`, its modules calibrated with `constants`, at 1
/// worker and in 2 processes: the same datasets, `<detector>/azav` of 3 trains × [`BINS`], and
/// pyFAI's profile of the frames the facility's reference calibrates ([`pyfai_agrees`]).
fn calibrated_profile_agrees(
    (run, geom, constants): (&Path, &Path, &Path),
    dir: &Path,
    detector: &str,
    args: impl Fn(&Path) -> Vec<String>,
) {
    let one = dir.join("w1.h5");
    ok(
        Command::new(SHOTFLOW).args(args(&one)).output().unwrap(),
        "extract, 1 worker",
    );
    let two = dir.join("p2.h5");
    in_two_processes(args, &two);
    let reference = datasets(&one);
    assert_eq!(reference[&format!("{detector}/azav")].0, vec![3, BINS]);
    assert!(
        datasets(&two) == reference,
        "2 processes: the datasets differ from 1 worker's"
    );
    pyfai_agrees(run, geom, &one, Some(constants));
}

#[test]
fn extracted_azimuthal_profiles_of_agipd_1m_equal_pyfais_at_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let (geom, run) = agipd_run(dir.path());
    let mut outputs = Vec::new();
    for workers in [1, 2, 3] {
        let output = dir.path().join(format!("w{workers}.h5"));
        let mut args = extract_args(&run, &geom, &output);
        args.extend(["--workers".to_string(), workers.to_string()]);
        ok(
            Command::new(SHOTFLOW).args(&args).output().unwrap(),
            "extract",
        );
        outputs.push((format!("{workers} workers"), output));
    }
    let output = dir.path().join("p2.h5");
    in_two_processes(|output| extract_args(&run, &geom, output), &output);
    outputs.push(("2 processes".into(), output));
    let reference = datasets(&outputs[0].1);
    let profile = &reference["SPB_DET_AGIPD1M-1/azav"];
    assert_eq!(profile.0, vec![3, BINS], "3 trains × {BINS} bins");
    for (name, path) in &outputs[1..] {
        assert!(
            datasets(path) == reference,
            "{name}: the datasets differ from 1 worker's"
        );
    }

    pyfai_agrees(&run, &geom, &outputs[0].1, None);
    eprintln!(
        "{} outputs (1, 2, 3 workers, 2 processes) identical, {} datasets each",
        outputs.len(),
        reference.len()
    );
}

/// The demo simulates and integrates the detector a geometry file describes; a module of the
/// run missing from the selection, or a malformed file, is a clear error.
#[test]
fn the_demo_takes_a_geometry_file_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (geom, run) = agipd_run(dir.path());
    let output = dir.path().join("demo.h5");
    let stdout = ok(
        Command::new(SHOTFLOW)
            .args(["demo", "--trains", "2", "--pulses", "2", "--geometry"])
            .arg(&geom)
            .arg("--output")
            .arg(&output)
            .arg("--plot")
            .arg(dir.path().join("demo.png"))
            .output()
            .unwrap(),
        "demo --geometry",
    );
    assert!(
        stdout.contains("16 detector modules of 512×128"),
        "{stdout}"
    );
    // The ring the photons were put on is where the profile peaks, away from the ends.
    let file = hdf5::File::open(&output).unwrap();
    let azav = file.dataset("azav").unwrap().read_2d::<f32>().unwrap();
    assert_eq!(azav.ncols(), 64);
    let mean: Vec<f64> = (0..64)
        .map(|b| azav.column(b).iter().map(|v| *v as f64).sum::<f64>() / azav.nrows() as f64)
        .collect();
    let peak = (0..64)
        .max_by(|a, b| mean[*a].total_cmp(&mean[*b]))
        .unwrap();
    assert!(
        (10..54).contains(&peak),
        "profile peaks at bin {peak}: {mean:?}"
    );
    eprintln!(
        "demo --geometry: {} shots × 64 bins, peak at bin {peak}",
        azav.nrows()
    );

    // Modules 4..16 not selected.
    let mut args = extract_args(&run, &geom, &dir.path().join("x.h5"));
    let at = args.iter().position(|a| a == MODULES).unwrap();
    args[at] = "SPB_DET_AGIPD1M-1/DET/[0-3]CH0:xtdf:image.data".into();
    let out = Command::new(SHOTFLOW).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("for modules [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] of the geometry"),
        "{stderr}"
    );

    // A malformed line.
    let text = std::fs::read_to_string(&geom).unwrap();
    let line = text.lines().position(|l| l.starts_with("p3a2/fs")).unwrap() + 1;
    let broken = dir.path().join("broken.geom");
    std::fs::write(
        &broken,
        text.replace(text.lines().nth(line - 1).unwrap(), "p3a2/fs = +0.x -1.q"),
    )
    .unwrap();
    let out = Command::new(SHOTFLOW)
        .args(extract_args(&run, &broken, &dir.path().join("y.h5")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("broken.geom:{line}:")) && stderr.contains("p3a2/fs"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !dir.path().join("y.h5").exists(),
        "no output for a bad geometry"
    );
}

/// `extract --geometry` of a raw AGIPD 1M run (extra-data's mock writer: 16 modules, 3 trains
/// of 8 pulses, mixed gain stages) with every module calibrated on the way (`--calibrate` and
/// `--constants` per module, one file for all): the per-train profile equals numpy's AGIPD
/// correction of the frames extra-data reads, stacked and integrated by pyFAI; 2 processes give
/// 1 worker's datasets.
#[test]
fn the_profile_of_a_calibrated_agipd_1m_equals_numpys_correction_integrated_by_pyfai() {
    use shotflow_operators::gain::agipd::AgipdConstants;
    use shotflow_operators::gain::ModuleConstants;
    let dir = tempfile::tempdir().unwrap();
    let geom = agipd_geometry(dir.path());
    let run = dir.path().join("raw");
    eprint!(
        "{}",
        common::python_reference(
            "extra-data",
            [
                common::reference_script("check_agipd_extract.py").as_os_str(),
                "setup-1m".as_ref(),
                run.as_os_str(),
            ]
        )
    );
    // The mock's cells are 0-7; stages at the levels the run is filled with.
    let (cells, rows, cols) = (8, 512, 128);
    let constants = dir.path().join("agipd.h5");
    shotflow::calibrate::constants_file::save(
        &constants,
        &ModuleConstants::Agipd(
            AgipdConstants::new(
                ndarray::Array4::from_shape_fn((cells, 2, rows, cols), |(k, t, r, c)| {
                    [5200.0, 6800.0][t] + ((k * 7 + r * 3 + c) % 80) as f32 - 40.0
                }),
                ndarray::Array4::from_shape_fn((cells, 3, rows, cols), |(k, s, r, c)| {
                    [4000.0, 5000.0, 5500.0][s] + ((k + r + c * 5) % 60) as f32 - 30.0
                }),
                ndarray::Array4::from_shape_fn((cells, 3, rows, cols), |(k, s, r, c)| {
                    [1.0, 45.0, 1000.0][s] * (0.98 + ((k + r * 3 + c) % 40) as f32 * 0.001)
                }),
                ndarray::Array3::from_shape_fn((cells, rows, cols), |(k, r, c)| {
                    (k + r * 131 + c * 7) % 199 == 0
                }),
            )
            .unwrap(),
        ),
    )
    .unwrap();
    let args = |output: &Path| {
        let mut args = extract_args(&run, &geom, output);
        for m in 0..16 {
            args.extend([
                "--calibrate".to_string(),
                format!("SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf/image.data"),
                "--constants".to_string(),
                constants.display().to_string(),
            ]);
        }
        args
    };
    calibrated_profile_agrees(
        (&run, &geom, &constants),
        dir.path(),
        "SPB_DET_AGIPD1M-1",
        args,
    );
}

/// `extract --geometry` of a raw EuXFEL JUNGFRAU run of two modules (extra-data's mock writer:
/// 3 trains of 16 frames, gain bits in data.gain, storage cells 0-3) on an extra_geom
/// geometry, every module calibrated on the way: the per-train profile equals psana's
/// `calib_jungfrau` of every frame with its cell, stacked and integrated by pyFAI over
/// extra_geom's pixel corners; 2 processes give 1 worker's datasets. A raw (uncalibrated)
/// JUNGFRAU module is refused with the reason.
#[test]
fn the_profile_of_a_calibrated_euxfel_jungfrau_equals_psanas_calibration_integrated_by_pyfai() {
    let dir = tempfile::tempdir().unwrap();
    // Two modules, one above the other, the beam between them.
    let geom = extra_geom_writes(
        &dir.path().join("jungfrau.geom"),
        "JUNGFRAUGeometry.from_module_positions(offsets=[(-515, 20), (-515, -534)])",
    );
    let run = dir.path().join("raw");
    eprint!(
        "{}",
        common::python_reference(
            "extra-data",
            [
                common::reference_script("check_jungfrau_euxfel.py").as_os_str(),
                "setup".as_ref(),
                run.as_os_str(),
                "2".as_ref(),
            ]
        )
    );
    let constants = dir.path().join("jungfrau.h5");
    shotflow::calibrate::constants_file::save(
        &constants,
        &common::jungfrau_module_constants(41, 4),
    )
    .unwrap();
    let select = "SPB_IRDA_JF4M/DET/JNGFR*:daqOutput:data.adc";
    let args = |output: &Path| {
        let mut args = profile_args(&run, select, &geom, output);
        for m in 1..=2 {
            args.extend([
                "--calibrate".to_string(),
                format!("SPB_IRDA_JF4M/DET/JNGFR{m:02}:daqOutput/data.adc"),
                "--constants".to_string(),
                constants.display().to_string(),
            ]);
        }
        args
    };
    calibrated_profile_agrees((&run, &geom, &constants), dir.path(), "SPB_IRDA_JF4M", args);
    // Raw data.adc rows hold a train's 16 frames without their gain bits: refused, saying so.
    let out = Command::new(SHOTFLOW)
        .args(profile_args(
            &run,
            select,
            &geom,
            &dir.path().join("raw.h5"),
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--calibrate it"),
        "{stderr}"
    );
    assert!(!dir.path().join("raw.h5").exists());
}
