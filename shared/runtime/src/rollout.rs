//! Roll-outs of one service: every image/env/limits change is a revision, and the pods of an older template are
//! replaced ordinal by ordinal, either rolling (`maxSurge` 1, `maxUnavailable` 0: the new pod must be ready before
//! the old one goes) or all at once (Recreate); see [`Strategy`].

use acv_protocol::Revision;

use crate::spec::Strategy;
use crate::supervisor::{Service, ServiceState, Slot, Template, extract, lock};

// === impl Service ===

impl Service {
    /// Records a new revision if the template changed; returns the current revision either way.
    pub fn new_revision(&self, cause: String, change: impl FnOnce(&mut Revision)) -> Revision {
        let rev = {
            let mut st = lock(&self.state);
            let mut next = st.current().clone();
            change(&mut next);
            let cur = st.current();
            if next.image == cur.image && next.env == cur.env && next.limits == cur.limits {
                return cur.clone();
            }
            next.revision = cur.revision + 1;
            next.created_at_ms = acv_core::now_ms();
            next.cause = cause;
            st.revisions.push(next.clone());
            if st.revisions.len() > 100 {
                st.revisions.remove(0);
            }
            next
        };
        self.event(format!(
            "revision {} ({}): version {}",
            rev.revision, rev.cause, rev.image
        ));
        self.wake.notify_one();
        rev
    }

    /// Moves every ordinal below `desired` towards one pod of `template`, keeping an old pod serving until its
    /// replacement is ready when rolling.
    pub(crate) fn roll_out(&self, st: &mut ServiceState, template: &Template) {
        let desired = st.desired;
        let rolling = self.shared.settings.strategy == Strategy::RollingUpdate;
        for index in 0..desired {
            let has_current = st
                .slots
                .iter()
                .any(|s| s.index == index && s.template == *template);
            let current_ready = st
                .slots
                .iter()
                .any(|s| s.index == index && s.template == *template && s.is_ready());
            let old_ready = st
                .slots
                .iter()
                .any(|s| s.index == index && s.template != *template && s.is_ready());
            let surging = st
                .slots
                .iter()
                .filter(|s| s.surge && s.template == *template && !s.is_ready())
                .count();
            // Old pods go when the new one is ready, when none of them serves anyway, or at once with Recreate.
            // Old pods that are not ready never protect anything: they go as soon as a new pod exists. A surge pod
            // of an older template (a rollout overtaken by another) goes at once.
            let drop_old = |s: &Slot| {
                s.index == index
                    && s.template != *template
                    && (!rolling || s.surge || current_ready || !old_ready || (has_current && !s.is_ready()))
            };
            let mut gone = extract(&mut st.slots, drop_old);
            let replaced = !gone.is_empty();
            for slot in &mut gone {
                self.kill_slot(slot, "replaced by the new template");
            }
            if replaced
                && let Some(s) = st
                    .slots
                    .iter_mut()
                    .find(|s| s.index == index && s.template == *template)
            {
                s.surge = false;
            }
            let old_left = st
                .slots
                .iter()
                .any(|s| s.index == index && s.template != *template);
            if !st
                .slots
                .iter()
                .any(|s| s.index == index && s.template == *template)
            {
                if !old_left {
                    let slot = st.new_slot(index, template.clone(), false);
                    st.slots.push(slot);
                } else if surging == 0 {
                    // maxSurge 1: one new pod at a time next to a serving old one.
                    let slot = st.new_slot(index, template.clone(), true);
                    st.slots.push(slot);
                }
            }
        }
        st.slots.sort_by_key(|s| (s.index, s.surge));
    }
}
