//! The stream's tests: pacing, numbering, reports, digits, silence, loss, conference frames.

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
