//! SIP transports on tokio: UDP, TCP and TLS listeners, the table of open connections (flows),
//! stream framing with keep-alive pongs, and the limits that keep a hostile peer from growing
//! memory or holding a worker (message size, connection count, idle and header-arrival timeouts).
//!
//! Messages from connections reach the caller as [`Event`]s on a channel, datagrams through a
//! [`UdpReceiver`] read by the caller's own task; the caller sends through
//! [`Transports::send`], which never blocks: UDP uses a non-blocking send, streams a per-connection
//! queue, and a new outbound connection is made in the background.

#![forbid(unsafe_code)]

mod connections;
mod flow_queue;
mod guard;
mod stream;
mod transports;
mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use transports::{Listeners, Transports};

/// Locks `m`; a panic elsewhere while it was held leaves the data as it was, still usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub use udp::{bind_udp, kernel_udp_drops, Batch, UdpReceiver};

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Upper-case name for Via.
    pub fn via_name(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }
    /// Lower-case name for `transport=` URI parameters.
    pub fn param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
    /// Recognises a Via transport or URI `transport=` value.
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Self::Udp),
            "tcp" => Some(Self::Tcp),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }
    pub fn is_reliable(self) -> bool {
        self != Self::Udp
    }
}

/// Identifies one TCP or TLS connection for its lifetime.
pub type FlowId = u64;

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub transport: Transport,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// The connection, for TCP and TLS.
    pub flow: Option<FlowId>,
    /// A TLS connection whose other end proved itself with a certificate from the deployment's
    /// CA (a client certificate on connections it opened, the server's on ours): another
    /// server of the deployment.
    pub peer_verified: bool,
}

/// Where to send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// Prefer this connection while it is open.
    pub flow: Option<FlowId>,
}

/// What the transports report.
#[derive(Debug)]
pub enum Event {
    /// A message (not yet parsed).
    Message { bytes: Vec<u8>, source: Source },
    /// A stream could not be framed; the connection is being closed. `bytes` holds what had
    /// arrived, so that a 400 may still be attempted.
    Unframeable {
        bytes: Vec<u8>,
        source: Source,
        reason: sip_proto::ParseError,
    },
    /// A connection closed.
    FlowClosed {
        flow: FlowId,
        transport: Transport,
        remote: SocketAddr,
    },
    /// An outbound connection could not be made.
    ConnectFailed { target: Target },
}

/// Limits; the defaults suit a Front End.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub max_message_size: usize,
    pub max_connections: usize,
    /// Connections one address may hold open at once; 0: no limit.
    pub max_connections_per_source: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// A message whose header section has not fully arrived this long after its first byte
    /// closes the connection (slow-header attacks).
    pub header_timeout: Duration,
    /// TLS handshakes must finish within this.
    pub handshake_timeout: Duration,
    /// Messages per second (and burst) one source address may send; over it, messages are
    /// dropped at the socket, before any parsing. `None`: no limit.
    pub per_source: Option<confab_ratelimit::Limits>,
    /// The per-source limit that applies by itself while the engine is behind
    /// ([`Transports::overloaded`]) to addresses no user authenticated from.
    pub overload_per_source: Option<confab_ratelimit::Limits>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_source: 0,
            idle_timeout: Duration::from_secs(3900),
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            per_source: None,
            overload_per_source: Some(confab_ratelimit::Limits {
                rate: 50.0,
                burst: 100.0,
                max_sources: 100_000,
            }),
        }
    }
}

/// Counters of what the transports refused or dropped.
#[derive(Debug, Default)]
pub struct Stats {
    pub oversized: AtomicU64,
    pub unframeable: AtomicU64,
    pub connections_refused: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub idle_closed: AtomicU64,
    pub handshake_failures: AtomicU64,
    /// TLS handshakes completed on accepted connections.
    pub tls_handshakes: AtomicU64,
    pub send_dropped: AtomicU64,
    pub queue_full: AtomicU64,
    /// Messages dropped because their source was over its rate.
    pub rate_limited: AtomicU64,
    /// Messages dropped under overload: their (untrusted) source was over its share.
    pub overload_dropped: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a destination may be sent to: never broadcast, multicast or unspecified addresses,
/// whatever a Via says (RFC 4475 §3.3.10).
pub fn is_sendable(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast())
}
