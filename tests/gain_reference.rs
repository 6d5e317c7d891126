//! Gain-switching calibration against the facilities' own code, on the same synthetic
//! constants and frames: JUNGFRAU against psana's `UtilsJungfrau.calib_jungfrau`.

mod common;

use ndarray::{s, Array2, Array3, Axis};
use shotflow_operators::gain::jungfrau::{JungfrauConstants, StageCounts, Unit};

/// JUNGFRAU, 3 frames of 2 segments of 512×1024 with mixed stages and invalid gain codes:
/// every pixel equals psana's, bit for bit (the same float32 operations in the same order),
/// and the stage counts equal numpy's.
#[test]
fn jungfrau_equals_psana() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jungfrau.h5");
    let out = std::process::Command::new(common::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/check_jungfrau.py"
        ))
        .arg(&path)
        .env("PS_PARALLEL", "none")
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "psana's reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = hdf5::File::open(&path).unwrap();
    let read4 = |name: &str| {
        file.dataset(name)
            .unwrap()
            .read::<f32, ndarray::Ix4>()
            .unwrap()
    };
    let (peds, offsets, gains) = (read4("pedestals"), read4("offsets"), read4("gains"));
    let mask: Array3<u8> = file.dataset("mask").unwrap().read().unwrap();
    let raw = file
        .dataset("raw")
        .unwrap()
        .read::<u16, ndarray::Ix4>()
        .unwrap();
    let psana = read4("psana");
    let attr = |name: &str| file.attr(name).unwrap().read_scalar::<i64>().unwrap() as u64;

    let (frames, segments) = (raw.shape()[0], raw.shape()[1]);
    let pixels = (raw.shape()[2], raw.shape()[3]);
    let mut counts = StageCounts::default();
    let mut compared = 0usize;
    for segment in 0..segments {
        // psana adds pedestal and offset in float32, as this does.
        let pedestal = (&peds.slice(s![.., segment, .., ..])
            + &offsets.slice(s![.., segment, .., ..]))
            .insert_axis(Axis(1));
        let gain = gains.slice(s![.., segment, .., ..]).insert_axis(Axis(1));
        let constants = JungfrauConstants::new(
            pedestal.to_owned(),
            gain,
            Some(mask.index_axis(Axis(0), segment).to_owned()),
            Unit::Energy,
        )
        .unwrap();
        assert_eq!(constants.pedestal.dim(), (3, 1, pixels.0, pixels.1));
        for frame in 0..frames {
            let mut calibrated = Array2::<f32>::zeros(pixels);
            let c = constants
                .calibrate(
                    raw.slice(s![frame, segment, .., ..]),
                    0,
                    calibrated.view_mut(),
                )
                .unwrap();
            counts.add(&c);
            let reference = psana.slice(s![frame, segment, .., ..]);
            for ((y, x), v) in calibrated.indexed_iter() {
                let r = reference[[y, x]];
                assert_eq!(
                    v.to_bits(),
                    r.to_bits(),
                    "frame {frame} segment {segment} pixel ({y}, {x}): {v} here, {r} in psana (raw {})",
                    raw[[frame, segment, y, x]]
                );
            }
            compared += calibrated.len();
        }
    }
    assert_eq!(
        counts.stages,
        [attr("stage0"), attr("stage1"), attr("stage2")]
    );
    assert_eq!(counts.invalid, attr("invalid"));
    assert!(counts.invalid > 0 && counts.stages.iter().all(|n| *n > 0));
    eprintln!(
        "JUNGFRAU: {compared} pixels of {frames} frames × {segments} segments equal psana's bit for bit; \
         stages {:?}, {} invalid gain codes",
        counts.stages, counts.invalid
    );
}
