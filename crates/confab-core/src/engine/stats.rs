//! The engine's counters and what it reports to the metrics (`crate::metrics`): counts by
//! method and response class, and the sizes of its tables.

use super::Engine;

/// Counters of what the engine did with bad or hostile input.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    pub requests: u64,
    pub responses: u64,
    pub malformed_answered: u64,
    pub malformed_dropped: u64,
    pub retransmissions_absorbed: u64,
    pub auth_failures: u64,
    pub lockouts: u64,
    /// Attempts refused because their user or source was locked out.
    pub refused_locked: u64,
    /// Requests that looked in-dialog without our sealed Route (forged, or from a dialog we
    /// are not on): handled as out-of-dialog.
    pub unsealed_in_dialog: u64,
    /// Requests refused forwarding (a Route or Request-URI elsewhere, sender not trusted).
    pub relay_refused: u64,
    /// ACKs matching no transaction and no dialog of ours: dropped.
    pub stray_acks: u64,
    /// ACKs of final responses sent without a transaction (challenges to INVITEs): absorbed.
    pub acks_absorbed: u64,
    /// Datagrams and stream messages dropped before parsing because they cannot be SIP.
    pub not_sip: u64,
    /// New requests answered 503 while draining or overloaded.
    pub shed: u64,
    /// Requests the server failed to answer itself (a defect): answered 500, or dropped.
    pub unanswered: u64,
    /// Requests received, by method (`Method::index`).
    pub requests_by_method: [u64; METHODS],
    /// Responses sent toward clients, by the request's method and the response's class
    /// (`[0]` is 1xx ... `[5]` is 6xx).
    pub responses_sent: [[u64; 6]; METHODS],
    /// Requests this server sent (proxied or its own), by method: NOTIFYs are presence's
    /// fan-out.
    pub requests_sent: [u64; METHODS],
}

/// How many methods the tables of counts have (`sip_proto::Method::ALL`).
pub(crate) const METHODS: usize = sip_proto::Method::ALL.len();

impl EngineStats {
    /// Adds another shard's counts.
    pub fn add(&mut self, o: &Self) {
        self.requests += o.requests;
        self.responses += o.responses;
        self.malformed_answered += o.malformed_answered;
        self.malformed_dropped += o.malformed_dropped;
        self.retransmissions_absorbed += o.retransmissions_absorbed;
        self.auth_failures += o.auth_failures;
        self.lockouts += o.lockouts;
        self.refused_locked += o.refused_locked;
        self.unsealed_in_dialog += o.unsealed_in_dialog;
        self.relay_refused += o.relay_refused;
        self.stray_acks += o.stray_acks;
        self.acks_absorbed += o.acks_absorbed;
        self.not_sip += o.not_sip;
        self.shed += o.shed;
        self.unanswered += o.unanswered;
        for m in 0..METHODS {
            self.requests_by_method[m] += o.requests_by_method[m];
            self.requests_sent[m] += o.requests_sent[m];
            for c in 0..6 {
                self.responses_sent[m][c] += o.responses_sent[m][c];
            }
        }
    }

    /// Counts a response of status `code` sent to a request of `method`.
    pub(crate) fn response_sent(&mut self, method: sip_proto::Method, code: u16) {
        let class = usize::from(code / 100).clamp(1, 6) - 1;
        self.responses_sent[method.index()][class] += 1;
    }
}

impl Engine {
    /// What the shard holds now and has counted, for the metrics (`crate::metrics`).
    pub fn figures(&self) -> crate::metrics::Figures {
        crate::metrics::Figures {
            stats: self.stats,
            presence: self.presence.stats(),
            server_transactions: self.server_tx.len(),
            client_transactions: self.client_tx.len(),
            app_dialogs: self.app_dialogs.len(),
            parked: self.parked.len(),
            queue: 0,
        }
    }

    /// Registered devices and calls in progress (what all shards share).
    pub fn shared_figures(&self) -> (usize, usize) {
        let calls = self
            .shared
            .calls
            .lock()
            .map(|c| c.in_progress())
            .unwrap_or_default();
        (self.shared.location.count(), calls)
    }
}
