//! The deployment model. A deployment is described by a strict TOML *topology file* (see
//! `README.md`, "The topology file"); from it this crate derives
//!
//! * the DNS records clients and servers need, per view ([`Topology::records`],
//!   [`Topology::zones`], rendered as BIND zone files by [`Zone::to_bind`]);
//! * findings about mistakes that break sign-in, federation or pools ([`validate`]), each with
//!   a stable rule ID;
//! * the names each server's certificate must carry ([`cert_plan`], [`names_pointing_at`]).
//!
//! Everything is derived from the records: validation and the certificate plan look at what
//! DNS will say, so they cannot disagree with the zone files. The crate does no I/O.

mod certs;
mod federation;
mod load;
mod model;
mod records;
mod relay;
mod validate;

pub use certs::{cert_plan, covers, names_pointing_at, CertPlan};
pub use federation::Decision;
pub use load::{load, LoadError};
pub use model::{
    ClientKind, Deployment, Domain, Edge, ExternalAccess, Family, Federation, FederationMode,
    HostingProvider, LbMode, LoadBalancer, Named, Partner, Pool, Role, Server, SignIn, Site,
    Topology, Verification,
};
pub use records::{AccessPoint, DomainAccess, Owner, Record, RecordData, View, Zone};
pub use relay::{coturn_config, MediaRelay, TurnFiles};
pub use validate::{validate, Finding, Severity, RULES};

/// The topology `confab up` writes for itself: one pool of one server, every record family
/// published, both client generations, no Edge.
pub fn single_server_toml(
    domain: &str,
    server_fqdn: &str,
    address: std::net::IpAddr,
    sip_port: u16,
    tls_port: u16,
) -> String {
    format!(
        r#"# Written by `confab up` at every start from its flags (edit a copy and pass it with
# --topology to describe a larger deployment). `confab topology validate FILE` checks it.

[deployment]
name = "{domain}"
split_dns = false
# Clients that find the server by SRV records only (legacy) and by autodiscover (modern).
clients = ["legacy", "modern"]

[[site]]
name = "default"

[[domain]]
name = "{domain}"
# The automatic-sign-in SRV records point here.
sign_in = ["{server_fqdn}"]

[[pool]]
fqdn = "{server_fqdn}"
site = "default"
role = "front-end"
sip_port = {sip_port}
tls_port = {tls_port}

[[pool.server]]
fqdn = "{server_fqdn}"
address = "{address}"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_single_server_topology_loads_and_validates_clean() {
        let text = single_server_toml(
            "example.com",
            "pool01.example.com",
            [127, 0, 0, 1].into(),
            5060,
            5061,
        );
        let t = load(&text, "single.toml").expect("loads");
        assert_eq!(validate(&t), Vec::new());
        let access = t.domain_access("example.com").expect("domain");
        assert_eq!(access.internal.fqdn, "pool01.example.com");
        assert_eq!(access.internal.port, 5061);
        assert!(access.external.is_none());
    }
}
