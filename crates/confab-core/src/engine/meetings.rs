//! The engine's side of meetings (`crate::meetings`): the stored document, users' PIN hashes
//! and the attendant's prompts read again by housekeeping, and published to every shard when
//! they changed.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use base64::Engine as _;
use confab_media::Clip;
use confab_meetings::{Meetings, MEETINGS_SETTING, PIN_PREFIX, PROMPT_PREFIX};
use confab_store::Store;

use super::Engine;
use crate::meetings::{MeetingStats, Served};

/// What housekeeping read: the settings and their hash.
#[derive(Debug)]
pub(super) struct MeetingsRead {
    hash: u64,
    doc: String,
    pins: Vec<(String, String)>,
    prompts: Vec<(String, String)>,
}

/// The settings; `None` when their hash is `known`.
pub(super) fn meetings_stored(
    store: &dyn Store,
    known: u64,
) -> confab_store::Result<Option<MeetingsRead>> {
    let doc = store.setting(MEETINGS_SETTING)?.unwrap_or_default();
    let pins = store.settings(PIN_PREFIX)?;
    let prompts = store.settings(PROMPT_PREFIX)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&doc, &pins, &prompts).hash(&mut h);
    let hash = h.finish();
    Ok((hash != known).then_some(MeetingsRead {
        hash,
        doc,
        pins,
        prompts,
    }))
}

impl Engine {
    /// Housekeeping's read with a local database.
    pub(super) fn read_meetings(&mut self) {
        let read = meetings_stored(self.store.as_ref(), self.meetings_seen);
        self.meetings_read(read);
    }

    /// The settings read: published when they changed and can be read.
    pub(super) fn meetings_read(&mut self, read: confab_store::Result<Option<MeetingsRead>>) {
        let read = match read {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(event = "store.error", error = %e, "cannot read the meetings; those in force stay");
                return;
            }
        };
        self.meetings_seen = read.hash;
        let meetings = match Meetings::from_toml(&read.doc) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(event = "meetings.refused", error = %e, "the stored meetings cannot be read; those in force stay");
                return;
            }
        };
        let pins = read
            .pins
            .into_iter()
            .filter_map(|(n, v)| Some((n.strip_prefix(PIN_PREFIX)?.to_owned(), v)))
            .collect();
        let mut prompts = HashMap::new();
        for (name, b64) in read.prompts {
            let Some(prompt) = name.strip_prefix(PROMPT_PREFIX) else {
                continue;
            };
            match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                Ok(bytes) => {
                    prompts.insert(prompt.to_owned(), Arc::new(Clip::from_ulaw(bytes)));
                }
                Err(e) => {
                    tracing::warn!(event = "meetings.prompt_damaged", prompt, error = %e, "a stored attendant prompt is damaged: a tone plays instead (add the access number again)");
                }
            }
        }
        tracing::info!(
            event = "meetings.config",
            meetings = meetings.meetings.len(),
            access_numbers = meetings.access_numbers.len(),
            participant_limit = meetings.settings.participant_limit,
            media_timeout = meetings.settings.media_timeout,
            "meetings in force"
        );
        let served = Served {
            meetings,
            pins,
            prompts,
        };
        *self
            .shared
            .meetings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(served));
    }

    /// The attendant's address when `number` (E.164) is a dial-in access number.
    pub(super) fn access_number_target(&self, number: &str) -> Option<String> {
        let served = crate::apps::in_force(&self.shared.meetings)?;
        served.meetings.access_number(number)?;
        Some(format!(
            "sip:{}@{}",
            confab_meetings::ATTENDANT_USER,
            self.cfg.realm()
        ))
    }

    /// Where meeting `user` (`meet-<ID>`) is hosted when that is another pool: its directory's
    /// pool, at the first of its servers by address (over the servers' mutual TLS). `None`:
    /// here (no directory, this server's pool, or a pool the topology does not know).
    pub(super) fn meeting_host(&self, user: &str) -> Option<sip_transport::Target> {
        let id = confab_meetings::conference_id(user)?;
        let served = crate::apps::in_force(&self.shared.meetings)?;
        let directory = served.meetings.get(id)?.directory?;
        let d = served
            .meetings
            .directories
            .iter()
            .find(|d| d.id == directory)?;
        let homing = self.cfg.homing.as_ref()?;
        if homing
            .local_pool
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(&d.pool))
        {
            return None;
        }
        let pool = homing.pools.get(&d.pool.to_ascii_lowercase())?;
        let server: std::net::IpAddr = pool.servers.iter().filter_map(|s| s.parse().ok()).min()?;
        Some(sip_transport::Target {
            transport: sip_transport::Transport::Tls,
            addr: std::net::SocketAddr::new(server, pool.sip_port.saturating_add(1)),
            flow: None,
        })
    }

    /// What the focus holds now (the owner shard's, shared).
    pub fn meeting_stats(&self) -> MeetingStats {
        *self
            .shared
            .meeting_stats
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
