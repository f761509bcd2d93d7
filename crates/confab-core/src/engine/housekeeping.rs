//! Every housekeeping period (2 s): registration refreshes written back, expired registrations
//! and subscriptions dropped, the pool's membership and the change log read, nonces and
//! lockouts purged. With a database on the network the reads and writes run on the driver's
//! thread like parked reads (see `park`), and their results are applied when they come back,
//! so a slow database never holds the engine for a housekeeping round.

use super::park::{Answer, Op};
use super::registrar::{DRAIN_SETTING, SERVER_SETTING};
use super::{CoreEvent, Engine, Now};

impl Engine {
    pub(super) fn housekeeping(&mut self, now: Now) {
        if self.park_reads {
            self.upkeep_off_engine(now);
        } else {
            self.write_back();
            self.refresh_membership();
            let changes = self.store.changes_since(self.presence.rev());
            self.changes_read(now, changes);
            if let Err(e) = self.store.purge_expired(now.unix) {
                tracing::error!(event = "store.error", error = %e, "could not purge expired registrations");
            }
        }
        if self.cfg.edge.is_none() {
            if !self.park_reads {
                self.read_voice();
                self.read_rgs();
                self.read_meetings();
                self.read_relay_secrets();
                self.read_archiving();
            }
            self.probe_gateways(now);
        }
        let gone = self.shared.location.expire(now.unix);
        if !gone.is_empty() {
            tracing::debug!(event = "registrar.expired", count = gone.len());
        }
        for (aor, key) in gone {
            self.record_registration(now, &aor, "expired", "", &key);
            self.emit(CoreEvent::DevicesChanged(aor));
        }
        self.expire_calls(now);
        self.presence.expire(self.store.as_ref(), now.unix);
        self.flush_presence(now);
        for d in self.shared.digest.values() {
            d.purge(now.mono);
        }
        for mut part in self.shared.lockout.each() {
            part.purge(now.mono);
        }
        for mut part in self.shared.guards.each() {
            part.purge(now.mono);
        }
    }

    /// Queues housekeeping's database work for the driver, unless the last round's is still
    /// running.
    fn upkeep_off_engine(&mut self, now: Now) {
        if self.upkeep_pending > 0 {
            tracing::debug!(
                event = "store.slow",
                pending = self.upkeep_pending,
                "housekeeping's database work from the last round is not back yet"
            );
            return;
        }
        let (recs, stored) = self.shared.location.take_dirty();
        let mut ops = vec![Op::PurgeExpired(now.unix), Op::Changes(self.presence.rev())];
        if !recs.is_empty() {
            ops.push(Op::SaveBindings(recs, stored));
        }
        if self.membership_pool().is_some() {
            ops.push(Op::Membership);
        }
        if self.cfg.edge.is_none() {
            ops.push(Op::Voice);
            ops.push(Op::Rgs(self.rgs_seen));
            ops.push(Op::Meetings(self.meetings_seen));
            ops.push(self.relay_secrets_op());
            ops.push(self.archiving_op());
        }
        for op in ops {
            let token = self.next_id();
            self.queue_job(token, op);
            self.upkeep_pending += 1;
        }
    }

    /// Housekeeping's database work (or a write nobody waits for) came back from the driver.
    pub(super) fn upkeep_done(&mut self, now: Now, answer: Answer) {
        if matches!(
            answer,
            Answer::Saved(..)
                | Answer::Purged(_)
                | Answer::Membership(_)
                | Answer::Changes(_)
                | Answer::Voice(_)
                | Answer::Rgs(_)
                | Answer::Meetings(_)
                | Answer::Setting(..)
        ) {
            self.upkeep_pending = self.upkeep_pending.saturating_sub(1);
        }
        match answer {
            Answer::Saved(recs, stored, Err(e)) => {
                tracing::warn!(event = "store.error", error = %e, bindings = recs.len(), "could not save registration refreshes; retrying at the next housekeeping");
                self.shared.location.unsaved(&recs, &stored);
            }
            Answer::Saved(recs, _, Ok(())) => {
                tracing::debug!(event = "registrar.written_back", bindings = recs.len());
            }
            Answer::Purged(Err(e)) => {
                tracing::error!(event = "store.error", error = %e, "could not purge expired registrations");
            }
            Answer::Membership(Ok((servers, drains))) => self.apply_membership(servers, drains),
            Answer::Changes(changes) => self.changes_read(now, changes),
            a @ (Answer::Voice(_) | Answer::Resolved(..)) => self.voice_job_done(a),
            Answer::Rgs(read) => self.rgs_read(read),
            Answer::Meetings(read) => self.meetings_read(read),
            a @ Answer::Setting(..) => self.setting_read(a),
            other => self.written_behind(other),
        }
    }

    /// The outcome of a write nobody waits for: only a failure is news.
    pub(super) fn written_behind(&mut self, answer: Answer) {
        if let Answer::Removed(Err(e)) = answer {
            tracing::error!(event = "store.error", error = %e, "could not remove a binding whose connection closed; it expires by itself");
        }
    }

    /// The change log since the last read: users and presence edited elsewhere.
    fn changes_read(&mut self, now: Now, changes: confab_store::Result<(i64, Vec<String>)>) {
        let changes = changes.map(|(rev, entries)| {
            let (unlocks, rest): (Vec<_>, Vec<_>) = entries
                .into_iter()
                .partition(|e| e.starts_with(UNLOCK_CHANGE));
            for e in unlocks {
                self.unlock_user(now, &e[UNLOCK_CHANGE.len()..]);
            }
            (rev, rest)
        });
        let changed = self
            .presence
            .apply_changes(self.store.as_ref(), now.unix, changes);
        for aor in changed {
            self.emit(CoreEvent::UserChanged(aor));
        }
        self.flush_presence(now);
    }
}

/// A change-log entry asking running servers to lift a user's lockout (`confab user unlock`).
pub use confab_store::UNLOCK_CHANGE;

/// The settings that say which servers are in the pool and which are drained.
pub(super) fn membership(
    store: &dyn confab_store::Store,
) -> confab_store::Result<super::park::Settings> {
    Ok((
        store.settings(SERVER_SETTING)?,
        store.settings(DRAIN_SETTING)?,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::park::{Answer, Fetched, Op};
    use crate::engine::sim::{Sim, ALICE};

    fn register(n: u32) -> String {
        format!("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKr{n}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r{n}\r\nTo: <sip:alice@example.com>\r\nCall-ID: reg-1\r\nCSeq: {n}1 REGISTER\r\nContact: <sip:alice@127.0.0.2:5062>\r\n{{auth}}Content-Length: 0\r\n\r\n")
    }

    fn stored_expiry(sim: &Sim) -> i64 {
        sim.engine
            .store
            .bindings(0, Some("alice@example.com"))
            .unwrap()[0]
            .expires_at
    }

    #[test]
    fn with_a_remote_database_housekeeping_runs_off_the_engine_and_a_failed_save_is_retried() {
        let mut sim = Sim::with_users(&["alice"], &[]);
        sim.engine.park_store_reads(true);
        let early = sim.send_authenticated(ALICE, "alice", &register(1));
        assert!(early.is_empty(), "waits for alice's record: {early:?}");
        assert_eq!(sim.run_jobs(), 1, "alice's record");
        assert_eq!(sim.run_jobs(), 1, "her new device, stored before the 200");
        let ok = sim.take_to(ALICE);
        assert_eq!(ok.last().map(|m| m.status()), Some(200), "{ok:?}");
        let first = stored_expiry(&sim);

        sim.advance(Duration::from_secs(30));
        let queued = sim.run_jobs();
        assert_eq!(
            queued, 7,
            "one round's purge, change-log read, voice, response-group, meetings, relay-secret and archiving-policy reads; none piled up while it ran"
        );

        let ok = sim.send_authenticated(ALICE, "alice", &register(2));
        assert_eq!(
            ok.last().map(|m| m.status()),
            Some(200),
            "alice is known: no read"
        );
        assert_eq!(
            stored_expiry(&sim),
            first,
            "a refresh is written back, not through"
        );

        // the next round's save fails: the refresh waits for the round after
        sim.advance(Duration::from_secs(2));
        let mut saves = 0;
        while let Some(job) = sim.engine.poll_job() {
            let done = match job.op {
                Op::SaveBindings(recs, stored) => {
                    saves += 1;
                    let e = confab_store::StoreError::Unavailable("timed out".into());
                    Fetched {
                        token: job.token,
                        answer: Answer::Saved(recs, stored, Err(e)),
                    }
                }
                _ => job.run(sim.engine.store.as_ref()),
            };
            sim.finish_job(done);
        }
        assert_eq!(saves, 1);
        assert_eq!(stored_expiry(&sim), first);
        sim.advance(Duration::from_secs(2));
        sim.run_jobs();
        assert_eq!(stored_expiry(&sim), first + 30, "saved at the retry");
    }
}
