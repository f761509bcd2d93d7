//! The media engine's protocol side, sans-IO like `sip-proto`: it never opens a socket nor
//! reads a clock. Time comes in as an `Instant` argument and packets go out as bytes for the
//! caller to send; `confab-core`'s media server is the tokio half that owns the sockets.
//!
//! - [`g711`]: µ-law and A-law (ITU-T G.711), the codecs every SIP phone speaks.
//! - [`rtp`]: RTP packets (RFC 3550) read and written; [`rtcp`]: sender reports, and what a
//!   peer reports.
//! - [`sdp`]: session descriptions (RFC 4566) and the answer to an offer (RFC 3264).
//! - [`dtmf`]: digits pressed, from RFC 4733 telephone-events.
//! - [`audio`]: prompts and music as [`Clip`]s, from WAV files (resampled to 8 kHz) or
//!   generated tones.
//! - [`stream`]: one call's media endpoint: clips played with 20 ms pacing and correct
//!   sequence numbers and timestamps, digits and silence heard.
//! - [`ports`]: the RTP port range, handed out and taken back.
//! - [`mix`]: a conference's audio mix (each hears all but themselves); [`tone`]: sine frames
//!   and one frequency's power (Goertzel), to tell tones apart.

pub mod audio;
pub mod dtmf;
pub mod g711;
pub mod mix;
pub mod ports;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod stream;
pub mod tone;

pub use audio::{AudioError, Clip};
pub use sdp::{Codec, Law, Negotiated, SdpError};
pub use stream::{MediaEvent, Stream};
