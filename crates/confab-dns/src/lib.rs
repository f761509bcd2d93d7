//! DNS for a Confab deployment, both sides of it:
//!
//! * [`server`]: the built-in authoritative server. Its zones are the records the topology
//!   implies (`confab_topology::Topology::zones`), so what it answers is exactly what
//!   `confab dns zone` prints and what `confab topology validate` checked.
//! * [`discover`]: the walk a client does to find where to sign in (lyncdiscover, SRV, A
//!   fallbacks), step by step, for `confab discover`.
//! * [`federation`]: finding a partner's Access Edge (SRV in the partner's zone, `sip.` fallback).
//!
//! Queries are rate limited per source address ([`ratelimit`]) so one flooding host cannot
//! starve the others.

pub mod discover;
pub mod federation;
pub use confab_ratelimit as ratelimit;
pub mod server;
