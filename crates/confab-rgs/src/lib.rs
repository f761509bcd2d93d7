//! Response groups, as an administrator of Skype for Business Server knows them: **agent
//! groups** (members, formal or informal participation, alert time, a routing method),
//! **queues** (agent groups in order, a time-out and an overflow, each with its action) and
//! **workflows** (the number and address callers reach: a hunt group straight to a queue, or
//! an interactive voice response of up to two levels; welcome message, music on hold,
//! business hours, holidays). Every object has one owner pool.
//!
//! This crate is the model and the decisions, without I/O: the configuration as one TOML
//! document ([`RgsConfig`]), its checks (every mistake named with its object and the fix:
//! [`RgsConfig::check`]), whether a workflow is open at a given time ([`hours`]) and the order
//! a group's agents are offered a call ([`hunt`]). The server's response-group application and
//! the `confab rgs` commands use it.

pub mod hours;
pub mod hunt;
mod model;
mod validate;

pub use model::{
    Candidate, Closed, Group, Holiday, HolidaySet, Hours, Ivr, IvrOption, Overflow, Participation,
    Prompt, Queue, RgsConfig, Routing, Then, Timeout, Workflow,
};
pub use validate::Problem;

/// The store setting the response-group document (TOML) is kept under.
pub const RGS_SETTING: &str = "rgs";
/// The store setting holding which agents are signed in to which formal groups: one
/// `group<TAB>user@domain` per line.
pub const SIGNED_IN_SETTING: &str = "rgs-signed-in";
/// The prefix of the store settings holding prompts and music (µ-law at 8 kHz, base64): the
/// rest of the name is [`Prompt::audio`].
pub const AUDIO_PREFIX: &str = "audio:";
