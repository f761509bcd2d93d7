//! The engine's side of meetings (`crate::meetings`): the stored document read again by
//! housekeeping and published to every shard when it changed.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use confab_meetings::{Meetings, MEETINGS_SETTING};
use confab_store::Store;

use super::Engine;
use crate::meetings::MeetingStats;

/// The document and its hash; `None` when its hash is `known`.
pub(super) fn meetings_stored(
    store: &dyn Store,
    known: u64,
) -> confab_store::Result<Option<(u64, String)>> {
    let doc = store
        .settings(MEETINGS_SETTING)?
        .into_iter()
        .find(|(n, _)| n == MEETINGS_SETTING)
        .map(|(_, v)| v)
        .unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.hash(&mut h);
    let hash = h.finish();
    Ok((hash != known).then_some((hash, doc)))
}

impl Engine {
    /// Housekeeping's read with a local database.
    pub(super) fn read_meetings(&mut self) {
        let read = meetings_stored(self.store.as_ref(), self.meetings_seen);
        self.meetings_read(read);
    }

    /// The document read: published when it changed and can be read.
    pub(super) fn meetings_read(&mut self, read: confab_store::Result<Option<(u64, String)>>) {
        let (hash, doc) = match read {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(event = "store.error", error = %e, "cannot read the meetings; those in force stay");
                return;
            }
        };
        self.meetings_seen = hash;
        let meetings = match Meetings::from_toml(&doc) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(event = "meetings.refused", error = %e, "the stored meetings cannot be read; those in force stay");
                return;
            }
        };
        tracing::info!(
            event = "meetings.config",
            meetings = meetings.meetings.len(),
            "meetings in force"
        );
        *self
            .shared
            .meetings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(meetings));
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
