//! Gain-switching calibration against the facilities' own code, on the same synthetic
//! constants and frames: JUNGFRAU against psana's `UtilsJungfrau.calib_jungfrau` and PSI's
//! `aare.apply_calibration`.

mod common;

use ndarray::{s, Array2, Array3, Axis};
use shotflow_operators::gain::jungfrau::{CommonMode, JungfrauConstants, StageCounts, Unit};

/// Dataset `name` of `file`, read whole.
fn read<T: hdf5::H5Type, D: ndarray::Dimension>(
    file: &hdf5::File,
    name: &str,
) -> ndarray::Array<T, D> {
    file.dataset(name)
        .and_then(|d| d.read::<T, D>())
        .unwrap_or_else(|e| panic!("dataset {name} of {}: {e}", file.filename()))
}

/// Runs the reference script `script` (psana or numpy) into a fresh HDF5 file; the directory
/// holding it lives as long as the returned guard.
fn reference(script: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reference.h5");
    common::python_reference(script, [common::reference_script(script), path.clone()]);
    (dir, path)
}

/// JUNGFRAU, 4 frames of 512×1024 with every gain code, against PSI's aare: every pixel with a
/// valid code agrees to float32 rounding (aare divides by the gain, this multiplies by its
/// inverse, as psana does: relative 1e-6), and the pixels with the invalid code `0b10`, which
/// aare calibrates as high gain, are 0 here and counted as invalid.
#[test]
fn jungfrau_agrees_with_aare() {
    let (_dir, path) = reference("check_jungfrau_aare.py");
    let file = hdf5::File::open(&path).unwrap();
    let (pedestal, gain, aare) = (
        read::<f32, ndarray::Ix3>(&file, "pedestal"),
        read::<f32, ndarray::Ix3>(&file, "gain"),
        read::<f32, ndarray::Ix3>(&file, "aare"),
    );
    let raw = read::<u16, ndarray::Ix3>(&file, "raw");
    let invalid = file.attr("invalid").unwrap().read_scalar::<i64>().unwrap() as u64;
    let constants = JungfrauConstants::new(
        pedestal.insert_axis(Axis(1)),
        gain.view().insert_axis(Axis(1)),
        None,
        Unit::Energy,
    )
    .unwrap();
    let (frames, rows, cols) = raw.dim();
    let (mut compared, mut flagged, mut worst) = (0usize, 0u64, 0.0f64);
    for frame in 0..frames {
        let mut calibrated = Array2::<f32>::zeros((rows, cols));
        let counts = constants
            .calibrate(raw.slice(s![frame, .., ..]), 0, calibrated.view_mut())
            .unwrap();
        flagged += counts.invalid;
        for ((y, x), &v) in calibrated.indexed_iter() {
            let (code, r) = (raw[[frame, y, x]] >> 14, aare[[frame, y, x]]);
            if code == 0b10 {
                assert_eq!(
                    v, 0.0,
                    "frame {frame} pixel ({y}, {x}): invalid code not set to 0"
                );
                continue;
            }
            let relative = (v as f64 - r as f64).abs() / (r as f64).abs().max(f64::MIN_POSITIVE);
            assert!(
                v == r || relative <= 1e-6,
                "frame {frame} pixel ({y}, {x}): {v} here, {r} in aare (raw {})",
                raw[[frame, y, x]]
            );
            worst = worst.max(if v == r { 0.0 } else { relative });
            compared += 1;
        }
    }
    assert_eq!(flagged, invalid, "pixels with the invalid gain code");
    assert!(compared > 2_000_000 && invalid > 10_000);
    eprintln!(
        "JUNGFRAU: {compared} pixels of {frames} frames of {rows}×{cols} agree with aare \
         (worst relative difference {worst:.1e}); {invalid} with the invalid code are 0 and counted"
    );
}

/// JUNGFRAU, 3 frames of 2 segments of 512×1024 with mixed stages and invalid gain codes:
/// every pixel equals psana's, bit for bit (the same float32 operations in the same order),
/// and the stage counts equal numpy's.
#[test]
fn jungfrau_equals_psana() {
    let (_dir, path) = reference("check_jungfrau.py");
    let file = hdf5::File::open(&path).unwrap();
    let (peds, offsets, gains) = (
        read::<f32, ndarray::Ix4>(&file, "pedestals"),
        read::<f32, ndarray::Ix4>(&file, "offsets"),
        read::<f32, ndarray::Ix4>(&file, "gains"),
    );
    let mask: Array3<u8> = read(&file, "mask");
    let raw = read::<u16, ndarray::Ix4>(&file, "raw");
    let psana = read::<f32, ndarray::Ix4>(&file, "psana");
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
    // With psana's common mode: rows and columns (its default), and banks, rows and columns.
    for (mode, cormax) in [(3u8, 200.0f32), (7, 100.0)] {
        let reference = read::<f32, ndarray::Ix4>(&file, &format!("psana_cm{mode}"));
        let (mut exact, mut worst) = (0usize, 0f32);
        for segment in 0..segments {
            let pedestal = (&peds.slice(s![.., segment, .., ..])
                + &offsets.slice(s![.., segment, .., ..]))
                .insert_axis(Axis(1));
            let mut constants = JungfrauConstants::new(
                pedestal.to_owned(),
                gains.slice(s![.., segment, .., ..]).insert_axis(Axis(1)),
                Some(mask.index_axis(Axis(0), segment).to_owned()),
                Unit::Energy,
            )
            .unwrap();
            constants.common_mode = Some(CommonMode {
                mode,
                cormax,
                npix_min: 10,
            });
            for frame in 0..frames {
                let mut calibrated = Array2::<f32>::zeros(pixels);
                constants
                    .calibrate(
                        raw.slice(s![frame, segment, .., ..]),
                        0,
                        calibrated.view_mut(),
                    )
                    .unwrap();
                let without = psana.slice(s![frame, segment, .., ..]);
                let with = reference.slice(s![frame, segment, .., ..]);
                // The correction must have done something for the comparison to mean much.
                assert!(with.iter().zip(without).filter(|(a, b)| a != b).count() > 100_000);
                for ((y, x), v) in calibrated.indexed_iter() {
                    let r = with[[y, x]];
                    exact += (v.to_bits() == r.to_bits()) as usize;
                    // float32 rounding of values of this size (keV), relative to the value or,
                    // near zero, to one ADU's worth.
                    let scale = r.abs().max(1.0);
                    let error = (v - r).abs() / scale;
                    worst = worst.max(error);
                    assert!(
                        error <= 1e-6,
                        "mode {mode}, frame {frame} segment {segment} pixel ({y}, {x}): {v} here, {r} in psana"
                    );
                }
            }
        }
        eprintln!(
            "JUNGFRAU common mode {mode} (cormax {cormax}): {} pixels, {exact} equal bit for bit, worst relative difference {worst:e}",
            frames * segments * pixels.0 * pixels.1
        );
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

/// AGIPD, 8 frames of 512×128 in random memory cells of 64, with mixed stages and bad pixels:
/// every pixel equals a direct numpy implementation of the published correction (the same
/// float32 operations), and every pixel's stage is the same.
#[test]
fn agipd_equals_the_published_correction_in_numpy() {
    use shotflow_operators::gain::agipd::AgipdConstants;
    let (_dir, path) = reference("check_agipd.py");
    let file = hdf5::File::open(&path).unwrap();
    let bad: Array3<u8> = read(&file, "bad");
    let constants = AgipdConstants::new(
        read::<f32, ndarray::Ix4>(&file, "thresholds"),
        read::<f32, ndarray::Ix4>(&file, "offset"),
        read::<f32, ndarray::Ix4>(&file, "relative_gain"),
        bad.mapv(|b| b != 0),
    )
    .unwrap();
    let cells: ndarray::Array1<u64> = read(&file, "cell");
    let analog: Array3<u16> = read(&file, "analog");
    let gain: Array3<u16> = read(&file, "gain");
    let reference: Array3<f32> = read(&file, "reference");
    let reference_stages: Array3<u8> = read(&file, "stages");
    let (frames, rows, cols) = analog.dim();
    let mut counts = StageCounts::default();
    for frame in 0..frames {
        let mut calibrated = Array2::<f32>::zeros((rows, cols));
        let mut stages = Array2::<u8>::zeros((rows, cols));
        let c = constants
            .calibrate(
                analog.index_axis(Axis(0), frame),
                gain.index_axis(Axis(0), frame),
                cells[frame] as usize,
                calibrated.view_mut(),
                Some(stages.view_mut()),
            )
            .unwrap();
        counts.add(&c);
        assert_eq!(
            stages,
            reference_stages.index_axis(Axis(0), frame),
            "frame {frame}"
        );
        for ((y, x), v) in calibrated.indexed_iter() {
            let r = reference[[frame, y, x]];
            assert_eq!(
                v.to_bits(),
                r.to_bits(),
                "frame {frame} pixel ({y}, {x}): {v} here, {r} in numpy"
            );
        }
    }
    let expected = |k: u8| reference_stages.iter().filter(|s| **s == k).count() as u64;
    assert_eq!(counts.stages, [expected(0), expected(1), expected(2)]);
    assert_eq!(counts.invalid, expected(255));
    assert!(counts.stages.iter().all(|n| *n > 0) && counts.invalid > 0);
    // A cell the constants do not have is an error, not a wrong answer.
    let mut out = Array2::<f32>::zeros((rows, cols));
    assert!(constants
        .calibrate(
            analog.index_axis(Axis(0), 0),
            gain.index_axis(Axis(0), 0),
            64,
            out.view_mut(),
            None
        )
        .is_err());
    eprintln!(
        "AGIPD: {} pixels of {frames} frames equal numpy's bit for bit, stages {:?}, {} bad",
        frames * rows * cols,
        counts.stages,
        counts.invalid
    );
}

/// ePix10ka, 3 frames of 4 segments of 352×384 with pixel configurations in all seven gain
/// ranges (and some in none) and 20 % of values with data bit 14: every pixel equals psana's
/// `calib_epix10ka_any` bit for bit, and the pixels per range equal psana's gain maps.
#[test]
fn epix10ka_equals_psana() {
    use shotflow_operators::gain::epix10ka::{Epix10kaConstants, RangeCounts};
    let (_dir, path) = reference("check_epix10ka.py");
    let file = hdf5::File::open(&path).unwrap();
    let peds = read::<f32, ndarray::Ix4>(&file, "pedestals");
    let gains = read::<f32, ndarray::Ix4>(&file, "gains");
    let mask: Array3<u8> = read(&file, "mask");
    let config: Array3<u8> = read(&file, "config");
    let raw = read::<u16, ndarray::Ix4>(&file, "raw");
    let psana = read::<f32, ndarray::Ix4>(&file, "psana");
    let ranges: Array2<i64> = read(&file, "ranges");
    let (frames, segments, rows, cols) = raw.dim();
    let mut unmatched = 0;
    for frame in 0..frames {
        let mut per_range = RangeCounts::default();
        for segment in 0..segments {
            let constants = Epix10kaConstants::new(
                peds.slice(s![.., segment, .., ..]).to_owned(),
                gains.slice(s![.., segment, .., ..]),
                Some(mask.index_axis(Axis(0), segment).to_owned()),
                config.index_axis(Axis(0), segment).to_owned(),
            )
            .unwrap();
            let mut calibrated = Array2::<f32>::zeros((rows, cols));
            let c = constants
                .calibrate(raw.slice(s![frame, segment, .., ..]), calibrated.view_mut())
                .unwrap();
            for (a, b) in per_range.ranges.iter_mut().zip(c.ranges) {
                *a += b;
            }
            per_range.unmatched += c.unmatched;
            let reference = psana.slice(s![frame, segment, .., ..]);
            for ((y, x), v) in calibrated.indexed_iter() {
                let r = reference[[y, x]];
                assert_eq!(
                    v.to_bits(),
                    r.to_bits(),
                    "frame {frame} segment {segment} pixel ({y}, {x}): {v} here, {r} in psana \
                     (raw {}, configuration {})",
                    raw[[frame, segment, y, x]],
                    config[[segment, y, x]]
                );
            }
        }
        let expected: Vec<u64> = ranges.row(frame).iter().map(|n| *n as u64).collect();
        assert_eq!(per_range.ranges.to_vec(), expected, "frame {frame}");
        assert!(per_range.ranges.iter().all(|n| *n > 0));
        unmatched += per_range.unmatched;
    }
    assert_eq!(
        unmatched as usize,
        frames * segments * rows * cols - ranges.iter().sum::<i64>() as usize
    );
    eprintln!(
        "ePix10ka: {} pixels of {frames} frames × {segments} segments equal psana's bit for bit, \
         all 7 gain ranges, {unmatched} pixels in none",
        frames * segments * rows * cols
    );
}
