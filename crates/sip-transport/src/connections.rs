//! Connections: accepting them (with their limits and TLS, a deployment server's or a
//! partner's certificate), and opening them toward other servers and partners.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::flow_queue::FlowQueue;
use crate::lock;
use crate::transports::Inner;
use crate::{stream, FlowId, Source, Stats, Target, Transport};

/// A TCP connection to `to` from `from`'s address (any port), or from wherever the kernel
/// picks when that address cannot be bound.
async fn connect_from(from: Option<SocketAddr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    let bound = from.filter(|f| !f.ip().is_unspecified()).and_then(|f| {
        let sock = if f.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .ok()?;
        sock.bind(SocketAddr::new(f.ip(), 0)).ok()?;
        Some(sock)
    });
    match bound {
        Some(sock) => sock.connect(to).await,
        None => TcpStream::connect(to).await,
    }
}

/// Keeps the end-entity certificate a partner connection showed.
fn keep_partner_cert(inner: &Inner, flow: FlowId, certs: Option<&[CertificateDer<'_>]>) {
    if let Some(leaf) = certs.and_then(<[_]>::first) {
        lock(&inner.partner_certs).insert(flow, leaf.to_vec());
    }
}

/// Accepts connections; with TLS, `partner` says the listener faces other organisations.
pub(crate) async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    tls: Option<(TlsAcceptor, bool)>,
) {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(event = "tcp.accept_error", error = %e);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if inner.open.load(Ordering::Relaxed) >= inner.config.max_connections {
            Stats::bump(&inner.stats.connections_refused);
            tracing::warn!(event = "tcp.limit", %remote, limit = inner.config.max_connections, "refusing connection: connection limit reached");
            drop(tcp);
            continue;
        }
        let per_source_limit = inner.config.max_connections_per_source;
        if per_source_limit > 0 {
            let held = lock(&inner.per_source)
                .get(&remote.ip())
                .copied()
                .unwrap_or(0);
            if held >= per_source_limit {
                let n = inner
                    .stats
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if n.is_power_of_two() {
                    tracing::warn!(event = "tcp.source_limit", %remote, limit = per_source_limit, refused = n, "refusing connection: this address holds too many (see --max-connections-per-source)");
                }
                drop(tcp);
                continue;
            }
        }
        let _ = tcp.set_nodelay(true);
        // counted before the next accept: a burst from one address meets its limit
        let (flow, rx) = inner.add_flow(transport, remote);
        let inner = inner.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let source = |peer_verified| Source {
                transport,
                remote,
                local,
                flow: Some(flow),
                peer_verified,
            };
            match tls {
                None => stream::run(inner, tcp, source(false), rx).await,
                Some((acc, partner)) => {
                    match tokio::time::timeout(inner.config.handshake_timeout, acc.accept(tcp))
                        .await
                    {
                        Ok(Ok(s)) => {
                            Stats::bump(&inner.stats.tls_handshakes);
                            let certs = s.get_ref().1.peer_certificates();
                            if certs.is_some() {
                                // a server (ours, or a partner's): a trunk
                                rx.widen();
                            }
                            if partner {
                                // verified against the partners' roots: a partner's, which
                                // the engine matches against the domain it claims
                                keep_partner_cert(&inner, flow, certs);
                                stream::run(inner, s, source(false), rx).await
                            } else {
                                // a client certificate was verified against our CA when
                                // presented: another server of the deployment
                                let verified = certs.is_some();
                                stream::run(inner, s, source(verified), rx).await
                            }
                        }
                        _ => {
                            Stats::bump(&inner.stats.handshake_failures);
                            tracing::info!(event = "tls.handshake_failed", %remote);
                            inner.remove_flow(flow, transport, remote);
                        }
                    }
                }
            }
        });
    }
}

/// Makes the connection of `flow` (already in the table, its first message queued) and runs
/// it; reports failure to the engines and removes the flow.
/// `partner`: the name a partner's certificate must carry (over TLS to a partner's address).
pub(crate) async fn connect(
    inner: Arc<Inner>,
    target: Target,
    flow: FlowId,
    rx: Arc<FlowQueue>,
    partner: Option<String>,
) {
    let fail = |inner: &Inner| {
        inner.remove_flow(flow, target.transport, target.addr);
        inner.connect_failed(target);
    };
    // the listener's address on the side it goes to: the other end sees who we are (a
    // machine of several addresses, or loopback, would otherwise pick its first)
    let local = match target.transport {
        Transport::Tls if partner.is_some() && !inner.local_partner.is_empty() => {
            &inner.local_partner
        }
        Transport::Tls => &inner.local_tls,
        _ => &inner.local_tcp,
    }
    .iter()
    .find(|a| a.is_ipv4() == target.addr.is_ipv4())
    .copied();
    let tcp = match tokio::time::timeout(
        inner.config.handshake_timeout,
        connect_from(local, target.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        _ => return fail(&inner),
    };
    let _ = tcp.set_nodelay(true);
    let Some(local) = local.or_else(|| tcp.local_addr().ok()) else {
        return fail(&inner);
    };
    let source = |peer_verified| Source {
        transport: target.transport,
        remote: target.addr,
        local,
        flow: Some(flow),
        peer_verified,
    };
    if target.transport == Transport::Tls {
        // a partner by the name DNS led to, with the partners' roots; else a server of the
        // deployment by its address, with the deployment's CA
        let (conn, name) = match &partner {
            Some(name) => (
                inner.partner_client.clone(),
                ServerName::try_from(name.clone()).ok(),
            ),
            None => (
                inner.tls_client.clone(),
                Some(ServerName::IpAddress(target.addr.ip().into())),
            ),
        };
        let (Some(conn), Some(name)) = (conn, name) else {
            return fail(&inner);
        };
        match tokio::time::timeout(inner.config.handshake_timeout, conn.connect(name, tcp)).await {
            Ok(Ok(s)) => {
                if partner.is_some() {
                    keep_partner_cert(&inner, flow, s.get_ref().1.peer_certificates());
                    lock(&inner.partner_connecting).remove(&flow);
                }
                // we verified the server's certificate for its address (a deployment server)
                // or for the partner's name
                stream::run(inner, s, source(partner.is_none()), rx).await
            }
            Ok(Err(e)) if partner.is_some() => {
                tracing::warn!(event = "tls.partner_refused", addr = %target.addr, name = partner.as_deref().unwrap_or(""), error = %e, "TLS to a partner's Access Edge or a trunk's gateway failed: its certificate must be valid for its name (the one DNS gave, or the gateway's host) and chain to a CA in --federation-trust (partners) or --gateway-trust (gateways)");
                fail(&inner)
            }
            _ => fail(&inner),
        }
    } else {
        stream::run(inner, tcp, source(false), rx).await
    }
}
