//! The server's figures in Prometheus' text format (`/metrics` on the web port). Each shard
//! publishes what it counted and holds into its slot about once a second (`publish`, from
//! `server::run`); a scrape reads the slots, the transports' counters and the store timings
//! and writes them out, so scraping never touches an engine. Every series carries the
//! server's and its pool's names.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::engine::{EngineStats, METHODS};
use crate::presence::PresenceStats;

/// One shard's figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct Figures {
    pub stats: EngineStats,
    pub presence: PresenceStats,
    pub server_transactions: usize,
    pub client_transactions: usize,
    /// Dialogs the server's applications hold (response-group calls, meeting participants).
    pub app_dialogs: usize,
    /// Requests waiting for the database.
    pub parked: usize,
    /// Messages waiting in front of the engine.
    pub queue: usize,
}

/// Upper bounds of the store timing buckets, in microseconds.
const BUCKETS_US: [u64; 11] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

/// The figures of one server.
pub struct Metrics {
    /// `server="...",pool="..."`
    labels: String,
    shards: Mutex<Vec<Figures>>,
    /// Registered devices and calls in progress (shared by the shards).
    shared: Mutex<(usize, usize)>,
    transports: Mutex<Option<sip_transport::Transports>>,
    store_buckets: [AtomicU64; BUCKETS_US.len() + 1],
    store_sum_us: AtomicU64,
}

impl Metrics {
    pub fn new(server: &str, pool: &str) -> Self {
        let clean = |s: &str| s.replace(['\\', '"', '\n'], "_");
        Self {
            labels: format!("server=\"{}\",pool=\"{}\"", clean(server), clean(pool)),
            shards: Mutex::new(Vec::new()),
            shared: Mutex::new((0, 0)),
            transports: Mutex::new(None),
            store_buckets: Default::default(),
            store_sum_us: AtomicU64::new(0),
        }
    }

    /// Shard `shard`'s figures now.
    pub fn publish(&self, shard: usize, figures: Figures, shared: Option<(usize, usize)>) {
        if let Ok(mut all) = self.shards.lock() {
            if all.len() <= shard {
                all.resize(shard + 1, Figures::default());
            }
            all[shard] = figures;
        }
        if let (Some(s), Ok(mut slot)) = (shared, self.shared.lock()) {
            *slot = s;
        }
    }

    pub(crate) fn attach(&self, transports: sip_transport::Transports) {
        if let Ok(mut t) = self.transports.lock() {
            *t = Some(transports);
        }
    }

    /// A database call the request path waited for took `took`.
    pub fn store_call(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        self.store_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.store_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let shards = self.shards.lock().map(|s| s.clone()).unwrap_or_default();
        let mut total = Figures::default();
        for f in &shards {
            total.stats.add(&f.stats);
            total.server_transactions += f.server_transactions;
            total.client_transactions += f.client_transactions;
            total.app_dialogs += f.app_dialogs;
            total.parked += f.parked;
            total.presence.publications += f.presence.publications;
            total.presence.subscriptions += f.presence.subscriptions;
            total.presence.notices += f.presence.notices;
        }
        let (registrations, calls) = self.shared.lock().map(|s| *s).unwrap_or_default();
        let mut out = Out {
            text: String::with_capacity(16 * 1024),
            labels: &self.labels,
        };
        self.sip_counts(&mut out, &total.stats);
        out.gauge(
            "confab_registrations",
            "Registered devices.",
            registrations as u64,
        );
        out.gauge(
            "confab_calls_in_progress",
            "Answered calls not yet hung up (tracked when call records are on).",
            calls as u64,
        );
        out.gauge(
            "confab_app_dialogs",
            "Dialogs the server's applications hold (response groups, meetings).",
            total.app_dialogs as u64,
        );
        out.gauge(
            "confab_subscriptions",
            "Presence subscriptions held.",
            total.presence.subscriptions as u64,
        );
        out.gauge(
            "confab_publications",
            "Presence publications held.",
            total.presence.publications as u64,
        );
        out.counter(
            "confab_presence_notifies_total",
            "NOTIFYs the presence agent sent (its fan-out).",
            total.presence.notices,
        );
        out.gauge(
            "confab_transactions",
            "SIP transactions open (server and client).",
            (total.server_transactions + total.client_transactions) as u64,
        );
        out.gauge(
            "confab_parked_requests",
            "Requests waiting for the database.",
            total.parked as u64,
        );
        out.head(
            "confab_queue_depth",
            "gauge",
            "Messages waiting in front of each shard's engine.",
        );
        for (i, f) in shards.iter().enumerate() {
            out.line(
                "confab_queue_depth",
                &format!("shard=\"{i}\""),
                f.queue as u64,
            );
        }
        self.transport_counts(&mut out);
        self.store_histogram(&mut out);
        out.text
    }

    fn sip_counts(&self, out: &mut Out<'_>, s: &EngineStats) {
        out.head(
            "confab_sip_requests_total",
            "counter",
            "SIP requests received, by method.",
        );
        for m in sip_proto::Method::ALL {
            let n = s.requests_by_method[m.index()];
            out.line(
                "confab_sip_requests_total",
                &format!("method=\"{}\"", method_name(m)),
                n,
            );
        }
        out.head(
            "confab_sip_responses_sent_total",
            "counter",
            "SIP responses sent to clients, by the request's method and the response's class.",
        );
        for m in sip_proto::Method::ALL {
            for (c, n) in s.responses_sent[m.index()].iter().enumerate() {
                if *n > 0 {
                    let l = format!("method=\"{}\",class=\"{}xx\"", method_name(m), c + 1);
                    out.line("confab_sip_responses_sent_total", &l, *n);
                }
            }
        }
        out.head(
            "confab_sip_requests_sent_total",
            "counter",
            "SIP requests this server sent (proxied or its own), by method.",
        );
        for m in sip_proto::Method::ALL.iter().take(METHODS) {
            let n = s.requests_sent[m.index()];
            out.line(
                "confab_sip_requests_sent_total",
                &format!("method=\"{}\"", method_name(*m)),
                n,
            );
        }
        out.head(
            "confab_sip_refused_total",
            "counter",
            "Requests refused or dropped by the server's checks, by reason.",
        );
        for (reason, n) in [
            ("malformed_answered", s.malformed_answered),
            ("malformed_dropped", s.malformed_dropped),
            ("auth_failure", s.auth_failures),
            ("locked_out", s.refused_locked),
            ("relay_refused", s.relay_refused),
            ("unsealed_in_dialog", s.unsealed_in_dialog),
            ("stray_ack", s.stray_acks),
            ("not_sip", s.not_sip),
            ("shed", s.shed),
        ] {
            out.line(
                "confab_sip_refused_total",
                &format!("reason=\"{reason}\""),
                n,
            );
        }
        out.counter(
            "confab_lockouts_total",
            "Users or sources locked out after failed sign-ins.",
            s.lockouts,
        );
        out.counter(
            "confab_unanswered_total",
            "Requests the server failed to answer itself (a defect).",
            s.unanswered,
        );
    }

    fn transport_counts(&self, out: &mut Out<'_>) {
        let Ok(guard) = self.transports.lock() else {
            return;
        };
        let Some(t) = guard.as_ref() else {
            return;
        };
        let st = t.stats();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.head("confab_transport_dropped_total", "counter", "Messages and connections the transports dropped before parsing, by reason (per-source rate, overload share, size, ...).");
        for (reason, n) in [
            ("rate_limited", get(&st.rate_limited)),
            ("overload", get(&st.overload_dropped)),
            ("oversized", get(&st.oversized)),
            ("unframeable", get(&st.unframeable)),
            ("connection_refused", get(&st.connections_refused)),
            ("header_timeout", get(&st.header_timeouts)),
            ("send_dropped", get(&st.send_dropped)),
            ("queue_full", get(&st.queue_full)),
        ] {
            out.line(
                "confab_transport_dropped_total",
                &format!("reason=\"{reason}\""),
                n,
            );
        }
        out.counter(
            "confab_tls_handshakes_total",
            "TLS handshakes completed on accepted SIP connections.",
            get(&st.tls_handshakes),
        );
        out.counter(
            "confab_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out.",
            get(&st.handshake_failures),
        );
    }

    fn store_histogram(&self, out: &mut Out<'_>) {
        let name = "confab_store_seconds";
        out.head(
            name,
            "histogram",
            "Time the request path waited for database reads made off the engine (PostgreSQL).",
        );
        let mut cumulative = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cumulative += self.store_buckets[i].load(Ordering::Relaxed);
            let le = format!("le=\"{}\"", *b as f64 / 1e6);
            out.line(&format!("{name}_bucket"), &le, cumulative);
        }
        cumulative += self.store_buckets[BUCKETS_US.len()].load(Ordering::Relaxed);
        out.line(&format!("{name}_bucket"), "le=\"+Inf\"", cumulative);
        let sum = self.store_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out.text, "{name}_sum{{{}}} {sum}", out.labels);
        out.line(&format!("{name}_count"), "", cumulative);
    }
}

fn method_name(m: sip_proto::Method) -> &'static str {
    match m {
        sip_proto::Method::Other => "other",
        m => m.as_str(),
    }
}

struct Out<'a> {
    text: String,
    labels: &'a str,
}

impl Out<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &str, value: u64) {
        let sep = if labels.is_empty() { "" } else { "," };
        let _ = writeln!(self.text, "{name}{{{}{sep}{labels}}} {value}", self.labels);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.head(name, "gauge", help);
        self.line(name, "", value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.head(name, "counter", help);
        self.line(name, "", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_has_a_help_and_a_type_and_the_servers_labels() {
        let m = Metrics::new("fe1.example.com", "pool1.example.com");
        let mut f = Figures::default();
        f.stats.requests_by_method[sip_proto::Method::Register.index()] = 3;
        f.stats.response_sent(sip_proto::Method::Register, 401);
        f.stats.response_sent(sip_proto::Method::Register, 200);
        f.stats.response_sent(sip_proto::Method::Register, 200);
        f.queue = 7;
        m.publish(0, f, Some((2, 1)));
        m.publish(1, f, None);
        m.store_call(Duration::from_micros(700));
        m.store_call(Duration::from_secs(3));
        let text = m.render();
        let l = "server=\"fe1.example.com\",pool=\"pool1.example.com\"";
        assert!(
            text.contains(&format!("confab_registrations{{{l}}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "confab_sip_requests_total{{{l},method=\"REGISTER\"}} 6\n"
            )),
            "summed over shards"
        );
        assert!(text.contains(&format!(
            "confab_sip_responses_sent_total{{{l},method=\"REGISTER\",class=\"2xx\"}} 4\n"
        )));
        assert!(text.contains(&format!(
            "confab_sip_responses_sent_total{{{l},method=\"REGISTER\",class=\"4xx\"}} 2\n"
        )));
        assert!(text.contains(&format!("confab_queue_depth{{{l},shard=\"1\"}} 7\n")));
        assert!(text.contains(&format!(
            "confab_store_seconds_bucket{{{l},le=\"0.001\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "confab_store_seconds_bucket{{{l},le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(&format!("confab_store_seconds_count{{{l}}} 2\n")));
        // every sample's family is declared before it
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split('{').next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    declared.contains(family) || declared.contains(name),
                    "{line}"
                );
            }
        }
    }
}
