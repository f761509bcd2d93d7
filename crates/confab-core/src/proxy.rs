//! State of one proxied request (RFC 3261 §16): its branches, the best final response so far,
//! and whether it was answered or cancelled.

use sip_proto::Message;

/// One forked branch.
#[derive(Debug)]
pub(crate) struct Branch {
    /// Key of the branch's client transaction.
    pub(crate) key: String,
    pub(crate) provisional: bool,
    pub(crate) finished: bool,
    /// A CANCEL is owed as soon as a provisional response arrives (RFC 3261 §9.1).
    pub(crate) cancel_pending: bool,
}

/// A request being proxied.
#[derive(Debug)]
pub(crate) struct ProxyCtx {
    pub(crate) server_key: String,
    pub(crate) invite: bool,
    /// The request as received, for responses of our own (408 when every branch timed out).
    pub(crate) request: Message,
    pub(crate) branches: Vec<Branch>,
    /// Best final non-2xx response so far: (rank, response); lower rank wins.
    pub(crate) best: Option<(u32, Message)>,
    /// A final response has gone upstream.
    pub(crate) answered: bool,
}

impl ProxyCtx {
    pub(crate) fn all_finished(&self) -> bool {
        self.branches.iter().all(|b| b.finished)
    }

    /// Keeps `resp` if it beats the best so far.
    pub(crate) fn offer(&mut self, resp: Message) {
        let r = rank(resp.status());
        if self.best.as_ref().is_none_or(|(b, _)| r < *b) {
            self.best = Some((r, resp));
        }
    }
}

/// RFC 3261 §16.7 step 6: any 6xx first, then the lowest class (3xx before 4xx before 5xx);
/// a 408 of our own timeouts and a 503 are the least informative within their class.
pub(crate) fn rank(code: u16) -> u32 {
    let code = u32::from(code);
    match code {
        600..=699 => code,
        408 | 503 => 10_000 + code,
        _ => 1_000 + code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_hundreds_beat_everything_and_timeouts_lose() {
        let mut v = vec![408, 486, 603, 302, 500, 503];
        v.sort_by_key(|c| rank(*c));
        assert_eq!(v, vec![603, 302, 486, 500, 408, 503]);
    }
}
