//! Giving temporary capacity back. After an episode, once the cause is gone and a quiet period passed, the service
//! should be as it was plus what it still needs: the agent asks [`give_back`] what to return.
//!
//! The headroom rule (the same one scale-out uses): keep enough replicas for the measured CPU load to sit at
//! [`HEADROOM`] × the CPU objective per replica, never fewer than before the episode; restore a raised limit when
//! the measured use would sit under [`HEADROOM`] × its objective at the old limit.

use acv_protocol::{ComponentStatus, MetricsSnapshot, ResourceLimits, SloPolicy};

use super::diagnose::{HEADROOM, replicas_for_load};

/// What to give back.
#[derive(Debug, Clone, PartialEq)]
pub struct GiveBack {
    /// Scale in to this many replicas.
    pub replicas: Option<u32>,
    /// Set these limits.
    pub limits: Option<ResourceLimits>,
    /// Why, for a person (with the figures).
    pub reason: String,
}

/// What of the capacity above `baseline_replicas` / `baseline_limits` can go back now, by the headroom rule.
/// `None`: nothing (already at baseline, or the load still needs it).
pub fn give_back(
    status: &ComponentStatus,
    metrics: &MetricsSnapshot,
    baseline_replicas: u32,
    baseline_limits: ResourceLimits,
    slo: &SloPolicy,
) -> Option<GiveBack> {
    let now = status.limits;
    let desired = status.desired_replicas;
    let mut reason = Vec::new();
    let mut cpu_limit = now.cpu_millis;
    let mut mem_limit = now.memory_mib;
    if now.cpu_millis > baseline_limits.cpu_millis
        && let Some(pct) = metrics.cpu_percent_of_limit
    {
        let at_old = pct * f64::from(now.cpu_millis) / f64::from(baseline_limits.cpu_millis.max(1));
        if at_old < slo.cpu_percent * HEADROOM {
            cpu_limit = baseline_limits.cpu_millis;
            reason.push(format!(
                "CPU limit {}m → {}m (use would be {at_old:.0}% of it, under {:.0}%)",
                now.cpu_millis,
                cpu_limit,
                slo.cpu_percent * HEADROOM
            ));
        }
    }
    if now.memory_mib > baseline_limits.memory_mib
        && let Some(pct) = metrics.memory_percent_of_limit
    {
        let at_old = pct * f64::from(now.memory_mib) / f64::from(baseline_limits.memory_mib.max(1));
        if at_old < slo.memory_percent * HEADROOM {
            mem_limit = baseline_limits.memory_mib;
            reason.push(format!(
                "memory limit {} → {} MiB (use would be {at_old:.0}% of it, under {:.0}%)",
                now.memory_mib,
                mem_limit,
                slo.memory_percent * HEADROOM
            ));
        }
    }
    let limits = (cpu_limit != now.cpu_millis || mem_limit != now.memory_mib).then_some(ResourceLimits {
        cpu_millis: cpu_limit,
        memory_mib: mem_limit,
    });
    let mut replicas = None;
    if desired > baseline_replicas {
        let needed = replicas_for_load(
            metrics.cpu_percent_of_limit,
            desired,
            now.cpu_millis,
            cpu_limit,
            slo.cpu_percent,
        );
        if let Some(needed) = needed {
            let target = needed.max(baseline_replicas);
            if target < desired {
                replicas = Some(target);
                reason.push(format!(
                    "replicas {desired} → {target} (the load needs {needed} at {:.0}% CPU each; {baseline_replicas} \
                     before the episode)",
                    slo.cpu_percent * HEADROOM
                ));
            }
        }
    }
    if replicas.is_none() && limits.is_none() {
        return None;
    }
    Some(GiveBack {
        replicas,
        limits,
        reason: reason.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use acv_protocol::ComponentName;

    use super::*;

    fn status(desired: u32, cpu: u32, mem: u32) -> ComponentStatus {
        ComponentStatus {
            component: ComponentName::new("catalogue").unwrap(),
            desired_replicas: desired,
            ready_replicas: desired,
            replicas: vec![],
            revision: 1,
            image: "v1".into(),
            env: BTreeMap::new(),
            limits: ResourceLimits {
                cpu_millis: cpu,
                memory_mib: mem,
            },
        }
    }

    fn metrics(cpu: f64, mem: f64) -> MetricsSnapshot {
        MetricsSnapshot {
            component: ComponentName::new("catalogue").unwrap(),
            window_secs: 10.0,
            cpu_percent_of_limit: Some(cpu),
            memory_percent_of_limit: Some(mem),
            request_rate: Some(20.0),
            p50_ms: Some(5.0),
            p99_ms: Some(20.0),
            error_rate_percent: Some(0.0),
            calls: Vec::new(),
        }
    }

    const BASE: ResourceLimits = ResourceLimits {
        cpu_millis: 200,
        memory_mib: 128,
    };

    #[test]
    fn quiet_service_goes_back_to_its_baseline() {
        let g = give_back(
            &status(4, 300, 256),
            &metrics(5.0, 10.0),
            1,
            BASE,
            &SloPolicy::default(),
        )
        .unwrap();
        assert_eq!(g.replicas, Some(1));
        assert_eq!(g.limits, Some(BASE));
    }

    #[test]
    fn keeps_what_the_load_still_needs() {
        // 4 replicas at 30% of 200m = 240m in all; at 35% of 200m per replica that needs 4 → nothing to give.
        assert_eq!(
            give_back(
                &status(4, 200, 128),
                &metrics(30.0, 10.0),
                1,
                BASE,
                &SloPolicy::default()
            ),
            None
        );
        // At 15% each (120m) 2 replicas carry it with headroom.
        let g = give_back(
            &status(4, 200, 128),
            &metrics(15.0, 10.0),
            1,
            BASE,
            &SloPolicy::default(),
        )
        .unwrap();
        assert_eq!(g.replicas, Some(2));
        assert_eq!(g.limits, None);
    }

    #[test]
    fn keeps_a_raised_limit_that_is_still_used() {
        // 60% of 256 MiB is 154 MiB: 120% of the old 128 MiB, so the raise stays.
        assert_eq!(
            give_back(
                &status(1, 200, 256),
                &metrics(5.0, 60.0),
                1,
                BASE,
                &SloPolicy::default()
            ),
            None
        );
    }

    #[test]
    fn nothing_above_baseline_means_nothing_to_give() {
        assert_eq!(
            give_back(
                &status(1, 200, 128),
                &metrics(1.0, 1.0),
                1,
                BASE,
                &SloPolicy::default()
            ),
            None
        );
    }
}
