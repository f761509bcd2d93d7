//! Applications: user agents inside the server (response groups, meetings, voice mail to
//! come). An application answers requests addressed to it, owns the dialogs its answers
//! create, sends requests within them, places calls of its own (every registered device of
//! the user called rings; the first to answer wins) and connects two of its dialogs, so that
//! what one side sends reaches the other (a back-to-back user agent: a caller put through to
//! an agent). The engine does the SIP around it — transactions, retransmitting a 2xx until its
//! ACK, ACKing the 2xx it receives, CANCELling devices that lost the race, Via and Contact,
//! matching in-dialog requests and responses back to it.
//!
//! Sans-IO like the engine: an application is called with what arrived and says what to do
//! by pushing [`Action`]s; the engine carries them out after it returns. It keeps no sockets,
//! reads no clock and never blocks: the time and what it may ask of the server (a user's
//! presence) come in an [`Env`], it sets timers with [`Action::Timer`], and it plays and hears
//! media through the media engine with [`Action::Media`] ([`MediaCommand`]; what a stream
//! hears comes back to [`Application::on_media`]).
//!
//! To add one: implement [`Application`], give it to [`crate::Engine::add_application`]
//! (a feature does this when the server starts), and it receives every request for the users
//! it [`claims`](Application::claims).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use confab_media::{Clip, MediaEvent, Negotiated};
use sip_proto::dialog::DialogId;
use sip_proto::Message;

use crate::engine::Now;
use crate::presence::Availability;

/// The configuration in force of a handle the shards share (replaced whole when the store
/// changes: response groups, meetings); `None` when there is none.
pub(crate) fn in_force<T>(handle: &std::sync::RwLock<Option<Arc<T>>>) -> Option<Arc<T>> {
    handle
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// What an application may know of the server when it is called.
pub struct Env<'a> {
    /// The time now (monotonic, and unix seconds for calendars).
    pub now: Now,
    pub(crate) presence: &'a crate::presence::Presence,
    /// The address media streams are reached at (`--media-address`).
    pub media_address: IpAddr,
    /// Other servers of the pool take sign-ins too: a user this one sees Offline may be
    /// signed in at one of them.
    pub(crate) pooled: bool,
}

impl Env<'_> {
    /// `user@domain`'s presence as the server aggregates it (Offline without devices).
    pub fn availability(&self, aor: &str) -> Availability {
        self.presence.availability(aor)
    }

    /// Whether Offline from [`Env::availability`] is certain: no other server of the pool
    /// could hold the user's devices.
    pub fn offline_is_certain(&self) -> bool {
        !self.pooled
    }
}
/// A user agent inside the server.
pub trait Application: Send {
    /// Its name, for logs.
    fn name(&self) -> &str;

    /// Whether requests to `user`@one of our domains are this application's (checked for
    /// requests outside a dialog; those within one go to the dialog's application).
    fn claims(&self, user: &str) -> bool;

    /// A request for the application: outside a dialog (`dialog` is `None`: answer it with
    /// [`Action::Reply`]; a 2xx to an INVITE or a SUBSCRIBE makes a dialog) or within one of
    /// its dialogs.
    /// An ACK needs no answer.
    fn on_request(
        &mut self,
        env: &Env,
        req: &Message,
        dialog: Option<&DialogId>,
        out: &mut Vec<Action>,
    );

    /// Its 2xx (to an INVITE or a SUBSCRIBE) made `dialog`: called once the 2xx is on its
    /// way, so that requests sent in it now (a NOTIFY) follow the answer.
    fn on_dialog(&mut self, _env: &Env, _dialog: &DialogId, _out: &mut Vec<Action>) {}

    /// A response to a request the application sent in `dialog`.
    fn on_response(&mut self, env: &Env, dialog: &DialogId, resp: &Message, out: &mut Vec<Action>);

    /// The dialog ended (a BYE either way, or the peer never acknowledged our 2xx), connected
    /// ones included.
    fn on_dialog_ended(&mut self, _env: &Env, _dialog: &DialogId, _out: &mut Vec<Action>) {}

    /// What became of a call it placed ([`Action::Call`]).
    fn on_call(&mut self, _env: &Env, _call: u64, _event: CallEvent, _out: &mut Vec<Action>) {}

    /// A timer it set ([`Action::Timer`]) fired.
    fn on_timer(&mut self, _env: &Env, _token: u64, _out: &mut Vec<Action>) {}

    /// A media stream it opened heard something or finished a clip.
    fn on_media(&mut self, _env: &Env, _stream: u64, _event: MediaEvent, _out: &mut Vec<Action>) {}
}

/// What an application asks of the media engine. Streams are the application's numbers;
/// ports come from the range it was given ([`confab_media::ports::PortPool`]).
#[derive(Debug, Clone)]
pub enum MediaCommand {
    /// Opens a stream on local `port` toward the peer of `negotiated`.
    Open {
        stream: u64,
        port: u16,
        negotiated: Negotiated,
    },
    /// Plays a clip from its start, in place of what plays (`looped`: until stopped).
    Play {
        stream: u64,
        clip: Arc<Clip>,
        looped: bool,
        tag: u64,
    },
    /// Stops playing.
    Stop { stream: u64 },
    /// Reports silence after this long without anything audible (`None`: stop watching).
    WatchSilence {
        stream: u64,
        after: Option<Duration>,
    },
    /// Reports the peer lost after this long without any packet (`None`: stop watching).
    WatchMedia {
        stream: u64,
        after: Option<Duration>,
    },
    /// Puts the stream in conference `conference`'s mix (made when its first stream
    /// joins): from then on it hears the others' audio (every 20 ms, on the conference's
    /// clock) except while a clip plays on it, and is heard by them.
    Join { stream: u64, conference: u64 },
    /// Takes the stream out of its conference's mix (the conference ends with its last).
    Leave { stream: u64 },
    /// Whether the others hear the stream in its conference.
    Mute { stream: u64, muted: bool },
    /// Closes the stream and frees its port (it leaves its conference).
    Close { stream: u64 },
}

impl MediaCommand {
    pub fn stream(&self) -> u64 {
        match self {
            Self::Open { stream, .. }
            | Self::Play { stream, .. }
            | Self::Stop { stream }
            | Self::WatchSilence { stream, .. }
            | Self::WatchMedia { stream, .. }
            | Self::Join { stream, .. }
            | Self::Leave { stream }
            | Self::Mute { stream, .. }
            | Self::Close { stream } => *stream,
        }
    }
}

/// What became of a call an application placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A device is ringing (the first provisional response above 100).
    Ringing,
    /// A device answered: the call is a dialog of the application's now. `body` is the
    /// answer's (its SDP).
    Answered { dialog: DialogId, body: Vec<u8> },
    /// No device answered: the best final response, or 408 when none came, 480 when the
    /// user has no device.
    Failed { code: u16, reason: String },
}

/// What an application wants done.
#[derive(Debug, Clone)]
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
    /// Places a call: an INVITE from `from` (an address the application speaks for, as
    /// `sip:helpdesk@example.com`, or with a display name: `"Help Desk" <sip:...>`) to `to` (a user of ours, whose registered devices all ring,
    /// or any SIP URI). `call` is the application's own number for it, given back with each
    /// [`CallEvent`] in [`Application::on_call`].
    Call {
        call: u64,
        from: String,
        to: String,
        /// `(name, value)` header fields beyond those the engine writes (Content-Type, ...).
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Gives up a call not answered yet: every device still ringing is CANCELled, and the
    /// call ends [`CallEvent::Failed`] (487).
    CancelCall { call: u64 },
    /// Connects two dialogs of the application: from now on a request arriving in one
    /// (re-INVITE, UPDATE, INFO, MESSAGE, ...) is sent in the other and its final response
    /// returned, and a BYE on either ends both. The application hears no more of their
    /// requests, only of their end.
    Connect { a: DialogId, b: DialogId },
    /// Ends a dialog without sending anything (a subscription that ended, or whose
    /// subscriber is gone); the application hears [`Application::on_dialog_ended`].
    Forget { dialog: DialogId },
    /// Calls [`Application::on_timer`] with `token` after `after`.
    Timer { token: u64, after: Duration },
    /// A command for the media engine.
    Media(MediaCommand),
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
