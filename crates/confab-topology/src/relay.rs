//! The A/V Edge's media relay: what clients are told about it, and the configuration of the
//! TURN server that is it (coturn), both derived from the Edge's entry in the topology.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use crate::model::{Edge, Server, Topology};

/// Where clients reach the media relay of their domain's Edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRelay {
    /// The A/V Edge service's name (on the Edge's certificate).
    pub host: String,
    pub address: IpAddr,
    /// TURN over UDP and over TCP.
    pub udp_port: u16,
    pub tcp_port: u16,
    /// TURN over TLS.
    pub tls_port: u16,
}

impl Topology {
    /// The media relay users of `domain` get credentials for: their Edge's A/V service.
    pub fn media_relay(&self, domain: &str) -> Option<MediaRelay> {
        let d = self
            .domains
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(domain))?;
        let edge = self.edge_for(d)?;
        edge.media_relay()
    }
}

impl Edge {
    /// Its A/V service, if it has one.
    pub fn media_relay(&self) -> Option<MediaRelay> {
        let av = self.av.as_ref()?;
        Some(MediaRelay {
            host: av.fqdn.clone(),
            address: av.address,
            udp_port: self.av_udp_port.get(),
            tcp_port: self.av_udp_port.get(),
            tls_port: av.port.get(),
        })
    }
}

/// The files coturn is given.
pub struct TurnFiles<'a> {
    /// The Edge's certificate and key (its A/V name is on it: `cert_plan`).
    pub cert: &'a Path,
    pub key: &'a Path,
    /// The SQLite database with the secrets (`turn_secret`), kept up to date by Confab.
    pub secrets_db: &'a Path,
    pub log: &'a Path,
    pub pid: &'a Path,
}

/// Address ranges a relay never reaches unless allowed: private, shared, loopback, link-local,
/// multicast and reserved space (what "the inside" is made of), as coturn's first–last ranges.
const DENIED: &[&str] = &[
    "0.0.0.0-0.255.255.255",
    "10.0.0.0-10.255.255.255",
    "100.64.0.0-100.127.255.255",
    "127.0.0.0-127.255.255.255",
    "169.254.0.0-169.254.255.255",
    "172.16.0.0-172.31.255.255",
    "192.0.0.0-192.0.0.255",
    "192.168.0.0-192.168.255.255",
    "198.18.0.0-198.19.255.255",
    "224.0.0.0-255.255.255.255",
    "::1",
    "64:ff9b::-64:ff9b::ffff:ffff",
    "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
];

/// coturn's configuration for Edge server `server` of `edge`: it listens on the A/V address
/// (UDP and TCP on `av_udp_port`, TLS on the A/V port) and on the Edge's inside address (for
/// clients inside), relays from the A/V address, takes the use-auth-secret credentials the
/// Front Ends issue (realm: the first SIP domain), and reaches no private address and no
/// deployment server, only public addresses, relays (its own address) and what
/// `av_allowed_peers` allows. `None` when the Edge has no A/V service.
pub fn coturn_config(
    t: &Topology,
    edge: &Edge,
    server: &Server,
    files: &TurnFiles<'_>,
) -> Result<String, String> {
    let Some(av) = &edge.av else {
        return Err(format!(
            "Edge {} has no A/V service: add `av = {{ fqdn = \"av.<domain>\", address = \"...\" }}` to its [[edge]] in the topology",
            edge.fqdn
        ));
    };
    let [low, high] = edge.av_relay_ports;
    if low == 0 || low >= high {
        return Err(format!(
            "Edge {}: av_relay_ports [{low}, {high}] is not a range of ports (first below last)",
            edge.fqdn
        ));
    }
    let realm = t.domains().next().unwrap_or("localdomain");
    let mut c = String::new();
    let _ = writeln!(c, "# coturn for A/V Edge {} on {} — written by Confab from the topology; changes here are overwritten", av.fqdn, server.fqdn);
    let _ = writeln!(c, "listening-ip={}", av.address);
    if server.address != av.address {
        let _ = writeln!(c, "listening-ip={}", server.address);
    }
    let _ = writeln!(c, "relay-ip={}", av.address);
    let _ = writeln!(c, "listening-port={}", edge.av_udp_port);
    let _ = writeln!(c, "tls-listening-port={}", av.port);
    let _ = writeln!(c, "min-port={low}\nmax-port={high}");
    let _ = writeln!(c, "realm={realm}\nuse-auth-secret");
    let _ = writeln!(c, "userdb={}", files.secrets_db.display());
    let _ = writeln!(
        c,
        "cert={}\npkey={}",
        files.cert.display(),
        files.key.display()
    );
    c.push_str(
        "no-tlsv1\nno-tlsv1_1\nfingerprint\nno-cli\nno-multicast-peers\nno-software-attribute\n",
    );
    let _ = writeln!(c, "pidfile={}", files.pid.display());
    let _ = writeln!(c, "log-file={}\nsimple-log", files.log.display());
    for range in DENIED {
        let _ = writeln!(c, "denied-peer-ip={range}");
    }
    // every deployment server, whatever its address: the relay is no way in
    let servers = t
        .pools
        .iter()
        .flat_map(|p| &p.servers)
        .chain(t.edges.iter().flat_map(|e| &e.servers));
    for s in servers {
        let _ = writeln!(c, "denied-peer-ip={}", s.address);
    }
    let _ = writeln!(c, "allowed-peer-ip={}", av.address);
    for peer in &edge.av_allowed_peers {
        let _ = writeln!(c, "allowed-peer-ip={}", range_of(peer)?);
    }
    Ok(c)
}

/// `a.b.c.d/n` (or one address) as coturn's `first-last` range.
fn range_of(cidr: &str) -> Result<String, String> {
    let bad = || format!("av_allowed_peers: {cidr:?} is not an address or address/prefix");
    let (addr, len) = match cidr.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().map_err(|_| bad())?)),
        None => (cidr, None),
    };
    let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let Some(len) = len else {
        return Ok(addr.to_string());
    };
    match addr {
        IpAddr::V4(a) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            let first = u32::from(a) & mask;
            Ok(format!(
                "{}-{}",
                std::net::Ipv4Addr::from(first),
                std::net::Ipv4Addr::from(first | !mask)
            ))
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            let first = u128::from(a) & mask;
            Ok(format!(
                "{}-{}",
                std::net::Ipv6Addr::from(first),
                std::net::Ipv6Addr::from(first | !mask)
            ))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &str = r#"
[deployment]
name = "t"
[[site]]
name = "hq"
[[domain]]
name = "example.com"
[[domain.sign_in]]
target = "pool.example.com"
[[pool]]
fqdn = "pool.example.com"
site = "hq"
[[pool.server]]
fqdn = "fe1.example.com"
address = "10.0.0.5"
[[edge]]
fqdn = "edge.example.com"
site = "hq"
next_hop = "pool.example.com"
access = { fqdn = "sip.example.com", address = "203.0.113.10" }
av = { fqdn = "av.example.com", address = "203.0.113.11" }
av_allowed_peers = ["10.9.0.0/16"]
[[edge.server]]
fqdn = "edge1.example.com"
address = "10.0.0.9"
"#;

    #[test]
    fn coturn_listens_on_the_av_and_inside_addresses_and_reaches_no_inside_host() {
        let t = crate::load(TOPOLOGY, "t.toml").unwrap();
        let edge = &t.edges[0];
        let p = Path::new("/d");
        let files = TurnFiles {
            cert: &p.join("server.pem"),
            key: &p.join("server.key"),
            secrets_db: &p.join("turn.db"),
            log: &p.join("turn.log"),
            pid: &p.join("turn.pid"),
        };
        let c = coturn_config(&t, edge, &edge.servers[0], &files).unwrap();
        for line in [
            "listening-ip=203.0.113.11",
            "listening-ip=10.0.0.9",
            "relay-ip=203.0.113.11",
            "listening-port=3478",
            "tls-listening-port=443",
            "min-port=50000",
            "max-port=59999",
            "realm=example.com",
            "use-auth-secret",
            "userdb=/d/turn.db",
            "denied-peer-ip=10.0.0.0-10.255.255.255",
            "denied-peer-ip=10.0.0.5",
            "allowed-peer-ip=203.0.113.11",
            "allowed-peer-ip=10.9.0.0-10.9.255.255",
            "no-cli",
        ] {
            assert!(c.lines().any(|l| l == line), "{line} missing:\n{c}");
        }
        assert!(
            !c.contains("static-auth-secret"),
            "secrets come from the database"
        );
        assert_eq!(
            t.media_relay("EXAMPLE.com").unwrap(),
            MediaRelay {
                host: "av.example.com".into(),
                address: "203.0.113.11".parse().unwrap(),
                udp_port: 3478,
                tcp_port: 3478,
                tls_port: 443,
            }
        );
    }

    #[test]
    fn a_bad_allowed_peer_or_no_av_service_is_named() {
        let t = crate::load(&TOPOLOGY.replace("10.9.0.0/16", "10.9.0.0/40"), "t.toml").unwrap();
        let p = Path::new("/d");
        let files = TurnFiles {
            cert: p,
            key: p,
            secrets_db: p,
            log: p,
            pid: p,
        };
        let e = coturn_config(&t, &t.edges[0], &t.edges[0].servers[0], &files).unwrap_err();
        assert!(e.contains("10.9.0.0/40"), "{e}");
        let t = crate::load(&TOPOLOGY.replace("av = {", "# av = {"), "t.toml").unwrap();
        let e = coturn_config(&t, &t.edges[0], &t.edges[0].servers[0], &files).unwrap_err();
        assert!(e.contains("has no A/V service"), "{e}");
        assert!(t.media_relay("example.com").is_none());
    }
}
