//! Finding a partner organisation's Access Edge, as federation does: the
//! `_sipfederationtls._tcp.<domain>` SRV record, whose target must lie in the partner's own
//! zone (a target elsewhere could be anyone's server), then `sip.<domain>` on port 5061 when
//! there is no SRV record; or the Access Edge the topology names for the partner.

use std::net::SocketAddr;
use std::time::Duration;

use crate::discover::Dns;

/// A partner's Access Edge: the name its certificate must carry, and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEdge {
    pub fqdn: String,
    pub addr: SocketAddr,
    /// How it was found (for logs).
    pub via: String,
}

/// Why a partner's Access Edge was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindError {
    /// DNS names one, but it must not be used (outside the partner's zone).
    Refused(String),
    /// DNS has no usable record.
    NotFound(String),
    /// The DNS server did not answer.
    Unanswered(String),
}

impl std::fmt::Display for FindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(w) | Self::NotFound(w) | Self::Unanswered(w) => f.write_str(w),
        }
    }
}

/// Resolves partners' Access Edges with one DNS server, or the system's resolvers; cheap to
/// clone (one resolver shared).
#[derive(Clone)]
pub struct Finder {
    dns: std::sync::Arc<Dns>,
}

impl Finder {
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Self {
        Self {
            dns: std::sync::Arc::new(Dns::at(server, timeout)),
        }
    }

    /// The Access Edge of `domain`; `edge` is the one the topology names (no SRV lookup).
    /// The error says what is missing or wrong, in words for a reason phrase.
    pub async fn find(&self, domain: &str, edge: Option<&str>) -> Result<AccessEdge, FindError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(edge) = edge {
            return self
                .address(edge, 5061, "the topology's partner Edge")
                .await;
        }
        let srv = format!("_sipfederationtls._tcp.{domain}");
        let targets = self
            .dns
            .srv(&srv, &mut |_| {})
            .await
            .map_err(|e| FindError::Unanswered(e.to_string()))?;
        if let Some((target, port)) = targets.first() {
            if !in_zone(target, &domain) {
                return Err(FindError::Refused(format!(
                    "partner's {srv} SRV points at {target}, outside the {domain} zone"
                )));
            }
            return self.address(target, *port, &format!("{srv} SRV")).await;
        }
        let host = format!("sip.{domain}");
        match self
            .address(&host, 5061, "no SRV record: the sip.<domain> fallback")
            .await
        {
            Err(FindError::NotFound(_)) => Err(FindError::NotFound(format!(
                "no {srv} SRV record and no {host} address record"
            ))),
            other => other,
        }
    }

    async fn address(&self, host: &str, port: u16, via: &str) -> Result<AccessEdge, FindError> {
        let addrs = self
            .dns
            .addresses(host, &mut |_| {})
            .await
            .map_err(|e| FindError::Unanswered(e.to_string()))?;
        let ip = addrs.and_then(|a| a.first().copied()).ok_or_else(|| {
            FindError::NotFound(format!(
                "partner's Access Edge {host} has no address record"
            ))
        })?;
        Ok(AccessEdge {
            fqdn: host.to_owned(),
            addr: SocketAddr::new(ip, port),
            via: via.to_owned(),
        })
    }
}

/// Whether `name` is `zone` or inside it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == zone || name.ends_with(&format!(".{zone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_rule_takes_the_domain_and_its_subdomains_only() {
        assert!(in_zone("sip.fabrikam.com", "fabrikam.com"));
        assert!(in_zone("SIP.Fabrikam.com.", "fabrikam.com"));
        assert!(in_zone("fabrikam.com", "fabrikam.com"));
        assert!(!in_zone("sip.fabrikam.com.evil.test", "fabrikam.com"));
        assert!(!in_zone("notfabrikam.com", "fabrikam.com"));
    }
}
