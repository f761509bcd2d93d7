//! The media engine's tokio half: applications' streams (`confab_media::Stream`, sans-IO)
//! on UDP sockets of their own (RTP on an even port, RTCP on the next), one task per stream
//! that sends its frames and sender reports on time, reads what arrives, and reports what the
//! stream heard back to the owner shard. Commands never block the engine: they go to the
//! stream's task through a channel.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use confab_media::{MediaEvent, Stream};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::apps::MediaCommand;

/// What a stream heard: the application's index, the stream, the event.
pub type MediaNews = (usize, u64, MediaEvent);

/// The streams of one server.
pub struct MediaServer {
    address: IpAddr,
    streams: HashMap<(usize, u64), mpsc::UnboundedSender<MediaCommand>>,
    news: mpsc::UnboundedSender<MediaNews>,
    open: Arc<AtomicUsize>,
}

impl MediaServer {
    /// Streams bound on `address`, reporting to `news`.
    pub fn new(address: IpAddr, news: mpsc::UnboundedSender<MediaNews>) -> Self {
        Self {
            address,
            streams: HashMap::new(),
            news,
            open: Arc::default(),
        }
    }

    /// How many streams are open.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Carries out an application's command (must run inside the tokio runtime).
    pub fn command(&mut self, app: usize, cmd: MediaCommand) {
        let key = (app, cmd.stream());
        if let MediaCommand::Open {
            port, negotiated, ..
        } = &cmd
        {
            if !self.streams.contains_key(&key) {
                match self.start(app, key.1, *port, *negotiated) {
                    Ok(tx) => {
                        self.streams.insert(key, tx);
                    }
                    Err(e) => {
                        tracing::error!(event = "media.bind_failed", port, error = %e, "cannot open a media stream: the caller hears nothing")
                    }
                }
                return;
            }
        }
        let close = matches!(cmd, MediaCommand::Close { .. });
        if let Some(tx) = self.streams.get(&key) {
            let _ = tx.send(cmd);
        }
        if close {
            self.streams.remove(&key);
        }
    }

    fn start(
        &self,
        app: usize,
        stream: u64,
        port: u16,
        negotiated: confab_media::Negotiated,
    ) -> std::io::Result<mpsc::UnboundedSender<MediaCommand>> {
        let bind = |port: u16| -> std::io::Result<UdpSocket> {
            let socket = std::net::UdpSocket::bind(SocketAddr::new(self.address, port))?;
            socket.set_nonblocking(true)?;
            UdpSocket::from_std(socket)
        };
        let sockets = (bind(port)?, bind(port.wrapping_add(1))?);
        let cname = format!("confab@{}", self.address);
        let mut seed = [0u8; 10];
        let _ = getrandom::getrandom(&mut seed);
        let ssrc = u32::from_be_bytes([seed[0], seed[1], seed[2], seed[3]]);
        let seq = u16::from_be_bytes([seed[4], seed[5]]);
        let ts = u32::from_be_bytes([seed[6], seed[7], seed[8], seed[9]]);
        let s = Stream::new(Instant::now(), negotiated, ssrc, seq, ts);
        let (tx, rx) = mpsc::unbounded_channel();
        let news = self.news.clone();
        let open = self.open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            run(s, sockets, &cname, rx, |ev| {
                let _ = news.send((app, stream, ev));
            })
            .await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(tx)
    }
}

/// One stream's task: until closed (or its server is gone).
async fn run(
    mut s: Stream,
    (rtp, rtcp): (UdpSocket, UdpSocket),
    cname: &str,
    mut commands: mpsc::UnboundedReceiver<MediaCommand>,
    report: impl Fn(MediaEvent),
) {
    let mut buf = vec![0u8; 2048];
    let mut control = vec![0u8; 2048];
    let mut packet = Vec::with_capacity(256);
    // one timer, moved to each next deadline rather than made anew on every frame
    let sleep = tokio::time::sleep(IDLE);
    tokio::pin!(sleep);
    loop {
        let now = Instant::now();
        while s.poll_transmit(now, &mut packet) {
            // a full socket buffer drops the frame, as the network would
            let _ = rtp.try_send_to(&packet, s.remote());
        }
        if s.poll_rtcp(now, unix_micros(), cname, &mut packet) {
            let _ = rtcp.try_send_to(&packet, s.remote_rtcp());
        }
        s.handle_timeout(now);
        while let Some(ev) = s.poll_event() {
            report(ev);
        }
        let deadline = s.poll_timeout().unwrap_or(now + IDLE);
        sleep
            .as_mut()
            .reset(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None | Some(MediaCommand::Close { .. }) => break,
                Some(MediaCommand::Open { negotiated, .. }) => s.renegotiate(negotiated),
                Some(MediaCommand::Play { clip, looped, tag, .. }) => s.play(Instant::now(), clip, looped, tag),
                Some(MediaCommand::Stop { .. }) => s.stop(),
                Some(MediaCommand::WatchSilence { after, .. }) => s.watch_silence(Instant::now(), after),
            },
            got = rtp.recv_from(&mut buf) => {
                if let Ok((n, _)) = got {
                    s.handle_packet(Instant::now(), &buf[..n]);
                }
            }
            got = rtcp.recv_from(&mut control) => {
                if let Ok((n, _)) = got {
                    s.handle_rtcp(&control[..n]);
                }
            }
            () = &mut sleep => {}
        }
    }
}

/// How long a stream with nothing to do sleeps before looking again.
const IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
