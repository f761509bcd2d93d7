//! Our own responses: through the request's server transaction when it has one, else
//! statelessly; the To tag is stable across retransmissions.
use sip_proto::{HeaderName, Message, Writer};

use super::{Ctx, Engine, Now, Output};
use crate::routing::response_target;

impl Engine {
    /// Answers the request: through its server transaction when it has one, else statelessly.
    pub(super) fn respond(
        &mut self,
        now: Now,
        ctx: &Ctx,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) {
        self.respond_with(now, ctx, code, reason, extra, b"");
    }

    /// [`Engine::respond`] with a body (its Content-Type among `extra`).
    pub(super) fn respond_with(
        &mut self,
        now: Now,
        ctx: &Ctx,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) {
        let bytes = self.response_bytes_with(&ctx.msg, code, reason, extra, body);
        match ctx.key.as_deref() {
            Some(k) if self.server_tx.contains_key(k) => self.send_upstream(now, k, code, bytes),
            _ => {
                self.stats.response_sent(ctx.msg.method(), code);
                let via = ctx.msg.top_via().ok();
                self.out.push_back(Output {
                    target: response_target(via.as_ref(), &ctx.source),
                    bytes,
                });
            }
        }
    }

    pub(super) fn response_bytes(
        &self,
        req: &Message,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) -> Vec<u8> {
        self.response_bytes_with(req, code, reason, extra, b"")
    }

    fn response_bytes_with(
        &self,
        req: &Message,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut w = Writer::response_to(req, code, reason, &self.to_tag(req));
        for (n, v) in extra {
            w.header(n, v);
        }
        w.header("Server", &self.cfg.server_name);
        w.finish(body)
    }

    /// A To tag for our own responses, the same for every retransmission of a request, with
    /// this shard's mark (requests in the dialog it may make come back to this shard).
    pub(super) fn to_tag(&self, req: &Message) -> String {
        let mut h = self.tag_seed;
        for b in req.call_id().unwrap_or("").bytes().chain(
            req.raw_header(HeaderName::From)
                .unwrap_or(b"")
                .iter()
                .copied(),
        ) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:x}{}", self.mark())
    }
}
