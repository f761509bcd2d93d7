//! Which other organisations' domains may talk to ours, and through which Access Edge: the
//! decision the Edge makes for every federated request, in and out. Pure: the Edge asks, DNS
//! and TLS happen elsewhere.

use crate::model::{Federation, FederationMode, HostingProvider};

/// What the policy says about a partner domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Federation with the domain is allowed; `edge` is its Access Edge when the topology
    /// names one (a listed partner's `edge`, or the hosting provider's FQDN), else DNS finds it.
    Allowed {
        edge: Option<&'a str>,
        provider: Option<&'a HostingProvider>,
    },
    /// Refused, with the reason (a reason phrase's parenthesis, a log line's words).
    Refused(&'static str),
}

impl Federation {
    /// The decision for `domain` (lowercase, no trailing dot). The blocked list wins over
    /// everything; a disabled hosting provider's domains are refused.
    pub fn decide(&self, domain: &str) -> Decision<'_> {
        if self.mode == FederationMode::Off {
            return Decision::Refused("federation is not enabled");
        }
        if self.blocked.iter().any(|b| same(b, domain)) {
            return Decision::Refused("partner domain is blocked");
        }
        if let Some(p) = self
            .providers
            .iter()
            .find(|p| p.domains.iter().any(|d| same(d, domain)))
        {
            return if p.enabled {
                Decision::Allowed {
                    edge: Some(&p.fqdn),
                    provider: Some(p),
                }
            } else {
                Decision::Refused("hosting provider is disabled")
            };
        }
        match self.partners.iter().find(|p| same(&p.domain, domain)) {
            Some(p) => Decision::Allowed {
                edge: p.edge.as_deref(),
                provider: None,
            },
            None if self.mode == FederationMode::Open => Decision::Allowed {
                edge: None,
                provider: None,
            },
            None => Decision::Refused("partner domain is not on the allowed list"),
        }
    }

    pub fn enabled(&self) -> bool {
        self.mode != FederationMode::Off
    }
}

fn same(configured: &str, domain: &str) -> bool {
    configured
        .strip_suffix('.')
        .unwrap_or(configured)
        .eq_ignore_ascii_case(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Partner, Verification};

    fn policy(mode: FederationMode) -> Federation {
        Federation {
            mode,
            partners: vec![Partner {
                domain: "Fabrikam.com".into(),
                edge: Some("sip.fabrikam.com".into()),
            }],
            blocked: vec!["spam.example.".into(), "fabrikam.net".into()],
            providers: vec![HostingProvider {
                name: "push".into(),
                fqdn: "sip.push.example".into(),
                enabled: true,
                verification: Verification::AlwaysVerifiable,
                domains: vec!["push.example".into()],
            }],
        }
    }

    #[test]
    fn off_refuses_everyone_even_listed_partners() {
        assert_eq!(
            policy(FederationMode::Off).decide("fabrikam.com"),
            Decision::Refused("federation is not enabled")
        );
    }

    #[test]
    fn allowed_mode_takes_listed_partners_and_provider_domains_only() {
        let p = policy(FederationMode::Allowed);
        assert_eq!(
            p.decide("fabrikam.com"),
            Decision::Allowed {
                edge: Some("sip.fabrikam.com"),
                provider: None
            }
        );
        assert!(matches!(
            p.decide("push.example"),
            Decision::Allowed { edge: Some("sip.push.example"), provider: Some(pr) } if pr.name == "push"
        ));
        assert_eq!(
            p.decide("litware.com"),
            Decision::Refused("partner domain is not on the allowed list")
        );
    }

    #[test]
    fn open_mode_takes_any_domain_but_the_blocked_list_always_wins() {
        let mut p = policy(FederationMode::Open);
        assert_eq!(
            p.decide("litware.com"),
            Decision::Allowed {
                edge: None,
                provider: None
            }
        );
        assert_eq!(
            p.decide("spam.example"),
            Decision::Refused("partner domain is blocked")
        );
        p.blocked.push("fabrikam.com".into());
        assert_eq!(
            p.decide("fabrikam.com"),
            Decision::Refused("partner domain is blocked")
        );
        p.providers[0].enabled = false;
        assert_eq!(
            p.decide("push.example"),
            Decision::Refused("hosting provider is disabled")
        );
    }
}
