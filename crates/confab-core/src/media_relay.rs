//! The media relay's credentials, as Skype for Business's Media Relay Authentication Service
//! gave them: short-lived TURN credentials in the shared-secret scheme coturn calls
//! `use-auth-secret` (the "TURN REST" scheme): the user name is `<expiry>:<user>`, the password
//! `base64(HMAC-SHA1(secret, user name))`, so the relay checks them with the secret alone.
//!
//! The secrets are kept in the database (setting [`SECRETS_SETTING`], one line each: the secret
//! in hex, from when it may be used to issue, until when the relay accepts it); a rotation
//! adds one that the Edges learn before the Front Ends issue with it, and keeps the old one for
//! a grace period, so that credentials already given out (and the calls using them) last.
//! Sans-IO: the time comes in as an argument.

use std::fmt::Write as _;

use base64::Engine as _;

/// The store setting holding the secrets.
pub const SECRETS_SETTING: &str = "relay-secrets";
/// How long credentials last unless asked for less (Skype for Business: 8 hours).
pub const LIFETIME: u64 = 8 * 3600;
/// The request and answer body of a client's credentials request (MS-AVEDGEA's element names).
pub const MRAS_TYPE: &str = "application/msrtc-media-relay-auth+xml";
/// The body of an Edge's request for the secrets its relay accepts (from a deployment server).
pub const SECRETS_TYPE: &str = "application/vnd.confab.relay-secrets";
/// How long a new secret waits before Front Ends issue with it: the Edges ask every
/// [`EDGE_POLL`] seconds, so they all know it by then.
pub const PROPAGATION: i64 = 3 * EDGE_POLL as i64;
/// How often an Edge asks its next hop for the secrets (seconds).
pub const EDGE_POLL: u64 = 5;

/// One shared secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// 32 random bytes in hex (what coturn's `turn_secret` table holds).
    pub value: String,
    /// From when Front Ends issue with it (Unix seconds).
    pub issue_from: i64,
    /// Until when the relay accepts it; `None`: the newest, with no end.
    pub until: Option<i64>,
}

/// The deployment's secrets, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(pub Vec<Secret>);

impl Secrets {
    /// Reads the setting's text; a damaged line is an error naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad = || format!("line {} of the relay secrets is damaged: {line:?}", n + 1);
            let mut f = line.split_whitespace();
            let (Some(value), Some(from), Some(until), None) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                return Err(bad());
            };
            if value.len() < 32 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            out.push(Secret {
                value: value.to_owned(),
                issue_from: from.parse().map_err(|_| bad())?,
                until: match until {
                    "-" => None,
                    u => Some(u.parse().map_err(|_| bad())?),
                },
            });
        }
        Ok(Self(out))
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for x in &self.0 {
            let until = x.until.map_or("-".to_owned(), |u| u.to_string());
            let _ = writeln!(s, "{} {} {until}", x.value, x.issue_from);
        }
        s
    }

    /// Puts `value` first. `grace`: how long the older secrets stay valid after the new one
    /// is issued (credentials already given out keep working that long); `None` revokes them
    /// at once, and the new secret is issued at once (until the Edges learn it, at most
    /// [`PROPAGATION`], new credentials are refused by the relay too).
    pub fn rotate(&mut self, value: String, now: i64, grace: Option<u64>) {
        let issue_from = if grace.is_some() {
            now + PROPAGATION
        } else {
            now
        };
        match grace {
            None => self.0.clear(),
            Some(g) => {
                let end = issue_from.saturating_add(i64::try_from(g).unwrap_or(i64::MAX));
                for s in &mut self.0 {
                    s.until = Some(s.until.map_or(end, |u| u.min(end)));
                }
            }
        }
        self.0.retain(|s| s.until.is_none_or(|u| u > now));
        self.0.insert(
            0,
            Secret {
                value,
                issue_from,
                until: None,
            },
        );
    }

    /// The secret credentials are issued with now: the newest already issuable.
    pub fn issuing(&self, now: i64) -> Option<&Secret> {
        self.0
            .iter()
            .find(|s| s.issue_from <= now && s.until.is_none_or(|u| u > now))
    }

    /// The secrets a relay accepts now (those still to be issued included).
    pub fn accepted(&self, now: i64) -> impl Iterator<Item = &Secret> {
        self.0
            .iter()
            .filter(move |s| s.until.is_none_or(|u| u > now))
    }
}

/// A new random secret, in hex.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// TURN credentials for `user`, valid until `expires` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub expires: i64,
}

/// Credentials for `user` (an address of record) lasting `lifetime` seconds from `now`.
pub fn credentials(secret: &str, user: &str, now: i64, lifetime: u64) -> Credentials {
    let expires = now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
    let username = format!("{expires}:{user}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    Credentials {
        password: base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
        username,
        expires,
    }
}

/// What a client asked for in its credentials request (every part optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub request_id: Option<String>,
    pub credentials_id: Option<String>,
    /// The identity credentials are wanted for (`sip:` address).
    pub identity: Option<String>,
    /// `internet` or `intranet`.
    pub location: Option<String>,
    /// Minutes.
    pub duration: Option<u64>,
}

impl Request {
    /// Reads a `credentialsRequest` body; an empty body asks for the defaults.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        if !text.contains("<credentialsRequest") {
            return Err("the body has no credentialsRequest element".into());
        }
        let duration = element(text, "duration")
            .map(|d| {
                d.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("duration {d:?} is not a number of minutes"))
            })
            .transpose()?;
        Ok(Self {
            request_id: attribute(text, "requestID"),
            credentials_id: attribute(text, "credentialsRequestID"),
            identity: element(text, "identity").map(|s| s.trim().to_owned()),
            location: element(text, "location").map(|s| s.trim().to_owned()),
            duration,
        })
    }
}

fn element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))?;
    Some(&text[start..start + end])
}

fn attribute(text: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = text.find(&key)? + key.len();
    let end = text[start..].find('"')?;
    Some(text[start..start + end].to_owned())
}

/// The answer to a credentials request: the credentials and where the relay is.
pub fn answer(
    req: &Request,
    identity: &str,
    creds: &Credentials,
    lifetime_minutes: u64,
    relay: &confab_topology::MediaRelay,
) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<response xmlns=\"http://schemas.microsoft.com/2006/09/sip/mrasp\" requestID=\"{}\" version=\"2.0\" serverVersion=\"2.0\" to=\"{}\" reasonPhrase=\"OK\">\r\n<credentialsResponse credentialsRequestID=\"{}\">\r\n<credentials>\r\n<username>{}</username>\r\n<password>{}</password>\r\n<duration>{lifetime_minutes}</duration>\r\n<expires>{}</expires>\r\n</credentials>\r\n<mediaRelayList>\r\n",
        esc(req.request_id.as_deref().unwrap_or("")),
        esc(identity),
        esc(req.credentials_id.as_deref().unwrap_or("")),
        esc(&creds.username),
        esc(&creds.password),
        creds.expires,
    );
    for location in ["internet", "intranet"] {
        let _ = write!(
            s,
            "<mediaRelay>\r\n<location>{location}</location>\r\n<hostName>{}</hostName>\r\n<address>{}</address>\r\n<udpPort>{}</udpPort>\r\n<tcpPort>{}</tcpPort>\r\n<tlsPort>{}</tlsPort>\r\n</mediaRelay>\r\n",
            esc(&relay.host),
            relay.address,
            relay.udp_port,
            relay.tcp_port,
            relay.tls_port
        );
    }
    s.push_str("</mediaRelayList>\r\n</credentialsResponse>\r\n</response>\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_the_turn_rest_scheme() {
        // computed independently: printf %s 1600000000:alice@example.com |
        //   openssl dgst -sha1 -hmac s3cret -binary | base64
        let c = credentials(
            "s3cret",
            "alice@example.com",
            1_600_000_000 - 28_800,
            LIFETIME,
        );
        assert_eq!(c.username, "1600000000:alice@example.com");
        assert_eq!(c.expires, 1_600_000_000);
        assert_eq!(c.password, "sKIYSmvzuHUl+MIodBXMMUQimwo=");
    }

    fn secret(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn a_rotation_keeps_the_old_secret_for_the_grace_period_and_issues_the_new_one_once_edges_know_it(
    ) {
        let mut s = Secrets::default();
        s.rotate(secret(1), 1000, Some(3600));
        assert_eq!(s.issuing(1000 + PROPAGATION).unwrap().value, secret(1));
        s.rotate(secret(2), 5000, Some(3600));
        // the Edges learn the new one first: Front Ends go on issuing the old one a while
        assert_eq!(s.issuing(5000).unwrap().value, secret(1));
        assert_eq!(s.accepted(5000).count(), 2);
        assert_eq!(s.issuing(5000 + PROPAGATION).unwrap().value, secret(2));
        // the old one is accepted until the grace period ends, then dropped
        let end = 5000 + PROPAGATION + 3600;
        assert_eq!(s.accepted(end - 1).count(), 2);
        assert_eq!(s.accepted(end).count(), 1);
        let again = Secrets::parse(&s.render()).unwrap();
        assert_eq!(again, s, "the stored form reads back");
        s.rotate(secret(3), end + 1, Some(60));
        assert_eq!(
            s.0.len(),
            2,
            "an expired secret is removed at the next rotation"
        );
    }

    #[test]
    fn a_revoking_rotation_drops_every_old_secret_at_once() {
        let mut s = Secrets::default();
        s.rotate(secret(1), 1000, Some(3600));
        s.rotate(secret(2), 2000, None);
        assert_eq!(s.0.len(), 1);
        assert_eq!(s.issuing(2000).unwrap().value, secret(2));
        assert_eq!(s.accepted(2000).count(), 1);
    }

    #[test]
    fn damaged_secrets_are_named() {
        let e = Secrets::parse("zz 1 -\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(Secrets::parse(&format!("{} x -", secret(1))).is_err());
    }

    #[test]
    fn a_credentials_request_is_read() {
        let body = br#"<request requestID="7" version="1.0" to="sip:mras" from="sip:alice@example.com" xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp"><credentialsRequest credentialsRequestID="8"><identity>sip:alice@example.com</identity><location>internet</location><duration>480</duration></credentialsRequest></request>"#;
        let r = Request::parse(body).unwrap();
        assert_eq!(r.request_id.as_deref(), Some("7"));
        assert_eq!(r.credentials_id.as_deref(), Some("8"));
        assert_eq!(r.identity.as_deref(), Some("sip:alice@example.com"));
        assert_eq!(r.duration, Some(480));
        assert_eq!(Request::parse(b"").unwrap(), Request::default());
        assert!(Request::parse(b"<other/>").is_err());
        assert!(
            Request::parse(b"<credentialsRequest><duration>x</duration>")
                .unwrap_err()
                .contains("not a number")
        );
    }
}
