//! Digits pressed, from RFC 4733 telephone-events. A press arrives as several packets with
//! one RTP timestamp (the start of the event), growing durations and, at its end, three
//! copies of the final packet; it is reported once, at its first packet. A press replayed
//! with the same timestamp (a recording played twice) starts again after its end packets.

use crate::rtp::Header;

/// Reads the telephone-events of one stream.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// The event last reported: its SSRC, timestamp and code, and whether its end came.
    last: Option<(u32, u32, u8)>,
    ended: bool,
}

impl DtmfReceiver {
    /// The digit a telephone-event packet starts, if it starts one: `0`–`9`, `*`, `#`,
    /// `A`–`D`. Repeats and other events (flash, tones) give `None`.
    pub fn receive(&mut self, header: &Header, payload: &[u8]) -> Option<char> {
        let event = *payload.first()?;
        if payload.len() < 4 {
            return None;
        }
        let end = payload[1] & 0x80 != 0;
        let key = (header.ssrc, header.timestamp, event);
        // the same event again, unless a new press starts after its end
        if self.last == Some(key) && (end || !self.ended) {
            self.ended |= end;
            return None;
        }
        let digit = digit(event)?;
        self.last = Some(key);
        self.ended = end;
        Some(digit)
    }
}

/// The key of event code `event` (RFC 4733 §3.2).
pub fn digit(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        _ => return None,
    })
}

/// The event code of key `digit`.
pub fn event(digit: char) -> Option<u8> {
    Some(match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => digit as u8 - b'A' + 12,
        _ => return None,
    })
}

/// The payload of a telephone-event packet: `event`, end bit, volume 10, `duration` in
/// timestamp units.
pub fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, u8::from(end) << 7 | 10, d[0], d[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ts: u32) -> Header {
        Header {
            marker: false,
            payload_type: 101,
            seq: 0,
            timestamp: ts,
            ssrc: 5,
        }
    }

    #[test]
    fn a_press_is_one_digit_however_many_packets_carry_it() {
        let mut rx = DtmfReceiver::default();
        let mut heard = String::new();
        // "1": four packets then the end three times; then "#", then "1" again
        for (ts, ev, end, dur) in [
            (160, 1, false, 160),
            (160, 1, false, 320),
            (160, 1, false, 480),
            (160, 1, true, 640),
            (160, 1, true, 640),
            (160, 1, true, 640),
            (1600, 11, false, 160),
            (1600, 11, true, 320),
            (3200, 1, true, 800),
            // the first press replayed as it was recorded
            (160, 1, false, 160),
            (160, 1, true, 640),
            (160, 1, true, 640),
        ] {
            if let Some(d) = rx.receive(&header(ts), &payload(ev, end, dur)) {
                heard.push(d);
            }
        }
        assert_eq!(heard, "1#11");
    }

    #[test]
    fn short_payloads_and_non_key_events_are_ignored() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.receive(&header(1), &[]), None);
        assert_eq!(rx.receive(&header(2), &[5, 0]), None);
        assert_eq!(rx.receive(&header(3), &payload(16, false, 1)), None);
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(digit(event(d).unwrap()), Some(d));
        }
        assert_eq!(event('x'), None);
    }
}
