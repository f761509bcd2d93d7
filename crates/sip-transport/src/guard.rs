//! Per-source limits that switch themselves on under overload (a Front End has no
//! `--per-source-rate` by default): while the engine is behind, each address that has not
//! authenticated recently may send its share (`Config::overload_per_source`) of messages a
//! second; the rest are dropped before parsing. The share halves every second the overload
//! lasts (down to 1/64), so that a flood from many addresses, each within the first share,
//! is cut too; once the overload ends it is lifted 5 s later, and a new one starts a step
//! below where the last ended. Addresses where users signed in (told by the engine,
//! [`crate::Transports::trust`]) are not limited, so a NAT or a load balancer in front of
//! many users keeps its share however busy the server is.

use crate::lock;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use confab_ratelimit::{Limits, RateLimiter};

/// Trusted addresses kept at most (the set starts again when full).
const TRUSTED_MAX: usize = 100_000;
/// The share is halved at most this many times (1/64 of it).
const MAX_LEVEL: u32 = 6;
/// After this long without overload, a new one starts from the full share.
const FORGET_MS: u64 = 10_000;

struct Limited {
    base: Limits,
    limiter: RateLimiter,
    /// The share is `base` halved `level` times.
    level: u32,
    /// When the level last changed (ms since the guard's epoch).
    stepped_ms: u64,
}

pub(crate) struct OverloadGuard {
    epoch: Instant,
    /// Milliseconds since `epoch` until which the limits apply (0: never engaged); read on
    /// every message, so kept outside the lock.
    until_ms: AtomicU64,
    /// `None`: switched off (`--overload-per-source-rate 0`).
    limited: Option<Mutex<Limited>>,
    trusted: Mutex<HashSet<IpAddr>>,
}

impl OverloadGuard {
    pub(crate) fn new(limits: Option<Limits>) -> Self {
        Self {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(0),
            limited: limits.map(|base| {
                Mutex::new(Limited {
                    base,
                    limiter: RateLimiter::new(base),
                    level: 0,
                    stepped_ms: 0,
                })
            }),
            trusted: Mutex::new(HashSet::new()),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The engine is behind: limits apply for `hold` from now, at a share halved for every
    /// second this overload has lasted.
    pub(crate) fn engage(&self, now: Instant, hold: Duration) {
        let Some(limited) = &self.limited else { return };
        let now_ms = self.ms(now);
        let mut l = lock(limited);
        let until = self.until_ms.load(Ordering::Relaxed);
        let level = if now_ms >= until {
            // a new overload: a step below where the last one ended, unless long ago
            let quiet = now_ms.saturating_sub(until);
            if quiet > FORGET_MS || until == 0 {
                0
            } else {
                l.level.saturating_sub(1)
            }
        } else if now_ms.saturating_sub(l.stepped_ms) >= 1000 {
            (l.level + 1).min(MAX_LEVEL)
        } else {
            l.level
        };
        if level != l.level || now_ms >= until {
            l.level = level;
            l.stepped_ms = now_ms;
            let scale = f64::from(1u32 << level);
            let (rate, burst) = (l.base.rate / scale, (l.base.burst / scale).max(1.0));
            l.limiter.set_rate(rate, burst);
        }
        self.until_ms
            .fetch_max(now_ms + hold.as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn active(&self, now: Instant) -> bool {
        self.ms(now) < self.until_ms.load(Ordering::Relaxed)
    }

    /// A user authenticated from `ip`.
    pub(crate) fn trust(&self, ip: IpAddr) {
        let mut t = lock(&self.trusted);
        if t.len() >= TRUSTED_MAX {
            t.clear();
        }
        t.insert(ip);
    }

    /// Whether a message from `ip` goes on: always while the guard is off; under overload
    /// when `ip` is trusted or within its share.
    pub(crate) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let Some(limited) = &self.limited else {
            return true;
        };
        if !self.active(now) {
            return true;
        }
        if lock(&self.trusted).contains(&ip) {
            return true;
        }
        limited
            .lock()
            .map(|mut l| l.limiter.allow(ip, now))
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            rate: 64.0,
            burst: 64.0,
            max_sources: 100,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn off_until_engaged_then_limits_strangers_but_not_the_trusted() {
        let g = OverloadGuard::new(Some(limits()));
        let t0 = Instant::now();
        assert!((0..1000).all(|_| g.allow(ip(1), t0)), "off: no limit");
        g.trust(ip(2));
        g.engage(t0, Duration::from_secs(5));
        let passed = (0..1000).filter(|_| g.allow(ip(1), t0)).count();
        assert_eq!(passed, 64, "a stranger gets its burst");
        assert!(
            (0..1000).all(|_| g.allow(ip(2), t0)),
            "the trusted are not limited"
        );
        assert!(
            !g.active(t0 + Duration::from_secs(6)),
            "and it switches itself off"
        );
        assert!(g.allow(ip(1), t0 + Duration::from_secs(6)));
        let off = OverloadGuard::new(None);
        off.engage(t0, Duration::from_secs(5));
        assert!((0..1000).all(|_| off.allow(ip(1), t0)), "switched off");
    }

    #[test]
    fn the_share_halves_while_the_overload_lasts_and_recovers_after() {
        let g = OverloadGuard::new(Some(limits()));
        let t0 = Instant::now();
        let burst_at = |g: &OverloadGuard, who: u8, at: Instant| {
            (0..1000).filter(|_| g.allow(ip(who), at)).count()
        };
        g.engage(t0, Duration::from_secs(5));
        assert_eq!(burst_at(&g, 1, t0), 64);
        for s in 1..=10 {
            g.engage(t0 + Duration::from_secs(s), Duration::from_secs(5));
        }
        let late = t0 + Duration::from_secs(10);
        assert_eq!(
            burst_at(&g, 3, late),
            1,
            "1/64 of the share after six seconds and more"
        );
        // the overload ends; the next one, soon after, starts a step lower than the last
        let next = late + Duration::from_secs(7);
        assert!(!g.active(next));
        g.engage(next, Duration::from_secs(5));
        assert_eq!(burst_at(&g, 4, next), 2);
        // and after a long quiet, from the full share
        let much_later = next + Duration::from_secs(30);
        g.engage(much_later, Duration::from_secs(5));
        assert_eq!(burst_at(&g, 5, much_later), 64);
    }
}
