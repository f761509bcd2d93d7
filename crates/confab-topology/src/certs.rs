//! Certificate names: what each server's certificate must carry so that every name DNS points
//! at it verifies.

use crate::model::Topology;
use crate::records::{Owner, RecordData, View};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPlan {
    pub server: String,
    pub pool: String,
    pub role: &'static str,
    pub subject: String,
    /// Subject first, no duplicates.
    pub sans: Vec<String>,
}

/// Whether `cert_names` (CN and SANs) cover `host`: exactly, or by a wildcard `*.zone` for
/// exactly one label.
pub fn covers(cert_names: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    cert_names.iter().any(|n| {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        match n.strip_prefix("*.") {
            Some(zone) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == zone),
            None => n == host,
        }
    })
}

/// Who a server is: its pool or Edge.
fn owners_of(t: &Topology, server_fqdn: &str) -> Vec<Owner> {
    let server = server_fqdn.to_ascii_lowercase();
    let mut owners = vec![Owner::Server(server.clone())];
    for p in &t.pools {
        if p.fqdn == server || p.servers.iter().any(|s| s.fqdn == server) {
            owners.push(Owner::Pool(p.fqdn.clone()));
        }
    }
    for e in &t.edges {
        if e.fqdn == server || e.servers.iter().any(|s| s.fqdn == server) {
            owners.push(Owner::Edge(e.fqdn.clone()));
        }
    }
    owners
}

/// Every name DNS (either view) points at this server, its pool or its Edge: the names of
/// address records they own, including the hosts SRV records lead to.
pub fn names_pointing_at(t: &Topology, server_fqdn: &str) -> Vec<String> {
    let owners = owners_of(t, server_fqdn);
    let mut names: Vec<String> = Vec::new();
    for view in [View::Internal, View::External] {
        for r in t.records(view) {
            if matches!(r.data, RecordData::Srv { .. }) || !owners.contains(&r.owner) {
                continue;
            }
            if !names.contains(&r.name) {
                names.push(r.name);
            }
        }
    }
    // The machine's own name first, then its pool's, then the rest in DNS order.
    names.sort_by_key(|n| {
        (
            n != &server_fqdn.to_ascii_lowercase(),
            !owners
                .iter()
                .any(|o| matches!(o, Owner::Pool(p) | Owner::Edge(p) if p == n)),
        )
    });
    names
}

pub fn cert_plan(t: &Topology) -> Vec<CertPlan> {
    let mut plans = Vec::new();
    let push = |sans: &mut Vec<String>, name: &str| {
        if !sans.iter().any(|s| s == name) {
            sans.push(name.to_owned());
        }
    };
    for pool in &t.pools {
        let role = match pool.role {
            crate::model::Role::FrontEnd => "front-end",
            crate::model::Role::Director => "director",
        };
        for server in &pool.servers {
            let mut sans = Vec::new();
            push(&mut sans, &pool.fqdn);
            push(&mut sans, &server.fqdn);
            for d in &t.domains {
                push(&mut sans, &format!("sip.{}", d.name));
            }
            for d in &t.domains {
                push(&mut sans, &format!("lyncdiscoverinternal.{}", d.name));
                push(&mut sans, &format!("lyncdiscover.{}", d.name));
            }
            push(&mut sans, pool.web_internal_fqdn());
            if let Some(w) = &pool.web_external {
                push(&mut sans, &w.fqdn);
            }
            for n in names_pointing_at(t, &server.fqdn) {
                push(&mut sans, &n);
            }
            plans.push(CertPlan {
                server: server.fqdn.clone(),
                pool: pool.fqdn.clone(),
                role,
                subject: pool.fqdn.clone(),
                sans,
            });
        }
    }
    for edge in &t.edges {
        for server in &edge.servers {
            let mut sans = Vec::new();
            push(&mut sans, &edge.access.fqdn);
            for d in t
                .domains
                .iter()
                .filter(|d| t.edge_for(d).is_some_and(|e| e.fqdn == edge.fqdn))
            {
                push(&mut sans, &format!("sip.{}", d.name));
                push(&mut sans, &format!("sipexternal.{}", d.name));
            }
            for service in [&edge.webconf, &edge.av].into_iter().flatten() {
                push(&mut sans, &service.fqdn);
            }
            push(&mut sans, &edge.fqdn);
            push(&mut sans, &server.fqdn);
            plans.push(CertPlan {
                server: server.fqdn.clone(),
                pool: edge.fqdn.clone(),
                role: "edge",
                subject: edge.access.fqdn.clone(),
                sans,
            });
        }
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        let names = vec!["*.contoso.com".to_owned(), "Pool01.Contoso.com".to_owned()];
        assert!(covers(&names, "sip.contoso.com"));
        assert!(covers(&names, "POOL01.contoso.com."));
        assert!(!covers(&names, "contoso.com"));
        assert!(!covers(&names, "a.b.contoso.com"));
        assert!(!covers(&names, "sip.vlab.com"));
    }
}
