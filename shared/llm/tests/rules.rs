//! Rules planner: every L1/L2 phrasing of the dataset, every playbook, and the manager rules. Emitted programs are
//! checked to parse as Python and run against a fake host that implements the host API contract.

mod support;

use acv_llm::Baseline;
use acv_llm::{
    MaintainerContext, Observation, PlannedStep, Planner, RulesPlanner, SafetyMode, StepPurpose, TaskStep,
    drive,
    planner::Remedy,
    planner::rules::parse::{Intent, ReportMetric, parse_intent},
};
use acv_protocol::{
    Comparison, ComponentName, Goal, Measurement, MetricsSnapshot, Objective, ReportStatus, ResourceLimits,
    RootCause, SloMetric, SloPolicy, StepOutcome, StepRecord, TaskSpec, Violation,
};
use serde_json::json;
use support::{FakeHost, Model, assert_parses, healthy_state, run_fake};

fn catalogue() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

fn task(text: &str) -> MaintainerContext {
    MaintainerContext::for_task(catalogue(), "t1", TaskSpec::Imperative { text: text.into() })
}

/// The dataset's task phrasings (data/dataset/*.yaml), with what the rules must understand.
const DATASET_TASKS: &[(&str, &str)] = &[
    (
        "create_deployment",
        "Create a deployment using your deployment YAML file.",
    ),
    (
        "update_deployment",
        "Update your deployment and set the environment variable logger_flag to true.",
    ),
    (
        "rollback",
        "Rollback the image version of your microservice component to version 0.3.4.",
    ),
    (
        "restart",
        "Restart all the pods of your microservice component immediately.",
    ),
    (
        "metric_collection_1",
        "Report the cpu usage of your microservice component.",
    ),
    (
        "metric_collection_2",
        "Report the P99 latency of your microservice component.",
    ),
    (
        "manual_scaling",
        "Scale replicas to 3 for your microservice component.",
    ),
    (
        "healthy_check",
        "Check your microservice's healthy status immediately.",
    ),
    (
        "performance_check",
        "Check whether your microservice component performance is normal immediately.",
    ),
    (
        "reduce_latency",
        "Reduce your microservice component P99 latency below 300ms.",
    ),
    (
        "reduce_resource_usage",
        "Reduce your microservice component average CPU usage lower than 30% resource limit.",
    ),
    (
        "auto_scaling",
        "Implement auto-scaling with sensible thresholds for your microservice component.",
    ),
];

fn expected(case: &str) -> Intent {
    match case {
        "create_deployment" => Intent::Create,
        "update_deployment" => Intent::SetEnv {
            key: "logger_flag".into(),
            value: "true".into(),
        },
        "rollback" => Intent::RollbackTo("0.3.4".into()),
        "restart" => Intent::Restart,
        "metric_collection_1" => Intent::Report(vec![ReportMetric::Cpu]),
        "metric_collection_2" => Intent::Report(vec![ReportMetric::P99]),
        "manual_scaling" => Intent::Scale(3),
        "healthy_check" | "performance_check" => Intent::HealthCheck,
        "reduce_latency" => Intent::Reach(vec![(SloMetric::P99LatencyMs, Comparison::Below, 300.0)]),
        "reduce_resource_usage" => {
            Intent::Reach(vec![(SloMetric::CpuPercentOfLimit, Comparison::Below, 30.0)])
        }
        "auto_scaling" => Intent::CannotDo(String::new()),
        other => panic!("unknown case {other}"),
    }
}

#[test]
fn parses_every_dataset_phrasing() {
    for (case, text) in DATASET_TASKS {
        let got = parse_intent(text);
        match (expected(case), &got) {
            (Intent::CannotDo(_), Intent::CannotDo(why)) => assert!(why.contains("I can:"), "{why}"),
            (want, got) => assert_eq!(&want, got, "{case}: {text}"),
        }
    }
}

#[test]
fn dataset_files_match_the_table() {
    // The dataset lives next to the repository (../shared/acv-dataset); skip quietly where it is not checked out.
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/acv-dataset/data/dataset");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("dataset not found at {}; table test only", dir.display());
        return;
    };
    let mut seen = 0;
    for e in entries {
        let path = e.unwrap().path();
        let case: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(text) = case["task"].as_str() else {
            continue;
        };
        let name = path.file_stem().unwrap().to_str().unwrap();
        let (_, table_text) = DATASET_TASKS
            .iter()
            .find(|(c, _)| *c == name)
            .unwrap_or_else(|| panic!("{name} missing from table"));
        assert_eq!(text.trim(), *table_text, "{name}");
        seen += 1;
    }
    assert_eq!(seen, DATASET_TASKS.len());
}

#[test]
fn paraphrases_and_cannot_do() {
    assert_eq!(
        parse_intent("please scale catalogue to 5 replicas"),
        Intent::Scale(5)
    );
    assert_eq!(parse_intent("Set the number of replicas to 2."), Intent::Scale(2));
    assert_eq!(parse_intent("scale out by 2"), Intent::ScaleBy(2));
    assert_eq!(parse_intent("Scale in"), Intent::ScaleBy(-1));
    assert_eq!(
        parse_intent("Roll back to the previous version"),
        Intent::Rollback
    );
    assert_eq!(
        parse_intent("Update the image to weaveworksdemos/catalogue:0.3.5"),
        Intent::SetImage("weaveworksdemos/catalogue:0.3.5".into())
    );
    assert_eq!(
        parse_intent("set LOG_LEVEL=debug"),
        Intent::SetEnv {
            key: "LOG_LEVEL".into(),
            value: "debug".into()
        }
    );
    // e2e/cases/update_deployment.yaml words it so; the value once read as a component named "true".
    let ours = "Update your deployment so that the environment variable logger_flag is true.";
    let logger_flag = Intent::SetEnv {
        key: "logger_flag".into(),
        value: "true".into(),
    };
    assert_eq!(parse_intent(ours), logger_flag);
    assert_eq!(
        acv_llm::planner::rules::parse::parse_task(ours, &catalogue()),
        logger_flag
    );
    assert_eq!(
        parse_intent("Make sure the env variable LOG_LEVEL is set to debug"),
        Intent::SetEnv {
            key: "LOG_LEVEL".into(),
            value: "debug".into()
        }
    );
    for question in [
        "Check whether the environment variable logger_flag is set.",
        "Tell me if the env variable logger_flag is defined",
    ] {
        assert!(
            !matches!(parse_intent(question), Intent::SetEnv { .. }),
            "{question}: {:?}",
            parse_intent(question)
        );
    }
    assert_eq!(
        parse_intent("What's the memory usage and the request rate?"),
        Intent::Report(vec![ReportMetric::Memory, ReportMetric::RequestRate])
    );
    assert_eq!(
        parse_intent("Report the P50 latency"),
        Intent::Report(vec![ReportMetric::P50])
    );
    assert_eq!(
        parse_intent("Keep the P99 latency under 0.5 s"),
        Intent::Reach(vec![(SloMetric::P99LatencyMs, Comparison::Below, 500.0)])
    );
    for nonsense in ["Write me a poem", "Delete the database", ""] {
        assert!(
            matches!(parse_intent(nonsense), Intent::CannotDo(_)),
            "{nonsense}"
        );
    }
}

type Check = Box<dyn Fn(&support::FakeRun)>;

/// One-shot L1 tasks: one step, done, and the program does the right thing on the fake host.
#[tokio::test]
async fn l1_tasks_run_on_the_fake_host() {
    let planner = RulesPlanner::new();
    let cases: Vec<(&str, Check)> = vec![
        (
            "Scale replicas to 3 for your microservice component.",
            Box::new(|r| {
                assert_eq!(r.status["desired_replicas"], 3);
                assert!(r.report.as_ref().unwrap().message.contains("from 2 to 3"));
            }),
        ),
        (
            "Restart all the pods of your microservice component immediately.",
            Box::new(|r| {
                assert!(
                    r.status["replicas"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|x| x["restarts"] == 1)
                );
            }),
        ),
        (
            "Update your deployment and set the environment variable logger_flag to true.",
            Box::new(|r| {
                assert_eq!(r.status["env"]["logger_flag"], "true");
                assert_eq!(r.status["revision"], 3);
            }),
        ),
        (
            "Rollback the image version of your microservice component to version 0.3.4.",
            Box::new(|r| {
                assert_eq!(r.status["image"], "weaveworksdemos/catalogue:0.3.4");
                assert!(r.report.as_ref().unwrap().message.contains("0.3.6"));
            }),
        ),
        (
            "Report the cpu usage of your microservice component.",
            Box::new(|r| {
                let m = &r.report.as_ref().unwrap().message;
                assert!(m.contains("CPU usage 20.0% of the 500 millicore limit"), "{m}");
            }),
        ),
        (
            "Report the P99 latency of your microservice component.",
            Box::new(|r| {
                assert!(
                    r.report
                        .as_ref()
                        .unwrap()
                        .message
                        .contains("P99 latency 120.0 ms")
                );
            }),
        ),
        (
            "Create a deployment using your deployment YAML file.",
            Box::new(|r| {
                assert!(r.report.as_ref().unwrap().message.contains("is deployed"));
            }),
        ),
        (
            "Check your microservice's healthy status immediately.",
            Box::new(|r| {
                let rep = r.report.as_ref().unwrap();
                assert_eq!(rep.status, ReportStatus::Response, "{}", rep.message);
                assert!(rep.message.contains("healthy"));
            }),
        ),
    ];
    for (text, check) in cases {
        let plan = planner.next(&task(text)).await.unwrap();
        assert!(plan.done, "{text}");
        assert_eq!(plan.steps.len(), 1, "{text}");
        let program = &plan.steps[0].program;
        assert_parses(program);
        let run = run_fake(program, &healthy_state());
        assert!(run.error.is_none(), "{text}: {:?}\n{program}", run.error);
        let report = run.report.clone().unwrap_or_else(|| panic!("{text}: no report"));
        if !text.starts_with("Check") {
            assert_eq!(
                report.status,
                ReportStatus::Response,
                "{text}: {}",
                report.message
            );
        }
        check(&run);
        assert!(
            run.calls.iter().all(|c| c["component"].is_null()),
            "only the own component is addressed"
        );
    }
}

#[tokio::test]
async fn l1_edge_cases() {
    let planner = RulesPlanner::new();
    // Create when scaled to zero starts one replica.
    let mut state = healthy_state();
    state["status"]["desired_replicas"] = json!(0);
    let plan = planner
        .next(&task("Create a deployment using your deployment YAML file."))
        .await
        .unwrap();
    let run = run_fake(&plan.steps[0].program, &state);
    assert_eq!(run.status["desired_replicas"], 1);
    // Health check on an unhealthy component is an ISSUE naming the problem.
    let mut state = healthy_state();
    state["metrics"]["p99_ms"] = json!(480.0);
    let plan = planner
        .next(&task(
            "Check whether your microservice component performance is normal immediately.",
        ))
        .await
        .unwrap();
    let run = run_fake(&plan.steps[0].program, &state);
    let rep = run.report.unwrap();
    assert_eq!(rep.status, ReportStatus::Issue);
    assert!(
        rep.message
            .contains("P99 latency 480.0 ms is over the 200 ms objective"),
        "{}",
        rep.message
    );
    // Missing metrics are reported as missing, not invented.
    let mut state = healthy_state();
    state["metrics"]["cpu_percent_of_limit"] = json!(null);
    let plan = planner
        .next(&task("Report the cpu usage of your microservice component."))
        .await
        .unwrap();
    let run = run_fake(&plan.steps[0].program, &state);
    assert_eq!(run.report.unwrap().status, ReportStatus::Issue);
    // Same version already running: nothing changes.
    let plan = planner
        .next(&task("Update the image to version 0.3.6"))
        .await
        .unwrap();
    let run = run_fake(&plan.steps[0].program, &healthy_state());
    assert!(run.report.unwrap().message.contains("already runs"));
    assert_eq!(run.status["revision"], 2);
    // Cannot-do tasks end at once with an ISSUE.
    let plan = planner
        .next(&task(
            "Implement auto-scaling with sensible thresholds for your microservice component.",
        ))
        .await
        .unwrap();
    assert!(plan.steps.is_empty() && plan.done);
    let rep = plan.report.unwrap();
    assert_eq!(rep.status, ReportStatus::Issue);
    assert!(rep.message.starts_with("Cannot do this"), "{}", rep.message);
    // Observe mode refuses to plan mutations but still reports.
    let mut ctx = task("Scale replicas to 3 for your microservice component.");
    ctx.safety = SafetyMode::Observe;
    let plan = planner.next(&ctx).await.unwrap();
    assert!(plan.steps.is_empty());
    assert!(
        plan.report
            .unwrap()
            .message
            .contains("Observe mode: would scale catalogue to 3 replicas")
    );
}

#[tokio::test]
async fn a_failed_step_ends_with_an_issue() {
    let mut ctx = task("Scale replicas to 3 for your microservice component.");
    ctx.steps.push(TaskStep::from(StepRecord {
        index: 1,
        description: "scale catalogue to 3 replicas".into(),
        program: "import acv\nacv.scale(3)".into(),
        outcome: StepOutcome::Error,
        output: "Traceback...\nacv.HostError: quota: no room for 3 replicas".into(),
        mutated: false,
    }));
    ctx.turn = 2;
    let plan = RulesPlanner::new().next(&ctx).await.unwrap();
    let rep = plan.report.unwrap();
    assert_eq!(rep.status, ReportStatus::Issue);
    assert!(rep.message.contains("no room for 3 replicas"), "{}", rep.message);
}

/// The playbooks' memory is the steps' typed purpose: a restart recorded as such counts whatever its description,
/// and a description that merely looks like an action does not.
#[test]
fn playbook_state_comes_from_step_purposes() {
    let mut state = healthy_state();
    state["status"]["replicas"][1]["state"] = json!("not_ready");
    state["status"]["ready_replicas"] = json!(1);
    let observation = Observation {
        status: Some(serde_json::from_value(state["status"].clone()).unwrap()),
        metrics: Some(serde_json::from_value(state["metrics"].clone()).unwrap()),
        history: vec![serde_json::from_value(state["history"][1].clone()).unwrap()],
        ..Default::default()
    };
    let ran = |purpose: Option<StepPurpose>, description: &str| {
        let planned = PlannedStep {
            description: description.into(),
            program: "import acv\nacv.restart()".into(),
            purpose,
        };
        let record = StepRecord {
            index: 1,
            description: planned.description.clone(),
            program: planned.program.clone(),
            outcome: StepOutcome::Ok,
            output: String::new(),
            mutated: true,
        };
        TaskStep::ran(record, &planned)
    };
    let mut ctx = ctx_for(vec![violation(SloMetric::ReadyPercent, 50.0)], 8);
    ctx.turn = 2;
    ctx.observation = Some(observation);
    ctx.steps.push(ran(
        Some(StepPurpose::Remedy {
            remedy: Remedy::Restart,
        }),
        "bounced every pod",
    ));
    let plan = RulesPlanner::new().plan(&ctx).unwrap();
    let report = plan.report.expect("the playbook is exhausted");
    assert_eq!(report.status, ReportStatus::Issue);
    assert!(
        report.message.contains("nothing more to try") && report.message.contains("Tried: bounced every pod"),
        "{}",
        report.message
    );
    // Text alone is not state: the same step without a purpose leaves the restart still to try.
    ctx.steps = vec![ran(None, "[rules:restart] restart all replicas of catalogue")];
    let plan = RulesPlanner::new().plan(&ctx).unwrap();
    assert_eq!(
        plan.steps[0].purpose,
        Some(StepPurpose::Remedy {
            remedy: Remedy::Restart
        })
    );
}

/// An observation line that cannot be read ends the task with an ISSUE naming the step, not an observe loop.
#[test]
fn unreadable_observation_is_an_issue() {
    let mut ctx = ctx_for(vec![violation(SloMetric::P99LatencyMs, 300.0)], 8);
    ctx.turn = 2;
    ctx.steps.push(TaskStep::from(StepRecord {
        index: 1,
        description: "observe".into(),
        program: "import acv".into(),
        outcome: StepOutcome::Ok,
        output: "ACV_OBSERVATION {\"status\": 42}".into(),
        mutated: false,
    }));
    let plan = RulesPlanner::new().plan(&ctx).unwrap();
    let report = plan.report.unwrap();
    assert_eq!(report.status, ReportStatus::Issue);
    assert!(
        report.message.contains("Cannot read the observation of step 1"),
        "{}",
        report.message
    );
}

fn violation(metric: SloMetric, measured: f64) -> Violation {
    let obj = SloPolicy::default()
        .objectives(&catalogue())
        .into_iter()
        .find(|o| o.metric == metric)
        .unwrap();
    Violation {
        objective: obj,
        measured: Some(measured),
    }
}

fn ctx_for(violations: Vec<Violation>, max_turns: u32) -> MaintainerContext {
    let mut ctx = MaintainerContext::for_violations(catalogue(), violations);
    ctx.max_turns = max_turns;
    ctx
}

#[tokio::test]
async fn crashloop_after_version_change_rolls_back() {
    let mut state = healthy_state();
    state["status"]["image"] = json!("weaveworksdemos/catalogue:0.3.6-broken");
    state["history"][1]["image"] = json!("weaveworksdemos/catalogue:0.3.6-broken");
    // Switched 30 s ago: a recent change, so a bad release.
    state["history"][1]["created_at_ms"] = json!(acv_core::now_ms() - 30_000);
    state["status"]["replicas"][0]["state"] = json!("crash_loop_back_off");
    state["status"]["replicas"][1]["state"] = json!("crash_loop_back_off");
    state["status"]["ready_replicas"] = json!(0);
    let mut host = FakeHost::new(
        state,
        Model {
            cpu_demand_total: None,
            cpu_demand_per_replica: None,
            memory_per_replica: None,
            p99: None,
        },
    );
    let out = drive(
        &RulesPlanner::new(),
        ctx_for(vec![violation(SloMetric::ReadyPercent, 0.0)], 8),
        &mut host,
    )
    .await
    .unwrap();
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert!(
        out.report.message.contains("roll catalogue back"),
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["rollback"]);
    assert_eq!(host.state["status"]["image"], "weaveworksdemos/catalogue:0.3.5");
    let d = out.diagnosis.expect("the outcome carries the diagnosis");
    assert_eq!(d.cause, RootCause::BadRelease, "{d:?}");
    assert!(d.evidence.iter().any(|e| e.name == "recent_change"), "{d:?}");
    assert_eq!(host.state["status"]["ready_replicas"], 2);
}

#[tokio::test]
async fn not_ready_without_previous_revision_restarts() {
    let mut state = healthy_state();
    state["history"] = json!([state["history"][1].clone()]);
    state["status"]["replicas"][1]["state"] = json!("not_ready");
    state["status"]["ready_replicas"] = json!(1);
    let mut host = FakeHost::new(
        state,
        Model {
            cpu_demand_total: None,
            cpu_demand_per_replica: None,
            memory_per_replica: None,
            p99: None,
        },
    );
    host.provide_observations = true;
    let out = drive(
        &RulesPlanner::new(),
        ctx_for(vec![violation(SloMetric::ReadyPercent, 50.0)], 8),
        &mut host,
    )
    .await
    .unwrap();
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["restart"]);
    assert_eq!(out.turns, 2, "act, then confirm from the fresh observation");
}

#[tokio::test]
async fn cpu_over_limit_scales_out() {
    // 2 replicas sharing 800 millicores of demand against a 500m limit: 80% each.
    let model = Model {
        cpu_demand_total: Some(800.0),
        cpu_demand_per_replica: None,
        memory_per_replica: None,
        p99: None,
    };
    let mut host = FakeHost::new(healthy_state(), model);
    let out = drive(
        &RulesPlanner::new(),
        ctx_for(vec![violation(SloMetric::CpuPercentOfLimit, 80.0)], 8),
        &mut host,
    )
    .await
    .unwrap();
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["scale"]);
    assert_eq!(
        host.state["status"]["desired_replicas"], 5,
        "no baseline, cause unknown: replicas for the measured CPU at 70% of the 50% objective, ceil(2 * 80 / 35)"
    );
    assert_eq!(out.diagnosis.map(|d| d.cause), Some(RootCause::Unknown));
}

/// The healthy baseline of `healthy_state()`: 50 req/s, 2 × 20% of 500m = 200m, so 4 ms of CPU per request.
fn baseline() -> Baseline {
    Baseline {
        request_rate: Some(50.0),
        cpu_ms_per_request: Some(4.0),
        cpu_percent: Some(20.0),
        memory_percent: Some(30.0),
        replicas: 2,
        limits: Some(ResourceLimits {
            cpu_millis: 500,
            memory_mib: 512,
        }),
        healthy_checks: 10,
    }
}

fn hog(cpu_per_replica: Option<f64>, memory_per_replica: Option<f64>) -> Model {
    Model {
        cpu_demand_total: None,
        cpu_demand_per_replica: cpu_per_replica,
        memory_per_replica,
        p99: None,
    }
}

async fn drive_with_baseline(host: &mut FakeHost, v: Violation) -> acv_llm::TaskOutcome {
    host.provide_observations = true;
    host.baseline = Some(baseline());
    drive(&RulesPlanner::new(), ctx_for(vec![v], 10), host)
        .await
        .unwrap()
}

#[tokio::test]
async fn cpu_hog_in_the_replicas_is_replaced_not_scaled() {
    // A burner in every pod at the same request rate: 350m each = 70% of 500m, 14 ms CPU per request (3.5× the
    // baseline). New replicas start clean, so a rolling restart is the fix; no extra replicas are held.
    let mut host = FakeHost::new(healthy_state(), hog(Some(350.0), None));
    host.hog_in_replicas = true;
    let out = drive_with_baseline(&mut host, violation(SloMetric::CpuPercentOfLimit, 70.0)).await;
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["restart"]);
    assert_eq!(host.state["status"]["desired_replicas"], 2);
    let d = out.diagnosis.unwrap();
    assert_eq!(d.cause, RootCause::CpuSaturation, "{d:?}");
    let cost = d.evidence.iter().find(|e| e.name == "cost_ratio").unwrap();
    assert_eq!(cost.value, json!(3.5));
}

#[tokio::test]
async fn cpu_that_survives_replacement_gets_a_higher_limit() {
    // The burn comes back in new replicas too: after the restart the limit is too tight (70% of 500m; 47% of 750m).
    let mut host = FakeHost::new(healthy_state(), hog(Some(350.0), None));
    let out = drive_with_baseline(&mut host, violation(SloMetric::CpuPercentOfLimit, 70.0)).await;
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["restart", "set_resources"]);
    assert_eq!(host.state["status"]["limits"]["cpu_millis"], 750);
    assert_eq!(out.diagnosis.map(|d| d.cause), Some(RootCause::TightLimits));
}

#[tokio::test]
async fn load_increase_scales_in_proportion_with_headroom() {
    // Four times the baseline's requests at the same 4 ms each: 200 req/s, 800m in all (80% of 500m on each of 2
    // replicas). The requests explain the CPU, so scale for 35% each: ceil(2 × 80 / 35) = 5, not the ceiling.
    let mut state = healthy_state();
    state["metrics"]["request_rate"] = json!(200.0);
    let model = Model {
        cpu_demand_total: Some(800.0),
        cpu_demand_per_replica: None,
        memory_per_replica: None,
        p99: None,
    };
    let mut host = FakeHost::new(state, model);
    let out = drive_with_baseline(&mut host, violation(SloMetric::CpuPercentOfLimit, 80.0)).await;
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["scale"]);
    assert_eq!(host.state["status"]["desired_replicas"], 5);
    let d = out.diagnosis.unwrap();
    assert_eq!(d.cause, RootCause::LoadIncrease, "{d:?}");
    let action = d.evidence.iter().find(|e| e.name == "action").unwrap();
    assert_eq!(action.value["cost"]["extra_replicas"], 3, "{action:?}");
    assert!(d.summary.contains("4.0× the healthy baseline"), "{}", d.summary);
}

#[tokio::test]
async fn memory_hog_is_replaced_first() {
    let mut host = FakeHost::new(healthy_state(), hog(None, Some(400.0)));
    host.hog_in_replicas = true;
    let out = drive_with_baseline(&mut host, violation(SloMetric::MemoryPercentOfLimit, 78.0)).await;
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["restart"]);
    assert_eq!(
        host.state["status"]["limits"]["memory_mib"], 512,
        "no limit raised"
    );
    assert_eq!(out.diagnosis.map(|d| d.cause), Some(RootCause::MemoryPressure));
}

#[tokio::test]
async fn memory_that_survives_replacement_gets_a_higher_limit() {
    let mut host = FakeHost::new(healthy_state(), hog(None, Some(400.0)));
    let out = drive_with_baseline(&mut host, violation(SloMetric::MemoryPercentOfLimit, 78.0)).await;
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["restart", "set_resources"]);
    assert_eq!(host.state["status"]["limits"]["memory_mib"], 1024);
}

#[tokio::test]
async fn memory_leak_then_restart_then_issue() {
    // Memory stays over the objective whatever we do: replace, raise, then an ISSUE listing both.
    let model = Model {
        cpu_demand_total: None,
        cpu_demand_per_replica: None,
        memory_per_replica: Some(4000.0),
        p99: None,
    };
    let mut host = FakeHost::new(healthy_state(), model);
    let out = drive(
        &RulesPlanner::new(),
        ctx_for(vec![violation(SloMetric::MemoryPercentOfLimit, 99.0)], 10),
        &mut host,
    )
    .await
    .unwrap();
    assert_eq!(out.report.status, ReportStatus::Issue);
    assert!(
        out.report.message.contains("double the memory limit") && out.report.message.contains("replace"),
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["restart", "set_resources"]);
    assert!(out.diagnosis.is_some(), "an ISSUE carries the diagnosis too");
}

#[tokio::test]
async fn p99_over_target_scales_out_stepwise_and_verifies() {
    // P99 = 100 + 400 / replicas: 300 at 2, 233 at 3, 200 at 4, 180 at 5. Target from the dataset: below 300 ms.
    let model = Model {
        cpu_demand_total: None,
        cpu_demand_per_replica: None,
        memory_per_replica: None,
        p99: Some((100.0, 400.0)),
    };
    let mut host = FakeHost::new(healthy_state(), model);
    let ctx = {
        let mut c = task("Reduce your microservice component P99 latency below 300ms.");
        c.max_turns = 10;
        c
    };
    let out = drive(&RulesPlanner::new(), ctx, &mut host).await.unwrap();
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(host.mutating_calls(), ["scale"], "one step of +1 was enough");
    assert_eq!(host.state["status"]["desired_replicas"], 3);
    // The default 200 ms objective needs two more steps; each is verified by a fresh observation.
    let mut host = FakeHost::new(healthy_state(), model);
    let out = drive(
        &RulesPlanner::new(),
        ctx_for(vec![violation(SloMetric::P99LatencyMs, 300.0)], 10),
        &mut host,
    )
    .await
    .unwrap();
    assert_eq!(
        out.report.status,
        ReportStatus::Response,
        "{}",
        out.report.message
    );
    assert_eq!(host.state["status"]["desired_replicas"], 5);
    let observes = out
        .steps
        .iter()
        .filter(|s| s.description.starts_with("observe status"))
        .count();
    assert_eq!(
        observes, 4,
        "observe before the first action and after each of the 3 scale-outs"
    );
}

#[tokio::test]
async fn p99_that_never_recovers_is_an_issue_within_budget() {
    let model = Model {
        cpu_demand_total: None,
        cpu_demand_per_replica: None,
        memory_per_replica: None,
        p99: Some((900.0, 0.0)),
    };
    let mut host = FakeHost::new(healthy_state(), model);
    host.provide_observations = true;
    let out = drive(
        &RulesPlanner::new(),
        ctx_for(vec![violation(SloMetric::P99LatencyMs, 900.0)], 8),
        &mut host,
    )
    .await
    .unwrap();
    assert_eq!(out.report.status, ReportStatus::Issue);
    assert_eq!(host.mutating_calls().len(), 3, "MAX_SCALE_STEPS");
    // A tight budget ends with an ISSUE, never with an exhausted budget.
    let mut host = FakeHost::new(healthy_state(), model);
    let out = drive(
        &RulesPlanner::new(),
        ctx_for(vec![violation(SloMetric::P99LatencyMs, 900.0)], 3),
        &mut host,
    )
    .await
    .unwrap();
    assert_eq!(out.report.status, ReportStatus::Issue);
    assert!(
        out.report.message.contains("turn budget"),
        "{}",
        out.report.message
    );
}

#[tokio::test]
async fn healthy_and_observe_mode() {
    let mut host = FakeHost::new(
        healthy_state(),
        Model {
            cpu_demand_total: None,
            cpu_demand_per_replica: None,
            memory_per_replica: None,
            p99: None,
        },
    );
    let out = drive(&RulesPlanner::new(), ctx_for(vec![], 8), &mut host)
        .await
        .unwrap();
    assert_eq!(out.report.status, ReportStatus::Response);
    assert!(
        out.report.message.contains("nothing to do"),
        "{}",
        out.report.message
    );
    let mut state = healthy_state();
    state["metrics"]["cpu_percent_of_limit"] = json!(90.0);
    let mut host = FakeHost::new(
        state,
        Model {
            cpu_demand_total: None,
            cpu_demand_per_replica: None,
            memory_per_replica: None,
            p99: None,
        },
    );
    let mut ctx = ctx_for(vec![violation(SloMetric::CpuPercentOfLimit, 90.0)], 8);
    ctx.safety = SafetyMode::Observe;
    let out = drive(&RulesPlanner::new(), ctx, &mut host).await.unwrap();
    assert_eq!(out.report.status, ReportStatus::Issue);
    assert!(
        out.report
            .message
            .contains("Observe mode: would scale catalogue out"),
        "{}",
        out.report.message
    );
    assert!(host.mutating_calls().is_empty());
}

fn names(list: &[&str]) -> Vec<ComponentName> {
    list.iter().map(|n| ComponentName::new(*n).unwrap()).collect()
}

fn goal(text: &str) -> Goal {
    Goal {
        text: text.into(),
        objectives: vec![],
    }
}

fn objectives_of(spec: &TaskSpec) -> Vec<(SloMetric, f64)> {
    match spec {
        TaskSpec::Declarative { goal } => goal.objectives.iter().map(|o| (o.metric, o.threshold)).collect(),
        TaskSpec::Imperative { .. } => vec![],
    }
}

#[tokio::test]
async fn manager_splits_the_paper_goals() {
    let p = RulesPlanner::new();
    let comps = names(&["front-end", "catalogue", "carts", "orders"]);
    let s = p
        .decompose(
            &goal("Reduce the P99 latency of Catalogue to under 300 ms."),
            &comps,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].component.as_str(), "catalogue");
    assert_eq!(objectives_of(&s[0].spec), [(SloMetric::P99LatencyMs, 300.0)]);
    let s = p
        .decompose(
            &goal("Reduce the average CPU usage of Catalogue to under 30% of resource limit."),
            &comps,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(objectives_of(&s[0].spec), [(SloMetric::CpuPercentOfLimit, 30.0)]);
    let s = p
        .decompose(
            &goal("Reduce the total P99 latency of Catalogue and Front-end to under 400 ms."),
            &comps,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        s.iter().map(|x| x.component.as_str()).collect::<Vec<_>>(),
        ["front-end", "catalogue"]
    );
    assert!(
        s.iter()
            .all(|x| objectives_of(&x.spec) == [(SloMetric::P99LatencyMs, 200.0)]),
        "total split evenly"
    );
    let s = p
        .decompose(
            &goal("Reduce each Catalogue and Front-end's average CPU usage to under 30%."),
            &comps,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(s.len(), 2);
    assert!(
        s.iter()
            .all(|x| objectives_of(&x.spec) == [(SloMetric::CpuPercentOfLimit, 30.0)])
    );
    // Subtasks are plannable by the sidecar rules.
    let sub = &s[1];
    let ctx = MaintainerContext::for_task(sub.component.clone(), "sub", sub.spec.clone());
    let plan = p.next(&ctx).await.unwrap();
    assert_eq!(plan.steps[0].purpose, Some(StepPurpose::Observe));
    // Errors and fallbacks.
    let e = p
        .decompose(&goal("Make everything faster"), &comps, &[])
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("names none of the known components"),
        "{e}"
    );
    let s = p
        .decompose(&goal("Make everything faster"), &names(&["catalogue"]), &[])
        .await
        .unwrap();
    assert!(matches!(&s[0].spec, TaskSpec::Imperative { .. }));
}

fn snapshot(c: &str, p99: Option<f64>, cpu: Option<f64>) -> (ComponentName, Measurement) {
    let component = ComponentName::new(c).unwrap();
    let metrics = MetricsSnapshot {
        component: component.clone(),
        window_secs: 60.0,
        cpu_percent_of_limit: cpu,
        memory_percent_of_limit: Some(10.0),
        request_rate: Some(10.0),
        p50_ms: Some(5.0),
        p99_ms: p99,
        error_rate_percent: Some(0.0),
        calls: Vec::new(),
    };
    (
        component,
        Measurement {
            metrics: Some(metrics),
            status: None,
        },
    )
}

#[tokio::test]
async fn manager_judges_from_measurements() {
    let p = RulesPlanner::new();
    let g = goal("Reduce the total P99 latency of Catalogue and Front-end to under 400 ms.");
    let j = p
        .judge(
            &g,
            &[
                snapshot("catalogue", Some(120.0), None),
                snapshot("front-end", Some(180.0), None),
            ],
        )
        .await
        .unwrap();
    assert!(j.met, "{}", j.message);
    assert_eq!(j.status, ReportStatus::Response);
    let j = p
        .judge(
            &g,
            &[
                snapshot("catalogue", Some(120.0), None),
                snapshot("front-end", Some(250.0), None),
            ],
        )
        .await
        .unwrap();
    assert!(!j.met);
    assert_eq!(j.violations.len(), 1);
    assert!(
        j.message.contains("front-end") && j.message.contains("250.0"),
        "{}",
        j.message
    );
    // A missing measurement is not success.
    let explicit = Goal {
        text: "cpu".into(),
        objectives: vec![Objective {
            component: catalogue(),
            metric: SloMetric::CpuPercentOfLimit,
            comparison: Comparison::Below,
            threshold: 30.0,
        }],
    };
    let j = p
        .judge(&explicit, &[snapshot("catalogue", Some(1.0), None)])
        .await
        .unwrap();
    assert!(!j.met);
    assert!(j.message.contains("not measured"), "{}", j.message);
    let j = p
        .judge(&goal("be nice"), &[snapshot("catalogue", Some(1.0), None)])
        .await
        .unwrap();
    assert!(!j.met && j.message.contains("no measurable objective"));
}

#[test]
fn every_emitted_program_parses() {
    use acv_llm::planner::rules::programs as p;
    let all = [
        p::observe(),
        p::scale(3),
        p::scale_relative(-1),
        p::restart(),
        p::set_env("we\"ird", "va'lue\n"),
        p::set_image("0.3.4", "Rolled back"),
        p::rollback(),
        p::create(),
        p::report_metrics(&[
            ReportMetric::Cpu,
            ReportMetric::Memory,
            ReportMetric::P99,
            ReportMetric::P50,
            ReportMetric::RequestRate,
            ReportMetric::ErrorRate,
        ]),
        p::health_check(&SloPolicy::default()),
        p::remediate_rollback(),
        p::remediate_restart(),
        p::remediate_scale_out(4),
        p::remediate_raise_limits(1.5, 2.0),
    ];
    for prog in &all {
        assert_parses(prog);
        assert!(prog.starts_with("import acv\n"));
    }
    // Strings with quotes and newlines stay data, not code.
    let run = run_fake(&p::set_env("we\"ird", "va'lue\n"), &healthy_state());
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.status["env"]["we\"ird"], "va'lue\n");
    // Every metric the report program can name exists in the fake snapshot.
    let run = run_fake(&all[8], &healthy_state());
    let msg = run.report.unwrap().message;
    for label in [
        "CPU usage",
        "memory usage",
        "P99 latency",
        "P50 latency",
        "request rate",
        "error rate",
    ] {
        assert!(msg.contains(label), "{label} in {msg}");
    }
}
