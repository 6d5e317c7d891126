//! Random numbers that do not depend on how a run is split: one stream per
//! `(seed, event id, stream name)`.
//!
//! Sub-sampling, bootstrap error bars, simulated noise or a random train selection then give
//! the same result on any number of workers and processes, and after a resume, because an
//! event's random numbers depend on nothing but the event. (Dask's tutorial gives each *task*
//! a jumped PCG64 stream; a result then still depends on how events were split into tasks.)
//!
//! The mapping from the triple to the generator is part of shotflow's results and is pinned by
//! a test: a later version must not change it.

use rand_pcg::Pcg64;

use super::EventId;

/// SplitMix64's finaliser: spreads neighbouring inputs (event ids 1, 2, 3) over the whole range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of the stream name: stable across Rust versions, unlike `std`'s hasher.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The random generator of `event` in the stream `name` of a run seeded with `seed`
/// (a PCG64: [`rand::Rng`] gives it every distribution).
///
/// # Examples
///
/// Keep a random tenth of the shots, the same tenth whatever the worker count:
///
/// ```
/// use rand::Rng;
/// use shotflow::event::event_rng;
///
/// let keep = |id: u64| event_rng(2026, id, "subsample").gen_bool(0.1);
/// let kept: Vec<u64> = (0..1000).filter(|&id| keep(id)).collect();
/// assert!(kept.len() > 60 && kept.len() < 140);
/// assert_eq!(kept, (0..1000).filter(|&id| keep(id)).collect::<Vec<_>>());
/// assert_ne!(event_rng(2026, 7, "noise").gen::<u64>(), event_rng(2026, 7, "subsample").gen::<u64>());
/// ```
pub fn event_rng(seed: u64, event: EventId, name: &str) -> Pcg64 {
    let state = ((mix(seed ^ mix(event)) as u128) << 64) | mix(event ^ mix(seed)) as u128;
    Pcg64::new(state, (name_hash(name) as u128) << 1 | 1)
}

#[cfg(test)]
mod tests {
    use rand::RngCore;

    use super::event_rng;

    /// Results computed with these numbers must be reproducible by later versions.
    #[test]
    fn the_streams_are_pinned() {
        let first: Vec<u64> = [
            (0, 0, "a"),
            (2026, 1_000_000_000, "subsample"),
            (1, 2, "noise"),
        ]
        .iter()
        .map(|&(seed, id, name)| event_rng(seed, id, name).next_u64())
        .collect();
        assert_eq!(first, PINNED);
    }

    const PINNED: [u64; 3] = [
        5828338073968235390,
        8636352094947479257,
        8974155799329312980,
    ];
}
