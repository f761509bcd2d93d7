//! Call detail records of the calls this server proxies (sans-IO): a call is noted when its
//! INVITE is accepted, learns its answer (or its failure) from the final response the caller
//! is sent, and ends with the BYE that passes (its side tells who hung up). The engine hands
//! each finished call on as a [`confab_archive::Call`].

use std::collections::HashMap;

use confab_archive::Call;

/// A call whose record is not written yet.
#[derive(Debug, Clone)]
pub struct Track {
    pub id: String,
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    /// The caller's From tag: a BYE carrying it is the caller's.
    pub caller_tag: String,
    pub start_ms: i64,
    pub answer_ms: Option<i64>,
    pub route: Option<String>,
    pub trunk: Option<String>,
    pub servers: Vec<String>,
    pub keep_until: i64,
}

impl Track {
    fn finish(self, end_ms: i64, status: u16, reason: &str, ended_by: &str) -> Call {
        Call {
            id: self.id,
            call_id: self.call_id,
            caller: self.caller,
            callee: self.callee,
            start_ms: self.start_ms,
            answer_ms: self.answer_ms,
            end_ms,
            status,
            reason: reason.to_owned(),
            ended_by: ended_by.to_owned(),
            route: self.route,
            trunk: self.trunk,
            servers: self.servers,
            keep_until: self.keep_until,
        }
    }
}

/// An answered call nobody hung up on through this server is written after this long (its
/// end unknown: `timeout`), so the table stays bounded.
pub const ANSWERED_FOR_AT_MOST_MS: i64 = 12 * 3600 * 1000;

/// Calls in progress on one engine.
#[derive(Debug, Default)]
pub struct CallLog {
    /// Not answered yet, by the INVITE's server transaction.
    ringing: HashMap<String, Track>,
    /// Answered, by Call-ID.
    answered: HashMap<String, Track>,
}

impl CallLog {
    pub fn start(&mut self, server_key: String, track: Track) {
        self.ringing.insert(server_key, track);
    }

    /// A call placed through a gateway: the route and trunk of the branch now tried.
    pub fn trunk(&mut self, server_key: &str, route: &str, trunk: &str) {
        if let Some(t) = self.ringing.get_mut(server_key) {
            t.route = Some(route.to_owned());
            t.trunk = Some(trunk.to_owned());
        }
    }

    /// The next hop a branch went to.
    pub fn via(&mut self, server_key: &str, hop: &str) {
        if let Some(t) = self.ringing.get_mut(server_key) {
            if !t.servers.iter().any(|s| s == hop) {
                t.servers.push(hop.to_owned());
            }
        }
    }

    /// The caller was sent a final response: a 2xx answers the call (its record waits for the
    /// BYE), anything else ends it, and its record is returned.
    pub fn final_response(
        &mut self,
        server_key: &str,
        status: u16,
        reason: &str,
        now_ms: i64,
    ) -> Option<Call> {
        let mut track = self.ringing.remove(server_key)?;
        if (200..300).contains(&status) {
            track.answer_ms = Some(now_ms);
            self.answered.insert(track.call_id.clone(), track);
            return None;
        }
        let by = if status == 487 {
            "caller"
        } else {
            "unanswered"
        };
        Some(track.finish(now_ms, status, reason, by))
    }

    /// A BYE of the call passed: its record, with the side that sent it.
    pub fn bye(&mut self, call_id: &str, from_tag: &str, now_ms: i64) -> Option<Call> {
        let track = self.answered.remove(call_id)?;
        let by = if track.caller_tag == from_tag {
            "caller"
        } else {
            "callee"
        };
        Some(track.finish(now_ms, 200, "OK", by))
    }

    /// Answered calls past [`ANSWERED_FOR_AT_MOST_MS`], written with their end unknown.
    pub fn expire(&mut self, now_ms: i64) -> Vec<Call> {
        let old: Vec<String> = self
            .answered
            .iter()
            .filter(|(_, t)| {
                t.answer_ms
                    .is_some_and(|a| now_ms - a > ANSWERED_FOR_AT_MOST_MS)
            })
            .map(|(k, _)| k.clone())
            .collect();
        old.iter()
            .filter_map(|k| self.answered.remove(k))
            .map(|t| t.finish(now_ms, 200, "OK", "timeout"))
            .collect()
    }

    pub fn in_progress(&self) -> usize {
        self.ringing.len() + self.answered.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track() -> Track {
        Track {
            id: "x-1".into(),
            call_id: "c1".into(),
            caller: "alice@example.com".into(),
            callee: "bob@example.com".into(),
            caller_tag: "a".into(),
            start_ms: 1_000,
            answer_ms: None,
            route: None,
            trunk: None,
            servers: vec!["fe1".into()],
            keep_until: 0,
        }
    }

    #[test]
    fn an_answered_call_ends_with_the_bye_and_says_who_hung_up() {
        let mut log = CallLog::default();
        log.start("k".into(), track());
        assert!(log.final_response("k", 200, "OK", 3_000).is_none());
        let c = log.bye("c1", "b", 63_000).expect("the call ended");
        assert_eq!(
            (c.answer_ms, c.end_ms, c.ended_by.as_str()),
            (Some(3_000), 63_000, "callee")
        );
        assert_eq!(c.duration_s(), 60);
        assert_eq!(log.in_progress(), 0);
        assert!(log.bye("c1", "a", 64_000).is_none(), "written once");
    }

    #[test]
    fn a_failed_or_cancelled_call_is_written_at_its_final_response() {
        let mut log = CallLog::default();
        log.start("k".into(), track());
        log.trunk("k", "local", "gw1");
        let c = log.final_response("k", 486, "Busy Here", 2_000).unwrap();
        assert_eq!(
            (c.status, c.ended_by.as_str(), c.trunk.as_deref()),
            (486, "unanswered", Some("gw1"))
        );
        log.start("k2".into(), track());
        assert_eq!(
            log.final_response("k2", 487, "Request Terminated", 2_000)
                .unwrap()
                .ended_by,
            "caller"
        );
    }

    #[test]
    fn an_answered_call_never_hung_up_here_is_written_after_twelve_hours() {
        let mut log = CallLog::default();
        log.start("k".into(), track());
        log.final_response("k", 200, "OK", 0);
        assert!(log.expire(ANSWERED_FOR_AT_MOST_MS).is_empty());
        let gone = log.expire(ANSWERED_FOR_AT_MOST_MS + 1);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].ended_by, "timeout");
    }
}
