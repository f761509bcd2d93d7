//! The presence agent (RFC 3856 with RFC 3903 publication, RFC 6665 subscriptions, RFC 4662
//! lists, RFC 3857 watcher information), sans-IO: the engine hands it authenticated requests
//! already taken apart, registration and call changes, and the time; it answers with a status
//! and queues [`Notice`]s, which the engine turns into NOTIFY requests.
//!
//! One availability per user: every device's publication is kept (tuples and notes shown to
//! watchers) and the user's availability is the highest of them by [`Availability`]'s order; a
//! registered device that publishes nothing counts as Available; an established call through
//! the server counts as In a call; nothing at all is Offline.

mod pidf;
mod render;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use confab_store::{ContactEntry, Privacy, Store, Visibility};
use serde::{Deserialize, Serialize};
use sip_transport::FlowId;

pub use pidf::Availability;
use pidf::Document;
use render::{ListEntry, View, Watcher, PIDF_TYPE, WINFO_TYPE};

/// Reads a published PIDF document: the availability it states, or why it is refused (the
/// text of the 400 reason phrase).
pub fn read_pidf(body: &[u8]) -> Result<Availability, String> {
    pidf::parse(body).map(|d| d.availability())
}

/// Presence policy numbers.
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    /// Largest published document (bytes); larger is answered 413.
    pub max_body: usize,
    /// Shortest publication or subscription accepted (seconds); shorter is answered 423.
    pub min_expires: u32,
    /// Longest granted (seconds); longer requests are shortened.
    pub max_expires: u32,
    /// Granted when the request names none (RFC 3856 suggests 3600).
    pub default_expires: u32,
    /// Most subscriptions one user may hold at once.
    pub max_subscriptions: usize,
    /// New subscriptions per second one user may start, and the burst allowed above that.
    pub subscribe_rate: u32,
    pub subscribe_burst: u32,
    /// The organisation's domains: a watcher of another domain (a federated partner's user)
    /// is outside it, and sees a user's presence only from the user's contact list. Empty:
    /// every watcher is inside.
    pub domains: Vec<String>,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            max_body: 64 * 1024,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_subscriptions: 1000,
            subscribe_rate: 20,
            subscribe_burst: 200,
            domains: Vec::new(),
        }
    }
}

/// Why a request is refused: status, reason phrase, extra headers.
pub(crate) type Refusal = (u16, String, Vec<(&'static str, String)>);

fn refuse(code: u16, reason: impl Into<String>) -> Refusal {
    (code, reason.into(), Vec::new())
}

/// The notifier's side of a subscription dialog (RFC 6665 §4.2.1): what a NOTIFY needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Dialog {
    pub(crate) call_id: String,
    /// Our tag (the To tag of our 2xx).
    pub(crate) local_tag: String,
    pub(crate) remote_tag: String,
    /// The resource URI (To of the SUBSCRIBE).
    pub(crate) local_uri: String,
    /// The watcher's From URI.
    pub(crate) remote_uri: String,
    /// The watcher's Contact URI.
    pub(crate) remote_target: String,
    /// Record-Route values of the SUBSCRIBE, in order.
    pub(crate) route_set: Vec<String>,
    /// Our CSeq for the next NOTIFY.
    pub(crate) cseq: u32,
    pub(crate) remote_cseq: u32,
    /// The Event header value to send back (package and `id` parameter).
    pub(crate) event: String,
    pub(crate) transport: String,
    /// `ip:port` the SUBSCRIBE came from.
    pub(crate) source: String,
    #[serde(skip)]
    pub(crate) flow: Option<FlowId>,
}

impl Dialog {
    fn key(&self) -> String {
        dialog_key(&self.call_id, &self.local_tag, &self.remote_tag)
    }
}

/// How subscriptions are found from an in-dialog request.
pub(crate) fn dialog_key(call_id: &str, local_tag: &str, remote_tag: &str) -> String {
    format!("{call_id}\n{local_tag}\n{remote_tag}")
}

/// What is watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Resource {
    /// One user's presence.
    User(String),
    /// Every contact on the owner's list (RFC 4662).
    List(String),
    /// Who watches the user (RFC 3857).
    Winfo(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Subscription {
    id: u64,
    /// The watcher's `user@domain`.
    watcher: String,
    resource: Resource,
    expires_at: i64,
    dialog: Dialog,
    /// Version of the last list or watcher-information document.
    version: u32,
    /// Whether the last document sent showed the real state (false: polite Offline).
    #[serde(default)]
    shown: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Publication {
    etag: String,
    aor: String,
    expires_at: i64,
    /// The registered device it came from (binding key), when known.
    device: Option<String>,
    doc: Document,
    /// When it was last set, in the order of the server that took it (a device publishes at
    /// its home server): of one device's publications, the latest is its state.
    #[serde(default)]
    seq: u64,
}

/// Subscription-State of a NOTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubState {
    Active {
        expires: u32,
    },
    /// RFC 6665 §4.1.3 reason: timeout, noresource, rejected, deactivated.
    Terminated(&'static str),
}

/// A NOTIFY to send.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub(crate) sub: u64,
    pub(crate) dialog: Dialog,
    pub(crate) state: SubState,
    pub(crate) content_type: Arc<str>,
    pub(crate) body: Arc<str>,
}

/// A PUBLISH, taken apart.
pub(crate) struct PublishRequest<'a> {
    pub(crate) etag: Option<&'a str>,
    pub(crate) expires: Option<u32>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) body: &'a [u8],
    pub(crate) device: Option<String>,
}

/// A user's presence policy and list, cached from the store.
#[derive(Debug, Default)]
struct Policy {
    privacy: Privacy,
    list: Vec<ContactEntry>,
    contacts: HashSet<String>,
}

/// Counts, for the operator and the benchmark.
#[derive(Debug, Default, Clone, Copy)]
pub struct PresenceStats {
    pub publications: usize,
    pub subscriptions: usize,
    pub notices: u64,
}

/// The presence agent of one server.
pub(crate) struct Presence {
    cfg: PresenceConfig,
    pubs: HashMap<String, Vec<Publication>>,
    etags: HashMap<String, String>,
    subs: HashMap<u64, Subscription>,
    by_dialog: HashMap<String, u64>,
    /// Subscriptions whose documents show a user: direct ones and lists holding the user.
    watching: HashMap<String, HashSet<u64>>,
    winfo: HashMap<String, HashSet<u64>>,
    per_watcher: HashMap<String, usize>,
    buckets: HashMap<String, (f64, i64)>,
    policies: HashMap<String, Policy>,
    devices: HashMap<String, Vec<String>>,
    calls: HashMap<String, Vec<String>>,
    in_call: HashMap<String, u32>,
    /// The last view sent for each watched user.
    views: HashMap<String, View>,
    out: VecDeque<Notice>,
    next_sub: u64,
    next_etag: u64,
    etag_seed: u64,
    rev: i64,
    notices: u64,
    /// Other servers share the database: publications and registrations anywhere count, and
    /// local changes are announced in the change log (see `share`).
    shared: bool,
    /// The soft-state kind this server's subscriptions are saved under (`sub`, or
    /// `sub@host:port` when servers share the database: each restores only its own).
    sub_kind: String,
}

/// Whether `watcher` (an address of record) is a user of the organisation's domains.
fn inside(cfg: &PresenceConfig, watcher: &str) -> bool {
    cfg.domains.is_empty()
        || watcher
            .rsplit_once('@')
            .is_some_and(|(_, d)| cfg.domains.iter().any(|o| o.eq_ignore_ascii_case(d)))
}

/// How presence changes are told apart from user, list and privacy changes in the change log.
const PRESENCE_CHANGE: &str = "presence:";

impl Presence {
    pub(crate) fn new(cfg: PresenceConfig, seed: u64) -> Self {
        Self {
            cfg,
            pubs: HashMap::new(),
            etags: HashMap::new(),
            subs: HashMap::new(),
            by_dialog: HashMap::new(),
            watching: HashMap::new(),
            winfo: HashMap::new(),
            per_watcher: HashMap::new(),
            buckets: HashMap::new(),
            policies: HashMap::new(),
            devices: HashMap::new(),
            calls: HashMap::new(),
            in_call: HashMap::new(),
            views: HashMap::new(),
            out: VecDeque::new(),
            next_sub: 1,
            next_etag: 1,
            etag_seed: seed,
            rev: 0,
            notices: 0,
            shared: false,
            sub_kind: "sub".into(),
        }
    }

    /// Makes this agent one of several sharing the database, as `server` (`host:port`): it
    /// keeps its subscriptions apart, sees every server's publications and registrations, and
    /// announces its own changes (other servers pick them up within a housekeeping period).
    pub(crate) fn share(&mut self, server: &str) {
        self.shared = true;
        self.sub_kind = format!("sub@{server}");
    }

    pub(crate) fn stats(&self) -> PresenceStats {
        PresenceStats {
            publications: self.etags.len(),
            subscriptions: self.subs.len(),
            notices: self.notices,
        }
    }

    pub(crate) fn poll_notice(&mut self) -> Option<Notice> {
        self.out.pop_front()
    }

    /// Restores publications and subscriptions saved before a restart, and the registered
    /// devices, without notifying anyone (nothing changed for the watchers).
    pub(crate) fn restore(
        &mut self,
        store: &dyn Store,
        now: i64,
        devices: HashMap<String, Vec<String>>,
    ) {
        self.devices = devices;
        self.rev = store.changes_since(0).map(|(r, _)| r).unwrap_or(0);
        for (_, data) in store.states("pub", now, None).unwrap_or_default() {
            if let Ok(p) = serde_json::from_str::<Publication>(&data) {
                self.etags.insert(p.etag.clone(), p.aor.clone());
                self.pubs.entry(p.aor.clone()).or_default().push(p);
            }
        }
        for (_, data) in store.states(&self.sub_kind, now, None).unwrap_or_default() {
            if let Ok(mut s) = serde_json::from_str::<Subscription>(&data) {
                // NOTIFYs sent after the last save went unrecorded: jump ahead
                s.dialog.cseq = s.dialog.cseq.saturating_add(10_000);
                self.next_sub = self.next_sub.max(s.id + 1);
                self.index(store, &s);
                self.subs.insert(s.id, s);
            }
        }
        let watched: Vec<String> = self.watching.keys().cloned().collect();
        for aor in watched {
            let v = self.full_view(&aor);
            self.views.insert(aor, v);
        }
        tracing::info!(
            event = "presence.restored",
            publications = self.etags.len(),
            subscriptions = self.subs.len(),
            "presence restored from the store"
        );
    }

    // ---- PUBLISH (RFC 3903) ----

    /// Applies a PUBLISH by `aor` for itself; gives the entity tag and granted expiry.
    pub(crate) fn publish(
        &mut self,
        store: &dyn Store,
        now: i64,
        aor: &str,
        req: PublishRequest<'_>,
    ) -> Result<(String, u32), Refusal> {
        if req.body.len() > self.cfg.max_body {
            return Err(refuse(
                413,
                format!(
                    "Request Entity Too Large (presence document over {} bytes)",
                    self.cfg.max_body
                ),
            ));
        }
        let expires = self.grant(req.expires)?;
        let doc = if req.body.is_empty() {
            None
        } else {
            let ct = req.content_type.unwrap_or("");
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case(PIDF_TYPE) {
                return Err((
                    415,
                    format!("Unsupported Media Type ({mime} is not {PIDF_TYPE})"),
                    vec![("Accept", PIDF_TYPE.to_owned())],
                ));
            }
            let d = pidf::parse(req.body).map_err(|e| refuse(400, format!("Bad Request ({e})")))?;
            Some(d)
        };
        let etag = match req.etag {
            None => {
                let Some(doc) = doc else {
                    return Err(refuse(
                        400,
                        "Bad Request (an initial PUBLISH needs a presence document)",
                    ));
                };
                if expires == 0 {
                    return Err(refuse(
                        400,
                        "Bad Request (Expires: 0 without SIP-If-Match removes nothing)",
                    ));
                }
                let etag = self.new_etag();
                let p = Publication {
                    etag: etag.clone(),
                    aor: aor.to_owned(),
                    expires_at: now + i64::from(expires),
                    device: req.device,
                    doc,
                    seq: self.next_etag,
                };
                self.etags.insert(etag.clone(), aor.to_owned());
                save(store, "pub", &p.etag, aor, p.expires_at, &p);
                self.pubs.entry(aor.to_owned()).or_default().push(p);
                etag
            }
            Some(old) => {
                let found = self.etags.get(old).is_some_and(|a| a == aor);
                if !found {
                    return Err(refuse(
                        412,
                        "Conditional Request Failed (no publication with that entity tag)",
                    ));
                }
                self.etags.remove(old);
                let list = self.pubs.entry(aor.to_owned()).or_default();
                let Some(i) = list.iter().position(|p| p.etag == old) else {
                    return Err(refuse(412, "Conditional Request Failed"));
                };
                let _ = store.remove_state("pub", old);
                if expires == 0 {
                    list.remove(i);
                    if list.is_empty() {
                        self.pubs.remove(aor);
                    }
                    self.changed(store, now, aor);
                    return Ok((old.to_owned(), 0));
                }
                let etag = self.new_etag();
                let seq = self.next_etag;
                let list = self.pubs.entry(aor.to_owned()).or_default();
                let p = &mut list[i];
                p.etag = etag.clone();
                if doc.is_some() {
                    p.seq = seq;
                }
                p.expires_at = now + i64::from(expires);
                if let Some(d) = doc {
                    p.doc = d;
                }
                if req.device.is_some() {
                    p.device = req.device;
                }
                let p = p.clone();
                self.etags.insert(etag.clone(), aor.to_owned());
                save(store, "pub", &etag, aor, p.expires_at, &p);
                etag
            }
        };
        self.changed(store, now, aor);
        Ok((etag, expires))
    }

    fn new_etag(&mut self) -> String {
        self.next_etag += 1;
        let h = (self.etag_seed ^ self.next_etag).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        format!("{h:016x}{:x}", self.next_etag)
    }

    /// The granted lifetime for a requested one.
    fn grant(&self, asked: Option<u32>) -> Result<u32, Refusal> {
        match asked {
            None => Ok(self.cfg.default_expires),
            Some(0) => Ok(0),
            Some(e) if e < self.cfg.min_expires => Err((
                423,
                "Interval Too Brief".into(),
                vec![("Min-Expires", self.cfg.min_expires.to_string())],
            )),
            Some(e) => Ok(e.min(self.cfg.max_expires)),
        }
    }

    // ---- SUBSCRIBE (RFC 6665) ----

    /// Starts a subscription by `watcher` (authenticated) to `resource`; queues the first
    /// NOTIFY. Gives the subscription id and the granted expiry (0: a one-time fetch).
    pub(crate) fn subscribe(
        &mut self,
        store: &dyn Store,
        now: i64,
        watcher: &str,
        resource: Resource,
        dialog: Dialog,
        expires: Option<u32>,
    ) -> Result<(u64, u32), Refusal> {
        let expires = self.grant(expires)?;
        if expires > 0 {
            let held = self.per_watcher.get(watcher).copied().unwrap_or(0);
            if held >= self.cfg.max_subscriptions {
                return Err(refuse(
                    403,
                    format!(
                        "Forbidden (subscription limit reached: at most {} per user)",
                        self.cfg.max_subscriptions
                    ),
                ));
            }
        }
        if !self.take_token(watcher, now) {
            return Err((
                503,
                format!("Service Unavailable (too many new subscriptions from {watcher})"),
                vec![("Retry-After", "5".to_owned())],
            ));
        }
        let id = self.next_sub;
        self.next_sub += 1;
        let mut s = Subscription {
            id,
            watcher: watcher.to_owned(),
            resource,
            expires_at: now + i64::from(expires),
            dialog,
            version: 0,
            shown: true,
        };
        if self.shared {
            // users not watched here yet may have changed at other servers unseen
            for aor in self.watched(store, &s.resource) {
                if !self.watching.contains_key(&aor) {
                    self.load(store, now, &aor);
                }
            }
        }
        if expires == 0 {
            // a fetch: current state in a terminating NOTIFY, nothing kept
            self.full_notice(store, now, &mut s, SubState::Terminated("timeout"));
            return Ok((id, 0));
        }
        self.index(store, &s);
        let st = active(&s, now);
        self.full_notice(store, now, &mut s, st);
        save(
            store,
            &self.sub_kind,
            &id.to_string(),
            watcher,
            s.expires_at,
            &s,
        );
        let watched = self.watched(store, &s.resource);
        self.subs.insert(id, s);
        for aor in watched {
            self.winfo_changed(store, now, &aor);
        }
        Ok((id, expires))
    }

    /// Whether an in-dialog request belongs to one of our subscriptions.
    pub(crate) fn has_dialog(&self, key: &str) -> bool {
        self.by_dialog.contains_key(key)
    }

    /// A SUBSCRIBE inside an existing subscription: refresh, or unsubscribe with Expires: 0.
    /// Queues a NOTIFY with the current state either way (RFC 6665 §4.2.1.2).
    pub(crate) fn resubscribe(
        &mut self,
        store: &dyn Store,
        now: i64,
        key: &str,
        cseq: u32,
        expires: Option<u32>,
        contact: Option<String>,
    ) -> Result<u32, Refusal> {
        let Some(&id) = self.by_dialog.get(key) else {
            return Err(refuse(
                481,
                "Subscription Does Not Exist (it expired or was terminated)",
            ));
        };
        let expires = self.grant(expires)?;
        let Some(s) = self.subs.get_mut(&id) else {
            return Err(refuse(481, "Subscription Does Not Exist"));
        };
        if cseq <= s.dialog.remote_cseq {
            return Err(refuse(500, "Server Internal Error (CSeq out of order)"));
        }
        s.dialog.remote_cseq = cseq;
        if let Some(c) = contact {
            s.dialog.remote_target = c;
        }
        if expires == 0 {
            self.terminate(store, now, id, "timeout");
            return Ok(0);
        }
        s.expires_at = now + i64::from(expires);
        let mut s = s.clone();
        let st = active(&s, now);
        self.full_notice(store, now, &mut s, st);
        save(
            store,
            &self.sub_kind,
            &id.to_string(),
            &s.watcher,
            s.expires_at,
            &s,
        );
        self.subs.insert(id, s);
        Ok(expires)
    }

    /// A NOTIFY was answered 481 or timed out: the watcher is gone (RFC 6665 §4.2.2).
    pub(crate) fn notify_failed(&mut self, store: &dyn Store, now: i64, sub: u64) {
        if let Some(s) = self.remove_sub(store, sub) {
            tracing::info!(event = "presence.subscription_dropped", watcher = %s.watcher, "NOTIFY failed; subscription removed");
            self.after_removal(store, now, &s);
        }
    }

    // ---- what changes a user's presence ----

    /// The user's registered devices are now `keys`: publications of devices gone drop out.
    pub(crate) fn devices_changed(
        &mut self,
        store: &dyn Store,
        now: i64,
        aor: &str,
        keys: Vec<String>,
    ) {
        if let Some(list) = self.pubs.get_mut(aor) {
            let mut dropped = Vec::new();
            list.retain(|p| {
                let keep = p.device.as_ref().is_none_or(|d| keys.contains(d));
                if !keep {
                    dropped.push(p.etag.clone());
                }
                keep
            });
            for e in dropped {
                self.etags.remove(&e);
                let _ = store.remove_state("pub", &e);
            }
        }
        if keys.is_empty() {
            self.devices.remove(aor);
        } else {
            self.devices.insert(aor.to_owned(), keys);
        }
        self.changed(store, now, aor);
    }

    /// A call between `aors` was answered.
    pub(crate) fn call_started(
        &mut self,
        store: &dyn Store,
        now: i64,
        call_id: &str,
        aors: Vec<String>,
    ) {
        if self.calls.contains_key(call_id) || aors.is_empty() {
            return;
        }
        for a in &aors {
            *self.in_call.entry(a.clone()).or_default() += 1;
        }
        self.calls.insert(call_id.to_owned(), aors.clone());
        for a in aors {
            self.changed(store, now, &a);
        }
    }

    /// The call ended (BYE).
    pub(crate) fn call_ended(&mut self, store: &dyn Store, now: i64, call_id: &str) {
        let Some(aors) = self.calls.remove(call_id) else {
            return;
        };
        for a in &aors {
            if let Some(n) = self.in_call.get_mut(a) {
                *n -= 1;
                if *n == 0 {
                    self.in_call.remove(a);
                }
            }
        }
        for a in aors {
            self.changed(store, now, &a);
        }
    }

    /// Expires publications and subscriptions; picks up contact-list, privacy and user changes
    /// made by other processes, and returns the users that changed. (The engine makes the two
    /// steps apart, so that the change log can be read off its thread.)
    #[cfg(test)]
    pub(crate) fn housekeeping(&mut self, store: &dyn Store, now: i64) -> Vec<String> {
        self.expire(store, now);
        let changes = store.changes_since(self.rev);
        self.apply_changes(store, now, changes)
    }

    /// The change-log revision seen last (read what came after it).
    pub(crate) fn rev(&self) -> i64 {
        self.rev
    }

    /// Expires publications and subscriptions.
    pub(crate) fn expire(&mut self, store: &dyn Store, now: i64) {
        let mut touched = Vec::new();
        for (aor, list) in &mut self.pubs {
            list.retain(|p| {
                let keep = p.expires_at > now;
                if !keep {
                    self.etags.remove(&p.etag);
                    touched.push(aor.clone());
                }
                keep
            });
        }
        self.pubs.retain(|_, l| !l.is_empty());
        touched.dedup();
        for aor in touched {
            self.changed(store, now, &aor);
        }
        let expired: Vec<u64> = self
            .subs
            .values()
            .filter(|s| s.expires_at <= now)
            .map(|s| s.id)
            .collect();
        for id in expired {
            self.terminate(store, now, id, "timeout");
        }
    }

    /// Applies what the change log said since [`Self::rev`] (contact lists, privacy, users,
    /// and presence changed at other servers); returns the users that changed.
    pub(crate) fn apply_changes(
        &mut self,
        store: &dyn Store,
        now: i64,
        changes: confab_store::Result<(i64, Vec<String>)>,
    ) -> Vec<String> {
        match changes {
            Ok((rev, _)) if rev < self.rev => Vec::new(), // an older read answered late
            Ok((rev, entries)) => {
                self.rev = rev;
                let mut users = Vec::new();
                for entry in entries {
                    match entry.strip_prefix(PRESENCE_CHANGE) {
                        Some(aor) if self.shared => self.reload(store, now, aor),
                        Some(_) => {}
                        None => {
                            self.policy_changed(store, now, &entry);
                            users.push(entry);
                        }
                    }
                }
                users
            }
            Err(e) => {
                tracing::error!(event = "store.error", error = %e, "could not read changes");
                Vec::new()
            }
        }
    }

    /// `aor`'s availability as its permitted watchers see it.
    pub(crate) fn availability(&self, aor: &str) -> Availability {
        self.full_view(aor).availability
    }

    // ---- internals ----

    /// The user's presence as its permitted watchers see it.
    fn full_view(&self, aor: &str) -> View {
        let mut best: Option<(Availability, Option<String>)> = None;
        let mut tuples = Vec::new();
        let mut covered: Vec<&str> = Vec::new();
        let mut consider = |a: Availability, note: Option<String>| {
            if best.as_ref().is_none_or(|(b, _)| a > *b) {
                best = Some((a, note));
            }
        };
        let pubs = self.pubs.get(aor).map_or(&[][..], Vec::as_slice);
        // a device that published twice (a client that raced its own first PUBLISH) is in the
        // state it set last
        let superseded = |p: &Publication| {
            p.device.is_some() && pubs.iter().any(|q| q.device == p.device && q.seq > p.seq)
        };
        for (i, p) in pubs.iter().enumerate() {
            if superseded(p) {
                continue;
            }
            consider(p.doc.availability(), p.doc.note.clone());
            if let Some(d) = &p.device {
                covered.push(d);
            }
            for t in &p.doc.tuples {
                let mut t = t.clone();
                t.id = format!("d{i}-{}", t.id);
                tuples.push(t);
            }
        }
        let silent_device = self
            .devices
            .get(aor)
            .is_some_and(|keys| keys.iter().any(|k| !covered.contains(&k.as_str())));
        if silent_device {
            consider(Availability::Available, None);
        }
        if self.in_call.contains_key(aor) {
            consider(Availability::InACall, None);
        }
        match best {
            Some((availability, note)) if availability != Availability::Offline => View {
                availability,
                tuples,
                note,
            },
            _ => View::offline(),
        }
    }

    /// Whether `watcher` may see `aor`'s presence: not blocked, and on the list when the user
    /// shows presence to contacts only or the watcher is outside the organisation (a partner's
    /// user). A user always sees itself.
    fn permits(&mut self, store: &dyn Store, aor: &str, watcher: &str) -> Permission {
        if aor == watcher {
            return Permission::Yes;
        }
        let outside = !inside(&self.cfg, watcher);
        let p = self.policy(store, aor);
        if p.privacy.blocked.iter().any(|b| b == watcher) {
            Permission::Blocked
        } else if (p.privacy.visibility == Visibility::Contacts || outside)
            && !p.contacts.contains(watcher)
        {
            Permission::NotAContact
        } else {
            Permission::Yes
        }
    }

    fn policy(&mut self, store: &dyn Store, aor: &str) -> &Policy {
        self.policies.entry(aor.to_owned()).or_insert_with(|| {
            let privacy = store.privacy(aor).unwrap_or_default();
            let list = store.contacts(aor).unwrap_or_default();
            let contacts = list.iter().map(|c| c.aor.clone()).collect();
            Policy {
                privacy,
                list,
                contacts,
            }
        })
    }

    /// Adds a subscription to the indexes.
    fn index(&mut self, store: &dyn Store, s: &Subscription) {
        self.by_dialog.insert(s.dialog.key(), s.id);
        *self.per_watcher.entry(s.watcher.clone()).or_default() += 1;
        if let Resource::Winfo(aor) = &s.resource {
            self.winfo.entry(aor.clone()).or_default().insert(s.id);
        }
        for aor in self.watched(store, &s.resource) {
            self.watching.entry(aor).or_default().insert(s.id);
        }
    }

    fn remove_sub(&mut self, store: &dyn Store, id: u64) -> Option<Subscription> {
        let s = self.subs.remove(&id)?;
        self.by_dialog.remove(&s.dialog.key());
        if let Some(n) = self.per_watcher.get_mut(&s.watcher) {
            *n -= 1;
            if *n == 0 {
                self.per_watcher.remove(&s.watcher);
            }
        }
        let index = match &s.resource {
            Resource::Winfo(_) => &mut self.winfo,
            _ => &mut self.watching,
        };
        index.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
        let _ = store.remove_state(&self.sub_kind, &id.to_string());
        Some(s)
    }

    /// Ends a subscription with a final NOTIFY giving `reason`.
    fn terminate(&mut self, store: &dyn Store, now: i64, id: u64, reason: &'static str) {
        let Some(mut s) = self.remove_sub(store, id) else {
            return;
        };
        self.full_notice(store, now, &mut s, SubState::Terminated(reason));
        self.after_removal(store, now, &s);
    }

    /// The users whose presence a subscription to `resource` shows.
    fn watched(&mut self, store: &dyn Store, resource: &Resource) -> Vec<String> {
        match resource {
            Resource::User(aor) => vec![aor.clone()],
            Resource::List(owner) => self
                .policy(store, owner)
                .list
                .iter()
                .map(|c| c.aor.clone())
                .collect(),
            Resource::Winfo(_) => Vec::new(),
        }
    }

    /// Watcher information of the users `s` watched changed.
    fn after_removal(&mut self, store: &dyn Store, now: i64, s: &Subscription) {
        for aor in self.watched(store, &s.resource) {
            self.winfo_changed(store, now, &aor);
        }
    }

    /// Something about `aor` may have changed: notify its watchers if what they see did.
    /// `aor`'s presence changed on this server: watchers here are told now, other servers
    /// through the change log.
    fn changed(&mut self, store: &dyn Store, now: i64, aor: &str) {
        if self.shared {
            if let Err(e) = store.note_change(&format!("{PRESENCE_CHANGE}{aor}")) {
                tracing::warn!(event = "store.error", error = %e, user = %aor, "other servers will not hear of this presence change");
            }
        }
        self.notify_if_changed(store, now, aor);
    }

    /// Another server changed `aor`'s presence: its publications and devices are read again
    /// from the store, and watchers here are told when what they see changed.
    fn reload(&mut self, store: &dyn Store, now: i64, aor: &str) {
        if !self.watching.contains_key(aor) && !self.pubs.contains_key(aor) {
            return; // nobody here watches; nothing here to refresh
        }
        self.load(store, now, aor);
        self.notify_if_changed(store, now, aor);
    }

    /// Reads `aor`'s publications and devices (at every server) from the store; a database
    /// failure keeps what is known.
    fn load(&mut self, store: &dyn Store, now: i64, aor: &str) {
        let (Ok(pubs), Ok(bindings)) = (
            store.states("pub", now, Some(aor)),
            store.bindings(now, Some(aor)),
        ) else {
            return;
        };
        for p in self.pubs.remove(aor).unwrap_or_default() {
            self.etags.remove(&p.etag);
        }
        for (_, data) in pubs {
            if let Ok(p) = serde_json::from_str::<Publication>(&data) {
                self.etags.insert(p.etag.clone(), aor.to_owned());
                self.pubs.entry(aor.to_owned()).or_default().push(p);
            }
        }
        let keys: Vec<String> = bindings.into_iter().map(|b| b.key).collect();
        if keys.is_empty() {
            self.devices.remove(aor);
        } else {
            self.devices.insert(aor.to_owned(), keys);
        }
    }

    fn notify_if_changed(&mut self, store: &dyn Store, now: i64, aor: &str) {
        let Some(ids) = self.watching.get(aor) else {
            self.views.remove(aor);
            return;
        };
        let view = self.full_view(aor);
        if self.views.get(aor) == Some(&view) {
            return;
        }
        self.views.insert(aor.to_owned(), view.clone());
        let ids: Vec<u64> = ids.iter().copied().collect();
        self.notify_watchers(store, now, aor, &view, &ids);
    }

    /// Sends `aor`'s view to the subscriptions `ids` (each filtered by privacy). The document
    /// is rendered once per distinct view, not once per watcher.
    fn notify_watchers(
        &mut self,
        store: &dyn Store,
        now: i64,
        aor: &str,
        view: &View,
        ids: &[u64],
    ) {
        let entity = format!("sip:{aor}");
        let mut shown_body: Option<Arc<str>> = None;
        let mut hidden_body: Option<Arc<str>> = None;
        let pidf_type: Arc<str> = Arc::from(PIDF_TYPE);
        for &id in ids {
            let Some(s) = self.subs.get(&id) else {
                continue;
            };
            let watcher = s.watcher.clone();
            let permitted = self.permits(store, aor, &watcher) == Permission::Yes;
            tracing::debug!(event = "presence.notify", user = %aor, %watcher, shown = ?view.availability, permitted);
            let Some(s) = self.subs.get_mut(&id) else {
                continue;
            };
            let state = active(s, now);
            match s.resource.clone() {
                Resource::User(_) => {
                    s.shown = permitted;
                    let body = if permitted {
                        shown_body.get_or_insert_with(|| Arc::from(render::pidf(&entity, view)))
                    } else {
                        hidden_body.get_or_insert_with(|| {
                            Arc::from(render::pidf(&entity, &View::offline()))
                        })
                    };
                    let body = body.clone();
                    let n = notice(s, state, pidf_type.clone(), body);
                    self.push(n);
                }
                Resource::List(owner) => {
                    let groups = self
                        .policy(store, &owner)
                        .list
                        .iter()
                        .find(|c| c.aor == aor)
                        .map(|c| c.groups.clone())
                        .unwrap_or_default();
                    let Some(s) = self.subs.get_mut(&id) else {
                        continue;
                    };
                    let entry = ListEntry {
                        uri: entity.clone(),
                        groups: &groups,
                        view: if permitted {
                            view.clone()
                        } else {
                            View::offline()
                        },
                    };
                    s.version += 1;
                    let (ct, body) = render::rlmi(
                        &list_uri(&owner),
                        s.version,
                        false,
                        &[entry],
                        id ^ u64::from(s.version),
                    );
                    let n = notice(s, state, Arc::from(ct), Arc::from(body));
                    self.push(n);
                }
                Resource::Winfo(_) => {}
            }
        }
    }

    /// Queues a full-state NOTIFY for `s` in `state`.
    fn full_notice(&mut self, store: &dyn Store, now: i64, s: &mut Subscription, state: SubState) {
        let (ct, body): (String, String) = match s.resource.clone() {
            Resource::User(aor) => {
                let permitted = self.permits(store, &aor, &s.watcher) == Permission::Yes;
                s.shown = permitted;
                let view = if permitted && state != SubState::Terminated("noresource") {
                    self.full_view(&aor)
                } else {
                    View::offline()
                };
                (
                    PIDF_TYPE.to_owned(),
                    render::pidf(&format!("sip:{aor}"), &view),
                )
            }
            Resource::List(owner) => {
                let list = self.policy(store, &owner).list.clone();
                let mut entries = Vec::with_capacity(list.len());
                for c in &list {
                    let permitted = self.permits(store, &c.aor, &s.watcher) == Permission::Yes;
                    entries.push(ListEntry {
                        uri: format!("sip:{}", c.aor),
                        groups: &c.groups,
                        view: if permitted {
                            self.full_view(&c.aor)
                        } else {
                            View::offline()
                        },
                    });
                }
                s.version += 1;
                render::rlmi(
                    &list_uri(&owner),
                    s.version,
                    true,
                    &entries,
                    s.id ^ u64::from(s.version) ^ (now as u64),
                )
            }
            Resource::Winfo(aor) => {
                s.version += 1;
                (WINFO_TYPE.to_owned(), self.winfo_doc(&aor, s.version))
            }
        };
        let n = notice(s, state, Arc::from(ct), Arc::from(body));
        self.push(n);
    }

    fn winfo_doc(&self, aor: &str, version: u32) -> String {
        let mut ws: Vec<Watcher<'_>> = self
            .watching
            .get(aor)
            .into_iter()
            .flatten()
            .filter_map(|id| self.subs.get(id))
            .map(|s| Watcher {
                id: s.id,
                uri: &s.dialog.remote_uri,
            })
            .collect();
        ws.sort_by_key(|w| w.id);
        render::watcherinfo(&format!("sip:{aor}"), version, &ws)
    }

    /// The set of `aor`'s watchers changed: tell its watcher-information subscribers.
    fn winfo_changed(&mut self, _store: &dyn Store, now: i64, aor: &str) {
        let Some(ids) = self.winfo.get(aor) else {
            return;
        };
        let ids: Vec<u64> = ids.iter().copied().collect();
        for id in ids {
            let Some(mut s) = self.subs.remove(&id) else {
                continue;
            };
            s.version += 1;
            let body = self.winfo_doc(aor, s.version);
            let st = active(&s, now);
            let n = notice(&mut s, st, Arc::from(WINFO_TYPE), Arc::from(body));
            self.subs.insert(id, s);
            self.push(n);
        }
    }

    /// `aor`'s user, contact list or privacy changed in the store.
    fn policy_changed(&mut self, store: &dyn Store, now: i64, aor: &str) {
        self.policies.remove(aor);
        let exists = store.user(aor).map(|u| u.is_some()).unwrap_or(true);
        if !exists {
            self.user_removed(store, now, aor);
            return;
        }
        // lists owned by `aor`: new membership, full state
        let lists: Vec<u64> = self
            .subs
            .values()
            .filter(|s| s.resource == Resource::List(aor.to_owned()))
            .map(|s| s.id)
            .collect();
        for id in lists {
            let Some(mut s) = self.remove_sub(store, id) else {
                continue;
            };
            self.index(store, &s);
            let st = active(&s, now);
            self.full_notice(store, now, &mut s, st);
            save(
                store,
                &self.sub_kind,
                &id.to_string(),
                &s.watcher.clone(),
                s.expires_at,
                &s,
            );
            self.subs.insert(id, s);
        }
        // watchers of `aor`: permission may have changed
        let ids: Vec<u64> = self
            .watching
            .get(aor)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for id in ids {
            let Some(s) = self.subs.get(&id) else {
                continue;
            };
            let (watcher, direct, shown) = (
                s.watcher.clone(),
                matches!(s.resource, Resource::User(_)),
                s.shown,
            );
            match self.permits(store, aor, &watcher) {
                Permission::NotAContact if direct && shown => {
                    tracing::info!(event = "presence.rejected", user = %aor, watcher = %watcher, "policy no longer permits this watcher");
                    self.terminate(store, now, id, "rejected");
                }
                _ => {
                    let view = self.full_view(aor);
                    self.notify_watchers(store, now, aor, &view, &[id]);
                }
            }
        }
    }

    fn user_removed(&mut self, store: &dyn Store, now: i64, aor: &str) {
        for p in self.pubs.remove(aor).unwrap_or_default() {
            self.etags.remove(&p.etag);
        }
        self.devices.remove(aor);
        let ids: Vec<(u64, &'static str)> = self
            .subs
            .values()
            .filter_map(|s| match &s.resource {
                Resource::User(a) | Resource::Winfo(a) if a == aor => Some((s.id, "noresource")),
                Resource::List(a) if a == aor => Some((s.id, "noresource")),
                _ if s.watcher == aor => Some((s.id, "rejected")),
                _ => None,
            })
            .collect();
        for (id, reason) in ids {
            self.terminate(store, now, id, reason);
        }
        self.changed(store, now, aor);
    }

    /// One token from the watcher's bucket of new subscriptions.
    fn take_token(&mut self, watcher: &str, now: i64) -> bool {
        let (rate, burst) = (
            f64::from(self.cfg.subscribe_rate),
            f64::from(self.cfg.subscribe_burst),
        );
        if self.buckets.len() > 100_000 {
            self.buckets
                .retain(|_, (t, last)| *t + (now - *last) as f64 * rate < burst);
        }
        let (tokens, last) = self
            .buckets
            .entry(watcher.to_owned())
            .or_insert((burst, now));
        *tokens = (*tokens + (now - *last).max(0) as f64 * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn push(&mut self, n: Notice) {
        self.notices += 1;
        self.out.push_back(n);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permission {
    Yes,
    Blocked,
    NotAContact,
}

/// The list URI of an owner: `sip:<user>+contacts@<domain>`.
pub(crate) fn list_uri(owner: &str) -> String {
    match owner.split_once('@') {
        Some((u, d)) => format!("sip:{u}+contacts@{d}"),
        None => format!("sip:{owner}"),
    }
}

/// The owner of a list user part (`alice+contacts` → `alice`).
pub(crate) fn list_owner_user(user: &str) -> Option<&str> {
    user.strip_suffix("+contacts").filter(|u| !u.is_empty())
}

fn active(s: &Subscription, now: i64) -> SubState {
    SubState::Active {
        expires: u32::try_from((s.expires_at - now).max(0)).unwrap_or(u32::MAX),
    }
}

/// A NOTIFY for `s`, taking the next CSeq.
fn notice(s: &mut Subscription, state: SubState, content_type: Arc<str>, body: Arc<str>) -> Notice {
    s.dialog.cseq += 1;
    Notice {
        sub: s.id,
        dialog: s.dialog.clone(),
        state,
        content_type,
        body,
    }
}

fn save<T: Serialize>(store: &dyn Store, kind: &str, key: &str, aor: &str, expires_at: i64, v: &T) {
    match serde_json::to_string(v) {
        Ok(data) => {
            if let Err(e) = store.save_state(kind, key, aor, expires_at, &data) {
                tracing::error!(event = "store.error", error = %e, kind, "could not save presence state");
            }
        }
        Err(e) => tracing::error!(event = "presence.encode", error = %e),
    }
}

#[cfg(test)]
mod tests;
