//! The no-regression guard's measuring and reverting on a fake cluster that records every call: what it keeps
//! before a step, how it judges, and how it puts things back — a rollback when the step made exactly one revision,
//! field by field otherwise, the replica count, and what it reports when reverting fails or nothing can be measured.
//! (The guard inside a task, with the real sandbox and shop, is e2e/tests/guard.rs.)

use std::sync::{Arc, Mutex};

use acv_cluster::{Cluster, ClusterError};
use acv_protocol::{
    ComponentName, ComponentStatus, MetricsSnapshot, ReplicaState, ReplicaStatus, ResourceLimits, Revision,
    SloPolicy,
};
use acv_sidecar::guard::{Guard, GuardConfig};
use async_trait::async_trait;

fn name() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

#[derive(Debug, Clone)]
struct State {
    history: Vec<Revision>,
    replicas: u32,
    p99_ms: f64,
    metrics_fail: bool,
    rollback_fails: bool,
    calls: Vec<String>,
}

#[derive(Clone)]
struct Fake {
    name: ComponentName,
    state: Arc<Mutex<State>>,
}

fn revision(n: u64, image: &str, env: &[(&str, &str)], cpu: u32) -> Revision {
    Revision {
        revision: n,
        image: image.into(),
        env: env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        limits: ResourceLimits {
            cpu_millis: cpu,
            memory_mib: 128,
        },
        created_at_ms: n,
        cause: format!("revision {n}"),
    }
}

impl Fake {
    fn new() -> Self {
        Self {
            name: name(),
            state: Arc::new(Mutex::new(State {
                history: vec![revision(1, "v1", &[("A", "1")], 200)],
                replicas: 1,
                p99_ms: 20.0,
                metrics_fail: false,
                rollback_fails: false,
                calls: Vec::new(),
            })),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// A new revision from the current one changed by `f`, as a step's call would make it.
    fn change(&self, cause: &str, f: impl FnOnce(&mut Revision)) -> Revision {
        self.with(|s| {
            let mut r = s.history.last().unwrap().clone();
            r.revision += 1;
            r.cause = cause.into();
            f(&mut r);
            s.history.push(r.clone());
            r
        })
    }

    fn current(&self) -> Revision {
        self.with(|s| s.history.last().unwrap().clone())
    }

    fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.clone())
    }
}

#[async_trait]
impl Cluster for Fake {
    fn component(&self) -> &ComponentName {
        &self.name
    }
    async fn status(&self) -> Result<ComponentStatus, ClusterError> {
        let s = self.state.lock().unwrap().clone();
        let r = s.history.last().unwrap().clone();
        Ok(ComponentStatus {
            component: self.name.clone(),
            desired_replicas: s.replicas,
            ready_replicas: s.replicas,
            replicas: (0..s.replicas)
                .map(|i| ReplicaStatus {
                    name: format!("catalogue-{i}"),
                    state: ReplicaState::Ready,
                    restarts: 0,
                })
                .collect(),
            revision: r.revision,
            image: r.image,
            env: r.env,
            limits: r.limits,
        })
    }
    async fn metrics(&self, window_secs: f64) -> Result<MetricsSnapshot, ClusterError> {
        let s = self.state.lock().unwrap().clone();
        if s.metrics_fail {
            return Err(ClusterError::Backend("metrics source down".into()));
        }
        Ok(MetricsSnapshot {
            component: self.name.clone(),
            window_secs,
            cpu_percent_of_limit: Some(10.0),
            memory_percent_of_limit: Some(10.0),
            request_rate: Some(20.0),
            p50_ms: Some(5.0),
            p99_ms: Some(s.p99_ms),
            error_rate_percent: Some(0.0),
            calls: Vec::new(),
        })
    }
    async fn logs(&self, _: i64) -> Result<Vec<String>, ClusterError> {
        Ok(vec![])
    }
    async fn scale(&self, replicas: i64) -> Result<ComponentStatus, ClusterError> {
        self.with(|s| {
            s.calls.push(format!("scale {replicas}"));
            s.replicas = u32::try_from(replicas).unwrap();
        });
        self.status().await
    }
    async fn restart(&self) -> Result<(), ClusterError> {
        self.with(|s| s.calls.push("restart".into()));
        Ok(())
    }
    async fn set_image(&self, image: &str) -> Result<Revision, ClusterError> {
        self.with(|s| s.calls.push(format!("set_image {image}")));
        Ok(self.change("set_image", |r| r.image = image.into()))
    }
    async fn set_env(&self, key: &str, value: &str) -> Result<Revision, ClusterError> {
        self.with(|s| s.calls.push(format!("set_env {key}={value}")));
        Ok(self.change("set_env", |r| {
            r.env.insert(key.into(), value.into());
        }))
    }
    async fn set_resources(&self, cpu: i64, mem: i64) -> Result<Revision, ClusterError> {
        self.with(|s| s.calls.push(format!("set_resources {cpu} {mem}")));
        Ok(self.change("set_resources", |r| {
            r.limits = ResourceLimits {
                cpu_millis: u32::try_from(cpu).unwrap(),
                memory_mib: u32::try_from(mem).unwrap(),
            }
        }))
    }
    async fn rollback(&self) -> Result<Revision, ClusterError> {
        let (fails, previous) = self.with(|s| {
            s.calls.push("rollback".into());
            (s.rollback_fails, s.history[s.history.len() - 2].clone())
        });
        if fails {
            return Err(ClusterError::Backend("the API server said no".into()));
        }
        Ok(
            self.change(&format!("rollback to revision {}", previous.revision), |r| {
                r.image = previous.image.clone();
                r.env = previous.env.clone();
                r.limits = previous.limits;
            }),
        )
    }
    async fn history(&self) -> Result<Vec<Revision>, ClusterError> {
        Ok(self.with(|s| s.history.clone()))
    }
}

fn guard(fake: &Fake) -> Guard {
    Guard::new(
        Arc::new(fake.clone()),
        &SloPolicy::default(),
        GuardConfig::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_guard_is_off_when_configured_off() {
    let fake = Fake::new();
    assert!(Guard::new(Arc::new(fake), &SloPolicy::default(), GuardConfig::OFF).is_none());
}

#[tokio::test]
async fn one_new_revision_is_rolled_back_and_replicas_scaled_back() {
    let fake = Fake::new();
    let g = guard(&fake);
    let kept = g.snapshot(3.0).await;
    assert_eq!(kept.revision.as_ref().unwrap().revision, 1);
    assert_eq!(kept.replicas, Some(1));
    assert_eq!(kept.violations.as_deref(), Some(&[][..]));

    // The step: a slow image and two more replicas; latency goes bad.
    fake.change("set_image", |r| r.image = "v2-slow".into());
    fake.with(|s| {
        s.replicas = 3;
        s.p99_ms = 450.0;
    });
    let after = g.check(3.0).await.unwrap();
    let regression = g.judge(kept.violations.as_deref().unwrap(), &after).unwrap();
    assert_eq!(regression.worse.len(), 1, "{regression:?}");
    assert!(
        regression.worse[0].starts_with("p99_latency_ms"),
        "{regression:?}"
    );

    let done = g.revert(&kept).await.unwrap();
    assert_eq!(fake.calls(), ["rollback", "scale 1"]);
    assert_eq!(
        done,
        ["rolled back to revision 1 (v1)", "scaled back to 1 replicas"]
    );
    let now = fake.current();
    assert_eq!((now.image.as_str(), now.revision), ("v1", 3));
}

#[tokio::test]
async fn several_new_revisions_are_undone_field_by_field() {
    let fake = Fake::new();
    let g = guard(&fake);
    let kept = g.snapshot(3.0).await;
    fake.change("set_image", |r| r.image = "v2".into());
    fake.change("set_resources", |r| r.limits.cpu_millis = 50);
    fake.change("set_env", |r| {
        r.env.insert("A".into(), "2".into());
        r.env.insert("B".into(), "x".into());
    });

    let done = g.revert(&kept).await.unwrap();
    assert_eq!(
        fake.calls(),
        ["set_image v1", "set_resources 200 128", "set_env A=1"],
        "no rollback: the previous revision is not the kept one"
    );
    assert_eq!(done.len(), 4, "{done:?}");
    assert!(
        done[3].contains("\"B\"") && done[3].contains("cannot remove"),
        "{done:?}"
    );
    let now = fake.current();
    assert_eq!(now.image, "v1");
    assert_eq!(now.limits.cpu_millis, 200);
    assert_eq!(now.env.get("A").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn nothing_changed_means_nothing_put_back() {
    let fake = Fake::new();
    let g = guard(&fake);
    let kept = g.snapshot(3.0).await;
    fake.with(|s| s.calls.push("restart".into()));
    let done = g.revert(&kept).await.unwrap();
    assert_eq!(fake.calls(), ["restart"]);
    assert_eq!(done, ["nothing to put back (revision and replicas unchanged)"]);
}

#[tokio::test]
async fn a_failed_revert_says_what_failed_and_what_was_done() {
    let fake = Fake::new();
    let g = guard(&fake);
    let kept = g.snapshot(3.0).await;
    fake.change("set_image", |r| r.image = "v2".into());
    fake.with(|s| s.rollback_fails = true);
    let (error, done) = g.revert(&kept).await.unwrap_err();
    assert!(error.to_string().contains("the API server said no"), "{error}");
    assert!(done.is_empty());
    assert_eq!(fake.current().image, "v2");
}

#[tokio::test]
async fn unmeasurable_health_is_none_not_a_regression() {
    let fake = Fake::new();
    let g = guard(&fake);
    fake.with(|s| s.metrics_fail = true);
    assert!(g.check(3.0).await.is_none());
    let kept = g.snapshot(3.0).await;
    assert!(kept.violations.is_none());
    assert_eq!(kept.replicas, Some(1), "status still read");

    // A small wobble within the tolerance is not a regression either.
    fake.with(|s| {
        s.metrics_fail = false;
        s.p99_ms = 230.0;
    });
    let after = g.check(3.0).await.unwrap();
    assert!(g.judge(&[], &after).is_none(), "{after:?}");
}
