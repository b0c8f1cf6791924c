//! The classic controllers a user would deploy instead of an agent, run by the harness against the runtime's control
//! API as baselines: an HPA-style CPU autoscaler and a Flagger-style automatic rollback. Each returns what it did
//! (time and description) so the timeline and the table show it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acv_cluster::Cluster;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::case::BaselineKind;

/// An action a baseline took: seconds since the episode started, and what.
pub type Acted = Arc<Mutex<Vec<(f64, String)>>>;

/// HPA's defaults, scaled to the episode: target 50 % CPU of the limit, 1–10 replicas, a 3 s period, scale-down only
/// after it was called for on 3 periods in a row (the stabilisation window).
pub const HPA_TARGET_PERCENT: f64 = 50.0;
/// Replica bounds of the autoscaler.
pub const HPA_MAX_REPLICAS: u32 = 10;
/// Failed checks in a row before Flagger rolls back (its `threshold`).
pub const FLAGGER_THRESHOLD: u32 = 3;

/// The desired replica count for `current` replicas at `cpu` % of limit (the HPA formula), within bounds.
pub fn hpa_desired(current: u32, cpu: f64) -> u32 {
    if !cpu.is_finite() || current == 0 {
        return current.max(1);
    }
    let want = (f64::from(current) * cpu / HPA_TARGET_PERCENT).ceil();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let want = want.clamp(1.0, f64::from(HPA_MAX_REPLICAS)) as u32;
    want
}

/// One Flagger health check: fails when fewer replicas are ready than desired, when any replica is not ready (a
/// rollout stuck on a crash-looping new pod while the old one still serves: the canary never becomes ready), or when
/// more than 5 % of requests fail.
pub fn flagger_check_fails(st: &acv_protocol::ComponentStatus, error_percent: f64) -> bool {
    st.ready_replicas < st.desired_replicas
        || st
            .replicas
            .iter()
            .any(|r| r.state != acv_protocol::ReplicaState::Ready)
        || error_percent > 5.0
}

/// Runs the baseline until `stop`, recording actions into `acted` (seconds since `t0`).
pub async fn run(
    kind: BaselineKind,
    cluster: Arc<dyn Cluster>,
    t0: Instant,
    acted: Acted,
    stop: CancellationToken,
) {
    let period = match kind {
        BaselineKind::Hpa => Duration::from_secs(3),
        BaselineKind::Flagger => Duration::from_secs(1),
    };
    let mut below = 0u32;
    let mut failed = 0u32;
    let mut rolled_back_at: Option<Instant> = None;
    let note = |what: String| {
        acted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((t0.elapsed().as_secs_f64(), what));
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        match kind {
            BaselineKind::Hpa => {
                let (Ok(st), Ok(m)) = (cluster.status().await, cluster.metrics(6.0).await) else {
                    continue;
                };
                let Some(cpu) = m.cpu_percent_of_limit else {
                    continue;
                };
                let current = st.desired_replicas;
                let want = hpa_desired(current, cpu);
                if want > current {
                    below = 0;
                    if cluster.scale(i64::from(want)).await.is_ok() {
                        note(format!("hpa: scale {current} → {want} (CPU {cpu:.0}%)"));
                    }
                } else if want < current {
                    below += 1;
                    if below >= 3 && cluster.scale(i64::from(want)).await.is_ok() {
                        below = 0;
                        note(format!("hpa: scale {current} → {want} (CPU {cpu:.0}%)"));
                    }
                } else {
                    below = 0;
                }
            }
            BaselineKind::Flagger => {
                if rolled_back_at.is_some_and(|t| t.elapsed() < Duration::from_secs(15)) {
                    continue;
                }
                let Ok(st) = cluster.status().await else { continue };
                let errors = cluster
                    .metrics(5.0)
                    .await
                    .ok()
                    .and_then(|m| m.error_rate_percent)
                    .unwrap_or(0.0);
                let unhealthy = flagger_check_fails(&st, errors);
                failed = if unhealthy { failed + 1 } else { 0 };
                if failed >= FLAGGER_THRESHOLD {
                    failed = 0;
                    match cluster.rollback().await {
                        Ok(r) => {
                            rolled_back_at = Some(Instant::now());
                            note(format!(
                                "flagger: rollback to {} (revision {})",
                                r.image, r.revision
                            ));
                        }
                        Err(e) => note(format!("flagger: rollback failed: {e}")),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_formula() {
        assert_eq!(hpa_desired(1, 120.0), 3);
        assert_eq!(hpa_desired(2, 50.0), 2);
        assert_eq!(hpa_desired(4, 10.0), 1);
        assert_eq!(hpa_desired(3, 900.0), HPA_MAX_REPLICAS);
        assert_eq!(hpa_desired(0, 80.0), 1);
        assert_eq!(hpa_desired(2, f64::NAN), 2);
    }

    #[test]
    fn flagger_fails_a_stuck_rollout() {
        use acv_protocol::{ComponentName, ComponentStatus, ReplicaState, ReplicaStatus, ResourceLimits};
        let pod = |name: &str, state| ReplicaStatus {
            name: name.into(),
            state,
            restarts: 0,
        };
        let mut st = ComponentStatus {
            component: ComponentName::new("catalogue").unwrap(),
            desired_replicas: 1,
            ready_replicas: 1,
            replicas: vec![pod("catalogue-0", ReplicaState::Ready)],
            revision: 2,
            image: "weaveworksdemos/catalogue:0.3.6".into(),
            env: std::collections::BTreeMap::new(),
            limits: ResourceLimits {
                cpu_millis: 200,
                memory_mib: 128,
            },
        };
        assert!(!flagger_check_fails(&st, 0.0));
        assert!(flagger_check_fails(&st, 20.0), "errors");
        // The bad release: the new pod crash-loops, the old one still serves, so ready == desired.
        st.replicas
            .push(pod("catalogue-0-next", ReplicaState::CrashLoopBackOff));
        assert!(flagger_check_fails(&st, 0.0), "the canary never became ready");
        st.replicas.pop();
        st.ready_replicas = 0;
        assert!(flagger_check_fails(&st, 0.0));
    }
}
