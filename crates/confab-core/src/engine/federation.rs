//! Federation at the Edge: a partner's Access Edge found by DNS before a request goes out to
//! it, and a partner's connection proved to belong to the domain it writes from before its
//! request goes in. Both are slow (DNS), so the request parks (`park.rs`) while the driver
//! asks [`PartnerResolver`] and, for a proof, checks the connection's certificate against the
//! Access Edge DNS names for that domain.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use sip_transport::{FlowId, Target, Transport};

use super::park::{Answer, Then};
use super::{Ctx, Engine, Fetched};

/// How long a partner's Access Edge found by DNS is used before it is looked up again.
const PARTNER_TTL: Duration = Duration::from_secs(300);

/// A partner's Access Edge: the name its certificate must carry and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerEdge {
    pub fqdn: String,
    pub addr: SocketAddr,
}

/// Why a partner cannot be reached or is refused: the status to answer and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerError {
    pub status: u16,
    pub reason: String,
}

/// Finds partners' Access Edges (DNS, in `confab`: `confab_dns::federation`).
pub trait PartnerResolver: Send + Sync + 'static {
    /// The Access Edge of `domain` (`edge`: the one the topology names). The error's reason
    /// is in words ("partner's ... SRV points at ..., outside the ... zone").
    fn find(
        &self,
        domain: String,
        edge: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<PartnerEdge, PartnerError>> + Send>>;
}

/// A partner's Access Edge to find for a parked request; with `prove`, then whether that
/// connection's certificate is valid for it (a partner's request coming in).
#[derive(Debug)]
pub struct Lookup {
    pub token: u64,
    pub domain: String,
    pub edge: Option<String>,
    pub prove: Option<FlowId>,
}

impl Lookup {
    /// What the driver found, for [`Engine::job_done`].
    pub fn done(&self, found: Result<PartnerEdge, PartnerError>) -> Fetched {
        Fetched {
            token: self.token,
            answer: Answer::Partner(self.domain.clone(), found),
        }
    }
}

/// What the federation check decided for a request.
pub(super) enum Partner {
    /// Go on: the partner's Access Edge (outbound), or the proof held (inbound).
    Ready(PartnerEdge),
    Refused(PartnerError),
    /// Parked until DNS answers.
    Waiting,
}

impl Engine {
    /// Lookups for the driver to run (see [`Lookup`]); each answer goes to
    /// [`Engine::job_done`].
    pub fn poll_lookup(&mut self) -> Option<Lookup> {
        self.lookups.pop_front()
    }

    /// A partner address and the name its certificate must carry, for
    /// `Transports::name_partner` before anything is sent there.
    pub fn poll_partner_name(&mut self) -> Option<(SocketAddr, String)> {
        self.partner_names.pop()
    }

    /// The Access Edge of `domain` for a request going out: cached, the answer the resumed
    /// request brought, or a park.
    pub(super) fn partner_edge(
        &mut self,
        ctx: &mut Ctx,
        domain: &str,
        edge: Option<&str>,
        now: Instant,
    ) -> Partner {
        if let Some((at, found)) = self.partners.get(domain) {
            if now < *at + PARTNER_TTL {
                return Partner::Ready(found.clone());
            }
        }
        match self.partner_answer(ctx, domain) {
            Some(Ok(found)) => {
                self.partners
                    .insert(domain.to_owned(), (now, found.clone()));
                self.partner_names.push((found.addr, found.fqdn.clone()));
                Partner::Ready(found)
            }
            Some(Err(why)) => Partner::Refused(why),
            None => self.park_lookup(ctx, domain, edge, None),
        }
    }

    /// Whether the connection a partner's request came on proves `domain`: its certificate
    /// is valid for the Access Edge DNS gives for that domain (the proof is kept for the
    /// connection's life).
    pub(super) fn partner_proof(
        &mut self,
        ctx: &mut Ctx,
        domain: &str,
        edge: Option<&str>,
    ) -> Partner {
        let Some(flow) = ctx.source.flow else {
            return Partner::Refused(PartnerError {
                status: 403,
                reason: "federation takes TLS connections only".into(),
            });
        };
        if let Some(found) = self
            .proven
            .get(&flow)
            .and_then(|p| p.iter().find(|(d, _)| d == domain))
        {
            return Partner::Ready(found.1.clone());
        }
        match self.partner_answer(ctx, domain) {
            Some(Ok(found)) => {
                self.proven
                    .entry(flow)
                    .or_default()
                    .push((domain.to_owned(), found.clone()));
                Partner::Ready(found)
            }
            Some(Err(why)) => Partner::Refused(why),
            None => self.park_lookup(ctx, domain, edge, Some(flow)),
        }
    }

    /// The partner lookup a resumed request brought for `domain`, taken.
    fn partner_answer(
        &mut self,
        ctx: &mut Ctx,
        domain: &str,
    ) -> Option<Result<PartnerEdge, PartnerError>> {
        super::park::taken(ctx, |a| match a {
            Answer::Partner(d, found) if d == domain => Ok(found),
            other => Err(Box::new(other)),
        })
    }

    fn park_lookup(
        &mut self,
        ctx: &mut Ctx,
        domain: &str,
        edge: Option<&str>,
        prove: Option<FlowId>,
    ) -> Partner {
        let token = self.next_id();
        self.lookups.push_back(Lookup {
            token,
            domain: domain.to_owned(),
            edge: edge.map(str::to_owned),
            prove,
        });
        ctx.waiting = Some((token, Then::Rerun));
        Partner::Waiting
    }

    /// A connection closed: its proofs go with it.
    pub(super) fn forget_proofs(&mut self, flow: FlowId) {
        self.proven.remove(&flow);
    }
}

/// Where a request for a partner goes: its Access Edge, over TLS.
pub(super) fn partner_target(found: &PartnerEdge) -> Target {
    Target {
        transport: Transport::Tls,
        addr: found.addr,
        flow: None,
    }
}
