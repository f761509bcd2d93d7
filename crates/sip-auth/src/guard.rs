//! Locking out the attacker, not the user: failures are counted per user and source address,
//! and a user's familiar addresses (where it signed in successfully not long ago) keep
//! working while guesses from elsewhere are refused.
//!
//! Three limits, each `failures` within `window` unless said otherwise:
//! - **user and source**: that user from that address is refused for `lock_for` (the user's
//!   other addresses are not);
//! - **source** (counted by the caller with a [`crate::Lockout`] keyed by address): an
//!   address guessing many users is refused for all of them, except users for which it is
//!   familiar;
//! - **user ceiling**: `ceiling` failures from unfamiliar addresses within `window` refuse
//!   every unfamiliar address of that user for `lock_for`, which slows a guess spread over
//!   many addresses. A new device of the user is delayed by it, never refused for longer.

use foldhash::{HashMap, HashMapExt};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::lockout::Entry;

/// The limits of [`Guards`].
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures of one user from one address before that pair is locked; 0 disables locking.
    pub failures: u32,
    /// Failures from unfamiliar addresses of one user before all of them are locked.
    pub ceiling: u32,
    pub window: Duration,
    pub lock_for: Duration,
    /// How long after a successful sign-in an address stays familiar for that user.
    pub familiar_for: Duration,
}

/// Why an attempt is refused, and for how much longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    /// This address failed too often, for many users.
    Source(Duration),
    /// This user failed too often from this address.
    UserAtSource(Duration),
    /// This user failed too often from unfamiliar addresses.
    UserCeiling(Duration),
}

impl Locked {
    pub fn remaining(self) -> Duration {
        match self {
            Self::Source(d) | Self::UserAtSource(d) | Self::UserCeiling(d) => d,
        }
    }

    /// Words for a reason phrase or a log line.
    pub fn why(self) -> &'static str {
        match self {
            Self::Source(_) => "from this address",
            Self::UserAtSource(_) => "for this user from this address",
            Self::UserCeiling(_) => "for this user from unfamiliar addresses",
        }
    }
}

/// Addresses remembered per user at most: familiar ones, and ones with failures.
const FAMILIAR_PER_USER: usize = 8;
const PAIRS_PER_USER: usize = 64;

#[derive(Debug)]
struct UserGuard {
    /// Address and last successful sign-in from it.
    familiar: Vec<(IpAddr, Instant)>,
    pairs: Vec<(IpAddr, Entry)>,
    unfamiliar: Entry,
}

/// Per-user lockout state: familiar addresses, failures per address, the ceiling.
#[derive(Debug)]
pub struct Guards {
    policy: Policy,
    capacity: usize,
    users: HashMap<String, UserGuard>,
}

impl Guards {
    /// At most `capacity` users are tracked (purged of stale ones when full).
    pub fn new(policy: Policy, capacity: usize) -> Self {
        Self {
            policy,
            capacity,
            users: HashMap::new(),
        }
    }

    /// Whether `ip` is a familiar address of `user`.
    pub fn familiar(&self, user: &str, ip: IpAddr, now: Instant) -> bool {
        self.users.get(user).is_some_and(|g| {
            g.familiar
                .iter()
                .any(|&(a, at)| a == ip && now - at <= self.policy.familiar_for)
        })
    }

    /// Whether `user` from `ip` is locked (the source's own lock is the caller's).
    pub fn locked(&self, user: &str, ip: IpAddr, now: Instant) -> Option<Locked> {
        let g = self.users.get(user)?;
        if let Some(d) = g
            .pairs
            .iter()
            .find(|(a, _)| *a == ip)
            .and_then(|(_, e)| e.locked(now))
        {
            return Some(Locked::UserAtSource(d));
        }
        if self.familiar(user, ip, now) {
            return None;
        }
        g.unfamiliar.locked(now).map(Locked::UserCeiling)
    }

    /// Counts a failure of `user` from `ip`; gives the lock it started, if any.
    pub fn failure(&mut self, user: &str, ip: IpAddr, now: Instant) -> Option<Locked> {
        let p = self.policy;
        if p.failures == 0 {
            return None;
        }
        let familiar = self.familiar(user, ip, now);
        if !self.users.contains_key(user) && self.users.len() >= self.capacity {
            self.purge(now);
            if self.users.len() >= self.capacity {
                return None; // the source's own count still applies
            }
        }
        let g = self.users.entry(user.to_owned()).or_insert(UserGuard {
            familiar: Vec::new(),
            pairs: Vec::new(),
            unfamiliar: Entry::new(now),
        });
        let i = match g.pairs.iter().position(|(a, _)| *a == ip) {
            Some(i) => i,
            None => {
                if g.pairs.len() >= PAIRS_PER_USER {
                    g.pairs.retain(|(_, e)| e.live(now, p.window));
                }
                if g.pairs.len() >= PAIRS_PER_USER {
                    g.pairs.remove(0);
                }
                g.pairs.push((ip, Entry::new(now)));
                g.pairs.len() - 1
            }
        };
        let pair = &mut g.pairs[i].1;
        let pair_locked = pair.fail(now, p.failures, p.window, p.lock_for);
        let ceiling = !familiar && g.unfamiliar.fail(now, p.ceiling, p.window, p.lock_for);
        if pair_locked {
            pair.locked(now).map(Locked::UserAtSource)
        } else if ceiling {
            g.unfamiliar.locked(now).map(Locked::UserCeiling)
        } else {
            None
        }
    }

    /// `user` signed in from `ip`: the address becomes (or stays) familiar and its failures
    /// are forgotten.
    pub fn success(&mut self, user: &str, ip: IpAddr, now: Instant) {
        let Some(g) = self.users.get_mut(user) else {
            if self.users.len() >= self.capacity {
                self.purge(now);
            }
            if self.users.len() < self.capacity {
                self.users.insert(
                    user.to_owned(),
                    UserGuard {
                        familiar: vec![(ip, now)],
                        pairs: Vec::new(),
                        unfamiliar: Entry::new(now),
                    },
                );
            }
            return;
        };
        g.pairs.retain(|(a, _)| *a != ip);
        match g.familiar.iter_mut().find(|(a, _)| *a == ip) {
            Some(f) => f.1 = now,
            None => {
                if g.familiar.len() >= FAMILIAR_PER_USER {
                    // the address used least recently makes room
                    if let Some(oldest) = (0..g.familiar.len()).min_by_key(|&i| g.familiar[i].1) {
                        g.familiar.swap_remove(oldest);
                    }
                }
                g.familiar.push((ip, now));
            }
        }
    }

    /// An administrator unlocks `user`: its failures everywhere are forgotten (its familiar
    /// addresses stay). Gives the addresses it had failed from, whose own counts the caller
    /// may clear too (the user may have been one of them).
    pub fn unlock(&mut self, user: &str, now: Instant) -> Vec<IpAddr> {
        let Some(g) = self.users.get_mut(user) else {
            return Vec::new();
        };
        g.unfamiliar = Entry::new(now);
        g.pairs.drain(..).map(|(ip, _)| ip).collect()
    }

    /// Forgets users with nothing live: no failures in the window, no lock, no familiar
    /// address within its period.
    pub fn purge(&mut self, now: Instant) {
        let p = self.policy;
        self.users.retain(|_, g| {
            g.familiar.retain(|&(_, at)| now - at <= p.familiar_for);
            g.pairs.retain(|(_, e)| e.live(now, p.window));
            !g.familiar.is_empty() || !g.pairs.is_empty() || g.unfamiliar.live(now, p.window)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        failures: 3,
        ceiling: 5,
        window: Duration::from_secs(60),
        lock_for: Duration::from_secs(30),
        familiar_for: Duration::from_secs(3600),
    };

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn an_attacker_is_locked_while_the_users_familiar_address_keeps_working() {
        let t0 = Instant::now();
        let mut g = Guards::new(POLICY, 100);
        g.success("alice", ip(1), t0);
        assert_eq!(g.failure("alice", ip(9), t0), None);
        assert_eq!(g.failure("alice", ip(9), t0), None);
        assert_eq!(
            g.failure("alice", ip(9), t0),
            Some(Locked::UserAtSource(POLICY.lock_for))
        );
        assert!(g.locked("alice", ip(9), t0).is_some());
        assert_eq!(g.locked("alice", ip(1), t0), None);
        // another address of alice's is not locked by ip(9)'s guesses
        assert_eq!(g.locked("alice", ip(2), t0), None);
        assert_eq!(g.locked("alice", ip(9), t0 + Duration::from_secs(31)), None);
    }

    #[test]
    fn the_ceiling_delays_unfamiliar_addresses_only_and_ends() {
        let t0 = Instant::now();
        let mut g = Guards::new(POLICY, 100);
        g.success("alice", ip(1), t0);
        let mut started = None;
        for n in 10..15 {
            started = started.or(g.failure("alice", ip(n), t0));
        }
        assert_eq!(started, Some(Locked::UserCeiling(POLICY.lock_for)));
        // a new device from an unfamiliar address is delayed ...
        assert!(matches!(
            g.locked("alice", ip(50), t0),
            Some(Locked::UserCeiling(_))
        ));
        // ... the familiar one is not ...
        assert_eq!(g.locked("alice", ip(1), t0), None);
        // ... and the delay ends
        assert_eq!(
            g.locked("alice", ip(50), t0 + Duration::from_secs(31)),
            None
        );
    }

    #[test]
    fn failures_from_a_familiar_address_lock_only_that_pair() {
        let t0 = Instant::now();
        let mut g = Guards::new(POLICY, 100);
        g.success("alice", ip(1), t0);
        for _ in 0..3 {
            g.failure("alice", ip(1), t0);
        }
        assert!(matches!(
            g.locked("alice", ip(1), t0),
            Some(Locked::UserAtSource(_))
        ));
        assert_eq!(g.locked("alice", ip(2), t0), None);
    }

    #[test]
    fn familiarity_lapses_and_unlock_clears_locks() {
        let t0 = Instant::now();
        let mut g = Guards::new(POLICY, 100);
        g.success("alice", ip(1), t0);
        assert!(g.familiar("alice", ip(1), t0 + Duration::from_secs(3599)));
        assert!(!g.familiar("alice", ip(1), t0 + Duration::from_secs(3601)));
        for _ in 0..3 {
            g.failure("alice", ip(9), t0);
        }
        assert_eq!(g.unlock("alice", t0), vec![ip(9)]);
        assert_eq!(g.locked("alice", ip(9), t0), None);
        assert!(g.unlock("alice", t0).is_empty());
        assert!(g.familiar("alice", ip(1), t0));
    }

    #[test]
    fn memory_is_bounded_by_users_and_addresses() {
        let t0 = Instant::now();
        let mut g = Guards::new(POLICY, 2);
        g.failure("a", ip(1), t0);
        g.failure("b", ip(1), t0);
        assert_eq!(g.failure("c", ip(1), t0), None);
        assert_eq!(g.users.len(), 2);
        for n in 0..200u8 {
            g.failure("a", IpAddr::from([10, 1, 0, n]), t0);
        }
        assert!(g.users["a"].pairs.len() <= PAIRS_PER_USER);
        g.purge(t0 + Duration::from_secs(120));
        assert!(g.users.is_empty());
    }

    #[test]
    fn zero_failures_disables_locking() {
        let t0 = Instant::now();
        let mut g = Guards::new(
            Policy {
                failures: 0,
                ..POLICY
            },
            10,
        );
        for _ in 0..100 {
            assert_eq!(g.failure("alice", ip(9), t0), None);
        }
        assert_eq!(g.locked("alice", ip(9), t0), None);
    }
}
