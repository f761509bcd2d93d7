//! Client transactions (RFC 3261 §17.1): INVITE (Calling → Proceeding → Completed) and
//! non-INVITE (Trying → Proceeding → Completed), both ending in Terminated.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::timers::{Timer, TimerConfig, Timers};
use crate::header::HeaderName;
use crate::message::Message;
use crate::method::Method;
use crate::writer::Writer;

/// Where a client transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing heard.
    Calling,
    /// Non-INVITE sent, nothing heard.
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// What the transaction user hears.
#[derive(Debug)]
pub enum ClientEvent {
    /// A response to pass up (every provisional, the first final).
    Response(Message),
    /// Timer B or F fired with no final response: act as if 408 arrived.
    Timeout,
}

/// One client transaction.
#[derive(Debug)]
pub struct ClientTransaction {
    request: Message,
    invite: bool,
    reliable: bool,
    cfg: TimerConfig,
    state: ClientState,
    interval: Duration,
    ack: Option<Vec<u8>>,
    timers: Timers,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
}

impl ClientTransaction {
    /// Starts the transaction and queues the first transmission of `request`. `reliable` is true
    /// over TCP/TLS, where nothing is retransmitted.
    pub fn new(now: Instant, request: Message, reliable: bool, cfg: TimerConfig) -> Self {
        let invite = request.method() == Method::Invite;
        let mut t = Self {
            invite,
            reliable,
            cfg,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            interval: cfg.t1,
            ack: None,
            timers: Timers::default(),
            transmits: VecDeque::from([request.as_bytes().to_vec()]),
            events: VecDeque::new(),
            request,
        };
        let (retransmit, timeout) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if !reliable {
            t.timers.set(retransmit, now + cfg.t1);
        }
        t.timers.set(timeout, now + cfg.t1 * 64);
        t
    }

    /// The request this transaction sends.
    pub fn request(&self) -> &Message {
        &self.request
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// Feeds a response whose branch and CSeq method matched this transaction.
    pub fn handle_response(&mut self, now: Instant, resp: Message) {
        let code = resp.status();
        match (self.state, code) {
            (ClientState::Calling | ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                self.timers.clear(Timer::A);
                if self.invite {
                    // §17.1.1.2: Timer B guards the Calling state only; a ringing call is the
                    // proxy's to limit (Timer C), not the transaction's
                    self.timers.clear(Timer::B);
                }
                if !self.invite && !self.reliable {
                    // §17.1.2.2: keep retransmitting, at T2
                    self.interval = self.cfg.t2;
                    self.timers.set(Timer::E, now + self.cfg.t2);
                }
                self.events.push_back(ClientEvent::Response(resp));
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=299) if self.invite => {
                // the ACK for a 2xx is end to end; later 2xx retransmissions bypass us
                self.terminate();
                self.events.push_back(ClientEvent::Response(resp));
            }
            (ClientState::Calling | ClientState::Proceeding, _) if self.invite => {
                let ack = self.build_ack(&resp);
                self.transmits.push_back(ack.clone());
                self.ack = Some(ack);
                self.state = ClientState::Completed;
                self.timers.clear_all();
                self.timers.set(
                    Timer::D,
                    now + if self.reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32)
                    },
                );
                self.events.push_back(ClientEvent::Response(resp));
            }
            (ClientState::Trying | ClientState::Proceeding, _) => {
                self.state = ClientState::Completed;
                self.timers.clear_all();
                self.timers.set(
                    Timer::K,
                    now + if self.reliable {
                        Duration::ZERO
                    } else {
                        self.cfg.t4
                    },
                );
                self.events.push_back(ClientEvent::Response(resp));
            }
            (ClientState::Completed, 300..) if self.invite => {
                if let Some(ack) = &self.ack {
                    self.transmits.push_back(ack.clone());
                }
            }
            _ => {} // retransmissions after completion are absorbed
        }
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.take_expired(now) {
            match t {
                Timer::A | Timer::E => {
                    self.transmits.push_back(self.request.as_bytes().to_vec());
                    self.interval = if t == Timer::A {
                        self.interval * 2
                    } else {
                        (self.interval * 2).min(self.cfg.t2)
                    };
                    self.timers.set(t, now + self.interval);
                }
                Timer::B | Timer::F => {
                    if matches!(
                        self.state,
                        ClientState::Calling | ClientState::Trying | ClientState::Proceeding
                    ) {
                        self.events.push_back(ClientEvent::Timeout);
                    }
                    self.terminate();
                }
                Timer::D | Timer::K => self.terminate(),
                _ => {}
            }
        }
    }

    /// Transport failure: RFC 3261 §17.1.4 treats it as a timeout.
    pub fn handle_transport_error(&mut self) {
        if !matches!(self.state, ClientState::Completed | ClientState::Terminated) {
            self.events.push_back(ClientEvent::Timeout);
        }
        self.terminate();
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        super::drained(&mut self.transmits)
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        super::drained(&mut self.events)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.timers.clear_all();
    }

    /// The ACK for a non-2xx final response (§17.1.1.3): the request's URI, top Via, From,
    /// Call-ID and Route, the response's To, CSeq with method ACK.
    fn build_ack(&self, resp: &Message) -> Vec<u8> {
        let req = &self.request;
        let mut w = Writer::request("ACK", req.uri_str());
        if let Some(v) = req.values(HeaderName::Via).next().and_then(Result::ok) {
            w.header("Via", v);
        }
        w.header("Max-Forwards", "70");
        for (name, n, v) in req.fields() {
            if matches!(
                name,
                HeaderName::From | HeaderName::CallId | HeaderName::Route
            ) {
                w.raw(n, v);
            }
        }
        if let Some(to) = resp.raw_header(HeaderName::To) {
            w.header("To", to);
        }
        let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
        w.header("CSeq", format!("{seq} ACK"));
        w.finish(b"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Limits;

    fn msg(s: &str) -> Message {
        Message::parse(s.as_bytes().to_vec(), &Limits::default()).unwrap()
    }

    const INVITE: &str = "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP p:5060;branch=z9hG4bK1\r\nRoute: <sip:r;lr>\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";

    fn resp(code: u16, method: &str) -> Message {
        msg(&format!("SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP p:5060;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 7 {method}\r\n\r\n"))
    }

    #[test]
    fn invite_over_udp_retransmits_with_doubling_intervals_until_timer_b() {
        let t0 = Instant::now();
        let mut t = ClientTransaction::new(t0, msg(INVITE), false, TimerConfig::default());
        assert!(t.poll_transmit().is_some());
        let mut sends = Vec::new();
        let mut now = t0;
        while let Some(next) = t.poll_timeout() {
            now = next;
            t.handle_timeout(now);
            while t.poll_transmit().is_some() {
                sends.push(now - t0);
            }
        }
        let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert!(matches!(t.poll_event(), Some(ClientEvent::Timeout)));
        assert_eq!(now - t0, Duration::from_secs(32));
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_non_2xx_is_acked_by_the_transaction_and_retransmits_reacked() {
        let now = Instant::now();
        let mut t = ClientTransaction::new(now, msg(INVITE), false, TimerConfig::default());
        t.poll_transmit();
        t.handle_response(now, resp(180, "INVITE"));
        assert!(matches!(t.poll_event(), Some(ClientEvent::Response(r)) if r.status() == 180));
        t.handle_response(now, resp(486, "INVITE"));
        let ack = msg(std::str::from_utf8(&t.poll_transmit().unwrap()).unwrap());
        assert_eq!(ack.method(), Method::Ack);
        assert_eq!(ack.cseq().unwrap().seq, 7);
        assert_eq!(ack.to().unwrap().tag(), Some("2"));
        assert_eq!(ack.count(HeaderName::Route), 1);
        assert!(matches!(t.poll_event(), Some(ClientEvent::Response(r)) if r.status() == 486));
        t.handle_response(now, resp(486, "INVITE"));
        assert!(
            t.poll_transmit().is_some(),
            "retransmitted final is re-ACKed"
        );
        assert!(t.poll_event().is_none(), "and not passed up again");
        t.handle_timeout(now + Duration::from_secs(32));
        assert!(t.is_terminated());
    }

    #[test]
    fn a_provisional_stops_timer_b_so_a_long_ringing_call_does_not_time_out() {
        let t0 = Instant::now();
        let mut t = ClientTransaction::new(t0, msg(INVITE), false, TimerConfig::default());
        t.poll_transmit();
        t.handle_response(t0 + Duration::from_millis(100), resp(180, "INVITE"));
        t.poll_event();
        assert_eq!(t.poll_timeout(), None, "no retransmission, no Timer B");
        let later = t0 + Duration::from_secs(120);
        t.handle_timeout(later);
        assert!(
            t.poll_event().is_none(),
            "no timeout after two minutes of ringing"
        );
        t.handle_response(later, resp(200, "INVITE"));
        assert!(matches!(t.poll_event(), Some(ClientEvent::Response(r)) if r.status() == 200));
    }

    #[test]
    fn invite_2xx_terminates_at_once() {
        let now = Instant::now();
        let mut t = ClientTransaction::new(now, msg(INVITE), true, TimerConfig::default());
        t.poll_transmit();
        t.handle_response(now, resp(200, "INVITE"));
        assert!(t.is_terminated());
        assert!(t.poll_transmit().is_none());
    }

    #[test]
    fn non_invite_retransmits_cap_at_t2_and_wait_timer_k() {
        let t0 = Instant::now();
        let req = INVITE.replace("INVITE", "MESSAGE");
        let mut t = ClientTransaction::new(t0, msg(&req), false, TimerConfig::default());
        t.poll_transmit();
        let mut intervals = Vec::new();
        let mut last = t0;
        for _ in 0..6 {
            let next = t.poll_timeout().unwrap();
            t.handle_timeout(next);
            assert!(t.poll_transmit().is_some());
            intervals.push((next - last).as_millis());
            last = next;
        }
        assert_eq!(intervals, vec![500, 1000, 2000, 4000, 4000, 4000]);
        t.handle_response(last, resp(200, "MESSAGE"));
        assert_eq!(t.state(), ClientState::Completed);
        assert_eq!(t.poll_timeout(), Some(last + Duration::from_secs(5)));
    }
}
