//! Per-source token buckets, shared by the SIP transports and the DNS server. Sans-IO: the
//! caller passes the time.
//!
//! Each source address gets `burst` tokens that refill at `rate` per second; a request spends
//! one. The table is bounded: when it is full, buckets that have refilled completely (idle
//! sources) are forgotten, and if none has, the new source is refused until one does — a flood
//! of spoofed addresses costs a bounded amount of memory, never an unbounded one.

use foldhash::{HashMap, HashMapExt};
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Tokens added per second.
    pub rate: f64,
    /// Most tokens a source can hold (the size of a burst it may send at once).
    pub burst: f64,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate: 200.0,
            burst: 400.0,
            max_sources: 65_536,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
        }
    }

    /// Spends one token of `source`; false when it has none left (the request is refused).
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let limits = self.limits;
        if !self.buckets.contains_key(&source) && self.buckets.len() >= limits.max_sources {
            self.forget_idle(now);
            if self.buckets.len() >= limits.max_sources {
                return false;
            }
        }
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: limits.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limits.rate).min(limits.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn forget_idle(&mut self, now: Instant) {
        let limits = self.limits;
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * limits.rate < limits.burst
        });
    }

    /// Changes the rate and burst of every source from now on (tokens over the new burst are
    /// cut at the next message).
    pub fn set_rate(&mut self, rate: f64, burst: f64) {
        self.limits.rate = rate;
        self.limits.burst = burst;
    }

    pub fn tracked_sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(max_sources: usize) -> RateLimiter {
        RateLimiter::new(Limits {
            rate: 10.0,
            burst: 5.0,
            max_sources,
        })
    }

    #[test]
    fn a_burst_is_allowed_then_refused_then_refilled() {
        let mut l = limiter(10);
        let a: IpAddr = [127, 0, 0, 2].into();
        let t0 = Instant::now();
        assert!((0..5).all(|_| l.allow(a, t0)));
        assert!(!l.allow(a, t0));
        // 10 tokens per second: 100 ms gives back one.
        assert!(l.allow(a, t0 + Duration::from_millis(100)));
        assert!(!l.allow(a, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn one_source_exhausted_does_not_touch_another() {
        let mut l = limiter(10);
        let t0 = Instant::now();
        let flood: IpAddr = [127, 0, 0, 9].into();
        while l.allow(flood, t0) {}
        assert!(l.allow([127, 0, 0, 1].into(), t0));
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_are_forgotten() {
        let mut l = limiter(2);
        let t0 = Instant::now();
        assert!(l.allow([10, 0, 0, 1].into(), t0));
        assert!(l.allow([10, 0, 0, 2].into(), t0));
        // Full, and both still hold spent tokens: a third source is refused.
        assert!(!l.allow([10, 0, 0, 3].into(), t0));
        assert_eq!(l.tracked_sources(), 2);
        // A second later both have refilled: they are forgotten and the newcomer is tracked.
        assert!(l.allow([10, 0, 0, 3].into(), t0 + Duration::from_secs(1)));
        assert_eq!(l.tracked_sources(), 1);
    }
}
