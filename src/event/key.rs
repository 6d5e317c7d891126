//! Interned field names.
//!
//! A field name is a `/`-separated path such as `"AGIPD/image"` or `"xgm/pulse_energy"`.
//! Events carry [`Key`]s, 64-bit hashes of the name, rather than strings, so that looking up,
//! copying and comparing a field costs one integer operation and an event holds no heap-allocated
//! names. The process-wide registry maps a key back to its name for output and messages.
//!
//! Between processes a key travels as its name (timely moves data with serde/bincode), and the
//! receiving process interns it again, so keys created dynamically on one process are understood
//! everywhere.

use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, RwLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The interned name of an event field.
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
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(u64);

fn registry() -> &'static RwLock<HashMap<u64, &'static str>> {
    static REGISTRY: OnceLock<RwLock<HashMap<u64, &'static str>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
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

impl Key {
    /// Interns `name` and returns its key. Cheap after the first call for a name; still, build
    /// keys once outside per-event closures.
    ///
    /// # Panics
    ///
    /// If two different names hash to the same 64-bit value (never observed; it would make
    /// fields indistinguishable, so it is refused rather than ignored).
    pub fn new(name: &str) -> Key {
        let hash = fnv1a(name.as_bytes());
        if let Some(existing) = registry().read().expect("key registry").get(&hash) {
            assert_eq!(
                *existing, name,
                "field names {existing:?} and {name:?} collide"
            );
            return Key(hash);
        }
        let mut map = registry().write().expect("key registry");
        map.entry(hash)
            .or_insert_with(|| Box::leak(name.to_owned().into_boxed_str()));
        Key(hash)
    }

    /// The field name this key was interned from.
    pub fn name(&self) -> &'static str {
        registry()
            .read()
            .expect("key registry")
            .get(&self.0)
            .copied()
            .expect("every Key is created through Key::new, which registers its name")
    }

    /// The `/`-separated components of the name (HDF5 groups, then the dataset).
    pub fn components(&self) -> std::str::Split<'static, char> {
        self.name().split('/')
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
    fn hash_is_stable() {
        // Processes of one run must agree; a changed hash would also change file layouts.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
