//! The deployment as the topology describes it: what is deployed and which DNS names it
//! implies, the validator's findings, and the pools' servers with whether each takes
//! sign-ins (`confab pool drain`).

use std::fmt::Write as _;

use confab_store::Store;
use confab_topology::{Severity, Topology, View};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{audit, Actor, AdminError, Result, Right};

/// A SIP domain and where its users sign in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DomainView {
    pub name: String,
    /// The sign-in pool (or Director).
    pub sign_in_pool: Option<String>,
    /// `fqdn:port` internal clients use.
    pub internal: Option<String>,
    /// `fqdn:port` external clients use (through an Edge).
    pub external: Option<String>,
    /// The A/V Edge's media relay (`host at address`).
    pub media_relay: Option<String>,
}

/// A certificate a server needs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    pub server: String,
    pub pool: String,
    pub role: String,
    /// Subject first.
    pub names: Vec<String>,
}

/// The deployment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopologyView {
    pub domains: Vec<DomainView>,
    pub certificates: Vec<CertificateView>,
    /// Records of the internal view, as zone-file lines.
    pub dns_internal: Vec<String>,
    /// Records of the external view.
    pub dns_external: Vec<String>,
}

impl TopologyView {
    /// The view as `confab topology show` prints it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for d in &self.domains {
            let _ = writeln!(out, "SIP domain {}", d.name);
            if let (Some(pool), Some(internal)) = (&d.sign_in_pool, &d.internal) {
                let _ = writeln!(out, "  sign-in pool {pool} (internal clients: {internal})");
                let _ = match &d.external {
                    Some(e) => writeln!(out, "  external clients: {e}"),
                    None => writeln!(out, "  external clients: none (no Edge)"),
                };
                let _ = match &d.media_relay {
                    Some(r) => writeln!(out, "  media relay: {r}"),
                    None => writeln!(out, "  media relay: none (no Edge with an A/V service)"),
                };
            }
        }
        for c in &self.certificates {
            let _ = writeln!(out, "{} {} (pool {})", c.role, c.server, c.pool);
        }
        for (label, records) in [
            ("internal", &self.dns_internal),
            ("external", &self.dns_external),
        ] {
            let _ = writeln!(out, "DNS, {label} view:");
            for r in records {
                let _ = writeln!(out, "  {r}");
            }
        }
        out
    }
}

/// What is deployed and which names DNS gives it.
pub fn view(t: &Topology) -> TopologyView {
    let domains = t
        .domains()
        .map(|name| {
            let access = t.domain_access(name);
            DomainView {
                name: name.to_owned(),
                sign_in_pool: access.as_ref().map(|a| a.pool.clone()),
                internal: access
                    .as_ref()
                    .map(|a| format!("{}:{}", a.internal.fqdn, a.internal.port)),
                external: access
                    .as_ref()
                    .and_then(|a| a.external.as_ref())
                    .map(|e| format!("{}:{}", e.fqdn, e.port)),
                media_relay: t.media_relay(name).map(|r| {
                    format!(
                        "{} at {} (TURN UDP and TCP {}, TLS {})",
                        r.host, r.address, r.udp_port, r.tls_port
                    )
                }),
            }
        })
        .collect();
    let certificates = confab_topology::cert_plan(t)
        .into_iter()
        .map(|p| CertificateView {
            server: p.server,
            pool: p.pool,
            role: p.role.to_owned(),
            names: p.sans,
        })
        .collect();
    let records = |v| t.records(v).iter().map(ToString::to_string).collect();
    TopologyView {
        domains,
        certificates,
        dns_internal: records(View::Internal),
        dns_external: records(View::External),
    }
}

/// One finding of the validator.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FindingView {
    pub rule: String,
    /// `error` or `warning`.
    pub severity: String,
    /// What it is about (a domain, pool, Edge or record name).
    pub subject: String,
    pub what: String,
    /// What it breaks.
    pub breaks: String,
    /// How to fix it.
    pub fix: String,
}

/// The validator's verdict on a topology.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Validation {
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<FindingView>,
}

/// Loads topology `text` (named `origin` in errors) and validates it.
pub fn validate(text: &str, origin: &str) -> Result<Validation> {
    let t = confab_topology::load(text, origin).map_err(|e| AdminError::invalid(e.to_string()))?;
    let findings: Vec<FindingView> = confab_topology::validate(&t)
        .into_iter()
        .map(|f| FindingView {
            rule: f.rule.to_owned(),
            severity: match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            }
            .to_owned(),
            subject: f.subject,
            what: f.what,
            breaks: f.breaks,
            fix: f.fix,
        })
        .collect();
    let errors = findings.iter().filter(|f| f.severity == "error").count();
    Ok(Validation {
        errors,
        warnings: findings.len() - errors,
        findings,
    })
}

/// A server of a pool.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerView {
    pub fqdn: String,
    pub address: String,
    /// Drained: takes no new sign-ins (`confab pool drain`).
    pub draining: bool,
}

/// A pool and its servers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolView {
    pub fqdn: String,
    pub site: String,
    /// `front-end` or `director`.
    pub role: String,
    pub hosts_users: bool,
    pub servers: Vec<ServerView>,
}

/// The `ip:port` a server is known by (its address and its pool's SIP port).
fn server_id(pool: &confab_topology::Pool, s: &confab_topology::Server) -> String {
    std::net::SocketAddr::new(s.address, pool.sip_port.get()).to_string()
}

/// Every pool with its servers.
pub fn pools(store: &dyn Store, t: &Topology, actor: &Actor) -> Result<Vec<PoolView>> {
    actor.require(Right::Read)?;
    let drained: Vec<String> = store
        .settings(confab_store::DRAIN_SETTING)?
        .into_iter()
        .map(|(k, _)| k[confab_store::DRAIN_SETTING.len()..].to_owned())
        .collect();
    Ok(t.pools
        .iter()
        .map(|p| PoolView {
            fqdn: p.fqdn.clone(),
            site: p.site.clone(),
            role: match p.role {
                confab_topology::Role::FrontEnd => "front-end",
                confab_topology::Role::Director => "director",
            }
            .into(),
            hosts_users: p.hosts_users(),
            servers: p
                .servers
                .iter()
                .map(|s| ServerView {
                    fqdn: s.fqdn.clone(),
                    address: s.address.to_string(),
                    draining: drained.contains(&server_id(p, s)),
                })
                .collect(),
        })
        .collect())
}

/// Drains server `fqdn` (`on`) or lets it take sign-ins again.
pub fn drain(store: &dyn Store, t: &Topology, actor: &Actor, fqdn: &str, on: bool) -> Result<()> {
    actor.require(Right::ManagePools)?;
    let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
    let id = t
        .pools
        .iter()
        .find_map(|p| {
            p.servers
                .iter()
                .find(|s| s.fqdn == fqdn)
                .map(|s| server_id(p, s))
        })
        .ok_or_else(|| {
            AdminError::not_found(format!(
                "{fqdn} is not a server of the topology (see `confab topology show`)"
            ))
        })?;
    let key = format!("{}{id}", confab_store::DRAIN_SETTING);
    store.set_setting(&key, on.then_some("1"))?;
    audit::record(
        store,
        actor,
        if on { "pool.drain" } else { "pool.undrain" },
        &fqdn,
        &id,
    )
}
