//! The LLM planner end to end against the scripted server: structured plans, repair after feedback, the multi-turn
//! loop with a fake host, turn budgets, the manager's decomposition and judging.

mod support;

use std::time::Duration;

use acv_llm::{
    Backend, ChatClient, LlmConfig, LlmPlanner, MaintainerContext, PlanError, PlannedStep, Planner, drive,
    session::{Executor, StepResult},
    testserver::{Reply, ScriptedServer},
};
use acv_protocol::{
    Comparison, ComponentName, Goal, Measurement, MetricsSnapshot, Objective, ReportStatus, SloMetric,
    StepOutcome, TaskSpec,
};
use serde_json::json;
use support::{FakeHost, Model, healthy_state};

fn planner(server: &ScriptedServer, tweak: impl FnOnce(&mut LlmConfig)) -> LlmPlanner {
    let mut cfg = LlmConfig::new(Backend::Other {
        base_url: server.base_url(),
        model: "m".into(),
        api_key: None,
    });
    cfg.timeout = Duration::from_secs(5);
    cfg.backoff_initial = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(20);
    tweak(&mut cfg);
    LlmPlanner::new(ChatClient::new(cfg).unwrap())
}

fn catalogue() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

fn task(text: &str) -> MaintainerContext {
    MaintainerContext::for_task(catalogue(), "t1", TaskSpec::Imperative { text: text.into() })
}

fn plan_json(steps: &[(&str, &str)], done: bool, report: Option<(&str, &str)>) -> String {
    json!({
        "thought": "scripted",
        "steps": steps.iter().map(|(d, p)| json!({"description": d, "program": p})).collect::<Vec<_>>(),
        "done": done,
        "report": report.map(|(s, m)| json!({"status": s, "message": m})),
    })
    .to_string()
}

fn last_user_message(body: &serde_json::Value) -> String {
    let msgs = body["messages"].as_array().unwrap();
    msgs.iter().rev().find(|m| m["role"] == "user").unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn prompt_describes_component_slos_and_host_api() {
    let server = ScriptedServer::start(vec![Reply::chat(plan_json(&[], true, Some(("RESPONSE", "ok"))))])
        .await
        .unwrap();
    let p = planner(&server, |_| {});
    assert_eq!(p.name(), "llm:m");
    let plan = p
        .next(&task("Report the P99 latency of your microservice component."))
        .await
        .unwrap();
    assert!(plan.done && plan.steps.is_empty());
    let body = &server.requests()[0].body;
    let system = body["messages"][0]["content"].as_str().unwrap();
    for needle in [
        "\"catalogue\"",
        "200 ms",
        "acv.rollback()",
        "acv.report(status: str, message: str)",
        "AUTONOMOUS",
        "8 turns",
    ] {
        assert!(system.contains(needle), "system prompt lacks {needle}");
    }
    assert!(last_user_message(body).contains("Task: Report the P99 latency"));
    assert_eq!(body["response_format"]["type"], "json_object");
}

#[tokio::test]
async fn malformed_plan_is_repaired_after_feedback() {
    let good = plan_json(&[("check", "import acv\nprint(acv.status())")], false, None);
    let server = ScriptedServer::start(vec![
        Reply::chat("Sure! I will first check the status of the pods."),
        Reply::chat(plan_json(
            &[(
                "shell out",
                "import subprocess\nimport acv\nsubprocess.run(['kubectl'])",
            )],
            false,
            None,
        )),
        Reply::chat(good),
    ])
    .await
    .unwrap();
    let p = planner(&server, |c| c.max_repairs = 2);
    let plan = p
        .next(&task("Check your microservice's healthy status immediately."))
        .await
        .unwrap();
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.usage.calls, 3, "usage covers the repairs");
    let rs = server.requests();
    assert_eq!(rs.len(), 3);
    let second = rs[1].body["messages"].as_array().unwrap();
    assert_eq!(second.len(), 4, "system, user, bad answer, feedback");
    assert_eq!(second[2]["role"], "assistant");
    assert!(second[2]["content"].as_str().unwrap().starts_with("Sure!"));
    assert!(last_user_message(&rs[1].body).contains("no JSON object"));
    assert!(
        last_user_message(&rs[2].body).contains("\"subprocess\" is not available"),
        "{}",
        last_user_message(&rs[2].body)
    );
}

#[tokio::test]
async fn plan_that_stays_malformed_fails_clearly() {
    let server = ScriptedServer::start(vec![]).await.unwrap();
    server.set_fallback(|_| {
        Reply::chat(r#"{"steps": [{"description": "x", "program": "print(1)"}], "done": false}"#)
    });
    let p = planner(&server, |c| c.max_repairs = 2);
    let err = p
        .next(&task(
            "Restart all the pods of your microservice component immediately.",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PlanError::Malformed { attempts: 3, last } if last.contains("import acv")),
        "{err}"
    );
    assert_eq!(server.request_count(), 3);

    // Bad report status and an empty plan are caught too.
    for (bad, want) in [
        (
            r#"{"report": {"status": "DONE", "message": "x"}}"#,
            "must be \"RESPONSE\" or \"ISSUE\"",
        ),
        (r#"{"steps": [], "done": false}"#, "neither steps nor a report"),
        (
            r#"{"steps": [{"description": "x", "program": "import acv"}], "plan": 1}"#,
            "unknown field",
        ),
    ] {
        let server = ScriptedServer::start(vec![]).await.unwrap();
        let b = bad.to_owned();
        server.set_fallback(move |_| Reply::chat(b.clone()));
        let err = planner(&server, |c| c.max_repairs = 0)
            .next(&task("x"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn multi_turn_with_outputs_fed_back() {
    // This thread's own recorder (the test runtime is single-threaded), to see what the session emits.
    let recorder = acv_telemetry::metrics::prometheus_builder()
        .unwrap()
        .build_recorder();
    let metrics_handle = recorder.handle();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let server = ScriptedServer::start(vec![
        Reply::chat_with_usage(
            plan_json(
                &[(
                    "look",
                    "import acv\ns = acv.status()\nprint('replicas=%d' % s['desired_replicas'])",
                )],
                false,
                None,
            ),
            200,
            40,
        ),
        Reply::chat_with_usage(
            plan_json(
                &[(
                    "scale",
                    "import acv\nacv.scale(3)\nacv.report('RESPONSE', 'Scaled to 3.')",
                )],
                true,
                None,
            ),
            300,
            60,
        ),
    ])
    .await
    .unwrap();
    let p = planner(&server, |c| c.pricing.prompt_per_1k = 1.0);
    let mut host = FakeHost::new(
        healthy_state(),
        Model {
            cpu_demand_total: None,
            cpu_demand_per_replica: None,
            memory_per_replica: None,
            p99: None,
        },
    );
    let out = drive(
        &p,
        task("Scale replicas to 3 for your microservice component."),
        &mut host,
    )
    .await
    .unwrap();
    assert_eq!(out.report.status, ReportStatus::Response);
    assert_eq!(
        out.report.message, "Scaled to 3.",
        "the step's acv.report is the final report"
    );
    assert_eq!(out.turns, 2);
    assert_eq!(out.steps.len(), 2);
    assert_eq!(host.state["status"]["desired_replicas"], 3);
    assert_eq!(
        (
            out.usage.calls,
            out.usage.prompt_tokens,
            out.usage.completion_tokens
        ),
        (2, 500, 100)
    );
    assert!((out.usage.cost_usd - 0.5).abs() < 1e-9);
    let exposition = metrics_handle.render();
    assert!(
        exposition.contains("acv_llm_session_cost_usd_sum 0.5")
            && exposition.contains("acv_llm_session_cost_usd_count 1"),
        "the session's cost is a metric:\n{exposition}"
    );
    assert!(
        exposition.contains("acv_llm_tokens_total{kind=\"prompt\"} 500"),
        "{exposition}"
    );
    let second = last_user_message(&server.requests()[1].body);
    assert!(
        second.contains("Step 1: look") && second.contains("replicas=2") && second.contains("outcome: ok"),
        "{second}"
    );
    assert!(second.contains("turn 2 of 8"), "{second}");
}

/// Every step fails.
struct Failing;

#[async_trait::async_trait]
impl Executor for Failing {
    async fn execute(&mut self, _index: u32, _step: &PlannedStep) -> StepResult {
        StepResult {
            outcome: StepOutcome::Error,
            output: "acv.HostError: busy".into(),
            report: None,
            mutated: false,
        }
    }
}

#[tokio::test]
async fn turn_budget_exhausted_is_a_clear_failure() {
    let server = ScriptedServer::start(vec![]).await.unwrap();
    server.set_fallback(|_| Reply::chat(plan_json(&[("scale", "import acv\nacv.scale(3)")], true, None)));
    let p = planner(&server, |_| {});
    let mut ctx = task("Scale replicas to 3 for your microservice component.");
    ctx.max_turns = 3;
    let failure = drive(&p, ctx, &mut Failing).await.unwrap_err();
    assert!(
        matches!(
            failure.error,
            PlanError::TurnBudgetExhausted {
                turns: 3,
                max_turns: 3
            }
        ),
        "{failure}"
    );
    assert_eq!(failure.steps.len(), 3);
    assert_eq!(failure.usage.calls, 3);
    assert!(failure.to_string().contains("turn budget exhausted"), "{failure}");
    assert_eq!(server.request_count(), 3, "no call beyond the budget");
    // The last turn says so, and a model that will not finish then is rejected.
    assert!(last_user_message(&server.requests()[2].body).contains("It is the LAST turn"));
    let server = ScriptedServer::start(vec![]).await.unwrap();
    server.set_fallback(|_| Reply::chat(plan_json(&[("more", "import acv\nprint(1)")], false, None)));
    let mut ctx = task("x");
    ctx.turn = 8;
    let err = planner(&server, |c| c.max_repairs = 1)
        .next(&ctx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("last turn"), "{err}");
}

#[tokio::test]
async fn same_turn_is_served_from_the_cache() {
    let dir = std::env::temp_dir().join(format!("acv-llm-plan-cache-{}", uuid::Uuid::new_v4()));
    let server = ScriptedServer::start(vec![Reply::chat(plan_json(
        &[],
        true,
        Some(("RESPONSE", "cached")),
    ))])
    .await
    .unwrap();
    let d = dir.clone();
    let p = planner(&server, move |c| {
        c.cache_seed = Some(7);
        c.cache_dir = d;
    });
    let ctx = task("Report the cpu usage of your microservice component.");
    let a = p.next(&ctx).await.unwrap();
    let b = p.next(&ctx).await.unwrap();
    assert_eq!(a.report, b.report);
    assert_eq!((a.usage.cache_hits, b.usage.cache_hits), (0, 1));
    assert_eq!(server.request_count(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

fn names(list: &[&str]) -> Vec<ComponentName> {
    list.iter().map(|n| ComponentName::new(*n).unwrap()).collect()
}

#[tokio::test]
async fn manager_decomposition_is_validated_and_repaired() {
    let server = ScriptedServer::start(vec![
        Reply::chat(r#"{"subtasks": [{"component": "payments", "task": "go faster"}]}"#),
        Reply::chat(
            r#"{"subtasks": [
                {"component": "Catalogue", "task": "Cut your P99 below 200 ms", "objectives": [{"metric": "p99_latency_ms", "comparison": "below", "threshold": 200}]},
                {"component": "front-end", "task": "Cut your P99 below 200 ms", "objectives": [{"metric": "p99_latency_ms", "comparison": "below", "threshold": 200}]}
            ]}"#,
        ),
    ])
    .await
    .unwrap();
    let p = planner(&server, |_| {});
    let goal = Goal {
        text: "Reduce the total P99 latency of Catalogue and Front-end to under 400 ms.".into(),
        objectives: vec![],
    };
    let subtasks = p
        .decompose(&goal, &names(&["front-end", "catalogue"]), &[])
        .await
        .unwrap();
    assert_eq!(subtasks.len(), 2);
    assert_eq!(subtasks[0].component.as_str(), "catalogue");
    let TaskSpec::Declarative { goal: g } = &subtasks[0].spec else {
        panic!("declarative expected")
    };
    assert_eq!(g.objectives[0].metric, SloMetric::P99LatencyMs);
    assert_eq!(g.objectives[0].component.as_str(), "catalogue");
    let rs = server.requests();
    assert!(
        rs[0].body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("front-end, catalogue")
    );
    assert!(last_user_message(&rs[1].body).contains("payments is not one of the components"));
}

#[tokio::test]
async fn judging_uses_measurements_not_the_model_when_objectives_exist() {
    let server = ScriptedServer::start(vec![Reply::chat(r#"{"met": false, "message": "P99 is 250 ms"}"#)])
        .await
        .unwrap();
    let p = planner(&server, |_| {});
    let c = catalogue();
    let m = Measurement {
        metrics: Some(MetricsSnapshot {
            component: c.clone(),
            window_secs: 60.0,
            cpu_percent_of_limit: Some(10.0),
            memory_percent_of_limit: Some(10.0),
            request_rate: Some(5.0),
            p50_ms: Some(20.0),
            p99_ms: Some(250.0),
            error_rate_percent: Some(0.0),
            calls: Vec::new(),
        }),
        status: None,
    };
    let goal = Goal {
        text: "Reduce the P99 latency of Catalogue to under 300 ms.".into(),
        objectives: vec![Objective {
            component: c.clone(),
            metric: SloMetric::P99LatencyMs,
            comparison: Comparison::Below,
            threshold: 300.0,
        }],
    };
    let j = p.judge(&goal, &[(c.clone(), m.clone())]).await.unwrap();
    assert!(j.met, "{}", j.message);
    assert_eq!(
        server.request_count(),
        0,
        "objectives are checked against numbers"
    );
    let vague = Goal {
        text: "Make catalogue feel snappy".into(),
        objectives: vec![],
    };
    let j = p.judge(&vague, &[(c, m)]).await.unwrap();
    assert!(!j.met);
    assert_eq!(j.status, ReportStatus::Issue);
    assert_eq!(j.usage.calls, 1);
    assert!(last_user_message(&server.requests()[0].body).contains("\"p99_ms\":250.0"));
}
