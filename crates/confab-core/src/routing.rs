//! Where things go: response destinations (RFC 3261 §18.2.2, RFC 3581), next hops from URIs,
//! recognising our own URIs, loop detection, and Via removal from responses.

use std::net::{IpAddr, SocketAddr};

use sip_proto::header::Via;
use sip_proto::{HeaderName, Message, SipUri};
use sip_transport::{Source, Target, Transport};

use crate::config::EngineConfig;

/// Where the responses to a request go: back on its connection for streams; for UDP to the
/// source address, at the source port when the client asked for rport, else at the Via port.
pub(crate) fn response_target(via: Option<&Via<'_>>, source: &Source) -> Target {
    let port = match via {
        Some(v) if source.transport == Transport::Udp && v.rport().is_none() => {
            v.port.unwrap_or(5060)
        }
        _ => source.remote.port(),
    };
    Target {
        transport: source.transport,
        addr: SocketAddr::new(source.remote.ip(), port),
        flow: source.flow,
    }
}

/// Where a response goes when forwarded statelessly by its (new) top Via.
pub(crate) fn via_target(via: &Via<'_>) -> Option<Target> {
    let transport = Transport::from_name(via.transport)?;
    let ip: IpAddr = via
        .received()
        .unwrap_or(via.host)
        .trim_matches(['[', ']'])
        .parse()
        .ok()?;
    let port = via
        .rport()
        .flatten()
        .and_then(|p| p.parse().ok())
        .or(via.port)
        .unwrap_or(default_port(transport));
    Some(Target {
        transport,
        addr: SocketAddr::new(ip, port),
        flow: None,
    })
}

/// The next hop for a URI whose host is an IP address (DNS resolution arrives with the
/// topology issue); `transport=` and `sips:` choose the transport.
pub(crate) fn uri_target(uri: &SipUri<'_>, fallback: Transport) -> Option<Target> {
    let ip: IpAddr = uri.host.trim_matches(['[', ']']).parse().ok()?;
    let transport = match uri.param("transport").flatten() {
        Some(t) => Transport::from_name(t)?,
        None if uri.secure => Transport::Tls,
        None => fallback,
    };
    let port = uri.port.unwrap_or(default_port(transport));
    Some(Target {
        transport,
        addr: SocketAddr::new(ip, port),
        flow: None,
    })
}

/// One of `servers` (over TLS) for `req`, the same one for every request of the same Call-ID
/// (so a dialog's requests meet the same state); `None` when there is none.
pub(crate) fn server_for_call(req: &Message, servers: &[SocketAddr]) -> Option<Target> {
    if servers.is_empty() {
        return None;
    }
    let hash = req
        .call_id()
        .unwrap_or("")
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    Some(Target {
        transport: Transport::Tls,
        addr: servers[hash % servers.len()],
        flow: None,
    })
}

pub(crate) fn default_port(t: Transport) -> u16 {
    if t == Transport::Tls {
        5061
    } else {
        5060
    }
}

/// Our port for a transport.
pub(crate) fn our_port(cfg: &EngineConfig, t: Transport) -> u16 {
    match t {
        Transport::Udp => cfg.udp_port,
        Transport::Tcp => cfg.tcp_port,
        Transport::Tls => cfg.tls_port,
    }
    .or(cfg.udp_port)
    .or(cfg.tcp_port)
    .unwrap_or(5060)
}

/// Whether a URI addresses this server itself (a Route we put in, or the server's address).
pub(crate) fn is_our_address(cfg: &EngineConfig, uri: &SipUri<'_>) -> bool {
    let host_ok = cfg.is_own_host(uri.host);
    let port = uri.port.unwrap_or(if uri.secure { 5061 } else { 5060 });
    host_ok && our_ports(cfg).any(|p| p == Some(port))
}

/// Every port we listen on (at an Edge, the Access Edge's too).
fn our_ports(cfg: &EngineConfig) -> impl Iterator<Item = Option<u16>> + '_ {
    [cfg.udp_port, cfg.tcp_port, cfg.tls_port]
        .into_iter()
        .chain(
            cfg.edge
                .iter()
                .flat_map(|e| [Some(e.access_port), Some(e.federation_port)]),
        )
}

/// Whether a Via was put in by this server.
pub(crate) fn is_our_via(cfg: &EngineConfig, via: &Via<'_>) -> bool {
    cfg.is_own_host(via.host)
        && Transport::from_name(via.transport).is_some_and(|t| {
            via.port == Some(our_port(cfg, t))
                || cfg
                    .edge
                    .as_ref()
                    .is_some_and(|e| via.port == Some(e.access_port))
        })
}

/// The loop-detection part of our branch (RFC 3261 §16.6 step 8): a hash of the fields a
/// spiral changes but a loop does not.
pub(crate) fn loop_hash(req: &Message) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: &[u8]| {
        for &x in b.iter().chain(b"|") {
            h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(req.uri_str().as_bytes());
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::ProxyRequire,
        HeaderName::Route,
    ] {
        for v in req.raw_headers(name) {
            feed(v);
        }
    }
    format!("{:016x}", h)
}

/// A response without its top Via value (the one we added when forwarding the request).
pub(crate) fn strip_top_via(resp: &Message, convert_503: bool) -> Vec<u8> {
    let (code, reason) = if convert_503 && resp.status() == 503 {
        (500, "Server Internal Error (downstream 503)")
    } else {
        (resp.status(), resp.reason())
    };
    let mut w = sip_proto::Writer::response(code, reason);
    let mut stripped = false;
    for (name, n, v) in resp.fields() {
        if name == HeaderName::ContentLength {
            continue;
        }
        if name == HeaderName::Via && !stripped {
            stripped = true;
            let rest: Vec<&[u8]> = sip_proto::header::split_list(v).skip(1).collect();
            if !rest.is_empty() {
                w.raw(n, &rest.join(&b", "[..]));
            }
            continue;
        }
        w.raw(n, v);
    }
    w.finish(resp.body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_proto::{Limits, Uri};

    fn src(t: Transport) -> Source {
        Source {
            transport: t,
            remote: "10.0.0.9:40000".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            flow: Some(3),
            peer_verified: false,
        }
    }

    #[test]
    fn udp_responses_honour_rport() {
        let with = Via::parse("SIP/2.0/UDP h:5070;branch=z9hG4bK1;rport").unwrap();
        let without = Via::parse("SIP/2.0/UDP h:5070;branch=z9hG4bK1").unwrap();
        assert_eq!(
            response_target(Some(&with), &src(Transport::Udp)).addr,
            "10.0.0.9:40000".parse().unwrap()
        );
        assert_eq!(
            response_target(Some(&without), &src(Transport::Udp)).addr,
            "10.0.0.9:5070".parse().unwrap()
        );
        assert_eq!(
            response_target(Some(&without), &src(Transport::Tcp)).flow,
            Some(3)
        );
    }

    #[test]
    fn uri_targets_need_ip_hosts() {
        let u = Uri::parse("sip:a@127.0.0.1:5070;transport=tcp").unwrap();
        let t = uri_target(u.as_sip().unwrap(), Transport::Udp).unwrap();
        assert_eq!((t.transport, t.addr.port()), (Transport::Tcp, 5070));
        let s = Uri::parse("sips:a@[::1]").unwrap();
        assert_eq!(
            uri_target(s.as_sip().unwrap(), Transport::Udp)
                .unwrap()
                .addr,
            "[::1]:5061".parse().unwrap()
        );
        assert!(uri_target(
            Uri::parse("sip:a@example.com").unwrap().as_sip().unwrap(),
            Transport::Udp
        )
        .is_none());
    }

    #[test]
    fn stripping_top_via_keeps_the_rest() {
        let r = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP us:5060;branch=z9hG4bKa, SIP/2.0/UDP them;branch=z9hG4bKb\r\nVia: SIP/2.0/UDP x\r\nCall-ID: c\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
            &Limits::default(),
        )
        .unwrap();
        let s = Message::parse(strip_top_via(&r, false), &Limits::default()).unwrap();
        let vias: Vec<_> = s.values(HeaderName::Via).map(Result::unwrap).collect();
        assert_eq!(
            vias,
            vec!["SIP/2.0/UDP them;branch=z9hG4bKb", "SIP/2.0/UDP x"]
        );
        assert_eq!(s.body(), b"hi");
    }
}
