//! Dialogs (RFC 3261 §12): what a user agent keeps between the requests of one call or
//! subscription — its identifiers, both CSeq numbers, the route set and the remote target —
//! and the requests it builds within it. A proxy keeps no dialog; a user agent of ours does
//! (response groups, meetings, anything that answers or places calls itself).
//!
//! Sans-IO like the rest of the crate: a [`Dialog`] is made from the messages that establish
//! it, takes the messages received within it, and returns the requests to send as
//! [`Writer`]s, to which the caller adds its Via, Max-Forwards, Contact and body.

use crate::error::ParseError;
use crate::header::{HeaderName, NameAddr};
use crate::message::Message;
use crate::method::Method;
use crate::writer::Writer;

/// Why a message cannot make or advance a dialog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    /// A header a dialog needs is missing or unusable; the text names it.
    #[error("cannot make a dialog: {0}")]
    Incomplete(&'static str),
    /// A request's CSeq is not above the last one received (answer it 500, §12.2.2).
    #[error("CSeq lower than the dialog's last")]
    OutOfOrder,
    /// The message carries another dialog's identifiers.
    #[error("the message belongs to another dialog")]
    Mismatch,
    /// A header the dialog reads does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// A dialog's identity from this side: Call-ID, our tag, the peer's tag (§12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an incoming in-dialog request names: To tag ours, From tag theirs.
    pub fn of_request(req: &Message) -> Result<Self, DialogError> {
        Ok(Self {
            call_id: req.call_id()?.to_owned(),
            local_tag: tag(&req.to()?, "To tag")?,
            remote_tag: tag(&req.from()?, "From tag")?,
        })
    }

    /// The dialog a response to our own request names: From tag ours, To tag theirs.
    pub fn of_response(resp: &Message) -> Result<Self, DialogError> {
        Ok(Self {
            call_id: resp.call_id()?.to_owned(),
            local_tag: tag(&resp.from()?, "From tag")?,
            remote_tag: tag(&resp.to()?, "To tag")?,
        })
    }
}

/// Early (a provisional response made it) or confirmed (a 2xx did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// One dialog, from one side.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    state: DialogState,
    /// Our address (From of the requests we send), with no tag.
    local_uri: String,
    remote_uri: String,
    /// The CSeq number of the last request we sent.
    local_seq: u32,
    /// The CSeq number of the last request received, once one was.
    remote_seq: Option<u32>,
    /// Where requests go (the peer's Contact URI).
    remote_target: String,
    /// Route values as written (`<sip:...;lr>`), in the order requests carry them.
    route_set: Vec<String>,
}

impl Dialog {
    /// The dialog a UAC has once `resp` answered its request `req` (§12.1.2): a 2xx, or a
    /// provisional with a To tag (an early dialog). The route set is the response's
    /// Record-Route reversed; the remote target its Contact.
    pub fn as_uac(req: &Message, resp: &Message) -> Result<Self, DialogError> {
        let state = match resp.status() {
            101..=199 => DialogState::Early,
            200..=299 => DialogState::Confirmed,
            _ => return Err(DialogError::Incomplete("a 101-299 response")),
        };
        let to = resp.to()?;
        let from = req.from()?;
        let mut route_set = record_route(resp)?;
        route_set.reverse();
        Ok(Self {
            id: DialogId {
                call_id: req.call_id()?.to_owned(),
                local_tag: tag(&from, "From tag")?,
                remote_tag: tag(&to, "To tag")?,
            },
            state,
            local_uri: from.uri_text.to_owned(),
            remote_uri: to.uri_text.to_owned(),
            local_seq: req.cseq()?.seq,
            remote_seq: None,
            remote_target: contact(resp)?,
            route_set,
        })
    }

    /// The dialog a UAS has once it answers `req` with a response tagged `local_tag`
    /// (§12.1.1): the route set is the request's Record-Route in order, the remote target its
    /// Contact. `local_seq` is where our own CSeq numbers start (any value; a random one makes
    /// requests of an earlier run of the same dialog tell apart).
    pub fn as_uas(req: &Message, local_tag: &str, local_seq: u32) -> Result<Self, DialogError> {
        let from = req.from()?;
        let to = req.to()?;
        Ok(Self {
            id: DialogId {
                call_id: req.call_id()?.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: tag(&from, "From tag")?,
            },
            state: if req.method() == Method::Invite {
                DialogState::Early
            } else {
                DialogState::Confirmed
            },
            local_uri: to.uri_text.to_owned(),
            remote_uri: from.uri_text.to_owned(),
            local_seq,
            remote_seq: Some(req.cseq()?.seq),
            remote_target: contact(req)?,
            route_set: record_route(req)?,
        })
    }

    pub fn id(&self) -> &DialogId {
        &self.id
    }

    pub fn state(&self) -> DialogState {
        self.state
    }

    /// The peer's Contact URI: where requests go when no route set says otherwise.
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// The 2xx that confirms an early dialog we opened as UAC (§13.2.2.4): its Record-Route
    /// and Contact replace the early ones.
    pub fn confirm(&mut self, resp: &Message) -> Result<(), DialogError> {
        if tag(&resp.to()?, "To tag")? != self.id.remote_tag {
            return Err(DialogError::Mismatch);
        }
        let mut route_set = record_route(resp)?;
        route_set.reverse();
        self.remote_target = contact(resp)?;
        self.route_set = route_set;
        self.state = DialogState::Confirmed;
        Ok(())
    }

    /// The UAS answered the dialog's INVITE with a 2xx.
    pub fn accepted(&mut self) {
        self.state = DialogState::Confirmed;
    }

    /// A new request within the dialog (§12.2.1.1), with the next CSeq number: its request
    /// line, Route set, From, To, Call-ID and CSeq. The caller adds Via, Max-Forwards,
    /// Contact, the body and its Content-Type.
    pub fn request(&mut self, method: &str) -> Writer {
        self.local_seq = self.local_seq.wrapping_add(1);
        self.build(method, self.local_seq)
    }

    /// The ACK of a 2xx to the INVITE sent with CSeq `invite_seq` (§13.2.2.4): the same
    /// number, a request of its own.
    pub fn ack(&self, invite_seq: u32) -> Writer {
        self.build("ACK", invite_seq)
    }

    /// The CSeq number of the last request we sent.
    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    fn build(&self, method: &str, seq: u32) -> Writer {
        // loose routing when the first route says lr; else strict (RFC 2543 proxies): the
        // first route becomes the Request-URI and the remote target the last Route
        let strict = self.route_set.first().is_some_and(|r| {
            NameAddr::parse(r, "Route")
                .is_ok_and(|na| na.uri.as_sip().is_some_and(|u| u.param("lr").is_none()))
        });
        let mut w;
        if strict {
            let first = NameAddr::parse(&self.route_set[0], "Route")
                .map(|na| na.uri_text.to_owned())
                .unwrap_or_default();
            w = Writer::request(method, &first);
            for r in &self.route_set[1..] {
                w.header("Route", r);
            }
            w.header("Route", format!("<{}>", self.remote_target));
        } else {
            w = Writer::request(method, &self.remote_target);
            for r in &self.route_set {
                w.header("Route", r);
            }
        }
        w.header(
            "From",
            format!("<{}>;tag={}", self.local_uri, self.id.local_tag),
        );
        w.header(
            "To",
            format!("<{}>;tag={}", self.remote_uri, self.id.remote_tag),
        );
        w.header("Call-ID", &self.id.call_id);
        w.header("CSeq", format!("{seq} {method}"));
        w
    }

    /// A request received within the dialog (§12.2.2): its CSeq must be above the last one
    /// (an ACK or CANCEL repeats its INVITE's); a target refresh (re-INVITE, UPDATE) with a
    /// Contact moves the remote target.
    pub fn on_request(&mut self, req: &Message) -> Result<(), DialogError> {
        if DialogId::of_request(req)? != self.id {
            return Err(DialogError::Mismatch);
        }
        let seq = req.cseq()?.seq;
        let method = req.method();
        if !matches!(method, Method::Ack | Method::Cancel) {
            if self.remote_seq.is_some_and(|last| seq <= last) {
                return Err(DialogError::OutOfOrder);
            }
            self.remote_seq = Some(seq);
        }
        if is_target_refresh(method) && req.count(HeaderName::Contact) > 0 {
            self.remote_target = contact(req)?;
        }
        Ok(())
    }

    /// A 2xx to a target-refresh request we sent (§12.2.1.2): its Contact moves the remote
    /// target.
    pub fn on_response(&mut self, resp: &Message) -> Result<(), DialogError> {
        let method = Method::from_bytes(resp.cseq()?.method.as_bytes());
        if (200..300).contains(&resp.status())
            && is_target_refresh(method)
            && resp.count(HeaderName::Contact) > 0
        {
            self.remote_target = contact(resp)?;
        }
        Ok(())
    }
}

fn is_target_refresh(m: Method) -> bool {
    matches!(
        m,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify
    )
}

fn tag(na: &NameAddr<'_>, what: &'static str) -> Result<String, DialogError> {
    na.tag()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or(DialogError::Incomplete(what))
}

/// The first Contact's URI.
fn contact(m: &Message) -> Result<String, DialogError> {
    m.name_addrs(HeaderName::Contact)?
        .first()
        .map(|na| na.uri_text.to_owned())
        .ok_or(DialogError::Incomplete("Contact"))
}

/// Every Record-Route value, as written, in order.
fn record_route(m: &Message) -> Result<Vec<String>, DialogError> {
    Ok(m.name_addrs(HeaderName::RecordRoute)?
        .iter()
        .map(|na| format!("<{}>", na.uri_text))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Limits;

    fn msg(s: &str) -> Message {
        Message::parse(s.replace('\n', "\r\n").into_bytes(), &Limits::default()).unwrap()
    }

    fn built(w: Writer) -> Message {
        let mut w = w;
        w.header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx");
        Message::parse(w.finish(b""), &Limits::default()).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1
From: \"Alice\" <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: c1
CSeq: 7 INVITE
Contact: <sip:alice@10.0.0.1:5060>
Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>
Content-Length: 0

";

    fn ok(rr: &str) -> Message {
        msg(&format!(
            "SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1
From: \"Alice\" <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag=b1
Call-ID: c1
CSeq: 7 INVITE
Contact: <sip:bob@10.0.0.2:5062>
{rr}Content-Length: 0

"
        ))
    }

    #[test]
    fn a_uac_dialog_takes_the_record_route_reversed_and_sends_in_dialog_requests_along_it() {
        let rr = "Record-Route: <sip:p2.example.com;lr>\nRecord-Route: <sip:p1.example.com;lr>\n";
        let mut d = Dialog::as_uac(&msg(INVITE), &ok(rr)).unwrap();
        assert_eq!(d.state(), DialogState::Confirmed);
        assert_eq!(d.remote_target(), "sip:bob@10.0.0.2:5062");
        let bye = built(d.request("BYE"));
        assert_eq!(bye.uri_str(), "sip:bob@10.0.0.2:5062");
        let routes: Vec<&str> = bye.values(HeaderName::Route).map(Result::unwrap).collect();
        assert_eq!(
            routes,
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert_eq!(bye.cseq().unwrap().seq, 8);
        assert_eq!(bye.from().unwrap().tag(), Some("a1"));
        assert_eq!(bye.to().unwrap().tag(), Some("b1"));
        assert_eq!(bye.call_id().unwrap(), "c1");
        let ack = built(d.ack(7));
        assert_eq!(
            ack.cseq().unwrap().seq,
            7,
            "the ACK repeats the INVITE's number"
        );
        assert_eq!(ack.method(), Method::Ack);
        assert_eq!(d.local_seq(), 8);
    }

    #[test]
    fn a_uas_dialog_keeps_the_route_set_in_order_and_refuses_old_cseqs() {
        let mut d = Dialog::as_uas(&msg(INVITE), "b1", 100).unwrap();
        assert_eq!(d.state(), DialogState::Early);
        d.accepted();
        assert_eq!(
            d.route_set(),
            ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        assert_eq!(d.remote_target(), "sip:alice@10.0.0.1:5060");
        let bye = built(d.request("BYE"));
        assert_eq!(bye.uri_str(), "sip:alice@10.0.0.1:5060");
        assert_eq!(bye.from().unwrap().tag(), Some("b1"));
        assert_eq!(bye.from().unwrap().uri_text, "sip:bob@example.com");
        assert_eq!(bye.to().unwrap().tag(), Some("a1"));
        assert_eq!(bye.cseq().unwrap().seq, 101);

        let in_dialog = |method: &str, seq: u32, contact: &str| {
            msg(&format!(
                "{method} sip:bob@10.0.0.2 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{seq}
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag=b1
Call-ID: c1
CSeq: {seq} {method}
{contact}Content-Length: 0

"
            ))
        };
        assert_eq!(
            d.on_request(&in_dialog("INFO", 7, "")),
            Err(DialogError::OutOfOrder)
        );
        assert_eq!(
            d.on_request(&in_dialog("ACK", 7, "")),
            Ok(()),
            "an ACK repeats the number"
        );
        let reinvite = in_dialog("INVITE", 8, "Contact: <sip:alice@10.0.0.9:5070>\n");
        assert_eq!(d.on_request(&reinvite), Ok(()));
        assert_eq!(
            d.remote_target(),
            "sip:alice@10.0.0.9:5070",
            "a target refresh"
        );
        let other = in_dialog("BYE", 9, "").to_bytes();
        let other = String::from_utf8(other)
            .unwrap()
            .replace("tag=a1", "tag=zz");
        let other = Message::parse(other.into_bytes(), &Limits::default()).unwrap();
        assert_eq!(d.on_request(&other), Err(DialogError::Mismatch));
    }

    #[test]
    fn an_early_dialog_is_confirmed_by_the_2xx_whose_route_set_wins() {
        let ringing = msg("SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag=b1
Call-ID: c1
CSeq: 7 INVITE
Contact: <sip:bob@10.0.0.2:5062>
Record-Route: <sip:p1.example.com;lr>
Content-Length: 0

");
        let mut d = Dialog::as_uac(&msg(INVITE), &ringing).unwrap();
        assert_eq!(d.state(), DialogState::Early);
        d.confirm(&ok("Record-Route: <sip:p3.example.com;lr>\n"))
            .unwrap();
        assert_eq!(d.state(), DialogState::Confirmed);
        assert_eq!(d.route_set(), ["<sip:p3.example.com;lr>"]);
        let other = String::from_utf8(ok("").to_bytes())
            .unwrap()
            .replace("tag=b1", "tag=b2");
        let other = Message::parse(other.into_bytes(), &Limits::default()).unwrap();
        assert_eq!(
            d.confirm(&other),
            Err(DialogError::Mismatch),
            "another fork's 2xx"
        );
    }

    #[test]
    fn a_strict_router_first_gets_the_request_uri_and_the_target_goes_last() {
        let mut d =
            Dialog::as_uac(&msg(INVITE), &ok("Record-Route: <sip:old.example.com>\n")).unwrap();
        let bye = built(d.request("BYE"));
        assert_eq!(bye.uri_str(), "sip:old.example.com");
        let routes: Vec<&str> = bye.values(HeaderName::Route).map(Result::unwrap).collect();
        assert_eq!(routes, ["<sip:bob@10.0.0.2:5062>"]);
    }

    #[test]
    fn what_cannot_make_a_dialog_says_why() {
        let untagged = String::from_utf8(ok("").to_bytes())
            .unwrap()
            .replace(";tag=b1", "");
        let untagged = Message::parse(untagged.into_bytes(), &Limits::default()).unwrap();
        assert_eq!(
            Dialog::as_uac(&msg(INVITE), &untagged).unwrap_err(),
            DialogError::Incomplete("To tag")
        );
        let no_contact = String::from_utf8(ok("").to_bytes())
            .unwrap()
            .replace("Contact: <sip:bob@10.0.0.2:5062>\r\n", "");
        let no_contact = Message::parse(no_contact.into_bytes(), &Limits::default()).unwrap();
        assert_eq!(
            Dialog::as_uac(&msg(INVITE), &no_contact)
                .unwrap_err()
                .to_string(),
            "cannot make a dialog: Contact"
        );
    }

    #[test]
    fn a_2xx_to_our_reinvite_moves_the_remote_target() {
        let mut d = Dialog::as_uac(&msg(INVITE), &ok("")).unwrap();
        let reinvite_ok = String::from_utf8(ok("").to_bytes())
            .unwrap()
            .replace("CSeq: 7", "CSeq: 8")
            .replace("10.0.0.2:5062", "10.0.0.7:5080");
        let reinvite_ok = Message::parse(reinvite_ok.into_bytes(), &Limits::default()).unwrap();
        d.on_response(&reinvite_ok).unwrap();
        assert_eq!(d.remote_target(), "sip:bob@10.0.0.7:5080");
    }
}
