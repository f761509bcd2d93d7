//! The location table as the engines of all cores share it: one [`Location`] per part of the
//! users (see `crate::parts`). A request touches the part of its user alone
//! (`Parts::of(aor)`); what concerns every user (restoring, expiry, write-back, a closed
//! connection, counting) visits the parts one after the other.

use confab_store::{Binding, Store};
use sip_transport::FlowId;

use super::Location;
use crate::parts::Parts;

impl Parts<Location> {
    /// Restores bindings read from the store, each into its user's part.
    pub(crate) fn load(bindings: Vec<Binding>) -> Self {
        let parts = Self::new(Location::default);
        for rec in bindings {
            let aor = rec.aor.clone();
            parts.of(&aor).restore(rec);
        }
        parts
    }

    /// Registered devices.
    pub(crate) fn count(&self) -> usize {
        self.each().map(|l| l.count()).sum()
    }

    /// Every user's binding keys (its devices).
    pub(crate) fn device_keys(&self) -> std::collections::HashMap<String, Vec<String>> {
        self.each().flat_map(|l| l.device_keys()).collect()
    }

    /// Drops bindings expired at `now`; returns (aor, key) of each.
    pub(crate) fn expire(&self, now: i64) -> Vec<(String, String)> {
        self.each().flat_map(|mut l| l.expire(now)).collect()
    }

    /// A connection closed: see [`Location::flow_closed`].
    pub(crate) fn flow_closed(&self, flow: FlowId) -> Vec<(String, String)> {
        self.each().flat_map(|mut l| l.flow_closed(flow)).collect()
    }

    /// See [`Location::take_dirty`].
    pub(crate) fn take_dirty(&self) -> (Vec<Binding>, Vec<i64>) {
        let (mut recs, mut stored) = (Vec::new(), Vec::new());
        for mut l in self.each() {
            let (r, s) = l.take_dirty();
            recs.extend(r);
            stored.extend(s);
        }
        (recs, stored)
    }

    /// See [`Location::unsaved`]: each binding back to its user's part.
    pub(crate) fn unsaved(&self, recs: &[Binding], stored: &[i64]) {
        for (rec, was) in recs.iter().zip(stored) {
            self.of(&rec.aor)
                .unsaved(std::slice::from_ref(rec), std::slice::from_ref(was));
        }
    }

    /// Saves the refreshes waiting since the last call, in one transaction; returns how many.
    /// On failure they stay waiting for the next call.
    pub(crate) fn write_back(&self, store: &dyn Store) -> confab_store::Result<usize> {
        let (recs, stored) = self.take_dirty();
        if recs.is_empty() {
            return Ok(0);
        }
        match store.save_bindings(&recs) {
            Ok(()) => Ok(recs.len()),
            Err(e) => {
                self.unsaved(&recs, &stored);
                Err(e)
            }
        }
    }
}
