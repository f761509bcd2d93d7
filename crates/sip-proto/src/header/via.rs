//! The Via header (RFC 3261 §20.42, RFC 3581 `rport`).

use std::fmt::Write;

use super::params::{param, parse_params, Params};
use crate::error::Result;
use crate::scan::{is_lws, is_token, Cursor};
use crate::uri::split_hostport;

/// The RFC 3261 branch prefix that marks a globally unique transaction id.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport as written (`UDP`, `TCP`, `TLS`, `WS`, ...).
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    pub fn parse(s: &'a str) -> Result<Self> {
        let mut c = Cursor::new(s, "Via");
        c.skip_lws();
        let proto = c.token()?;
        c.expect_sep(b'/')?;
        let version = c.token()?;
        if !proto.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(c.err());
        }
        c.expect_sep(b'/')?;
        let transport = c.token()?;
        c.skip_lws();
        let sent_by = c.take_while(|b| !is_lws(b) && b != b';');
        let (host, port) = split_hostport(sent_by).ok_or(c.err())?;
        let params = parse_params(&mut c)?;
        let via = Via {
            transport,
            host,
            port,
            params,
        };
        if via
            .branch()
            .is_some_and(|b| b.is_empty() || !b.bytes().all(is_token))
        {
            return Err(c.err());
        }
        Ok(via)
    }

    pub fn branch(&self) -> Option<&'a str> {
        param(&self.params, "branch").flatten()
    }
    pub fn received(&self) -> Option<&'a str> {
        param(&self.params, "received").flatten()
    }
    /// `Some(None)` when the client asked for rport, `Some(Some(port))` once filled in.
    pub fn rport(&self) -> Option<Option<&'a str>> {
        param(&self.params, "rport")
    }
    /// Whether the branch carries the RFC 3261 magic cookie.
    pub fn is_rfc3261(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }
    /// `host[:port]` as a string, for transaction keys.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host.to_ascii_lowercase()),
            None => self.host.to_ascii_lowercase(),
        }
    }
}

/// Formats the Via a proxy or UA adds: `SIP/2.0/<transport> <host>:<port>;branch=<branch>;rport`.
pub fn format_via(transport: &str, host: &str, port: u16, branch: &str) -> String {
    let mut s = String::with_capacity(64);
    let _ = write!(s, "SIP/2.0/{transport} {host}:{port};branch={branch};rport");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_folds_and_spaces_parses() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.is_rfc3261());
    }

    #[test]
    fn via_rport_and_received() {
        let v =
            Via::parse("SIP/2.0/TCP [::1]:5070;branch=z9hG4bK1;rport;received=127.0.0.1").unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("127.0.0.1"));
        assert_eq!(v.sent_by(), "[::1]:5070");
    }

    #[test]
    fn bad_vias_are_rejected() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/7.0/UDP host",
            "SIP/2.0 host",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host;branch=",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatted_via_parses_back() {
        let s = format_via("TCP", "127.0.0.1", 5060, "z9hG4bKabc");
        let v = Via::parse(&s).unwrap();
        assert_eq!(
            (v.transport, v.host, v.port, v.branch()),
            ("TCP", "127.0.0.1", Some(5060), Some("z9hG4bKabc"))
        );
        assert_eq!(v.rport(), Some(None));
    }
}
