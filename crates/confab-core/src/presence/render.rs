//! The documents Confab sends in NOTIFYs: aggregated PIDF (RFC 3863 with RPID, RFC 4480),
//! resource-list notifications (RFC 4662: multipart/related with an RLMI document first) and
//! watcher information (RFC 3857/3858).

use std::fmt::Write;

use quick_xml::escape::escape;

use super::pidf::{Availability, Tuple, NS_DM, NS_PIDF, NS_RPID};

pub(crate) const PIDF_TYPE: &str = "application/pidf+xml";
pub(crate) const WINFO_TYPE: &str = "application/watcherinfo+xml";

/// One user's presence as a watcher may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) availability: Availability,
    /// Device tuples (id already made unique), shown unless Offline.
    pub(crate) tuples: Vec<Tuple>,
    pub(crate) note: Option<String>,
}

impl View {
    /// What a blocked or not-permitted watcher sees, and what a user with no device shows.
    pub(crate) fn offline() -> Self {
        Self {
            availability: Availability::Offline,
            tuples: Vec::new(),
            note: None,
        }
    }
}

/// The PIDF document for `entity` (a SIP URI). The summary tuple comes first: simple clients
/// read only the first `<basic>` they find.
pub(crate) fn pidf(entity: &str, view: &View) -> String {
    let a = view.availability;
    let basic = if a == Availability::Offline {
        "closed"
    } else {
        "open"
    };
    let mut s = String::with_capacity(512);
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"{NS_PIDF}\" xmlns:dm=\"{NS_DM}\" xmlns:rpid=\"{NS_RPID}\" entity=\"{}\">\r\n<tuple id=\"summary\"><status><basic>{basic}</basic></status><note>{}</note></tuple>\r\n",
        escape(entity),
        a.label()
    );
    if a != Availability::Offline {
        for t in &view.tuples {
            let _ = write!(s, "<tuple id=\"{}\"><status>", escape(&t.id));
            if let Some(open) = t.open {
                let _ = write!(s, "<basic>{}</basic>", if open { "open" } else { "closed" });
            }
            s.push_str("</status>");
            if let Some(c) = &t.contact {
                let _ = write!(s, "<contact>{}</contact>", escape(c));
            }
            if let Some(n) = &t.note {
                let _ = write!(s, "<note>{}</note>", escape(n));
            }
            s.push_str("</tuple>\r\n");
        }
    }
    let _ = write!(
        s,
        "<dm:person id=\"p\"><rpid:activities>{}</rpid:activities><dm:note>{}</dm:note></dm:person>\r\n</presence>\r\n",
        a.activities(),
        escape(view.note.as_deref().unwrap_or(a.label()))
    );
    s
}

/// One resource of a list notification.
pub(crate) struct ListEntry<'a> {
    pub(crate) uri: String,
    /// Groups it belongs to, shown as its `<name>`s.
    pub(crate) groups: &'a [String],
    pub(crate) view: View,
}

/// A list notification: (Content-Type, body).
pub(crate) fn rlmi(
    list_uri: &str,
    version: u32,
    full_state: bool,
    entries: &[ListEntry<'_>],
    boundary_seed: u64,
) -> (String, String) {
    let boundary = format!("confab-{boundary_seed:016x}");
    let start = format!("list{version}@confab");
    let mut list = String::with_capacity(256 + entries.len() * 160);
    let _ = write!(
        list,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<list xmlns=\"urn:ietf:params:xml:ns:rlmi\" uri=\"{}\" version=\"{version}\" fullState=\"{full_state}\">\r\n",
        escape(list_uri)
    );
    let mut parts = String::new();
    for (i, e) in entries.iter().enumerate() {
        let cid = format!("r{version}.{i}@confab");
        let _ = write!(list, "<resource uri=\"{}\">", escape(&e.uri));
        for g in e.groups {
            let _ = write!(list, "<name>{}</name>", escape(g));
        }
        let _ = write!(
            list,
            "<instance id=\"{}\" state=\"active\" cid=\"{cid}\"/></resource>\r\n",
            instance_id(&e.uri)
        );
        let _ = write!(
            parts,
            "--{boundary}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\nContent-Type: {PIDF_TYPE};charset=\"UTF-8\"\r\n\r\n{}\r\n",
            pidf(&e.uri, &e.view)
        );
    }
    list.push_str("</list>\r\n");
    let body = format!(
        "--{boundary}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{start}>\r\nContent-Type: application/rlmi+xml;charset=\"UTF-8\"\r\n\r\n{list}\r\n{parts}--{boundary}--\r\n"
    );
    let ctype = format!(
        "multipart/related;type=\"application/rlmi+xml\";start=\"<{start}>\";boundary=\"{boundary}\""
    );
    (ctype, body)
}

/// A stable instance id for a resource (RFC 4662 §5.2: unique within the resource).
fn instance_id(uri: &str) -> String {
    let h = uri.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("i{:x}", h & 0xffff_ffff)
}

/// One watcher of a resource.
pub(crate) struct Watcher<'a> {
    pub(crate) id: u64,
    pub(crate) uri: &'a str,
}

/// A full-state watcher information document for `resource`.
pub(crate) fn watcherinfo(resource: &str, version: u32, watchers: &[Watcher<'_>]) -> String {
    let mut s = String::with_capacity(256 + watchers.len() * 96);
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<watcherinfo xmlns=\"urn:ietf:params:xml:ns:watcherinfo\" version=\"{version}\" state=\"full\">\r\n<watcher-list resource=\"{}\" package=\"presence\">\r\n",
        escape(resource)
    );
    for w in watchers {
        let _ = write!(
            s,
            "<watcher id=\"w{}\" event=\"subscribe\" status=\"active\">{}</watcher>\r\n",
            w.id,
            escape(w.uri)
        );
    }
    s.push_str("</watcher-list>\r\n</watcherinfo>\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::pidf;

    fn busy_view() -> View {
        View {
            availability: Availability::Busy,
            tuples: vec![Tuple {
                id: "d1-t4109".into(),
                open: Some(true),
                contact: Some("sip:bob@example.com".into()),
                note: Some("on <site> & away".into()),
            }],
            note: None,
        }
    }

    #[test]
    fn rendered_pidf_reads_back_with_the_same_availability_and_notes() {
        for a in [
            Availability::Available,
            Availability::Away,
            Availability::Busy,
            Availability::InACall,
            Availability::DoNotDisturb,
        ] {
            let mut v = busy_view();
            v.availability = a;
            let text = pidf("sip:bob@example.com", &v);
            let d = pidf::parse(text.as_bytes()).unwrap();
            assert_eq!(d.availability(), a, "{text}");
            assert_eq!(d.entity, "sip:bob@example.com");
            assert_eq!(d.tuples[0].id, "summary");
            assert_eq!(d.tuples[1].note.as_deref(), Some("on <site> & away"));
        }
        let off = pidf("sip:bob@example.com", &View::offline());
        let d = pidf::parse(off.as_bytes()).unwrap();
        assert_eq!(d.availability(), Availability::Offline);
        assert_eq!(d.tuples.len(), 1, "an offline user shows no devices");
    }

    #[test]
    fn baresip_reads_the_first_basic_and_rpid_prefixed_activities() {
        // baresip's subscriber looks for the first <basic> and for <rpid:busy/>,
        // <rpid:on-the-phone/>, <rpid:away/> literally
        let text = pidf("sip:bob@example.com", &busy_view());
        let first_basic = text.find("<basic>").unwrap();
        assert!(text[first_basic..].starts_with("<basic>open</basic>"));
        assert!(text.contains("<rpid:busy/>"));
        let mut v = busy_view();
        v.availability = Availability::InACall;
        assert!(pidf("sip:x@y", &v).contains("<rpid:on-the-phone/>"));
    }

    #[test]
    fn list_notification_has_rlmi_first_and_one_pidf_per_resource() {
        let groups = vec!["Team".to_owned()];
        let entries = [
            ListEntry {
                uri: "sip:bob@example.com".into(),
                groups: &groups,
                view: busy_view(),
            },
            ListEntry {
                uri: "sip:carol@example.com".into(),
                groups: &[],
                view: View::offline(),
            },
        ];
        let (ctype, body) = rlmi("sip:alice+contacts@example.com", 3, true, &entries, 7);
        assert!(ctype.starts_with("multipart/related;type=\"application/rlmi+xml\""));
        let boundary = ctype
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"');
        let parts: Vec<&str> = body.split(&format!("--{boundary}")).collect();
        // preamble, rlmi, bob, carol, closing "--"
        assert_eq!(parts.len(), 5, "{body}");
        assert!(parts[1].contains("application/rlmi+xml") && parts[1].contains("version=\"3\""));
        assert!(parts[1].contains("<name>Team</name>"));
        assert!(parts[2].contains("Content-ID: <r3.0@confab>") && parts[2].contains("Busy"));
        assert!(parts[3].contains("<basic>closed</basic>"));
        assert!(parts[4].starts_with("--"));
    }

    #[test]
    fn watcherinfo_lists_each_watcher() {
        let w = watcherinfo(
            "sip:alice@example.com",
            2,
            &[Watcher {
                id: 9,
                uri: "sip:bob@example.com",
            }],
        );
        assert!(w.contains("version=\"2\" state=\"full\""));
        assert!(w.contains("<watcher id=\"w9\" event=\"subscribe\" status=\"active\">sip:bob@example.com</watcher>"));
    }
}
