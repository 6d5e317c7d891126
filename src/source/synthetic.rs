//! A deterministic, seedable generator of XFEL-like events.
//!
//! Every event is a pure function of `(seed, index)`, so a run produces the same events
//! whatever the number of workers or processes, and tests can compute the expected results
//! sequentially with [`Synthetic::event`].
//!
//! Each event carries what a pump-probe experiment records per shot:
//!
//! * `pulse_energy` (f64, mJ): SASE-like fluctuations, gamma-distributed around 1 mJ;
//! * `delay` (f64, ps): a scan stepping from `delay_start` to `delay_stop`, held for an equal
//!   number of consecutive events per step;
//! * `laser_on` (bool): the pump laser fires on every other shot;
//! * `frame` (u16, optional, default 512×128): a pedestal of 100 ADU with 3 ADU of noise and
//!   photons of 60 ADU each on a ring; the photon yield scales with the pulse energy and, when
//!   the laser is on after time zero, rises with the delay (the "pump-probe signal").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma, Normal, Poisson};
use rand_pcg::Pcg64Mcg;
use timely::dataflow::{Scope, StreamVec};

use crate::event::{Event, Key};
use crate::flow::Batch;
use crate::source::{source_loop, Produced, Schedule};

/// Pedestal of the simulated detector, in ADU.
pub const PEDESTAL: u16 = 100;
/// Signal of one photon, in ADU.
pub const PHOTON_ADU: u16 = 60;

/// Configuration of the synthetic source.
///
/// # Examples
///
/// ```
/// use shotflow::source::Synthetic;
///
/// let config = Synthetic { events: 10, frame: None, ..Synthetic::default() };
/// let keys = config.keys();
/// let e = config.event(3);
/// assert_eq!(e.id, config.first_id + 3);
/// assert_eq!(e.get::<bool>(keys.laser_on), Some(false));
/// assert!(e.get_f64(keys.pulse_energy).unwrap() > 0.0);
/// assert_eq!(config.event(3), e); // deterministic
/// ```
#[derive(Clone, Debug)]
pub struct Synthetic {
    /// Number of events.
    pub events: u64,
    /// Events per batch (one timely timestamp each).
    pub batch_size: u64,
    /// Seed of all random numbers.
    pub seed: u64,
    /// Id of the first event (EuXFEL train ids are around 10⁹).
    pub first_id: u64,
    /// Detector frame shape `[rows, columns]`, or no frame.
    pub frame: Option<[usize; 2]>,
    /// Mean number of photons per frame at 1 mJ.
    pub photons: f64,
    /// Number of delay steps in the scan.
    pub delay_steps: u32,
    /// First delay, ps.
    pub delay_start: f64,
    /// Last delay, ps.
    pub delay_stop: f64,
    /// Events per second the run delivers, as a facility does (27 000 at EuXFEL); `None`: as
    /// fast as the pipeline takes them.
    pub rate: Option<f64>,
}

impl Default for Synthetic {
    fn default() -> Self {
        Synthetic {
            events: 10_000,
            batch_size: 256,
            seed: 2026,
            first_id: 1_000_000_000,
            frame: Some([512, 128]),
            photons: 400.0,
            delay_steps: 8,
            delay_start: -1.0,
            delay_stop: 2.5,
            rate: None,
        }
    }
}

/// The keys of the synthetic source's fields.
#[derive(Copy, Clone, Debug)]
pub struct SyntheticKeys {
    /// `pulse_energy`, f64, mJ.
    pub pulse_energy: Key,
    /// `delay`, f64, ps.
    pub delay: Key,
    /// `laser_on`, bool.
    pub laser_on: Key,
    /// `frame`, u16 `[rows, columns]`.
    pub frame: Key,
}

/// Number of precomputed noise samples; a power of two so that wrapping is a mask.
const NOISE_TABLE: usize = 1 << 20;

/// The noise table of `seed`, made once per process: [`Synthetic::event`] is called per event
/// by references and tests.
pub(crate) fn noise_table(seed: u64) -> Arc<Vec<i8>> {
    static TABLES: OnceLock<Mutex<HashMap<u64, Arc<Vec<i8>>>>> = OnceLock::new();
    let mut tables = TABLES.get_or_init(Default::default).lock().unwrap();
    Arc::clone(tables.entry(seed).or_insert_with(|| make_noise_table(seed)))
}

fn make_noise_table(seed: u64) -> Arc<Vec<i8>> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x6e6f_6973_6521);
    let normal = Normal::<f64>::new(0.0, 3.0).unwrap();
    Arc::new(
        (0..NOISE_TABLE)
            .map(|_| normal.sample(&mut rng).round().clamp(-127.0, 127.0) as i8)
            .collect(),
    )
}

/// Reproducible stream of random numbers for one event, independent of every other event.
pub(crate) fn event_rng(seed: u64, index: u64) -> Pcg64Mcg {
    // splitmix64 spreads neighbouring indices over the whole seed space
    let mut z = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    Pcg64Mcg::seed_from_u64(z ^ (z >> 31))
}

impl Synthetic {
    /// The field keys.
    pub fn keys(&self) -> SyntheticKeys {
        SyntheticKeys {
            pulse_energy: Key::new("pulse_energy"),
            delay: Key::new("delay"),
            laser_on: Key::new("laser_on"),
            frame: Key::new("frame"),
        }
    }

    /// Number of batches.
    pub fn batches(&self) -> u64 {
        self.events.div_ceil(self.batch_size.max(1))
    }

    /// The delay (ps) of event `index`.
    pub fn delay_of(&self, index: u64) -> f64 {
        let steps = self.delay_steps.max(1) as u64;
        let per_step = self.events.div_ceil(steps).max(1);
        let step = (index / per_step).min(steps - 1);
        if steps == 1 {
            self.delay_start
        } else {
            self.delay_start
                + (self.delay_stop - self.delay_start) * step as f64 / (steps - 1) as f64
        }
    }

    /// Event number `index` (`0..events`), computed alone.
    pub fn event(&self, index: u64) -> Event {
        self.generator().event(index)
    }

    fn generator(&self) -> Generator {
        Generator {
            config: self.clone(),
            keys: self.keys(),
            noise: self.frame.map(|_| noise_table(self.seed)),
        }
    }
}

/// The per-worker state of the generator (the shared noise table, the keys).
struct Generator {
    config: Synthetic,
    keys: SyntheticKeys,
    noise: Option<Arc<Vec<i8>>>,
}

impl Generator {
    fn event(&self, index: u64) -> Event {
        let c = &self.config;
        let mut rng = event_rng(c.seed, index);
        // Gamma(k, 1/k): mean 1 mJ, relative spread 1/sqrt(k), like SASE with k modes.
        let energy: f64 = Gamma::new(12.0, 1.0 / 12.0).unwrap().sample(&mut rng);
        let delay = self.config.delay_of(index);
        let laser_on = index.is_multiple_of(2);
        let mut event = Event::with_capacity(c.first_id + index, 4);
        event.set(self.keys.pulse_energy, energy);
        event.set(self.keys.delay, delay);
        event.set(self.keys.laser_on, laser_on);
        if let (Some([rows, cols]), Some(noise)) = (c.frame, &self.noise) {
            let pump = if laser_on && delay > 0.0 {
                1.0 + 0.5 * (1.0 - (-delay / 0.8).exp())
            } else {
                1.0
            };
            let mean = c.photons * energy * pump;
            let frame = render_frame(&mut rng, noise, [rows, cols], mean);
            event.set(self.keys.frame, ArrayD::from(frame.into_dyn()));
        }
        event
    }
}

/// A dark frame: the pedestal and noise from the shared table.
pub(crate) fn noise_frame(
    rng: &mut Pcg64Mcg,
    noise: &[i8],
    [rows, cols]: [usize; 2],
) -> Array2<u16> {
    let mut pixels = vec![0u16; rows * cols];
    let mut at = rng.gen_range(0..NOISE_TABLE);
    // Runs of the table up to its end, so the loop is a plain vectorised add (a wrapped index
    // per pixel kept it scalar: the generator took half the demo's time).
    let mut rest = pixels.as_mut_slice();
    while !rest.is_empty() {
        let run = rest.len().min(NOISE_TABLE - at);
        let (now, later) = rest.split_at_mut(run);
        for (px, n) in now.iter_mut().zip(&noise[at..at + run]) {
            *px = (PEDESTAL as i16 + *n as i16) as u16;
        }
        rest = later;
        at = 0;
    }
    Array2::from_shape_vec((rows, cols), pixels).expect("rows × cols pixels")
}

/// A detector frame: pedestal, noise from the shared table, and a Poisson number of photons
/// (mean `mean_photons`) on a ring around the centre.
pub(crate) fn render_frame(
    rng: &mut Pcg64Mcg,
    noise: &[i8],
    [rows, cols]: [usize; 2],
    mean_photons: f64,
) -> Array2<u16> {
    let mut frame = noise_frame(rng, noise, [rows, cols]);
    let n = if mean_photons > 0.0 {
        Poisson::new(mean_photons).unwrap().sample(rng) as usize
    } else {
        0
    };
    let (cy, cx) = (rows as f64 / 2.0, cols as f64 / 2.0);
    let radius = (rows.min(cols) as f64) * 0.35;
    let ring = Normal::new(radius, radius * 0.08).unwrap();
    for _ in 0..n {
        let r = ring.sample(rng);
        let phi = rng.gen_range(0.0..std::f64::consts::TAU);
        let (y, x) = (cy + r * phi.sin(), cx + r * phi.cos());
        if y >= 0.0 && x >= 0.0 && (y as usize) < rows && (x as usize) < cols {
            let px = &mut frame[[y as usize, x as usize]];
            *px = px.saturating_add(PHOTON_ADU);
        }
    }
    frame
}

/// Adds the synthetic source to a dataflow scope.
pub trait SyntheticSource<'scope> {
    /// A stream of the configured events in batches of `batch_size`, spread over the workers.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use shotflow::sink::SinkExt;
    /// use shotflow::source::{Synthetic, SyntheticSource};
    ///
    /// let config = Synthetic { events: 1000, batch_size: 64, frame: None, ..Synthetic::default() };
    /// let expected: Vec<_> = (0..1000).map(|i| config.event(i)).collect();
    /// let (c, seen) = (config.clone(), Arc::new(Mutex::new(Vec::new())));
    /// let out = Arc::clone(&seen);
    /// timely::example(move |scope| {
    ///     scope.synthetic(&c).ordered("Collect", move |_, events| out.lock().unwrap().extend_from_slice(events));
    /// });
    /// let events = seen.lock().unwrap().clone();
    /// assert_eq!(events, expected);
    /// ```
    fn synthetic(self, config: &Synthetic) -> StreamVec<'scope, Batch, Event>;
}

impl<'scope> SyntheticSource<'scope> for Scope<'scope, Batch> {
    fn synthetic(self, config: &Synthetic) -> StreamVec<'scope, Batch, Event> {
        let generator = config.generator();
        let (events, size) = (config.events, config.batch_size.max(1));
        crate::flow::meter::expect(self.index(), events, "events");
        let rate = config.rate.filter(|r| r.is_finite() && *r > 0.0);
        let started = Instant::now();
        let schedule = Schedule::Owned {
            batches: config.batches(),
        };
        source_loop(self, "Synthetic", schedule, move |batch| {
            if let Some(rate) = rate {
                // Batch b is due when the facility would have delivered its first event.
                let due = Duration::from_secs_f64((batch * size) as f64 / rate);
                let now = started.elapsed();
                if now < due {
                    return Ok(Produced::NotYet(due - now));
                }
            }
            let range = batch * size..((batch + 1) * size).min(events);
            Ok(Produced::Batch(range.map(|i| generator.event(i)).collect()))
        })
    }
}
