//! The sign-in discovery walk of Lync/Skype-for-Business-style clients, performed for real
//! against a DNS server so an administrator can see what a client would see.
//!
//! Order (documented for Lync 2013 clients and later; legacy SRV-only clients such as
//! Communicator 2007 R2 and Lync 2010 start at the SRV records):
//!
//! 1. `lyncdiscoverinternal.<domain>` A, then `lyncdiscover.<domain>` A — autodiscover; when one
//!    answers, the autodiscover document is fetched and names the SIP access point;
//! 2. `_sipinternaltls._tcp.<domain>` SRV, `_sipinternal._tcp.<domain>` SRV (only when TCP is
//!    allowed), `_sip._tls.<domain>` SRV — each target chosen by priority, then weight
//!    (RFC 2782), and resolved to an address;
//! 3. the A-record fallbacks `sipinternal.<domain>`, `sip.<domain>`, `sipexternal.<domain>`.
//!
//! The first step that yields an address wins. "No such record" moves on to the next step; a
//! DNS server that does not answer at all stops the walk, because every later answer would be
//! just as unreliable.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::{RData, RecordType};
use hickory_proto::xfer::Protocol;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// SRV-only clients (OCS 2007 R2 Communicator, Lync 2010).
    Legacy,
    /// Autodiscover clients (Lync 2013 and later, mobile).
    Modern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Internal,
    External,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub client: Client,
    pub network: Network,
    /// The DNS server to ask.
    pub dns: SocketAddr,
    /// Whether the client may sign in over plain TCP (`_sipinternal._tcp`).
    pub allow_tcp: bool,
    /// Port of the autodiscover web service at the addresses lyncdiscover names resolve to.
    pub web_port: u16,
    /// How long to wait for one DNS or HTTP answer.
    pub timeout: Duration,
}

/// Where the client would sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub addr: IpAddr,
    pub port: u16,
    /// The record (or autodiscover answer) that led there.
    pub via: String,
}

/// One thing the walk did, reported as it happens.
#[derive(Debug, Clone)]
pub enum Step {
    Query {
        name: String,
        rtype: RecordType,
        answer: Answer,
    },
    Autodiscover {
        url: String,
        answer: Result<String, String>,
    },
    Skipped {
        what: String,
        why: String,
    },
}

#[derive(Debug, Clone)]
pub enum Answer {
    Records(Vec<String>),
    NoRecord,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Query {
                name,
                rtype,
                answer,
            } => match answer {
                Answer::Records(records) => {
                    write!(f, "query {name} {rtype}: {}", records.join(", "))
                }
                Answer::NoRecord => write!(f, "query {name} {rtype}: no such record"),
            },
            Self::Autodiscover { url, answer } => match answer {
                Ok(summary) => write!(f, "autodiscover GET {url}: {summary}"),
                Err(e) => write!(f, "autodiscover GET {url}: failed: {e}"),
            },
            Self::Skipped { what, why } => write!(f, "skip {what}: {why}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("lookup of {name} {rtype} failed: {reason}; the DNS server at {dns} is not answering properly, so no client can discover anything through it")]
    Dns {
        name: String,
        rtype: RecordType,
        dns: SocketAddr,
        reason: String,
    },
    #[error("{0}")]
    NotFound(String),
}

/// Walks the lookup order for `user@domain`, calling `report` for every step.
pub async fn discover(
    user: &str,
    domain: &str,
    opts: &Options,
    mut report: impl FnMut(&Step),
) -> Result<Target, DiscoverError> {
    let dns = Dns::new(opts);
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if opts.client == Client::Modern {
        for host in [
            format!("lyncdiscoverinternal.{domain}"),
            format!("lyncdiscover.{domain}"),
        ] {
            let Some(addrs) = dns.addresses(&host, &mut report).await? else {
                continue;
            };
            for addr in addrs {
                if let Some(target) =
                    autodiscover(&dns, &host, addr, user, &domain, opts, &mut report).await?
                {
                    return Ok(target);
                }
            }
        }
    }
    let mut srvs = vec![format!("_sipinternaltls._tcp.{domain}")];
    if opts.allow_tcp {
        srvs.push(format!("_sipinternal._tcp.{domain}"));
    } else {
        report(&Step::Skipped {
            what: format!("_sipinternal._tcp.{domain} SRV"),
            why: "TCP sign-in is not allowed (--allow-tcp)".into(),
        });
    }
    srvs.push(format!("_sip._tls.{domain}"));
    for srv in srvs {
        for (host, port) in dns.srv(&srv, &mut report).await? {
            if let Some(addrs) = dns.addresses(&host, &mut report).await? {
                if let Some(addr) = addrs.first() {
                    return Ok(Target {
                        host,
                        addr: *addr,
                        port,
                        via: format!("{srv} SRV"),
                    });
                }
            }
        }
    }
    for (label, port) in [("sipinternal", 5061), ("sip", 5061), ("sipexternal", 443)] {
        let host = format!("{label}.{domain}");
        if let Some(addrs) = dns.addresses(&host, &mut report).await? {
            if let Some(addr) = addrs.first() {
                return Ok(Target {
                    host: host.clone(),
                    addr: *addr,
                    port,
                    via: format!("{host} A (fallback)"),
                });
            }
        }
    }
    Err(DiscoverError::NotFound(not_found(&domain, opts)))
}

/// What is missing, and what that breaks, when nothing was found.
fn not_found(domain: &str, opts: &Options) -> String {
    let publish = match (opts.client, opts.network) {
        (Client::Legacy, Network::Internal) => format!("_sipinternaltls._tcp.{domain} SRV"),
        (Client::Legacy, Network::External) => format!("_sip._tls.{domain} SRV"),
        (Client::Modern, Network::Internal) => format!(
            "lyncdiscoverinternal.{domain} A (and _sipinternaltls._tcp.{domain} SRV for legacy clients)"
        ),
        (Client::Modern, Network::External) => format!(
            "lyncdiscover.{domain} A (and _sip._tls.{domain} SRV for legacy clients)"
        ),
    };
    let who = match opts.client {
        Client::Legacy => "SRV-only (legacy) clients",
        Client::Modern => "autodiscover (modern) clients",
    };
    let network = match opts.network {
        Network::Internal => "inside the network",
        Network::External => "outside the network",
    };
    format!(
        "no record leads to a server: {who} {network} cannot sign in to {domain} automatically; publish {publish} (see `confab dns zone`)"
    )
}

/// A resolver asking one DNS server (or the system's), uncached: each walk sees DNS as it is.
pub(crate) struct Dns {
    resolver: TokioResolver,
    /// The server asked, for error messages (unspecified: the system's resolvers).
    server: SocketAddr,
}

impl Dns {
    fn new(opts: &Options) -> Self {
        Self::at(Some(opts.dns), opts.timeout)
    }

    /// Asks `server`, or the resolvers of /etc/resolv.conf when `None`.
    pub(crate) fn at(server: Option<SocketAddr>, timeout: Duration) -> Self {
        let mut config = ResolverConfig::new();
        let system = hickory_resolver::system_conf::read_system_conf().ok();
        match (server, system) {
            (Some(dns), _) => {
                config.add_name_server(NameServerConfig::new(dns, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(dns, Protocol::Tcp));
            }
            (None, Some((system, _))) => config = system,
            (None, None) => {}
        }
        let mut options = ResolverOpts::default();
        options.timeout = timeout;
        options.attempts = 1;
        options.cache_size = 0;
        options.edns0 = true;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(options)
                .build();
        Self {
            resolver,
            server: server.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 53))),
        }
    }

    async fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
        report: &mut impl FnMut(&Step),
    ) -> Result<Option<Vec<RData>>, DiscoverError> {
        let fqdn = format!("{name}.");
        let found = match self.resolver.lookup(fqdn.as_str(), rtype).await {
            Ok(lookup) => lookup.iter().cloned().collect::<Vec<_>>(),
            Err(e) if is_no_record(&e) => Vec::new(),
            Err(e) => {
                return Err(DiscoverError::Dns {
                    name: name.to_owned(),
                    rtype,
                    dns: self.server,
                    reason: e.to_string(),
                })
            }
        };
        let answer = if found.is_empty() {
            Answer::NoRecord
        } else {
            Answer::Records(found.iter().map(ToString::to_string).collect())
        };
        report(&Step::Query {
            name: name.to_owned(),
            rtype,
            answer,
        });
        Ok((!found.is_empty()).then_some(found))
    }

    /// A and AAAA addresses of `host`, or None when it has neither.
    pub(crate) async fn addresses(
        &self,
        host: &str,
        report: &mut impl FnMut(&Step),
    ) -> Result<Option<Vec<IpAddr>>, DiscoverError> {
        let mut addrs = Vec::new();
        for rtype in [RecordType::A, RecordType::AAAA] {
            if let Some(records) = self.lookup(host, rtype, report).await? {
                addrs.extend(records.iter().filter_map(|r| match r {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
            }
            if !addrs.is_empty() {
                break;
            }
        }
        Ok((!addrs.is_empty()).then_some(addrs))
    }

    /// SRV targets in the order RFC 2782 says to try them.
    pub(crate) async fn srv(
        &self,
        name: &str,
        report: &mut impl FnMut(&Step),
    ) -> Result<Vec<(String, u16)>, DiscoverError> {
        let Some(records) = self.lookup(name, RecordType::SRV, report).await? else {
            return Ok(Vec::new());
        };
        let srvs: Vec<SrvTarget> = records
            .iter()
            .filter_map(|r| match r {
                RData::SRV(s) => Some(SrvTarget {
                    priority: s.priority(),
                    weight: s.weight(),
                    port: s.port(),
                    target: s.target().to_ascii().trim_end_matches('.').to_owned(),
                }),
                _ => None,
            })
            .collect();
        let mut roll = random_u32();
        Ok(order_srv(srvs, move || {
            roll = roll.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            roll
        })
        .into_iter()
        .filter(|s| s.target != ".")
        .map(|s| (s.target, s.port))
        .collect())
    }
}

fn is_no_record(e: &ResolveError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u32
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// RFC 2782 ordering: lowest priority first; within one priority, repeatedly pick a record at
/// random with probability proportional to its weight (zero-weight records get a small chance,
/// by being placed first, as the RFC describes). `roll` supplies random numbers.
pub fn order_srv(mut records: Vec<SrvTarget>, mut roll: impl FnMut() -> u32) -> Vec<SrvTarget> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let mut same: Vec<SrvTarget> = Vec::new();
        records.retain(|r| {
            if r.priority == priority {
                same.push(r.clone());
                false
            } else {
                true
            }
        });
        while !same.is_empty() {
            let total: u32 = same.iter().map(|r| u32::from(r.weight)).sum();
            let pick = if total == 0 { 0 } else { roll() % (total + 1) };
            let mut running = 0u32;
            let index = same
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            ordered.push(same.remove(index));
        }
    }
    ordered
}

/// The autodiscover answer, as `confab-web` serves it.
#[derive(Debug, Deserialize)]
struct Document {
    #[serde(rename = "AccessLocation")]
    access_location: Option<String>,
    #[serde(rename = "User")]
    user: Option<UserAccess>,
    #[serde(rename = "Root")]
    root: Option<Root>,
}

#[derive(Debug, Deserialize)]
struct UserAccess {
    #[serde(rename = "SipClientInternalAccess")]
    internal: Option<AccessPoint>,
    #[serde(rename = "SipClientExternalAccess")]
    external: Option<AccessPoint>,
    /// The media relay's addresses (an A/V Edge), per transport.
    #[serde(rename = "MediaRelayAccess", default)]
    media_relay: Vec<RelayPoint>,
}

#[derive(Debug, Deserialize)]
struct RelayPoint {
    transport: String,
    fqdn: String,
    port: u16,
}

#[derive(Debug, Deserialize)]
struct Root {
    #[serde(rename = "Links", default)]
    links: Vec<Link>,
}

#[derive(Debug, Deserialize)]
struct Link {
    token: String,
    href: String,
}

#[derive(Debug, Deserialize)]
struct AccessPoint {
    fqdn: String,
    port: u16,
}

/// Fetches the autodiscover document from `addr` (which `host` resolved to) and resolves the
/// access point it names. Follows Redirect links to other domains, at most three times.
async fn autodiscover(
    dns: &Dns,
    host: &str,
    addr: IpAddr,
    user: &str,
    domain: &str,
    opts: &Options,
    report: &mut impl FnMut(&Step),
) -> Result<Option<Target>, DiscoverError> {
    let mut host = host.to_owned();
    let mut addr = addr;
    let mut path = format!("/autodiscover/autodiscoverservice.svc/root?sipuri=sip:{user}@{domain}");
    for _hop in 0..3 {
        let url = format!("http://{host}:{}{path} (at {addr})", opts.web_port);
        let doc = match fetch(addr, opts.web_port, &host, &path, opts.timeout).await {
            Ok(doc) => doc,
            Err(e) => {
                report(&Step::Autodiscover {
                    url,
                    answer: Err(e),
                });
                return Ok(None);
            }
        };
        if let Some(user_access) = doc.user {
            let point = match opts.network {
                Network::Internal => user_access.internal.or(user_access.external),
                Network::External => user_access.external,
            };
            let location = doc.access_location.unwrap_or_else(|| "?".into());
            let Some(point) = point else {
                report(&Step::Autodiscover {
                    url,
                    answer: Err(format!(
                        "the answer ({location}) names no SIP access point for this network"
                    )),
                });
                return Ok(None);
            };
            let relay: Vec<String> = (user_access.media_relay.iter())
                .map(|r| format!("{} {}:{}", r.transport, r.fqdn, r.port))
                .collect();
            let relay = if relay.is_empty() {
                "; no media relay".to_owned()
            } else {
                format!("; media relay {}", relay.join(", "))
            };
            report(&Step::Autodiscover {
                url: url.clone(),
                answer: Ok(format!(
                    "{location} access: sign in at {}:{}{relay}",
                    point.fqdn, point.port
                )),
            });
            let Some(addrs) = dns.addresses(&point.fqdn, report).await? else {
                return Ok(None);
            };
            return Ok(addrs.first().map(|a| Target {
                host: point.fqdn.clone(),
                addr: *a,
                port: point.port,
                via: format!("autodiscover at {host}"),
            }));
        }
        let redirect = doc
            .root
            .and_then(|r| r.links.into_iter().find(|l| l.token == "Redirect"));
        let Some(redirect) = redirect else {
            report(&Step::Autodiscover {
                url,
                answer: Err("the answer names neither a user nor a redirect".into()),
            });
            return Ok(None);
        };
        report(&Step::Autodiscover {
            url,
            answer: Ok(format!("redirected to {}", redirect.href)),
        });
        let Some((next_host, next_path)) = split_url(&redirect.href) else {
            return Ok(None);
        };
        let Some(addrs) = dns.addresses(&next_host, report).await? else {
            return Ok(None);
        };
        let Some(next_addr) = addrs.first() else {
            return Ok(None);
        };
        host = next_host;
        path = next_path;
        addr = *next_addr;
    }
    Ok(None)
}

/// `scheme://host[:port]/path` → (host, path).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    Some((host.to_ascii_lowercase(), path.to_owned()))
}

/// One HTTP/1.1 GET with `Connection: close`; the body must be JSON.
async fn fetch(
    addr: IpAddr,
    port: u16,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<Document, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((addr, port))
            .await
            .map_err(|e| format!("cannot connect to {addr}:{port}: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: confab-discover\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .take(1 << 20)
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the answer is not HTTP")?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        return Err(format!("HTTP status `{status}`"));
    }
    serde_json::from_str(body)
        .map_err(|e| format!("the answer is not an autodiscover document: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> SrvTarget {
        SrvTarget {
            priority,
            weight,
            port: 5061,
            target: target.into(),
        }
    }

    #[test]
    fn lower_priority_always_comes_first() {
        for seed in 0..50u32 {
            let mut r = seed;
            let order = order_srv(
                vec![srv(10, 100, "b"), srv(0, 1, "a"), srv(20, 0, "c")],
                || {
                    r = r.wrapping_mul(7).wrapping_add(3);
                    r
                },
            );
            let names: Vec<_> = order.iter().map(|s| s.target.as_str()).collect();
            assert_eq!(names, ["a", "b", "c"]);
        }
    }

    #[test]
    fn weight_decides_how_often_a_target_comes_first() {
        let mut counts = [0u32; 2];
        let mut r = 12345u32;
        for _ in 0..4000 {
            let order = order_srv(vec![srv(0, 90, "heavy"), srv(0, 10, "light")], || {
                r = r.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                r >> 8
            });
            counts[usize::from(order[0].target == "light")] += 1;
        }
        // 90:10 expected; allow wide slack, the point is the proportion not the exact figure.
        assert!(counts[0] > 3 * counts[1], "{counts:?}");
        assert!(counts[1] > 100, "{counts:?}");
    }

    #[test]
    fn urls_split_into_host_and_path() {
        assert_eq!(
            split_url("https://lyncdiscover.vlab.com:8443/autodiscover/x?sipuri=a"),
            Some((
                "lyncdiscover.vlab.com".into(),
                "/autodiscover/x?sipuri=a".into()
            ))
        );
        assert_eq!(split_url("nonsense"), None);
    }
}
