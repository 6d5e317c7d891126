//! Per-reduction speed on 512×128 u16 frames (one AGIPD ASIC row... a module) and on
//! 1024×1024 u16 frames, single thread, beside a memory-bandwidth reference measured in the
//! same run: a plain sum over the same bytes.
//!
//! ```text
//! cargo bench --bench operators
//! ```
//!
//! Then a whole AGIPD 1M pulse through a multi-module geometry: azimuthal integration with
//! corrections, and the assembled image.

use std::hint::black_box;
use std::time::Instant;

use ndarray::Array2;
use shotflow_operators::azimuthal::{AzimuthalMap, Corrections, Geometry, Radial};
use shotflow_operators::calibration::{Calibration, CommonMode, Median};
use shotflow_operators::droplets::{droplets, Connectivity};
use shotflow_operators::geometry::{AgipdLayout, Assembly};
use shotflow_operators::photons::{count_photons, PhotonCounter};
use shotflow_operators::roi::{roi_stats, Roi};

/// Enough frames to cycle through more memory than the caches hold (64 MB).
fn frames(shape: (usize, usize)) -> Vec<Array2<u16>> {
    let n = (64 << 20) / (shape.0 * shape.1 * 2);
    (0..n)
        .map(|f| {
            Array2::from_shape_fn(shape, |(i, j)| {
                (100 + (i * 7 + j * 13 + f * 31) % 9 + if (i * j + f) % 997 == 0 { 60 } else { 0 })
                    as u16
            })
        })
        .collect()
}

fn measure(frames: &[Array2<u16>], mut f: impl FnMut(&Array2<u16>) -> f64) -> (f64, f64) {
    let bytes = (frames[0].len() * 2) as f64;
    let mut done = 0usize;
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < 1.0 {
        for frame in frames {
            black_box(f(frame));
        }
        done += frames.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    (done as f64 / seconds, done as f64 * bytes / seconds / 1e9)
}

fn main() {
    // `cargo bench --bench operators -- agipd`: the whole-pulse section alone.
    if std::env::args().any(|a| a == "agipd") {
        return agipd_pulse();
    }
    for shape in [(512, 128), (1024, 1024)] {
        let frames = frames(shape);
        println!(
            "\n{}×{} u16 frames ({} KiB), single thread",
            shape.0,
            shape.1,
            shape.0 * shape.1 * 2 / 1024
        );
        println!(
            "{:<34} {:>12} {:>8} {:>12}",
            "reduction", "frames/s", "GB/s", "× reference"
        );
        let (_, reference) = measure(&frames, |f| {
            f.as_slice().unwrap().iter().map(|&v| v as u64).sum::<u64>() as f64
        });
        let report = |name: &str, (rate, gbs): (f64, f64)| {
            println!(
                "{name:<34} {rate:>12.0} {gbs:>8.2} {:>12.2}",
                reference / gbs
            );
        };
        report(
            "plain sum (memory reference)",
            measure(&frames, |f| {
                f.as_slice().unwrap().iter().map(|&v| v as u64).sum::<u64>() as f64
            }),
        );
        let roi = Roi::new(shape.0 / 4..3 * shape.0 / 4, 0..shape.1);
        report(
            "ROI sum/mean/max, threshold",
            measure(&frames, |f| {
                roi_stats(f.view(), roi.clone(), Some(130.0)).sum
            }),
        );
        report(
            "photon count (arithmetic)",
            measure(&frames, |f| count_photons(f.view(), 100.0, 60.0) as f64),
        );
        let counter = PhotonCounter::new(100.0, 60.0);
        report(
            "photon count (u16 lookup table)",
            measure(&frames, |f| counter.count(f.view()) as f64),
        );
        let geometry = Geometry {
            distance: 0.2,
            poni1: 0.0,
            poni2: 0.0,
            pixel1: 2e-4,
            pixel2: 2e-4,
            energy_kev: 9.3,
        }
        .with_center(shape.0 as f64 / 2.0, shape.1 as f64 / 2.0);
        let map = AzimuthalMap::new(shape, &geometry, Radial::QInvNm, 500, None, None, 1).unwrap();
        let mut sums = vec![0.0; 500];
        report(
            "azimuthal integration (500 bins)",
            measure(&frames, |f| {
                sums.iter_mut().for_each(|s| *s = 0.0);
                map.accumulate(f.view(), &mut sums);
                sums[0]
            }),
        );
        report(
            "droplets (4-connected)",
            measure(&frames, |f| {
                droplets(f.view(), 130.0, Connectivity::Four).len() as f64
            }),
        );
        let mut cal = Calibration::identity(shape);
        cal.pedestal.fill(100.0);
        cal.common_mode = CommonMode::Row { max_adu: 30.0 };
        report(
            "calibration (pedestal, gain, cm)",
            measure(&frames, |f| cal.apply(f.view())[[0, 0]] as f64),
        );
        cal.median = Median::Histogram { bin: 0.5 };
        report(
            "calibration, cm by histogram median",
            measure(&frames, |f| cal.apply(f.view())[[0, 0]] as f64),
        );
    }
    agipd_pulse();
}

/// A whole AGIPD 1M pulse (16 × 512×128 u16): azimuthal integration with solid-angle and
/// polarisation corrections through the precomputed map, against a plain pass over the bytes
/// it reads (the frame and the map); assembly against a plain copy of the frame.
fn agipd_pulse() {
    // AGIPD 1M as extra_geom lays it out: quadrants 3 and 4 turned the other way.
    let detector = AgipdLayout::default().detector().unwrap();
    let pixels = detector.pixels();
    let n = std::env::var("PULSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((64 << 20) / (pixels * 2));
    let pulses: Vec<Vec<u16>> = (0..n)
        .map(|f| {
            (0..pixels)
                .map(|k| {
                    (100 + (k * 13 + f * 31) % 9 + if (k + f) % 997 == 0 { 60 } else { 0 }) as u16
                })
                .collect()
        })
        .collect();
    let corrections = Corrections {
        solid_angle: true,
        polarization: Some(0.99),
    };
    let map = AzimuthalMap::for_detector(
        &detector,
        9.3,
        Radial::QInvNm,
        500,
        None,
        1,
        corrections,
        None,
    )
    .unwrap();
    let index: Vec<u16> = (0..pixels).map(|k| (k % 500) as u16).collect();
    let assembly = Assembly::new(&detector).unwrap();
    let mut image = vec![0u16; assembly.shape().0 * assembly.shape().1];
    let mut copy = vec![0u16; pixels];
    let time = |f: &mut dyn FnMut(&[u16]) -> f64| -> f64 {
        let mut done = 0usize;
        let started = Instant::now();
        while started.elapsed().as_secs_f64() < 1.0 {
            for pulse in &pulses {
                black_box(f(pulse));
            }
            done += pulses.len();
        }
        done as f64 / started.elapsed().as_secs_f64()
    };
    println!(
        "
AGIPD 1M pulse (16 × 512×128 u16, {} MiB), single thread",
        (pixels * 2) >> 20
    );
    println!("{:<44} {:>10} {:>12}", "", "pulses/s", "× reference");
    for round in 0..3 {
        let reference = time(&mut |p| {
            // A plain pass over what the integration reads: the frame and a u16 map.
            p.iter()
                .zip(&index)
                .map(|(&v, &i)| v as u64 + i as u64)
                .sum::<u64>() as f64
        });
        let mut sums = vec![0.0; 500];
        let integrate = time(&mut |p| {
            sums.iter_mut().for_each(|s| *s = 0.0);
            map.accumulate_slice(p, &mut sums);
            map.normalize(&sums)[0]
        });
        let plain_copy = time(&mut |p| {
            copy.copy_from_slice(p);
            copy[0] as f64
        });
        let assemble = time(&mut |p| {
            assembly.assemble_into(p, &mut image);
            image[0] as f64
        });
        println!("round {round}");
        println!(
            "{:<44} {reference:>10.0} {:>12}",
            "plain pass over frame + map (reference)", 1
        );
        println!(
            "{:<44} {integrate:>10.0} {:>12.2}",
            "azimuthal, solid angle + polarisation",
            reference / integrate
        );
        println!(
            "{:<44} {plain_copy:>10.0} {:>12}",
            "plain copy of the frame (reference)", 1
        );
        println!(
            "{:<44} {assemble:>10.0} {:>12.2}",
            "assembled image",
            plain_copy / assemble
        );
    }
}
