//! Session descriptions (RFC 4566), only as far as an audio endpoint needs them, and the
//! offer/answer model (RFC 3264): the answer to a caller's offer, our own offer, and the
//! rewriting of a peer's description as ours (third-party call control, RFC 3725).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// The G.711 law of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Ulaw,
    Alaw,
}

impl Law {
    /// Its static payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Ulaw => 0,
            Self::Alaw => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ulaw => "PCMU",
            Self::Alaw => "PCMA",
        }
    }
}

/// What an audio stream sends: the law, and the payload type of telephone-events if the
/// peer takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub law: Law,
    pub dtmf: Option<u8>,
}

/// Which way media flows (RFC 3264 §5.1), from the describing side's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// The direction that answers this one.
    fn answer(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            d => d,
        }
    }
}

/// One m= section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    pub connection: Option<IpAddr>,
    /// `a=rtpmap` entries: payload type, encoding name, clock rate.
    pub rtpmap: Vec<(u8, String, u32)>,
    pub direction: Direction,
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub connection: Option<IpAddr>,
    pub media: Vec<Media>,
}

/// Why a description cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// A line that is not `x=value`, or a value out of its syntax.
    #[error("malformed SDP line {0}")]
    Malformed(usize),
    /// No audio stream in the offer.
    #[error("no audio stream offered")]
    NoAudio,
    /// The audio stream offers neither PCMU nor PCMA over RTP/AVP.
    #[error("no common codec: PCMU or PCMA over RTP/AVP needed")]
    NoCodec,
    /// The audio stream has no connection address.
    #[error("no connection address for the audio stream")]
    NoAddress,
}

impl Sdp {
    /// Reads a description. Unknown lines and attributes are skipped; a line without `=` is
    /// an error.
    pub fn parse(text: &[u8]) -> Result<Self, SdpError> {
        let text = String::from_utf8_lossy(text);
        let mut sdp = Self {
            connection: None,
            media: Vec::new(),
        };
        for (no, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let (kind, value) = line
                .split_once('=')
                .filter(|(k, _)| k.len() == 1)
                .ok_or(SdpError::Malformed(no + 1))?;
            let bad = || SdpError::Malformed(no + 1);
            match (kind, sdp.media.last_mut()) {
                ("c", m) => {
                    let addr = value.split(' ').nth(2).ok_or_else(bad)?;
                    let addr = addr.split('/').next().unwrap_or(addr);
                    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
                    match m {
                        Some(m) => m.connection = Some(addr),
                        None => sdp.connection = Some(addr),
                    }
                }
                ("m", _) => {
                    let mut parts = value.split(' ');
                    let kind = parts.next().ok_or_else(bad)?.to_owned();
                    let port = parts.next().ok_or_else(bad)?;
                    let port = port.split('/').next().unwrap_or(port);
                    let port = port.parse().map_err(|_| bad())?;
                    let proto = parts.next().ok_or_else(bad)?.to_owned();
                    sdp.media.push(Media {
                        kind,
                        port,
                        proto,
                        formats: parts.map(str::to_owned).collect(),
                        connection: None,
                        rtpmap: Vec::new(),
                        direction: Direction::SendRecv,
                    });
                }
                ("a", Some(m)) => read_attribute(m, value),
                _ => {}
            }
        }
        Ok(sdp)
    }

    /// The first audio stream and what to send it: where, in which law, and whether it takes
    /// telephone-events. PCMU is preferred when the peer offers both, in its order.
    pub fn audio(&self) -> Result<(Negotiated, &Media), SdpError> {
        let m = self
            .media
            .iter()
            .find(|m| m.kind == "audio" && m.port != 0)
            .ok_or(SdpError::NoAudio)?;
        if m.proto != "RTP/AVP" {
            return Err(SdpError::NoCodec);
        }
        let law = m
            .formats
            .iter()
            .find_map(|f| {
                let pt: u8 = f.parse().ok()?;
                match (pt, encoding(m, pt)) {
                    (0, None) => Some(Law::Ulaw),
                    (8, None) => Some(Law::Alaw),
                    (_, Some((name, 8000))) if name.eq_ignore_ascii_case("PCMU") => Some(Law::Ulaw),
                    (_, Some((name, 8000))) if name.eq_ignore_ascii_case("PCMA") => Some(Law::Alaw),
                    _ => None,
                }
            })
            .ok_or(SdpError::NoCodec)?;
        let dtmf = m.formats.iter().find_map(|f| {
            let pt: u8 = f.parse().ok()?;
            let (name, rate) = encoding(m, pt)?;
            (name.eq_ignore_ascii_case("telephone-event") && rate == 8000).then_some(pt)
        });
        let ip = m
            .connection
            .or(self.connection)
            .ok_or(SdpError::NoAddress)?;
        Ok((
            Negotiated {
                remote: SocketAddr::new(ip, m.port),
                codec: Codec { law, dtmf },
                direction: m.direction,
            },
            m,
        ))
    }
}

/// What offer/answer settled for an audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Where the peer receives RTP.
    pub remote: SocketAddr,
    pub codec: Codec,
    /// The peer's direction (`sendonly` or `inactive`: on hold).
    pub direction: Direction,
}

fn read_attribute(m: &mut Media, value: &str) {
    let (name, rest) = value.split_once(':').unwrap_or((value, ""));
    match name {
        "rtpmap" => {
            let mut parts = rest.splitn(2, ' ');
            let pt = parts.next().and_then(|p| p.parse().ok());
            let mut enc = parts.next().unwrap_or("").split('/');
            let name = enc.next().unwrap_or("");
            let rate = enc.next().and_then(|r| r.parse().ok());
            if let (Some(pt), Some(rate)) = (pt, rate) {
                m.rtpmap.push((pt, name.to_owned(), rate));
            }
        }
        "sendrecv" => m.direction = Direction::SendRecv,
        "sendonly" => m.direction = Direction::SendOnly,
        "recvonly" => m.direction = Direction::RecvOnly,
        "inactive" => m.direction = Direction::Inactive,
        _ => {}
    }
}

fn encoding(m: &Media, pt: u8) -> Option<(&str, u32)> {
    m.rtpmap
        .iter()
        .find(|(p, _, _)| *p == pt)
        .map(|(_, n, r)| (n.as_str(), *r))
}

/// Who we are in our descriptions: the o= line's session and version (bumped for each new
/// description of the session, RFC 3264 §8) and the address media reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub session: u64,
    pub version: u64,
    pub address: IpAddr,
}

/// Our answer to `offer`: its first audio stream at our `port` with the law chosen and
/// telephone-events if offered, every other stream refused (port 0, RFC 3264 §6).
pub fn answer(offer: &Sdp, origin: Origin, port: u16) -> Result<(String, Negotiated), SdpError> {
    let (negotiated, audio) = offer.audio()?;
    let mut out = header(origin);
    for m in &offer.media {
        if std::ptr::eq(m, audio) {
            let direction = m.direction.answer();
            write_audio(&mut out, port, negotiated.codec, direction);
        } else {
            let _ = write!(out, "m={} 0 {}", m.kind, m.proto);
            for f in &m.formats {
                let _ = write!(out, " {f}");
            }
            out.push_str("\r\n");
        }
    }
    Ok((out, negotiated))
}

/// Our offer: one audio stream at `port`, PCMU and PCMA and telephone-events.
pub fn offer(origin: Origin, port: u16) -> String {
    let mut out = header(origin);
    let _ = write!(
        out,
        "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    out
}

/// A peer's description presented as ours (RFC 3725: what one party of a connected call
/// receives is the other's description): its o= line replaced by our session's.
pub fn as_ours(peer: &[u8], origin: Origin) -> String {
    let text = String::from_utf8_lossy(peer);
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.lines() {
        if line.starts_with("o=") {
            let _ = write!(
                out,
                "o=confab {} {} IN {} {}\r\n",
                origin.session,
                origin.version,
                family(origin.address),
                origin.address
            );
        } else {
            out.push_str(line.trim_end());
            out.push_str("\r\n");
        }
    }
    out
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

fn header(o: Origin) -> String {
    let f = family(o.address);
    format!(
        "v=0\r\no=confab {} {} IN {f} {}\r\ns=confab\r\nc=IN {f} {}\r\nt=0 0\r\n",
        o.session, o.version, o.address, o.address
    )
}

fn write_audio(out: &mut String, port: u16, codec: Codec, direction: Direction) {
    let pt = codec.law.payload_type();
    let _ = write!(out, "m=audio {port} RTP/AVP {pt}");
    if let Some(d) = codec.dtmf {
        let _ = write!(out, " {d}");
    }
    let _ = write!(out, "\r\na=rtpmap:{pt} {}/8000\r\n", codec.law.name());
    if let Some(d) = codec.dtmf {
        let _ = write!(
            out,
            "a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-15\r\n"
        );
    }
    let _ = write!(out, "a=ptime:20\r\na={}\r\n", direction.attribute());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n";

    fn origin() -> Origin {
        Origin {
            session: 7,
            version: 1,
            address: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn the_answer_takes_the_first_law_offered_and_telephone_events() {
        let offer = Sdp::parse(SIPP_OFFER.as_bytes()).unwrap();
        let (text, n) = answer(&offer, origin(), 20_000).unwrap();
        assert_eq!(n.remote, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(
            n.codec,
            Codec {
                law: Law::Alaw,
                dtmf: Some(101)
            }
        );
        assert!(text.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:101 telephone-event/8000"));
        assert!(text.starts_with("v=0\r\no=confab 7 1 IN IP4 127.0.0.1\r\n"));
        // the answer reads back as what it says
        let back = Sdp::parse(text.as_bytes()).unwrap();
        let (mine, _) = back.audio().unwrap();
        assert_eq!(mine.remote.port(), 20_000);
        assert_eq!(mine.codec, n.codec);
    }

    #[test]
    fn video_is_refused_with_port_zero_and_hold_is_answered_recvonly() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 7000 RTP/AVP 96\r\nc=IN IP4 10.0.0.1\r\nm=audio 7002 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\na=sendonly\r\n";
        let (text, n) = answer(&Sdp::parse(offer.as_bytes()).unwrap(), origin(), 20_002).unwrap();
        assert_eq!(n.remote, "10.0.0.2:7002".parse().unwrap());
        assert_eq!(n.codec.dtmf, None);
        assert!(text.contains("m=video 0 RTP/AVP 96\r\nm=audio 20002 RTP/AVP 0\r\n"));
        assert!(text.contains("a=recvonly"));
    }

    #[test]
    fn offers_without_g711_or_address_or_audio_are_refused() {
        let no_g711 = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 9 18\r\n";
        let srtp = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/SAVP 0\r\n";
        let no_address = "v=0\r\nm=audio 5 RTP/AVP 0\r\n";
        let no_audio = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5 RTP/AVP 0\r\n";
        let dynamic_pcmu =
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 97\r\na=rtpmap:97 pcmu/8000\r\n";
        let audio = |s: &str| Sdp::parse(s.as_bytes()).unwrap().audio().map(|(n, _)| n);
        assert_eq!(audio(no_g711), Err(SdpError::NoCodec));
        assert_eq!(audio(srtp), Err(SdpError::NoCodec));
        assert_eq!(audio(no_address), Err(SdpError::NoAddress));
        assert_eq!(audio(no_audio), Err(SdpError::NoAudio));
        assert_eq!(audio(dynamic_pcmu).unwrap().codec.law, Law::Ulaw);
        assert_eq!(
            Sdp::parse(b"v=0\r\nnonsense\r\n"),
            Err(SdpError::Malformed(2))
        );
        assert_eq!(
            Sdp::parse(b"v=0\r\nc=IN IP4 999.1.1.1\r\n"),
            Err(SdpError::Malformed(2))
        );
        assert_eq!(
            Sdp::parse(b"m=audio many RTP/AVP 0\r\n"),
            Err(SdpError::Malformed(1))
        );
    }

    #[test]
    fn our_offer_reads_back_and_a_peer_description_becomes_ours() {
        let text = offer(origin(), 21_000);
        let (n, _) = Sdp::parse(text.as_bytes()).unwrap().audio().unwrap();
        assert_eq!(n.codec.law, Law::Ulaw);
        assert_eq!(n.codec.dtmf, Some(101));
        let mine = as_ours(
            SIPP_OFFER.as_bytes(),
            Origin {
                version: 2,
                ..origin()
            },
        );
        assert!(mine.contains("o=confab 7 2 IN IP4 127.0.0.1\r\n"));
        assert!(mine.contains("m=audio 6000 RTP/AVP 8 0 101\r\n"));
        assert!(!mine.contains("user1"));
    }
}
