//! Refusing further attempts after repeated authentication failures, per user and per source.

use foldhash::{HashMap, HashMapExt};
use std::time::{Duration, Instant};

/// Counts failures per key (`user:...`, `ip:...`) within a window and locks the key for a while
/// once they reach the limit.
#[derive(Debug)]
pub struct Lockout {
    max_failures: u32,
    window: Duration,
    lock_for: Duration,
    capacity: usize,
    entries: HashMap<String, Entry>,
}

/// Failures within a window, and the lock they led to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            window_start: now,
            locked_until: None,
        }
    }

    /// How much longer the lock lasts, if there is one.
    pub(crate) fn locked(&self, now: Instant) -> Option<Duration> {
        let until = self.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failure; true when it locked (`max` failures within `window` lock for
    /// `lock_for`).
    pub(crate) fn fail(
        &mut self,
        now: Instant,
        max: u32,
        window: Duration,
        lock_for: Duration,
    ) -> bool {
        if max == 0 {
            return false;
        }
        if now - self.window_start > window {
            *self = Self::new(now);
        }
        self.failures += 1;
        if self.failures >= max && self.locked_until.is_none_or(|u| u <= now) {
            self.locked_until = Some(now + lock_for);
            return true;
        }
        false
    }

    /// Whether anything is left to remember: a lock in force or failures in the window.
    pub(crate) fn live(&self, now: Instant, window: Duration) -> bool {
        self.locked_until.is_some_and(|u| u > now) || now - self.window_start <= window
    }
}

impl Lockout {
    /// Locks a key for `lock_for` after `max_failures` failures within `window`. At most
    /// `capacity` keys are tracked: a flood of distinct keys cannot grow memory without bound.
    pub fn new(max_failures: u32, window: Duration, lock_for: Duration, capacity: usize) -> Self {
        Self {
            max_failures,
            window,
            lock_for,
            capacity,
            entries: HashMap::new(),
        }
    }

    /// How much longer `key` stays locked, if it is.
    pub fn locked(&self, key: &str, now: Instant) -> Option<Duration> {
        self.entries.get(key)?.locked(now)
    }

    /// Records a failure; returns true when this failure locked the key.
    pub fn record_failure(&mut self, key: &str, now: Instant) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        if !self.entries.contains_key(key) && self.entries.len() >= self.capacity {
            self.purge(now);
            if self.entries.len() >= self.capacity {
                return false;
            }
        }
        self.entries
            .entry(key.to_owned())
            .or_insert(Entry::new(now))
            .fail(now, self.max_failures, self.window, self.lock_for)
    }

    /// A success clears the key's failures.
    pub fn record_success(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops entries whose window and lock are both over.
    pub fn purge(&mut self, now: Instant) {
        let window = self.window;
        self.entries.retain(|_, e| e.live(now, window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_limit_and_unlocks_later() {
        let t0 = Instant::now();
        let mut l = Lockout::new(3, Duration::from_secs(60), Duration::from_secs(30), 100);
        assert!(!l.record_failure("user:a", t0));
        assert!(!l.record_failure("user:a", t0));
        assert!(l.record_failure("user:a", t0));
        assert_eq!(l.locked("user:a", t0), Some(Duration::from_secs(30)));
        assert_eq!(l.locked("user:a", t0 + Duration::from_secs(31)), None);
        assert_eq!(l.locked("user:b", t0), None);
    }

    #[test]
    fn success_resets_and_capacity_bounds_memory() {
        let t0 = Instant::now();
        let mut l = Lockout::new(2, Duration::from_secs(60), Duration::from_secs(30), 2);
        l.record_failure("a", t0);
        l.record_success("a");
        assert!(!l.record_failure("a", t0));
        l.record_failure("b", t0);
        l.record_failure("c", t0);
        assert_eq!(l.entries.len(), 2);
    }
}
