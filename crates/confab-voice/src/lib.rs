//! Enterprise voice, as an administrator of Skype for Business Server knows it: what a user
//! dials is normalized to E.164 by the rules of a **dial plan**; the user's **voice policy**
//! lists **PSTN usages** in order; **routes** match numbers and serve usages, each with the
//! **trunks** (gateways) that may carry the call, tried in order; a trunk translates numbers
//! into the format its gateway expects.
//!
//! This crate is the model and the decisions, without I/O: the configuration as one document
//! ([`VoiceConfig`], TOML, so that it can live in version control), its checks (every mistake
//! named with the object and what to fix: [`Voice::compile`]), normalization
//! ([`Voice::normalize`]) and routing ([`Voice::routes_for`]). The server and the `confab voice`
//! commands use it; it is tested on its own.

mod diff;
mod forwarding;
mod model;
mod normalize;
mod pattern;
mod routing;
mod validate;

pub use diff::changes;
pub use forwarding::{ForwardTo, Forwarding, NO_ANSWER_AFTER};
pub use model::{
    CallerId, DialPlan, Emergency, Gateway, NormalizationRule, Route, Scope, Transport, Trunk,
    Unassigned, VoiceConfig, VoicePolicy,
};
pub use normalize::{line_uri, Dialled, Normalized};
pub use pattern::{Pattern, PatternError};
pub use routing::{Candidate, NoRoute, Routing};
pub use validate::Problem;

/// Where a user sits, for choosing the dial plan and voice policy that apply (the most specific
/// wins: the user's own, then the pool's, the site's, the global one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The dial plan assigned to the user (`--dial-plan`), if any.
    pub dial_plan: Option<String>,
    /// The voice policy assigned to the user (`--voice-policy`), if any.
    pub voice_policy: Option<String>,
    /// The FQDN of the user's pool.
    pub pool: Option<String>,
    /// The site of the user's pool.
    pub site: Option<String>,
}

/// A checked voice configuration, its patterns compiled: what the server routes with.
#[derive(Debug, Clone)]
pub struct Voice {
    config: VoiceConfig,
    /// Each dial plan's rules, compiled, in the plan's order (same indexes as the config).
    plans: Vec<Vec<Pattern>>,
    /// Each route's number pattern, compiled.
    routes: Vec<Pattern>,
    /// Each trunk's outbound called-number and calling-number rules, and inbound rules.
    trunks: Vec<TrunkRules>,
    /// Each dial plan's rules, and all routes' patterns, as one set each: matched in one pass.
    plan_sets: Vec<Option<pattern::PatternSet>>,
    route_set: Option<pattern::PatternSet>,
}

#[derive(Debug, Clone, Default)]
struct TrunkRules {
    called: Vec<Pattern>,
    calling: Vec<Pattern>,
    inbound: Vec<Pattern>,
}

impl Voice {
    /// The configuration this was compiled from.
    pub fn config(&self) -> &VoiceConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests;
