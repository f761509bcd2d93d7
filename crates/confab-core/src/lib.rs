//! Confab's services and the Front End request pipeline.
//!
//! [`Engine`] is the whole request-processing core, sans-IO like the protocol crate: it takes
//! received bytes with their source and the current time, and returns what to send where and
//! when to be woken. Requests pass through an explicit chain of named processors (see
//! [`pipeline`]); a role (Front End today, Director and Edge later) is a list of processors.
//! [`server::run`] drives an engine with real sockets.

#![forbid(unsafe_code)]

pub mod apps;
pub mod cdr;
pub mod config;
mod engine;
pub mod homing;
mod location;
pub mod media;
pub mod media_relay;
pub mod meetings;
pub mod metrics;
mod parts;
pub mod pipeline;
pub mod presence;
pub mod rgs;
mod routing;
pub mod server;
mod voice;

pub use config::{EdgeConfig, EngineConfig};
pub use engine::{
    Engine, EngineStats, Fetched, Handover, Lookup, Now, Output, PartnerEdge, PartnerError,
    PartnerResolver, StoreJob, DRAIN_SETTING, SERVER_SETTING, UNLOCK_CHANGE,
};
pub use homing::{HomePool, Homing};
pub use presence::{Availability, PresenceConfig};
pub use voice::VOICE_SETTING;
