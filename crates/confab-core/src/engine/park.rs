//! Parking: a request that needs something slow waits here while the engine serves others,
//! and its processor chain resumes, at the processor that parked it, when the answer comes.
//!
//! Today the slow things are a database on the network (PostgreSQL): a processor reads
//! through [`Engine::fetch_user`] or [`Engine::fetch_bindings`], the registrar stores a new
//! device through [`Engine::park_write`] (the REGISTER is then answered by
//! `finish_register`, not by running its processor again); with an embedded
//! database the read is made inline (microseconds), otherwise the request is parked and a
//! [`StoreJob`] is queued for the driver, which runs it on a thread that may block and hands
//! the result back with [`Engine::job_done`]. The processor runs again from its start with the
//! answer waiting in the request's context, so everything before the read must be free of
//! side effects (it is: the checks before a lookup only read). RFC 3263 next-hop resolution
//! will park the same way.

use confab_store::{Binding, ContactEntry, Store, StoreError, User};

use super::{Ctx, Engine, Now};
use crate::location::Change;

/// Database work to run off the engine, on a thread that may block.
pub struct StoreJob {
    pub(super) token: u64,
    pub(super) op: Op,
}

/// What a job does: a parked request's read, or housekeeping's work.
#[derive(Debug)]
pub(super) enum Op {
    User(String),
    /// A user's contact list.
    Contacts(String),
    Bindings {
        aor: String,
        now: i64,
    },
    /// Registration refreshes to write back, with the expiry the store held for each.
    SaveBindings(Vec<Binding>, Vec<i64>),
    PurgeExpired(i64),
    Membership,
    Changes(i64),
    /// A REGISTER's change, stored before its 200.
    Register(Change),
    /// A binding that ended with its connection.
    RemoveBinding(String, String),
    /// Who holds a Line URI (a dialled number's owner).
    NumberOwner(String),
    /// The deployment's voice configuration document (housekeeping).
    Voice,
    /// The response-group settings, unless their hash is this (housekeeping).
    Rgs(u64),
    /// The meetings document, unless its hash is this.
    Meetings(u64),
    /// A setting, unless its hash is this.
    Setting(&'static str, u64),
}

/// What a job brought back, for [`Engine::job_done`].
#[derive(Debug)]
pub struct Fetched {
    pub(super) token: u64,
    pub(super) answer: Answer,
}

#[derive(Debug)]
pub(super) enum Answer {
    User(String, Result<Option<User>, StoreError>),
    Contacts(String, Result<Vec<ContactEntry>, StoreError>),
    Bindings(String, Result<Vec<Binding>, StoreError>),
    Saved(Vec<Binding>, Vec<i64>, Result<(), StoreError>),
    Purged(Result<usize, StoreError>),
    Membership(Result<Settings, StoreError>),
    Changes(Result<(i64, Vec<String>), StoreError>),
    Registered(Change, Result<(), StoreError>),
    Removed(Result<(), StoreError>),
    NumberOwner(String, Result<Option<String>, StoreError>),
    Voice(Result<Option<String>, StoreError>),
    Rgs(Result<Option<super::rgs::RgsRead>, StoreError>),
    Meetings(Result<Option<super::meetings::MeetingsRead>, StoreError>),
    Setting(&'static str, Result<Option<(u64, String)>, StoreError>),
    /// A critical-mode message is in the archive, or why not.
    Archived(Result<(), String>),
    /// A trunk gateway's host name and the addresses DNS gave for it (or why none).
    Resolved(String, Result<Vec<std::net::SocketAddr>, String>),
    /// A partner's Access Edge for the domain (and the proof asked for held), or why not.
    Partner(
        String,
        Result<super::federation::PartnerEdge, super::federation::PartnerError>,
    ),
}

/// The pool's servers and drains (see `registrar`).
pub(super) type Settings = (Vec<(String, String)>, Vec<(String, String)>);

impl Fetched {
    /// Whether the archive took a critical-mode record (see [`Engine::poll_archive`]).
    pub fn archived(token: u64, outcome: Result<(), String>) -> Self {
        Self {
            token,
            answer: Answer::Archived(outcome),
        }
    }

    /// What DNS gave for a trunk gateway's host name (see [`Engine::poll_resolve`]).
    pub fn resolved(host: String, found: Result<Vec<std::net::SocketAddr>, String>) -> Self {
        Self {
            token: 0,
            answer: Answer::Resolved(host, found),
        }
    }
}

impl StoreJob {
    /// Runs the job against `store` (blocking: call it off the engine's thread).
    pub fn run(self, store: &dyn Store) -> Fetched {
        Fetched {
            token: self.token,
            answer: run(store, self.op),
        }
    }
}

fn run(store: &dyn Store, op: Op) -> Answer {
    match op {
        Op::User(aor) => {
            let result = store.user(&aor);
            Answer::User(aor, result)
        }
        Op::Contacts(aor) => {
            let result = store.contacts(&aor);
            Answer::Contacts(aor, result)
        }
        Op::Bindings { aor, now } => {
            let result = store.bindings(now, Some(&aor));
            Answer::Bindings(aor, result)
        }
        Op::SaveBindings(recs, stored) => {
            let result = store.save_bindings(&recs);
            Answer::Saved(recs, stored, result)
        }
        Op::PurgeExpired(now) => Answer::Purged(store.purge_expired(now)),
        Op::Membership => Answer::Membership(super::housekeeping::membership(store)),
        Op::Changes(rev) => Answer::Changes(store.changes_since(rev)),
        Op::Register(change) => {
            let result = change.write(store);
            Answer::Registered(change, result)
        }
        Op::RemoveBinding(aor, key) => Answer::Removed(store.remove_binding(&aor, &key)),
        Op::NumberOwner(line) => {
            let result = store.number_owner(&line);
            Answer::NumberOwner(line, result)
        }
        Op::Voice => Answer::Voice(crate::voice::stored(store)),
        Op::Rgs(known) => Answer::Rgs(super::rgs::rgs_stored(store, known)),
        Op::Meetings(known) => Answer::Meetings(super::meetings::meetings_stored(store, known)),
        Op::Setting(name, known) => Answer::Setting(
            name,
            super::media_relay::setting_changed(store, name, known),
        ),
    }
}

/// The answer a resumed request brought, when `pick` takes it (`Err` gives it back: rare,
/// so boxed).
pub(super) fn taken<T>(
    ctx: &mut Ctx,
    pick: impl FnOnce(Answer) -> Result<T, Box<Answer>>,
) -> Option<T> {
    match pick(ctx.fetched.take()?) {
        Ok(t) => Some(t),
        Err(answer) => {
            ctx.fetched = Some(*answer);
            None
        }
    }
}

/// A request waiting for a job: its context, the processor that parked it, what follows.
pub(super) struct Parked {
    pub(super) ctx: Ctx,
    pub(super) at: usize,
    pub(super) then: Then,
}

/// What a parked request does when its job is back.
#[derive(Debug, Clone, Copy)]
pub(super) enum Then {
    /// The processor that parked it runs again, the answer waiting in `ctx.fetched`.
    Rerun,
    /// The REGISTER is answered from its written change (`registrar::finish_register`).
    FinishRegister,
}

/// A fetch's outcome: the answer, or the request is parked until it comes (the processor
/// then stops; the chain resumes it).
pub(super) enum Fetch<T> {
    Ready(Result<T, StoreError>),
    Parked,
}

impl Engine {
    /// Store reads on the request path are queued as [`StoreJob`]s (see [`Engine::poll_job`])
    /// instead of being made inline: for a database on the network, whose slowness must not
    /// stall every other request.
    pub fn park_store_reads(&mut self, on: bool) {
        self.park_reads = on;
    }

    /// A read for the driver to run; its result goes to [`Engine::job_done`].
    pub fn poll_job(&mut self) -> Option<StoreJob> {
        self.jobs.pop_front()
    }

    /// Requests waiting for a read.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// A job finished: its request resumes where it parked, or housekeeping takes the result.
    pub fn job_done(&mut self, now: Now, done: Fetched) {
        self.resume(now, done);
        self.deliver_events(now);
    }

    fn resume(&mut self, now: Now, done: Fetched) {
        let Some(Parked { mut ctx, at, then }) = self.parked.remove(&done.token) else {
            return self.upkeep_done(now, done.answer);
        };
        let answered = ctx
            .key
            .as_deref()
            .is_some_and(|k| self.server_tx.get(k).is_none_or(|s| s.tx.is_final()));
        if answered {
            return; // answered while it waited (a CANCEL): nothing more to do
        }
        match (then, done.answer) {
            (Then::FinishRegister, Answer::Registered(change, written)) => {
                self.finish_register(now, &ctx, change, written);
                self.guard(now, &ctx);
            }
            (_, answer) => {
                ctx.fetched = Some(answer);
                self.run_chain(now, ctx, at);
            }
        }
    }

    /// A CANCEL for an INVITE still waiting here: the INVITE is answered 487 now.
    pub(super) fn cancel_parked(&mut self, now: Now, invite_key: &str) {
        let bytes = self
            .parked
            .values()
            .find(|p| p.ctx.key.as_deref() == Some(invite_key))
            .map(|p| self.response_bytes(&p.ctx.msg, 487, "Request Terminated", &[]));
        if let Some(bytes) = bytes {
            self.send_upstream(now, invite_key, 487, bytes);
        }
    }

    pub(super) fn queue_job(&mut self, token: u64, op: Op) {
        self.jobs.push_back(StoreJob { token, op });
    }

    /// `aor`'s user record: the answer a resumed request brought, an inline read, or a park.
    pub(super) fn fetch_user(&mut self, ctx: &mut Ctx, aor: &str) -> Fetch<Option<User>> {
        if let Some(r) = taken(ctx, |a| match a {
            Answer::User(a, r) if a == aor => Ok(r),
            other => Err(Box::new(other)),
        }) {
            return Fetch::Ready(r);
        }
        self.fetch(ctx, Op::User(aor.to_owned()), |s| s.user(aor))
    }

    /// Who holds `line_uri` (`tel:+14255550101`).
    pub(super) fn fetch_number_owner(
        &mut self,
        ctx: &mut Ctx,
        line_uri: &str,
    ) -> Fetch<Option<String>> {
        if let Some(r) = taken(ctx, |a| match a {
            Answer::NumberOwner(l, r) if l == line_uri => Ok(r),
            other => Err(Box::new(other)),
        }) {
            return Fetch::Ready(r);
        }
        let op = Op::NumberOwner(line_uri.to_owned());
        self.fetch(ctx, op, |s| s.number_owner(line_uri))
    }

    /// `aor`'s contact list.
    pub(super) fn fetch_contacts(&mut self, ctx: &mut Ctx, aor: &str) -> Fetch<Vec<ContactEntry>> {
        if let Some(r) = taken(ctx, |a| match a {
            Answer::Contacts(a, r) if a == aor => Ok(r),
            other => Err(Box::new(other)),
        }) {
            return Fetch::Ready(r);
        }
        self.fetch(ctx, Op::Contacts(aor.to_owned()), |s| s.contacts(aor))
    }

    /// `aor`'s registrations at every server of the pool.
    pub(super) fn fetch_bindings(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        aor: &str,
    ) -> Fetch<Vec<Binding>> {
        if let Some(r) = taken(ctx, |a| match a {
            Answer::Bindings(a, r) if a == aor => Ok(r),
            other => Err(Box::new(other)),
        }) {
            return Fetch::Ready(r);
        }
        let r = Op::Bindings {
            aor: aor.to_owned(),
            now: now.unix,
        };
        self.fetch(ctx, r, |s| s.bindings(now.unix, Some(aor)))
    }

    fn fetch<T>(
        &mut self,
        ctx: &mut Ctx,
        r: Op,
        inline: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
    ) -> Fetch<T> {
        if !self.park_reads {
            return Fetch::Ready(inline(self.store.as_ref()));
        }
        let token = self.next_id();
        self.queue_job(token, r);
        ctx.waiting = Some((token, Then::Rerun));
        Fetch::Parked
    }

    /// A write whose outcome changes nothing here (a failure is logged): inline with an
    /// embedded database, else a job nobody waits for.
    pub(super) fn write_behind(&mut self, op: Op) {
        if self.park_reads {
            let token = self.next_id();
            self.queue_job(token, op);
        } else {
            let answer = run(self.store.as_ref(), op);
            self.written_behind(answer);
        }
    }

    /// Parks a REGISTER while its change is stored.
    pub(super) fn park_write(&mut self, ctx: &mut Ctx, change: Change) {
        let token = self.next_id();
        self.queue_job(token, Op::Register(change));
        ctx.waiting = Some((token, Then::FinishRegister));
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::sim::{cancel_bob, Sim, ALICE, BOB, INVITE_BOB};

    const OPTIONS: &str = "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.7:5070;branch=z9hG4bKo1\r\nMax-Forwards: 70\r\nFrom: <sip:probe@example.org>;tag=o1\r\nTo: <sip:example.com>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn while_a_read_waits_for_the_database_other_requests_are_served() {
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        sim.engine.park_store_reads(true);
        let to_alice = sim.send_authenticated(ALICE, "alice", INVITE_BOB);
        let codes: Vec<u16> = to_alice.iter().map(|m| m.status()).collect();
        assert_eq!(
            codes,
            vec![100],
            "alice's record is being read: only Trying so far"
        );
        assert_eq!(sim.engine.parked(), 1);
        // the database is slow; a request that needs none is answered meanwhile
        sim.send("127.0.0.7:5070", OPTIONS);
        let probe = sim.take_to("127.0.0.7:5070");
        assert_eq!(
            probe.iter().map(|m| m.status()).collect::<Vec<_>>(),
            vec![200]
        );
        // alice's record arrives: verified, then bob's record is read in turn
        assert_eq!(sim.run_jobs(), 1);
        assert!(sim.take_to(BOB).is_empty());
        assert_eq!(sim.run_jobs(), 1);
        let invite = sim.take_to(BOB);
        assert_eq!(
            invite.len(),
            1,
            "the INVITE reached bob once the reads were answered"
        );
        assert_eq!(invite[0].method_str(), "INVITE");
        assert_eq!(sim.engine.parked(), 0);
        // alice and bob are known now: the next call needs no read at all
        assert_eq!(
            sim.engine
                .shared
                .users
                .each()
                .map(|p| p.len())
                .sum::<usize>(),
            2
        );
    }

    #[test]
    fn an_invite_cancelled_while_it_waits_for_the_database_ends_487_and_rings_nobody() {
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        sim.engine.park_store_reads(true);
        sim.send_authenticated(ALICE, "alice", INVITE_BOB);
        assert_eq!(sim.engine.parked(), 1);
        sim.send(ALICE, &cancel_bob());
        let codes: Vec<u16> = sim.take_to(ALICE).iter().map(|m| m.status()).collect();
        assert_eq!(codes, vec![200, 487], "the CANCEL's 200, the INVITE's 487");
        while sim.run_jobs() > 0 {}
        assert!(sim.take_to(BOB).is_empty(), "bob's phone never rang");
        assert_eq!(sim.engine.parked(), 0);
    }

    #[test]
    fn a_new_device_is_stored_off_the_engine_before_its_200() {
        let mut sim = Sim::with_users(&["alice"], &[]);
        sim.engine.park_store_reads(true);
        let register = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKw1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=w1\r\nTo: <sip:alice@example.com>\r\nCall-ID: w1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.2:5062>\r\n{auth}Content-Length: 0\r\n\r\n";
        sim.send_authenticated(ALICE, "alice", register);
        assert_eq!(sim.run_jobs(), 1, "alice's record read");
        assert!(
            sim.take_to(ALICE).is_empty(),
            "no 200 before the device is stored"
        );
        let stored = |sim: &Sim| sim.engine.store.bindings(0, None).unwrap().len();
        assert_eq!(stored(&sim), 0);
        assert_eq!(
            sim.engine.registrations(),
            0,
            "memory follows the store, not before"
        );
        assert_eq!(sim.run_jobs(), 1, "the device stored");
        assert_eq!(stored(&sim), 1);
        let ok = sim.take_to(ALICE);
        assert_eq!(ok.iter().map(|m| m.status()).collect::<Vec<_>>(), vec![200]);
        assert_eq!(sim.engine.registrations(), 1);
        assert_eq!(sim.engine.in_flight(), 0);
    }

    #[test]
    fn a_read_that_fails_is_answered_503_after_it_resumes() {
        let mut sim = Sim::with_users(&["alice"], &[]);
        sim.engine.park_store_reads(true);
        sim.send_authenticated(ALICE, "alice", INVITE_BOB);
        assert_eq!(sim.engine.parked(), 1);
        let job = sim.engine.poll_job().expect("a read queued");
        let done = super::Fetched {
            token: job.token,
            answer: super::Answer::User(
                "alice@example.com".into(),
                Err(confab_store::StoreError::Unavailable(
                    "no answer within 5 s".into(),
                )),
            ),
        };
        sim.finish_job(done);
        let up = sim.take_to(ALICE);
        assert_eq!(up.last().map(|m| m.status()), Some(503));
        assert_eq!(sim.engine.in_flight(), 0);
    }
}
