//! The rules planner's programs run in the real sandbox (wasmtime + the Python guest) against the sandbox's
//! `FakeCluster` capability set: every dataset L1 task, and playbooks driven end to end through `drive`.
//! The guest component is built by `make -C sandbox/guest` when missing (needs componentize-py).

use std::sync::Arc;

use acv_llm::{
    FinalReport, MaintainerContext, PlannedStep, RulesPlanner, drive,
    planner::{Observation, parse_observation},
    session::{Executor, StepResult},
};
use acv_protocol::{
    ComponentName, ReplicaState, ReportStatus, SloMetric, SloPolicy, StepOutcome, TaskSpec, Violation,
};
use acv_sandbox::{
    Limits, SafetyMode, Sandbox, Verdict,
    fake::{FakeCluster, FakeComponent},
};

fn sandbox() -> Sandbox {
    acv_sandbox::dev::shared_sandbox().unwrap_or_else(|e| panic!("sandbox: {e}"))
}

fn catalogue() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

/// 2 ready replicas of 0.3.6, previous revision 0.3.5.
fn cluster() -> Arc<FakeCluster> {
    let c = catalogue();
    let mut comp = FakeComponent::healthy(&c, "weaveworksdemos/catalogue:0.3.5", 2);
    let mut rev = comp.history[0].clone();
    rev.revision = 2;
    rev.image = "weaveworksdemos/catalogue:0.3.6".into();
    rev.cause = "set_image".into();
    comp.history.push(rev);
    comp.status.revision = 2;
    comp.status.image = "weaveworksdemos/catalogue:0.3.6".into();
    let cluster = FakeCluster::new();
    cluster.insert(comp);
    Arc::new(cluster)
}

/// Runs steps in the sandbox; after each step models readiness from the image (`broken` in it = crash loop).
struct SandboxExecutor {
    caps: Arc<FakeCluster>,
    mode: SafetyMode,
}

#[async_trait::async_trait]
impl Executor for SandboxExecutor {
    async fn execute(&mut self, _index: u32, step: &PlannedStep) -> StepResult {
        let out = sandbox()
            .run(
                &step.program,
                &catalogue(),
                self.mode,
                self.caps.clone(),
                Limits::default(),
            )
            .await
            .unwrap();
        self.caps.update(&catalogue(), |c| {
            let broken = c.status.image.contains("broken");
            for r in &mut c.status.replicas {
                r.state = if broken {
                    ReplicaState::CrashLoopBackOff
                } else {
                    ReplicaState::Ready
                };
            }
            c.status.ready_replicas = if broken { 0 } else { c.status.desired_replicas };
        });
        let (outcome, mut output) = match &out.verdict {
            Verdict::Ok => (StepOutcome::Ok, String::new()),
            Verdict::GuestError { traceback } => (StepOutcome::Error, traceback.clone()),
            Verdict::Refused { traceback, .. } => (StepOutcome::Refused, traceback.clone()),
            other => (StepOutcome::LimitExceeded, format!("{other:?}")),
        };
        output.insert_str(0, &out.stdout);
        let mutated = out.mutated();
        let report = out.report.map(|r| FinalReport {
            status: r.status,
            message: r.message,
        });
        StepResult {
            outcome,
            output,
            report,
            mutated,
        }
    }
}

const L1: &[&str] = &[
    "Create a deployment using your deployment YAML file.",
    "Update your deployment and set the environment variable logger_flag to true.",
    "Rollback the image version of your microservice component to version 0.3.4.",
    "Restart all the pods of your microservice component immediately.",
    "Report the cpu usage of your microservice component.",
    "Report the P99 latency of your microservice component.",
    "Scale replicas to 3 for your microservice component.",
    "Check your microservice's healthy status immediately.",
    "Check whether your microservice component performance is normal immediately.",
];

#[tokio::test]
async fn dataset_l1_programs_run_in_the_sandbox() {
    for text in L1 {
        let caps = cluster();
        let mut exec = SandboxExecutor {
            caps: caps.clone(),
            mode: SafetyMode::Autonomous,
        };
        let ctx =
            MaintainerContext::for_task(catalogue(), "t", TaskSpec::Imperative { text: (*text).into() });
        let out = drive(&RulesPlanner::new(), ctx, &mut exec).await.unwrap();
        assert_eq!(out.steps.len(), 1, "{text}");
        assert_eq!(
            out.steps[0].outcome,
            StepOutcome::Ok,
            "{text}: {}",
            out.steps[0].output
        );
        assert_eq!(
            out.report.status,
            ReportStatus::Response,
            "{text}: {}",
            out.report.message
        );
        let c = caps.component(&catalogue()).unwrap();
        match *text {
            t if t.starts_with("Update") => {
                assert_eq!(c.status.env.get("logger_flag").map(String::as_str), Some("true"))
            }
            t if t.starts_with("Rollback") => assert_eq!(c.status.image, "weaveworksdemos/catalogue:0.3.4"),
            t if t.starts_with("Restart") => assert_eq!(c.restarts, 1),
            t if t.starts_with("Scale") => assert_eq!(c.status.desired_replicas, 3),
            t if t.contains("cpu") => assert!(
                out.report.message.contains("CPU usage 35.0%"),
                "{}",
                out.report.message
            ),
            t if t.contains("P99") => assert!(
                out.report.message.contains("P99 latency 42.0 ms"),
                "{}",
                out.report.message
            ),
            t if t.starts_with("Check") => assert!(
                out.report.message.contains("is healthy"),
                "{}",
                out.report.message
            ),
            t if t.starts_with("Create") => assert!(
                out.report.message.contains("is deployed"),
                "{}",
                out.report.message
            ),
            _ => unreachable!(),
        }
    }
}

#[tokio::test]
async fn observation_printed_in_the_sandbox_parses() {
    let caps = cluster();
    let out = sandbox()
        .run(
            &acv_llm::planner::rules::programs::observe(),
            &catalogue(),
            SafetyMode::Observe,
            caps,
            Limits::default(),
        )
        .await
        .unwrap();
    assert!(out.verdict.is_ok(), "{:?}", out.verdict);
    let obs: Observation = parse_observation(&out.stdout).expect("ACV_OBSERVATION line with protocol types");
    assert_eq!(obs.status.unwrap().image, "weaveworksdemos/catalogue:0.3.6");
    assert_eq!(obs.metrics.unwrap().p99_ms, Some(42.0));
    assert_eq!(obs.history.len(), 2);
}

#[tokio::test]
async fn crashloop_playbook_rolls_back_in_the_sandbox() {
    let caps = cluster();
    caps.update(&catalogue(), |c| {
        c.status.image = "weaveworksdemos/catalogue:0.3.6-broken".into();
        c.history[1].image = "weaveworksdemos/catalogue:0.3.6-broken".into();
        // The bad release went out a minute ago (the fake's revisions are dated 2023 otherwise).
        c.history[1].created_at_ms = acv_core::now_ms() - 60_000;
        for r in &mut c.status.replicas {
            r.state = ReplicaState::CrashLoopBackOff;
        }
        c.status.ready_replicas = 0;
    });
    let ready = SloPolicy::default()
        .objectives(&catalogue())
        .into_iter()
        .find(|o| o.metric == SloMetric::ReadyPercent)
        .unwrap();
    let ctx = MaintainerContext::for_violations(
        catalogue(),
        vec![Violation {
            objective: ready,
            measured: Some(0.0),
        }],
    );
    let mut exec = SandboxExecutor {
        caps: caps.clone(),
        mode: SafetyMode::Autonomous,
    };
    let out = drive(&RulesPlanner::new(), ctx, &mut exec).await.unwrap();
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(
        caps.component(&catalogue()).unwrap().status.image,
        "weaveworksdemos/catalogue:0.3.5"
    );
    assert!(caps.calls().iter().any(|c| c == "rollback"), "{:?}", caps.calls());
}

#[tokio::test]
async fn latency_playbook_in_the_sandbox_and_observe_mode() {
    // P99 stays at 900 ms whatever happens: three verified scale-outs, then an ISSUE.
    let caps = cluster();
    caps.update(&catalogue(), |c| c.metrics.p99_ms = Some(900.0));
    let p99 = SloPolicy::default()
        .objectives(&catalogue())
        .into_iter()
        .find(|o| o.metric == SloMetric::P99LatencyMs)
        .unwrap();
    let v = Violation {
        objective: p99,
        measured: Some(900.0),
    };
    let mut ctx = MaintainerContext::for_violations(catalogue(), vec![v.clone()]);
    ctx.max_turns = 10;
    let mut exec = SandboxExecutor {
        caps: caps.clone(),
        mode: SafetyMode::Autonomous,
    };
    let out = drive(&RulesPlanner::new(), ctx, &mut exec).await.unwrap();
    assert_eq!(out.report.status, ReportStatus::Issue, "{}", out.report.message);
    assert_eq!(caps.component(&catalogue()).unwrap().status.desired_replicas, 5);
    assert!(out.steps.iter().all(|s| s.outcome == StepOutcome::Ok));
    // Observe mode: the rules plan no mutation, so nothing is refused and nothing changes.
    let caps = cluster();
    caps.update(&catalogue(), |c| c.metrics.p99_ms = Some(900.0));
    let mut ctx = MaintainerContext::for_violations(catalogue(), vec![v]);
    ctx.safety = acv_llm::SafetyMode::Observe;
    let mut exec = SandboxExecutor {
        caps: caps.clone(),
        mode: SafetyMode::Observe,
    };
    let out = drive(&RulesPlanner::new(), ctx, &mut exec).await.unwrap();
    assert!(
        out.report
            .message
            .contains("Observe mode: would scale catalogue out"),
        "{}",
        out.report.message
    );
    assert_eq!(caps.component(&catalogue()).unwrap().status.desired_replicas, 2);
}

/// Phrasings the dataset does not use, end to end: parsed, planned, run in the sandbox against the fake cluster.
#[tokio::test]
async fn new_phrasings_run_in_the_sandbox() {
    type Check = fn(&acv_sandbox::fake::FakeComponent, &str);
    let cases: &[(&str, Check)] = &[
        ("add two more replicas", |c, _| {
            assert_eq!(c.status.desired_replicas, 4)
        }),
        ("set the memory limit to 512Mi", |c, _| {
            assert_eq!(c.status.limits.memory_mib, 512);
            assert_eq!(c.status.limits.cpu_millis, 500, "the CPU limit is kept");
        }),
        ("limit cpu to 300m", |c, _| {
            assert_eq!(c.status.limits.cpu_millis, 300)
        }),
        ("double the memory limit", |c, _| {
            assert_eq!(c.status.limits.memory_mib, 512)
        }),
        ("undo the last change", |c, _| {
            assert_eq!(c.status.image, "weaveworksdemos/catalogue:0.3.5")
        }),
        ("roll catalogue back to version 0.3.4", |c, _| {
            assert_eq!(c.status.image, "weaveworksdemos/catalogue:0.3.4")
        }),
        ("Restrat the service", |c, _| assert_eq!(c.restarts, 1)),
        ("how many requests per second is it handling?", |_, msg| {
            assert!(msg.contains("request rate 120.0 req/s"), "{msg}")
        }),
        ("which version is deployed?", |_, msg| {
            assert!(
                msg.contains("weaveworksdemos/catalogue:0.3.6 (revision 2): 2/2 replicas ready"),
                "{msg}"
            )
        }),
    ];
    for (text, check) in cases {
        let caps = cluster();
        let mut exec = SandboxExecutor {
            caps: caps.clone(),
            mode: SafetyMode::Autonomous,
        };
        let ctx =
            MaintainerContext::for_task(catalogue(), "t", TaskSpec::Imperative { text: (*text).into() });
        let out = drive(&RulesPlanner::new(), ctx, &mut exec).await.unwrap();
        assert_eq!(out.steps.len(), 1, "{text}");
        assert_eq!(
            out.steps[0].outcome,
            StepOutcome::Ok,
            "{text}: {}",
            out.steps[0].output
        );
        assert_eq!(
            out.report.status,
            ReportStatus::Response,
            "{text}: {}",
            out.report.message
        );
        check(&caps.component(&catalogue()).unwrap(), &out.report.message);
    }
    // Another component named: refused before anything runs; catalogue is untouched.
    let caps = cluster();
    let mut exec = SandboxExecutor {
        caps: caps.clone(),
        mode: SafetyMode::Autonomous,
    };
    let ctx = MaintainerContext::for_task(
        catalogue(),
        "t",
        TaskSpec::Imperative {
            text: "scale front-end to 5".into(),
        },
    );
    let out = drive(&RulesPlanner::new(), ctx, &mut exec).await.unwrap();
    assert_eq!(out.report.status, ReportStatus::Issue);
    assert!(out.report.message.contains("front-end"), "{}", out.report.message);
    assert!(out.steps.is_empty());
    assert_eq!(caps.component(&catalogue()).unwrap().status.desired_replicas, 2);
    assert!(caps.calls().is_empty(), "{:?}", caps.calls());
}
