//! Users' dial-in PINs: digits a caller by phone enters to prove who they are. Kept as a salted
//! SHA-256 hash (`sha256$<salt>$<hash>`, in the store setting `pin:<user@domain>`), never as
//! the digits.

use sha2::{Digest, Sha256};

/// The prefix of the store settings holding PIN hashes: the rest is `user@domain`.
pub const PIN_PREFIX: &str = "pin:";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(salt: &str, pin: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b":");
    h.update(pin.as_bytes());
    hex(&h.finalize())
}

/// The stored form of `pin` with `salt` (random bytes of the caller's).
pub fn pin_hash(pin: &str, salt: &[u8]) -> String {
    let salt = hex(salt);
    format!("sha256${salt}${}", digest(&salt, pin))
}

/// Whether `pin` is the one `stored` was made of.
pub fn pin_matches(stored: &str, pin: &str) -> bool {
    let mut parts = stored.split('$');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("sha256"), Some(salt), Some(hash), None) => {
            // compared whole, whatever differs first
            let want = digest(salt, pin);
            want.len() == hash.len()
                && want
                    .bytes()
                    .zip(hash.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_kept_salted_and_only_its_digits_match() {
        let a = pin_hash("24680", &[1, 2, 3, 4]);
        let b = pin_hash("24680", &[5, 6, 7, 8]);
        assert_ne!(a, b, "salted");
        assert!(!a.contains("24680"));
        assert!(pin_matches(&a, "24680") && pin_matches(&b, "24680"));
        assert!(!pin_matches(&a, "24681"));
        assert!(
            !pin_matches("sha256$zz", "24680"),
            "a damaged hash matches nothing"
        );
    }
}
