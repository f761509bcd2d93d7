//! What one REGISTER would change, decided before anything changes (RFC 3261 §10.3: Contact
//! and expiry checks, CSeq order, instance and reg-id keys, write-through or write-back), and
//! how a refusal is said.

use confab_store::{Binding, Store};
use sip_proto::header::{ContactValue, NameAddr};
use sip_proto::{HeaderName, Message};
use sip_transport::{FlowId, Source};

use super::{Location, WRITE_BACK_MARGIN};
use crate::config::EngineConfig;

/// What one REGISTER changes: decided first ([`Location::plan`]), written to the store
/// ([`Change::write`], which may run off the engine), then taken into memory
/// ([`Location::apply`]). Memory changes only after the store took the change, so a database
/// outage leaves the live bindings as they were.
#[derive(Debug)]
pub(crate) struct Change {
    pub(super) aor: String,
    pub(super) flow: Option<FlowId>,
    /// Bindings removed (Expires 0, or `*`), by key.
    pub(super) removes: Vec<String>,
    /// New, moved or changed bindings: saved before the 200 OK.
    pub(super) saves: Vec<Binding>,
    /// Refreshes that move only the expiry, with the expiry the store holds: written back
    /// later.
    pub(super) refreshes: Vec<(Binding, i64)>,
    /// Devices that arrived (new, or reached at another address): their addresses, for the
    /// sign-in records.
    pub(super) arrived: Vec<String>,
}

impl Change {
    pub(crate) fn aor(&self) -> &str {
        &self.aor
    }

    /// What call records say of it: `sign-in` with its address per arriving device, and
    /// `sign-out` per device leaving (from where the REGISTER came).
    pub(crate) fn sign_ins_and_outs(&self) -> Vec<(&'static str, Option<String>)> {
        let ins = self.arrived.iter().map(|a| ("sign-in", Some(a.clone())));
        ins.chain(self.removes.iter().map(|_| ("sign-out", None)))
            .collect()
    }

    /// Whether the store must take this change before the REGISTER is answered.
    pub(crate) fn writes_through(&self) -> bool {
        !self.removes.is_empty() || !self.saves.is_empty()
    }

    /// Writes what must be stored before the 200 OK.
    pub(crate) fn write(&self, store: &dyn Store) -> confab_store::Result<()> {
        for key in &self.removes {
            store.remove_binding(&self.aor, key)?;
        }
        match self.saves.as_slice() {
            [] => Ok(()),
            [one] => store.save_binding(one),
            many => store.save_bindings(many),
        }
    }
}

/// Why a REGISTER was refused: status, reason phrase, extra header.
pub(crate) type Refusal = (u16, String, Option<(&'static str, String)>);

impl Location {
    /// What a REGISTER for `aor` (already authenticated) would change, decided before
    /// anything changes; or why it is refused.
    pub(crate) fn plan(
        &self,
        cfg: &EngineConfig,
        req: &Message,
        aor: &str,
        source: &Source,
        now: i64,
    ) -> Result<Change, Refusal> {
        let bad = |r: &str| (400, r.to_owned(), None);
        let contacts = req.contacts().map_err(|e| bad(&e.to_string()))?;
        let header_expires = req.expires().map_err(|e| bad(&e.to_string()))?;
        let call_id = req.call_id().map_err(|e| bad(&e.to_string()))?.to_owned();
        let cseq = req.cseq().map_err(|e| bad(&e.to_string()))?.seq;
        let outbound_ok = req
            .values(HeaderName::Supported)
            .chain(req.values(HeaderName::Require))
            .any(|v| v.is_ok_and(|v| v.eq_ignore_ascii_case("outbound")));
        let mut change = Change {
            aor: aor.to_owned(),
            flow: source.flow,
            removes: Vec::new(),
            saves: Vec::new(),
            refreshes: Vec::new(),
            arrived: Vec::new(),
        };
        if contacts.iter().any(|c| matches!(c, ContactValue::Star)) {
            // RFC 3261 §10.3 step 6: `*` only alone and with Expires: 0
            if contacts.len() != 1 || header_expires != Some(0) {
                return Err(bad("Contact * requires Expires: 0 and no other Contact"));
            }
            change.removes = self
                .lookup(aor)
                .iter()
                .filter(|b| !(b.rec.call_id == call_id && b.rec.cseq >= cseq))
                .map(|b| b.rec.key.clone())
                .collect();
            return Ok(change);
        }
        let path: Vec<String> = req
            .values(HeaderName::Path)
            .filter_map(Result::ok)
            .map(str::to_owned)
            .collect();
        for c in &contacts {
            let ContactValue::Addr(na) = c else {
                unreachable!("star handled above")
            };
            let expires = match na.param("expires") {
                Some(v) => sip_proto::header::parse_delta_seconds(v.unwrap_or(""), "Contact")
                    .map_err(|e| bad(&e.to_string()))?,
                None => header_expires.unwrap_or(cfg.default_expires),
            };
            if expires != 0 && expires < cfg.min_expires {
                return Err((
                    423,
                    "Interval Too Brief".into(),
                    Some(("Min-Expires", cfg.min_expires.to_string())),
                ));
            }
            if let Some(q) = na.param("q") {
                if !q
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| (0.0..=1.0).contains(&q))
                {
                    return Err(bad("Invalid q-value in Contact"));
                }
            }
            let key = binding_key(na, outbound_ok);
            let old = self.lookup(aor).iter().find(|b| b.rec.key == key);
            if old.is_some_and(|old| old.rec.call_id == call_id && old.rec.cseq >= cseq) {
                return Err((
                    500,
                    "Out-of-order REGISTER (CSeq not above the last one)".into(),
                    None,
                ));
            }
            if expires == 0 {
                change.removes.push(key);
                continue;
            }
            let rec = Binding {
                aor: aor.to_owned(),
                outbound: key.starts_with("outbound|"),
                key,
                contact: na.uri_text.to_owned(),
                params: echo_params(na),
                expires_at: now + i64::from(expires.min(cfg.max_expires)),
                call_id: call_id.clone(),
                cseq,
                path: path.clone(),
                transport: source.transport.param().to_owned(),
                source: source.remote.to_string(),
                server: cfg.server_id.clone(),
            };
            if old.is_none_or(|old| !only_expiry_moved(&old.rec, &rec)) {
                change.arrived.push(rec.source.clone());
            }
            // a refresh that moves only the expiry is written back later, unless the stored
            // copy is close to its end
            match old.filter(|old| {
                only_expiry_moved(&old.rec, &rec) && old.stored_expires - now >= WRITE_BACK_MARGIN
            }) {
                Some(old) => change.refreshes.push((rec, old.stored_expires)),
                None => change.saves.push(rec),
            }
        }
        Ok(change)
    }
}

/// Whether `new` differs from `old` only in what a refresh changes (expiry, CSeq, Call-ID)
/// and not in where the device is reached, and its expiry moved later.
fn only_expiry_moved(old: &Binding, new: &Binding) -> bool {
    new.expires_at >= old.expires_at
        && (&old.contact, &old.params, &old.path, &old.transport)
            == (&new.contact, &new.params, &new.path, &new.transport)
        && (&old.source, old.outbound, &old.server) == (&new.source, new.outbound, &new.server)
}

/// RFC 5626 §6: with outbound, a binding is identified by instance and reg-id; else by URI.
fn binding_key(na: &NameAddr<'_>, outbound_ok: bool) -> String {
    match (
        na.param("+sip.instance").flatten(),
        na.param("reg-id").flatten(),
    ) {
        (Some(inst), Some(reg)) if outbound_ok => format!("outbound|{inst}|{reg}"),
        _ => na.uri_text.to_owned(),
    }
}

/// Contact parameters other than `expires`, as written, for the 200 OK.
fn echo_params(na: &NameAddr<'_>) -> String {
    na.params
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("expires"))
        .map(|(n, v)| match v {
            Some(v) => format!(";{n}={v}"),
            None => format!(";{n}"),
        })
        .collect()
}

pub(crate) fn storage_error(e: confab_store::StoreError) -> Refusal {
    tracing::error!(event = "store.error", error = %e, "registration not saved");
    if e.is_unavailable() {
        return (
            503,
            "Service Unavailable (registration database unreachable)".into(),
            Some(("Retry-After", RETRY_AFTER_STORE.to_string())),
        );
    }
    (500, "Registration could not be stored".into(), None)
}

/// Seconds a client is asked to wait when the database is unreachable.
pub(crate) const RETRY_AFTER_STORE: u32 = 5;
