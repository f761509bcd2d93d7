//! The DNS records a topology implies, per view, and their zones.
//!
//! Per SIP domain D whose first sign-in target is pool S:
//! * internal view: `_sipinternaltls._tcp.D` SRV to each sign-in target (TLS port),
//!   `_sipinternal._tcp.D` (only with `allow_tcp`), `lyncdiscoverinternal.D` and `sipinternal.D`
//!   A to S, and `sip.D` A to S when D has no Edge;
//! * external view, when an Edge E serves D: `_sip._tls.D` SRV to `sip.D` (the seeds' advice
//!   for several domains on one Edge), `_sipfederationtls._tcp.D` SRV, `sip.D` and
//!   `sipexternal.D` A to E's access address, `lyncdiscover.D` A to S's external web address;
//! * infrastructure names (pools with one A record per Front End — DNS load balancing —,
//!   servers, web services, Edge services) in the view that uses them.
//!
//! Without split-brain DNS there is one namespace: both views are the union, and `sip.D` takes
//! its external meaning when D has an Edge.

use std::cmp::Ordering;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{Edge, Family, Pool, Topology};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Internal,
    External,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

/// Whose address or service a record publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Pool(String),
    Edge(String),
    Server(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Lowercase FQDN without the trailing dot.
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
    pub owner: Owner,
}

impl Record {
    fn sort_key(&self) -> (String, u8, String) {
        let (kind, data) = match &self.data {
            RecordData::A(ip) => (1, format!("{:>39}", ip.to_string())),
            RecordData::Aaaa(ip) => (2, ip.to_string()),
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => (0, format!("{priority:05} {weight:05} {port:05} {target}")),
        };
        (self.name.clone(), kind, data)
    }

    /// The record in zone-file syntax, names relative to `origin`.
    fn to_bind(&self, origin: &str) -> String {
        let name = relative(&self.name, origin);
        match &self.data {
            RecordData::A(ip) => format!("{name}\t{}\tIN\tA\t{ip}", self.ttl),
            RecordData::Aaaa(ip) => format!("{name}\t{}\tIN\tAAAA\t{ip}", self.ttl),
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => format!(
                "{name}\t{}\tIN\tSRV\t{priority} {weight} {port} {target}.",
                self.ttl
            ),
        }
    }
}

fn relative(name: &str, origin: &str) -> String {
    if name == origin {
        "@".into()
    } else {
        name.strip_suffix(&format!(".{origin}"))
            .map_or_else(|| format!("{name}."), str::to_owned)
    }
}

/// `name TYPE data`, as `dig` would show it (without TTL and class).
impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.data {
            RecordData::A(ip) => write!(f, "{} A {ip}", self.name),
            RecordData::Aaaa(ip) => write!(f, "{} AAAA {ip}", self.name),
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(f, "{} SRV {priority} {weight} {port} {target}", self.name),
        }
    }
}

/// The records of one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub origin: String,
    pub records: Vec<Record>,
    /// The addresses of its name servers (`[dns] name_servers`); none: `ns1` without one.
    pub name_servers: Vec<IpAddr>,
}

impl Zone {
    /// A BIND zone file: `$ORIGIN`, `$TTL`, SOA and NS (`ns1`..., with the addresses of
    /// `[dns] name_servers`), records.
    pub fn to_bind(&self, serial: u32) -> String {
        let ttl = self.records.iter().map(|r| r.ttl).min().unwrap_or(3600);
        let o = &self.origin;
        let mut z = String::new();
        let _ = writeln!(z, "; zone {o}, generated from the Confab topology");
        let _ = writeln!(z, "$ORIGIN {o}.");
        let _ = writeln!(z, "$TTL {ttl}");
        let _ = writeln!(
            z,
            "@\t{ttl}\tIN\tSOA\tns1.{o}. hostmaster.{o}. ({serial} 3600 600 86400 {ttl})"
        );
        let _ = writeln!(z, "@\t{ttl}\tIN\tNS\tns1.{o}.");
        for (i, ip) in self.name_servers.iter().enumerate() {
            if i > 0 {
                let _ = writeln!(z, "@\t{ttl}\tIN\tNS\tns{}.{o}.", i + 1);
            }
            let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
            let _ = writeln!(z, "ns{}\t{ttl}\tIN\t{kind}\t{ip}", i + 1);
        }
        for r in &self.records {
            let _ = writeln!(z, "{}", r.to_bind(o));
        }
        z
    }
}

/// Where clients of a domain sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPoint {
    pub fqdn: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainAccess {
    /// The sign-in pool (or Director).
    pub pool: String,
    pub internal: AccessPoint,
    pub external: Option<AccessPoint>,
    pub web_internal: String,
    pub web_external: Option<String>,
}

struct Out {
    records: Vec<Record>,
    ttl: u32,
}

impl Out {
    fn address(&mut self, name: &str, ip: IpAddr, owner: &Owner) {
        let data = match ip {
            IpAddr::V4(v4) => RecordData::A(v4),
            IpAddr::V6(v6) => RecordData::Aaaa(v6),
        };
        self.records.push(Record {
            name: name.to_owned(),
            ttl: self.ttl,
            data,
            owner: owner.clone(),
        });
    }

    fn addresses(&mut self, name: &str, ips: &[IpAddr], owner: &Owner) {
        for ip in ips {
            self.address(name, *ip, owner);
        }
    }

    fn srv(
        &mut self,
        name: String,
        priority: u16,
        weight: u16,
        port: u16,
        target: &str,
        owner: &Owner,
    ) {
        self.records.push(Record {
            name,
            ttl: self.ttl,
            data: RecordData::Srv {
                priority,
                weight,
                port,
                target: target.to_owned(),
            },
            owner: owner.clone(),
        });
    }
}

impl Topology {
    pub fn pool(&self, fqdn: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.fqdn == fqdn)
    }

    /// The pool named `fqdn`, or the pool one of whose servers is `fqdn`.
    pub fn pool_of(&self, fqdn: &str) -> Option<&Pool> {
        self.pool(fqdn).or_else(|| {
            self.pools
                .iter()
                .find(|p| p.servers.iter().any(|s| s.fqdn == fqdn))
        })
    }

    /// Whether the pool of server `fqdn` sits behind a load balancer that terminates TLS for
    /// its web services (`tls_offload`).
    pub fn tls_offloaded(&self, fqdn: &str) -> bool {
        self.pools.iter().any(|p| {
            p.servers.iter().any(|s| s.fqdn.eq_ignore_ascii_case(fqdn))
                && p.load_balancer.as_ref().is_some_and(|lb| lb.tls_offload)
        })
    }

    /// The pools users can be homed on.
    pub fn user_pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter().filter(|p| p.hosts_users())
    }

    /// Whether users have a choice of home: several pools host users, or a Director takes
    /// sign-ins for them.
    pub fn has_home_pools(&self) -> bool {
        self.user_pools().count() > 1 || self.pools.iter().any(|p| !p.hosts_users())
    }

    pub fn edge(&self, fqdn: &str) -> Option<&Edge> {
        self.edges.iter().find(|e| e.fqdn == fqdn)
    }

    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().map(|d| d.name.as_str())
    }

    /// The Edge that serves `domain`: the one it names, else the only one.
    pub fn edge_for(&self, domain: &crate::model::Domain) -> Option<&Edge> {
        match &domain.edge {
            Some(e) => self.edge(e),
            None if self.edges.len() == 1 => self.edges.first(),
            None => None,
        }
    }

    /// The pool whose external web service answers `lyncdiscover`: the sign-in pool's, else
    /// the first pool that has one.
    fn web_external_pool<'a>(&'a self, sign_in: Option<&'a Pool>) -> Option<&'a Pool> {
        sign_in
            .filter(|p| p.web_external.is_some())
            .or_else(|| self.pools.iter().find(|p| p.web_external.is_some()))
    }

    pub fn records(&self, view: View) -> Vec<Record> {
        let mut out = Out {
            records: Vec::new(),
            ttl: self.dns.ttl,
        };
        if self.deployment.split_dns {
            self.add(view, &mut out);
        } else {
            self.add(View::Internal, &mut out);
            self.add(View::External, &mut out);
        }
        let mut records = out.records;
        records.sort_by_key(Record::sort_key);
        records.dedup_by(|a, b| a.name == b.name && a.data == b.data);
        records
    }

    fn add(&self, view: View, out: &mut Out) {
        for d in &self.domains {
            let name = &d.name;
            let sign_in = d.sign_in.first().and_then(|s| self.pool(&s.target));
            let edge = self.edge_for(d);
            match view {
                View::Internal => {
                    if d.publishes(Family::Srv) {
                        for s in &d.sign_in {
                            // A target naming an Edge or nothing still gets its SRV record:
                            // validation reports it, and the zone shows what was asked for.
                            let (tls, tcp) = self
                                .pool(&s.target)
                                .map_or((5061, 5060), |p| (p.tls_port.get(), p.sip_port.get()));
                            let owner = Owner::Pool(s.target.clone());
                            out.srv(
                                format!("_sipinternaltls._tcp.{name}"),
                                s.priority,
                                s.weight,
                                tls,
                                &s.target,
                                &owner,
                            );
                            if self.deployment.allow_tcp {
                                out.srv(
                                    format!("_sipinternal._tcp.{name}"),
                                    s.priority,
                                    s.weight,
                                    tcp,
                                    &s.target,
                                    &owner,
                                );
                            }
                        }
                    }
                    if let Some(pool) = sign_in {
                        let owner = Owner::Pool(pool.fqdn.clone());
                        let addrs: Vec<IpAddr> = pool.servers.iter().map(|s| s.address).collect();
                        if d.publishes(Family::Autodiscover) {
                            out.addresses(
                                &format!("lyncdiscoverinternal.{name}"),
                                &pool.web_addresses(),
                                &owner,
                            );
                        }
                        if d.publishes(Family::Hosts) {
                            out.addresses(&format!("sipinternal.{name}"), &addrs, &owner);
                            if edge.is_none() || self.deployment.split_dns {
                                out.addresses(&format!("sip.{name}"), &addrs, &owner);
                            }
                        }
                    }
                }
                View::External => {
                    let Some(edge) = edge else {
                        if let (Some(fed), true) = (&d.federation, d.publishes(Family::Srv)) {
                            out.srv(
                                format!("_sipfederationtls._tcp.{name}"),
                                0,
                                0,
                                5061,
                                fed,
                                &Owner::Pool(fed.clone()),
                            );
                        }
                        continue;
                    };
                    let owner = Owner::Edge(edge.fqdn.clone());
                    let sip = format!("sip.{name}");
                    if d.publishes(Family::Srv) {
                        let access = if d.publishes(Family::Hosts) {
                            &sip
                        } else {
                            &edge.access.fqdn
                        };
                        out.srv(
                            format!("_sip._tls.{name}"),
                            0,
                            0,
                            edge.access.port.get(),
                            access,
                            &owner,
                        );
                        let fed = d.federation.as_ref().unwrap_or(&sip);
                        out.srv(
                            format!("_sipfederationtls._tcp.{name}"),
                            0,
                            0,
                            edge.federation_port.get(),
                            fed,
                            &owner,
                        );
                    }
                    if d.publishes(Family::Hosts) {
                        out.address(&sip, edge.access.address, &owner);
                        out.address(&format!("sipexternal.{name}"), edge.access.address, &owner);
                    }
                    if d.publishes(Family::Autodiscover) {
                        if let Some(web) = self
                            .web_external_pool(sign_in)
                            .and_then(|p| p.web_external.as_ref().map(|w| (p, w)))
                        {
                            out.address(
                                &format!("lyncdiscover.{name}"),
                                web.1.address,
                                &Owner::Pool(web.0.fqdn.clone()),
                            );
                        }
                    }
                }
            }
        }
        for pool in &self.pools {
            let owner = Owner::Pool(pool.fqdn.clone());
            match view {
                View::Internal => {
                    for s in &pool.servers {
                        out.address(&pool.fqdn, s.address, &owner);
                        out.address(&s.fqdn, s.address, &Owner::Server(s.fqdn.clone()));
                    }
                    if pool.web_internal_fqdn() != pool.fqdn {
                        out.addresses(pool.web_internal_fqdn(), &pool.web_addresses(), &owner);
                    }
                }
                View::External => {
                    if let Some(w) = &pool.web_external {
                        out.address(&w.fqdn, w.address, &owner);
                    }
                }
            }
        }
        for edge in &self.edges {
            let owner = Owner::Edge(edge.fqdn.clone());
            match view {
                View::Internal => {
                    for s in &edge.servers {
                        out.address(&edge.fqdn, s.address, &owner);
                        out.address(&s.fqdn, s.address, &Owner::Server(s.fqdn.clone()));
                    }
                }
                View::External => {
                    for service in [Some(&edge.access), edge.webconf.as_ref(), edge.av.as_ref()]
                        .into_iter()
                        .flatten()
                    {
                        out.address(&service.fqdn, service.address, &owner);
                    }
                }
            }
        }
    }

    /// The records of `view` grouped by zone: each SIP domain is a zone; a name under no SIP
    /// domain goes to the zone of its parent domain (e.g. `contoso.local`).
    pub fn zones(&self, view: View) -> Vec<Zone> {
        let mut zones: Vec<Zone> = Vec::new();
        for record in self.records(view) {
            let origin = self.zone_of(&record.name);
            match zones.iter_mut().find(|z| z.origin == origin) {
                Some(z) => z.records.push(record),
                None => zones.push(Zone {
                    origin,
                    records: vec![record],
                    name_servers: self.dns.name_servers.clone(),
                }),
            }
        }
        zones.sort_by(|a, b| a.origin.cmp(&b.origin));
        zones
    }

    fn zone_of(&self, name: &str) -> String {
        self.domains
            .iter()
            .map(|d| d.name.as_str())
            .filter(|d| in_zone(name, d))
            .max_by(|a, b| a.len().cmp(&b.len()).then(Ordering::Equal))
            .map_or_else(
                || {
                    name.split_once('.')
                        .map_or(name, |(_, parent)| parent)
                        .to_owned()
                },
                str::to_owned,
            )
    }

    /// Where clients of `domain` sign in, from inside and from the internet.
    pub fn domain_access(&self, domain: &str) -> Option<DomainAccess> {
        let domain = domain.to_ascii_lowercase();
        let d = self.domains.iter().find(|d| d.name == domain)?;
        let pool = self.pool(&d.sign_in.first()?.target)?;
        let external = self.edge_for(d).map(|e| AccessPoint {
            fqdn: if d.publishes(Family::Hosts) {
                format!("sip.{domain}")
            } else {
                e.access.fqdn.clone()
            },
            port: e.access.port.get(),
        });
        Some(DomainAccess {
            pool: pool.fqdn.clone(),
            internal: AccessPoint {
                fqdn: pool.fqdn.clone(),
                port: pool.tls_port.get(),
            },
            external,
            web_internal: pool.web_internal_fqdn().to_owned(),
            web_external: self
                .web_external_pool(Some(pool))
                .and_then(|p| p.web_external.as_ref())
                .map(|w| w.fqdn.clone()),
        })
    }
}

/// `name` is `zone` or below it.
pub(crate) fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}
