//! The roster as the conference event package carries it (RFC 4575): a `conference-info`
//! document with the meeting's subject and limit, whether it is locked, and every participant
//! with their roles and whether their audio is heard. Sent whole (`state="full"`) with a
//! version that grows with every change, so a subscriber that missed one loses nothing.

use quick_xml::escape::escape;

use super::Role;

/// A participant as the roster shows them.
pub(super) struct Entry<'a> {
    pub(super) aor: &'a str,
    pub(super) display: Option<&'a str>,
    pub(super) role: Role,
    pub(super) muted: bool,
    /// The participant's dialog with the focus, naming their endpoint.
    pub(super) call_id: &'a str,
}

/// The meeting's state for the document.
pub(super) struct State<'a> {
    pub(super) uri: &'a str,
    pub(super) subject: Option<&'a str>,
    pub(super) limit: usize,
    pub(super) locked: bool,
    pub(super) version: u64,
}

/// The `application/conference-info+xml` document.
pub(super) fn document(state: &State, entries: &[Entry]) -> String {
    let mut x = String::with_capacity(512 + entries.len() * 320);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<conference-info xmlns=\"urn:ietf:params:xml:ns:conference-info\" entity=\"{}\" state=\"full\" version=\"{}\">\n",
        escape(state.uri),
        state.version
    ));
    x.push_str("<conference-description>");
    if let Some(s) = state.subject {
        x.push_str(&format!("<subject>{}</subject>", escape(s)));
    }
    x.push_str(&format!(
        "<maximum-user-count>{}</maximum-user-count></conference-description>\n",
        state.limit
    ));
    x.push_str(&format!(
        "<conference-state><user-count>{}</user-count><active>{}</active><locked>{}</locked></conference-state>\n<users>\n",
        entries.len(),
        !entries.is_empty(),
        state.locked
    ));
    for e in entries {
        x.push_str(&format!(
            "<user entity=\"sip:{}\" state=\"full\">",
            escape(e.aor)
        ));
        if let Some(d) = e.display {
            x.push_str(&format!("<display-text>{}</display-text>", escape(d)));
        }
        x.push_str(&format!(
            "<roles><entry>{}</entry></roles><endpoint entity=\"sip:{};call-id={}\"><status>connected</status><media id=\"1\"><type>audio</type><status>{}</status></media></endpoint></user>\n",
            e.role.name(),
            escape(e.aor),
            escape(e.call_id),
            if e.muted { "recvonly" } else { "sendrecv" }
        ));
    }
    x.push_str("</users>\n</conference-info>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roster_names_everyone_with_roles_and_escapes_what_users_wrote() {
        let state = State {
            uri: "sip:meet-1234567@example.com",
            subject: Some("Budget <Q3> & more"),
            limit: 250,
            locked: true,
            version: 4,
        };
        let entries = [
            Entry {
                aor: "alice@example.com",
                display: Some("Alice \"A\""),
                role: Role::Organizer,
                muted: false,
                call_id: "c1",
            },
            Entry {
                aor: "bob@example.com",
                display: None,
                role: Role::Attendee,
                muted: true,
                call_id: "c2",
            },
        ];
        let doc = document(&state, &entries);
        assert!(doc.contains("version=\"4\""));
        assert!(doc.contains("<subject>Budget &lt;Q3&gt; &amp; more</subject>"));
        assert!(doc.contains("<user-count>2</user-count>"));
        assert!(doc.contains("<locked>true</locked>"));
        assert!(doc.contains("<user entity=\"sip:alice@example.com\" state=\"full\"><display-text>Alice &quot;A&quot;</display-text><roles><entry>organizer</entry></roles>"));
        assert!(doc.contains("<roles><entry>attendee</entry></roles>"));
        assert!(doc.contains("<status>recvonly</status>"), "bob is muted");
        // well-formed: a real XML reader gets through it
        let mut r = quick_xml::Reader::from_str(&doc);
        let mut users = 0;
        loop {
            match r.read_event().unwrap() {
                quick_xml::events::Event::Start(e) if e.name().as_ref() == b"user" => users += 1,
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(users, 2);
    }
}
