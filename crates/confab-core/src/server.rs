//! Runs an [`Engine`] on real sockets: transport events in, transmissions out, timers on the
//! tokio clock. One task owns the engine and reads the UDP sockets itself (no hand-over per
//! datagram); connections run on tasks of their own and queue their messages to it.

use std::future::Future;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use confab_store::Store;
use sip_transport::{Batch, Config as TransportConfig, Listeners, Transports};
use tokio::sync::mpsc;

use crate::config::EngineConfig;
use crate::engine::{Engine, Fetched, Now, StoreJob};

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
    Now {
        mono: Instant::now(),
        unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    }
}

/// Messages that may wait for the engine; the transports drop (and count) what does not fit.
const QUEUE: usize = 16_384;

/// Messages handled between two rounds of sending.
const BATCH: usize = 256;

/// How long a shutdown waits for requests in flight to be answered.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` resolves, then drains: new requests are refused with 503 while
/// those in flight finish (at most [`DRAIN_FOR`]).
pub async fn run(
    cfg: EngineConfig,
    store: Box<dyn Store>,
    listeners: Listeners,
    transport_cfg: TransportConfig,
    secret: [u8; 32],
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let transports = Transports::start(listeners, transport_cfg, tx)?;
    let mut udp = transports.udp_receiver();
    let mut datagrams = Vec::with_capacity(BATCH);
    // consecutive UDP batches that left datagrams waiting: the socket is filling up
    let mut udp_behind = 0u32;
    let worker = store.worker_handle();
    let mut engine = Engine::new(cfg, store, secret, now())?;
    // reads on the request path go to a thread of their own when the database is remote
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let jobs = worker.and_then(|store| store_worker(store, done_tx));
    engine.park_store_reads(jobs.is_some());
    tokio::pin!(shutdown);
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        if let Some(until) = drain_until {
            let left = engine.in_flight();
            if left == 0 || tokio::time::Instant::now() >= until {
                tracing::info!(
                    event = "server.drained",
                    unanswered = left,
                    "in-flight requests finished"
                );
                break;
            }
        }
        let deadline = engine.poll_timeout().map(tokio::time::Instant::from_std);
        let deadline = match drain_until {
            // wake at least every 50 ms while draining to see whether it is done
            Some(_) => Some(deadline.map_or(
                tokio::time::Instant::now() + std::time::Duration::from_millis(50),
                |d| d.min(tokio::time::Instant::now() + std::time::Duration::from_millis(50)),
            )),
            None => deadline,
        };
        tokio::select! {
            () = &mut shutdown, if drain_until.is_none() => {
                engine.drain();
                tracing::info!(event = "server.draining", in_flight = engine.in_flight(), "refusing new requests while those in flight finish");
                drain_until = Some(tokio::time::Instant::now() + DRAIN_FOR);
            }
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                overload(&mut engine, rx.len(), udp_behind);
                let t = now();
                engine.handle_event(t, ev);
                // drain what is already queued before sending: fewer wake-ups under load
                for _ in 0..BATCH {
                    match rx.try_recv() {
                        Ok(ev) => engine.handle_event(t, ev),
                        Err(_) => break,
                    }
                }
            }
            batch = udp.recv(&mut datagrams, BATCH) => {
                udp_behind = match batch {
                    Batch::Full => udp_behind.saturating_add(1),
                    Batch::Drained => 0,
                };
                overload(&mut engine, rx.len(), udp_behind);
                let t = now();
                for ev in datagrams.drain(..) {
                    engine.handle_event(t, ev);
                }
            }
            Some(done) = done_rx.recv() => engine.job_done(now(), done),
            () = sleep_until(deadline) => engine.handle_timeout(now()),
        }
        while let Some(job) = engine.poll_job() {
            if let Some(jobs) = &jobs {
                // the worker lives as long as this loop; a send cannot fail before it ends
                let _ = jobs.send(job);
            }
        }
        while let Some(o) = engine.poll_transmit() {
            transports.send(o.target, o.bytes);
        }
        while let Some(flow) = engine.poll_close() {
            transports.close(flow);
        }
    }
    engine.write_back();
    let s = engine.stats();
    let t = transports.stats();
    tracing::info!(
        event = "server.stopped",
        requests = s.requests,
        responses = s.responses,
        malformed_answered = s.malformed_answered,
        malformed_dropped = s.malformed_dropped,
        auth_failures = s.auth_failures,
        shed = s.shed,
        lockouts = s.lockouts,
        oversized = t.oversized.load(std::sync::atomic::Ordering::Relaxed),
        header_timeouts = t.header_timeouts.load(std::sync::atomic::Ordering::Relaxed),
        rate_limited = t.rate_limited.load(std::sync::atomic::Ordering::Relaxed),
        connections_refused = t
            .connections_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        "server stopped"
    );
    Ok(())
}

/// A thread that runs the engine's store reads (blocking on the database) and hands each
/// result back to the engine's task; it ends when the engine's side of the queue is dropped.
fn store_worker(
    store: Box<dyn Store>,
    done: mpsc::UnboundedSender<Fetched>,
) -> Option<std::sync::mpsc::Sender<StoreJob>> {
    let (tx, rx) = std::sync::mpsc::channel::<StoreJob>();
    let spawned = std::thread::Builder::new()
        .name("confab-store".into())
        .spawn(move || {
            for job in rx {
                if done.send(job.run(store.as_ref())).is_err() {
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
/// worth in a row); off again once both are short.
fn overload(engine: &mut Engine, stream_backlog: usize, udp_behind: u32) {
    let behind = QUEUE / 4 / BATCH;
    if stream_backlog > QUEUE / 4 || udp_behind as usize > behind {
        engine.set_overloaded(true);
    } else if stream_backlog < QUEUE / 16 && udp_behind == 0 {
        engine.set_overloaded(false);
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
