//! The media engine's tokio half: applications' streams (`confab_media::Stream`, sans-IO) on
//! UDP sockets of their own (RTP on an even port, RTCP on the next). One task, the pacer,
//! owns every stream: it sends each frame and sender report when due — all those due within
//! [`SLACK`] in one wake-up, so a thousand streams cost a few hundred wake-ups a second, not
//! fifty thousand — applies commands, hands streams what arrived, and reports what they heard
//! back to the owner shard. Each stream's sockets are read by a small task that only forwards
//! datagrams to the pacer, and costs nothing while its caller is silent. Commands never block
//! the engine: they go to the pacer through a channel.
//!
//! Conferences are mixed by the pacer too: every 20 ms on the conference's own clock each
//! member's oldest frame heard goes into the mix (`confab_media::mix`) and each member is sent
//! what the others said — except while a clip (an announcement) plays on it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_media::mix::Mixer;
use confab_media::stream::PTIME;
use confab_media::{MediaEvent, Stream};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::apps::MediaCommand;

/// What a stream heard: the application's index, the stream, the event.
pub type MediaNews = (usize, u64, MediaEvent);

/// Frames due this soon are sent now: at most this much early, for wake-ups in batches.
const SLACK: Duration = Duration::from_millis(2);

/// How long the pacer sleeps when no stream has anything due.
const IDLE: Duration = Duration::from_secs(3600);

type Key = (usize, u64);

/// A datagram for a stream: RTP (`false`) or RTCP (`true`).
type Arrival = (Key, bool, Vec<u8>);

/// The streams of one server: a handle on its pacer task.
pub struct MediaServer {
    commands: mpsc::UnboundedSender<(usize, MediaCommand)>,
    open: Arc<AtomicUsize>,
}

impl MediaServer {
    /// Streams bound on `address`, reporting to `news` (starts the pacer: call it inside the
    /// tokio runtime).
    pub fn new(address: IpAddr, news: mpsc::UnboundedSender<MediaNews>) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        let pacer = Pacer {
            address,
            cname: format!("confab@{address}"),
            streams: HashMap::new(),
            due: BinaryHeap::new(),
            news,
            open: open.clone(),
            conferences: HashMap::new(),
            member_of: HashMap::new(),
        };
        tokio::spawn(pacer.run(rx));
        Self { commands, open }
    }

    /// How many streams are open.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Passes an application's command to the pacer.
    pub fn command(&mut self, app: usize, cmd: MediaCommand) {
        let _ = self.commands.send((app, cmd));
    }
}

struct Entry {
    stream: Stream,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    /// The deadline queued for it in `due` (others there are stale).
    scheduled: Option<Instant>,
    reader: tokio::task::JoinHandle<()>,
}

struct Pacer {
    address: IpAddr,
    cname: String,
    streams: HashMap<Key, Entry>,
    due: BinaryHeap<Reverse<(Instant, Key)>>,
    news: mpsc::UnboundedSender<MediaNews>,
    open: Arc<AtomicUsize>,
    conferences: HashMap<Key, Conference>,
    /// The conference each member stream is in.
    member_of: HashMap<Key, Key>,
}

/// A conference's mix and its clock.
struct Conference {
    mixer: Mixer,
    /// Member streams (of the conference's application), in the order they joined.
    members: Vec<u64>,
    next_tick: Instant,
}

impl Pacer {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<(usize, MediaCommand)>) {
        let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<Arrival>();
        let mut packet = Vec::with_capacity(256);
        let sleep = tokio::time::sleep(IDLE);
        tokio::pin!(sleep);
        loop {
            self.send_due(&mut packet);
            let next = self
                .due
                .peek()
                .map(|Reverse((at, _))| *at)
                .into_iter()
                .chain(self.conferences.values().map(|c| c.next_tick))
                .min()
                .unwrap_or_else(|| Instant::now() + IDLE);
            sleep.as_mut().reset(tokio::time::Instant::from_std(
                next.checked_sub(SLACK).unwrap_or(next),
            ));
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some((app, cmd)) => self.command(app, cmd, &arrived_tx),
                    None => break,
                },
                Some((key, control, bytes)) = arrived.recv() => {
                    if let Some(e) = self.streams.get_mut(&key) {
                        if control {
                            e.stream.handle_rtcp(&bytes);
                        } else {
                            e.stream.handle_packet(Instant::now(), &bytes);
                        }
                    }
                    self.settle(key);
                }
                () = &mut sleep => {}
            }
        }
        for (_, e) in self.streams.drain() {
            e.reader.abort();
        }
    }

    /// Every stream with something due within [`SLACK`]: its frames and reports sent, its
    /// timers run.
    fn send_due(&mut self, packet: &mut Vec<u8>) {
        let now = Instant::now();
        let soon = now + SLACK;
        self.mix_due(soon, packet);
        // each stream once or twice a round at most: a stream whose deadline kept coming back
        // due could not hold the pacer
        let mut budget = self.due.len() + 2 * self.streams.len();
        while let Some(&Reverse((at, key))) = self.due.peek() {
            if at > soon || budget == 0 {
                break;
            }
            budget -= 1;
            self.due.pop();
            let Some(e) = self.streams.get_mut(&key) else {
                continue;
            };
            if e.scheduled != Some(at) {
                continue; // stale: the stream was rescheduled
            }
            e.scheduled = None;
            while e.stream.poll_transmit(soon, packet) {
                // a full socket buffer drops the frame, as the network would
                let _ = e.rtp.try_send_to(packet, e.stream.remote());
            }
            // everything due by `soon`, or its deadline would come straight back
            if e.stream.poll_rtcp(soon, unix_micros(), &self.cname, packet) {
                let _ = e.rtcp.try_send_to(packet, e.stream.remote_rtcp());
            }
            e.stream.handle_timeout(soon);
            self.settle(key);
        }
    }

    /// Every conference whose tick is due by `soon`: its members' frames mixed and sent.
    fn mix_due(&mut self, soon: Instant, packet: &mut Vec<u8>) {
        let mut sent = Vec::new();
        for (&(app, _), c) in &mut self.conferences {
            if c.next_tick > soon {
                continue;
            }
            // far behind (a stalled pacer): the ticks missed are skipped, not sent in a burst
            while soon.saturating_duration_since(c.next_tick) > PTIME * 5 {
                c.next_tick += PTIME;
            }
            let tick = c.next_tick;
            c.next_tick += PTIME;
            for &id in &c.members {
                if let Some(f) = self
                    .streams
                    .get_mut(&(app, id))
                    .and_then(|e| e.stream.take_heard())
                {
                    c.mixer.put(id, &f);
                }
            }
            for (id, frame) in c.mixer.mix() {
                let Some(e) = self.streams.get_mut(&(app, id)) else {
                    continue;
                };
                if e.stream.send_frame(tick, &frame, packet) {
                    let _ = e.rtp.try_send_to(packet, e.stream.remote());
                    sent.push((app, id));
                }
            }
        }
        // their sender reports are due later: queued
        for key in sent {
            self.settle(key);
        }
    }

    /// Stream `key` into conference `conf` (of the same application), out of any other.
    fn join(&mut self, key: Key, conf: Key) {
        self.leave(key);
        let Some(e) = self.streams.get_mut(&key) else {
            return;
        };
        e.stream.keep_audio(true);
        let c = self.conferences.entry(conf).or_insert_with(|| Conference {
            mixer: Mixer::default(),
            members: Vec::new(),
            next_tick: Instant::now(),
        });
        c.mixer.add(key.1);
        c.members.push(key.1);
        self.member_of.insert(key, conf);
    }

    /// Stream `key` out of its conference, which ends with its last member.
    fn leave(&mut self, key: Key) {
        let Some(conf) = self.member_of.remove(&key) else {
            return;
        };
        if let Some(e) = self.streams.get_mut(&key) {
            e.stream.keep_audio(false);
        }
        if let Some(c) = self.conferences.get_mut(&conf) {
            c.mixer.remove(key.1);
            c.members.retain(|&m| m != key.1);
            if c.members.is_empty() {
                self.conferences.remove(&conf);
            }
        }
    }

    /// Reports what stream `key` heard and queues its next deadline.
    fn settle(&mut self, key: Key) {
        let Some(e) = self.streams.get_mut(&key) else {
            return;
        };
        while let Some(ev) = e.stream.poll_event() {
            let _ = self.news.send((key.0, key.1, ev));
        }
        let next = e.stream.poll_timeout();
        if next != e.scheduled {
            e.scheduled = next;
            if let Some(at) = next {
                self.due.push(Reverse((at, key)));
            }
        }
    }

    fn command(&mut self, app: usize, cmd: MediaCommand, arrived: &mpsc::UnboundedSender<Arrival>) {
        let key = (app, cmd.stream());
        let now = Instant::now();
        match cmd {
            MediaCommand::Open {
                port, negotiated, ..
            } => match self.streams.get_mut(&key) {
                Some(e) => e.stream.renegotiate(negotiated),
                None => match self.open_stream(key, port, negotiated, arrived) {
                    Ok(e) => {
                        self.streams.insert(key, e);
                        self.open.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::error!(event = "media.bind_failed", port, error = %e, "cannot open a media stream: the caller hears nothing")
                    }
                },
            },
            MediaCommand::Close { .. } => {
                self.leave(key);
                if let Some(e) = self.streams.remove(&key) {
                    e.reader.abort();
                    self.open.fetch_sub(1, Ordering::Relaxed);
                }
                return;
            }
            MediaCommand::Play {
                clip, looped, tag, ..
            } => {
                if let Some(e) = self.streams.get_mut(&key) {
                    e.stream.play(now, clip, looped, tag);
                }
            }
            MediaCommand::Stop { .. } => {
                if let Some(e) = self.streams.get_mut(&key) {
                    e.stream.stop();
                }
            }
            MediaCommand::Join { conference, .. } => self.join(key, (app, conference)),
            MediaCommand::Leave { .. } => self.leave(key),
            MediaCommand::Mute { muted, .. } => {
                if let Some(c) = self
                    .member_of
                    .get(&key)
                    .and_then(|conf| self.conferences.get_mut(conf))
                {
                    c.mixer.set_muted(key.1, muted);
                }
            }
            MediaCommand::WatchSilence { after, .. } => {
                if let Some(e) = self.streams.get_mut(&key) {
                    e.stream.watch_silence(now, after);
                }
            }
            MediaCommand::WatchMedia { after, .. } => {
                if let Some(e) = self.streams.get_mut(&key) {
                    e.stream.watch_media(now, after);
                }
            }
        }
        self.settle(key);
    }

    fn open_stream(
        &self,
        key: Key,
        port: u16,
        negotiated: confab_media::Negotiated,
        arrived: &mpsc::UnboundedSender<Arrival>,
    ) -> std::io::Result<Entry> {
        let bind = |port: u16| -> std::io::Result<Arc<UdpSocket>> {
            let socket = std::net::UdpSocket::bind(SocketAddr::new(self.address, port))?;
            socket.set_nonblocking(true)?;
            Ok(Arc::new(UdpSocket::from_std(socket)?))
        };
        let (rtp, rtcp) = (bind(port)?, bind(port.wrapping_add(1))?);
        let mut seed = [0u8; 10];
        let _ = getrandom::getrandom(&mut seed);
        let ssrc = u32::from_be_bytes([seed[0], seed[1], seed[2], seed[3]]);
        let seq = u16::from_be_bytes([seed[4], seed[5]]);
        let ts = u32::from_be_bytes([seed[6], seed[7], seed[8], seed[9]]);
        let reader = tokio::spawn(read(key, rtp.clone(), rtcp.clone(), arrived.clone()));
        Ok(Entry {
            stream: Stream::new(Instant::now(), negotiated, ssrc, seq, ts),
            rtp,
            rtcp,
            scheduled: None,
            reader,
        })
    }
}

/// Forwards what arrives on a stream's sockets to the pacer, until aborted.
async fn read(
    key: Key,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    to: mpsc::UnboundedSender<Arrival>,
) {
    let mut media = vec![0u8; 2048];
    let mut control = vec![0u8; 2048];
    loop {
        let (control_packet, bytes) = tokio::select! {
            got = rtp.recv_from(&mut media) => match got {
                Ok((n, _)) => (false, media[..n].to_vec()),
                Err(_) => continue,
            },
            got = rtcp.recv_from(&mut control) => match got {
                Ok((n, _)) => (true, control[..n].to_vec()),
                Err(_) => continue,
            },
        };
        if to.send((key, control_packet, bytes)).is_err() {
            return;
        }
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
