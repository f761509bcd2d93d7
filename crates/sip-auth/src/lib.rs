//! SIP digest authentication (RFC 2617/7616 as used by RFC 3261 §22, SHA-256 per RFC 8760).
//!
//! Server side: stateless nonces (a timestamp sealed with an HMAC, so an unauthenticated flood
//! costs no memory), expiry reported as `stale=true`, nonce-count replay protection, and a
//! lockout tracker for repeated failures. Client side: the response computation, for tests and
//! load generators. Like `sip-proto`, this crate does no I/O and reads no clock.

#![forbid(unsafe_code)]

mod credentials;
mod digest;
mod guard;
mod lockout;

pub use credentials::Credentials;
pub use digest::{client_response, ha1, seal, Algorithm, DigestServer, Verdict};
pub use guard::{Guards, Locked, Policy};
pub use lockout::Lockout;
