//! Faults applied by the local runtime (the [`Fault`] type itself is the control API's, in `acv-cluster`), as
//! Chaos Mesh applies them under a label selector: at injection the [`Selector`] picks pods among those that exist
//! (at random, like Chaos Mesh), and only those pods are faulty until the fault ends or is cleared. Pod failure
//! keeps the selected pods' processes down, CPU/memory stress runs a stressor process next to each selected
//! replica (counted in its usage), added latency delays the requests the front sends to a selected replica. A pod
//! created later (scale-out, rollout, restart) is a new pod, so it is clean; a selected pod whose process crashes
//! and restarts in place is still the same pod and stays faulty.

use std::collections::BTreeMap;
use std::time::Duration;

use acv_cluster::{ClusterError, Fault, FaultId, FaultStatus, FaultTarget, Selector};
use rand::seq::IndexedRandom;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::supervisor::{Service, ServiceState, Stressor, lock};

/// A fault in force on a service.
#[derive(Debug, Clone)]
pub(crate) struct ActiveFault {
    pub id: FaultId,
    pub fault: Fault,
    pub selector: Selector,
    /// The pods chosen at injection: uid and name.
    pub targets: Vec<(u64, String)>,
    pub until: Option<Instant>,
}

// === impl ActiveFault ===

impl ActiveFault {
    pub(crate) fn hits(&self, uid: u64) -> bool {
        self.targets.iter().any(|(t, _)| *t == uid)
    }

    fn status(&self, st: &ServiceState, now: Instant) -> FaultStatus {
        FaultStatus {
            id: self.id,
            fault: self.fault,
            selector: self.selector,
            targets: self
                .targets
                .iter()
                .map(|(uid, pod)| FaultTarget {
                    pod: pod.clone(),
                    replaced: !st.slots.iter().any(|s| s.uid == *uid),
                })
                .collect(),
            remaining_secs: self.until.map(|u| u.saturating_duration_since(now).as_secs_f64()),
        }
    }
}

/// Arguments appended to the stressor command for `fault`.
pub(crate) fn stressor_args(fault: &Fault) -> Vec<String> {
    match *fault {
        Fault::CpuStress {
            workers,
            load_percent,
        } => {
            vec![
                "--cpu-workers".into(),
                workers.to_string(),
                "--cpu-load".into(),
                load_percent.to_string(),
            ]
        }
        Fault::MemoryStress { mib } => vec!["--mem-mib".into(), mib.to_string()],
        _ => Vec::new(),
    }
}

/// Latency the front adds for `fault`.
pub(crate) fn added_latency(fault: &Fault) -> Duration {
    match *fault {
        Fault::Latency { ms } => Duration::from_millis(ms),
        _ => Duration::ZERO,
    }
}

// === impl Service ===

impl Service {
    /// Injects a fault into the pods `selector` picks among those that exist now; it ends after `duration` if
    /// given.
    pub fn inject(
        &self,
        fault: Fault,
        selector: Selector,
        duration: Option<Duration>,
    ) -> Result<FaultStatus, ClusterError> {
        fault.validate()?;
        if fault.is_stress() && self.shared.stressor.is_none() {
            return Err(ClusterError::invalid(
                "fault",
                "the runtime file declares no stressor command",
            ));
        }
        let status = {
            let mut st = lock(&self.state);
            let pods: Vec<(u64, String)> = st.slots.iter().map(|s| (s.uid, s.name(&self.name))).collect();
            let n = selector.count(pods.len())?;
            let mut targets: Vec<(u64, String)> =
                pods.choose_multiple(&mut rand::rng(), n).cloned().collect();
            targets.sort_by(|a, b| a.1.cmp(&b.1));
            let id = FaultId(st.next_fault_id);
            st.next_fault_id += 1;
            let now = Instant::now();
            let active = ActiveFault {
                id,
                fault,
                selector,
                targets,
                until: duration.map(|d| now + d),
            };
            let status = active.status(&st, now);
            st.faults.push(active);
            status
        };
        let names: Vec<&str> = status.targets.iter().map(|t| t.pod.as_str()).collect();
        self.event(format!(
            "fault {} injected: {fault:?} into {} for {duration:?}",
            status.id.0,
            names.join(", ")
        ));
        self.wake.notify_one();
        Ok(status)
    }

    /// The active faults.
    pub fn faults(&self) -> Vec<FaultStatus> {
        let st = lock(&self.state);
        let now = Instant::now();
        st.faults
            .iter()
            .filter(|f| f.until.is_none_or(|u| u > now))
            .map(|f| f.status(&st, now))
            .collect()
    }

    /// Clears faults matching `which` (all if `None`); returns how many were cleared.
    pub fn clear_faults(&self, which: Option<FaultId>) -> usize {
        let n = {
            let mut st = lock(&self.state);
            let before = st.faults.len();
            st.faults.retain(|f| which.is_some_and(|id| id != f.id));
            before - st.faults.len()
        };
        if n > 0 {
            self.event(format!("{n} fault(s) cleared"));
            self.wake.notify_one();
        }
        n
    }

    /// Drops the faults that ran out.
    pub(crate) fn expire_faults(&self, st: &mut ServiceState, now: Instant) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.faults)
            .into_iter()
            .partition(|f| f.until.is_some_and(|u| u <= now));
        st.faults = kept;
        for f in gone {
            self.event(format!("fault {} expired: {:?}", f.id.0, f.fault));
        }
    }

    /// Added latency per pod uid, for the front.
    pub(crate) fn latency_by_pod(st: &ServiceState) -> BTreeMap<u64, Duration> {
        let mut out = BTreeMap::new();
        for f in &st.faults {
            let d = added_latency(&f.fault);
            if d > Duration::ZERO {
                for (uid, _) in &f.targets {
                    *out.entry(*uid).or_default() += d;
                }
            }
        }
        out
    }

    /// Starts and stops stressor processes so that each running replica has one per active stress fault that
    /// selected its pod.
    pub(crate) fn reconcile_stressors(&self, st: &mut ServiceState) {
        let stress: Vec<ActiveFault> = st
            .faults
            .iter()
            .filter(|f| f.fault.is_stress())
            .cloned()
            .collect();
        let mut slots = std::mem::take(&mut st.slots);
        for slot in &mut slots {
            let mut keep = Vec::new();
            for mut s in std::mem::take(&mut slot.stressors) {
                let exited = !matches!(s.child.try_wait(), Ok(None));
                if exited || slot.proc.is_none() || !stress.iter().any(|f| f.id == s.fault) {
                    self.kill_now(
                        s.child,
                        s.pid,
                        &format!("stressor of {} stopped", slot.name(&self.name)),
                    );
                } else {
                    keep.push(s);
                }
            }
            slot.stressors = keep;
            if slot.proc.is_none() {
                continue;
            }
            for f in stress.iter().filter(|f| f.hits(slot.uid)) {
                if slot.stressors.iter().any(|s| s.fault == f.id) {
                    continue;
                }
                match self.spawn_stressor(&slot.name(&self.name), &f.fault) {
                    Ok((child, pid)) => slot.stressors.push(Stressor {
                        fault: f.id,
                        child,
                        pid,
                    }),
                    Err(e) => self.event(format!(
                        "stressor for {} could not start: {e}",
                        slot.name(&self.name)
                    )),
                }
            }
        }
        st.slots = slots;
    }

    fn spawn_stressor(&self, replica: &str, fault: &Fault) -> Result<(Child, u32), String> {
        let argv = self
            .shared
            .stressor
            .as_ref()
            .ok_or("no stressor command in the runtime file")?;
        let (program, args) = argv.split_first().ok_or("empty stressor command")?;
        let mut cmd = Command::new(program);
        cmd.args(args).args(stressor_args(fault));
        let label = format!("{replica}/stress");
        let (child, pid) = self.spawn(cmd, &label)?;
        self.event(format!("started stressor for {replica} (pid {pid}): {fault:?}"));
        Ok((child, pid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stressor_arguments_and_latency() {
        let cpu = Fault::CpuStress {
            workers: 2,
            load_percent: 50,
        };
        assert_eq!(stressor_args(&cpu), ["--cpu-workers", "2", "--cpu-load", "50"]);
        assert_eq!(stressor_args(&Fault::MemoryStress { mib: 8 }), ["--mem-mib", "8"]);
        assert!(stressor_args(&Fault::PodFailure).is_empty());
        assert_eq!(
            added_latency(&Fault::Latency { ms: 30 }),
            Duration::from_millis(30)
        );
        assert_eq!(added_latency(&cpu), Duration::ZERO);
    }
}
