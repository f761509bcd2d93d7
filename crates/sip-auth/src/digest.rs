//! Challenges, stateless nonces and response verification.

use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::credentials::Credentials;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The name used on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// Recognises an `algorithm=` value; absent means MD5 (RFC 2617).
    pub fn from_name(name: Option<&str>) -> Option<Self> {
        match name {
            None => Some(Self::Md5),
            Some(n) if n.eq_ignore_ascii_case("MD5") => Some(Self::Md5),
            Some(n) if n.eq_ignore_ascii_case("SHA-256") => Some(Self::Sha256),
            _ => None,
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Self::Md5 => to_hex(&Md5::digest(data)),
            Self::Sha256 => to_hex(&Sha256::digest(data)),
        }
    }
}

/// Lower-case hex, a table lookup per nibble (`format!("{:02x}")` per byte cost a tenth of
/// the whole REGISTER path under callgrind).
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// HA1 = H(username:realm:password): what the store keeps instead of the password.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The response a client computes for qop=auth.
#[allow(clippy::too_many_arguments)]
pub fn client_response(
    alg: Algorithm,
    ha1: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let ha2 = alg.hex(format!("{method}:{uri}").as_bytes());
    alg.hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes())
}

/// The outcome of checking credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The response is right and the nonce fresh.
    Ok,
    /// The response is right but the nonce expired: challenge again with `stale=true`.
    Stale,
    /// Wrong password (or wrong digest): a real failure.
    BadResponse,
    /// A nonce this server did not issue, an unknown algorithm or missing qop: challenge again.
    BadNonce,
    /// A nonce-count not above the last one seen for this nonce: a replay.
    Replay,
}

/// Per nonce (issue time and serial): the highest nonce-count accepted and the issue time.
type NonceCounts = HashMap<u128, (u32, u64)>;

/// Stripes of the replay state: consecutive serials fall in different ones.
const STRIPES: usize = 16;

/// Issues and checks digest challenges for one realm; shared by the engines of all cores.
#[derive(Debug)]
pub struct DigestServer {
    realm: String,
    secret: [u8; 32],
    epoch: Instant,
    ttl: Duration,
    /// Highest nonce-count accepted per nonce still alive, keyed by the nonce's issue time and
    /// serial (what makes it unique): about 40 bytes per verified nonce, not a copy of it.
    /// Striped by serial, so that the engines of several cores verify at once without
    /// waiting for one lock.
    seen: Box<[Mutex<NonceCounts>]>,
    /// Makes every nonce unique, so that two clients never share one (nor its nonce-counts).
    counter: AtomicU64,
}

impl DigestServer {
    /// `secret` seals nonces (random per process); `ttl` is how long a nonce stays fresh.
    pub fn new(realm: &str, secret: [u8; 32], epoch: Instant, ttl: Duration) -> Self {
        Self {
            realm: realm.to_owned(),
            secret,
            epoch,
            ttl,
            seen: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            counter: AtomicU64::new(0),
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// One challenge header value per algorithm, in the order given, sharing one nonce.
    /// Clients take the first challenge they support, and some (SIPp) take the very first one,
    /// so the caller decides the order.
    pub fn challenges(&self, now: Instant, stale: bool, algorithms: &[Algorithm]) -> Vec<String> {
        let nonce = self.nonce(now);
        let stale = if stale { ", stale=true" } else { "" };
        algorithms
            .iter()
            .map(|a| {
                format!(
                    r#"Digest realm="{}", nonce="{nonce}", algorithm={}, qop="auth"{stale}"#,
                    self.realm,
                    a.name()
                )
            })
            .collect()
    }

    /// Checks `creds` for `method` against the stored HA1 for its algorithm (`ha1_for`).
    pub fn verify(
        &self,
        now: Instant,
        method: &str,
        creds: &Credentials,
        ha1_for: impl Fn(Algorithm) -> Option<String>,
    ) -> Verdict {
        let Some(alg) = Algorithm::from_name(creds.algorithm.as_deref()) else {
            return Verdict::BadNonce;
        };
        let Some((issued, id)) = self.check_nonce(&creds.nonce) else {
            return Verdict::BadNonce;
        };
        if !creds.realm.eq_ignore_ascii_case(&self.realm) {
            return Verdict::BadNonce;
        }
        let (Some(qop), Some(nc), Some(cnonce)) = (&creds.qop, &creds.nc, &creds.cnonce) else {
            return Verdict::BadNonce;
        };
        if !qop.eq_ignore_ascii_case("auth") {
            return Verdict::BadNonce;
        }
        let Ok(nc_val) = u32::from_str_radix(nc, 16) else {
            return Verdict::BadNonce;
        };
        let Some(ha1) = ha1_for(alg) else {
            return Verdict::BadResponse;
        };
        let expected = client_response(alg, &ha1, method, &creds.uri, &creds.nonce, nc, cnonce);
        if !constant_time_eq(
            expected.as_bytes(),
            creds.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Verdict::BadResponse;
        }
        let age = self.secs(now).saturating_sub(issued);
        if age > self.ttl.as_secs() {
            return Verdict::Stale;
        }
        let mut seen = self.stripe(id);
        match seen.get_mut(&id) {
            Some((last, _)) if nc_val <= *last => return Verdict::Replay,
            Some((last, _)) => *last = nc_val,
            None => {
                seen.insert(id, (nc_val, issued));
            }
        }
        Verdict::Ok
    }

    /// Forgets nonce-counts of nonces that have expired anyway.
    pub fn purge(&self, now: Instant) {
        let horizon = self.secs(now).saturating_sub(self.ttl.as_secs());
        for id in 0..STRIPES {
            self.stripe(id as u128)
                .retain(|_, (_, issued)| *issued >= horizon);
        }
    }

    /// How many nonces carry replay state.
    pub fn tracked_nonces(&self) -> usize {
        (0..STRIPES).map(|id| self.stripe(id as u128).len()).sum()
    }

    /// The replay state of nonce `id` (a stripe of it; a panic elsewhere leaves it usable).
    fn stripe(&self, id: u128) -> MutexGuard<'_, NonceCounts> {
        self.seen[id as usize % STRIPES]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn secs(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// nonce = hex(issue time, 8 bytes || serial, 8 bytes) + hex(first 16 bytes of
    /// HMAC(secret, time || serial || realm)).
    fn nonce(&self, now: Instant) -> String {
        let mut head = [0u8; 16];
        head[..8].copy_from_slice(&self.secs(now).to_be_bytes());
        head[8..].copy_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let mac = self.mac(&head);
        format!("{}{}", to_hex(&head), to_hex(&mac[..16]))
    }

    /// The issue time of a nonce this server sealed, and its identity (time and serial).
    fn check_nonce(&self, nonce: &str) -> Option<(u64, u128)> {
        if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut head = [0u8; 16];
        for (i, b) in head.iter_mut().enumerate() {
            *b = u8::from_str_radix(&nonce[i * 2..i * 2 + 2], 16).ok()?;
        }
        let mac = to_hex(&self.mac(&head)[..16]);
        let issued = u64::from_be_bytes(head[..8].try_into().ok()?);
        constant_time_eq(mac.as_bytes(), nonce[32..].to_ascii_lowercase().as_bytes())
            .then_some((issued, u128::from_be_bytes(head)))
    }

    fn mac(&self, ts: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.secret, &[ts, self.realm.as_bytes()].concat())
    }
}

/// HMAC-SHA-256 of `data` under `key`, as 16 lower-case hex digits: a seal other parts of the
/// server use to recognise what they issued (branches of requests already authenticated).
pub fn seal(key: &[u8; 32], data: &[u8]) -> String {
    to_hex(&hmac_sha256(key, data)[..8])
}

fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds_for(
        server: &DigestServer,
        now: Instant,
        alg: Algorithm,
        password: &str,
        nc: &str,
    ) -> Credentials {
        let ch = &server.challenges(now, false, &[alg])[0];
        assert!(ch.contains(alg.name()));
        let nonce = ch
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let h = ha1(alg, "alice", "example.com", password);
        Credentials {
            username: "alice".into(),
            realm: "example.com".into(),
            uri: "sip:example.com".into(),
            response: client_response(alg, &h, "REGISTER", "sip:example.com", &nonce, nc, "c0ffee"),
            nonce,
            algorithm: Some(alg.name().into()),
            cnonce: Some("c0ffee".into()),
            nc: Some(nc.into()),
            qop: Some("auth".into()),
            opaque: None,
        }
    }

    fn server(now: Instant) -> DigestServer {
        DigestServer::new("example.com", [7; 32], now, Duration::from_secs(300))
    }

    fn stored(alg: Algorithm) -> Option<String> {
        Some(ha1(alg, "alice", "example.com", "secret"))
    }

    #[test]
    fn md5_and_sha256_responses_verify() {
        let now = Instant::now();
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let s = server(now);
            let c = creds_for(&s, now, alg, "secret", "00000001");
            assert_eq!(
                s.verify(now, "REGISTER", &c, stored),
                Verdict::Ok,
                "{alg:?}"
            );
        }
    }

    #[test]
    fn wrong_password_is_a_bad_response() {
        let now = Instant::now();
        let s = server(now);
        let c = creds_for(&s, now, Algorithm::Md5, "guess", "00000001");
        assert_eq!(s.verify(now, "REGISTER", &c, stored), Verdict::BadResponse);
    }

    #[test]
    fn replayed_nonce_count_is_refused_and_higher_count_accepted() {
        let now = Instant::now();
        let s = server(now);
        let c1 = creds_for(&s, now, Algorithm::Md5, "secret", "00000001");
        assert_eq!(s.verify(now, "REGISTER", &c1, stored), Verdict::Ok);
        assert_eq!(s.verify(now, "REGISTER", &c1, stored), Verdict::Replay);
        let mut c2 = c1.clone();
        c2.nc = Some("00000002".into());
        c2.response = client_response(
            Algorithm::Md5,
            &stored(Algorithm::Md5).unwrap(),
            "REGISTER",
            &c2.uri,
            &c2.nonce,
            "00000002",
            "c0ffee",
        );
        assert_eq!(s.verify(now, "REGISTER", &c2, stored), Verdict::Ok);
    }

    #[test]
    fn expired_nonce_is_stale_and_forged_nonce_is_refused() {
        let t0 = Instant::now();
        let s = server(t0);
        let c = creds_for(&s, t0, Algorithm::Sha256, "secret", "00000001");
        assert_eq!(
            s.verify(t0 + Duration::from_secs(301), "REGISTER", &c, stored),
            Verdict::Stale
        );
        let mut forged = c.clone();
        forged.nonce.replace_range(0..2, "ff");
        assert_eq!(s.verify(t0, "REGISTER", &forged, stored), Verdict::BadNonce);
        let both = s.challenges(t0, true, &[Algorithm::Md5, Algorithm::Sha256]);
        assert!(
            both[0].contains("MD5")
                && both[1].contains("SHA-256")
                && both[1].ends_with("stale=true")
        );
    }

    #[test]
    fn every_challenge_has_its_own_nonce() {
        let now = Instant::now();
        let s = server(now);
        assert_ne!(
            s.challenges(now, false, &[Algorithm::Md5]),
            s.challenges(now, false, &[Algorithm::Md5])
        );
    }

    #[test]
    fn purge_forgets_expired_nonces() {
        let t0 = Instant::now();
        let s = server(t0);
        let c = creds_for(&s, t0, Algorithm::Md5, "secret", "00000001");
        s.verify(t0, "REGISTER", &c, stored);
        assert_eq!(s.tracked_nonces(), 1);
        s.purge(t0 + Duration::from_secs(400));
        assert_eq!(s.tracked_nonces(), 0);
    }
}
