//! RTP packets (RFC 3550 §5.1): the fixed header read and written. Input is hostile: a short
//! or malformed packet is an error, never a panic.

/// The fixed header's length.
pub const HEADER_LEN: usize = 12;

/// An RTP header's fields that a media endpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Why a datagram is not an RTP packet we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than its header says.
    #[error("shorter than its header")]
    Short,
    /// Not version 2.
    #[error("not RTP version 2")]
    Version,
    /// An RTCP packet sharing the port (RFC 5761: payload types 72 to 76 with the marker).
    #[error("RTCP, not RTP")]
    Rtcp,
}

/// The header and payload of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), RtpError> {
    if bytes.len() < HEADER_LEN {
        return Err(RtpError::Short);
    }
    if bytes[0] >> 6 != 2 {
        return Err(RtpError::Version);
    }
    if (200..=204).contains(&bytes[1]) {
        return Err(RtpError::Rtcp);
    }
    let padding = bytes[0] & 0x20 != 0;
    let extension = bytes[0] & 0x10 != 0;
    let csrcs = usize::from(bytes[0] & 0x0F);
    let mut start = HEADER_LEN + 4 * csrcs;
    if extension {
        let words = bytes.get(start + 2..start + 4).ok_or(RtpError::Short)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = bytes.len();
    if padding {
        end = end
            .checked_sub(usize::from(bytes[end - 1]))
            .ok_or(RtpError::Short)?;
    }
    let payload = bytes.get(start..end).ok_or(RtpError::Short)?;
    let header = Header {
        marker: bytes[1] & 0x80 != 0,
        payload_type: bytes[1] & 0x7F,
        seq: u16::from_be_bytes([bytes[2], bytes[3]]),
        timestamp: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        ssrc: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
    };
    Ok((header, payload))
}

/// Appends the packet of `header` and `payload` to `out`.
pub fn write(header: &Header, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + payload.len());
    out.push(0x80);
    out.push(u8::from(header.marker) << 7 | (header.payload_type & 0x7F));
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_packet_reads_back() {
        let h = Header {
            marker: true,
            payload_type: 8,
            seq: 65_535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 42,
        };
        let mut out = Vec::new();
        write(&h, &[1, 2, 3], &mut out);
        assert_eq!(out.len(), HEADER_LEN + 3);
        assert_eq!(parse(&out), Ok((h, &[1u8, 2, 3][..])));
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut p = vec![0x80 | 0x20 | 0x10 | 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 7, 7, 7, 7]); // a one-word extension
        p.extend_from_slice(&[0xAB, 0xCD]); // the payload
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let (h, payload) = parse(&p).unwrap();
        assert_eq!((h.seq, h.timestamp, h.ssrc), (1, 2, 3));
        assert_eq!(payload, &[0xAB, 0xCD]);
    }

    #[test]
    fn hostile_datagrams_are_errors() {
        assert_eq!(parse(&[0x80; 5]), Err(RtpError::Short));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::Version));
        assert_eq!(
            parse(&[0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Rtcp)
        );
        // fifteen CSRCs announced, none there
        assert_eq!(
            parse(&[0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Short)
        );
        // padding longer than the packet
        let mut p = vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200];
        assert_eq!(parse(&p), Err(RtpError::Short));
        // an extension running past the end
        p = vec![
            0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0xFF, 0xFF,
        ];
        assert_eq!(parse(&p), Err(RtpError::Short));
        for len in 0..40 {
            for fill in [0u8, 0x80, 0xFF, 0xB3] {
                let _ = parse(&vec![fill; len]);
            }
        }
    }
}
