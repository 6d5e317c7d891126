//! Interned field names.
//!
//! A field name is a `/`-separated path such as `"AGIPD/image"` or `"xgm/pulse_energy"`.
//! Events carry [`Key`]s, pointers to the name interned once per process, rather than strings,
//! so that looking up, copying and comparing a field costs one integer operation, an event
//! holds no heap-allocated names, and a key's name is at hand without a lookup. Names are
//! found again by their FNV-1a hash; each thread keeps its own table of the names it has seen,
//! so only a name's first sighting on a thread takes the process-wide lock.
//!
//! Between processes a key travels as its name (timely moves data with serde/bincode), and the
//! receiving process interns it again, so keys created dynamically on one process are understood
//! everywhere.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{OnceLock, RwLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The interned name of an event field.
///
/// A key points at its interned name, so [`Key::name`] is a plain load; equality compares the
/// pointers. Keys order by name, so whatever lists keys in order (datasets, schemas) does not
/// depend on hashes.
///
/// # Examples
///
/// ```
/// use shotflow::event::Key;
///
/// let energy = Key::new("xgm/pulse_energy");
/// assert_eq!(energy.name(), "xgm/pulse_energy");
/// assert_eq!(energy, Key::new("xgm/pulse_energy"));
/// assert_eq!(energy.components().collect::<Vec<_>>(), ["xgm", "pulse_energy"]);
/// assert!(Key::new("b") > Key::new("a") && Key::new("a") < Key::new("a/b"));
/// ```
#[derive(Copy, Clone)]
pub struct Key(&'static Interned);

/// A name, once per process, with its hash.
#[derive(Debug)]
struct Interned {
    hash: u64,
    name: &'static str,
}

/// Every name interned in this process, by hash. Only first sightings of a name (per thread)
/// take its lock.
fn registry() -> &'static RwLock<HashMap<u64, &'static Interned>> {
    static REGISTRY: OnceLock<RwLock<HashMap<u64, &'static Interned>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

thread_local! {
    /// This thread's view of the registry: interning a name it has seen takes no lock, which
    /// matters where keys are made per field per event (decoding a recording, events arriving
    /// from another process).
    static SEEN: RefCell<HashMap<u64, &'static Interned>> = RefCell::new(HashMap::new());
}

/// FNV-1a: stable across processes and builds, unlike `std`'s randomly seeded hasher.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

fn check(existing: &Interned, name: &str) {
    assert_eq!(
        existing.name, name,
        "field names {:?} and {name:?} collide",
        existing.name
    );
}

impl Key {
    /// Interns `name` and returns its key. The first call for a name in a process takes a
    /// lock; later calls on the same thread take none. Still, build keys once outside
    /// per-event closures where you can.
    ///
    /// # Panics
    ///
    /// If two different names hash to the same 64-bit value (never observed; it would make
    /// fields indistinguishable, so it is refused rather than ignored).
    pub fn new(name: &str) -> Key {
        let hash = fnv1a(name.as_bytes());
        if let Some(seen) = SEEN.with(|seen| seen.borrow().get(&hash).copied()) {
            check(seen, name);
            return Key(seen);
        }
        let interned = Key::intern(hash, name);
        SEEN.with(|seen| seen.borrow_mut().insert(hash, interned));
        Key(interned)
    }

    fn intern(hash: u64, name: &str) -> &'static Interned {
        if let Some(existing) = registry().read().expect("key registry").get(&hash) {
            check(existing, name);
            return existing;
        }
        let mut map = registry().write().expect("key registry");
        let interned = *map.entry(hash).or_insert_with(|| {
            Box::leak(Box::new(Interned {
                hash,
                name: Box::leak(name.to_owned().into_boxed_str()),
            }))
        });
        check(interned, name);
        interned
    }

    /// The field name this key was interned from.
    #[inline]
    pub fn name(&self) -> &'static str {
        self.0.name
    }

    /// The `/`-separated components of the name (HDF5 groups, then the dataset).
    pub fn components(&self) -> std::str::Split<'static, char> {
        self.name().split('/')
    }
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        // One interned record per name in the process.
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash.hash(state)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        self.name().cmp(other.name())
    }
}

impl From<&str> for Key {
    fn from(name: &str) -> Key {
        Key::new(name)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(Key::new(name))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_serialization_by_name() {
        let key = Key::new("detector/roi_sum");
        let bytes = bincode::serialize(&key).unwrap();
        assert!(bytes.windows(7).any(|w| w == b"roi_sum"));
        let back: Key = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, key);
    }

    #[test]
    fn keys_order_by_name_not_by_hash() {
        let mut keys: Vec<Key> = ["zeta", "alpha", "mid/x", "mid"].map(Key::new).to_vec();
        keys.sort();
        let names: Vec<&str> = keys.iter().map(Key::name).collect();
        assert_eq!(names, ["alpha", "mid", "mid/x", "zeta"]);
    }

    #[test]
    fn one_interned_name_across_threads() {
        let here = Key::new("det/threads");
        let there = std::thread::spawn(|| Key::new("det/threads"))
            .join()
            .unwrap();
        assert_eq!(here, there);
        assert!(std::ptr::eq(here.name(), there.name()));
    }

    #[test]
    fn hash_is_stable() {
        // Processes of one run must agree; a changed hash would also change file layouts.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
