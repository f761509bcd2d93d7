//! Server transactions (RFC 3261 §17.2, with RFC 6026's Accepted state for INVITE): they absorb
//! request retransmissions by resending the last response and retransmit final responses over
//! UDP until acknowledged.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::timers::{Timer, TimerConfig, Timers};

/// Where a server transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE, no response sent.
    Trying,
    /// A provisional response sent (INVITE starts here).
    Proceeding,
    /// A final response sent; for INVITE, a non-2xx awaiting ACK.
    Completed,
    /// INVITE: the ACK for a non-2xx arrived.
    Confirmed,
    /// INVITE: a 2xx sent (RFC 6026).
    Accepted,
    Terminated,
}

/// What the transaction user hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// Timer H fired: the ACK for a non-2xx final never came.
    NoAck,
}

/// One server transaction.
#[derive(Debug)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    cfg: TimerConfig,
    state: ServerState,
    interval: Duration,
    last_response: Option<Vec<u8>>,
    timers: Timers,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ServerEvent>,
}

impl ServerTransaction {
    pub fn new(invite: bool, reliable: bool, cfg: TimerConfig) -> Self {
        Self {
            invite,
            reliable,
            cfg,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            interval: cfg.t1,
            last_response: None,
            timers: Timers::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// Whether any response (a provisional one too) has been sent.
    pub fn has_responded(&self) -> bool {
        self.last_response.is_some()
    }

    /// Whether a final response has been sent.
    pub fn is_final(&self) -> bool {
        !matches!(self.state, ServerState::Trying | ServerState::Proceeding)
    }

    /// The transaction user sends a response with status `code`.
    pub fn send_response(&mut self, now: Instant, code: u16, bytes: Vec<u8>) {
        if self.is_final() {
            // after a 2xx to an INVITE a proxy forwards further 2xx (other forks) unchanged
            if self.state == ServerState::Accepted && (200..300).contains(&code) {
                self.transmits.push_back(bytes);
            }
            return;
        }
        // the copy kept for retransmissions is the exact size; the writer's buffer, with its
        // spare capacity, goes out now (a UDP transaction keeps its copy for 32 s)
        self.last_response = Some(bytes.clone());
        self.transmits.push_back(bytes);
        match code {
            100..=199 => self.state = ServerState::Proceeding,
            200..=299 if self.invite => {
                self.state = ServerState::Accepted;
                self.timers.set(Timer::L, now + self.cfg.t1 * 64);
            }
            _ if self.invite => {
                self.state = ServerState::Completed;
                if !self.reliable {
                    self.timers.set(Timer::G, now + self.cfg.t1);
                }
                self.timers.set(Timer::H, now + self.cfg.t1 * 64);
            }
            _ => {
                self.state = ServerState::Completed;
                self.timers.set(
                    Timer::J,
                    now + if self.reliable {
                        Duration::ZERO
                    } else {
                        self.cfg.t1 * 64
                    },
                );
            }
        }
    }

    /// The request arrived again: resend the last response (§17.2.1, §17.2.2).
    pub fn handle_retransmission(&mut self) {
        if matches!(self.state, ServerState::Proceeding | ServerState::Completed) {
            if let Some(r) = &self.last_response {
                self.transmits.push_back(r.clone());
            }
        }
    }

    /// The ACK for a non-2xx final arrived.
    pub fn handle_ack(&mut self, now: Instant) {
        if self.invite && self.state == ServerState::Completed {
            self.state = ServerState::Confirmed;
            self.timers.clear_all();
            self.timers.set(
                Timer::I,
                now + if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4
                },
            );
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.take_expired(now) {
            match t {
                Timer::G => {
                    if let Some(r) = &self.last_response {
                        self.transmits.push_back(r.clone());
                    }
                    self.interval = (self.interval * 2).min(self.cfg.t2);
                    self.timers.set(Timer::G, now + self.interval);
                }
                Timer::H => {
                    self.events.push_back(ServerEvent::NoAck);
                    self.terminate();
                }
                Timer::I | Timer::J | Timer::L => self.terminate(),
                _ => {}
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        super::drained(&mut self.transmits)
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        super::drained(&mut self.events)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.timers.clear_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_error_response_retransmits_until_ack_then_waits_timer_i() {
        let t0 = Instant::now();
        let mut t = ServerTransaction::new(true, false, TimerConfig::default());
        t.send_response(t0, 100, b"100".to_vec());
        t.handle_retransmission();
        assert_eq!(t.poll_transmit().unwrap(), b"100");
        assert_eq!(
            t.poll_transmit().unwrap(),
            b"100",
            "retransmitted INVITE gets the 100 again"
        );
        t.send_response(t0, 486, b"486".to_vec());
        assert_eq!(t.poll_transmit().unwrap(), b"486");
        let g = t.poll_timeout().unwrap();
        assert_eq!(g - t0, Duration::from_millis(500));
        t.handle_timeout(g);
        assert_eq!(t.poll_transmit().unwrap(), b"486");
        t.handle_ack(g);
        assert_eq!(t.state(), ServerState::Confirmed);
        t.handle_timeout(g + Duration::from_secs(5));
        assert!(t.is_terminated());
    }

    #[test]
    fn a_completed_transaction_keeps_only_an_exact_copy_of_its_response() {
        let t0 = Instant::now();
        let mut t = ServerTransaction::new(false, false, TimerConfig::default());
        let mut resp = Vec::with_capacity(1024);
        resp.extend_from_slice(b"SIP/2.0 200 OK\r\n\r\n");
        t.send_response(t0, 200, resp);
        while t.poll_transmit().is_some() {}
        assert_eq!(t.state(), ServerState::Completed);
        let kept = t.last_response.as_ref().unwrap();
        assert_eq!(kept.capacity(), kept.len(), "no spare room kept for 32 s");
        assert_eq!(
            t.transmits.capacity(),
            0,
            "the drained queue gave its buffer back"
        );
        t.handle_retransmission();
        assert_eq!(t.poll_transmit().unwrap(), b"SIP/2.0 200 OK\r\n\r\n");
    }

    #[test]
    fn invite_without_ack_ends_with_timer_h() {
        let t0 = Instant::now();
        let mut t = ServerTransaction::new(true, true, TimerConfig::default());
        t.send_response(t0, 404, b"404".to_vec());
        assert_eq!(
            t.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "no Timer G over TCP"
        );
        t.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(t.poll_event(), Some(ServerEvent::NoAck));
        assert!(t.is_terminated());
    }

    #[test]
    fn non_invite_absorbs_retransmissions_for_timer_j() {
        let t0 = Instant::now();
        let mut t = ServerTransaction::new(false, false, TimerConfig::default());
        t.handle_retransmission();
        assert!(t.poll_transmit().is_none(), "nothing to resend in Trying");
        t.send_response(t0, 200, b"200".to_vec());
        t.poll_transmit();
        t.handle_retransmission();
        assert_eq!(t.poll_transmit().unwrap(), b"200");
        t.send_response(t0, 500, b"500".to_vec());
        assert!(t.poll_transmit().is_none(), "only one final response");
        t.handle_timeout(t0 + Duration::from_secs(32));
        assert!(t.is_terminated());
    }

    #[test]
    fn invite_2xx_moves_to_accepted_and_lets_other_2xx_through() {
        let t0 = Instant::now();
        let mut t = ServerTransaction::new(true, false, TimerConfig::default());
        t.send_response(t0, 200, b"200a".to_vec());
        assert_eq!(t.state(), ServerState::Accepted);
        t.send_response(t0, 200, b"200b".to_vec());
        t.handle_retransmission();
        let sent: Vec<_> = std::iter::from_fn(|| t.poll_transmit()).collect();
        assert_eq!(sent, vec![b"200a".to_vec(), b"200b".to_vec()]);
    }
}
