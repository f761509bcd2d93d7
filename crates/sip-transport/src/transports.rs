//! Listeners, the flow table and sending.

use foldhash::{HashMap, HashMapExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::connections::{accept_loop, connect};
use crate::flow_queue::FlowQueue;
use crate::lock;
use crate::{is_sendable, Config, Event, FlowId, Source, Stats, Target, Transport};

/// Bound sockets handed to [`Transports::start`] (IO is injected: tests bind port 0).
#[derive(Debug, Default)]
pub struct Listeners {
    /// UDP sockets per shard (`udp[shard]`, one per address; see [`bind_udp`]), or none.
    pub udp: Vec<Vec<UdpSocket>>,
    pub tcp: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
    /// Server side of TLS; required when `tls` is not empty.
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// Client side of TLS, for connections Confab opens.
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// TLS listeners facing other organisations (an Edge's Access Edge): a client certificate
    /// is checked by `partner_server` and kept for [`Transports::peer_valid_for`], never taken
    /// for a deployment server's.
    pub tls_partner: Vec<TcpListener>,
    pub partner_server: Option<Arc<rustls::ServerConfig>>,
    /// Client side toward partners (addresses given a name with [`Transports::name_partner`]):
    /// their certificate must be valid for that name.
    pub partner_client: Option<Arc<rustls::ClientConfig>>,
}

struct FlowHandle {
    queue: Arc<FlowQueue>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    /// Where each shard's events go; a connection's go to shard `flow % shards`.
    pub(crate) events: Vec<mpsc::Sender<Event>>,
    pub(crate) stats: Stats,
    pub(crate) limiter: Option<Mutex<confab_ratelimit::RateLimiter>>,
    pub(crate) guard: crate::guard::OverloadGuard,
    /// Open connections per remote address (for `max_connections_per_source`).
    pub(crate) per_source: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Each shard's UDP sockets and their local addresses.
    pub(crate) udp: Vec<Vec<(UdpSocket, SocketAddr)>>,
    flows: Mutex<HashMap<FlowId, FlowHandle>>,
    pub(crate) by_remote: Mutex<HashMap<(Transport, SocketAddr), FlowId>>,
    pub(crate) next_flow: AtomicU64,
    pub(crate) open: AtomicUsize,
    pub(crate) tls_client: Option<TlsConnector>,
    pub(crate) partner_client: Option<TlsConnector>,
    /// Partners' addresses and the name their certificate must carry.
    pub(crate) partner_names: Mutex<HashMap<SocketAddr, String>>,
    /// The certificate of each partner connection (its end-entity certificate, DER).
    pub(crate) partner_certs: Mutex<HashMap<FlowId, Vec<u8>>>,
    /// Partner connections we are opening, and the name the handshake will hold them to:
    /// what is sent to the partner meanwhile queues on them.
    pub(crate) partner_connecting: Mutex<HashMap<FlowId, String>>,
    /// Listening addresses, to name the local end of connections we open (per family).
    pub(crate) local_tcp: Vec<SocketAddr>,
    pub(crate) local_tls: Vec<SocketAddr>,
    pub(crate) local_partner: Vec<SocketAddr>,
}

/// Handle to the running transports for one shard (its UDP sockets); cheap to clone.
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
    shard: usize,
}

impl Transports {
    /// Starts receiving on every listener. `events` has one queue per shard: a connection's
    /// messages and end go to one of them; datagrams are read by each shard's
    /// [`UdpReceiver`] from its own sockets (`listeners.udp[shard]`).
    pub fn start(
        listeners: Listeners,
        config: Config,
        events: Vec<mpsc::Sender<Event>>,
    ) -> std::io::Result<Self> {
        if events.is_empty() || !(listeners.udp.is_empty() || listeners.udp.len() == events.len()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "one event queue per shard, and UDP sockets for each shard or none",
            ));
        }
        let udp = listeners
            .udp
            .into_iter()
            .map(|shard| {
                shard
                    .into_iter()
                    .map(|s| s.local_addr().map(|a| (s, a)))
                    .collect::<std::io::Result<Vec<_>>>()
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let local_tcp = listeners
            .tcp
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<_>>()?;
        let local_tls = listeners
            .tls
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<_>>()?;
        let local_partner = listeners
            .tls_partner
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<_>>()?;
        let inner = Arc::new(Inner {
            config,
            events,
            stats: Stats::default(),
            per_source: Mutex::new(HashMap::new()),
            limiter: config
                .per_source
                .map(|l| Mutex::new(confab_ratelimit::RateLimiter::new(l))),
            guard: crate::guard::OverloadGuard::new(config.overload_per_source),
            udp,
            flows: Mutex::new(HashMap::new()),
            by_remote: Mutex::new(HashMap::new()),
            next_flow: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            tls_client: listeners.tls_client.map(TlsConnector::from),
            partner_client: listeners.partner_client.map(TlsConnector::from),
            partner_names: Mutex::new(HashMap::new()),
            partner_certs: Mutex::new(HashMap::new()),
            partner_connecting: Mutex::new(HashMap::new()),
            local_tcp,
            local_tls,
            local_partner,
        });
        for l in listeners.tcp {
            tokio::spawn(accept_loop(inner.clone(), l, None));
        }
        if !listeners.tls.is_empty() {
            let acceptor = TlsAcceptor::from(listeners.tls_server.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a TLS listener needs a server certificate",
                )
            })?);
            for l in listeners.tls {
                tokio::spawn(accept_loop(
                    inner.clone(),
                    l,
                    Some((acceptor.clone(), false)),
                ));
            }
        }
        if !listeners.tls_partner.is_empty() {
            let acceptor = TlsAcceptor::from(listeners.partner_server.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a partner-facing TLS listener needs its server configuration",
                )
            })?);
            for l in listeners.tls_partner {
                tokio::spawn(accept_loop(
                    inner.clone(),
                    l,
                    Some((acceptor.clone(), true)),
                ));
            }
        }
        Ok(Self { inner, shard: 0 })
    }

    /// The handle for `shard`: it reads and sends UDP on that shard's sockets.
    pub fn for_shard(&self, shard: usize) -> Self {
        Self {
            inner: self.inner.clone(),
            shard,
        }
    }

    /// The receiving side of this shard's UDP sockets, for the task that handles what arrives
    /// (UDP messages do not go through the event channel).
    pub fn udp_receiver(&self) -> crate::UdpReceiver {
        crate::UdpReceiver::new(self.inner.clone(), self.shard)
    }

    /// Closes a connection once what is queued on it is written (the peer sees it end and,
    /// if it is a client that wants to stay signed in, connects and registers again).
    pub fn close(&self, flow: FlowId) {
        // the connection writes what is queued, shuts down and removes the rest
        let handle = lock(&self.inner.flows).remove(&flow);
        if let Some(h) = handle {
            h.queue.close();
        }
    }

    /// Sends `bytes`; never blocks. Over a stream, an open flow to the target is reused, else a
    /// connection is opened in the background ([`Event::ConnectFailed`] if that fails).
    pub fn send(&self, target: Target, bytes: Vec<u8>) {
        if !is_sendable(&target.addr) {
            Stats::bump(&self.inner.stats.send_dropped);
            tracing::warn!(event = "send.refused", addr = %target.addr, "not sending to a broadcast, multicast or unspecified address");
            return;
        }
        match target.transport {
            Transport::Udp => {
                let sock = self
                    .inner
                    .udp
                    .get(self.shard)
                    .into_iter()
                    .flatten()
                    .find(|(_, a)| a.is_ipv4() == target.addr.is_ipv4())
                    .map(|(s, _)| s);
                match sock {
                    Some(s) if s.try_send_to(&bytes, target.addr).is_ok() => {}
                    _ => Stats::bump(&self.inner.stats.send_dropped),
                }
            }
            transport => {
                let flow = target
                    .flow
                    .filter(|f| lock(&self.inner.flows).contains_key(f))
                    .or_else(|| {
                        lock(&self.inner.by_remote)
                            .get(&(transport, target.addr))
                            .copied()
                    })
                    .filter(|f| self.may_carry(*f, target.addr));
                let unsent = match flow {
                    Some(f) => self.inner.send_on_flow(f, bytes).err(),
                    None => Some(bytes),
                };
                if let Some(bytes) = unsent {
                    // the flow exists from now on: what is sent to the target while the
                    // connection is being made queues behind this, instead of opening more
                    // connections (a peer's per-source limit would refuse them)
                    let (flow, rx) = self.inner.add_flow(transport, target.addr);
                    // connections we open go to other servers (the deployment's, partners')
                    // far more often than to a device: a trunk's queue
                    rx.widen();
                    let partner = (transport == Transport::Tls)
                        .then(|| self.partner_name(target.addr))
                        .flatten();
                    if let Some(name) = &partner {
                        lock(&self.inner.partner_connecting).insert(flow, name.clone());
                    }
                    let _ = self.inner.send_on_flow(flow, bytes);
                    tokio::spawn(connect(self.inner.clone(), target, flow, rx, partner));
                }
            }
        }
    }

    /// The engine is behind: for the next few seconds each address no user authenticated from
    /// may send only its share (`Config::overload_per_source`); the rest is dropped unread.
    pub fn overloaded(&self) {
        self.inner
            .guard
            .engage(std::time::Instant::now(), std::time::Duration::from_secs(5));
    }

    /// A user authenticated from `ip`: it is not limited under overload.
    pub fn trust(&self, ip: std::net::IpAddr) {
        self.inner.guard.trust(ip);
    }

    /// Connections to `addr` are to a partner whose certificate must be valid for `name`
    /// (checked against the partners' roots, not the deployment's CA).
    pub fn name_partner(&self, addr: SocketAddr, name: String) {
        lock(&self.inner.partner_names).insert(addr, name);
    }

    /// Whether the certificate a partner connection presented (on a partner-facing listener,
    /// or as the server of a partner connection we opened) is valid for `name`; `None` when
    /// the connection is gone or showed no certificate.
    pub fn peer_valid_for(&self, flow: FlowId, name: &str) -> Option<bool> {
        let certs = lock(&self.inner.partner_certs);
        let der = CertificateDer::from(certs.get(&flow)?.as_slice());
        let cert = webpki::EndEntityCert::try_from(&der).ok()?;
        let name = ServerName::try_from(name).ok()?;
        Some(cert.verify_is_valid_for_subject_name(&name).is_ok())
    }

    /// Whether an open connection to `addr` may carry what is sent there: to a partner, only
    /// one whose certificate is valid for the name the partner must have now (DNS may have
    /// led another domain to the same address).
    /// A connection we are still opening carries it when it is being opened for that name.
    fn may_carry(&self, flow: FlowId, addr: SocketAddr) -> bool {
        self.partner_name(addr).is_none_or(|n| {
            self.peer_valid_for(flow, &n) == Some(true)
                || lock(&self.inner.partner_connecting).get(&flow) == Some(&n)
        })
    }

    /// The name the certificate of the partner at `addr` must carry, if it is a partner's.
    fn partner_name(&self, addr: SocketAddr) -> Option<String> {
        lock(&self.inner.partner_names).get(&addr).cloned()
    }

    /// Whether the flow is still open.
    pub fn flow_is_open(&self, flow: FlowId) -> bool {
        lock(&self.inner.flows).contains_key(&flow)
    }

    /// Open connections.
    pub fn open_connections(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }
}

impl Inner {
    /// Hands a received message to the engine, unless its source is over its rate or the
    /// engine's queue is full (both dropped and counted: memory stays bounded under a flood).
    pub(crate) fn deliver(&self, bytes: Vec<u8>, source: Source) {
        if !self.within_rate(&source) {
            return;
        }
        let flow = source.flow.unwrap_or(0);
        if self
            .events_for(flow)
            .try_send(Event::Message { bytes, source })
            .is_err()
        {
            Stats::bump(&self.stats.queue_full);
        }
    }

    /// The queue of the shard that handles connection `flow`.
    pub(crate) fn events_for(&self, flow: FlowId) -> &mpsc::Sender<Event> {
        &self.events[flow as usize % self.events.len()]
    }

    /// Tells every shard (whichever asked for the connection) that it could not be made.
    pub(crate) fn connect_failed(&self, target: Target) {
        for events in &self.events {
            let _ = events.try_send(Event::ConnectFailed { target });
        }
    }

    /// A received datagram as an event, or `None` when it is a keep-alive, too big or over its
    /// source's rate.
    pub(crate) fn datagram(
        &self,
        data: &[u8],
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Option<Event> {
        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return None; // keep-alive
        }
        if data.len() > self.config.max_message_size {
            Stats::bump(&self.stats.oversized);
            tracing::warn!(event = "udp.oversized", %remote, size = data.len(), "dropping datagram over the message size limit");
            return None;
        }
        let source = Source {
            transport: Transport::Udp,
            remote,
            local,
            flow: None,
            peer_verified: false,
        };
        self.within_rate(&source).then(|| Event::Message {
            bytes: data.to_vec(),
            source,
        })
    }

    /// Whether `source` is within its per-source rate (counted and logged when not).
    fn within_rate(&self, source: &Source) -> bool {
        if let Some(l) = &self.limiter {
            let allowed = l
                .lock()
                .map(|mut l| l.allow(source.remote.ip(), std::time::Instant::now()))
                .unwrap_or(true);
            if !allowed {
                let n = self.stats.rate_limited.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(event = "sip.rate_limited", remote = %source.remote, dropped = n, "messages over the per-source rate dropped (see --per-source-rate)");
                }
                return false;
            }
        }
        if !self
            .guard
            .allow(source.remote.ip(), std::time::Instant::now())
        {
            let n = self.stats.overload_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(event = "sip.overload_dropped", remote = %source.remote, dropped = n, "under overload, messages over an unauthenticated source's share dropped");
            }
            return false;
        }
        true
    }

    /// Queues bytes on a flow; gives them back if the flow is gone (a full queue drops them,
    /// counted).
    pub(crate) fn send_on_flow(&self, flow: FlowId, bytes: Vec<u8>) -> Result<(), Vec<u8>> {
        let queue = lock(&self.flows).get(&flow).map(|h| h.queue.clone());
        let Some(queue) = queue else {
            return Err(bytes);
        };
        if queue.push(bytes).is_err() {
            Stats::bump(&self.stats.send_dropped);
        }
        Ok(())
    }

    pub(crate) fn add_flow(
        &self,
        transport: Transport,
        remote: SocketAddr,
    ) -> (FlowId, Arc<FlowQueue>) {
        let id = self.next_flow.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(FlowQueue::default());
        lock(&self.flows).insert(
            id,
            FlowHandle {
                queue: queue.clone(),
            },
        );
        lock(&self.by_remote).insert((transport, remote), id);
        self.open.fetch_add(1, Ordering::Relaxed);
        *lock(&self.per_source).entry(remote.ip()).or_insert(0) += 1;
        (id, queue)
    }

    pub(crate) fn remove_flow(&self, flow: FlowId, transport: Transport, remote: SocketAddr) {
        lock(&self.partner_certs).remove(&flow);
        lock(&self.partner_connecting).remove(&flow);
        let handle = lock(&self.flows).remove(&flow);
        if let Some(h) = handle {
            h.queue.close();
        }
        let mut by = lock(&self.by_remote);
        if by.get(&(transport, remote)) == Some(&flow) {
            by.remove(&(transport, remote));
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        let mut per = lock(&self.per_source);
        if let Some(n) = per.get_mut(&remote.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&remote.ip());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Batch;

    /// Datagrams dropped on arrival (here: over their source's rate) still count toward a
    /// batch, so a flood of them cannot keep the engine's task reading forever.
    #[tokio::test]
    async fn a_batch_ends_after_max_datagrams_read_even_when_all_are_dropped() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let config = Config {
            per_source: Some(confab_ratelimit::Limits {
                rate: 0.001,
                burst: 1.0,
                max_sources: 16,
            }),
            ..Config::default()
        };
        let listeners = Listeners {
            udp: vec![vec![server]],
            ..Listeners::default()
        };
        let transports = Transports::start(listeners, config, vec![tx]).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..20 {
            // on loopback a datagram is queued at the receiver before send_to returns
            client
                .send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", addr)
                .unwrap();
        }
        let mut udp = transports.udp_receiver();
        let mut got = Vec::new();
        assert_eq!(udp.recv(&mut got, 8).await, Batch::Full);
        assert_eq!(got.len(), 1, "only the first is within the source's burst");
        assert_eq!(transports.stats().rate_limited.load(Ordering::Relaxed), 7);
    }

    /// What is sent to a partner while its connection is being made queues on that
    /// connection: a burst of messages opens one connection (before, each message opened its
    /// own until a handshake finished: thousands of TLS handshakes in a federation burst).
    #[tokio::test]
    async fn messages_to_a_partner_queue_on_the_connection_being_opened() {
        let partner = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        partner.set_nonblocking(true).unwrap();
        let addr = partner.local_addr().unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let listeners = Listeners {
            partner_client: Some(Arc::new(client)),
            ..Listeners::default()
        };
        let (tx, _rx) = mpsc::channel(16);
        let transports = Transports::start(listeners, Config::default(), vec![tx]).unwrap();
        transports.name_partner(addr, "sip.partner.test".into());
        let target = Target {
            transport: Transport::Tls,
            addr,
            flow: None,
        };
        for _ in 0..5 {
            transports.send(
                target,
                b"MESSAGE sip:bob@partner.test SIP/2.0\r\n\r\n".to_vec(),
            );
            tokio::task::yield_now().await;
        }
        // the partner never answers the handshake: every connection stays open meanwhile
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut accepted = Vec::new();
        while let Ok((c, _)) = partner.accept() {
            accepted.push(c);
        }
        assert_eq!(accepted.len(), 1, "one connection carries all five");
        assert_eq!(transports.open_connections(), 1);
    }
}
