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

/// Pops the next item of a transaction's output queue; an emptied queue gives its buffer back.
/// A completed transaction waits with nothing queued (32 s for Timer J over UDP), and under
/// load thousands wait at once.
fn drained<T>(q: &mut std::collections::VecDeque<T>) -> Option<T> {
    let item = q.pop_front();
    if item.is_none() && q.capacity() > 0 {
        *q = std::collections::VecDeque::new();
    }
    item
}
