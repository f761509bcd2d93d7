//! A table cut into parts by key, each behind its own lock: how the engines of several cores
//! share a table (see `engine::shared`) without one lock over all of it.

use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How many parts each shared table is cut into: many more than cores, so that two engines
/// rarely want the same one.
pub(crate) const PARTS: usize = 64;

/// A table cut into parts by key, each behind its own lock.
#[derive(Debug)]
pub(crate) struct Parts<T> {
    parts: Box<[Mutex<T>]>,
}

impl<T> Parts<T> {
    pub(crate) fn new(mut part: impl FnMut() -> T) -> Self {
        Self {
            parts: (0..PARTS).map(|_| Mutex::new(part())).collect(),
        }
    }

    /// The part that holds `key`, locked. Hold it briefly, never two parts of one table at
    /// once, and take another table's part under it only where that order is the only one
    /// (a location part, then an open-connections part).
    pub(crate) fn of<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, T> {
        // fixed seed: every engine must find a key in the same part
        let h = foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key);
        self.lock(h as usize % PARTS)
    }

    /// Every part in turn, each locked while it is visited (for the rare whole-table work:
    /// housekeeping, a closed connection, counts).
    pub(crate) fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        (0..PARTS).map(|i| self.lock(i))
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, T> {
        // a panic elsewhere while holding a part leaves the data as it was: still usable
        self.parts[i].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_always_in_the_same_part_and_keys_spread_over_parts() {
        let parts: Parts<Vec<String>> = Parts::new(Vec::new);
        for i in 0..1000 {
            let k = format!("user{i}@example.com");
            parts.of(&k).push(k.clone());
        }
        for i in 0..1000 {
            let k = format!("user{i}@example.com");
            assert!(parts.of(&k).contains(&k));
        }
        let busiest = parts.each().map(|p| p.len()).max().unwrap_or(0);
        assert!(
            busiest < 1000 / PARTS * 3,
            "one part took {busiest} of 1000"
        );
    }
}
