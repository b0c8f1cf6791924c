//! The registry of sidecars, fed by `register` and `heartbeat` broadcasts.

use std::collections::BTreeMap;

use acv_protocol::{Body, ComponentName, Envelope};

/// What is known about one sidecar.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    /// Planner reported at registration.
    pub planner: String,
    /// Sidecar version.
    pub version: String,
    /// Peer endpoint, if any.
    pub peer_url: Option<String>,
    /// Time of the last register or heartbeat, ms since the epoch.
    pub last_seen_ms: u64,
    /// Health at the last heartbeat.
    pub healthy: Option<bool>,
    /// Safety mode at registration, when the sidecar said.
    pub safety: Option<acv_protocol::SafetyMode>,
}

/// Known sidecars by component.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    entries: BTreeMap<ComponentName, Entry>,
}

// === impl Registry ===

impl Registry {
    /// Applies a broadcast message. Returns true if it changed the set of known components.
    pub fn apply(&mut self, env: &Envelope) -> bool {
        match &env.body {
            Body::Register(r) => {
                let entry = Entry {
                    planner: r.planner.clone(),
                    version: r.version.clone(),
                    peer_url: r.peer_url.clone(),
                    last_seen_ms: env.sent_at_ms,
                    healthy: None,
                    safety: r.safety,
                };
                self.entries.insert(r.component.clone(), entry).is_none()
            }
            Body::Heartbeat(h) => match self.entries.get_mut(&h.component) {
                Some(e) => {
                    e.last_seen_ms = e.last_seen_ms.max(env.sent_at_ms);
                    e.healthy = h.healthy;
                    if let Some(p) = &h.planner {
                        e.planner.clone_from(p);
                    }
                    if h.safety.is_some() {
                        e.safety = h.safety;
                    }
                    if h.peer_url.is_some() {
                        e.peer_url.clone_from(&h.peer_url);
                    }
                    false
                }
                None => {
                    // A heartbeat from a sidecar that registered before we started: it repeats what it can.
                    let entry = Entry {
                        planner: h.planner.clone().unwrap_or_else(|| "unknown".into()),
                        version: "unknown".into(),
                        peer_url: h.peer_url.clone(),
                        last_seen_ms: env.sent_at_ms,
                        healthy: h.healthy,
                        safety: h.safety,
                    };
                    self.entries.insert(h.component.clone(), entry);
                    true
                }
            },
            _ => false,
        }
    }

    /// Components seen within `max_age_ms` of `now_ms`.
    pub fn live(&self, now_ms: u64, max_age_ms: u64) -> Vec<&ComponentName> {
        self.entries
            .iter()
            .filter(|(_, e)| now_ms.saturating_sub(e.last_seen_ms) <= max_age_ms)
            .map(|(c, _)| c)
            .collect()
    }

    /// Whether `component` was seen within `max_age_ms` of `now_ms`.
    pub fn is_live(&self, component: &ComponentName, now_ms: u64, max_age_ms: u64) -> bool {
        self.entries
            .get(component)
            .is_some_and(|e| now_ms.saturating_sub(e.last_seen_ms) <= max_age_ms)
    }

    /// Every component ever seen, live or not.
    pub fn known(&self) -> Vec<ComponentName> {
        self.entries.keys().cloned().collect()
    }

    /// Every entry.
    pub fn entries(&self) -> impl Iterator<Item = (&ComponentName, &Entry)> {
        self.entries.iter()
    }

    /// One component's entry.
    pub fn get(&self, component: &ComponentName) -> Option<&Entry> {
        self.entries.get(component)
    }
}

#[cfg(test)]
mod tests {
    use acv_protocol::{Address, Heartbeat, Registration};

    use super::*;

    fn env(body: Body, at: u64) -> Envelope {
        Envelope::new("x", Address::Broadcast, Address::Broadcast, at, body)
    }

    #[test]
    fn tracks_registration_and_liveness() {
        let c = ComponentName::new("catalogue").unwrap();
        let mut r = Registry::default();
        let reg = Registration {
            component: c.clone(),
            peer_url: None,
            planner: "none".into(),
            version: "0.1.0".into(),
            safety: Some(acv_protocol::SafetyMode::Approve),
        };
        assert!(r.apply(&env(Body::Register(reg), 1_000)));
        assert!(!r.apply(&env(
            Body::Heartbeat(Heartbeat {
                component: c.clone(),
                seq: 1,
                healthy: Some(true),
                peer_url: None,
                planner: None,
                safety: None,
            }),
            5_000
        )));
        assert_eq!(r.get(&c).unwrap().healthy, Some(true));
        assert_eq!(r.get(&c).unwrap().safety, Some(acv_protocol::SafetyMode::Approve));
        assert_eq!(r.live(10_000, 6_000), vec![&c]);
        assert!(r.live(20_000, 6_000).is_empty());
    }

    #[test]
    fn a_sidecar_known_only_from_heartbeats_shows_its_planner_and_mode() {
        let c = ComponentName::new("carts").unwrap();
        let mut r = Registry::default();
        let hb = |planner: Option<&str>| {
            Body::Heartbeat(Heartbeat {
                component: c.clone(),
                seq: 7,
                healthy: None,
                peer_url: None,
                planner: planner.map(Into::into),
                safety: planner.map(|_| acv_protocol::SafetyMode::Approve),
            })
        };
        // An older sidecar's heartbeat says nothing more: unknown, as before.
        assert!(r.apply(&env(hb(None), 1_000)));
        assert_eq!(r.get(&c).unwrap().planner, "unknown");
        assert_eq!(r.get(&c).unwrap().safety, None);
        // A heartbeat that repeats them fills them in.
        assert!(!r.apply(&env(hb(Some("rules")), 2_000)));
        assert_eq!(r.get(&c).unwrap().planner, "rules");
        assert_eq!(r.get(&c).unwrap().safety, Some(acv_protocol::SafetyMode::Approve));
    }
}
