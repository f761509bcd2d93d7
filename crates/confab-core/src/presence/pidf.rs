//! Presence documents: reading PIDF (RFC 3863) with the RPID activities (RFC 4480) and the
//! data-model person element (RFC 4479), and the availability Confab derives from them.
//! Reading is strict about structure (a publication that cannot be understood is refused with
//! the reason) and tolerant of extensions (unknown elements are skipped).

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use serde::{Deserialize, Serialize};

pub(crate) const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
pub(crate) const NS_DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
pub(crate) const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";

/// Most tuples in one published document.
const MAX_TUPLES: usize = 32;
/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 32;
/// Notes longer than this are cut (in characters).
const MAX_NOTE: usize = 256;

/// One user's availability, in precedence order: when several devices publish, the highest
/// wins. `InACall` ranks above `Busy` because it is the more specific "busy".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Availability {
    Offline,
    Away,
    Available,
    Busy,
    InACall,
    DoNotDisturb,
}

impl Availability {
    /// The words a person reads.
    pub fn label(self) -> &'static str {
        match self {
            Self::Offline => "Offline",
            Self::Away => "Away",
            Self::Available => "Available",
            Self::Busy => "Busy",
            Self::InACall => "In a call",
            Self::DoNotDisturb => "Do Not Disturb",
        }
    }

    /// RPID activity elements that say it (clients that read only RPID understand these).
    pub(crate) fn activities(self) -> &'static str {
        match self {
            Self::Offline | Self::Available => "",
            Self::Away => "<rpid:away/>",
            Self::Busy => "<rpid:busy/>",
            Self::InACall => "<rpid:on-the-phone/>",
            Self::DoNotDisturb => "<rpid:busy/><rpid:other>Do Not Disturb</rpid:other>",
        }
    }
}

/// A device's tuple as published: kept and shown to watchers with its note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tuple {
    pub(crate) id: String,
    /// `<basic>`: open (true), closed (false) or absent.
    pub(crate) open: Option<bool>,
    pub(crate) contact: Option<String>,
    pub(crate) note: Option<String>,
}

/// What Confab keeps of a published PIDF document.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Document {
    pub(crate) entity: String,
    pub(crate) tuples: Vec<Tuple>,
    /// RPID activity element names of the person (`busy`, `away`, `on-the-phone`, ...).
    pub(crate) activities: Vec<String>,
    /// Text of `<rpid:other>` activities.
    pub(crate) other: Vec<String>,
    /// The person's note, or the document-level note.
    pub(crate) note: Option<String>,
}

impl Document {
    /// The availability this document states.
    ///
    /// All tuples closed means Offline. Otherwise the person's activities decide: an `other`
    /// activity saying "Do Not Disturb" (or "dnd"), `on-the-phone`, the busy family (busy,
    /// meeting, appointment, presentation, performance), the away family (away, vacation,
    /// holiday, sleeping, meals, travel, permanent-absence); none of these means Available.
    pub(crate) fn availability(&self) -> Availability {
        let open = self.tuples.iter().any(|t| t.open != Some(false));
        if !self.tuples.is_empty() && !open {
            return Availability::Offline;
        }
        if self.other.iter().any(|o| {
            let o = o.trim().to_ascii_lowercase();
            o == "dnd" || o.contains("do not disturb")
        }) {
            return Availability::DoNotDisturb;
        }
        self.activities
            .iter()
            .filter_map(|a| match a.as_str() {
                "on-the-phone" => Some(Availability::InACall),
                "busy" | "meeting" | "appointment" | "presentation" | "performance" => {
                    Some(Availability::Busy)
                }
                "away" | "vacation" | "holiday" | "sleeping" | "meal" | "breakfast" | "lunch"
                | "dinner" | "travel" | "in-transit" | "permanent-absence" => {
                    Some(Availability::Away)
                }
                _ => None,
            })
            .max()
            .unwrap_or(Availability::Available)
    }
}

/// Where the reader is, by element (namespace, local name) along the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Presence,
    Tuple,
    Status,
    Basic,
    Contact,
    TupleNote,
    Person,
    Activities,
    Other,
    PersonNote,
    PresenceNote,
    Ignored,
}

/// Reads a PIDF document; the error says what is wrong, for a 400 reason phrase.
pub(crate) fn parse(body: &[u8]) -> Result<Document, String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("PIDF is not UTF-8 (byte {} is not valid)", e.valid_up_to()))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut doc = Document::default();
    let mut path: Vec<Node> = Vec::new();
    let mut root_seen = false;
    loop {
        let pos = reader.buffer_position();
        let (ns, ev) = reader
            .read_resolved_event()
            .map_err(|e| format!("PIDF is not well-formed XML near byte {pos}: {e}"))?;
        let ns = match ns {
            ResolveResult::Bound(n) => std::str::from_utf8(n.as_ref()).unwrap_or("").to_owned(),
            _ => String::new(),
        };
        match ev {
            Event::Start(e) | Event::Empty(e) if path.is_empty() && root_seen => {
                let _ = e;
                return Err("PIDF has content after </presence>".into());
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let node = enter(&mut doc, path.last().copied(), &ns, e)?;
                if path.is_empty() {
                    root_seen = true;
                }
                if !empty {
                    if path.len() >= MAX_DEPTH {
                        return Err(format!("PIDF nests deeper than {MAX_DEPTH} elements"));
                    }
                    path.push(node);
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let value = t
                    .unescape()
                    .map_err(|e| format!("PIDF has a bad character reference: {e}"))?;
                text_of(&mut doc, path.last().copied(), value.trim())?;
            }
            Event::CData(t) => {
                let value = String::from_utf8_lossy(&t).into_owned();
                text_of(&mut doc, path.last().copied(), value.trim())?;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err("PIDF document is empty".into());
    }
    if !path.is_empty() {
        return Err("PIDF ends before </presence>".into());
    }
    Ok(doc)
}

/// Handles an element start; returns the node it is.
fn enter(
    doc: &mut Document,
    parent: Option<Node>,
    ns: &str,
    e: &BytesStart<'_>,
) -> Result<Node, String> {
    let local = e.local_name();
    let local = std::str::from_utf8(local.as_ref()).unwrap_or("");
    let attr = |name: &str| -> Result<Option<String>, String> {
        match e.try_get_attribute(name) {
            Ok(Some(a)) => a
                .unescape_value()
                .map(|v| Some(v.into_owned()))
                .map_err(|err| format!("PIDF attribute {name} is malformed: {err}")),
            Ok(None) => Ok(None),
            Err(err) => Err(format!("PIDF <{local}> has malformed attributes: {err}")),
        }
    };
    let node = match (parent, ns, local) {
        (None, NS_PIDF, "presence") => {
            doc.entity = attr("entity")?
                .filter(|v| !v.trim().is_empty())
                .ok_or("PIDF <presence> has no entity attribute")?;
            Node::Presence
        }
        (None, _, _) => {
            return Err(format!(
                "PIDF root element is <{local}>, not <presence> of {NS_PIDF}"
            ))
        }
        (Some(Node::Presence), NS_PIDF, "tuple") => {
            if doc.tuples.len() >= MAX_TUPLES {
                return Err(format!("PIDF has more than {MAX_TUPLES} tuples"));
            }
            let id = attr("id")?
                .filter(|v| !v.is_empty())
                .ok_or("PIDF <tuple> has no id attribute")?;
            doc.tuples.push(Tuple {
                id,
                open: None,
                contact: None,
                note: None,
            });
            Node::Tuple
        }
        (Some(Node::Presence), NS_PIDF, "note") => Node::PresenceNote,
        (Some(Node::Presence), NS_DM, "person") => Node::Person,
        (Some(Node::Tuple), NS_PIDF, "status") => Node::Status,
        (Some(Node::Tuple), NS_PIDF, "contact") => Node::Contact,
        (Some(Node::Tuple), NS_PIDF, "note") => Node::TupleNote,
        (Some(Node::Status), NS_PIDF, "basic") => Node::Basic,
        (Some(Node::Person), NS_RPID, "activities") => Node::Activities,
        (Some(Node::Person), NS_DM, "note") => Node::PersonNote,
        (Some(Node::Activities), NS_RPID, "other") => Node::Other,
        (Some(Node::Activities), NS_RPID, name) => {
            if doc.activities.len() < 16 && !doc.activities.iter().any(|a| a == name) {
                doc.activities.push(name.to_owned());
            }
            Node::Ignored
        }
        _ => Node::Ignored,
    };
    Ok(node)
}

fn text_of(doc: &mut Document, node: Option<Node>, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let note = || value.chars().take(MAX_NOTE).collect::<String>();
    match node {
        Some(Node::Basic) => {
            let open = match value {
                "open" => true,
                "closed" => false,
                other => {
                    return Err(format!(
                        "PIDF <basic> must be open or closed, not '{}'",
                        other.chars().take(32).collect::<String>()
                    ))
                }
            };
            if let Some(t) = doc.tuples.last_mut() {
                t.open = Some(open);
            }
        }
        Some(Node::Contact) => {
            if let Some(t) = doc.tuples.last_mut() {
                t.contact = Some(value.chars().take(MAX_NOTE).collect());
            }
        }
        Some(Node::TupleNote) => {
            if let Some(t) = doc.tuples.last_mut() {
                t.note.get_or_insert_with(note);
            }
        }
        Some(Node::PersonNote) => doc.note = Some(note()),
        Some(Node::PresenceNote) => {
            doc.note.get_or_insert_with(note);
        }
        Some(Node::Other) if doc.other.len() < 4 => doc.other.push(note()),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARESIP: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="sip:alice@example.com">
  <dm:person id="p4159"><rpid:activities/></dm:person>
  <tuple id="t4109">
    <status>
      <basic>open</basic>
    </status>
    <contact>sip:alice@example.com</contact>
  </tuple>
</presence>"#;

    fn doc(activities: &str, basic: &str) -> String {
        format!(
            r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:d="urn:ietf:params:xml:ns:pidf:data-model" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@example.com"><tuple id="t1"><status><basic>{basic}</basic></status><note>at my desk</note></tuple><d:person id="p"><r:activities>{activities}</r:activities><d:note>back at 3</d:note></d:person></presence>"#
        )
    }

    #[test]
    fn reads_a_baresip_publication() {
        let d = parse(BARESIP.as_bytes()).unwrap();
        assert_eq!(d.entity, "sip:alice@example.com");
        assert_eq!(d.tuples.len(), 1);
        assert_eq!(d.tuples[0].open, Some(true));
        assert_eq!(
            d.tuples[0].contact.as_deref(),
            Some("sip:alice@example.com")
        );
        assert_eq!(d.availability(), Availability::Available);
    }

    #[test]
    fn activities_decide_availability_whatever_the_prefixes() {
        let cases = [
            ("", "open", Availability::Available),
            ("<r:busy/>", "open", Availability::Busy),
            ("<r:meeting/>", "open", Availability::Busy),
            ("<r:on-the-phone/>", "open", Availability::InACall),
            ("<r:away/>", "open", Availability::Away),
            (
                "<r:busy/><r:other>Do Not Disturb</r:other>",
                "open",
                Availability::DoNotDisturb,
            ),
            ("<r:other>dnd</r:other>", "open", Availability::DoNotDisturb),
            ("<r:busy/>", "closed", Availability::Offline),
            ("<r:away/><r:on-the-phone/>", "open", Availability::InACall),
        ];
        for (acts, basic, want) in cases {
            let d = parse(doc(acts, basic).as_bytes()).unwrap();
            assert_eq!(d.availability(), want, "{acts} {basic}");
            assert_eq!(d.tuples[0].note.as_deref(), Some("at my desk"));
            assert_eq!(d.note.as_deref(), Some("back at 3"));
        }
    }

    #[test]
    fn precedence_is_dnd_call_busy_available_away_offline() {
        use Availability::*;
        let mut v = vec![Away, DoNotDisturb, Offline, Busy, Available, InACall];
        v.sort();
        assert_eq!(v, [Offline, Away, Available, Busy, InACall, DoNotDisturb]);
    }

    #[test]
    fn malformed_documents_are_refused_with_the_reason() {
        let cases: [(&[u8], &str); 9] = [
            (b"", "empty"),
            (b"<presence", "well-formed"),
            (b"<foo xmlns='urn:ietf:params:xml:ns:pidf'/>", "root element is <foo>"),
            (b"<presence entity='sip:a@b'/>", "not <presence> of"),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>", "no entity"),
            (
                b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple><status/></tuple></presence>",
                "no id",
            ),
            (
                b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple id='x'><status><basic>maybe</basic></status></tuple></presence>",
                "open or closed",
            ),
            (
                b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'></presence><x/>",
                "after </presence>",
            ),
            (b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple id='a'>", "ends before"),
        ];
        for (body, want) in cases {
            let err = parse(body).unwrap_err();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn too_many_tuples_are_refused() {
        let tuples: String = (0..40)
            .map(|i| format!("<tuple id='t{i}'><status><basic>open</basic></status></tuple>"))
            .collect();
        let body = format!(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'>{tuples}</presence>"
        );
        assert!(parse(body.as_bytes()).unwrap_err().contains("more than 32"));
    }
}
