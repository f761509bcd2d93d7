//! Home pools: every user lives on one pool. A sign-in that reaches a pool or Director other
//! than the user's home is authenticated there and answered `301` with the home pool (q=0.7)
//! and its backup (q=0.3), the way the clients of the seed systems expect to be redirected.
//! Sans-IO: the engine asks [`Homing::place`] after authentication.

use std::collections::HashMap;

use sip_transport::Transport;

/// How a server finds users' pools; absent from the engine's configuration in a deployment of a
/// single pool, where every user is local.
#[derive(Debug, Clone, Default)]
pub struct Homing {
    /// This server's pool; `None` on a Director, which hosts no users.
    pub local_pool: Option<String>,
    /// Every pool that hosts users, by FQDN.
    pub pools: HashMap<String, HomePool>,
    /// Addresses (IP literals) of the Edge servers: a sign-in relayed by one is proxied to the
    /// home pool, not redirected (a client outside cannot reach the pool).
    pub edges: Vec<String>,
}

/// How clients reach a pool, and where they go when it is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomePool {
    pub sip_port: u16,
    pub tls_port: u16,
    pub backup: Option<String>,
    /// Its servers' addresses (IP literals), for requests proxied to it rather than redirected.
    pub servers: Vec<String>,
}

/// Where a signing-in user belongs, seen from this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Homed on this pool: register here.
    Here,
    /// Homed elsewhere: the `Contact` values of the 301, the home pool's name, and a server
    /// of it to proxy to (`ip:port` of its TLS listener) when the request must not be
    /// redirected.
    Elsewhere {
        pool: String,
        contacts: Vec<String>,
        proxy_to: Option<String>,
    },
    /// No home pool, or one the topology does not know: the reason for the 404.
    Nowhere(String),
}

impl Homing {
    /// Where a user homed on `pool` belongs; `transport` is how the request came, so that the
    /// redirect keeps it.
    pub fn place(&self, pool: Option<&str>, transport: Transport, user_hash: usize) -> Place {
        let Some(pool) = pool else {
            return Place::Nowhere("Not Found (user has no home pool)".into());
        };
        if self.local_pool.as_deref() == Some(pool) {
            return Place::Here;
        }
        let Some(home) = self.pools.get(pool) else {
            return Place::Nowhere(format!(
                "Not Found (home pool {pool} is not in the topology)"
            ));
        };
        let mut contacts = vec![contact(pool, home, transport, "0.7")];
        if let Some(backup) = &home.backup {
            if let Some(b) = self.pools.get(backup) {
                contacts.push(contact(backup, b, transport, "0.3"));
            }
        }
        // spread a pool's users over its servers, the same server for the same user; servers
        // talk over TLS
        let proxy_to = (!home.servers.is_empty()).then(|| {
            let i = user_hash % home.servers.len();
            let ip = &home.servers[i];
            if ip.contains(':') {
                format!("[{ip}]:{}", home.tls_port)
            } else {
                format!("{ip}:{}", home.tls_port)
            }
        });
        Place::Elsewhere {
            pool: pool.to_owned(),
            contacts,
            proxy_to,
        }
    }

    /// Whether `ip` is one of the deployment's Edge servers.
    pub fn is_edge(&self, ip: &std::net::IpAddr) -> bool {
        self.edges
            .iter()
            .any(|e| e.parse::<std::net::IpAddr>().ok() == Some(*ip))
    }
}

fn contact(fqdn: &str, pool: &HomePool, transport: Transport, q: &str) -> String {
    match transport {
        Transport::Udp => format!("<sip:{fqdn}:{}>;q={q}", pool.sip_port),
        Transport::Tcp => format!("<sip:{fqdn}:{};transport=tcp>;q={q}", pool.sip_port),
        Transport::Tls => format!("<sip:{fqdn}:{};transport=tls>;q={q}", pool.tls_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn homing(local: Option<&str>) -> Homing {
        let pool = |port: u16, backup: Option<&str>| HomePool {
            sip_port: port,
            tls_port: port + 1,
            backup: backup.map(str::to_owned),
            servers: vec!["10.0.0.1".into(), "10.0.0.2".into()],
        };
        Homing {
            local_pool: local.map(str::to_owned),
            edges: vec!["10.0.9.1".into()],
            pools: HashMap::from([
                (
                    "pool-a.example.com".into(),
                    pool(5060, Some("pool-b.example.com")),
                ),
                ("pool-b.example.com".into(), pool(5070, None)),
            ]),
        }
    }

    #[test]
    fn a_user_of_this_pool_registers_here() {
        assert_eq!(
            homing(Some("pool-a.example.com")).place(Some("pool-a.example.com"), Transport::Udp, 0),
            Place::Here
        );
    }

    #[test]
    fn a_director_redirects_to_the_home_pool_then_its_backup() {
        let place = homing(None).place(Some("pool-a.example.com"), Transport::Tls, 0);
        assert_eq!(
            place,
            Place::Elsewhere {
                pool: "pool-a.example.com".into(),
                contacts: vec![
                    "<sip:pool-a.example.com:5061;transport=tls>;q=0.7".into(),
                    "<sip:pool-b.example.com:5071;transport=tls>;q=0.3".into(),
                ],
                proxy_to: Some("10.0.0.1:5061".into()),
            }
        );
    }

    #[test]
    fn another_pool_redirects_and_keeps_the_transport() {
        let place =
            homing(Some("pool-a.example.com")).place(Some("pool-b.example.com"), Transport::Tcp, 0);
        assert_eq!(
            place,
            Place::Elsewhere {
                pool: "pool-b.example.com".into(),
                contacts: vec!["<sip:pool-b.example.com:5070;transport=tcp>;q=0.7".into()],
                proxy_to: Some("10.0.0.1:5071".into()),
            },
            "pool B has no backup"
        );
    }

    #[test]
    fn users_are_spread_over_the_home_pools_servers_and_edges_are_known() {
        let h = homing(None);
        let to = |hash| match h.place(Some("pool-a.example.com"), Transport::Udp, hash) {
            Place::Elsewhere { proxy_to, .. } => proxy_to,
            other => panic!("{other:?}"),
        };
        assert_eq!(to(0).as_deref(), Some("10.0.0.1:5061"));
        assert_eq!(to(1).as_deref(), Some("10.0.0.2:5061"));
        assert!(h.is_edge(&"10.0.9.1".parse().unwrap()));
        assert!(!h.is_edge(&"10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn no_home_or_an_unknown_one_is_nowhere_with_the_reason() {
        let h = homing(None);
        assert_eq!(
            h.place(None, Transport::Udp, 0),
            Place::Nowhere("Not Found (user has no home pool)".into())
        );
        assert_eq!(
            h.place(Some("gone.example.com"), Transport::Udp, 0),
            Place::Nowhere("Not Found (home pool gone.example.com is not in the topology)".into())
        );
    }
}
