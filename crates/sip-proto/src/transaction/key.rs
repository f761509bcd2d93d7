//! Transaction matching keys (RFC 3261 §17.1.3, §17.2.3), including the RFC 2543 fallback for
//! requests whose branch lacks the magic cookie.

use crate::error::Result;
use crate::header::HeaderName;
use crate::message::Message;
use crate::method::Method;

/// The key of the server transaction a request belongs to. ACK maps to its INVITE; pass
/// `as_method` to look up another method's transaction (a CANCEL's INVITE).
pub fn server_key(req: &Message, as_method: Option<&str>) -> Result<String> {
    let via = req.top_via()?;
    let method = match (as_method, req.method()) {
        (Some(m), _) => m,
        (None, Method::Ack) => "INVITE",
        (None, _) => req.method_str(),
    };
    if via.is_rfc3261() {
        return Ok(format!(
            "{}|{}|{}",
            via.branch().unwrap_or(""),
            via.sent_by(),
            method
        ));
    }
    // RFC 2543: From tag, Call-ID, CSeq number and top Via identify the transaction. The To tag
    // is left out so that the ACK, which carries it, still matches its INVITE; so is the
    // Request-URI, which a CANCEL or ACK repeats anyway.
    let from_tag = req.from()?.tag().unwrap_or("").to_owned();
    let top_via = req
        .raw_header(HeaderName::Via)
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    Ok(format!(
        "2543|{from_tag}|{}|{}|{top_via}|{method}",
        req.call_id()?,
        req.cseq()?.seq
    ))
}

/// The key of the client transaction a response belongs to: our branch and the CSeq method.
pub fn client_key(branch: &str, cseq_method: &str) -> String {
    format!("{branch}|{cseq_method}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Limits;

    fn msg(s: &str) -> Message {
        Message::parse(s.as_bytes().to_vec(), &Limits::default()).unwrap()
    }

    #[test]
    fn ack_and_cancel_find_their_invite() {
        let inv = msg("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: i\r\nCSeq: 1 INVITE\r\n\r\n");
        let ack = msg("ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: i\r\nCSeq: 1 ACK\r\n\r\n");
        let cancel = msg("CANCEL sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: i\r\nCSeq: 1 CANCEL\r\n\r\n");
        let k = server_key(&inv, None).unwrap();
        assert_eq!(server_key(&ack, None).unwrap(), k);
        assert_ne!(server_key(&cancel, None).unwrap(), k);
        assert_eq!(server_key(&cancel, Some("INVITE")).unwrap(), k);
    }

    #[test]
    fn rfc2543_requests_match_without_branch() {
        let a = msg("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: i\r\nCSeq: 1 INVITE\r\n\r\n");
        let b = msg("ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>;tag=9\r\nCall-ID: i\r\nCSeq: 1 ACK\r\n\r\n");
        let c = msg("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: i\r\nCSeq: 2 INVITE\r\n\r\n");
        let ka = server_key(&a, None).unwrap();
        assert!(ka.starts_with("2543|"));
        assert_ne!(ka, server_key(&c, None).unwrap());
        assert_eq!(server_key(&b, None).unwrap(), ka);
    }
}
