//! Engine settings: names, addresses, registration and authentication policy.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sip_proto::transaction::TimerConfig;
use sip_proto::Limits;

/// Everything the engine needs to know about itself.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The SIP domains served (the first is the digest realm).
    pub domains: Vec<String>,
    /// The host Confab puts in Via and Record-Route (an address clients can reach); an IPv6
    /// address in brackets.
    pub advertised_host: String,
    /// The host for peers reached over IPv6 when the server listens on both families
    /// (`[2001:db8::1]`); `None`: `advertised_host` for everyone.
    pub advertised_host6: Option<String>,
    pub udp_port: Option<u16>,
    pub tcp_port: Option<u16>,
    pub tls_port: Option<u16>,
    pub limits: Limits,
    pub timers: TimerConfig,
    /// Timer C (RFC 3261 §16.6 step 11): how long a proxied INVITE branch may ring without a
    /// final response (reset by each provisional) before it is CANCELled. Over 3 minutes.
    pub timer_c: Duration,
    /// Registration lifetimes: below `min_expires` is answered 423.
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// Digest algorithms challenged with, in the order offered. SIPp answers only the first
    /// challenge and cannot do SHA-256, hence MD5 first by default.
    pub digest_algorithms: Vec<sip_auth::Algorithm>,
    /// Whether digest authentication is offered over UDP and TCP; when false, only requests
    /// that arrive over TLS are challenged (internet-facing roles: passwords' digests never
    /// cross the internet in clear).
    pub digest_over_plain: bool,
    /// Digest nonce lifetime.
    pub nonce_ttl: Duration,
    /// When failed authentications lock a user at an address, an address, or a user's
    /// unfamiliar addresses (`sip_auth::Guards`); the per-address limit is `failures` too.
    pub lockout: sip_auth::Policy,
    /// Value of the Server / User-Agent header (the product without its version by default:
    /// less to fingerprint).
    pub server_name: String,
    /// Presence limits and lifetimes.
    pub presence: crate::presence::PresenceConfig,
    /// Home pools, when the deployment has more than one place for users (several pools, or a
    /// Director); `None`: every user is local.
    pub homing: Option<crate::homing::Homing>,
    /// `host:port` this server writes into the registrations it takes (`Binding::server`);
    /// other servers reach those devices through it, over TCP. Empty on a lone server.
    pub server_id: String,
    /// Addresses (IP literals) of the other servers of the deployment. When there are any, a
    /// user's registrations may be held by another server (the store says which), and a
    /// request another server forwarded (over mutual TLS, under the deployment's seal) counts
    /// as authenticated and goes to this server's own devices only.
    pub peers: Vec<String>,
    /// Random per process: tags and identifiers this server makes differ from those of every
    /// other server sharing the deployment secret, and from its own before a restart.
    pub instance_seed: u64,
    /// The deployment's default external access policy (a user's own setting wins).
    pub external_access: confab_topology::ExternalAccess,
    /// The media relay (A/V Edge) of each served domain that has one (lowercase domain).
    pub media_relays: std::collections::HashMap<String, confab_topology::MediaRelay>,
    /// The Edge servers' inside addresses: only they get the relay secrets (with a certificate
    /// from the deployment's CA).
    pub edge_servers: Vec<IpAddr>,
    /// How long media relay credentials last at most (seconds; `crate::media_relay::LIFETIME`).
    pub relay_lifetime: u64,
    /// This server is an Edge: what it needs of its two sides (`None` on every other role).
    pub edge: Option<EdgeConfig>,
    /// Where requests for other organisations' domains go: the inside listeners of the Edge
    /// servers (TLS). Empty: federation is off, such requests are refused.
    pub federation_edges: Vec<SocketAddr>,
    /// Each pool's site (pool FQDN, site name), for the dial plans, voice policies and
    /// emergency numbers scoped to a site.
    pub pool_sites: Vec<(String, String)>,
    /// How often each trunk's gateway is probed with OPTIONS (one that does not answer is
    /// skipped until it does); zero: never (every gateway counts as up).
    pub gateway_probe: Duration,
    /// The address media streams of applications are reached at (written into their SDP).
    pub media_address: IpAddr,
    /// The UDP ports applications' media streams take (even ones, inclusive).
    pub media_ports: (u16, u16),
}

/// An Edge server's two sides. The inside is its own address (`advertised_host`, the TLS
/// port) where the deployment's servers reach it over mutual TLS; the outside is the Access
/// Edge service, where remote users and federated partners connect over TLS.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Local addresses of the Access Edge listeners: a request that arrives on one came from
    /// the outside.
    pub access: Vec<SocketAddr>,
    /// The host and port the outside is shown in Via, Record-Route and Path (the Access Edge
    /// service's address and port).
    pub access_host: String,
    pub access_port: u16,
    /// The Access Edge's port for partners (what it records toward them).
    pub federation_port: u16,
    /// The next hop's servers (their TLS listeners): a Director or pool.
    pub next_hop: Vec<SocketAddr>,
    /// Which partner domains may talk to ours.
    pub federation: confab_topology::Federation,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            domains: vec!["example.com".into()],
            advertised_host: "127.0.0.1".into(),
            advertised_host6: None,
            udp_port: Some(5060),
            tcp_port: Some(5060),
            tls_port: Some(5061),
            limits: Limits::default(),
            timers: TimerConfig::default(),
            timer_c: Duration::from_secs(181),
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            digest_algorithms: vec![sip_auth::Algorithm::Md5, sip_auth::Algorithm::Sha256],
            digest_over_plain: true,
            nonce_ttl: Duration::from_secs(300),
            lockout: sip_auth::Policy {
                failures: 10,
                ceiling: 50,
                window: Duration::from_secs(60),
                lock_for: Duration::from_secs(60),
                familiar_for: Duration::from_secs(30 * 86_400),
            },
            server_name: "Confab".into(),
            presence: crate::presence::PresenceConfig::default(),
            homing: None,
            server_id: String::new(),
            peers: Vec::new(),
            instance_seed: 0,
            external_access: confab_topology::ExternalAccess::default(),
            media_relays: std::collections::HashMap::new(),
            relay_lifetime: crate::media_relay::LIFETIME,
            edge_servers: Vec::new(),
            edge: None,
            federation_edges: Vec::new(),
            pool_sites: Vec::new(),
            gateway_probe: Duration::from_secs(30),
            media_address: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            media_ports: (20_000, 29_999),
        }
    }
}

impl EngineConfig {
    /// The digest realm.
    pub fn realm(&self) -> &str {
        self.domains.first().map_or("", String::as_str)
    }

    /// The host to put in what is sent to `peer`: the IPv6 one toward IPv6 peers when there
    /// is one.
    pub fn host_toward(&self, peer: &SocketAddr) -> &str {
        match &self.advertised_host6 {
            Some(h) if peer.is_ipv6() => h,
            _ => &self.advertised_host,
        }
    }

    /// Whether `host` (a URI or Via host, brackets or not) is one of this server's addresses
    /// (at an Edge, the Access Edge's too).
    pub fn is_own_host(&self, host: &str) -> bool {
        fn bare(h: &str) -> &str {
            h.trim_start_matches('[').trim_end_matches(']')
        }
        let host = bare(host);
        std::iter::once(&self.advertised_host)
            .chain(&self.advertised_host6)
            .chain(self.edge.as_ref().map(|e| &e.access_host))
            .any(|h| bare(h).eq_ignore_ascii_case(host))
    }

    /// Whether `ip` is a server of the deployment (a peer, an Edge, an Edge's next hop): what
    /// is sent there may carry the deployment's own marks.
    pub fn is_inside_server(&self, ip: IpAddr) -> bool {
        let text = ip.to_string();
        self.peers.contains(&text)
            || self.federation_edges.iter().any(|a| a.ip() == ip)
            || self.homing.as_ref().is_some_and(|h| h.is_edge(&ip))
            || self
                .edge
                .as_ref()
                .is_some_and(|e| e.next_hop.iter().any(|a| a.ip() == ip))
    }

    /// At an Edge, whether `peer` is on the outside (not a server of the deployment).
    pub fn is_outside(&self, peer: &SocketAddr) -> bool {
        self.edge.is_some() && !self.is_inside_server(peer.ip())
    }

    /// The host and port to put in what is sent to `target`: at an Edge the Access Edge's
    /// toward the outside (the remote users' port on a user's connection, else the partners'),
    /// else our own (IPv6 toward IPv6 peers).
    pub fn toward(&self, target: &sip_transport::Target) -> (&str, u16) {
        match &self.edge {
            Some(e) if self.is_outside(&target.addr) => {
                let port = if target.flow.is_some() {
                    e.access_port
                } else {
                    e.federation_port
                };
                (&e.access_host, port)
            }
            _ => (
                self.host_toward(&target.addr),
                crate::routing::our_port(self, target.transport),
            ),
        }
    }

    /// The host and port that the sender of a request reached us at, to record toward it: at
    /// an Edge the Access Edge's listener it came on, else as [`EngineConfig::toward`].
    pub fn toward_source(&self, source: &sip_transport::Source) -> (&str, u16) {
        match &self.edge {
            Some(e) if self.is_outside(&source.remote) => (&e.access_host, source.local.port()),
            _ => (
                self.host_toward(&source.remote),
                crate::routing::our_port(self, source.transport),
            ),
        }
    }

    /// Whether `host` is one of our SIP domains.
    pub fn serves_domain(&self, host: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    }
}
