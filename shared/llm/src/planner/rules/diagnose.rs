//! Diagnosis before action: what changed recently, which replicas are bad and which are fine, whether load is up,
//! whether CPU or memory is high without load. The playbook matches its fix to the [`RootCause`] found here, and the
//! report carries the [`Diagnosis`] with the evidence behind it.
//!
//! The rules, with their thresholds as named constants:
//! - **recent change**: the current revision changed the image or the env, or lowered a limit, less than
//!   [`RECENT_CHANGE_SECS`] ago (a rollback and our own limit raises are not "releases");
//! - **load up**: the request rate is at least [`LOAD_UP_RATIO`] × the healthy baseline's;
//! - **costlier requests**: CPU time per request is at least [`COST_UP_RATIO`] × the baseline's — CPU that the
//!   requests do not explain (a hog or stress in the replicas);
//! - then, for the most urgent broken objective: not ready / errors → bad release if there was a recent change,
//!   else bad replicas; memory → memory pressure (tight limits once the replicas were replaced); CPU → CPU
//!   saturation when requests got costlier (tight limits once replaced), else load increase when requests cost
//!   what they used to or the rate is up, else unknown; P99 → bad release, bad replicas, load increase or CPU
//!   saturation, in that order, else unknown.

use acv_protocol::{Diagnosis, Evidence, Objective, ReplicaState, Revision, RootCause, SloMetric, Violation};
use serde_json::json;

use crate::planner::Observation;

/// A change younger than this (seconds) is "recent".
pub const RECENT_CHANGE_SECS: u64 = 600;
/// Request rate at least this many times the healthy baseline's is "load up".
pub const LOAD_UP_RATIO: f64 = 1.3;
/// CPU per request at least this many times the baseline's is CPU the requests do not explain.
pub const COST_UP_RATIO: f64 = 1.5;
/// Scale-out and give-back aim at this share of the CPU objective per replica (30% headroom below it).
pub const HEADROOM: f64 = 0.7;
/// Below this request rate (req/s) there is no load to speak of.
pub const MIN_RATE: f64 = 1.0;

/// The facts a diagnosis rests on, computed once from an observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    /// Replicas desired / ready.
    pub desired: u32,
    /// Replicas ready.
    pub ready: u32,
    /// Replicas that are not ready, as `name state`.
    pub bad: Vec<String>,
    /// The recent change, when there is one.
    pub change: Option<Change>,
    /// Request rate now (req/s).
    pub rate: Option<f64>,
    /// Request rate now / baseline.
    pub load_ratio: Option<f64>,
    /// CPU time per request now (ms).
    pub cpu_ms_per_request: Option<f64>,
    /// CPU per request now / baseline.
    pub cost_ratio: Option<f64>,
    /// CPU % of limit now.
    pub cpu_percent: Option<f64>,
    /// Memory % of limit now.
    pub memory_percent: Option<f64>,
}

/// A recent change of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Its revision.
    pub revision: u64,
    /// What it changed, for a person ("image 0.3.5 → 0.3.6").
    pub what: String,
    /// Its age in seconds.
    pub age_secs: u64,
}

fn now_ms(obs: &Observation) -> u64 {
    if obs.at_ms > 0 {
        obs.at_ms
    } else {
        acv_core::now_ms()
    }
}

/// A change between two revisions that can break a service: image, env, or a lower limit.
fn release(prev: &Revision, cur: &Revision) -> Option<String> {
    if cur.is_rollback() {
        return None;
    }
    let mut what = Vec::new();
    if prev.image != cur.image {
        what.push(format!("image {} → {}", prev.image, cur.image));
    }
    if prev.env != cur.env {
        let changed: Vec<String> = cur
            .env
            .iter()
            .filter(|(k, v)| prev.env.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v}"))
            .chain(
                prev.env
                    .keys()
                    .filter(|k| !cur.env.contains_key(*k))
                    .map(|k| format!("{k} unset")),
            )
            .collect();
        what.push(format!("env {}", changed.join(", ")));
    }
    if cur.limits.cpu_millis < prev.limits.cpu_millis {
        what.push(format!(
            "CPU limit {}m → {}m",
            prev.limits.cpu_millis, cur.limits.cpu_millis
        ));
    }
    if cur.limits.memory_mib < prev.limits.memory_mib {
        what.push(format!(
            "memory limit {} → {} MiB",
            prev.limits.memory_mib, cur.limits.memory_mib
        ));
    }
    (!what.is_empty()).then(|| what.join(", "))
}

// === impl Findings ===

impl Findings {
    /// The facts in `obs`.
    pub fn of(obs: &Observation) -> Self {
        let status = obs.status.as_ref();
        let desired = status.map_or(0, |s| s.desired_replicas);
        let ready = status.map_or(0, |s| s.ready_replicas);
        let bad = status
            .map(|s| {
                s.replicas
                    .iter()
                    .filter(|r| r.state != ReplicaState::Ready)
                    .map(|r| {
                        let state = serde_json::to_value(r.state)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        format!("{} {state}", r.name)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let now = now_ms(obs);
        let change = match obs.history.as_slice() {
            [.., prev, cur] => release(prev, cur).and_then(|what| {
                let age_secs = now.saturating_sub(cur.created_at_ms) / 1000;
                (age_secs < RECENT_CHANGE_SECS).then_some(Change {
                    revision: cur.revision,
                    what,
                    age_secs,
                })
            }),
            _ => None,
        };
        let m = obs.metrics.as_ref();
        let rate = m.and_then(|m| m.request_rate);
        let cpu_percent = m.and_then(|m| m.cpu_percent_of_limit);
        let memory_percent = m.and_then(|m| m.memory_percent_of_limit);
        let cpu_millis = status.map(|s| f64::from(s.limits.cpu_millis));
        let cpu_ms_per_request = match (cpu_percent, cpu_millis, rate) {
            (Some(pct), Some(limit), Some(r)) if r >= MIN_RATE => {
                Some(pct / 100.0 * limit * f64::from(desired.max(1)) / r)
            }
            _ => None,
        };
        let base = obs.baseline.as_ref();
        let load_ratio = match (rate, base.and_then(|b| b.request_rate)) {
            (Some(r), Some(b)) if b >= MIN_RATE => Some(r / b),
            (Some(r), Some(_)) if r >= MIN_RATE * 3.0 => Some(f64::INFINITY),
            (Some(_), Some(_)) => Some(1.0),
            _ => None,
        };
        let cost_ratio = match (cpu_ms_per_request, base.and_then(|b| b.cpu_ms_per_request)) {
            (Some(now), Some(b)) if b > 0.0 => Some(now / b),
            _ => None,
        };
        Self {
            desired,
            ready,
            bad,
            change,
            rate,
            load_ratio,
            cpu_ms_per_request,
            cost_ratio,
            cpu_percent,
            memory_percent,
        }
    }

    /// The request rate rose well beyond the baseline's.
    pub fn load_up(&self) -> bool {
        self.load_ratio.is_some_and(|r| r >= LOAD_UP_RATIO)
    }

    /// Requests cost markedly more CPU than they used to (or CPU is burnt with no traffic at all).
    pub fn cost_up(&self) -> bool {
        self.cost_ratio.is_some_and(|r| r >= COST_UP_RATIO)
            || self.rate.is_some_and(|r| r < MIN_RATE) && self.cpu_percent.is_some_and(|c| c > 10.0)
    }

    /// The root cause behind `v` (the most urgent broken objective). `replaced`: the replicas were already replaced
    /// (restart or rollback) in this episode, so what persists is not a hog in the old ones.
    pub fn cause(&self, v: &Violation, replaced: bool) -> RootCause {
        match v.objective.metric {
            SloMetric::ReadyPercent | SloMetric::ErrorRatePercent => {
                if self.change.is_some() {
                    RootCause::BadRelease
                } else if !self.bad.is_empty() || v.objective.metric == SloMetric::ReadyPercent {
                    RootCause::BadReplicas
                } else {
                    RootCause::Unknown
                }
            }
            SloMetric::MemoryPercentOfLimit => {
                if replaced {
                    RootCause::TightLimits
                } else {
                    RootCause::MemoryPressure
                }
            }
            SloMetric::CpuPercentOfLimit => {
                if self.cost_up() {
                    if replaced {
                        RootCause::TightLimits
                    } else {
                        RootCause::CpuSaturation
                    }
                } else if self.cost_ratio.is_some() || self.load_up() {
                    // Requests cost what they used to, so the extra CPU is extra requests (however gradual).
                    RootCause::LoadIncrease
                } else {
                    RootCause::Unknown
                }
            }
            SloMetric::P99LatencyMs => {
                if self.change.is_some() {
                    RootCause::BadRelease
                } else if !self.bad.is_empty() {
                    RootCause::BadReplicas
                } else if self.load_up() {
                    RootCause::LoadIncrease
                } else if self.cost_up() && !replaced {
                    RootCause::CpuSaturation
                } else {
                    RootCause::Unknown
                }
            }
        }
    }

    /// The request rate against the baseline, for a person.
    pub fn load_text(&self) -> String {
        match (self.rate, self.load_ratio) {
            (Some(r), Some(x)) if x.is_finite() => format!("{r:.1} req/s ({x:.1}× the healthy baseline)"),
            (Some(r), Some(_)) => format!("{r:.1} req/s (up from almost none)"),
            (Some(r), None) => format!("{r:.1} req/s (no healthy baseline yet)"),
            _ => "request rate not measured".to_owned(),
        }
    }

    /// CPU per request against the baseline, for a person.
    pub fn cost_text(&self) -> String {
        match (self.cpu_ms_per_request, self.cost_ratio) {
            (Some(c), Some(x)) => format!("{c:.2} ms CPU per request ({x:.1}× the baseline)"),
            (Some(c), None) => format!("{c:.2} ms CPU per request"),
            _ => "CPU per request not measured".to_owned(),
        }
    }

    /// The replicas in words: "all 3 replicas ready" or "2 of 3 replicas not ready (catalogue-0 crash_loop_back_off,
    /// …), 1 ready".
    pub fn replicas_text(&self) -> String {
        if self.bad.is_empty() {
            format!("all {} replicas ready", self.desired)
        } else {
            format!(
                "{} of {} replicas not ready ({}), {} ready",
                self.bad.len(),
                self.desired,
                self.bad.join(", "),
                self.ready
            )
        }
    }

    /// One line for a person about `cause`.
    pub fn summary(&self, cause: RootCause) -> String {
        let load = self.load_text();
        let cost = self.cost_text();
        let bad = self.replicas_text();
        match cause {
            RootCause::Healthy => format!("Every objective holds; {bad}; load {load}."),
            RootCause::BadRelease => format!(
                "Broken since a recent change ({}, {} s ago); {bad}.",
                self.change.as_ref().map_or("?", |c| c.what.as_str()),
                self.change.as_ref().map_or(0, |c| c.age_secs)
            ),
            RootCause::BadReplicas => format!("{bad}; no recent change, so the replicas themselves are bad."),
            RootCause::LoadIncrease => {
                format!("Load is up: {load}, while requests cost what they used to ({cost}).")
            }
            RootCause::CpuSaturation => format!(
                "CPU {:.0}% of limit that the load does not explain: {load}, {cost}; a hog or stress in the \
                 replicas.",
                self.cpu_percent.unwrap_or(0.0)
            ),
            RootCause::MemoryPressure => format!(
                "Memory {:.0}% of limit with load {load}: a hog or a leak in the replicas.",
                self.memory_percent.unwrap_or(0.0)
            ),
            RootCause::TightLimits => {
                "Still over the objective after the replicas were replaced: the limit is too tight for the work."
                    .to_owned()
            }
            RootCause::Downstream => "The symptoms come from a service this one calls.".to_owned(),
            RootCause::Unknown => format!("No clear cause: {bad}; load {load}; {cost}."),
        }
    }

    /// The evidence behind a diagnosis.
    pub fn evidence(&self) -> Vec<Evidence> {
        let mut ev = vec![Evidence {
            name: "replicas".into(),
            value: json!({"desired": self.desired, "ready": self.ready, "not_ready": self.bad}),
        }];
        if let Some(c) = &self.change {
            ev.push(Evidence {
                name: "recent_change".into(),
                value: json!({"revision": c.revision, "what": c.what, "age_secs": c.age_secs}),
            });
        }
        let num = |name: &str, v: Option<f64>| {
            v.filter(|x| x.is_finite()).map(|x| Evidence {
                name: name.into(),
                value: json!((x * 100.0).round() / 100.0),
            })
        };
        ev.extend(
            [
                num("request_rate", self.rate),
                num("load_ratio", self.load_ratio),
                num("cpu_percent_of_limit", self.cpu_percent),
                num("cpu_ms_per_request", self.cpu_ms_per_request),
                num("cost_ratio", self.cost_ratio),
                num("memory_percent_of_limit", self.memory_percent),
            ]
            .into_iter()
            .flatten(),
        );
        ev
    }

    /// The diagnosis of `cause`, with its evidence.
    pub fn diagnosis(&self, cause: RootCause) -> Diagnosis {
        Diagnosis {
            evidence: self.evidence(),
            ..Diagnosis::new(cause, self.summary(cause))
        }
    }
}

/// Replicas needed so that the measured CPU load, spread evenly, sits at [`HEADROOM`] × the CPU objective per
/// replica (with per-replica limit `limit_millis` afterwards). `None` when CPU is not measured.
pub fn replicas_for_load(
    cpu_percent: Option<f64>,
    desired: u32,
    limit_now_millis: u32,
    limit_after_millis: u32,
    cpu_objective: f64,
) -> Option<u32> {
    let pct = cpu_percent?;
    let total_millis = pct / 100.0 * f64::from(limit_now_millis) * f64::from(desired.max(1));
    let per_replica = cpu_objective * HEADROOM / 100.0 * f64::from(limit_after_millis.max(1));
    let n = (total_millis / per_replica).ceil();
    (n.is_finite() && n >= 0.0).then(|| (n as u32).max(1))
}

/// The CPU objective among `objectives` (the first `cpu_percent_of_limit` one), else `default`.
pub fn cpu_objective(objectives: &[Objective], default: f64) -> f64 {
    objectives
        .iter()
        .find(|o| o.metric == SloMetric::CpuPercentOfLimit)
        .map_or(default, |o| o.threshold)
}

#[cfg(test)]
mod tests {
    use acv_protocol::ResourceLimits;

    use super::*;

    fn revision(n: u64, image: &str, cause: &str, at_ms: u64) -> Revision {
        Revision {
            revision: n,
            image: image.into(),
            env: Default::default(),
            limits: ResourceLimits {
                cpu_millis: 500,
                memory_mib: 512,
            },
            created_at_ms: at_ms,
            cause: cause.into(),
        }
    }

    fn findings(history: Vec<Revision>, now: u64) -> Findings {
        Findings::of(&Observation {
            status: None,
            metrics: None,
            history,
            baseline: None,
            at_ms: now,
        })
    }

    #[test]
    fn a_rollback_is_not_a_release() {
        let now = 1_000_000;
        let good = revision(1, "c:0.3.5", "create", 1);
        let bad = revision(2, "c:errors", "set_image c:errors", now - 20_000);
        let f = findings(vec![good.clone(), bad.clone()], now);
        assert_eq!(f.change.map(|c| c.revision), Some(2), "a new image is a release");
        // What both backends write for a rollback: its image change is the cure, not a new cause (and rolling
        // "back" again would return to the broken build).
        let back = revision(3, "c:0.3.5", "rollback to revision 1", now - 5_000);
        assert!(back.is_rollback());
        assert_eq!(findings(vec![good, bad, back], now).change, None);
    }
}
