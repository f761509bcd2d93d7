//! Enterprise voice as the server holds it (sans-IO): the deployment's voice configuration
//! compiled (`confab_voice::Voice`), where each trunk's gateway is (addresses: given, or found
//! by DNS off the engine), whether each gateway answers its OPTIONS probes, and the turn of
//! each route's trunks (several trunks on a route share the load in turn).
//!
//! One `VoiceState` is shared by every shard; a new configuration or a gateway's new addresses
//! make a new one (the engines pick it up by its generation number), while up/down marks and
//! turns are atomics inside it, changed in place.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use confab_voice::Voice;
use sip_transport::{Target, Transport};

/// The store setting the voice configuration document (TOML) is kept under.
pub const VOICE_SETTING: &str = "voice";

/// The stored voice configuration document, if any.
pub(crate) fn stored(store: &dyn confab_store::Store) -> confab_store::Result<Option<String>> {
    store.setting(VOICE_SETTING)
}

/// The voice configuration in force, and its gateways.
pub(crate) struct VoiceState {
    /// Shared with the states that differ only in gateways' addresses: compiling a large
    /// configuration takes tens of milliseconds, done once per document.
    pub(crate) voice: std::sync::Arc<Voice>,
    /// The document it was compiled from (a new one is compiled only when this changes).
    pub(crate) text: String,
    /// Per trunk (same indexes as the configuration's trunks).
    pub(crate) gateways: Vec<GatewayState>,
    /// Per route: the trunk that takes the route's next call first.
    turns: Vec<AtomicUsize>,
}

/// One trunk's gateway.
pub(crate) struct GatewayState {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) transport: Transport,
    /// Its addresses: the host itself when it is one, else what DNS found (empty until then).
    pub(crate) addrs: Vec<SocketAddr>,
    /// Answers its OPTIONS probes (assumed until a probe goes unanswered).
    up: AtomicBool,
    pub(crate) failover_after: Duration,
}

/// One trunk a call may take, in the order tried.
#[derive(Debug, Clone)]
pub(crate) struct TrunkChoice {
    pub(crate) trunk: usize,
    pub(crate) route: usize,
    pub(crate) target: Target,
}

impl VoiceState {
    /// Compiles `text` (the stored document); the error names every problem.
    pub(crate) fn load(text: &str) -> Result<Self, String> {
        let config = confab_voice::VoiceConfig::from_toml(text)?;
        let voice = Voice::compile(config).map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let gateways = voice
            .config()
            .trunks
            .iter()
            .map(|t| {
                let transport = match t.gateway.transport {
                    confab_voice::Transport::Udp => Transport::Udp,
                    confab_voice::Transport::Tcp => Transport::Tcp,
                    confab_voice::Transport::Tls => Transport::Tls,
                };
                let host = t.gateway.host.trim_matches(['[', ']']);
                let addrs = host
                    .parse::<IpAddr>()
                    .map(|ip| vec![SocketAddr::new(ip, t.gateway.port)])
                    .unwrap_or_default();
                GatewayState {
                    host: t.gateway.host.clone(),
                    port: t.gateway.port,
                    transport,
                    addrs,
                    up: AtomicBool::new(true),
                    failover_after: Duration::from_secs(u64::from(t.failover_after.max(1))),
                }
            })
            .collect();
        let turns = voice
            .config()
            .routes
            .iter()
            .map(|_| AtomicUsize::new(0))
            .collect();
        Ok(Self {
            voice: std::sync::Arc::new(voice),
            text: text.to_owned(),
            gateways,
            turns,
        })
    }

    /// The same configuration (not compiled again) with trunk gateways named `host` at
    /// `addrs` (what DNS found); up/down marks and turns carry over. `None` when that changes
    /// nothing.
    pub(crate) fn with_addresses(&self, host: &str, addrs: &[SocketAddr]) -> Option<Self> {
        let gateways: Vec<GatewayState> = (self.gateways.iter())
            .map(|g| GatewayState {
                host: g.host.clone(),
                port: g.port,
                transport: g.transport,
                addrs: if g.host.eq_ignore_ascii_case(host) {
                    (addrs.iter())
                        .map(|a| SocketAddr::new(a.ip(), g.port))
                        .collect()
                } else {
                    g.addrs.clone()
                },
                up: AtomicBool::new(g.is_up()),
                failover_after: g.failover_after,
            })
            .collect();
        if gateways
            .iter()
            .zip(&self.gateways)
            .all(|(a, b)| a.addrs == b.addrs)
        {
            return None;
        }
        Some(Self {
            voice: self.voice.clone(),
            text: self.text.clone(),
            gateways,
            turns: (self.turns.iter())
                .map(|t| AtomicUsize::new(t.load(Ordering::Relaxed)))
                .collect(),
        })
    }

    /// Host names of gateways that need DNS.
    pub(crate) fn names_to_resolve(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .gateways
            .iter()
            .filter(|g| g.host.trim_matches(['[', ']']).parse::<IpAddr>().is_err())
            .map(|g| g.host.to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The trunk whose gateway is at `ip`: requests from there are the phone network's.
    pub(crate) fn trunk_at(&self, ip: IpAddr) -> Option<usize> {
        self.gateways
            .iter()
            .position(|g| g.addrs.iter().any(|a| a.ip() == ip))
    }

    /// Where trunk `trunk`'s gateway is reached (its first address), if known.
    pub(crate) fn target_of(&self, trunk: usize) -> Option<Target> {
        let g = self.gateways.get(trunk)?;
        g.addrs.first().map(|&addr| Target {
            transport: g.transport,
            addr,
            flow: None,
        })
    }

    /// The trunks a call may take, in the order they are tried: each candidate route's trunks
    /// starting at the route's turn (which moves on by one per call), gateways marked down
    /// skipped. Also how many were skipped as down.
    pub(crate) fn trunks_for(&self, routing: &confab_voice::Routing) -> (Vec<TrunkChoice>, usize) {
        let cfg = self.voice.config();
        let mut out = Vec::new();
        let mut down = 0;
        for c in &routing.candidates {
            let Some(route) = cfg.routes.iter().position(|r| r.name == c.route) else {
                continue;
            };
            let n = c.trunks.len().max(1);
            let first = self.turns[route].fetch_add(1, Ordering::Relaxed) % n;
            for k in 0..c.trunks.len() {
                let name = &c.trunks[(first + k) % n];
                let Some(trunk) = cfg.trunks.iter().position(|t| &t.name == name) else {
                    continue;
                };
                if out.iter().any(|t: &TrunkChoice| t.trunk == trunk) {
                    continue; // tried already through an earlier route
                }
                match self.target_of(trunk) {
                    Some(target) if self.gateways[trunk].is_up() => out.push(TrunkChoice {
                        trunk,
                        route,
                        target,
                    }),
                    _ => down += 1,
                }
            }
        }
        (out, down)
    }
}

impl GatewayState {
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records a probe's outcome; true when that changed the mark.
    pub(crate) fn mark(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::Relaxed) != up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
usages = ["Local"]
[[policy]]
name = "Global"
usages = ["Local"]
[[route]]
name = "All"
pattern = '^\+\d+$'
usages = ["Local"]
trunks = ["a", "b"]
[[trunk]]
name = "a"
gateway = { host = "127.0.0.61", port = 5070, transport = "udp" }
[[trunk]]
name = "b"
gateway = { host = "gw.example.net" }
"#;

    #[test]
    fn trunks_share_a_route_in_turn_and_a_gateway_down_or_unresolved_is_skipped() {
        let state = VoiceState::load(DOC).unwrap();
        assert_eq!(state.names_to_resolve(), ["gw.example.net"]);
        let routing = state
            .voice
            .routes_for(&confab_voice::Placement::default(), "+14255550123")
            .unwrap();
        let (first, down) = state.trunks_for(&routing);
        assert_eq!((first.len(), down), (1, 1), "b has no address yet: skipped");

        let state = state
            .with_addresses("GW.example.net", &["127.0.0.62:0".parse().unwrap()])
            .unwrap();
        assert_eq!(state.trunk_at("127.0.0.62".parse().unwrap()), Some(1));
        let order = |s: &VoiceState| -> Vec<usize> {
            s.trunks_for(&routing).0.iter().map(|t| t.trunk).collect()
        };
        assert_eq!(order(&state), [1, 0], "the turn carried over: b's");
        assert_eq!(
            order(&state),
            [0, 1],
            "the next call starts at the next trunk"
        );
        assert!(
            state
                .with_addresses("gw.example.net", &["127.0.0.62:0".parse().unwrap()])
                .is_none(),
            "the same address again changes nothing"
        );
        assert_eq!(
            state.target_of(1).unwrap().addr,
            "127.0.0.62:5060".parse().unwrap(),
            "the trunk's port, DNS's address"
        );
        assert!(state.gateways[0].mark(false));
        assert!(!state.gateways[0].mark(false), "no change: nothing to log");
        assert_eq!(order(&state), [1]);
    }
}
