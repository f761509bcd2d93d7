//! One call's media endpoint: the clips it plays, paced one 20 ms frame at a time with
//! sequence numbers and timestamps that run on through pauses (RFC 3550 §5.1: the timestamp
//! follows the sampling clock, the marker bit starts each talkspurt), and what it hears:
//! digits (RFC 4733) and silence (no packets, or only quiet ones, for a while). In a
//! conference it also keeps the audio it hears (decoded, a few frames) for the mix, and sends
//! the frames the mix makes for it in place of a clip.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audio::{Clip, Frame, FRAME};
use crate::dtmf::DtmfReceiver;
use crate::g711;
use crate::rtp::{self, Header};
use crate::sdp::{Law, Negotiated};

/// The time one frame lasts.
pub const PTIME: Duration = Duration::from_millis(20);
/// A sender this far behind skips frames rather than sending a burst.
const MAX_LATE: Duration = Duration::from_millis(100);
/// Mean magnitude of a frame below which it counts as silence.
const QUIET: u32 = 200;
/// Frames heard and not yet mixed that a stream keeps: a peer whose packets come in bursts
/// is smoothed over this many; more, and the oldest go.
const HEARD_DEPTH: usize = 4;

/// What a stream tells its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// A key was pressed.
    Digit(char),
    /// The clip of this tag played to its end (a looped clip never does).
    Finished(u64),
    /// Nothing audible was heard for the period set with [`Stream::watch_silence`].
    Silence,
    /// No packet at all came for the period set with [`Stream::watch_media`]: the peer is
    /// gone.
    Lost,
}

struct Playing {
    clip: Arc<Clip>,
    frame: usize,
    looped: bool,
    tag: u64,
}

/// A media endpoint. Feed it with [`Stream::handle_packet`] and [`Stream::handle_timeout`],
/// send what [`Stream::poll_transmit`] writes to [`Stream::remote`], ask
/// [`Stream::poll_timeout`] when to come back.
pub struct Stream {
    negotiated: Negotiated,
    ssrc: u32,
    seq: u16,
    /// The timestamp of the next frame sent.
    ts: u32,
    /// When the next frame is due (while playing).
    next_send: Option<Instant>,
    /// When the last frame was due: pauses advance the timestamp by what they lasted.
    last_frame: Option<Instant>,
    marker: bool,
    playing: Option<Playing>,
    dtmf: DtmfReceiver,
    silence_after: Option<Duration>,
    last_heard: Instant,
    lost_after: Option<Duration>,
    last_packet: Instant,
    events: VecDeque<MediaEvent>,
    sent: u64,
    received: u64,
    /// When the next sender report is due (while sending).
    next_report: Option<Instant>,
    reports_heard: u64,
    /// The audio heard, decoded, while in a conference (`None`: not kept).
    heard: Option<VecDeque<Frame>>,
}

impl Stream {
    /// A stream toward the peer of `negotiated`; `ssrc` and the first sequence number and
    /// timestamp are the caller's random choice (RFC 3550 §5.1).
    pub fn new(now: Instant, negotiated: Negotiated, ssrc: u32, seq: u16, ts: u32) -> Self {
        Self {
            negotiated,
            ssrc,
            seq,
            ts,
            next_send: None,
            last_frame: None,
            marker: true,
            playing: None,
            dtmf: DtmfReceiver::default(),
            silence_after: None,
            last_heard: now,
            lost_after: None,
            last_packet: now,
            events: VecDeque::new(),
            sent: 0,
            received: 0,
            next_report: None,
            reports_heard: 0,
            heard: None,
        }
    }

    /// Where its packets go.
    pub fn remote(&self) -> SocketAddr {
        self.negotiated.remote
    }

    /// The peer's new description (a re-INVITE moved or changed it).
    pub fn renegotiate(&mut self, negotiated: Negotiated) {
        self.negotiated = negotiated;
    }

    /// Plays `clip` from its start, in place of what was playing; `looped` plays it again
    /// and again until stopped. `tag` names it in [`MediaEvent::Finished`].
    pub fn play(&mut self, now: Instant, clip: Arc<Clip>, looped: bool, tag: u64) {
        if self.next_send.is_none() {
            self.resume(now);
        }
        self.playing = Some(Playing {
            clip,
            frame: 0,
            looped,
            tag,
        });
    }

    /// Stops playing; the stream stays open, silent.
    pub fn stop(&mut self) {
        self.playing = None;
        self.next_send = None;
    }

    /// Reports [`MediaEvent::Silence`] once nothing audible was heard for `after` (from now);
    /// `None` stops watching.
    pub fn watch_silence(&mut self, now: Instant, after: Option<Duration>) {
        self.silence_after = after;
        self.last_heard = now;
    }

    /// Reports [`MediaEvent::Lost`] once no packet came for `after` (from now); `None` stops
    /// watching.
    pub fn watch_media(&mut self, now: Instant, after: Option<Duration>) {
        self.lost_after = after;
        self.last_packet = now;
    }

    /// A datagram that arrived for this stream.
    pub fn handle_packet(&mut self, now: Instant, bytes: &[u8]) {
        let Ok((header, payload)) = rtp::parse(bytes) else {
            return;
        };
        self.received += 1;
        self.last_packet = now;
        let codec = self.negotiated.codec;
        if Some(header.payload_type) == codec.dtmf {
            self.last_heard = now;
            if let Some(d) = self.dtmf.receive(&header, payload) {
                self.events.push_back(MediaEvent::Digit(d));
            }
        } else if header.payload_type == codec.law.payload_type() {
            if loud(codec.law, payload) {
                self.last_heard = now;
            }
            if let Some(heard) = self.heard.as_mut() {
                if heard.len() == HEARD_DEPTH {
                    heard.pop_front();
                }
                heard.push_back(decode_frame(codec.law, payload));
            }
        }
    }

    /// Keeps what it hears for a mix (`true`) or stops (`false`, forgetting what it kept).
    pub fn keep_audio(&mut self, keep: bool) {
        self.heard = keep.then(VecDeque::new);
    }

    /// The oldest frame heard and not taken yet.
    pub fn take_heard(&mut self) -> Option<Frame> {
        self.heard.as_mut()?.pop_front()
    }

    /// Whether a clip is playing (a mix frame is not sent over it).
    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// Sends `samples` as the frame due at `due` (a conference's mix, on the conference's
    /// clock): written into `out`. A stream playing a clip sends nothing (the clip goes on).
    pub fn send_frame(&mut self, due: Instant, samples: &Frame, out: &mut Vec<u8>) -> bool {
        if self.playing.is_some() {
            return false;
        }
        match self.last_frame {
            // after a pause (a clip ended a while ago, or nothing was sent): a new talkspurt,
            // the timestamp moved on by the time that passed
            Some(last) if due.saturating_duration_since(last) < PTIME + PTIME / 2 => {}
            _ => self.resume(due),
        }
        self.next_send = None;
        let law = self.negotiated.codec.law;
        let mut payload = [0u8; FRAME];
        for (b, &x) in payload.iter_mut().zip(samples) {
            *b = encode(law, x);
        }
        self.write_frame(due, &payload, out);
        true
    }

    /// Writes the next packet into `out` if one is due; call again until it says no.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        let Some(due) = self.next_send else {
            return false;
        };
        if now < due {
            return false;
        }
        let Some(p) = self.playing.as_mut() else {
            self.next_send = None;
            return false;
        };
        // far behind (a stalled task): skip the frames missed rather than burst them
        let mut due = due;
        while now.saturating_duration_since(due) > MAX_LATE {
            due += PTIME;
            self.ts = self.ts.wrapping_add(FRAME as u32);
            p.frame += 1;
        }
        if p.frame >= p.clip.frames() {
            if p.looped {
                p.frame %= p.clip.frames().max(1);
            } else {
                let tag = p.tag;
                self.events.push_back(MediaEvent::Finished(tag));
                self.playing = None;
                self.next_send = None;
                return false;
            }
        }
        let law = self.negotiated.codec.law;
        let bytes = p.clip.bytes(law);
        let start = p.frame * FRAME;
        let chunk = &bytes[start..(start + FRAME).min(bytes.len())];
        let mut payload = [silence(law); FRAME];
        payload[..chunk.len()].copy_from_slice(chunk);
        p.frame += 1;
        self.write_frame(due, &payload, out);
        self.next_send = Some(due + PTIME);
        true
    }

    /// Writes the packet of the frame due at `due` into `out`, the sequence number and
    /// timestamp moved on.
    fn write_frame(&mut self, due: Instant, payload: &[u8; FRAME], out: &mut Vec<u8>) {
        out.clear();
        rtp::write(
            &Header {
                marker: std::mem::take(&mut self.marker),
                payload_type: self.negotiated.codec.law.payload_type(),
                seq: self.seq,
                timestamp: self.ts,
                ssrc: self.ssrc,
            },
            payload,
            out,
        );
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(FRAME as u32);
        self.sent += 1;
        self.next_report.get_or_insert(due + crate::rtcp::INTERVAL);
        self.last_frame = Some(due);
    }

    /// Writes a sender report (RFC 3550 §6.4.1) into `out` if one is due: every
    /// [`crate::rtcp::INTERVAL`] once something was sent. `unix_micros` is the wall clock now;
    /// it goes to the peer's RTP port + 1.
    pub fn poll_rtcp(
        &mut self,
        now: Instant,
        unix_micros: u64,
        cname: &str,
        out: &mut Vec<u8>,
    ) -> bool {
        match self.next_report {
            Some(due) if now >= due => {}
            _ => return false,
        }
        self.next_report = Some(now + crate::rtcp::INTERVAL);
        // the timestamp the sampling clock shows now
        let since = self
            .last_frame
            .map_or(0, |l| now.saturating_duration_since(l).as_micros() as u64);
        let report = crate::rtcp::SenderReport {
            ssrc: self.ssrc,
            unix_micros,
            rtp_timestamp: self
                .ts
                .wrapping_sub(FRAME as u32)
                .wrapping_add((since * 8 / 1000) as u32),
            packets: self.sent as u32,
            octets: (self.sent * FRAME as u64) as u32,
        };
        out.clear();
        crate::rtcp::write_report(&report, cname, out);
        true
    }

    /// A datagram that arrived on the RTCP port: reports are counted.
    pub fn handle_rtcp(&mut self, bytes: &[u8]) {
        if let Ok(r) = crate::rtcp::read(bytes) {
            self.reports_heard += r.reports as u64;
        }
    }

    /// Where its reports go: the peer's RTP port + 1.
    pub fn remote_rtcp(&self) -> SocketAddr {
        let r = self.negotiated.remote;
        SocketAddr::new(r.ip(), r.port().wrapping_add(1))
    }

    /// Checks for silence and for a peer that is gone.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(after) = self.silence_after {
            if now >= self.last_heard + after {
                self.silence_after = None;
                self.events.push_back(MediaEvent::Silence);
            }
        }
        if let Some(after) = self.lost_after {
            if now >= self.last_packet + after {
                self.lost_after = None;
                self.events.push_back(MediaEvent::Lost);
            }
        }
    }

    /// When to call again: the next frame, or the end of the silence watched.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let silence = self.silence_after.map(|a| self.last_heard + a);
        let lost = self.lost_after.map(|a| self.last_packet + a);
        [self.next_send, silence, lost, self.next_report]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Packets sent and received.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent, self.received)
    }

    /// RTCP reports heard from the peer.
    pub fn reports_heard(&self) -> u64 {
        self.reports_heard
    }

    /// After a pause, the timestamp moves on by the time that passed, and a talkspurt begins.
    fn resume(&mut self, now: Instant) {
        if let Some(last) = self.last_frame {
            let gap = now.saturating_duration_since(last);
            let frames = (gap.as_micros() / PTIME.as_micros()).max(1) as u32;
            self.ts = self
                .ts
                .wrapping_add((frames - 1).wrapping_mul(FRAME as u32));
        }
        self.marker = true;
        self.next_send = Some(now);
    }
}

fn silence(law: Law) -> u8 {
    match law {
        Law::Ulaw => g711::ULAW_SILENCE,
        Law::Alaw => g711::ALAW_SILENCE,
    }
}

fn encode(law: Law, sample: i16) -> u8 {
    match law {
        Law::Ulaw => g711::ulaw_encode(sample),
        Law::Alaw => g711::alaw_encode(sample),
    }
}

/// A payload decoded to one frame (short ones padded with silence, long ones cut).
fn decode_frame(law: Law, payload: &[u8]) -> Frame {
    let decode = match law {
        Law::Ulaw => g711::ulaw_decode,
        Law::Alaw => g711::alaw_decode,
    };
    let mut f = [0i16; FRAME];
    for (s, &b) in f.iter_mut().zip(payload) {
        *s = decode(b);
    }
    f
}

/// Whether a frame of `law` is above the quiet threshold.
fn loud(law: Law, payload: &[u8]) -> bool {
    if payload.is_empty() {
        return false;
    }
    let decode = match law {
        Law::Ulaw => g711::ulaw_decode,
        Law::Alaw => g711::alaw_decode,
    };
    let sum: u32 = payload
        .iter()
        .map(|&b| u32::from(decode(b).unsigned_abs()))
        .sum();
    sum / payload.len() as u32 > QUIET
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{Codec, Direction};

    fn negotiated(law: Law) -> Negotiated {
        Negotiated {
            remote: "127.0.0.1:6000".parse().unwrap(),
            codec: Codec {
                law,
                dtmf: Some(101),
            },
            direction: Direction::SendRecv,
        }
    }

    /// Every packet sent by `t` (stepping 1 ms), as (header, payload).
    fn run(s: &mut Stream, from: Instant, until: Duration) -> Vec<(Header, Vec<u8>)> {
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut t = from;
        while t <= from + until {
            while s.poll_transmit(t, &mut buf) {
                let (h, p) = rtp::parse(&buf).unwrap();
                got.push((h, p.to_vec()));
            }
            s.handle_timeout(t);
            t += Duration::from_millis(1);
        }
        got
    }

    #[test]
    fn a_clip_is_sent_one_frame_every_20_ms_with_running_numbers_then_reported_finished() {
        let t0 = Instant::now();
        let clip = Arc::new(Clip::from_pcm(
            &(0..400).map(|i| i as i16 * 50).collect::<Vec<_>>(),
        ));
        let mut s = Stream::new(t0, negotiated(Law::Alaw), 9, 65_534, 1000);
        s.play(t0, clip.clone(), false, 7);
        assert_eq!(s.poll_timeout(), Some(t0));
        let got = run(&mut s, t0, Duration::from_millis(200));
        assert_eq!(got.len(), 3, "400 samples: three frames, the last padded");
        let seqs: Vec<u16> = got.iter().map(|(h, _)| h.seq).collect();
        assert_eq!(seqs, [65_534, 65_535, 0]);
        let ts: Vec<u32> = got.iter().map(|(h, _)| h.timestamp).collect();
        assert_eq!(ts, [1000, 1160, 1320]);
        assert!(got[0].0.marker && !got[1].0.marker);
        assert!(got
            .iter()
            .all(|(h, p)| h.payload_type == 8 && p.len() == 160));
        assert_eq!(&got[1].1[..], &clip.bytes(Law::Alaw)[160..320]);
        assert_eq!(got[2].1[100], g711::ALAW_SILENCE, "padding");
        assert_eq!(s.poll_event(), Some(MediaEvent::Finished(7)));
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + crate::rtcp::INTERVAL),
            "only the sender report"
        );
        let mut report = Vec::new();
        assert!(!s.poll_rtcp(t0 + Duration::from_secs(4), 0, "c", &mut report));
        assert!(s.poll_rtcp(
            t0 + Duration::from_secs(5),
            1_800_000_000_000_000,
            "c",
            &mut report
        ));
        assert_eq!(crate::rtcp::read(&report).unwrap().reports, 1);
        assert_eq!(
            u32::from_be_bytes(report[20..24].try_into().unwrap()),
            3,
            "three packets sent"
        );
        assert_eq!(s.remote_rtcp().port(), 6001);
        s.handle_rtcp(&report);
        assert_eq!(s.reports_heard(), 1);
    }

    #[test]
    fn music_loops_and_a_pause_moves_the_timestamp_on_with_a_new_talkspurt() {
        let t0 = Instant::now();
        let clip = Arc::new(Clip::from_pcm(&[1000; 320]));
        let mut s = Stream::new(t0, negotiated(Law::Ulaw), 9, 0, 0);
        s.play(t0, clip.clone(), true, 1);
        let got = run(&mut s, t0, Duration::from_millis(999));
        assert_eq!(got.len(), 50, "one second of frames");
        assert_eq!(s.poll_event(), None, "a loop never finishes");
        s.stop();
        let t1 = t0 + Duration::from_secs(2);
        s.play(t1, clip, false, 2);
        let again = run(&mut s, t1, Duration::from_millis(10));
        let (h, _) = &again[0];
        assert!(h.marker);
        assert_eq!(h.seq, 50, "sequence numbers run on");
        // the last frame went out at 980 ms (timestamp 49·160); this one at 2 s
        assert_eq!(h.timestamp, 49 * 160 + 51 * 160);
    }

    #[test]
    fn a_stalled_sender_skips_frames_instead_of_bursting() {
        let t0 = Instant::now();
        let mut s = Stream::new(t0, negotiated(Law::Ulaw), 9, 0, 0);
        s.play(t0, Arc::new(Clip::tune()), true, 1);
        let mut buf = Vec::new();
        assert!(s.poll_transmit(t0, &mut buf));
        let late = t0 + Duration::from_millis(500);
        let mut burst = 0;
        while s.poll_transmit(late, &mut buf) {
            burst += 1;
        }
        assert!(burst <= 6, "{burst} packets at once");
        let (h, _) = rtp::parse(&buf).unwrap();
        assert_eq!(h.timestamp, 25 * 160, "the timestamp still tells the time");
    }

    #[test]
    fn digits_are_heard_and_silence_is_reported_once_after_the_quiet_period() {
        let t0 = Instant::now();
        let mut s = Stream::new(t0, negotiated(Law::Ulaw), 9, 0, 0);
        s.watch_silence(t0, Some(Duration::from_secs(3)));
        let mut pkt = Vec::new();
        let h = |pt, ts| Header {
            marker: false,
            payload_type: pt,
            seq: 1,
            timestamp: ts,
            ssrc: 77,
        };
        rtp::write(&h(101, 800), &crate::dtmf::payload(5, false, 160), &mut pkt);
        s.handle_packet(t0 + Duration::from_secs(1), &pkt);
        s.handle_packet(t0 + Duration::from_secs(1), &pkt);
        assert_eq!(s.poll_event(), Some(MediaEvent::Digit('5')));
        assert_eq!(s.poll_event(), None);
        // quiet audio does not count as being heard
        pkt.clear();
        rtp::write(&h(0, 960), &[g711::ULAW_SILENCE; 160], &mut pkt);
        s.handle_packet(t0 + Duration::from_secs(2), &pkt);
        s.handle_packet(t0 + Duration::from_secs(2), &pkt[..3]);
        s.handle_timeout(t0 + Duration::from_millis(3_999));
        assert_eq!(s.poll_event(), None, "heard at 1 s: silent from then on");
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(4)));
        s.handle_timeout(t0 + Duration::from_secs(4));
        assert_eq!(s.poll_event(), Some(MediaEvent::Silence));
        s.handle_timeout(t0 + Duration::from_secs(9));
        assert_eq!(s.poll_event(), None, "reported once");
        assert_eq!(s.counts(), (0, 3), "the truncated datagram is not a packet");
    }

    fn rtp_of(law: Law, seq: u16, samples: &Frame) -> Vec<u8> {
        let payload: Vec<u8> = samples.iter().map(|&x| encode(law, x)).collect();
        let mut out = Vec::new();
        let h = Header {
            marker: false,
            payload_type: law.payload_type(),
            seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 5,
        };
        rtp::write(&h, &payload, &mut out);
        out
    }

    #[test]
    fn in_a_conference_it_keeps_a_few_frames_heard_and_sends_the_mix_between_clips() {
        let t0 = Instant::now();
        let mut s = Stream::new(t0, negotiated(Law::Ulaw), 9, 10, 0);
        let tone = crate::tone::sine(440.0, 8000.0, 0);
        s.handle_packet(t0, &rtp_of(Law::Ulaw, 1, &tone));
        assert_eq!(s.take_heard(), None, "nothing kept outside a conference");
        s.keep_audio(true);
        for seq in 0..6 {
            s.handle_packet(t0, &rtp_of(Law::Ulaw, seq, &tone));
        }
        let mut kept = 0;
        while let Some(f) = s.take_heard() {
            assert!(crate::tone::power(&f, 440.0) > 1e6, "decoded as heard");
            kept += 1;
        }
        assert_eq!(kept, HEARD_DEPTH, "the oldest frames went");

        // the mix goes out on the conference's clock, numbers running on
        let mut buf = Vec::new();
        assert!(s.send_frame(t0, &tone, &mut buf));
        let (h1, p1) = rtp::parse(&buf).map(|(h, p)| (h, p.to_vec())).unwrap();
        assert!(s.send_frame(t0 + PTIME, &tone, &mut buf));
        let (h2, _) = rtp::parse(&buf).unwrap();
        assert_eq!((h1.seq, h2.seq), (10, 11));
        assert_eq!(h2.timestamp - h1.timestamp, 160);
        assert!(h1.marker && !h2.marker, "a talkspurt begins");
        assert_eq!(
            decode_frame(Law::Ulaw, &p1)[40],
            g711::ulaw_decode(encode(Law::Ulaw, tone[40]))
        );
        // a clip (an announcement) has the stream to itself until it ends
        s.play(
            t0 + PTIME * 2,
            Arc::new(Clip::from_pcm(&[0; 160])),
            false,
            3,
        );
        assert!(!s.send_frame(t0 + PTIME * 2, &tone, &mut buf));
        assert!(s.poll_transmit(t0 + PTIME * 2, &mut buf));
        assert!(!s.poll_transmit(t0 + PTIME * 3, &mut buf));
        assert_eq!(s.poll_event(), Some(MediaEvent::Finished(3)));
        assert!(s.send_frame(t0 + PTIME * 3, &tone, &mut buf));
        let (h4, _) = rtp::parse(&buf).unwrap();
        assert_eq!(h4.seq, 13);
        assert_eq!(h4.timestamp, h1.timestamp + 3 * 160);
        s.keep_audio(false);
        s.handle_packet(t0, &rtp_of(Law::Ulaw, 9, &tone));
        assert_eq!(s.take_heard(), None);
    }

    #[test]
    fn a_peer_that_sends_nothing_for_the_period_is_reported_lost_once() {
        let t0 = Instant::now();
        let mut s = Stream::new(t0, negotiated(Law::Ulaw), 9, 0, 0);
        s.watch_media(t0, Some(Duration::from_secs(3)));
        let tone = crate::tone::sine(440.0, 100.0, 0);
        s.handle_packet(t0 + Duration::from_secs(2), &rtp_of(Law::Ulaw, 1, &tone));
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + Duration::from_secs(5)),
            "a packet, even a quiet one, counts"
        );
        s.handle_timeout(t0 + Duration::from_secs(4));
        assert_eq!(s.poll_event(), None);
        s.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(s.poll_event(), Some(MediaEvent::Lost));
        s.handle_timeout(t0 + Duration::from_secs(9));
        assert_eq!(s.poll_event(), None, "once");
    }
}
