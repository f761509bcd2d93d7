//! SIP protocol core for Confab: the message model, a zero-copy parser and printer, URIs and
//! typed header views, stream framing, the RFC 3261 transaction state machines and dialogs.
//!
//! This crate does no I/O and reads no clock: there is no tokio, no socket and no
//! `Instant::now()` in it. Bytes come in as arguments, time comes in as an `Instant` argument,
//! and what should be sent or armed is returned as values for the caller's I/O layer.

#![forbid(unsafe_code)]

pub mod dialog;
mod error;
pub mod framing;
pub mod header;
mod message;
mod method;
mod prefilter;
mod scan;
pub mod transaction;
mod uri;
mod writer;

pub use error::ParseError;
pub use header::HeaderName;
pub use message::{Limits, Malformed, Message};
pub use method::Method;
pub use prefilter::looks_like_sip;
pub use scan::unescape;
pub use uri::{SipUri, TelUri, Uri};
pub use writer::{salvage_response, Writer};
