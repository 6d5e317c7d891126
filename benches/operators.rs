//! Per-reduction speed, single thread, on 512×128 u16 frames (an AGIPD module) and 1024×1024
//! u16 frames, each beside its own reference measured in the same run: a plain pass over the
//! bytes that reduction reads (the frame, plus the constants or map it uses), built for the
//! same instruction set as the kernel (`Isa::detect`'s choice, `SHOTFLOW_ISA` sets it).
//! Every rate is the best pass over the frames within one second (see `rate`).
//!
//! Then the full-module pipelines, calibrate → photons → ROI → azimuthal, fused and unfused:
//! AGIPD with 352 memory cells of 3-stage constants (typical and all stages mixed) and
//! JUNGFRAU 512×1024; and a whole AGIPD 1M pulse through a multi-module geometry.
//!
//! ```text
//! cargo bench --bench operators            # all of it
//! cargo bench --bench operators -- reductions  # the reductions alone
//! cargo bench --bench operators -- module  # the full-module pipelines alone
//! cargo bench --bench operators -- agipd   # the AGIPD 1M pulse alone
//! ```

use std::hint::black_box;
use std::time::Instant;

use ndarray::{Array2, Array3, Array4};
use shotflow_operators::azimuthal::{AzimuthalMap, Corrections, Geometry, Radial};
use shotflow_operators::calibration::{Calibration, CommonMode, Median};
use shotflow_operators::droplets::{droplets, Connectivity};
use shotflow_operators::fused::{reduce_frame, Reductions};
use shotflow_operators::gain::agipd::AgipdConstants;
use shotflow_operators::gain::jungfrau::{JungfrauConstants, Unit};
use shotflow_operators::geometry::{AgipdLayout, Assembly};
use shotflow_operators::photons::count_photons;
use shotflow_operators::roi::{roi_stats, Roi};
use shotflow_operators::simd::{self, Isa};

/// Enough frames to cycle through more memory than the caches hold (512 MB: this machine's
/// L3 holds 260 MB), as frames fresh from a reader are.
fn frames(shape: (usize, usize)) -> Vec<Array2<u16>> {
    let n = (512 << 20) / (shape.0 * shape.1 * 2);
    (0..n)
        .map(|f| {
            Array2::from_shape_fn(shape, |(i, j)| {
                (100 + (i * 7 + j * 13 + f * 31) % 9 + if (i * j + f) % 997 == 0 { 60 } else { 0 })
                    as u16
            })
        })
        .collect()
}

/// Frames per second of `f` over `frames`, for about a second.
fn rate<F>(frames: &[F], mut f: impl FnMut(usize, &F) -> f64) -> f64 {
    // The best pass over the frames within a second: this VM's neighbours take the core away
    // for tenths of a second at a time, which a mean over the second would count.
    let started = Instant::now();
    let mut best = f64::INFINITY;
    while started.elapsed().as_secs_f64() < 1.0 {
        let pass = Instant::now();
        for (k, frame) in frames.iter().enumerate() {
            black_box(f(k, frame));
        }
        best = best.min(pass.elapsed().as_secs_f64());
    }
    frames.len() as f64 / best
}

fn bytes<T: bytemuck::Pod>(values: &[T]) -> &[u8] {
    bytemuck::cast_slice(values)
}

/// A reduction's row: its rate, and its reference's (a plain pass over `extra` beside each
/// frame's bytes, or over `part` of the frame alone).
fn row(name: &str, frames: &[Array2<u16>], reduction: f64, reference: f64, read: usize) {
    let _ = frames;
    println!(
        "{name:<40} {reduction:>10.0} {:>8.2} {:>10.0} {:>8.2}",
        reduction * read as f64 / 1e9,
        reference,
        reference / reduction
    );
}

fn main() {
    if std::env::args().any(|a| a == "agipd") {
        return agipd_pulse();
    }
    let isa = Isa::detect();
    println!(
        "instruction sets: {} (using {})",
        Isa::available()
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(", "),
        isa.name()
    );
    if std::env::args().any(|a| a == "module") {
        return modules(isa);
    }
    for shape in [(512, 128), (1024, 1024)] {
        reductions(isa, shape);
    }
    if std::env::args().any(|a| a == "reductions") {
        return;
    }
    modules(isa);
    agipd_pulse();
}

/// Each reduction beside the plain pass over what it reads.
fn reductions(isa: Isa, shape: (usize, usize)) {
    let frames = frames(shape);
    let pixels = shape.0 * shape.1;
    println!(
        "\n{}×{} u16 frames ({} KiB), single thread, {}",
        shape.0,
        shape.1,
        pixels * 2 / 1024,
        isa.name()
    );
    println!(
        "{:<40} {:>10} {:>8} {:>10} {:>8}",
        "reduction", "frames/s", "GB/s", "ref f/s", "× ref"
    );
    // The plain pass over each frame plus `extra` (constants, maps) read beside it.
    let plain = |extra: &[&[u8]]| {
        rate(&frames, |_, f| {
            let mut s = simd::sum_words(isa, bytes(f.as_slice().unwrap()));
            for part in extra {
                s = s.wrapping_add(simd::sum_words(isa, part));
            }
            s as f64
        })
    };
    let frame_bytes = pixels * 2;
    let raw_only = plain(&[]);
    row(
        "plain sum of the frame (u16 lanes)",
        &frames,
        rate(&frames, |_, f| {
            simd::sum_u16(isa, f.as_slice().unwrap()) as f64
        }),
        raw_only,
        frame_bytes,
    );
    let roi = Roi::new(shape.0 / 4..3 * shape.0 / 4, 0..shape.1);
    let region = shape.0 / 4 * shape.1 * 2..3 * shape.0 / 4 * shape.1 * 2;
    row(
        "ROI sum/mean/max, threshold",
        &frames,
        rate(&frames, |_, f| {
            roi_stats(f.view(), roi.clone(), Some(130.0)).sum
        }),
        rate(&frames, |_, f| {
            simd::sum_words(isa, &bytes(f.as_slice().unwrap())[region.clone()]) as f64
        }),
        frame_bytes / 2,
    );
    row(
        "photon count (arithmetic)",
        &frames,
        rate(&frames, |_, f| count_photons(f.view(), 100.0, 60.0) as f64),
        raw_only,
        frame_bytes,
    );
    let geometry = panel().with_center(shape.0 as f64 / 2.0, shape.1 as f64 / 2.0);
    let map = AzimuthalMap::new(shape, &geometry, Radial::QInvNm, 500, None, None, 1).unwrap();
    // The map reads a u16 bin per pixel: a plain pass over as many bytes stands in for it.
    let map_bytes = vec![0u16; pixels];
    let mut sums = vec![0.0; 500];
    row(
        "azimuthal integration (500 bins)",
        &frames,
        rate(&frames, |_, f| {
            sums.iter_mut().for_each(|s| *s = 0.0);
            map.accumulate(f.view(), &mut sums);
            sums[0]
        }),
        plain(&[bytes(&map_bytes)]),
        frame_bytes * 2,
    );
    row(
        "droplets (4-connected; exempt)",
        &frames,
        rate(&frames, |_, f| {
            droplets(f.view(), 130.0, Connectivity::Four).len() as f64
        }),
        raw_only,
        frame_bytes,
    );
    let mut cal = Calibration::identity(shape);
    cal.pedestal.fill(100.0);
    let constants: Vec<&[u8]> = vec![
        bytes(cal.pedestal.as_slice().unwrap()),
        bytes(cal.gain.as_slice().unwrap()),
    ];
    let with_constants = plain(&constants);
    let read = frame_bytes + pixels * 9;
    let mut out = vec![0.0f32; pixels];
    let mut calibrate = |cal: &Calibration| {
        rate(&frames, |_, f| {
            cal.apply_rows(isa, f.view(), 0..shape.0, &mut out);
            out[0] as f64
        })
    };
    row(
        "calibration (pedestal, gain, bad)",
        &frames,
        calibrate(&cal),
        with_constants,
        read,
    );
    cal.common_mode = CommonMode::Row { max_adu: 30.0 };
    row(
        "  + row common mode, exact median",
        &frames,
        calibrate(&cal),
        with_constants,
        read,
    );
    cal.median = Median::Bisection { within: 0.5 };
    row(
        "  + row common mode, bisection median",
        &frames,
        calibrate(&cal),
        with_constants,
        read,
    );
    // Calibrate → photons, ROI, azimuthal: fused (one pass) and unfused (the frame first).
    let reductions = Reductions {
        adu_per_photon: Some(60.0),
        rois: vec![(roi.clone(), Some(30.0))],
        azimuthal: Some(&map),
        azimuthal_at: 0,
    };
    let mut all_read = constants.clone();
    all_read.push(bytes(&map_bytes));
    let all_reference = plain(&all_read);
    let mut scratch = Vec::new();
    for (name, cm) in [
        ("cal → photons, ROI, azimuthal: fused", CommonMode::None),
        (
            "  the same with row cm (bisection)",
            CommonMode::Row { max_adu: 30.0 },
        ),
    ] {
        cal.common_mode = cm;
        row(
            name,
            &frames,
            rate(&frames, |_, f| {
                cal.calibrate_reduce(isa, f.view(), &reductions, &mut scratch)
                    .photons as f64
            }),
            all_reference,
            read + pixels * 2,
        );
        let mut frame = Array2::zeros(shape);
        row(
            "  unfused (calibrated frame, then reduced)",
            &frames,
            rate(&frames, |_, f| {
                cal.apply_rows(isa, f.view(), 0..shape.0, frame.as_slice_mut().unwrap());
                reduce_frame(isa, frame.view(), &reductions).photons as f64
            }),
            all_reference,
            read + pixels * 2,
        );
    }
}

/// One AGIPD module's raw data in memory cell `cell`: analog and gain values. `typical`:
/// about 92 % of pixels in high gain, the others in a few bright discs in medium and low gain
/// (as Bragg peaks and the region near the beam give them); otherwise the stages at random.
fn agipd_frame(f: usize, typical: bool) -> (Array2<u16>, Array2<u16>) {
    let (rows, cols) = (512usize, 128usize);
    let mut state = (f as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let discs: Vec<(f64, f64, f64)> = (0..6)
        .map(|_| {
            (
                (next() % rows as u64) as f64,
                (next() % cols as u64) as f64,
                14.0 + (next() % 8) as f64,
            )
        })
        .collect();
    let analog = Array2::from_shape_fn((rows, cols), |(r, c)| {
        4000 + ((r * 31 + c * 17 + f) % 200) as u16
    });
    let gain = Array2::from_shape_fn((rows, cols), |(r, c)| {
        let stage = if typical {
            let d = discs
                .iter()
                .map(|&(y, x, radius)| (r as f64 - y).hypot(c as f64 - x) / radius)
                .fold(f64::INFINITY, f64::min);
            if d < 0.5 {
                2
            } else if d < 1.0 {
                1
            } else {
                0
            }
        } else {
            ((r * 7 + c * 13 + f * 5) ^ (r * c)) % 3
        };
        [4500u16, 5500, 7000][stage]
    });
    (analog, gain)
}

/// Calibrate → photons → ROI → azimuthal on whole modules: AGIPD with 352 cells (typical and
/// mixed stages) and JUNGFRAU 512×1024, fused and unfused, on every instruction set.
fn modules(best: Isa) {
    // AGIPD_CELLS=16 shows the kernels with constants that fit the caches.
    let cells = std::env::var("AGIPD_CELLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(352usize);
    let (rows, cols) = (512usize, 128usize);
    let pixels = rows * cols;
    // Constants vary per cell and pixel; cheap formulas, not noise, so they build in seconds.
    let agipd = AgipdConstants::new(
        Array4::from_shape_fn((cells, 2, rows, cols), |(k, t, r, c)| {
            [5000.0, 6000.0][t] + ((k + r * 3 + c) % 40) as f32
        }),
        Array4::from_shape_fn((cells, 3, rows, cols), |(k, s, r, c)| {
            [4000.0, 5000.0, 5500.0][s] + ((k * 3 + r + c * 5) % 30) as f32 * 0.5
        }),
        Array4::from_shape_fn((cells, 3, rows, cols), |(k, s, r, c)| {
            [1.0, 45.0, 1000.0][s] * (0.95 + ((k + r + c) % 10) as f32 * 0.01)
        }),
        Array3::from_shape_fn((cells, rows, cols), |(k, r, c)| {
            (k + r * 131 + c * 7) % 211 == 0
        }),
    )
    .unwrap();
    let constants_mb = cells * pixels * (8 * 4 + 1) / (1 << 20);
    let geometry = panel().with_center(-20.0, 64.0);
    let map =
        AzimuthalMap::new((rows, cols), &geometry, Radial::QInvNm, 300, None, None, 1).unwrap();
    let reductions = Reductions {
        adu_per_photon: Some(60.0),
        rois: vec![(Roi::new(100..300, 0..128), Some(30.0))],
        azimuthal: Some(&map),
        azimuthal_at: 0,
    };
    // The plain pass's bandwidth: what memory gives one core. 64-bit words, not u16 lanes:
    // widening u16 to u32 kept a Skylake-SP core below its memory's speed (6.7 against
    // 8.4 GB/s).
    let big: Vec<u16> = (0..(256usize << 20) / 2).map(|k| k as u16).collect();
    let bandwidth = rate(std::slice::from_ref(&big), |_, b| {
        simd::sum_words(best, bytes(b)) as f64
    }) * (big.len() * 2) as f64;
    drop(big);
    println!(
        "\nAGIPD module 512×128, {cells} cells of 3-stage constants ({constants_mb} MB), \
         calibrate → photons → ROI → azimuthal (300 bins), single thread"
    );
    println!(
        "memory bandwidth of one core (plain sum, {}): {:.1} GB/s",
        best.name(),
        bandwidth / 1e9
    );
    // Bytes a frame must bring from memory: analog and gain, the map, the constants of the
    // stages its pixels are in (offset and gain for high gain, all eight planes when stages
    // are mixed at random, since every cache line then holds every stage), the lowest
    // threshold of every 16 pixels and the cell's list of bad pixels.
    let bad_per_cell = agipd.bad().iter().filter(|b| **b).count() as f64 / cells as f64;
    for typical in [true, false] {
        let frames: Vec<(Array2<u16>, Array2<u16>)> =
            (0..cells).map(|f| agipd_frame(f, typical)).collect();
        let high = frames
            .iter()
            .map(|(_, g)| g.iter().filter(|v| **v == 4500).count())
            .sum::<usize>() as f64
            / (cells * pixels) as f64;
        let planes = if typical {
            2.0 + 6.0 * (1.0 - high)
        } else {
            8.0
        };
        let per_frame =
            pixels as f64 * (2.0 + 2.0 + 2.0 + 4.0 * planes + 4.0 / 16.0) + 4.0 * bad_per_cell;
        println!(
            "\n{} ({:.0} % of pixels in high gain): at most {:.0} frames/s by memory \
             ({:.2} MB a frame)",
            if typical {
                "typical"
            } else {
                "all stages mixed"
            },
            high * 100.0,
            bandwidth / per_frame,
            per_frame / 1e6
        );
        println!("{:<40} {:>10} {:>8}", "", "frames/s", "GB/s");
        for isa in Isa::available() {
            let mut scratch = Vec::new();
            let fused = rate(&frames, |k, (a, g)| {
                let (r, _) = agipd
                    .calibrate_reduce(
                        isa,
                        a.view(),
                        g.view(),
                        k % cells,
                        &reductions,
                        &mut scratch,
                    )
                    .unwrap();
                r.photons as f64
            });
            println!(
                "{:<40} {fused:>10.0} {:>8.2}",
                format!("fused, {}", isa.name()),
                fused * per_frame / 1e9
            );
        }
        // Where the time goes: the fused pass with fewer reductions.
        let steps = [
            ("  calibration alone", Reductions::default()),
            (
                "  + photons",
                Reductions {
                    adu_per_photon: Some(60.0),
                    ..Reductions::default()
                },
            ),
            (
                "  + ROI",
                Reductions {
                    azimuthal: None,
                    ..reductions.clone()
                },
            ),
        ];
        for (name, partial) in steps {
            let mut scratch = Vec::new();
            let r = rate(&frames, |k, (a, g)| {
                let (r, _) = agipd
                    .calibrate_reduce(best, a.view(), g.view(), k % cells, &partial, &mut scratch)
                    .unwrap();
                r.photons as f64
            });
            println!("{name:<40} {r:>10.0} {:>8.2}", r * per_frame / 1e9);
        }
        let mut frame = Array2::zeros((rows, cols));
        let unfused = rate(&frames, |k, (a, g)| {
            agipd
                .calibrate(a.view(), g.view(), k % cells, frame.view_mut(), None)
                .unwrap();
            reduce_frame(best, frame.view(), &reductions).photons as f64
        });
        println!(
            "{:<40} {unfused:>10.0} {:>8.2}",
            format!("unfused, {}", best.name()),
            unfused * per_frame / 1e9
        );
    }
    drop(agipd);

    // JUNGFRAU 512×1024, 16 storage cells (EuXFEL's burst mode), keV, no common mode.
    let (cells, rows, cols) = (16usize, 512usize, 1024usize);
    let pedestal = Array4::from_shape_fn((3, cells, rows, cols), |(s, k, r, c)| {
        [1000.0, 12000.0, 13000.0][s] + ((k + r + c * 3) % 50) as f32
    });
    let gain = Array4::from_shape_fn((3, cells, rows, cols), |(s, k, r, c)| {
        [40.0, 1.5, 0.1][s] * (0.95 + ((k + r * 7 + c) % 10) as f32 * 0.01)
    });
    let jungfrau = JungfrauConstants::new(pedestal, gain.view(), None, Unit::Energy).unwrap();
    drop(gain);
    let map = AzimuthalMap::new(
        (rows, cols),
        &geometry.with_center(256.0, 512.0),
        Radial::QInvNm,
        300,
        None,
        None,
        1,
    )
    .unwrap();
    let reductions = Reductions {
        adu_per_photon: Some(9.0),
        rois: vec![(Roi::new(100..300, 200..800), Some(4.0))],
        azimuthal: Some(&map),
        azimuthal_at: 0,
    };
    let frames: Vec<Array2<u16>> = (0..2 * cells)
        .map(|f| {
            Array2::from_shape_fn((rows, cols), |(r, c)| {
                let hot = (r / 32 + c / 64 + f) % 23 == 0;
                if hot {
                    (1 << 14) | 12500
                } else {
                    1000 + ((r * 5 + c * 3 + f) % 80) as u16
                }
            })
        })
        .collect();
    let per_frame = (rows * cols) as f64 * (2.0 + 2.0 + 1.0 + 8.0 * 1.1);
    println!(
        "\nJUNGFRAU 512×1024, {cells} storage cells, mostly high gain: at most {:.0} frames/s \
         by memory ({:.2} MB a frame)",
        bandwidth / per_frame,
        per_frame / 1e6
    );
    println!("{:<40} {:>10} {:>8}", "", "frames/s", "GB/s");
    for isa in Isa::available() {
        let mut scratch = Vec::new();
        let fused = rate(&frames, |k, f| {
            jungfrau
                .calibrate_reduce(isa, f.view(), k % cells, &reductions, &mut scratch)
                .unwrap()
                .0
                .photons as f64
        });
        println!(
            "{:<40} {fused:>10.0} {:>8.2}",
            format!("fused, {}", isa.name()),
            fused * per_frame / 1e9
        );
    }
    let mut scratch = Vec::new();
    let alone = rate(&frames, |k, f| {
        jungfrau
            .calibrate_reduce(
                best,
                f.view(),
                k % cells,
                &Reductions::default(),
                &mut scratch,
            )
            .unwrap()
            .1
            .stages[0] as f64
    });
    println!(
        "{:<40} {alone:>10.0} {:>8.2}",
        "  calibration alone",
        alone * per_frame / 1e9
    );
    let mut frame = Array2::zeros((rows, cols));
    let unfused = rate(&frames, |k, f| {
        jungfrau
            .calibrate(f.view(), k % cells, frame.view_mut())
            .unwrap();
        reduce_frame(best, frame.view(), &reductions).photons as f64
    });
    println!(
        "{:<40} {unfused:>10.0} {:>8.2}",
        format!("unfused, {}", best.name()),
        unfused * per_frame / 1e9
    );
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
    let time = |f: &mut dyn FnMut(&[u16]) -> f64| -> f64 { rate(&pulses, |_, p| f(p)) };
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

/// The benches' detector: 200 µm pixels 20 cm from the sample at 9.3 keV (center set by each).
fn panel() -> Geometry {
    Geometry {
        distance: 0.2,
        poni1: 0.0,
        poni2: 0.0,
        pixel1: 2e-4,
        pixel2: 2e-4,
        energy_kev: 9.3,
    }
}
