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
#[path = "stream_tests.rs"]
mod tests;
