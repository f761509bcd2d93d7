//! Meetings, as an administrator of Lync or Skype for Business Server knows them: a user (the
//! organizer) creates a meeting and gets its join information — the conference's SIP address,
//! a conference ID for callers by phone — and the participants join by calling that address;
//! the server's focus (RFC 4353) admits them, mixes their audio, relays their instant messages
//! and tells everyone who is there (RFC 4575).
//!
//! This crate is the model without I/O: the meetings as one TOML document ([`Meetings`]), the
//! checks of a new or changed meeting, conference IDs and the address a meeting answers at.
//! The server's focus (`confab-core`'s `meetings`) and the `confab meeting` commands use it.

mod model;

pub use model::{Meeting, Meetings, Settings, DEFAULT_PARTICIPANT_LIMIT};

/// The store setting the meetings document (TOML) is kept under.
pub const MEETINGS_SETTING: &str = "meetings";
/// The user part of every meeting's address starts so: `meet-<conference ID>@<domain>`. Users
/// cannot have such names (`confab user add` refuses them).
pub const URI_PREFIX: &str = "meet-";

/// The conference ID a meeting address's user part names (`meet-4821937` → `4821937`), if it
/// is one.
pub fn conference_id(user: &str) -> Option<&str> {
    let id = user
        .get(..URI_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(URI_PREFIX))?;
    let id = &user[id.len()..];
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}
