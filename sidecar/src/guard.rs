//! The no-regression guard (the "transactional no-regression" idea of STRATUS): before a step that may change the
//! component, the executor keeps its revision, its replica count and its measured health; when the step did
//! change something, it measures again once the change has settled and, if health is worse by the SLO measure
//! ([`acv_protocol::regression`]: more objectives broken, or broken ones further off, beyond a tolerance), puts the
//! kept revision and replica count back, re-checks, and says so in the step's outcome (`reverted`), its output and
//! the report. Missing measurements never count as a regression: a guard that cannot see does not act.

use std::sync::Arc;

use acv_cluster::{Cluster, ClusterError};
use acv_protocol::{
    ComponentStatus, Measurement, Objective, Regression, Revision, SloPolicy, Violation, check_health,
};
use serde::Serialize;

/// Default tolerance: an objective must get worse by more than a fifth of its threshold (and health overall by as
/// much) before a change is reverted. Short windows are noisy: a P99 of 230 ms under a 200 ms objective right after
/// a change that was healthy before is within it, 260 ms is not. Readiness has none ([`acv_protocol::regression`]).
pub const DEFAULT_TOLERANCE: f64 = 0.2;

/// The guard's settings (`--guard`, `--guard-tolerance`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// Whether mutating steps are judged and reverted when they make things worse (default on).
    pub enabled: bool,
    /// See [`DEFAULT_TOLERANCE`].
    pub tolerance: f64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

impl GuardConfig {
    /// The guard switched off: mutating steps stand whatever they do.
    pub const OFF: GuardConfig = GuardConfig {
        enabled: false,
        tolerance: DEFAULT_TOLERANCE,
    };
}

/// What the guard keeps before a step.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The revision running before the step (`None`: the backend could not tell).
    pub revision: Option<Revision>,
    /// Desired replicas before the step (`None`: unknown).
    pub replicas: Option<u32>,
    /// The objectives broken before the step; `None` when health could not be measured.
    pub violations: Option<Vec<Violation>>,
}

/// The guard's verdict on one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardOutcome {
    /// Health is not worse: the change stands.
    Kept,
    /// Health got worse and the kept revision and replicas were put back.
    Reverted,
    /// Health got worse and putting things back failed.
    RevertFailed,
    /// Health could not be measured before or after: the change stands unjudged.
    Unmeasured,
}

impl GuardOutcome {
    /// The label in reports, the audit trail and `acv_guard_checks_total{outcome}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kept => "kept",
            Self::Reverted => "reverted",
            Self::RevertFailed => "revert_failed",
            Self::Unmeasured => "unmeasured",
        }
    }
}

/// What the guard did about one mutating step, for the report's `no_regression_guard` evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardEvent {
    /// The step (1-based).
    pub step: u32,
    /// The verdict.
    pub outcome: GuardOutcome,
    /// The objectives broken before the step, in words.
    pub before: Vec<String>,
    /// The objectives broken after it settled, in words.
    pub after: Vec<String>,
    /// How health got worse, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regression: Option<Regression>,
    /// What was put back (`rolled back to revision 3`, `scaled back to 1 replicas`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restored: Vec<String>,
    /// The objectives broken after the revert settled, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_revert: Option<Vec<String>>,
    /// Why the revert failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl GuardEvent {
    /// An event for step `step` with `outcome` and nothing measured yet.
    pub fn new(step: u32, outcome: GuardOutcome) -> Self {
        Self {
            step,
            outcome,
            before: Vec::new(),
            after: Vec::new(),
            regression: None,
            restored: Vec::new(),
            after_revert: None,
            error: None,
        }
    }

    /// Whether the step's change was undone (or undoing it was tried).
    pub fn reverted(&self) -> bool {
        matches!(self.outcome, GuardOutcome::Reverted | GuardOutcome::RevertFailed)
    }

    /// The event in a few lines, appended to the step's output (which planners and the report show).
    pub fn describe(&self) -> String {
        let none = |v: &[String]| {
            if v.is_empty() {
                "all objectives met".to_owned()
            } else {
                v.join("; ")
            }
        };
        let worse = self
            .regression
            .as_ref()
            .map(|r| r.worse.join("; "))
            .unwrap_or_default();
        match self.outcome {
            GuardOutcome::Reverted => format!(
                "[no-regression guard] health got worse after this step ({worse}), so it was reverted: {}. After \
                 the revert: {}.",
                self.restored.join(", "),
                self.after_revert.as_deref().map_or_else(|| "not measured".to_owned(), none)
            ),
            GuardOutcome::RevertFailed => format!(
                "[no-regression guard] health got worse after this step ({worse}); reverting failed: {}{}",
                self.error.as_deref().unwrap_or("unknown error"),
                if self.restored.is_empty() {
                    String::new()
                } else {
                    format!(" (done before the failure: {})", self.restored.join(", "))
                }
            ),
            GuardOutcome::Unmeasured => {
                "[no-regression guard] health could not be measured before and after this step; kept unjudged."
                    .to_owned()
            }
            GuardOutcome::Kept => format!(
                "[no-regression guard] kept: before {}, after {}.",
                none(&self.before),
                none(&self.after)
            ),
        }
    }
}

/// Measures one component against its own objectives and puts back what a step changed.
pub struct Guard {
    cluster: Arc<dyn Cluster>,
    objectives: Vec<Objective>,
    tolerance: f64,
}

fn same_template(a: &Revision, b: &Revision) -> bool {
    a.image == b.image && a.env == b.env && a.limits == b.limits
}

// === impl Guard ===

impl Guard {
    /// A guard for the cluster's component judged by `slo` (`None` when `config` switches it off).
    pub fn new(cluster: Arc<dyn Cluster>, slo: &SloPolicy, config: GuardConfig) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let objectives = slo.objectives(cluster.component());
        Some(Self {
            cluster,
            objectives,
            tolerance: config.tolerance,
        })
    }

    /// The objectives broken now, measured over the last `window_secs`; `None` when status or metrics could not
    /// be read.
    pub async fn check(&self, window_secs: f64) -> Option<Vec<Violation>> {
        self.check_with(self.cluster.status().await.ok(), window_secs)
            .await
    }

    /// [`check`](Self::check) with the status already read.
    async fn check_with(&self, status: Option<ComponentStatus>, window_secs: f64) -> Option<Vec<Violation>> {
        let status = status?;
        let metrics = self.cluster.metrics(window_secs).await.ok()?;
        let measurement = Measurement {
            metrics: Some(metrics),
            status: Some(status),
        };
        Some(check_health(
            &self.objectives,
            &[(self.cluster.component().clone(), measurement)],
        ))
    }

    /// What to keep before a step: the running revision, the replica count and health over `window_secs`.
    pub async fn snapshot(&self, window_secs: f64) -> Snapshot {
        let revision = self.cluster.history().await.ok().and_then(|h| h.last().cloned());
        let status = self.cluster.status().await.ok();
        Snapshot {
            revision,
            replicas: status.as_ref().map(|s| s.desired_replicas),
            violations: self.check_with(status, window_secs).await,
        }
    }

    /// How health after a step (`after`) compares with `before`; `None` when it is not worse.
    pub fn judge(&self, before: &[Violation], after: &[Violation]) -> Option<Regression> {
        acv_protocol::regression(before, after, self.tolerance)
    }

    /// Puts back the kept revision (a rollback when the step made exactly one new revision, else the image, limits
    /// and environment one by one) and replica count. Returns what was done; on an error, what was done before it.
    pub async fn revert(&self, kept: &Snapshot) -> Result<Vec<String>, (ClusterError, Vec<String>)> {
        let mut done = Vec::new();
        if let Some(kept_rev) = &kept.revision {
            let history = self.cluster.history().await.map_err(|e| (e, done.clone()))?;
            if let Some(current) = history.last()
                && !same_template(current, kept_rev)
            {
                let previous = history.len().checked_sub(2).map(|i| &history[i]);
                if previous.is_some_and(|p| p.revision == kept_rev.revision) {
                    self.cluster.rollback().await.map_err(|e| (e, done.clone()))?;
                    done.push(format!(
                        "rolled back to revision {} ({})",
                        kept_rev.revision, kept_rev.image
                    ));
                } else {
                    self.restore_fields(kept_rev, current, &mut done)
                        .await
                        .map_err(|e| (e, done.clone()))?;
                }
            }
        }
        if let Some(replicas) = kept.replicas {
            let status = self.cluster.status().await.map_err(|e| (e, done.clone()))?;
            if status.desired_replicas != replicas {
                self.cluster
                    .scale(i64::from(replicas))
                    .await
                    .map_err(|e| (e, done.clone()))?;
                done.push(format!("scaled back to {replicas} replicas"));
            }
        }
        if done.is_empty() {
            done.push("nothing to put back (revision and replicas unchanged)".into());
        }
        Ok(done)
    }

    async fn restore_fields(
        &self,
        kept: &Revision,
        current: &Revision,
        done: &mut Vec<String>,
    ) -> Result<(), ClusterError> {
        if current.image != kept.image {
            self.cluster.set_image(&kept.image).await?;
            done.push(format!("image back to {}", kept.image));
        }
        if current.limits != kept.limits {
            self.cluster
                .set_resources(
                    i64::from(kept.limits.cpu_millis),
                    i64::from(kept.limits.memory_mib),
                )
                .await?;
            done.push(format!(
                "limits back to {}m / {} MiB",
                kept.limits.cpu_millis, kept.limits.memory_mib
            ));
        }
        for (key, value) in &kept.env {
            if current.env.get(key) != Some(value) {
                self.cluster.set_env(key, value).await?;
                done.push(format!("{key} back to {value:?}"));
            }
        }
        let added: Vec<&String> = current
            .env
            .keys()
            .filter(|k| !kept.env.contains_key(*k))
            .collect();
        if !added.is_empty() {
            done.push(format!(
                "left the added environment variable(s) {added:?} (the host API cannot remove one)"
            ));
        }
        Ok(())
    }
}
