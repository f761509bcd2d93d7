//! RTCP (RFC 3550 §6): the sender report a sending endpoint emits every few seconds, with the
//! source description (CNAME) every compound packet carries, and the reading of what a peer
//! sends (its reports are counted; a BYE is noticed). Hostile input is an error, never a
//! panic.

/// How often a sender reports (RFC 3550 §6.2 suggests 5 s as the minimum interval).
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Seconds from 1900 (NTP's epoch) to 1970 (Unix's).
const NTP_UNIX: u64 = 2_208_988_800;

/// What a sender report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// Wall-clock time of the report, microseconds since 1970.
    pub unix_micros: u64,
    /// The RTP timestamp matching that time.
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// Appends the compound packet SR + SDES(CNAME `cname`) to `out`.
pub fn write_report(sr: &SenderReport, cname: &str, out: &mut Vec<u8>) {
    let secs = sr.unix_micros / 1_000_000 + NTP_UNIX;
    let frac = ((sr.unix_micros % 1_000_000) << 32) / 1_000_000;
    out.extend_from_slice(&[0x80, 200, 0, 6]);
    out.extend_from_slice(&sr.ssrc.to_be_bytes());
    out.extend_from_slice(&(secs as u32).to_be_bytes());
    out.extend_from_slice(&(frac as u32).to_be_bytes());
    out.extend_from_slice(&sr.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&sr.packets.to_be_bytes());
    out.extend_from_slice(&sr.octets.to_be_bytes());
    // SDES: one chunk, CNAME then END, padded to a 32-bit boundary
    let name = &cname.as_bytes()[..cname.len().min(255)];
    let chunk = 4 + 2 + name.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    out.extend_from_slice(&[0x81, 202]);
    out.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
    out.extend_from_slice(&sr.ssrc.to_be_bytes());
    out.extend_from_slice(&[1, name.len() as u8]);
    out.extend_from_slice(name);
    out.resize(out.len() + padded - chunk + 1, 0);
}

/// What a received compound packet holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub reports: usize,
    pub bye: bool,
}

/// Why a datagram is not RTCP we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    #[error("not an RTCP compound packet")]
    Malformed,
}

/// Reads a compound packet: the sender and receiver reports in it, and whether it says BYE.
pub fn read(bytes: &[u8]) -> Result<Received, RtcpError> {
    let mut at = 0;
    let mut got = Received::default();
    if bytes.len() < 8 {
        return Err(RtcpError::Malformed);
    }
    while at + 4 <= bytes.len() {
        if bytes[at] >> 6 != 2 {
            return Err(RtcpError::Malformed);
        }
        let len = (usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])) + 1) * 4;
        if at + len > bytes.len() {
            return Err(RtcpError::Malformed);
        }
        match bytes[at + 1] {
            200 | 201 => got.reports += 1,
            203 => got.bye = true,
            _ => {}
        }
        at += len;
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_a_well_formed_compound_packet() {
        let sr = SenderReport {
            ssrc: 0x1234_5678,
            unix_micros: 1_800_000_000_500_000,
            rtp_timestamp: 160_000,
            packets: 1000,
            octets: 160_000,
        };
        let mut out = Vec::new();
        write_report(&sr, "confab@127.0.0.1", &mut out);
        assert_eq!(out.len() % 4, 0);
        assert_eq!(&out[..4], &[0x80, 200, 0, 6]);
        // NTP seconds, and half a second as the fraction
        assert_eq!(
            u32::from_be_bytes(out[8..12].try_into().unwrap()),
            (1_800_000_000 + NTP_UNIX) as u32
        );
        assert_eq!(u32::from_be_bytes(out[12..16].try_into().unwrap()), 1 << 31);
        assert_eq!(u32::from_be_bytes(out[20..24].try_into().unwrap()), 1000);
        assert_eq!(out[29], 202, "SDES follows");
        assert_eq!(&out[36..38], &[1, 16], "CNAME, 16 bytes");
        assert_eq!(&out[38..54], b"confab@127.0.0.1");
        assert_eq!(
            read(&out),
            Ok(Received {
                reports: 1,
                bye: false
            })
        );
    }

    #[test]
    fn a_bye_is_noticed_and_hostile_datagrams_are_errors() {
        let bye = [0x81, 203, 0, 1, 0, 0, 0, 9];
        assert_eq!(
            read(&bye),
            Ok(Received {
                reports: 0,
                bye: true
            })
        );
        assert_eq!(
            read(&[0x81, 203, 0, 9, 0, 0, 0, 9]),
            Err(RtcpError::Malformed)
        );
        assert_eq!(read(&[0x40; 8]), Err(RtcpError::Malformed));
        assert_eq!(read(&[0x80]), Err(RtcpError::Malformed));
        for len in 0..24 {
            let _ = read(&vec![0x80; len]);
        }
    }
}
