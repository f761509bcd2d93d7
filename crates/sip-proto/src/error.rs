//! Parse errors. Each variant maps to the reason phrase of the 400 (or 505) that answers it, so a
//! client learns exactly what was wrong with what it sent.

use thiserror::Error;

/// Why a message could not be parsed or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The start line is neither a request line nor a status line.
    #[error("Malformed start line")]
    StartLine,
    /// The Request-URI is malformed (embedded spaces, `<>`, bad syntax).
    #[error("Malformed Request-URI")]
    RequestUri,
    /// The SIP version is not 2.0.
    #[error("Version Not Supported")]
    Version,
    /// The status code is not three digits in 100..=699.
    #[error("Malformed status code")]
    StatusCode,
    /// A header line has no colon or a bad name.
    #[error("Malformed header line")]
    HeaderLine,
    /// The header section does not end with an empty line.
    #[error("Missing empty line after headers")]
    Unterminated,
    /// Content-Length is not a non-negative number.
    #[error("Malformed Content-Length")]
    ContentLength,
    /// Content-Length says more bytes than the message holds.
    #[error("Content-Length larger than message")]
    Truncated,
    /// The message is larger than the configured limit.
    #[error("Message too large")]
    TooLarge,
    /// More header fields than the configured limit.
    #[error("Too many header fields")]
    TooManyHeaders,
    /// A header value has bytes that are not UTF-8.
    #[error("Header value is not UTF-8")]
    NotUtf8,
    /// A header field's value is malformed; the field is named.
    #[error("Malformed {0} header")]
    Header(&'static str),
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match request method")]
    CSeqMismatch,
}

impl ParseError {
    /// The status code that answers a request failing this way.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::Version => 505,
            Self::TooLarge => 513,
            _ => 400,
        }
    }
}

/// Shorthand used by the typed header parsers.
pub(crate) type Result<T, E = ParseError> = std::result::Result<T, E>;
