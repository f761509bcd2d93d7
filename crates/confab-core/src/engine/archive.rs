//! Archiving and call records in the request path (`Processor::Archive`, after
//! authentication). A MESSAGE the archiving policy keeps becomes a record for the driver,
//! which appends it to the durable local queue before anything is sent on; in critical mode
//! the request parks until the archive database holds it, and is refused 503 when it cannot.
//! An INVITE starts a call record (`crate::cdr`), which the final response and the BYE
//! complete; sign-ins and sign-outs are recorded by the registrar. Only the first server of
//! the deployment that takes a request records it (not a peer it is forwarded to, nor a
//! spiral), so each message and call is kept once.

use std::sync::Arc;

use confab_archive::policy::{Party, Policies, SETTING};
use confab_archive::{Direction, Record};
use sip_proto::{HeaderName, Method};

use super::edge::Origin;
use super::park::{taken, Answer, Op, Then};
use super::{Ctx, Engine, Flow, Now};
use crate::cdr::Track;

/// A record for the driver: to the local queue, or, with a token, to the archive database at
/// once (critical mode), the answer going back to [`Engine::job_done`] as
/// [`super::Fetched::archived`].
#[derive(Debug)]
pub struct ArchiveItem {
    pub token: Option<u64>,
    pub record: Record,
}

/// The archiving document in force, shared by the shards.
pub(crate) type Handle = Arc<std::sync::RwLock<Arc<Policies>>>;

/// Bodies that are not messages a person wrote.
const NOT_ARCHIVED: &[&str] = &["application/im-iscomposing+xml"];

impl Engine {
    /// The next record for the driver.
    pub fn poll_archive(&mut self) -> Option<ArchiveItem> {
        self.archive_out.pop_front()
    }

    fn archiving(&self) -> Arc<Policies> {
        self.shared
            .archiving
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Calls whose record is not written yet (all shards').
    pub(super) fn call_log(&self) -> std::sync::MutexGuard<'_, crate::cdr::CallLog> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The processor.
    pub(super) fn archive(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let method = ctx.msg.method();
        if !matches!(method, Method::Message | Method::Invite) {
            return Flow::Continue;
        }
        if let Some(outcome) = taken(ctx, |a| match a {
            Answer::Archived(r) => Ok(r),
            other => Err(Box::new(other)),
        }) {
            return match outcome {
                Ok(()) => Flow::Continue,
                Err(e) => {
                    tracing::warn!(event = "archive.refused", error = %e, "critical archiving: a message the archive cannot take is not delivered");
                    self.respond(
                        now,
                        ctx,
                        503,
                        "Service Unavailable (archiving is critical and the archive cannot take the message now; it was not delivered)",
                        &[("Retry-After", "10".into())],
                    );
                    Flow::Stop
                }
            };
        }
        if ctx.trunk.is_none() && (self.is_own_spiral(&ctx.msg) || self.is_peer_forwarded(ctx)) {
            return Flow::Continue; // the server that took it first recorded it
        }
        match method {
            Method::Invite if !ctx.in_dialog => {
                self.track_call(now, ctx);
                Flow::Continue
            }
            Method::Message => self.archive_message(now, ctx),
            _ => Flow::Continue,
        }
    }

    fn archive_message(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let policies = self.archiving();
        if !policies.archives_anything() || ctx.msg.body().is_empty() {
            return Flow::Continue;
        }
        let content_type = ctx
            .msg
            .header_str(HeaderName::ContentType)
            .ok()
            .flatten()
            .unwrap_or("application/octet-stream")
            .trim()
            .to_owned();
        let bare = content_type.split(';').next().unwrap_or_default().trim();
        if NOT_ARCHIVED.iter().any(|t| bare.eq_ignore_ascii_case(t)) {
            return Flow::Continue;
        }
        let (Some(sender), Some(recipient)) = (from_aor(&ctx.msg), to_aor(&ctx.msg)) else {
            return Flow::Continue;
        };
        let direction = self.direction(ctx, &sender, &recipient);
        let site = |pool: Option<&str>| {
            let pool = pool?;
            self.cfg
                .pool_sites
                .iter()
                .find(|(p, _)| p == pool)
                .map(|(_, s)| s.as_str())
        };
        let mut parties = Vec::with_capacity(2);
        if self.serves_aor(&sender) {
            parties.push(Party {
                user: &sender,
                site: site(ctx.home_pool.as_deref()),
            });
        }
        if self.serves_aor(&recipient) {
            parties.push(Party {
                user: &recipient,
                site: None,
            });
        }
        let Some(days) = policies.retention(direction, &parties) else {
            return Flow::Continue;
        };
        let conversation = if ctx.in_dialog {
            ctx.msg.call_id().unwrap_or_default().to_owned()
        } else {
            let mut pair = [sender.as_str(), recipient.as_str()];
            pair.sort_unstable();
            format!("pair:{} {}", pair[0], pair[1])
        };
        let record = Record::Message(confab_archive::Message {
            id: self.record_id(),
            at_ms: now.unix_ms,
            sender: sender.clone(),
            recipients: vec![recipient.clone()],
            conversation,
            direction,
            content_type,
            body: ctx.msg.body().to_vec(),
            server: self.server_label(),
            keep_until: now.unix + i64::from(days) * 86_400,
        });
        if policies.critical {
            let token = self.next_id();
            self.archive_out.push_back(ArchiveItem {
                token: Some(token),
                record,
            });
            ctx.waiting = Some((token, Then::Rerun));
            return Flow::Stop;
        }
        self.archive_out.push_back(ArchiveItem {
            token: None,
            record,
        });
        Flow::Continue
    }

    fn direction(&self, ctx: &Ctx, sender: &str, recipient: &str) -> Direction {
        let outside = !self.serves_aor(sender) || !self.serves_aor(recipient);
        match &ctx.origin {
            Origin::Federated { .. } => Direction::Federated,
            _ if outside => Direction::Federated,
            Origin::Remote { .. } => Direction::Remote,
            Origin::Inside => Direction::Internal,
        }
    }

    fn serves_aor(&self, aor: &str) -> bool {
        aor.rsplit_once('@')
            .is_some_and(|(_, d)| self.cfg.serves_domain(d))
    }

    /// Unique across servers and restarts, and in arrival order within a shard.
    fn record_id(&mut self) -> String {
        let n = self.next_id();
        format!("{:016x}-{}-{n:012}", self.cfg.instance_seed, self.shard)
    }

    fn server_label(&self) -> String {
        if self.cfg.server_id.is_empty() {
            self.cfg.advertised_host.clone()
        } else {
            self.cfg.server_id.clone()
        }
    }

    /// An INVITE starting a call: noted until its final response.
    fn track_call(&mut self, now: Now, ctx: &Ctx) {
        let policies = self.archiving();
        let Some(key) = ctx.key.clone().filter(|_| policies.cdr) else {
            return;
        };
        let caller = from_aor(&ctx.msg).unwrap_or_default();
        let callee = to_aor(&ctx.msg)
            .or_else(|| Some(ctx.msg.uri_str().trim_start_matches("sip:").to_owned()))
            .unwrap_or_default();
        let track = Track {
            id: self.record_id(),
            call_id: ctx.msg.call_id().unwrap_or_default().to_owned(),
            caller,
            callee,
            caller_tag: ctx
                .msg
                .from()
                .ok()
                .and_then(|f| f.tag().map(str::to_owned))
                .unwrap_or_default(),
            start_ms: now.unix_ms,
            answer_ms: None,
            route: None,
            trunk: None,
            servers: vec![self.server_label()],
            keep_until: now.unix + i64::from(policies.cdr_retention_days) * 86_400,
        };
        self.call_log().start(key, track);
    }

    /// The caller of a tracked INVITE is sent a final response (`send_upstream`).
    pub(super) fn call_answered_or_failed(
        &mut self,
        now: Now,
        server_key: &str,
        code: u16,
        bytes: &[u8],
    ) {
        // every request's final response passes here: only an INVITE's can end a call
        if code < 200 || !server_key.ends_with("|INVITE") {
            return;
        }
        let reason = reason_phrase(bytes);
        let call = self
            .call_log()
            .final_response(server_key, code, &reason, now.unix_ms);
        if let Some(call) = call {
            self.archive_out.push_back(ArchiveItem {
                token: None,
                record: Record::Call(call),
            });
        }
    }

    /// A BYE passes: the call's record is complete.
    pub(super) fn call_hung_up(&mut self, now: Now, ctx: &Ctx) {
        let Ok(call_id) = ctx.msg.call_id() else {
            return;
        };
        let tag = ctx
            .msg
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        self.call_hung_up_by(now, call_id, &tag);
    }

    /// The side whose tag is `from_tag` ended call `call_id` (an application's BYE too).
    pub(super) fn call_hung_up_by(&mut self, now: Now, call_id: &str, from_tag: &str) {
        let call = self.call_log().bye(call_id, from_tag, now.unix_ms);
        if let Some(call) = call {
            self.archive_out.push_back(ArchiveItem {
                token: None,
                record: Record::Call(call),
            });
        }
    }

    /// A sign-in, sign-out or expiry of a device (when call records are kept).
    pub(super) fn record_registration(
        &mut self,
        now: Now,
        user: &str,
        event: &str,
        client: &str,
        address: &str,
    ) {
        let policies = self.archiving();
        if !policies.cdr {
            return;
        }
        let record = Record::Registration(confab_archive::Registration {
            id: self.record_id(),
            at_ms: now.unix_ms,
            user: user.to_owned(),
            event: event.to_owned(),
            client: client.to_owned(),
            address: address.to_owned(),
            server: self.server_label(),
            keep_until: now.unix + i64::from(policies.cdr_retention_days) * 86_400,
        });
        self.archive_out.push_back(ArchiveItem {
            token: None,
            record,
        });
    }

    /// Housekeeping: answered calls never hung up through here are written after 12 hours.
    pub(super) fn expire_calls(&mut self, now: Now) {
        let expired = self.call_log().expire(now.unix_ms);
        for call in expired {
            self.archive_out.push_back(ArchiveItem {
                token: None,
                record: Record::Call(call),
            });
        }
    }

    /// Housekeeping's read of the archiving document (an embedded database: inline).
    pub(super) fn read_archiving(&mut self) {
        let read =
            super::media_relay::setting_changed(self.store.as_ref(), SETTING, self.archiving_seen);
        self.archiving_read(read);
    }

    pub(super) fn archiving_op(&self) -> Op {
        Op::Setting(SETTING, self.archiving_seen)
    }

    pub(super) fn archiving_read(&mut self, read: confab_store::Result<Option<(u64, String)>>) {
        let seen = &mut self.archiving_seen;
        let Some(text) = super::media_relay::changed_setting(read, seen, SETTING) else {
            return;
        };
        match Policies::parse(&text) {
            Ok(p) => {
                tracing::info!(
                    event = "archive.policies",
                    critical = p.critical,
                    policies = p.policies.len(),
                    holds = p.holds.len(),
                    "archiving policies in force"
                );
                *self
                    .shared
                    .archiving
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(p);
            }
            Err(e) => {
                tracing::error!(event = "archive.policies_damaged", error = %e, "the stored archiving policies cannot be read; those in force stay (fix them with `confab archive policy`)");
            }
        }
    }
}

fn from_aor(msg: &sip_proto::Message) -> Option<String> {
    user_aor(msg.from().ok()?)
}

fn to_aor(msg: &sip_proto::Message) -> Option<String> {
    user_aor(msg.to().ok()?)
}

/// `user@host` of a name-addr with a SIP URI that names a user.
fn user_aor(na: sip_proto::header::NameAddr<'_>) -> Option<String> {
    na.uri
        .as_sip()
        .filter(|u| u.user.is_some())
        .map(|u| u.aor())
}

/// The reason phrase of a response's status line.
fn reason_phrase(bytes: &[u8]) -> String {
    let line = bytes.split(|b| *b == b'\r').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    text.splitn(3, ' ').nth(2).unwrap_or_default().to_owned()
}
