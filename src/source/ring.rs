//! Photons scattered onto a powder ring of a real detector: the simulated data follow the
//! detector's geometry, so a ring stays a ring after assembly and its azimuthal profile peaks
//! at one scattering angle, across every module and tilt.

use rand::Rng;
use rand_distr::{Distribution, Normal};
use shotflow_operators::geometry::{Detector, Vec3};

/// One panel, prepared to find where a ray from the sample crosses it.
#[derive(Clone, Debug)]
struct Target {
    module: usize,
    min_ss: usize,
    min_fs: usize,
    ss_len: f64,
    fs_len: f64,
    corner: Vec3,
    normal: Vec3,
    /// `corner · normal`: the ray `t d` meets the panel's plane at `t = plane / (d · normal)`.
    plane: f64,
    /// Dual vectors of the fast- and slow-scan steps within the plane: `(p − corner) · u` is
    /// the fast-scan pixel coordinate of a point `p` of the plane, `· v` the slow-scan one.
    u: Vec3,
    v: Vec3,
}

fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// A powder ring seen by a detector: photons leave the sample at a scattering angle drawn
/// around the ring's and a uniform azimuth, and land on the pixel their ray crosses (or in a
/// gap, or beside the detector).
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    targets: Vec<Target>,
    /// Rows and columns of one module's data.
    rows: usize,
    columns: usize,
    two_theta: Normal<f64>,
}

impl Ring {
    /// The ring 40% of the way from the detector's smallest to its largest scattering angle,
    /// 3% of that span wide: it crosses the modules of a whole detector or of a quadrant.
    pub fn new(detector: &Detector) -> Ring {
        let (lo, hi) = detector
            .pixel_positions()
            .iter()
            .map(|p| p[0].hypot(p[1]).atan2(p[2]))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
                (lo.min(t), hi.max(t))
            });
        let span = (hi - lo).max(1e-6);
        let targets = detector
            .panels
            .iter()
            .filter(|p| !p.bad)
            .map(|p| {
                let normal = cross(p.fs, p.ss);
                let (a, b) = (cross(p.ss, normal), cross(normal, p.fs));
                let u = a.map(|x| x / dot(p.fs, a));
                let v = b.map(|x| x / dot(p.ss, b));
                Target {
                    module: p.module,
                    min_ss: p.min_ss,
                    min_fs: p.min_fs,
                    ss_len: p.ss_len as f64,
                    fs_len: p.fs_len as f64,
                    corner: p.corner,
                    normal,
                    plane: dot(p.corner, normal),
                    u,
                    v,
                }
            })
            .collect();
        let (_, rows, columns) = detector.shape();
        Ring {
            targets,
            rows,
            columns,
            two_theta: Normal::new(lo + 0.4 * span, 0.03 * span).expect("a finite ring width"),
        }
    }

    /// Where `photons` photons land: `(module, index in the module's row-major data)` of each
    /// that hits a pixel.
    pub fn hits(&self, rng: &mut impl Rng, photons: usize) -> Vec<(usize, usize)> {
        let mut hits = Vec::with_capacity(photons);
        for _ in 0..photons {
            let (sin_t, cos_t) = self.two_theta.sample(rng).sin_cos();
            let (sin_p, cos_p) = rng.gen_range(0.0..std::f64::consts::TAU).sin_cos();
            let d = [sin_t * cos_p, sin_t * sin_p, cos_t];
            if let Some(hit) = self.targets.iter().find_map(|t| self.cross(t, d)) {
                hits.push(hit);
            }
        }
        hits
    }

    fn cross(&self, t: &Target, d: Vec3) -> Option<(usize, usize)> {
        let along = dot(d, t.normal);
        if along == 0.0 {
            return None;
        }
        let reach = t.plane / along;
        if reach <= 0.0 {
            return None;
        }
        let p = [
            reach * d[0] - t.corner[0],
            reach * d[1] - t.corner[1],
            reach * d[2] - t.corner[2],
        ];
        let (fs, ss) = (dot(p, t.u), dot(p, t.v));
        if !(0.0..t.fs_len).contains(&fs) || !(0.0..t.ss_len).contains(&ss) {
            return None;
        }
        let (row, column) = (t.min_ss + ss as usize, t.min_fs + fs as usize);
        Some((t.module, row * self.columns + column))
            .filter(|_| row < self.rows && column < self.columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use shotflow_operators::geometry;

    /// On a tilted, rotated panel the hit pixels' scattering angles centre on the ring's: the
    /// rays are traced through the panel's own fast- and slow-scan vectors.
    #[test]
    fn photons_land_on_the_pixels_their_rays_cross() {
        let poni = "Distance: 0.1\nPoni1: 0.004\nPoni2: 0.003\nRot1: 0.05\nRot2: -0.03\n\
                    Rot3: 0.2\nPixelSize1: 1e-4\nPixelSize2: 1e-4\nWavelength: 1e-10\n";
        let detector = geometry::parse(poni, "t.poni", Some((80, 60))).unwrap();
        let ring = Ring::new(&detector);
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        let hits = ring.hits(&mut rng, 5000);
        assert!(hits.len() > 1000, "{} hits", hits.len());
        let positions = detector.pixel_positions();
        let angles: Vec<f64> = hits
            .iter()
            .map(|&(m, k)| {
                assert_eq!(m, 0);
                let p = positions[k];
                p[0].hypot(p[1]).atan2(p[2])
            })
            .collect();
        let mean = angles.iter().sum::<f64>() / angles.len() as f64;
        let want = ring.two_theta.mean();
        // A pixel is 1e-4 rad across at 0.1 m; the ring is ~50 pixels wide.
        assert!((mean - want).abs() < 5e-4, "mean 2θ {mean} vs {want}");
    }
}
