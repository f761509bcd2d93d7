//! The request pipeline: an explicit chain of named processors. Each processor either lets the
//! request continue or has answered it (or absorbed it). A role is its list of processors:
//! the Front End's is [`FRONT_END`]; Director and Edge chains will be lists of their own.

/// One step of request processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processor {
    /// Decode the headers a proxy relies on; 400 naming the bad header, or a missing one.
    Sanity,
    /// Match retransmissions, ACKs and CANCELs to server transactions; create new ones.
    Transaction,
    /// Where the request comes from: inside, a remote user or a federated partner through an
    /// Edge (decided at the Edge, carried inside by a mark only deployment servers can set).
    Origin,
    /// While the server drains for shutdown: 503 with Retry-After for new dialogs and
    /// out-of-dialog requests; requests within existing dialogs go on.
    Admission,
    /// Remove the Route values that name this server (loose routing, RFC 3261 §16.4); a
    /// request claiming a dialog without our sealed Route is handled as out-of-dialog (a stray
    /// ACK dropped), so that only dialogs we are on are relayed as such.
    RoutePop,
    /// 483 when Max-Forwards is exhausted.
    MaxForwards,
    /// 482 when the request already went through here unchanged.
    LoopDetection,
    /// 420 for Proxy-Require (and Require on requests we answer) naming unknown extensions.
    Extensions,
    /// Digest: 401 for REGISTER, 407 for other requests from our users; lockout on failures.
    Authenticate,
    /// Archiving (a MESSAGE the policy keeps; critical mode parks it until the archive has
    /// it) and call records (an INVITE is noted).
    Archive,
    /// Registrar, OPTIONS health answer, or proxying to the target's devices.
    Dispatch,
    /// The Edge's routing: from the outside to the next hop only; from the inside along the
    /// route the inside gave (to a remote user's connection).
    EdgeRoute,
}

/// The Front End: registrar, proxy and (later) presence for the users homed on its pool.
pub const FRONT_END: &[Processor] = &[
    Processor::Sanity,
    Processor::Transaction,
    Processor::Origin,
    Processor::RoutePop,
    Processor::Admission,
    Processor::MaxForwards,
    Processor::LoopDetection,
    Processor::Extensions,
    Processor::Authenticate,
    Processor::Archive,
    Processor::Dispatch,
];

/// The Edge: no users, no authentication (the next hop does it), no database.
pub const EDGE: &[Processor] = &[
    Processor::Sanity,
    Processor::Transaction,
    Processor::Origin,
    Processor::RoutePop,
    Processor::Admission,
    Processor::MaxForwards,
    Processor::LoopDetection,
    Processor::Extensions,
    Processor::EdgeRoute,
];

/// Where a request for one of our users may go: each source adds branches to the proxy's
/// fork, in the order the role lists them. Voice routes (a number dialled out through a
/// gateway) and hunt groups (a response group's agents) will be sources too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSource {
    /// The user's devices registered at this server: their Path, connection or Contact.
    Devices,
    /// The other servers of the pool that hold some of the user's registrations (each forks
    /// to its own devices); this server's devices that moved to another are dropped.
    PoolServers,
}

/// The Front End's target sources.
pub const FRONT_END_TARGETS: &[TargetSource] = &[TargetSource::Devices, TargetSource::PoolServers];

/// What a processor decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}
