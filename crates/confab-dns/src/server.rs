//! The built-in authoritative DNS server (hickory-server), serving the zones the topology
//! implies. One server serves one view; a split-brain deployment runs two (internal and
//! external) on different addresses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confab_topology::{RecordData, Zone};
use hickory_proto::op::{Header, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record};
use hickory_server::authority::{Catalog, MessageResponseBuilder, ZoneType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::ratelimit::{Limits, RateLimiter};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen for DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the topology names `{name}`, which is not a valid DNS name: {reason}")]
    Name { name: String, reason: String },
}

/// What the server has done, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub answered: AtomicU64,
    /// Queries dropped because their source exceeded its rate.
    pub limited: AtomicU64,
}

/// A running server; dropping it stops it.
#[derive(Debug)]
pub struct DnsServer {
    pub local_addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `zones` over UDP and TCP on `addr` (port 0 picks a free one).
pub async fn start(
    zones: &[Zone],
    addr: SocketAddr,
    limits: Limits,
) -> Result<DnsServer, DnsError> {
    let catalog = catalog(zones)?;
    let stats = Arc::new(Stats::default());
    let handler = Limited {
        inner: catalog,
        limiter: Mutex::new(RateLimiter::new(limits)),
        stats: stats.clone(),
    };
    let bind = |source| DnsError::Bind { addr, source };
    let udp = UdpSocket::bind(addr).await.map_err(bind)?;
    let local_addr = udp.local_addr().map_err(bind)?;
    let tcp = TcpListener::bind(local_addr).await.map_err(bind)?;
    let mut server = ServerFuture::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    let task = tokio::spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::error!(error = %e, "DNS server stopped");
        }
    });
    tracing::info!(%local_addr, zones = zones.len(), "DNS listening (UDP and TCP)");
    Ok(DnsServer {
        local_addr,
        stats,
        task,
    })
}

/// The zones as hickory authorities. The SOA serial is the time of building (seconds since
/// 2020), so a secondary that transfers the zone sees every rebuild as newer.
fn catalog(zones: &[Zone]) -> Result<Catalog, DnsError> {
    let serial = serial_now();
    let mut catalog = Catalog::new();
    for zone in zones {
        let origin = name(&zone.origin)?;
        let mut authority = InMemoryAuthority::empty(origin.clone(), ZoneType::Primary, false);
        let ns = name(&format!("ns1.{}", zone.origin))?;
        let ttl = zone.records.iter().map(|r| r.ttl).min().unwrap_or(3600);
        let soa = SOA::new(
            ns.clone(),
            name(&format!("hostmaster.{}", zone.origin))?,
            serial,
            3600,
            600,
            86_400,
            ttl,
        );
        authority.upsert_mut(
            Record::from_rdata(origin.clone(), ttl, RData::SOA(soa)),
            serial,
        );
        authority.upsert_mut(
            Record::from_rdata(origin.clone(), ttl, RData::NS(NS(ns))),
            serial,
        );
        for record in &zone.records {
            let rdata = match &record.data {
                RecordData::A(ip) => RData::A(A(*ip)),
                RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
                RecordData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
            };
            authority.upsert_mut(
                Record::from_rdata(name(&record.name)?, record.ttl, rdata),
                serial,
            );
        }
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(authority)]);
    }
    Ok(catalog)
}

fn name(fqdn: &str) -> Result<Name, DnsError> {
    let absolute = if fqdn.ends_with('.') {
        fqdn.to_owned()
    } else {
        format!("{fqdn}.")
    };
    Name::from_ascii(&absolute).map_err(|e| DnsError::Name {
        name: fqdn.to_owned(),
        reason: e.to_string(),
    })
}

fn serial_now() -> u32 {
    const EPOCH_2020: u64 = 1_577_836_800;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(EPOCH_2020);
    u32::try_from(secs.saturating_sub(EPOCH_2020)).unwrap_or(u32::MAX)
}

/// The catalog behind a per-source rate limit. Over-limit queries are dropped, not refused:
/// answering a flood (possibly with a spoofed source) would make us its amplifier.
struct Limited {
    inner: Catalog,
    limiter: Mutex<RateLimiter>,
    stats: Arc<Stats>,
}

#[async_trait::async_trait]
impl RequestHandler for Limited {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let allowed = match self.limiter.lock() {
            Ok(mut limiter) => limiter.allow(request.src().ip(), Instant::now()),
            Err(_) => false,
        };
        if !allowed {
            let n = self.stats.limited.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(source = %request.src(), dropped = n, "DNS queries over the per-source rate dropped");
            }
            let mut header = Header::response_from_request(request.header());
            header.set_response_code(ResponseCode::Refused);
            return header.into();
        }
        if request.header().op_code() != hickory_proto::op::OpCode::Query {
            let response = MessageResponseBuilder::from_message_request(request)
                .error_msg(request.header(), ResponseCode::NotImp);
            return match response_handle.send_response(response).await {
                Ok(info) => info,
                Err(_) => Header::response_from_request(request.header()).into(),
            };
        }
        self.stats.answered.fetch_add(1, Ordering::Relaxed);
        self.inner.handle_request(request, response_handle).await
    }
}
