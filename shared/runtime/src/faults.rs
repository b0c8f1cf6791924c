//! Faults applied by the local runtime (the [`Fault`] type itself is the control API's, in `acv-cluster`): pod
//! failure stops every replica, CPU/memory stress runs a stressor process next to each replica (counted in its
//! usage), added latency is applied by the front. Faults may expire; each has an id to clear it early.

use std::time::Duration;

use acv_cluster::{ClusterError, Fault, FaultId};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::supervisor::{Service, ServiceState, Stressor, lock};

/// A fault in force on a service.
#[derive(Debug, Clone)]
pub(crate) struct ActiveFault {
    pub id: FaultId,
    pub fault: Fault,
    pub until: Option<Instant>,
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
    /// Injects a fault; it ends after `duration` if given.
    pub fn inject(&self, fault: Fault, duration: Option<Duration>) -> Result<FaultId, ClusterError> {
        fault.validate()?;
        if fault.is_stress() && self.shared.stressor.is_none() {
            return Err(ClusterError::invalid(
                "fault",
                "the runtime file declares no stressor command",
            ));
        }
        let id = {
            let mut st = lock(&self.state);
            let id = FaultId(st.next_fault_id);
            st.next_fault_id += 1;
            st.faults.push(ActiveFault {
                id,
                fault,
                until: duration.map(|d| Instant::now() + d),
            });
            id
        };
        self.event(format!("fault {} injected: {fault:?} for {duration:?}", id.0));
        self.wake.notify_one();
        Ok(id)
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

    /// Drops the faults that ran out and hands the front the added latency of those left.
    pub(crate) fn expire_faults(&self, st: &mut ServiceState, now: Instant) {
        let before = st.faults.len();
        st.faults.retain(|f| f.until.is_none_or(|u| u > now));
        if st.faults.len() != before {
            self.event(format!("{} fault(s) expired", before - st.faults.len()));
        }
        let latency = st.faults.iter().map(|f| added_latency(&f.fault)).sum();
        self.front.set_extra_latency(latency);
    }

    /// Starts and stops stressor processes so that each running replica has one per active stress fault.
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
            for f in &stress {
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
