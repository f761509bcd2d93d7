//! Autodiscover answers: where a user signs in, for clients inside and outside the network.
//!
//! The document follows the shape Lync-era clients read (an `AccessLocation`, a `User` with
//! `SipServer*Access` / `SipClient*Access` access points and `Link`s, or a `Root` with a
//! `Redirect` link), in JSON and XML. Confab fills it from the topology: the internal access
//! point is the sign-in pool (TLS port), the external one the Edge's access service.

use std::fmt::Write;

use confab_topology::Topology;
use serde::Serialize;

const PATH: &str = "/autodiscover/autodiscoverservice.svc/root";

/// Which side of the network the request came through, told by the host name it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AccessLocation {
    Internal,
    External,
}

impl AccessLocation {
    /// `lyncdiscover.<domain>` is the external name; everything else (including
    /// `lyncdiscoverinternal.<domain>`, a pool name or an address) is internal.
    pub fn from_host(host: &str) -> Self {
        let host = host.to_ascii_lowercase();
        if host.starts_with("lyncdiscover.") {
            Self::External
        } else {
            Self::Internal
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// XML when the client asks for XML and not JSON; JSON otherwise.
    pub fn from_accept(accept: &str) -> Self {
        let accept = accept.to_ascii_lowercase();
        if accept.contains("xml") && !accept.contains("json") {
            Self::Xml
        } else {
            Self::Json
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessPoint {
    pub fqdn: String,
    pub port: u16,
}

/// The media relay (A/V Edge) over one transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayPoint {
    pub transport: &'static str,
    pub fqdn: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub token: String,
    pub href: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserAccess {
    #[serde(rename = "SipServerInternalAccess")]
    pub server_internal: AccessPoint,
    #[serde(rename = "SipClientInternalAccess")]
    pub client_internal: AccessPoint,
    #[serde(
        rename = "SipServerExternalAccess",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_external: Option<AccessPoint>,
    #[serde(
        rename = "SipClientExternalAccess",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_external: Option<AccessPoint>,
    /// The media relay's UDP, TCP and TLS addresses (credentials come from a `SERVICE`
    /// request to the Front End).
    #[serde(rename = "MediaRelayAccess", skip_serializing_if = "Vec::is_empty")]
    pub media_relay: Vec<RelayPoint>,
    #[serde(rename = "Links")]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Root {
    #[serde(rename = "Links")]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    #[serde(rename = "AccessLocation")]
    pub access_location: AccessLocation,
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    pub user: Option<UserAccess>,
    #[serde(rename = "Root", skip_serializing_if = "Option::is_none")]
    pub root: Option<Root>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Document(Document),
    BadRequest(String),
    NotFound(String),
    Unavailable(String),
}

/// The answer for `sipuri` (`sip:user@domain` or `user@domain`).
pub fn answer(
    topology: &Topology,
    sipuri: Option<&str>,
    location: AccessLocation,
    user_exists: impl FnOnce(&str) -> Result<bool, String>,
) -> Answer {
    let Some(sipuri) = sipuri.map(str::trim).filter(|s| !s.is_empty()) else {
        return Answer::BadRequest("missing sipuri: ask for ?sipuri=sip:user@domain".into());
    };
    let aor = sipuri
        .strip_prefix("sip:")
        .or_else(|| sipuri.strip_prefix("sips:"))
        .unwrap_or(sipuri)
        .to_ascii_lowercase();
    let Some((user, domain)) = aor
        .split_once('@')
        .filter(|(u, d)| !u.is_empty() && !d.is_empty() && !d.contains(['/', '?', '#', ' ', '@']))
    else {
        return Answer::BadRequest(format!(
            "sipuri `{sipuri}` is not a SIP address: expected sip:user@domain"
        ));
    };
    let Some(access) = topology.domain_access(domain) else {
        // Not one of ours: send the client to that domain's own autodiscover.
        return Answer::Document(Document {
            access_location: location,
            user: None,
            root: Some(Root {
                links: vec![Link {
                    token: "Redirect".into(),
                    href: format!("https://lyncdiscover.{domain}{PATH}?sipuri=sip:{user}@{domain}"),
                }],
            }),
        });
    };
    match user_exists(&aor) {
        Ok(true) => {}
        Ok(false) => return Answer::NotFound(format!("no user sip:{aor} in this deployment")),
        Err(e) => return Answer::Unavailable(format!("cannot look the user up: {e}")),
    }
    let internal = AccessPoint {
        fqdn: access.internal.fqdn.clone(),
        port: access.internal.port,
    };
    let external = access.external.as_ref().map(|e| AccessPoint {
        fqdn: e.fqdn.clone(),
        port: e.port,
    });
    let mut links = vec![
        Link {
            token: "Internal/Autodiscover".into(),
            href: format!("https://{}{PATH}", access.web_internal),
        },
        Link {
            token: "Internal/WebServices".into(),
            href: format!("https://{}/", access.web_internal),
        },
    ];
    if let Some(web) = &access.web_external {
        links.push(Link {
            token: "External/Autodiscover".into(),
            href: format!("https://{web}{PATH}"),
        });
        links.push(Link {
            token: "External/WebServices".into(),
            href: format!("https://{web}/"),
        });
    }
    Answer::Document(Document {
        access_location: location,
        user: Some(UserAccess {
            server_internal: internal.clone(),
            client_internal: internal,
            server_external: external.clone(),
            client_external: external,
            media_relay: topology.media_relay(domain).map_or_else(Vec::new, |r| {
                vec![
                    RelayPoint {
                        transport: "udp",
                        fqdn: r.host.clone(),
                        port: r.udp_port,
                    },
                    RelayPoint {
                        transport: "tcp",
                        fqdn: r.host.clone(),
                        port: r.tcp_port,
                    },
                    RelayPoint {
                        transport: "tls",
                        fqdn: r.host,
                        port: r.tls_port,
                    },
                ]
            }),
            links,
        }),
        root: None,
    })
}

impl Document {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => {
                let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
                s.push('\n');
                s
            }
            Format::Xml => self.to_xml(),
        }
    }

    fn to_xml(&self) -> String {
        let location = match self.access_location {
            AccessLocation::Internal => "Internal",
            AccessLocation::External => "External",
        };
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        let _ = writeln!(x, "<AutodiscoverResponse AccessLocation=\"{location}\">");
        let point = |x: &mut String, name: &str, p: &AccessPoint| {
            let _ = writeln!(
                x,
                "    <{name} fqdn=\"{}\" port=\"{}\"/>",
                escape(&p.fqdn),
                p.port
            );
        };
        let links = |x: &mut String, links: &[Link]| {
            for l in links {
                let _ = writeln!(
                    x,
                    "    <Link token=\"{}\" href=\"{}\"/>",
                    escape(&l.token),
                    escape(&l.href)
                );
            }
        };
        if let Some(u) = &self.user {
            x.push_str("  <User>\n");
            point(&mut x, "SipServerInternalAccess", &u.server_internal);
            point(&mut x, "SipClientInternalAccess", &u.client_internal);
            if let Some(p) = &u.server_external {
                point(&mut x, "SipServerExternalAccess", p);
            }
            if let Some(p) = &u.client_external {
                point(&mut x, "SipClientExternalAccess", p);
            }
            for r in &u.media_relay {
                let _ = writeln!(
                    x,
                    "    <MediaRelayAccess transport=\"{}\" fqdn=\"{}\" port=\"{}\"/>",
                    r.transport,
                    escape(&r.fqdn),
                    r.port
                );
            }
            links(&mut x, &u.links);
            x.push_str("  </User>\n");
        }
        if let Some(r) = &self.root {
            x.push_str("  <Root>\n");
            links(&mut x, &r.links);
            x.push_str("  </Root>\n");
        }
        x.push_str("</AutodiscoverResponse>\n");
        x
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        let text = confab_topology::single_server_toml(
            "example.com",
            "fe.example.com",
            [127, 0, 0, 1].into(),
            5060,
            5061,
        );
        confab_topology::load(&text, "single.toml").expect("single-server topology loads")
    }

    #[test]
    fn a_known_user_gets_the_pool_as_internal_access() {
        let Answer::Document(doc) = answer(
            &topology(),
            Some("sip:Alice@Example.com"),
            AccessLocation::Internal,
            |aor| Ok(aor == "alice@example.com"),
        ) else {
            panic!("expected a document")
        };
        let user = doc.user.expect("user access");
        assert_eq!(user.client_internal.fqdn, "fe.example.com");
        assert_eq!(user.client_internal.port, 5061);
        assert_eq!(user.client_external, None, "no Edge, no external access");
    }

    #[test]
    fn unknown_users_missing_uris_and_other_domains() {
        let t = topology();
        assert!(matches!(
            answer(
                &t,
                Some("sip:zed@example.com"),
                AccessLocation::Internal,
                |_| Ok(false)
            ),
            Answer::NotFound(_)
        ));
        assert!(matches!(
            answer(&t, None, AccessLocation::Internal, |_| Ok(true)),
            Answer::BadRequest(_)
        ));
        assert!(matches!(
            answer(&t, Some("sip:nodomain"), AccessLocation::Internal, |_| Ok(
                true
            )),
            Answer::BadRequest(_)
        ));
        let Answer::Document(doc) = answer(
            &t,
            Some("sip:bob@fabrikam.com"),
            AccessLocation::External,
            |_| Ok(true),
        ) else {
            panic!("expected a redirect document")
        };
        let links = doc.root.expect("root").links;
        assert_eq!(links[0].token, "Redirect");
        assert!(links[0]
            .href
            .starts_with("https://lyncdiscover.fabrikam.com/"));
    }

    #[test]
    fn xml_escapes_attribute_values() {
        let doc = Document {
            access_location: AccessLocation::External,
            user: None,
            root: Some(Root {
                links: vec![Link {
                    token: "Redirect".into(),
                    href: "https://x/?a=1&b=\"2\"".into(),
                }],
            }),
        };
        assert!(doc
            .render(Format::Xml)
            .contains("href=\"https://x/?a=1&amp;b=&quot;2&quot;\""));
    }

    #[test]
    fn accept_header_chooses_the_format() {
        assert_eq!(Format::from_accept("application/xml"), Format::Xml);
        assert_eq!(Format::from_accept("application/json"), Format::Json);
        assert_eq!(Format::from_accept(""), Format::Json);
        assert_eq!(
            AccessLocation::from_host("LyncDiscover.example.com"),
            AccessLocation::External
        );
        assert_eq!(
            AccessLocation::from_host("lyncdiscoverinternal.example.com:8080"),
            AccessLocation::Internal
        );
    }
}
