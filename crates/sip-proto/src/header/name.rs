//! Header names: the ones Confab decides on are an enum (compact forms folded in), the rest are
//! kept as written.

/// A header field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName {
    Accept,
    Allow,
    Authorization,
    AuthenticationInfo,
    CallId,
    Contact,
    ContentLength,
    ContentType,
    CSeq,
    Date,
    Event,
    Expires,
    From,
    MaxForwards,
    MinExpires,
    Path,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyRequire,
    RecordRoute,
    Require,
    RetryAfter,
    Route,
    Server,
    Supported,
    To,
    Unsupported,
    UserAgent,
    Via,
    WwwAuthenticate,
    /// Any other header; compare its written name.
    Other,
}

impl HeaderName {
    /// Recognises a header name, long or compact, ignoring case.
    pub fn from_bytes(name: &[u8]) -> Self {
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'c' => Self::ContentType,
                b'f' => Self::From,
                b'i' => Self::CallId,
                b'k' => Self::Supported,
                b'l' => Self::ContentLength,
                b'm' => Self::Contact,
                b'o' => Self::Event,
                b't' => Self::To,
                b'v' => Self::Via,
                _ => Self::Other,
            };
        }
        for (n, text) in ALL {
            if text.len() == name.len() && text.as_bytes().eq_ignore_ascii_case(name) {
                return *n;
            }
        }
        Self::Other
    }

    /// The canonical long form, as Confab prints it.
    pub fn as_str(self) -> &'static str {
        ALL.iter().find(|(n, _)| *n == self).map_or("", |(_, t)| t)
    }

    /// Whether several values may share one header line separated by commas (RFC 3261 §7.3.1).
    /// Authentication headers and Date contain commas of their own and are never split.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Self::Accept
                | Self::Allow
                | Self::Contact
                | Self::Path
                | Self::ProxyRequire
                | Self::RecordRoute
                | Self::Require
                | Self::Route
                | Self::Supported
                | Self::Unsupported
                | Self::Via
        )
    }
}

const ALL: &[(HeaderName, &str)] = &[
    (HeaderName::Via, "Via"),
    (HeaderName::From, "From"),
    (HeaderName::To, "To"),
    (HeaderName::CallId, "Call-ID"),
    (HeaderName::CSeq, "CSeq"),
    (HeaderName::Contact, "Contact"),
    (HeaderName::MaxForwards, "Max-Forwards"),
    (HeaderName::ContentLength, "Content-Length"),
    (HeaderName::ContentType, "Content-Type"),
    (HeaderName::Route, "Route"),
    (HeaderName::RecordRoute, "Record-Route"),
    (HeaderName::Expires, "Expires"),
    (HeaderName::Authorization, "Authorization"),
    (HeaderName::ProxyAuthorization, "Proxy-Authorization"),
    (HeaderName::WwwAuthenticate, "WWW-Authenticate"),
    (HeaderName::ProxyAuthenticate, "Proxy-Authenticate"),
    (HeaderName::AuthenticationInfo, "Authentication-Info"),
    (HeaderName::Path, "Path"),
    (HeaderName::Require, "Require"),
    (HeaderName::ProxyRequire, "Proxy-Require"),
    (HeaderName::Supported, "Supported"),
    (HeaderName::Unsupported, "Unsupported"),
    (HeaderName::MinExpires, "Min-Expires"),
    (HeaderName::Allow, "Allow"),
    (HeaderName::Accept, "Accept"),
    (HeaderName::Date, "Date"),
    (HeaderName::RetryAfter, "Retry-After"),
    (HeaderName::Event, "Event"),
    (HeaderName::UserAgent, "User-Agent"),
    (HeaderName::Server, "Server"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_forms_are_the_same_header() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"vIa"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
    }

    #[test]
    fn canonical_names_round_trip() {
        for (n, t) in ALL {
            assert_eq!(HeaderName::from_bytes(t.as_bytes()), *n);
            assert_eq!(n.as_str(), *t);
        }
    }
}
