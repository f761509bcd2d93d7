//! Validation: the deployment mistakes the seeds describe, caught before anyone deploys.
//! Every finding carries a stable rule ID (see [`RULES`]), what is wrong, what breaks, and
//! the fix.

use std::collections::BTreeSet;

use crate::certs::covers;
use crate::model::{check_fqdn, ClientKind, Family, LbMode, Role, Topology};
use crate::records::{in_zone, Owner, RecordData, View};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// What the finding is about (a domain, pool, Edge or record name).
    pub subject: String,
    pub what: String,
    pub breaks: String,
    pub fix: String,
}

/// Every rule ID with a one-line summary (the README's table is made from the same list).
pub const RULES: &[(&str, &str)] = &[
    (
        "unknown-reference",
        "a sign-in target, backup pool, next hop, site or Edge names nothing in the file",
    ),
    (
        "sign-in-not-pool",
        "an automatic-sign-in SRV record points at an Edge instead of a pool or Director",
    ),
    (
        "srv-several-targets",
        "one SIP domain has several automatic-sign-in SRV targets",
    ),
    (
        "srv-round-robin",
        "sign-in SRV records of equal priority and weight meant as round robin across pools",
    ),
    (
        "cert-missing-name",
        "an SRV target host is not on the certificate of the servers behind it",
    ),
    (
        "federation-zone",
        "_sipfederationtls._tcp.<domain> points outside the <domain> zone",
    ),
    (
        "legacy-srv-missing",
        "SRV-only (legacy) clients are in use but the domain publishes no sign-in SRV",
    ),
    (
        "autodiscover-missing",
        "autodiscover (modern) clients are in use but the domain publishes no lyncdiscover record",
    ),
    (
        "web-load-balancer-missing",
        "a pool of two or more Front Ends has no load balancer for its web services",
    ),
    (
        "lb-idle-timeout",
        "the load balancer's TCP idle timeout is under 30 minutes",
    ),
    (
        "lb-snat-ports",
        "more than ~64,000 concurrent connections expected through one SNAT address",
    ),
    (
        "lb-mode",
        "the load balancer runs in a mode that breaks the pool (DNAT only, out-of-path)",
    ),
    ("director-hosts-users", "a Director is set to host users"),
    (
        "edge-next-hop",
        "an Edge has no next hop, or its next hop is not a Director or a pool",
    ),
    (
        "federation-without-edge",
        "federation is enabled but no Edge serves the domains to the internet",
    ),
    (
        "federation-partner",
        "an allowed, blocked or hosted partner domain, or a partner's Edge, is not a host name",
    ),
    (
        "edge-av",
        "an A/V Edge (media relay) shares a port with the Access Edge, or has no relay port range",
    ),
    (
        "edge-external-names",
        "a domain has an Edge but no external sip.<domain> or lyncdiscover.<domain>",
    ),
];

struct Findings(Vec<Finding>);

impl Findings {
    fn error(
        &mut self,
        rule: &'static str,
        subject: impl Into<String>,
        what: String,
        breaks: &str,
        fix: String,
    ) {
        self.0.push(Finding {
            rule,
            severity: Severity::Error,
            subject: subject.into(),
            what,
            breaks: breaks.to_owned(),
            fix,
        });
    }
}

pub fn validate(t: &Topology) -> Vec<Finding> {
    let mut f = Findings(Vec::new());
    references(t, &mut f);
    sign_in(t, &mut f);
    certificates(t, &mut f);
    federation(t, &mut f);
    client_records(t, &mut f);
    load_balancers(t, &mut f);
    roles(t, &mut f);
    media_relays(t, &mut f);
    f.0
}

fn media_relays(t: &Topology, f: &mut Findings) {
    for e in &t.edges {
        let Some(av) = &e.av else { continue };
        let access = [e.access.port.get(), e.federation_port.get()];
        let clash = [av.port.get(), e.av_udp_port.get()]
            .into_iter()
            .find(|p| av.address == e.access.address && access.contains(p));
        if let Some(port) = clash {
            f.error("edge-av", &e.fqdn, format!("Edge {}: the A/V service and the Access Edge both use {}:{port}", e.fqdn, av.address), "one of the two services cannot listen: remote users lose either sign-in or media", "give av its own address (as the seeds' Edges do), or other ports (av port, av_udp_port)".into());
        }
        let [low, high] = e.av_relay_ports;
        if low == 0 || low >= high {
            f.error(
                "edge-av",
                &e.fqdn,
                format!(
                    "Edge {}: av_relay_ports [{low}, {high}] is not a range",
                    e.fqdn
                ),
                "the relay cannot allocate media ports",
                "set av_relay_ports = [50000, 59999] (first below last)".into(),
            );
        }
    }
}

fn references(t: &Topology, f: &mut Findings) {
    let sites: BTreeSet<&str> = t.sites.iter().map(|s| s.name.as_str()).collect();
    let missing = |f: &mut Findings, subject: &str, what: String, fix: String| {
        f.error("unknown-reference", subject, what, "whatever refers to it has nothing to point at: its DNS records or routes cannot be made", fix);
    };
    for d in &t.domains {
        for s in &d.sign_in {
            if t.pool(&s.target).is_none() && t.edge(&s.target).is_none() {
                missing(f, &d.name, format!("sign_in target `{}` of domain {} is not a pool or Director in this file", s.target, d.name), format!("declare a [[pool]] with fqdn = \"{}\", or point sign_in at an existing pool", s.target));
            }
        }
        if let Some(e) = &d.edge {
            if t.edge(e).is_none() {
                missing(
                    f,
                    &d.name,
                    format!("domain {} names Edge `{e}`, which is not declared", d.name),
                    "declare the [[edge]] or remove `edge`".into(),
                );
            }
        }
    }
    for p in &t.pools {
        if let Some(b) = &p.backup {
            if t.pool(b).is_none() {
                missing(
                    f,
                    &p.fqdn,
                    format!(
                        "pool {} names backup pool `{b}`, which is not declared",
                        p.fqdn
                    ),
                    "declare the backup [[pool]] or remove `backup`".into(),
                );
            }
        }
        if !sites.contains(p.site.as_str()) {
            missing(
                f,
                &p.fqdn,
                format!(
                    "pool {} is in site `{}`, which is not declared",
                    p.fqdn, p.site
                ),
                format!("add [[site]] name = \"{}\"", p.site),
            );
        }
    }
    for e in &t.edges {
        let Some(next_hop) = &e.next_hop else {
            continue;
        };
        if t.pool(next_hop).is_none() && t.edge(next_hop).is_none() {
            missing(
                f,
                &e.fqdn,
                format!(
                    "Edge {} has next hop `{next_hop}`, which is not declared",
                    e.fqdn
                ),
                "point next_hop at a Director or pool of this file".into(),
            );
        }
        if !sites.contains(e.site.as_str()) {
            missing(
                f,
                &e.fqdn,
                format!(
                    "Edge {} is in site `{}`, which is not declared",
                    e.fqdn, e.site
                ),
                format!("add [[site]] name = \"{}\"", e.site),
            );
        }
    }
}

fn sign_in(t: &Topology, f: &mut Findings) {
    for d in &t.domains {
        for s in &d.sign_in {
            if t.edge(&s.target).is_some() {
                f.error("sign-in-not-pool", &d.name, format!("_sipinternaltls._tcp.{} points at Edge {}", d.name, s.target), "internal clients are sent to the Edge's internal interface, which does not register users: sign-in fails", format!("point sign_in of {} at the pool or Director that takes sign-ins", d.name));
            }
        }
        if d.sign_in.len() < 2 {
            continue;
        }
        let targets: Vec<String> = d
            .sign_in
            .iter()
            .map(|s| {
                format!(
                    "{} (priority {}, weight {})",
                    s.target, s.priority, s.weight
                )
            })
            .collect();
        let round_robin = d.sign_in.iter().enumerate().any(|(i, a)| {
            d.sign_in
                .iter()
                .skip(i + 1)
                .any(|b| a.priority == b.priority && a.weight == b.weight && a.target != b.target)
        });
        if round_robin {
            f.error("srv-round-robin", &d.name, format!("_sipinternaltls._tcp.{} has equal-priority, equal-weight targets: {}", d.name, targets.join(", ")), "clients do not round-robin SRV records: they all pick the same target, so the other pools get no sign-ins and no load is shared", format!("keep one automatic-sign-in target for {} (a Director, or one pool that redirects users to their home pools); balance with more Front Ends in that pool instead", d.name));
        } else {
            f.error("srv-several-targets", &d.name, format!("{} has {} automatic-sign-in SRV targets: {}", d.name, d.sign_in.len(), targets.join(", ")), "only one SRV record per SIP domain may point to a pool for automatic sign-in; clients use one and the extra targets are ignored or used inconsistently", format!("keep one sign_in target for {}; if that pool fails, change the record (clients follow once the TTL passes)", d.name));
        }
    }
}

/// The certificate names declared for whoever owns `host`'s address records.
fn certificate_behind<'a>(t: &'a Topology, host: &str) -> Option<(String, &'a Vec<String>)> {
    for view in [View::Internal, View::External] {
        for r in t.records(view) {
            if r.name != host || matches!(r.data, RecordData::Srv { .. }) {
                continue;
            }
            let found = match &r.owner {
                Owner::Pool(p) => t.pool(p).and_then(|p| {
                    p.certificate
                        .as_ref()
                        .map(|c| (format!("pool {}", p.fqdn), c))
                }),
                Owner::Edge(e) => t.edge(e).and_then(|e| {
                    e.certificate
                        .as_ref()
                        .map(|c| (format!("Edge {}", e.fqdn), c))
                }),
                Owner::Server(s) => t
                    .pools
                    .iter()
                    .find(|p| p.servers.iter().any(|x| &x.fqdn == s))
                    .and_then(|p| {
                        p.certificate
                            .as_ref()
                            .map(|c| (format!("pool {}", p.fqdn), c))
                    }),
            };
            if found.is_some() {
                return found;
            }
        }
    }
    // An SRV target that is a pool FQDN itself.
    t.pool(host).and_then(|p| {
        p.certificate
            .as_ref()
            .map(|c| (format!("pool {}", p.fqdn), c))
    })
}

/// The names SIP clients and servers connect to over TLS and so check against the
/// certificate: SRV targets and the sip / sipinternal / sipexternal fallbacks.
fn certificates(t: &Topology, f: &mut Findings) {
    let mut seen = BTreeSet::new();
    for view in [View::Internal, View::External] {
        for r in t.records(view) {
            let (pointer, target) = match &r.data {
                RecordData::Srv { target, .. } => (r.name.clone(), target.clone()),
                _ if ["sip.", "sipinternal.", "sipexternal."]
                    .iter()
                    .any(|p| r.name.starts_with(p)) =>
                {
                    (format!("the A-record fallback {}", r.name), r.name.clone())
                }
                _ => continue,
            };
            let (pointer, target) = (&pointer, &target);
            if !seen.insert((pointer.clone(), target.clone())) {
                continue;
            }
            let Some((who, names)) = certificate_behind(t, target) else {
                continue;
            };
            if !covers(names, target) {
                f.error("cert-missing-name", target.clone(), format!("{pointer} leads clients to {target}, but the certificate of {who} names only {}", names.join(", ")), "TLS clients and federated servers that connect by that name reject the certificate: sign-in or federation fails with a certificate name mismatch", format!("reissue the certificate of {who} with {target} as a subject alternative name (`confab certs plan` lists every name it needs)"));
            }
        }
    }
}

fn federation(t: &Topology, f: &mut Findings) {
    let fed = &t.federation;
    if fed.enabled() && t.edges.is_empty() {
        f.error("federation-without-edge", "federation", format!("[federation] mode is {:?} but the topology has no Edge", fed.mode).to_lowercase(), "partners reach an organisation only through its Access Edge: no federated message or call can get in or out", "add an [[edge]] with an access address and next_hop, or set [federation] mode = \"off\"".into());
    }
    let names = fed
        .partners
        .iter()
        .flat_map(|p| {
            std::iter::once(("partner domain", &p.domain))
                .chain(p.edge.iter().map(|e| ("partner Edge", e)))
        })
        .chain(fed.blocked.iter().map(|b| ("blocked domain", b)))
        .chain(fed.providers.iter().flat_map(|p| {
            std::iter::once(("hosting provider", &p.fqdn))
                .chain(p.domains.iter().map(|d| ("hosted domain", d)))
        }));
    for (kind, name) in names {
        if let Err(e) = check_fqdn(name) {
            f.error("federation-partner", name.as_str(), format!("{kind} {e}"), "the Edge cannot match or look up a name that is not a host name, so federation with it never works", format!("write the {kind} as a DNS name such as fabrikam.com or sip.fabrikam.com"));
        }
    }
    for view in [View::Internal, View::External] {
        for r in t.records(view) {
            let RecordData::Srv { target, .. } = &r.data else {
                continue;
            };
            let Some(domain) = r.name.strip_prefix("_sipfederationtls._tcp.") else {
                continue;
            };
            if !in_zone(target, domain)
                && !f
                    .0
                    .iter()
                    .any(|x| x.rule == "federation-zone" && x.subject == domain)
            {
                f.error("federation-zone", domain, format!("_sipfederationtls._tcp.{domain} points at {target}, outside the {domain} zone"), "federated partners check that the SRV target is in the domain's own zone: federation with this domain breaks on the zone mismatch", format!("point _sipfederationtls._tcp.{domain} at sip.{domain} (an A record for the Access Edge) and put sip.{domain} on the Edge certificate"));
            }
        }
    }
}

fn client_records(t: &Topology, f: &mut Findings) {
    let legacy = t.deployment.clients.contains(&ClientKind::Legacy);
    let modern = t.deployment.clients.contains(&ClientKind::Modern);
    for d in &t.domains {
        let edge = t.edge_for(d).is_some();
        let srv = d.publishes(Family::Srv) && !d.sign_in.is_empty();
        let autodiscover = d.publishes(Family::Autodiscover);
        let mut missing = Vec::new();
        if edge && !d.publishes(Family::Hosts) {
            missing.push(format!("sip.{}", d.name));
        }
        if edge && modern && !autodiscover {
            missing.push(format!("lyncdiscover.{}", d.name));
        }
        if !missing.is_empty() {
            f.error("edge-external-names", &d.name, format!("{} is served by an Edge but publishes no {}", d.name, missing.join(" or ")), "clients on the internet cannot find the Edge by the names they try, so remote sign-in fails", format!("publish \"hosts\" and \"autodiscover\" for {} (publish = [\"srv\", \"autodiscover\", \"hosts\"])", d.name));
        }
        if legacy && !srv {
            f.error("legacy-srv-missing", &d.name, format!("SRV-only clients are in use but {} publishes no _sipinternaltls._tcp.{}{}", d.name, d.name, if edge { format!(" or _sip._tls.{}", d.name) } else { String::new() }), "Communicator 2007 R2 and Lync 2010 clients look up SRV records first and do not use lyncdiscover: they fall back to A records or fail to sign in", format!("publish \"srv\" for {} with a sign_in target", d.name));
        }
        if modern && !autodiscover && !edge {
            f.error("autodiscover-missing", &d.name, format!("autodiscover clients are in use but {} publishes no lyncdiscoverinternal.{}", d.name, d.name), "Lync 2013+ and mobile clients start with lyncdiscover; mobile clients cannot sign in at all without it", format!("publish \"autodiscover\" for {}", d.name));
        }
    }
}

fn load_balancers(t: &Topology, f: &mut Findings) {
    for p in &t.pools {
        let lb = p.load_balancer.as_ref();
        if p.servers.len() >= 2 && lb.and_then(|l| l.web_vip).is_none() {
            f.error("web-load-balancer-missing", &p.fqdn, format!("pool {} has {} Front Ends but no load balancer VIP for its web services", p.fqdn, p.servers.len()), "DNS load balancing covers SIP only: HTTPS web services (autodiscover, address book, conferencing content) need a load balancer, or clients stick to one server and fail when it does", format!("add [pool.load_balancer] web_vip = \"...\" for {}", p.fqdn));
        }
        let Some(lb) = lb else { continue };
        if lb.idle_timeout_minutes < 30 {
            f.error("lb-idle-timeout", &p.fqdn, format!("the load balancer of {} closes idle TCP connections after {} minutes", p.fqdn, lb.idle_timeout_minutes), "clients keep long-lived, mostly idle SIP connections; a shorter timeout cuts them and clients sign out and in again", "set the load balancer's TCP idle timeout to 30 minutes (idle_timeout_minutes = 30)".into());
        }
        let per_address = lb.expected_connections / u64::from(lb.snat_addresses.max(1));
        if per_address > 64_000 {
            f.error("lb-snat-ports", &p.fqdn, format!("{} expects {} concurrent connections through {} SNAT address(es): {per_address} per address", p.fqdn, lb.expected_connections, lb.snat_addresses), "one SNAT address has about 64,000 source ports towards the Front Ends; connections beyond that are refused", format!("add SNAT addresses: at least {}", lb.expected_connections.div_ceil(64_000)));
        }
        if matches!(lb.mode, LbMode::Dnat | LbMode::OutOfPath) {
            let mode = if lb.mode == LbMode::Dnat {
                "DNAT only"
            } else {
                "out-of-path (direct server return)"
            };
            f.error("lb-mode", &p.fqdn, format!("the load balancer of {} runs {mode}", p.fqdn), "the pool's servers must see connections come from the load balancer (SNAT) to answer through it; in this mode replies bypass it and connections break", "use SNAT (mode = \"snat\", or \"snat+dnat\")".into());
        }
    }
}

fn roles(t: &Topology, f: &mut Findings) {
    for p in t
        .pools
        .iter()
        .filter(|p| p.role == Role::Director && p.hosts_users())
    {
        f.error("director-hosts-users", &p.fqdn, format!("Director {} is set to host users", p.fqdn), "a Director exists to take sign-ins and attacks away from the pools that house users; users homed on it lose that protection and its capacity", format!("remove hosts_users from {} and home its users on a front-end pool", p.fqdn));
    }
    for e in &t.edges {
        let what = match &e.next_hop {
            None => format!("Edge {} has no next hop", e.fqdn),
            Some(hop) if t.edge(hop).is_some() => {
                format!("Edge {} has another Edge ({hop}) as its next hop", e.fqdn)
            }
            Some(_) => continue,
        };
        f.error("edge-next-hop", &e.fqdn, what, "traffic from the internet must be authenticated by a Director or pool; an Edge forwards it unauthenticated and remote users cannot sign in", "set next_hop to a Director (or to a front-end pool when there is none)".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edge_without_a_next_hop_is_a_finding_not_a_load_error() {
        let text = "[deployment]\nname = \"x\"\n[[site]]\nname = \"hq\"\n[[domain]]\nname = \"contoso.com\"\nsign_in = [\"pool01.contoso.com\"]\n[[pool]]\nfqdn = \"pool01.contoso.com\"\nsite = \"hq\"\n[[pool.server]]\nfqdn = \"fe01.contoso.com\"\naddress = \"10.0.0.11\"\n[[edge]]\nfqdn = \"edgepool.contoso.com\"\nsite = \"hq\"\naccess = { fqdn = \"access.contoso.com\", address = \"192.0.2.68\" }\n";
        let t = crate::load(text, "t.toml").expect("loads");
        let rules: Vec<_> = validate(&t).into_iter().map(|f| (f.rule, f.what)).collect();
        assert_eq!(
            rules,
            [(
                "edge-next-hop",
                "Edge edgepool.contoso.com has no next hop".to_owned()
            )]
        );
    }

    #[test]
    fn an_av_edge_on_the_access_edge_port_is_a_finding() {
        let text = "[deployment]\nname = \"x\"\n[[site]]\nname = \"hq\"\n[[domain]]\nname = \"contoso.com\"\nsign_in = [\"pool01.contoso.com\"]\n[[pool]]\nfqdn = \"pool01.contoso.com\"\nsite = \"hq\"\n[[pool.server]]\nfqdn = \"fe01.contoso.com\"\naddress = \"10.0.0.11\"\n[[edge]]\nfqdn = \"edgepool.contoso.com\"\nsite = \"hq\"\nnext_hop = \"pool01.contoso.com\"\naccess = { fqdn = \"access.contoso.com\", address = \"192.0.2.68\" }\nav = { fqdn = \"av.contoso.com\", address = \"192.0.2.68\" }\n";
        let t = crate::load(text, "t.toml").expect("loads");
        let found: Vec<_> = validate(&t)
            .into_iter()
            .filter(|f| f.rule == "edge-av")
            .map(|f| f.what)
            .collect();
        assert_eq!(found, ["Edge edgepool.contoso.com: the A/V service and the Access Edge both use 192.0.2.68:443"]);
        let t = crate::load(
            &text.replace(
                "av.contoso.com\", address = \"192.0.2.68\"",
                "av.contoso.com\", address = \"192.0.2.69\"",
            ),
            "t.toml",
        )
        .expect("loads");
        assert!(validate(&t).iter().all(|f| f.rule != "edge-av"));
    }
}
