//! Runs the engines (one per shard, see `engine/shards.rs`) on real sockets: transport
//! events in, transmissions out, timers on the tokio clock. Each shard is a task that owns
//! its engine and reads its own UDP sockets (no hand-over per datagram); connections run on
//! tasks of their own and queue their messages to their shard; shards hand each other the
//! messages and events that belong to another.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use confab_store::Store;
use sip_transport::{Batch, Config as TransportConfig, Event, Listeners, Transports};
use tokio::sync::{mpsc, watch};

use crate::config::EngineConfig;
use crate::engine::{
    Engine, EngineStats, Fetched, Handover, Lookup, Now, PartnerError, PartnerResolver, StoreJob,
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Store(#[from] confab_store::StoreError),
    /// A listener could not be started.
    #[error("cannot start the transports: {0}")]
    Transport(#[from] std::io::Error),
}

fn now() -> Now {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Now {
        mono: Instant::now(),
        unix: since.as_secs() as i64,
        unix_ms: since.as_millis() as i64,
    }
}

/// Messages that may wait for a shard; the transports drop (and count) what does not fit.
const QUEUE: usize = 16_384;

/// Messages handled between two rounds of sending.
const BATCH: usize = 256;

/// How often each shard hands its figures to the metrics (at most: an idle shard wakes at
/// its next timer, housekeeping's at the latest).
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a shutdown waits for requests in flight to be answered.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` resolves, then drains: new requests are refused with 503 while
/// those in flight finish (at most [`DRAIN_FOR`]). One shard per store in `stores` (each its
/// own connection to the database); `listeners.udp` has the same number of socket sets.
/// `archive` takes the archiving and call records (none: they are not kept).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: EngineConfig,
    stores: Vec<Box<dyn Store>>,
    listeners: Listeners,
    transport_cfg: TransportConfig,
    secret: [u8; 32],
    resolver: Option<Arc<dyn PartnerResolver>>,
    archive: Option<Arc<confab_archive::writer::Sink>>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let n = stores.len();
    let udp_port = cfg.udp_port;
    let (event_txs, event_rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(QUEUE)).unzip();
    let transports = Transports::start(listeners, transport_cfg, event_txs)?;
    metrics.attach(transports.clone());
    let workers: Vec<_> = stores.iter().map(|s| s.worker_handle()).collect();
    let media_address = cfg.media_address;
    let engines = Engine::sharded(cfg, stores, secret, now())?;
    let (hand_txs, hand_rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
    let (drain_tx, drain_rx) = watch::channel(false);
    // 1 until a shard reports: none may stop before every one has said it has nothing left
    let in_flight: Arc<[AtomicUsize]> = (0..n).map(|_| AtomicUsize::new(1)).collect();
    let mut tasks = Vec::with_capacity(n);
    for (((engine, events), handovers), worker) in engines
        .into_iter()
        .zip(event_rxs)
        .zip(hand_rxs)
        .zip(workers)
    {
        let media = (engine.shard().0 == 0).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            (crate::media::MediaServer::new(media_address, tx), rx)
        });
        let shard = Shard {
            media,
            transports: transports.for_shard(engine.shard().0),
            engine,
            events,
            handovers,
            peers: hand_txs.clone(),
            drain: drain_rx.clone(),
            in_flight: in_flight.clone(),
            resolver: resolver.clone(),
            archive: archive.clone(),
            metrics: metrics.clone(),
        };
        tasks.push(tokio::spawn(shard.run(worker)));
    }
    drop(hand_txs);
    shutdown.await;
    let _ = drain_tx.send(true);
    let mut engines = Vec::with_capacity(n);
    for task in tasks {
        match task.await {
            Ok(engine) => engines.push(engine),
            Err(e) => {
                tracing::error!(event = "server.shard_failed", error = %e, "a shard stopped abnormally")
            }
        }
    }
    let mut s = EngineStats::default();
    for e in &mut engines {
        s.add(&e.stats());
    }
    if let Some(owner) = engines.first_mut() {
        owner.write_back();
    }
    let t = transports.stats();
    let kernel_drops = udp_port.and_then(sip_transport::kernel_udp_drops);
    tracing::info!(
        event = "server.stopped",
        shards = n,
        requests = s.requests,
        responses = s.responses,
        malformed_answered = s.malformed_answered,
        malformed_dropped = s.malformed_dropped,
        auth_failures = s.auth_failures,
        shed = s.shed,
        lockouts = s.lockouts,
        refused_locked = s.refused_locked,
        unsealed_in_dialog = s.unsealed_in_dialog,
        relay_refused = s.relay_refused,
        stray_acks = s.stray_acks,
        acks_absorbed = s.acks_absorbed,
        not_sip = s.not_sip,
        kernel_udp_drops = kernel_drops.unwrap_or(0),
        oversized = t.oversized.load(Ordering::Relaxed),
        header_timeouts = t.header_timeouts.load(Ordering::Relaxed),
        rate_limited = t.rate_limited.load(Ordering::Relaxed),
        overload_dropped = t.overload_dropped.load(Ordering::Relaxed),
        connections_refused = t.connections_refused.load(Ordering::Relaxed),
        "server stopped"
    );
    Ok(())
}

/// One shard's engine and what feeds it.
struct Shard {
    engine: Engine,
    transports: Transports,
    /// Its connections' messages.
    events: mpsc::Receiver<Event>,
    /// What other shards hand it, and how to reach each of them.
    handovers: mpsc::UnboundedReceiver<Handover>,
    peers: Vec<mpsc::UnboundedSender<Handover>>,
    drain: watch::Receiver<bool>,
    /// Requests waiting for their final response, per shard: shards stop together, once none
    /// is left anywhere (a response may reach any shard's socket).
    in_flight: Arc<[AtomicUsize]>,
    /// Finds partners' Access Edges (an Edge's federation).
    resolver: Option<Arc<dyn PartnerResolver>>,
    /// The archive's local queue and writer.
    archive: Option<Arc<confab_archive::writer::Sink>>,
    /// Where the shard's figures are published for `/metrics`.
    metrics: Arc<crate::metrics::Metrics>,
    /// The owner shard's media streams (applications run there) and what they hear.
    media: Option<(
        crate::media::MediaServer,
        mpsc::UnboundedReceiver<crate::media::MediaNews>,
    )>,
}

impl Shard {
    /// Serves until the drain is over; gives the engine back.
    async fn run(mut self, worker: Option<Box<dyn Store>>) -> Engine {
        let mut udp = self.transports.udp_receiver();
        let mut datagrams = Vec::with_capacity(BATCH);
        // consecutive UDP batches that left datagrams waiting: the socket is filling up
        let mut udp_behind = 0u32;
        // reads on the request path go to a thread of their own when the database is remote
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let lookups_done = done_tx.clone();
        let jobs = worker.and_then(|store| store_worker(store, done_tx, self.metrics.clone()));
        self.engine.park_store_reads(jobs.is_some());
        let mut drain_until: Option<tokio::time::Instant> = None;
        let (me, _) = self.engine.shard();
        let mut next_publish = tokio::time::Instant::now();
        loop {
            if let Some(until) = drain_until {
                self.in_flight[me].store(self.engine.in_flight(), Ordering::Relaxed);
                let left: usize = self
                    .in_flight
                    .iter()
                    .map(|n| n.load(Ordering::Relaxed))
                    .sum();
                if left == 0 || tokio::time::Instant::now() >= until {
                    if me == 0 {
                        tracing::info!(
                            event = "server.drained",
                            unanswered = left,
                            "in-flight requests finished"
                        );
                    }
                    break;
                }
            }
            let deadline = self
                .engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let deadline = match drain_until {
                // wake at least every 50 ms while draining to see whether it is done
                Some(_) => Some(deadline.map_or(
                    tokio::time::Instant::now() + std::time::Duration::from_millis(50),
                    |d| d.min(tokio::time::Instant::now() + std::time::Duration::from_millis(50)),
                )),
                None => deadline,
            };
            tokio::select! {
                Ok(()) = self.drain.changed(), if drain_until.is_none() => {
                    self.engine.drain();
                    if me == 0 {
                        tracing::info!(event = "server.draining", in_flight = self.engine.in_flight(), "refusing new requests while those in flight finish");
                    }
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_FOR);
                }
                ev = self.events.recv() => {
                    let Some(ev) = ev else { break };
                    overload(&mut self.engine, &self.transports, self.events.len(), udp_behind);
                    let t = now();
                    self.engine.handle_event(t, ev);
                    // drain what is already queued before sending: fewer wake-ups under load
                    for _ in 0..BATCH {
                        match self.events.try_recv() {
                            Ok(ev) => self.engine.handle_event(t, ev),
                            Err(_) => break,
                        }
                    }
                }
                batch = udp.recv(&mut datagrams, BATCH) => {
                    udp_behind = match batch {
                        Batch::Full => udp_behind.saturating_add(1),
                        Batch::Drained => 0,
                    };
                    overload(&mut self.engine, &self.transports, self.events.len(), udp_behind);
                    let t = now();
                    for ev in datagrams.drain(..) {
                        self.engine.handle_event(t, ev);
                    }
                }
                Some(h) = self.handovers.recv() => {
                    let t = now();
                    self.engine.handle_handover(t, h);
                    while let Ok(h) = self.handovers.try_recv() {
                        self.engine.handle_handover(t, h);
                    }
                }
                Some(done) = done_rx.recv() => self.engine.job_done(now(), done),
                Some((app, stream, ev)) = media_news(&mut self.media) => {
                    self.engine.handle_media(now(), app, stream, ev);
                }
                () = sleep_until(deadline) => self.engine.handle_timeout(now()),
                // an idle shard still publishes what it last counted
                () = tokio::time::sleep_until(next_publish) => {}
            }
            self.flush(jobs.as_ref(), &lookups_done);
            if tokio::time::Instant::now() >= next_publish {
                self.publish();
                next_publish = tokio::time::Instant::now() + PUBLISH_EVERY;
            }
        }
        self.engine
    }

    /// Hands the shard's figures to the metrics.
    fn publish(&self) {
        let mut figures = self.engine.figures();
        figures.queue = self.events.len();
        let (me, _) = self.engine.shard();
        let shared = (me == 0).then(|| self.engine.shared_figures());
        self.metrics.publish(me, figures, shared);
    }

    /// Carries out what the engine asked for: store jobs, transmissions, closes, hand-overs.
    fn flush(
        &mut self,
        jobs: Option<&std::sync::mpsc::Sender<StoreJob>>,
        lookups_done: &mpsc::UnboundedSender<Fetched>,
    ) {
        // records first: a message is in the local queue before it is sent on
        self.flush_archive(lookups_done);
        while let Some(job) = self.engine.poll_job() {
            if let Some(jobs) = jobs {
                // the worker lives as long as this loop; a send cannot fail before it ends
                let _ = jobs.send(job);
            }
        }
        while let Some(lookup) = self.engine.poll_lookup() {
            tokio::spawn(find_partner(
                lookup,
                self.resolver.clone(),
                self.transports.clone(),
                lookups_done.clone(),
            ));
        }
        while let Some(host) = self.engine.poll_resolve() {
            // a trunk gateway's host name: the system resolver, off the engine
            let done = lookups_done.clone();
            tokio::spawn(async move {
                let found = tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map(|addrs| addrs.collect())
                    .map_err(|e| e.to_string());
                let _ = done.send(Fetched::resolved(host, found));
            });
        }
        while let Some((addr, name)) = self.engine.poll_partner_name() {
            self.transports.name_partner(addr, name);
        }
        while let Some((app, cmd)) = self.engine.poll_media() {
            if let Some((media, _)) = self.media.as_mut() {
                media.command(app, cmd);
            }
        }
        while let Some(o) = self.engine.poll_transmit() {
            self.transports.send(o.target, o.bytes);
        }
        while let Some(flow) = self.engine.poll_close() {
            self.transports.close(flow);
        }
        while let Some(ip) = self.engine.poll_trusted() {
            self.transports.trust(ip);
        }
        while let Some((shard, h)) = self.engine.poll_handover() {
            if let Some(peer) = self.peers.get(shard) {
                // a shard that already stopped (the very end of a drain) drops it
                let _ = peer.send(h);
            }
        }
    }
}

impl Shard {
    /// Appends the engine's records to the archive's local queue in one write; sends
    /// critical-mode ones to the writer, whose answer resumes the parked request.
    fn flush_archive(&mut self, done: &mpsc::UnboundedSender<Fetched>) {
        let mut lines = Vec::new();
        while let Some(item) = self.engine.poll_archive() {
            match (item.token, &self.archive) {
                (None, Some(_)) => lines.extend(item.record.to_line()),
                (None, None) => {}
                (Some(token), Some(sink)) => {
                    let done = done.clone();
                    sink.critical(confab_archive::writer::Critical {
                        records: vec![item.record],
                        done: Box::new(move |outcome| {
                            let _ = done.send(Fetched::archived(token, outcome));
                        }),
                    });
                }
                (Some(token), None) => {
                    let _ = done.send(Fetched::archived(
                        token,
                        Err("this server has no archive".into()),
                    ));
                }
            }
        }
        if let (false, Some(sink)) = (lines.is_empty(), &self.archive) {
            if let Err(e) = sink.append(&lines) {
                tracing::error!(event = "archive.queue_failed", error = %e, bytes = lines.len(), "cannot append to the archive's local queue: these records are lost (is the disk full?)");
            }
        }
    }
}

/// Runs a partner lookup off the engine: DNS finds the partner's Access Edge; for a proof,
/// the connection's certificate must be valid for that name.
async fn find_partner(
    lookup: Lookup,
    resolver: Option<Arc<dyn PartnerResolver>>,
    transports: Transports,
    done: mpsc::UnboundedSender<Fetched>,
) {
    let refused = |reason: String| PartnerError {
        status: 403,
        reason,
    };
    let found = match resolver {
        None => Err(refused("this server does not resolve partners".to_owned())),
        Some(r) => r.find(lookup.domain.clone(), lookup.edge.clone()).await,
    };
    let found = match (found, lookup.prove) {
        (Ok(edge), Some(flow)) => match transports.peer_valid_for(flow, &edge.fqdn) {
            Some(true) => Ok(edge),
            Some(false) => Err(refused(format!(
                "its certificate does not name {}, the Access Edge DNS gives for {}",
                edge.fqdn, lookup.domain
            ))),
            None => Err(refused("it showed no certificate".to_owned())),
        },
        (Err(e), Some(_)) => Err(refused(e.reason)),
        (found, None) => found,
    };
    // the shard stopped (the very end of a drain): nobody waits for the answer
    let _ = done.send(lookup.done(found));
}

/// A thread that runs the engine's store reads (blocking on the database) and hands each
/// result back to the engine's task; it ends when the engine's side of the queue is dropped.
fn store_worker(
    store: Box<dyn Store>,
    done: mpsc::UnboundedSender<Fetched>,
    metrics: Arc<crate::metrics::Metrics>,
) -> Option<std::sync::mpsc::Sender<StoreJob>> {
    let (tx, rx) = std::sync::mpsc::channel::<StoreJob>();
    let spawned = std::thread::Builder::new()
        .name("confab-store".into())
        .spawn(move || {
            for job in rx {
                let started = Instant::now();
                let answer = job.run(store.as_ref());
                metrics.store_call(started.elapsed());
                if done.send(answer).is_err() {
                    break;
                }
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::error!(event = "server.store_worker", error = %e, "could not start the store thread: database reads are made inline");
            None
        }
    }
}

/// Answers new work 503 while the engine is behind: more than a quarter of the stream queue
/// waiting, or UDP batches that keep leaving datagrams on the socket (a quarter of the queue's
/// worth in a row); off again once both are short. Addresses users signed in from are still
/// served, and the transports limit every other address to its share for a few seconds.
fn overload(engine: &mut Engine, transports: &Transports, stream_backlog: usize, udp_behind: u32) {
    let behind = QUEUE / 4 / BATCH;
    if stream_backlog > QUEUE / 4 || udp_behind as usize > behind {
        engine.set_overloaded(true);
        // and the transports limit each untrusted address to its share, before parsing
        transports.overloaded();
    } else if stream_backlog < QUEUE / 16 && udp_behind == 0 {
        engine.set_overloaded(false);
    }
}

pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What the owner shard's media streams heard (never, on other shards).
async fn media_news(
    media: &mut Option<(
        crate::media::MediaServer,
        mpsc::UnboundedReceiver<crate::media::MediaNews>,
    )>,
) -> Option<crate::media::MediaNews> {
    match media {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}
