//! Per-source limits that switch themselves on under overload (a Front End has no
//! `--per-source-rate` by default): while the engine is behind, each address that has not
//! authenticated recently may send `Config::overload_per_source` messages a second; the rest
//! are dropped before parsing. Addresses where users signed in (told by the engine,
//! [`crate::Transports::trust`]) are not limited, so a NAT or a load balancer in front of many
//! users keeps its share however busy the server is.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use confab_ratelimit::{Limits, RateLimiter};

/// Trusted addresses kept at most (the set starts again when full).
const TRUSTED_MAX: usize = 100_000;

pub(crate) struct OverloadGuard {
    epoch: Instant,
    /// Milliseconds since `epoch` until which the limits apply (0: never engaged).
    until_ms: AtomicU64,
    /// `None`: switched off (`--overload-per-source-rate 0`).
    limiter: Option<Mutex<RateLimiter>>,
    trusted: Mutex<HashSet<IpAddr>>,
}

impl OverloadGuard {
    pub(crate) fn new(limits: Option<Limits>) -> Self {
        Self {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(0),
            limiter: limits.map(|l| Mutex::new(RateLimiter::new(l))),
            trusted: Mutex::new(HashSet::new()),
        }
    }

    /// The engine is behind: limits apply for `hold` from now (kept on while it stays behind,
    /// so that a flood held off does not switch them off and come straight back).
    pub(crate) fn engage(&self, now: Instant, hold: Duration) {
        let until = (now + hold)
            .saturating_duration_since(self.epoch)
            .as_millis() as u64;
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    pub(crate) fn active(&self, now: Instant) -> bool {
        let at = now.saturating_duration_since(self.epoch).as_millis() as u64;
        at < self.until_ms.load(Ordering::Relaxed)
    }

    /// A user authenticated from `ip`.
    pub(crate) fn trust(&self, ip: IpAddr) {
        let mut t = self.trusted.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() >= TRUSTED_MAX {
            t.clear();
        }
        t.insert(ip);
    }

    /// Whether a message from `ip` goes on: always while the guard is off; under overload
    /// when `ip` is trusted or within its rate.
    pub(crate) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if !self.active(now) {
            return true;
        }
        if self
            .trusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ip)
        {
            return true;
        }
        limiter.lock().map(|mut l| l.allow(ip, now)).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            rate: 10.0,
            burst: 10.0,
            max_sources: 100,
        }
    }

    #[test]
    fn off_until_engaged_then_limits_strangers_but_not_the_trusted() {
        let g = OverloadGuard::new(Some(limits()));
        let t0 = Instant::now();
        let (stranger, trusted) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!((0..100).all(|_| g.allow(stranger, t0)), "off: no limit");
        g.trust(trusted);
        g.engage(t0, Duration::from_secs(5));
        let passed = (0..100).filter(|_| g.allow(stranger, t0)).count();
        assert_eq!(passed, 10, "a stranger gets its burst");
        assert!(
            (0..100).all(|_| g.allow(trusted, t0)),
            "the trusted are not limited"
        );
        assert!(
            !g.active(t0 + Duration::from_secs(6)),
            "and it switches itself off"
        );
        assert!(g.allow(stranger, t0 + Duration::from_secs(6)));
        let off = OverloadGuard::new(None);
        off.engage(t0, Duration::from_secs(5));
        assert!((0..100).all(|_| off.allow(stranger, t0)), "switched off");
    }
}
