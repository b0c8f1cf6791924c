//! The Goal controller's reconcile against a tower-test API server and a scripted manager.

use std::sync::Mutex;

use acv_protocol::{
    Comparison, GoalObjective, GoalRecord, GoalResource, GoalSpec, GoalState, ObjectiveResult, SloMetric,
};
use http::{Method, StatusCode};
use serde_json::json;

use super::*;
use crate::fixtures::{mock_client, query_pairs, status_failure};

const PATH: &str = "/apis/acv.dev/v1alpha1/namespaces/acv-shop/goals/fast-catalogue/status";

/// A manager that answers from a script and records what it was given.
struct ScriptedManager {
    answer: Result<GoalView, SinkError>,
    seen: Mutex<Vec<GoalResource>>,
}

#[async_trait::async_trait]
impl GoalSink for ScriptedManager {
    async fn apply(&self, goal: GoalResource) -> Result<GoalView, SinkError> {
        self.seen.lock().unwrap().push(goal);
        self.answer.clone()
    }
}

fn goal(status: Option<GoalStatus>) -> Arc<Goal> {
    let mut g: Goal = serde_json::from_value(json!({
        "apiVersion": "acv.dev/v1alpha1",
        "kind": "Goal",
        "metadata": { "name": "fast-catalogue", "namespace": "acv-shop", "uid": "u-1", "generation": 2 },
        "spec": {
            "text": "Keep catalogue P99 under 200 ms.",
            "objectives": [{ "components": ["catalogue"], "metric": "p99_latency_ms", "comparison": "below",
                             "threshold": 200.0 }],
        },
    }))
    .unwrap();
    g.status = status;
    Arc::new(g)
}

fn record(state: GoalState, results: Vec<ObjectiveResult>) -> GoalRecord {
    GoalRecord {
        id: "acv-shop-fast-catalogue".into(),
        spec: GoalSpec::from_text("Keep catalogue P99 under 200 ms."),
        objectives: Vec::new(),
        state,
        round: 1,
        reason: format!("{state}"),
        created_ms: 1,
        updated_ms: 2,
        deadline_ms: 3,
        results,
    }
}

fn view(state: GoalState, results: Vec<ObjectiveResult>) -> GoalView {
    GoalView {
        record: record(state, results),
        events: 4,
        last_event: Some(format!("now {state}")),
    }
}

fn context(client: Client, answer: Result<GoalView, SinkError>) -> (Arc<Context>, Arc<ScriptedManager>) {
    let manager = Arc::new(ScriptedManager {
        answer,
        seen: Mutex::new(Vec::new()),
    });
    let ctx = Arc::new(Context {
        client,
        sink: manager.clone(),
        options: ControllerOptions::default(),
    });
    (ctx, manager)
}

#[tokio::test]
async fn a_new_goal_reaches_the_manager_and_its_state_is_written_to_status() {
    let (client, mut server) = mock_client();
    let (ctx, manager) = context(client, Ok(view(GoalState::Assigned, Vec::new())));
    let task = tokio::spawn(reconcile(goal(None), ctx.clone()));
    let (seen, send) = server.expect(Method::PATCH, PATH).await;
    assert_eq!(seen.content_type.as_deref(), Some("application/apply-patch+yaml"));
    let q = query_pairs(&seen.query);
    assert!(
        q.contains(&("fieldManager".into(), "acv-manager".into())),
        "{q:?}"
    );
    assert!(q.contains(&("force".into(), "true".into())), "{q:?}");
    assert_eq!(seen.body["apiVersion"], "acv.dev/v1alpha1");
    assert_eq!(seen.body["kind"], "Goal");
    let status = &seen.body["status"];
    assert_eq!(status["state"], "assigned");
    assert_eq!(status["goalId"], "acv-shop-fast-catalogue");
    assert_eq!(status["round"], 1);
    assert_eq!(status["events"], 4);
    assert_eq!(status["lastEvent"], "now assigned");
    assert_eq!(status["observedGeneration"], 2);
    assert!(status.get("refused").is_none());
    let mut answer = (*goal(None)).clone();
    answer.status = serde_json::from_value(status.clone()).unwrap();
    send.send_response(crate::fixtures::json_response(
        StatusCode::OK,
        &serde_json::to_value(&answer).unwrap(),
    ));
    let action = task.await.unwrap().unwrap();
    assert_eq!(
        action,
        Action::requeue(ctx.options.poll),
        "not finished: look again"
    );
    let given = manager.seen.lock().unwrap().clone();
    assert_eq!(given.len(), 1);
    assert_eq!(given[0].metadata.name.as_deref(), Some("acv-shop-fast-catalogue"));
    assert_eq!(given[0].spec.objectives[0].threshold, 200.0);
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again_and_a_finished_goal_waits_for_changes() {
    let results = vec![ObjectiveResult {
        objective: GoalObjective {
            components: vec!["catalogue".parse().unwrap()],
            metric: SloMetric::P99LatencyMs,
            comparison: Comparison::Below,
            threshold: 200.0,
            combine: Default::default(),
        },
        per_component: vec![("catalogue".parse().unwrap(), Some(120.0))],
        value: Some(120.0),
        met: true,
        idle: Vec::new(),
    }];
    let v = view(GoalState::Achieved, results);
    let current = GoalStatus::from_view(&v, Some(2));
    assert_eq!(current.results[0].value, Some(120.0));
    assert!(current.results[0].met);
    assert!(current.is_final());
    let (client, server) = mock_client();
    let (ctx, _) = context(client, Ok(v));
    let action = reconcile(goal(Some(current)), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn a_refused_goal_says_why_in_status_and_is_not_retried() {
    let (client, mut server) = mock_client();
    let why = "goal refused: unknown component \"catalog\"".to_owned();
    let (ctx, _) = context(client, Err(SinkError::Refused(why.clone())));
    let task = tokio::spawn(reconcile(goal(None), ctx.clone()));
    let (seen, send) = server.expect(Method::PATCH, PATH).await;
    assert_eq!(seen.body["status"]["refused"], why.as_str());
    assert!(seen.body["status"].get("state").is_none());
    send.send_response(crate::fixtures::json_response(
        StatusCode::OK,
        &serde_json::to_value(&*goal(None)).unwrap(),
    ));
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn an_unavailable_manager_writes_nothing_and_is_retried() {
    let (client, server) = mock_client();
    let (ctx, _) = context(client, Err(SinkError::Unavailable("store down".into())));
    let err = reconcile(goal(None), ctx.clone()).await.unwrap_err();
    assert!(
        matches!(err, ControllerError::Sink(SinkError::Unavailable(_))),
        "{err}"
    );
    assert_eq!(
        error_policy(goal(None), &err, ctx.clone()),
        Action::requeue(ctx.options.retry)
    );
    drop(ctx);
    server.done().await;
}

#[tokio::test]
async fn a_forbidden_status_write_is_an_error_naming_the_goal() {
    let (client, mut server) = mock_client();
    let (ctx, _) = context(client, Ok(view(GoalState::Planning, Vec::new())));
    let task = tokio::spawn(reconcile(goal(None), ctx.clone()));
    server
        .answer(
            Method::PATCH,
            PATH,
            StatusCode::FORBIDDEN,
            status_failure(403, "Forbidden", "goals.acv.dev \"fast-catalogue\" is forbidden"),
        )
        .await;
    let err = task.await.unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("fast-catalogue") && msg.contains("acv-shop"),
        "{msg}"
    );
    drop(ctx);
    server.done().await;
}
