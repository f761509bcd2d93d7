//! Applications: user agents inside the server (response groups, meetings, voice mail to
//! come). An application answers requests addressed to it, owns the dialogs its answers
//! create, and sends requests within them; the engine does the SIP around it — transactions,
//! retransmitting a 2xx until its ACK, Via and Contact, matching in-dialog requests and
//! responses back to it.
//!
//! Sans-IO like the engine: an application is called with what arrived and says what to do
//! by pushing [`Action`]s; the engine carries them out after it returns. It keeps no sockets,
//! reads no clock and never blocks.
//!
//! To add one: implement [`Application`], give it to [`crate::Engine::add_application`]
//! (a feature does this when the server starts), and it receives every request for the users
//! it [`claims`](Application::claims).

use sip_proto::dialog::DialogId;
use sip_proto::Message;

/// A user agent inside the server.
pub trait Application: Send {
    /// Its name, for logs.
    fn name(&self) -> &str;

    /// Whether requests to `user`@one of our domains are this application's (checked for
    /// requests outside a dialog; those within one go to the dialog's application).
    fn claims(&self, user: &str) -> bool;

    /// A request for the application: outside a dialog (`dialog` is `None`: answer it with
    /// [`Action::Reply`]; a 2xx to an INVITE makes a dialog) or within one of its dialogs.
    /// An ACK needs no answer.
    fn on_request(&mut self, req: &Message, dialog: Option<&DialogId>, out: &mut Vec<Action>);

    /// A response to a request the application sent in `dialog`.
    fn on_response(&mut self, dialog: &DialogId, resp: &Message, out: &mut Vec<Action>);

    /// The dialog ended (a BYE either way, or the peer never acknowledged our 2xx).
    fn on_dialog_ended(&mut self, _dialog: &DialogId) {}
}

/// What an application wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answers the request being handled.
    Reply(Reply),
    /// Sends a request within a dialog of the application (BYE, re-INVITE, INFO, ...).
    Request {
        dialog: DialogId,
        method: String,
        /// `(name, value)` header fields beyond those the dialog and the engine add.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// A response of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(code: u16, reason: &str) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The same reply with a body of `content_type`.
    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .push(("Content-Type".to_owned(), content_type.to_owned()));
        self.body = body;
        self
    }
}
