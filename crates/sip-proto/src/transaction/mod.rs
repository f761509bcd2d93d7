//! RFC 3261 §17 transactions as sans-IO state machines. Each takes input
//! (`handle_*`, with the current time passed in) and is then drained of what it wants done:
//! `poll_transmit` (bytes to send to the transaction's peer), `poll_event` (what the transaction
//! user must hear) and `poll_timeout` (when to call `handle_timeout` next).

mod client;
mod key;
mod server;
mod timers;

pub use client::{ClientEvent, ClientState, ClientTransaction};
pub use key::{client_key, server_key};
pub use server::{ServerEvent, ServerState, ServerTransaction};
pub use timers::{Timer, TimerConfig};
