//! Meetings, as an administrator of Lync or Skype for Business Server knows them: a user (the
//! organizer) creates a meeting and gets its join information — the conference's SIP address,
//! a conference ID for callers by phone — and the participants join by calling that address;
//! the server's focus (RFC 4353) admits them, mixes their audio, relays their instant messages
//! and tells everyone who is there (RFC 4575).
//!
//! This crate is the model without I/O: the meetings as one TOML document ([`Meetings`]), the
//! checks of a new or changed meeting, conference IDs and the address a meeting answers at,
//! dial-in regions and access numbers (the conferencing attendant answers them), and users'
//! dial-in PINs (kept as salted hashes).
//! The server's focus (`confab-core`'s `meetings`) and the `confab meeting` commands use it.

mod model;
mod pin;

pub use model::{
    AccessNumber, Directory, Meeting, Meetings, Region, Settings, DEFAULT_MEDIA_TIMEOUT,
    DEFAULT_PARTICIPANT_LIMIT, MAX_DIRECTORIES,
};
pub use pin::{pin_hash, pin_matches, PIN_PREFIX};

/// The store setting the meetings document (TOML) is kept under.
pub const MEETINGS_SETTING: &str = "meetings";
/// The user part of every meeting's address starts so: `meet-<conference ID>@<domain>`. Users
/// cannot have such names (`confab user add` refuses them).
pub const URI_PREFIX: &str = "meet-";

/// The prefix of the store settings holding the attendant's prompts (µ-law at 8 kHz, base64,
/// as response groups keep theirs): the rest is the prompt's name in [`PROMPTS`].
pub const PROMPT_PREFIX: &str = "audio:attendant-";

/// What the conferencing attendant says, by name: spoken once by `confab meeting
/// access-number add` (espeak-ng) and stored.
pub const PROMPTS: [(&str, &str); 7] = [
    (
        "welcome",
        "Welcome to the meeting. Enter the conference I D, then press pound.",
    ),
    (
        "pin",
        "This meeting needs the leader's pin. Enter it, then press pound.",
    ),
    (
        "invalid-id",
        "That conference I D is not valid. Enter it again, then press pound.",
    ),
    (
        "invalid-pin",
        "That pin is not valid. Enter it again, then press pound.",
    ),
    ("goodbye", "Sorry, that did not work. Goodbye."),
    (
        "refused",
        "You cannot join this meeting now: it is locked or full. Goodbye.",
    ),
    ("joining", "You are now joining the meeting."),
];

/// The user part of the conferencing attendant's address (`meet-attendant@domain`): calls to
/// access numbers are put through to it.
pub const ATTENDANT_USER: &str = "meet-attendant";

/// The user part of the conference factory's address (`meet-now@domain`): a call to it makes
/// an ad-hoc meeting (RFC 4579 §5.4).
pub const FACTORY_USER: &str = "meet-now";

/// Whether `user` (an address's user part) is the focus's: a meeting, the attendant or the
/// conference factory.
pub fn is_meeting_user(user: &str) -> bool {
    conference_id(user).is_some()
        || user.eq_ignore_ascii_case(ATTENDANT_USER)
        || user.eq_ignore_ascii_case(FACTORY_USER)
}

/// The conference ID a meeting address's user part names (`meet-4821937` → `4821937`), if it
/// is one.
pub fn conference_id(user: &str) -> Option<&str> {
    let id = user
        .get(..URI_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(URI_PREFIX))?;
    let id = &user[id.len()..];
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}
