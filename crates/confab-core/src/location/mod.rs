//! The registrar (RFC 3261 §10.3) and the location service it feeds. Logic here, storage in
//! `confab-store`: a new, changed or removed binding is written through before the 200 OK, so
//! that a restart loses no registration; a refresh that only moves the expiry of a binding whose
//! stored copy has over [`WRITE_BACK_MARGIN`] to live is written back with the others at the
//! next housekeeping (`Parts<Location>::write_back`), one transaction for all.
//! RFC 3327 Path and RFC 5626 outbound (`+sip.instance` with `reg-id`) are supported.

use std::collections::HashSet;

use foldhash::HashMap;
use std::net::SocketAddr;

use confab_store::Binding;
use sip_transport::FlowId;

// what the tests' `register` (plan, write and apply in a row) takes
#[cfg(test)]
use {crate::config::EngineConfig, confab_store::Store, sip_proto::Message, sip_transport::Source};

mod parts;
mod plan;

pub(crate) use plan::{storage_error, Change, Refusal, RETRY_AFTER_STORE};

/// A binding plus what only the running server knows: the connection it arrived on.
#[derive(Debug, Clone)]
pub(crate) struct LiveBinding {
    pub(crate) rec: Binding,
    pub(crate) flow: Option<FlowId>,
    /// The expiry the store holds (earlier than `rec`'s while a refresh waits to be written).
    stored_expires: i64,
    /// A refresh waits for the write-back (`Location::take_dirty`).
    dirty: bool,
}

/// A refresh is written back later only while the stored copy has this long to live, so that
/// neither a restart nor another server reading the store sees the binding lapse meanwhile.
pub(crate) const WRITE_BACK_MARGIN: i64 = 60;

impl LiveBinding {
    pub(crate) fn source(&self) -> Option<SocketAddr> {
        self.rec.source.parse().ok()
    }
}

/// Where each user's devices are.
#[derive(Debug, Default)]
pub(crate) struct Location {
    by_aor: HashMap<String, Vec<LiveBinding>>,
    /// Users with a binding waiting for the write-back.
    dirty: Vec<String>,
    /// Users with a binding that arrived on each connection, so that a closed connection
    /// costs its own bindings rather than a scan of all. A hint: a binding since moved to
    /// another connection leaves its user here until this one closes; each binding's own
    /// `flow` decides.
    by_flow: HashMap<FlowId, HashSet<String>>,
}

impl Location {
    /// Takes a binding read from the store (its connection is gone).
    fn restore(&mut self, rec: Binding) {
        self.by_aor
            .entry(rec.aor.clone())
            .or_default()
            .push(LiveBinding {
                stored_expires: rec.expires_at,
                rec,
                flow: None,
                dirty: false,
            });
    }

    /// Restores bindings read from the store (their connections are gone).
    #[cfg(test)]
    pub(crate) fn load(bindings: Vec<Binding>) -> Self {
        let mut loc = Self::default();
        for rec in bindings {
            loc.restore(rec);
        }
        loc
    }

    pub(crate) fn lookup(&self, aor: &str) -> &[LiveBinding] {
        self.by_aor.get(aor).map_or(&[], Vec::as_slice)
    }

    /// Every user's binding keys (its devices).
    /// Identifies `aor`'s set of devices: their count and an order-free hash of their keys.
    /// Equal before and after a REGISTER when it only refreshed.
    pub(crate) fn devices_fingerprint(&self, aor: &str) -> (usize, u64) {
        let bindings = self.lookup(aor);
        let hash = bindings.iter().fold(0u64, |acc, b| {
            let h = b.rec.key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
                (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
            });
            acc ^ h
        });
        (bindings.len(), hash)
    }

    pub(crate) fn device_keys(&self) -> std::collections::HashMap<String, Vec<String>> {
        self.by_aor
            .iter()
            .map(|(aor, v)| (aor.clone(), v.iter().map(|b| b.rec.key.clone()).collect()))
            .collect()
    }

    pub(crate) fn count(&self) -> usize {
        self.by_aor.values().map(Vec::len).sum()
    }

    /// Drops bindings expired at `now`; returns (aor, key) of each.
    pub(crate) fn expire(&mut self, now: i64) -> Vec<(String, String)> {
        self.remove_where(|b| b.rec.expires_at <= now)
    }

    /// Drops every binding of `aor` from memory (the store no longer has them) and returns
    /// them.
    pub(crate) fn forget_user(&mut self, aor: &str) -> Vec<LiveBinding> {
        self.by_aor.remove(aor).unwrap_or_default()
    }

    /// An RFC 5626 flow failed: its outbound bindings go; other bindings forget the flow.
    pub(crate) fn flow_closed(&mut self, flow: FlowId) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        for aor in self.by_flow.remove(&flow).unwrap_or_default() {
            let Some(list) = self.by_aor.get_mut(&aor) else {
                continue;
            };
            list.retain_mut(|b| {
                if b.flow != Some(flow) {
                    return true;
                }
                if b.rec.outbound {
                    gone.push((aor.clone(), b.rec.key.clone()));
                    return false;
                }
                b.flow = None;
                true
            });
            if list.is_empty() {
                self.by_aor.remove(&aor);
            }
        }
        gone
    }

    fn remove_where(&mut self, f: impl Fn(&LiveBinding) -> bool) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        self.by_aor.retain(|_, v| {
            v.retain(|b| {
                let drop = f(b);
                if drop {
                    gone.push((b.rec.aor.clone(), b.rec.key.clone()));
                }
                !drop
            });
            !v.is_empty()
        });
        gone
    }

    /// Applies a REGISTER for `aor` (already authenticated) and returns the Contact values of
    /// the 200 OK, or why it is refused: [`Self::plan`], [`Change::write`], [`Self::apply`]
    /// in a row (the engine makes them apart, so that the write can wait off its thread).
    #[cfg(test)]
    pub(crate) fn register(
        &mut self,
        cfg: &EngineConfig,
        store: &dyn Store,
        req: &Message,
        aor: &str,
        source: &Source,
        now: i64,
    ) -> Result<Vec<String>, Refusal> {
        let change = self.plan(cfg, req, aor, source, now)?;
        change.write(store).map_err(storage_error)?;
        Ok(self.apply(change, now))
    }

    /// Takes a change into memory once the store took it ([`Change::write`]); returns the
    /// Contact values of the 200 OK.
    pub(crate) fn apply(&mut self, change: Change, now: i64) -> Vec<String> {
        let aor = change.aor;
        for key in &change.removes {
            self.forget(&aor, key);
        }
        let saved = change
            .saves
            .into_iter()
            .map(|rec| (rec.expires_at, false, rec));
        let kept = change
            .refreshes
            .into_iter()
            .map(|(rec, stored)| (stored, true, rec));
        for (stored_expires, dirty, rec) in saved.chain(kept) {
            let was_dirty = self
                .lookup(&aor)
                .iter()
                .any(|b| b.rec.key == rec.key && b.dirty);
            if dirty && !was_dirty {
                self.dirty.push(aor.clone());
            }
            self.forget(&aor, &rec.key);
            if let Some(flow) = change.flow {
                let users = self.by_flow.entry(flow).or_default();
                if !users.contains(&aor) {
                    users.insert(aor.clone());
                }
            }
            self.by_aor
                .entry(aor.clone())
                .or_default()
                .push(LiveBinding {
                    rec,
                    flow: change.flow,
                    stored_expires,
                    dirty,
                });
        }
        self.contact_values(&aor, now)
    }

    /// The refreshes waiting to be saved, and the expiry the store held for each; they count
    /// as saved from now on, until [`Self::unsaved`] says the save failed.
    pub(crate) fn take_dirty(&mut self) -> (Vec<Binding>, Vec<i64>) {
        let mut recs = Vec::new();
        let mut stored = Vec::new();
        for aor in std::mem::take(&mut self.dirty) {
            for b in self.by_aor.get_mut(&aor).into_iter().flatten() {
                if b.dirty {
                    recs.push(b.rec.clone());
                    stored.push(b.stored_expires);
                    b.stored_expires = b.rec.expires_at;
                    b.dirty = false;
                }
            }
        }
        (recs, stored)
    }

    /// Saving `recs` (from [`Self::take_dirty`]) failed: those still live wait for the next
    /// write-back, with the expiry the store still holds.
    pub(crate) fn unsaved(&mut self, recs: &[Binding], stored: &[i64]) {
        for (rec, &was) in recs.iter().zip(stored) {
            let Some(list) = self.by_aor.get_mut(&rec.aor) else {
                continue;
            };
            let listed = list.iter().any(|b| b.dirty);
            if let Some(b) = list.iter_mut().find(|b| b.rec.key == rec.key) {
                b.stored_expires = b.stored_expires.min(was);
                if !b.dirty {
                    b.dirty = true;
                    if !listed {
                        self.dirty.push(rec.aor.clone());
                    }
                }
            }
        }
    }

    /// Drops `aor`'s binding `key` from memory (and the AOR when it was the last).
    fn forget(&mut self, aor: &str, key: &str) {
        if let Some(list) = self.by_aor.get_mut(aor) {
            list.retain(|b| b.rec.key != key);
            if list.is_empty() {
                self.by_aor.remove(aor);
            }
        }
    }

    fn contact_values(&self, aor: &str, now: i64) -> Vec<String> {
        self.lookup(aor)
            .iter()
            .map(|b| {
                format!(
                    "<{}>{};expires={}",
                    b.rec.contact,
                    b.rec.params,
                    (b.rec.expires_at - now).max(0)
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_store::SqliteStore;
    use sip_proto::Limits;
    use sip_transport::Transport;

    fn req(contact: &str, extra: &str, cseq: u32) -> Message {
        let s = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK{cseq}\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: reg1\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(s.into_bytes(), &Limits::default()).unwrap()
    }

    fn src() -> Source {
        Source {
            transport: Transport::Udp,
            remote: "127.0.0.1:5070".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            flow: None,
            peer_verified: false,
        }
    }

    fn setup() -> (Location, SqliteStore, EngineConfig) {
        (
            Location::default(),
            SqliteStore::in_memory().unwrap(),
            EngineConfig::default(),
        )
    }

    #[test]
    fn several_devices_register_and_refresh_independently() {
        let (mut loc, store, cfg) = setup();
        let aor = "alice@example.com";
        loc.register(
            &cfg,
            &store,
            &req("<sip:alice@10.0.0.1>;q=0.5", "", 1),
            aor,
            &src(),
            1000,
        )
        .unwrap();
        let c = loc
            .register(
                &cfg,
                &store,
                &req("<sip:alice@10.0.0.2>", "Expires: 120\r\n", 2),
                aor,
                &src(),
                1000,
            )
            .unwrap();
        assert_eq!(
            c,
            vec![
                "<sip:alice@10.0.0.1>;q=0.5;expires=3600",
                "<sip:alice@10.0.0.2>;expires=120"
            ]
        );
        assert_eq!(store.bindings(1000, None).unwrap().len(), 2);
        loc.expire(1121);
        assert_eq!(loc.lookup(aor).len(), 1);
    }

    #[test]
    fn too_brief_interval_is_423_with_min_expires() {
        let (mut loc, store, cfg) = setup();
        let err = loc
            .register(
                &cfg,
                &store,
                &req("<sip:a@h>;expires=10", "", 1),
                "alice@example.com",
                &src(),
                0,
            )
            .unwrap_err();
        assert_eq!(
            err,
            (
                423,
                "Interval Too Brief".into(),
                Some(("Min-Expires", "60".into()))
            )
        );
    }

    #[test]
    fn star_unregisters_everything_and_needs_expires_zero() {
        let (mut loc, store, cfg) = setup();
        let aor = "alice@example.com";
        loc.register(
            &cfg,
            &store,
            &req("<sip:a@h1>, <sip:a@h2>", "", 1),
            aor,
            &src(),
            0,
        )
        .unwrap();
        assert_eq!(
            loc.register(&cfg, &store, &req("*", "", 2), aor, &src(), 0)
                .unwrap_err()
                .0,
            400
        );
        assert!(loc
            .register(&cfg, &store, &req("*", "Expires: 0\r\n", 3), aor, &src(), 0)
            .unwrap()
            .is_empty());
        assert!(store.bindings(0, None).unwrap().is_empty());
    }

    #[test]
    fn expires_zero_removes_one_binding() {
        let (mut loc, store, cfg) = setup();
        let aor = "alice@example.com";
        loc.register(
            &cfg,
            &store,
            &req("<sip:a@h1>, <sip:a@h2>", "", 1),
            aor,
            &src(),
            0,
        )
        .unwrap();
        let c = loc
            .register(
                &cfg,
                &store,
                &req("<sip:a@h1>;expires=0", "", 2),
                aor,
                &src(),
                0,
            )
            .unwrap();
        assert_eq!(c, vec!["<sip:a@h2>;expires=3600"]);
    }

    #[test]
    fn refreshes_are_written_back_and_changes_written_through() {
        let (mut loc, store, cfg) = setup();
        let aor = "alice@example.com";
        let stored = |t| store.bindings(t, None).unwrap()[0].clone();
        loc.register(&cfg, &store, &req("<sip:a@h1>", "", 1), aor, &src(), 0)
            .unwrap();
        assert_eq!(
            stored(0).expires_at,
            3600,
            "a new binding is written through"
        );
        // a refresh that moves only the expiry waits for write_back
        loc.register(&cfg, &store, &req("<sip:a@h1>", "", 2), aor, &src(), 100)
            .unwrap();
        assert_eq!((stored(0).expires_at, stored(0).cseq), (3600, 1));
        let write_back = |loc: &mut Location| {
            let (recs, _) = loc.take_dirty();
            store.save_bindings(&recs).unwrap();
            recs.len()
        };
        assert_eq!(write_back(&mut loc), 1);
        assert_eq!((stored(0).expires_at, stored(0).cseq), (3700, 2));
        assert_eq!(write_back(&mut loc), 0, "nothing left waiting");
        // a new address is where calls go: written through
        let moved = Source {
            remote: "10.0.0.9:5060".parse().unwrap(),
            ..src()
        };
        loc.register(&cfg, &store, &req("<sip:a@h1>", "", 3), aor, &moved, 200)
            .unwrap();
        assert_eq!(stored(0).source, "10.0.0.9:5060");
        // close to the stored expiry a refresh is written through, so the store never lets
        // a live binding lapse
        loc.register(&cfg, &store, &req("<sip:a@h1>", "", 4), aor, &moved, 3760)
            .unwrap();
        assert_eq!(stored(0).expires_at, 7360);
    }

    #[test]
    fn out_of_order_cseq_is_refused() {
        let (mut loc, store, cfg) = setup();
        let aor = "alice@example.com";
        loc.register(&cfg, &store, &req("<sip:a@h1>", "", 5), aor, &src(), 0)
            .unwrap();
        assert_eq!(
            loc.register(&cfg, &store, &req("<sip:a@h1>", "", 4), aor, &src(), 0)
                .unwrap_err()
                .0,
            500
        );
    }

    #[test]
    fn outbound_bindings_are_keyed_by_instance_and_die_with_their_flow() {
        let (mut loc, store, cfg) = setup();
        let aor = "alice@example.com";
        let mut s = src();
        s.flow = Some(7);
        let c = r#"<sip:a@h1;transport=tcp>;+sip.instance="<urn:uuid:1>";reg-id=1"#;
        loc.register(
            &cfg,
            &store,
            &req(c, "Supported: outbound, path\r\nPath: <sip:edge;lr>\r\n", 1),
            aor,
            &s,
            0,
        )
        .unwrap();
        let c2 = r#"<sip:a@h9;transport=tcp>;+sip.instance="<urn:uuid:1>";reg-id=1"#;
        loc.register(
            &cfg,
            &store,
            &req(c2, "Supported: outbound\r\n", 2),
            aor,
            &s,
            0,
        )
        .unwrap();
        assert_eq!(
            loc.lookup(aor).len(),
            1,
            "same instance and reg-id replaces the binding"
        );
        assert_eq!(loc.lookup(aor)[0].rec.contact, "sip:a@h9;transport=tcp");
        assert_eq!(loc.flow_closed(7).len(), 1);
        assert!(loc.lookup(aor).is_empty());
    }

    #[test]
    fn a_closed_connection_touches_only_the_bindings_still_on_it() {
        let (mut loc, store, cfg) = setup();
        let on = |flow| Source {
            flow: Some(flow),
            ..src()
        };
        let out =
            |n| format!(r#"<sip:b@h{n};transport=tcp>;+sip.instance="<urn:uuid:{n}>";reg-id=1"#);
        let ob = "Supported: outbound\r\n";
        loc.register(&cfg, &store, &req("<sip:a@h1>", "", 1), "a@x", &on(1), 0)
            .unwrap();
        loc.register(&cfg, &store, &req(&out(1), ob, 1), "b@x", &on(1), 0)
            .unwrap();
        // b's device reconnects on flow 2 before flow 1 is seen to close
        loc.register(&cfg, &store, &req(&out(1), ob, 2), "b@x", &on(2), 0)
            .unwrap();
        assert!(loc.flow_closed(1).is_empty(), "b's binding moved to flow 2");
        assert_eq!(
            loc.lookup("a@x")[0].flow,
            None,
            "a's binding forgets the flow"
        );
        assert_eq!(loc.lookup("b@x")[0].flow, Some(2));
        let key = loc.lookup("b@x")[0].rec.key.clone();
        assert_eq!(loc.flow_closed(2), vec![("b@x".to_owned(), key)]);
        assert!(loc.lookup("b@x").is_empty());
        assert_eq!(
            loc.lookup("a@x").len(),
            1,
            "not outbound: stays, reachable by address"
        );
        assert!(loc.flow_closed(1).is_empty(), "a flow closes once");
    }

    #[test]
    fn path_is_kept_and_bindings_reload_after_restart() {
        let (mut loc, store, cfg) = setup();
        loc.register(
            &cfg,
            &store,
            &req("<sip:a@h1>", "Path: <sip:p1;lr>, <sip:p2;lr>\r\n", 1),
            "alice@example.com",
            &src(),
            0,
        )
        .unwrap();
        let restored = Location::load(store.bindings(0, None).unwrap());
        assert_eq!(
            restored.lookup("alice@example.com")[0].rec.path,
            vec!["<sip:p1;lr>", "<sip:p2;lr>"]
        );
    }
}
