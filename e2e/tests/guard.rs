//! The no-regression guard on the real shop catalogue (processes on the local runtime) under light load, with a
//! scripted planner that forces the step under test, run in the real sandbox. Health is measured by the test itself
//! (the runtime's status and metrics), never read from the report:
//! 1. a step that makes things worse (deploying the `:slow` build, +300 ms per request) is reverted by the guard —
//!    the image is the original again and the test's own P99 check holds; with the guard off the same step stays
//!    and the test measures the P99 objective broken (so the step really was bad);
//! 2. a step that fixes a fault (rolling back the slow build) is kept, and so is a neutral one (scaling out a
//!    healthy service).

mod common;

use std::{sync::Arc, time::Duration};

use acv_cluster::Cluster;
use acv_e2e::load::{Call, LoadSpec, Profile};
use acv_llm::{FinalReport, Judgement, MaintainerContext, Plan, PlanError, PlannedStep, Planner, Subtask};
use acv_protocol::{
    ComponentName, Goal, Measurement, Mechanism, ReportBody, ReportStatus, SloPolicy, StepOutcome, TaskBody,
    TaskSpec, check_health,
};
use acv_runtime::LocalRuntime;
use acv_sandbox::SafetyMode;
use acv_sidecar::{
    guard::GuardConfig,
    handler::{PlanningHandler, TaskHandler},
};

const GOOD: &str = "weaveworksdemos/catalogue:0.3.5";
const SLOW: &str = "weaveworksdemos/catalogue:slow";
/// Metrics window of the test's own SLO check (s).
const WINDOW: f64 = 3.0;

fn catalogue() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

/// One test at a time: each runs the catalogue under load.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Plays a planner that runs one fixed program, then reports how it went.
struct OneStep {
    program: String,
}

#[async_trait::async_trait]
impl Planner for OneStep {
    fn name(&self) -> String {
        "scripted".into()
    }

    async fn next(&self, ctx: &MaintainerContext) -> Result<Plan, PlanError> {
        if let Some(last) = ctx.steps.last() {
            // The step did not end well (the guard reverted it): say so, as any planner would.
            return Ok(Plan {
                done: true,
                report: Some(FinalReport {
                    status: ReportStatus::Issue,
                    message: format!(
                        "Step {} ended {:?}: {}",
                        last.record.index, last.record.outcome, last.record.output
                    ),
                }),
                ..Plan::default()
            });
        }
        Ok(Plan {
            thought: "scripted".into(),
            steps: vec![PlannedStep {
                description: "the scripted change".into(),
                program: self.program.clone(),
                purpose: None,
            }],
            done: true,
            report: Some(FinalReport {
                status: ReportStatus::Response,
                message: "Done.".into(),
            }),
            ..Plan::default()
        })
    }

    async fn decompose(
        &self,
        _goal: &Goal,
        _components: &[ComponentName],
        _measured: &[(ComponentName, Measurement)],
    ) -> Result<Vec<Subtask>, PlanError> {
        Err(PlanError::Invalid("a maintainer script".into()))
    }

    async fn judge(
        &self,
        _goal: &Goal,
        _measured: &[(ComponentName, Measurement)],
    ) -> Result<Judgement, PlanError> {
        Err(PlanError::Invalid("a maintainer script".into()))
    }
}

struct Rig {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    runtime: LocalRuntime,
    cluster: Arc<dyn Cluster>,
    load: tokio::task::JoinHandle<()>,
}

/// The catalogue alone (1 replica, the good build) at 20 requests/s for `secs`, healthy by the test's check.
async fn rig(secs: f64) -> Rig {
    let turn = TURN.lock().await;
    let runtime = common::start(common::shop_spec(&["catalogue"])).await;
    let cluster: Arc<dyn Cluster> = Arc::new(runtime.cluster("catalogue").unwrap());
    let spec = LoadSpec {
        target: runtime.addr("catalogue").unwrap(),
        calls: vec![Call::get("/catalogue")],
        profile: Profile::Constant { rps: 20.0, secs },
        max_in_flight: 200,
        timeout: Duration::from_secs(5),
    };
    let load = tokio::spawn(async move {
        let r = acv_e2e::load::run(&spec).await.unwrap();
        eprintln!("load: {r:?}");
    });
    assert_eq!(cluster.status().await.unwrap().image, GOOD);
    let rig = Rig {
        _turn: turn,
        runtime,
        cluster,
        load,
    };
    rig.until_healthy(Duration::from_secs(20)).await;
    rig
}

impl Rig {
    /// The test's own SLO check over the last [`WINDOW`] seconds (the paper's: ready, CPU and memory under 50% of
    /// limit, P99 under 200 ms), in words.
    async fn broken(&self) -> Vec<String> {
        let status = self.cluster.status().await.ok();
        let metrics = self.cluster.metrics(WINDOW).await.ok();
        let objectives = SloPolicy::default().objectives(&catalogue());
        acv_protocol::describe_violations(&check_health(
            &objectives,
            &[(catalogue(), Measurement { metrics, status })],
        ))
    }

    /// Waits until three checks in a row pass.
    async fn until_healthy(&self, max: Duration) {
        let start = tokio::time::Instant::now();
        let mut streak = 0;
        let mut last = Vec::new();
        while start.elapsed() < max {
            last = self.broken().await;
            streak = if last.is_empty() { streak + 1 } else { 0 };
            if streak >= 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("not healthy within {max:?}: {last:?}");
    }

    /// Runs `program` as the one step of a task, with the guard configured as `guard`.
    async fn run_step(&self, program: &str, guard: GuardConfig) -> ReportBody {
        let handler = PlanningHandler {
            planner: Arc::new(OneStep {
                program: program.into(),
            }),
            guard,
            ..common::rules_handler(
                self.cluster.clone(),
                SafetyMode::Autonomous,
                acv_sidecar::audit::AuditLog::disabled(),
            )
        };
        let task = TaskBody {
            task_id: uuid::Uuid::new_v4().to_string(),
            component: catalogue(),
            spec: TaskSpec::Imperative {
                text: "the scripted change".into(),
            },
            mechanism: Mechanism::Solo,
        };
        let report = handler.handle(&catalogue(), &task).await;
        eprintln!("report: {}", serde_json::to_string_pretty(&report).unwrap());
        report
    }

    async fn finish(self) {
        self.load.abort();
        common::shutdown_and_check_no_leaks(self.runtime).await;
    }
}

/// The guard's evidence in a report: one event per mutating step.
fn guard_events(report: &ReportBody) -> Vec<serde_json::Value> {
    report
        .evidence
        .iter()
        .find(|e| e.name == "no_regression_guard")
        .and_then(|e| e.value.as_array().cloned())
        .unwrap_or_default()
}

fn set_image(image: &str) -> String {
    format!("import acv\nacv.set_image({image:?})\nprint('deployed', {image:?})\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_makes_health_worse_is_reverted() {
    let rig = rig(60.0).await;
    let report = rig.run_step(&set_image(SLOW), GuardConfig::default()).await;

    assert_eq!(report.status, ReportStatus::Issue, "{}", report.message);
    assert_eq!(report.steps.len(), 1);
    assert_eq!(report.steps[0].outcome, StepOutcome::Reverted);
    assert!(
        report.steps[0].output.contains("[no-regression guard]"),
        "{}",
        report.steps[0].output
    );
    let events = guard_events(&report);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["outcome"], "reverted", "{events:?}");
    let worse = events[0]["regression"]["worse"].to_string();
    assert!(
        worse.contains("p99_latency_ms"),
        "the latency objective got worse: {worse}"
    );

    // By the test's own measurement: the good build runs again, and the objectives hold over fresh windows.
    let status = rig.cluster.status().await.unwrap();
    assert_eq!(status.image, GOOD);
    let history = rig.cluster.history().await.unwrap();
    let images: Vec<&str> = history.iter().map(|r| r.image.as_str()).collect();
    assert!(
        images.ends_with(&[SLOW, GOOD]),
        "the slow build was deployed, then the good one put back: {images:?}"
    );
    assert!(history.last().unwrap().is_rollback(), "{history:?}");
    rig.until_healthy(Duration::from_secs(20)).await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_guard_the_bad_step_stays_and_breaks_the_latency_objective() {
    let rig = rig(60.0).await;
    let report = rig.run_step(&set_image(SLOW), GuardConfig::OFF).await;

    assert_eq!(report.status, ReportStatus::Response, "{}", report.message);
    assert_eq!(report.steps[0].outcome, StepOutcome::Ok);
    assert!(guard_events(&report).is_empty());
    assert_eq!(rig.cluster.status().await.unwrap().image, SLOW);
    // The test measures what the guard would have seen: P99 over its objective, for several checks.
    let mut broken_p99 = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if rig.broken().await.iter().any(|v| v.starts_with("p99_latency_ms")) {
            broken_p99 += 1;
        }
    }
    assert!(
        broken_p99 >= 4,
        "P99 broken in only {broken_p99} of 6 checks with the slow build"
    );
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_fixes_a_fault_or_changes_nothing_for_the_worse_is_kept() {
    let rig = rig(75.0).await;
    // The fault: the slow build rolled out from outside (a person's bad release).
    rig.cluster.set_image(SLOW).await.unwrap();
    let start = tokio::time::Instant::now();
    while !rig.broken().await.iter().any(|v| v.starts_with("p99_latency_ms")) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the slow build never broke the P99 objective"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let report = rig
        .run_step(
            "import acv\nacv.rollback()\nprint('rolled back')\n",
            GuardConfig::default(),
        )
        .await;
    assert_eq!(report.status, ReportStatus::Response, "{}", report.message);
    assert_eq!(report.steps[0].outcome, StepOutcome::Ok);
    let events = guard_events(&report);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["outcome"], "kept", "{events:?}");
    assert_eq!(rig.cluster.status().await.unwrap().image, GOOD);
    rig.until_healthy(Duration::from_secs(20)).await;

    // A neutral change on a healthy service: one more replica. Kept.
    let report = rig
        .run_step(
            "import acv\nacv.scale(2)\nprint('scaled')\n",
            GuardConfig::default(),
        )
        .await;
    assert_eq!(report.status, ReportStatus::Response, "{}", report.message);
    assert_eq!(guard_events(&report)[0]["outcome"], "kept");
    let status = rig.cluster.status().await.unwrap();
    assert_eq!(status.desired_replicas, 2);
    assert_eq!(status.ready_replicas, 2);
    rig.finish().await;
}
