//! The topology file's schema. Every table refuses unknown keys; names are validated and
//! lowercased as they are read, so the rest of the crate compares plain strings.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU16;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub deployment: Deployment,
    #[serde(default)]
    pub dns: Dns,
    #[serde(default, rename = "site")]
    pub sites: Vec<Site>,
    #[serde(default, rename = "domain")]
    pub domains: Vec<Domain>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<Pool>,
    #[serde(default, rename = "edge")]
    pub edges: Vec<Edge>,
    #[serde(default)]
    pub federation: Federation,
    #[serde(default)]
    pub external_access: ExternalAccess,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub name: String,
    /// Internal and external clients get different answers for the same names.
    #[serde(default)]
    pub split_dns: bool,
    #[serde(default = "both_generations")]
    pub clients: Vec<ClientKind>,
    /// Publish `_sipinternal._tcp` (sign-in over plain TCP).
    #[serde(default)]
    pub allow_tcp: bool,
}

fn both_generations() -> Vec<ClientKind> {
    vec![ClientKind::Legacy, ClientKind::Modern]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// Finds its server by SRV records only (Communicator 2007 R2, Lync 2010).
    Legacy,
    /// Uses autodiscover (lyncdiscover) first (Lync 2013 and later, mobile clients).
    Modern,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default = "default_ttl", deserialize_with = "ttl")]
    pub ttl: u32,
    /// Addresses of the DNS servers that publish the zones (`ns1`, `ns2`, ... in the zone
    /// files, with their address records: BIND refuses a zone whose name server has none).
    #[serde(default)]
    pub name_servers: Vec<IpAddr>,
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            ttl: default_ttl(),
            name_servers: Vec::new(),
        }
    }
}

fn default_ttl() -> u32 {
    3600
}

fn ttl<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if (1..=604_800).contains(&v) {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "TTL {v} is out of range: use 1 to 604800 seconds"
        )))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    #[serde(deserialize_with = "fqdn")]
    pub name: String,
    /// Targets of the automatic-sign-in SRV records.
    #[serde(default)]
    pub sign_in: Vec<SignIn>,
    /// Target of `_sipfederationtls._tcp.<domain>`.
    #[serde(default, deserialize_with = "opt_fqdn")]
    pub federation: Option<String>,
    /// The Edge pool serving this domain to the internet.
    #[serde(default, deserialize_with = "opt_fqdn")]
    pub edge: Option<String>,
    #[serde(default = "all_families")]
    pub publish: Vec<Family>,
}

/// Record families a domain publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `_sipinternaltls._tcp`, `_sipinternal._tcp`, `_sip._tls`, `_sipfederationtls._tcp`.
    Srv,
    /// `lyncdiscoverinternal` and `lyncdiscover`.
    Autodiscover,
    /// `sip`, `sipinternal`, `sipexternal`.
    Hosts,
}

fn all_families() -> Vec<Family> {
    vec![Family::Srv, Family::Autodiscover, Family::Hosts]
}

impl Domain {
    pub fn publishes(&self, f: Family) -> bool {
        self.publish.contains(&f)
    }
}

/// One automatic-sign-in SRV target: `"pool.fqdn"` or `{ target, priority, weight }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub target: String,
    pub priority: u16,
    pub weight: u16,
}

impl<'de> Deserialize<'de> for SignIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SignIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pool FQDN, or a table { target, priority, weight }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SignIn, E> {
                Ok(SignIn {
                    target: check_fqdn(v).map_err(E::custom)?,
                    priority: 0,
                    weight: 0,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SignIn, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Table {
                    #[serde(deserialize_with = "fqdn")]
                    target: String,
                    #[serde(default)]
                    priority: u16,
                    #[serde(default)]
                    weight: u16,
                }
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(SignIn {
                    target: t.target,
                    priority: t.priority,
                    weight: t.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Hosts users.
    #[default]
    FrontEnd,
    /// Takes sign-ins and redirects or proxies them; hosts no users.
    Director,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    #[serde(deserialize_with = "fqdn")]
    pub fqdn: String,
    pub site: String,
    #[serde(default)]
    pub role: Role,
    pub hosts_users: Option<bool>,
    #[serde(default, deserialize_with = "opt_fqdn")]
    pub backup: Option<String>,
    #[serde(default = "sip_port")]
    pub sip_port: NonZeroU16,
    #[serde(default = "tls_port")]
    pub tls_port: NonZeroU16,
    #[serde(default, deserialize_with = "opt_fqdn")]
    pub web_internal: Option<String>,
    pub web_external: Option<Named>,
    /// Names (CN and SAN) on the installed certificate; absent means the planned ones.
    pub certificate: Option<Vec<String>>,
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default, rename = "server")]
    pub servers: Vec<Server>,
}

impl Pool {
    pub fn hosts_users(&self) -> bool {
        self.hosts_users.unwrap_or(self.role == Role::FrontEnd)
    }

    /// Where HTTPS for this pool's web services lands: the load balancer's VIP, else every
    /// Front End (DNS load balancing).
    pub fn web_addresses(&self) -> Vec<IpAddr> {
        match self.load_balancer.as_ref().and_then(|lb| lb.web_vip) {
            Some(vip) => vec![vip],
            None => self.servers.iter().map(|s| s.address).collect(),
        }
    }

    pub fn web_internal_fqdn(&self) -> &str {
        self.web_internal.as_deref().unwrap_or(&self.fqdn)
    }
}

fn sip_port() -> NonZeroU16 {
    NonZeroU16::new(5060).unwrap_or(NonZeroU16::MIN)
}

fn tls_port() -> NonZeroU16 {
    NonZeroU16::new(5061).unwrap_or(NonZeroU16::MIN)
}

fn https_port() -> NonZeroU16 {
    NonZeroU16::new(443).unwrap_or(NonZeroU16::MIN)
}

/// A published name with its address (and port, for Edge services).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    #[serde(deserialize_with = "fqdn")]
    pub fqdn: String,
    pub address: IpAddr,
    #[serde(default = "https_port")]
    pub port: NonZeroU16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    pub web_vip: Option<IpAddr>,
    #[serde(default)]
    pub mode: LbMode,
    #[serde(default = "thirty")]
    pub idle_timeout_minutes: u32,
    #[serde(default = "one")]
    pub snat_addresses: u32,
    #[serde(default)]
    pub expected_connections: u64,
    /// The load balancer terminates TLS for the web services and forwards plain HTTP: the
    /// servers then serve the administration API over HTTP too.
    #[serde(default)]
    pub tls_offload: bool,
}

fn thirty() -> u32 {
    30
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum LbMode {
    #[default]
    #[serde(rename = "snat")]
    Snat,
    #[serde(rename = "snat+dnat")]
    SnatDnat,
    #[serde(rename = "dnat")]
    Dnat,
    #[serde(rename = "out-of-path")]
    OutOfPath,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(deserialize_with = "fqdn")]
    pub fqdn: String,
    pub address: IpAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// The Edge pool's internal name.
    #[serde(deserialize_with = "fqdn")]
    pub fqdn: String,
    pub site: String,
    /// The Director or pool inbound requests go to; `None` is a finding (`edge-next-hop`).
    #[serde(default, deserialize_with = "opt_fqdn")]
    pub next_hop: Option<String>,
    /// Names on the external certificate; absent means the planned ones.
    pub certificate: Option<Vec<String>>,
    /// Access Edge: SIP for remote users and federation.
    pub access: Named,
    /// The TLS port where the deployment's servers reach the Edge servers (their inside).
    #[serde(default = "tls_port")]
    pub internal_port: NonZeroU16,
    /// The Access Edge's port for partners (`_sipfederationtls._tcp` points there), on the
    /// access address beside `access.port`.
    #[serde(default = "tls_port")]
    pub federation_port: NonZeroU16,
    pub webconf: Option<Named>,
    /// A/V Edge: the media relay (coturn) on this address, TURN over TLS on its `port`.
    pub av: Option<Named>,
    /// The relay's UDP and TCP port on the A/V address (TURN's usual 3478).
    #[serde(default = "stun_port")]
    pub av_udp_port: NonZeroU16,
    /// The ports relayed media uses on the A/V address (Skype for Business: 50,000–59,999).
    #[serde(default = "relay_ports")]
    pub av_relay_ports: [u16; 2],
    /// Private addresses the relay may nevertheless reach (`10.1.0.0/16`, `192.0.2.7`): by
    /// default it reaches public addresses and relays only, never the inside.
    #[serde(default)]
    pub av_allowed_peers: Vec<String>,
    #[serde(default, rename = "server")]
    pub servers: Vec<Server>,
}

fn stun_port() -> NonZeroU16 {
    NonZeroU16::new(3478).unwrap_or(NonZeroU16::MIN)
}

fn relay_ports() -> [u16; 2] {
    [50_000, 59_999]
}

/// Federation with other organisations, through the Edge (`[federation]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    #[serde(default)]
    pub mode: FederationMode,
    /// The partners of `mode = "allowed"` (in `open` mode: partners with a known Edge).
    #[serde(default, rename = "partner")]
    pub partners: Vec<Partner>,
    /// Domains refused whatever the mode (written as given; `federation-partner` checks them).
    #[serde(default)]
    pub blocked: Vec<String>,
    /// Hosting providers whose domains federate through their Edge.
    #[serde(default, rename = "provider")]
    pub providers: Vec<HostingProvider>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FederationMode {
    /// No federation: requests to and from other organisations are refused.
    #[default]
    Off,
    /// Only the partners listed.
    Allowed,
    /// Any domain whose Access Edge DNS finds (`_sipfederationtls._tcp`), except the blocked.
    Open,
}

/// An allowed partner domain, optionally with its Access Edge FQDN (then no SRV lookup).
/// Kept as written; `validate` reports a malformed name (rule `federation-partner`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    pub domain: String,
    pub edge: Option<String>,
}

/// A hosting provider (`New-CsHostingProvider`): an organisation's Access Edge that serves
/// several domains, such as a push-notification clearing house.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostingProvider {
    pub name: String,
    /// The provider's Access Edge.
    pub fqdn: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub verification: Verification,
    /// The domains it hosts.
    #[serde(default)]
    pub domains: Vec<String>,
}

/// How far requests from a hosting provider are trusted (`VerificationLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// The provider vouches for its users' identities.
    #[default]
    AlwaysVerifiable,
    /// Requests are marked unverified; users may refuse them.
    AlwaysUnverifiable,
    /// Trusted only for users who have the sender in their contacts.
    UseSourceVerification,
}

/// The global external access policy (`[external_access]`); a user's own setting
/// (`confab user set --remote-access/--federation`) overrides it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAccess {
    /// Users may sign in from outside through the Edge.
    #[serde(default = "yes")]
    pub remote_users: bool,
    /// Users may talk to federated partners.
    #[serde(default = "yes")]
    pub federation: bool,
}

impl Default for ExternalAccess {
    fn default() -> Self {
        Self {
            remote_users: true,
            federation: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn fqdn<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_fqdn(&s).map_err(de::Error::custom)
}

fn opt_fqdn<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    fqdn(d).map(Some)
}

/// A DNS host name: letters, digits and hyphens in labels of 1–63, at most 253 in all, at least
/// two labels. Returned lowercased without a trailing dot.
pub(crate) fn check_fqdn(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(format!(
            "`{s}` is not a host name: it must have 1 to 253 characters"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "`{s}` is not a host name: every label needs 1 to 63 characters"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!(
                "`{s}` is not a host name: label `{label}` may hold only letters, digits and inner hyphens"
            ));
        }
    }
    if !name.contains('.') {
        return Err(format!(
            "`{s}` is not a fully qualified name: add its domain (e.g. {name}.contoso.com)"
        ));
    }
    Ok(name)
}
