//! The engine's side of response groups (`crate::rgs`): the configuration read again by
//! housekeeping (the document, who is signed in, and the stored sounds when the document
//! changed), built into a snapshot and published to every shard.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use confab_rgs::{AUDIO_PREFIX, RGS_SETTING, SIGNED_IN_SETTING};
use confab_store::Store;

use super::Engine;
use crate::rgs::{RgsStats, Snapshot};

/// What housekeeping read of the response-group settings.
#[derive(Debug)]
pub(super) struct RgsRead {
    hash: u64,
    doc: String,
    signed_in: String,
    /// The stored sounds: read only when the document or sign-ins changed.
    audio: Vec<(String, String)>,
}

/// Reads the settings; `None` when they are what `known` (their hash) says.
pub(super) fn rgs_stored(store: &dyn Store, known: u64) -> confab_store::Result<Option<RgsRead>> {
    let mut doc = String::new();
    let mut signed_in = String::new();
    for (name, value) in store.settings(RGS_SETTING)? {
        if name == RGS_SETTING {
            doc = value;
        } else if name == SIGNED_IN_SETTING {
            signed_in = value;
        }
    }
    let hash = hash_of(&doc, &signed_in);
    if hash == known {
        return Ok(None);
    }
    let audio = if doc.trim().is_empty() {
        Vec::new()
    } else {
        store.settings(AUDIO_PREFIX)?
    };
    Ok(Some(RgsRead {
        hash,
        doc,
        signed_in,
        audio,
    }))
}

fn hash_of(doc: &str, signed_in: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (doc, signed_in).hash(&mut h);
    h.finish()
}

impl Engine {
    /// Housekeeping's read with a local database.
    pub(super) fn read_rgs(&mut self) {
        let read = rgs_stored(self.store.as_ref(), self.rgs_seen);
        self.rgs_read(read);
    }

    /// The settings read: a new snapshot published when they changed and are good.
    pub(super) fn rgs_read(&mut self, read: confab_store::Result<Option<RgsRead>>) {
        let read = match read {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(event = "store.error", error = %e, "cannot read the response-group configuration; the one in force stays");
                return;
            }
        };
        self.rgs_seen = read.hash;
        let snapshot = if read.doc.trim().is_empty() {
            None
        } else {
            match Snapshot::build(&read.doc, &read.signed_in, &read.audio) {
                Ok(s) => {
                    tracing::info!(
                        event = "rgs.config",
                        workflows = s.workflows(),
                        "response-group configuration in force"
                    );
                    Some(Arc::new(s))
                }
                Err(e) => {
                    tracing::error!(event = "rgs.config_refused", error = %e, "the stored response-group configuration cannot be served; the one in force stays");
                    return;
                }
            }
        };
        *self
            .shared
            .rgs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
    }

    /// What the response-group application holds now.
    pub fn rgs_stats(&self) -> RgsStats {
        *self
            .shared
            .rgs_stats
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
