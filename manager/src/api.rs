//! The manager's HTTP JSON API (axum), which `acvctl` speaks:
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v1/goals` | create a goal from a Goal resource (201; 400 invalid, 422 refused, 409 name taken) |
//! | `GET /v1/goals?state=&limit=` | list goals, newest first |
//! | `GET /v1/goals/{id}` | a goal with its subtasks and events |
//! | `POST /v1/goals/{id}/cancel` | cancel a goal that is not finished |
//! | `GET /v1/goals/{id}/events` | the goal's events as Server-Sent Events (`Last-Event-ID` or `?after=` resume); the stream ends after the final state |
//! | `GET /v1/agents` | the registry with liveness |
//! | `POST /v1/tasks`, `GET /v1/tasks`, `GET /v1/tasks/{id}` | tasks sent through the manager, recorded with their reports |
//! | `GET /v1/approvals?state=&component=&episode=&limit=` | approvals (approve mode), newest first |
//! | `GET /v1/approvals/{id}` | one approval |
//! | `POST /v1/approvals/{id}/approve`, `POST /v1/approvals/{id}/deny` | decide (`{"by": …, "reason": …}`, both optional); 409 when already decided or expired |
//! | `GET /v1/audit?component=&episode=&since=&limit=` | the sidecars' audit records, oldest first (the newest `limit`) |
//! | `GET /v1/episodes?component=&limit=` | episodes derived from the audit trail, newest first |
//! | `/dashboard/`, `/v1/series`, `/v1/dashboard/events` | the operator dashboard ([`crate::dashboard`]) |
//!
//! With a token configured every `/v1` request needs `Authorization: Bearer TOKEN`; `acv-manager serve` refuses to
//! bind beyond loopback without one. Errors are `{"error": KIND, "message": TEXT}`, also for an unknown path (404
//! `not_found`) or method (405 `invalid`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use acv_protocol::{ComponentName, GoalEvent, GoalRecord, GoalResource, GoalState, SubtaskRecord};
use axum::{
    Json, Router,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::engine::{DecideError, Engine, EngineError};
use crate::episodes::Episode;
use crate::store::{
    Approval, ApprovalFilter, AuditEntry, AuditQuery, GoalFilter, StoreError, TaskRecord, rfc3339,
};

/// Largest list a request may ask for.
pub const MAX_LIMIT: u32 = 1000;

#[derive(Clone)]
struct Api {
    engine: Arc<Engine>,
    token: Option<Arc<str>>,
}

/// A goal with everything known about it (`GET /v1/goals/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoalDetail {
    /// The goal.
    pub goal: GoalRecord,
    /// Its subtasks, by round.
    pub subtasks: Vec<SubtaskRecord>,
    /// Its events, in order.
    pub events: Vec<GoalEvent>,
}

/// One sidecar in `GET /v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentView {
    /// The component.
    pub component: ComponentName,
    /// Planner at registration.
    pub planner: String,
    /// Sidecar version.
    pub version: String,
    /// Last register or heartbeat, ms since the epoch.
    pub last_seen_ms: u64,
    /// Seen within the liveness window.
    pub live: bool,
    /// Health at the last heartbeat.
    pub healthy: Option<bool>,
    /// Safety mode at registration (`observe`, `approve`, `autonomous`), when the sidecar said.
    #[serde(default)]
    pub safety: Option<acv_protocol::SafetyMode>,
}

/// `POST /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRequest {
    /// Receiver.
    pub to: ComponentName,
    /// The task in words.
    pub text: String,
    /// How long the task is valid, seconds (default 300).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// `POST /v1/approvals/{id}/approve` and `/deny` (both fields optional; an empty body is fine).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DecisionRequest {
    /// Who decides (recorded; `anonymous` when absent).
    #[serde(default)]
    pub by: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Kind: `invalid`, `refused`, `conflict`, `not_found`, `finished`, `unauthorized`, `internal`.
    pub error: String,
    /// For a person.
    pub message: String,
}

struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.1.to_owned(),
            message: self.2,
        };
        (self.0, Json(body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let msg = e.to_string();
        match e {
            EngineError::Invalid(_) => ApiError(StatusCode::BAD_REQUEST, "invalid", msg),
            EngineError::Refused(_) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, "refused", msg),
            EngineError::Conflict(_) => ApiError(StatusCode::CONFLICT, "conflict", msg),
            EngineError::Finished { .. } => ApiError(StatusCode::CONFLICT, "finished", msg),
            EngineError::NotFound(_) => ApiError(StatusCode::NOT_FOUND, "not_found", msg),
            EngineError::Store(_) | EngineError::Bus(_) => {
                tracing::warn!(error = %msg, "API request failed.");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(e).into()
    }
}

/// The API router over an engine; `token` protects every route when set.
pub fn router(engine: Arc<Engine>, token: Option<String>) -> Router {
    let api = Api {
        engine: engine.clone(),
        token: token.map(Into::into),
    };
    Router::new()
        .route("/v1/goals", post(create_goal).get(list_goals))
        .route("/v1/goals/{id}", get(get_goal))
        .route("/v1/goals/{id}/cancel", post(cancel_goal))
        .route("/v1/goals/{id}/events", get(goal_events))
        .route("/v1/agents", get(agents))
        .route("/v1/tasks", post(send_task).get(list_tasks))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{id}", get(get_approval))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .route("/v1/audit", get(audit))
        .route("/v1/episodes", get(episodes))
        .with_state(api.clone())
        .merge(crate::dashboard::api(
            engine,
            crate::dashboard::SeriesConfig::default(),
        ))
        .layer(middleware::from_fn_with_state(api, auth))
        .merge(crate::dashboard::pages())
        // Typed errors also for what no route takes (axum's defaults answer with an empty body).
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "not_found", "no such API path".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid",
                "this path does not take that method".into(),
            )
        })
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    if let Some(token) = &api.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compare without an early exit on the first differing byte.
        let ok = given.is_some_and(|g| {
            g.len() == token.len()
                && g.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !ok {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a bearer token is required (Authorization: Bearer TOKEN)".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid", format!("bad JSON: {e}")))
}

async fn create_goal(State(api): State<Api>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let resource: GoalResource = json_body(&body)?;
    let goal = api.engine.create(resource).await?;
    Ok((StatusCode::CREATED, Json(goal)).into_response())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    active: Option<bool>,
    limit: Option<u32>,
}

async fn list_goals(
    State(api): State<Api>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<GoalRecord>>, ApiError> {
    let filter = match (&q.state, q.active) {
        (Some(s), _) => GoalFilter::State(
            s.parse::<GoalState>()
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid", e))?,
        ),
        (None, Some(true)) => GoalFilter::Active,
        _ => GoalFilter::All,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    Ok(Json(api.engine.store().goals(filter, limit).await?))
}

async fn get_goal(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<GoalDetail>, ApiError> {
    let store = api.engine.store();
    let goal = store.goal(&id).await?.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("goal {id:?} not found"),
        )
    })?;
    let subtasks = store.subtasks(&id).await?;
    let events = store.events(&id, 0).await?;
    Ok(Json(GoalDetail {
        goal,
        subtasks,
        events,
    }))
}

async fn cancel_goal(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<GoalRecord>, ApiError> {
    Ok(Json(api.engine.cancel(&id).await?))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<u64>,
}

async fn goal_events(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let store = api.engine.store().clone();
    if store.goal(&id).await?.is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("goal {id:?} not found"),
        ));
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or(q.after)
        .unwrap_or(0);
    // Subscribe before reading the backlog so nothing falls between the two.
    let live = api.engine.subscribe();
    let stream = futures::stream::unfold(
        (store, live, id, after, Vec::<GoalEvent>::new(), false),
        |(store, mut live, id, mut last, mut pending, mut done)| async move {
            loop {
                if let Some(e) = (!pending.is_empty()).then(|| pending.remove(0)) {
                    last = e.seq;
                    let final_state = e.kind == acv_protocol::EventKind::State && e.state.is_terminal();
                    let data = serde_json::to_string(&e).unwrap_or_default();
                    let ev = Event::default().id(e.seq.to_string()).event("goal").data(data);
                    return Some((Ok(ev), (store, live, id, last, pending, final_state)));
                }
                if done {
                    return None;
                }
                match store.events(&id, last).await {
                    Ok(batch) if !batch.is_empty() => {
                        pending = batch;
                        continue;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "Reading events for SSE failed.");
                        done = true;
                        let ev = Event::default().event("error").data(error.to_string());
                        return Some((Ok(ev), (store, live, id, last, pending, done)));
                    }
                }
                // Wait for the next event of this goal (or re-read the store after a lag or every few seconds).
                let wait = async {
                    loop {
                        match live.recv().await {
                            Ok(e) if e.goal_id == id => return,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                };
                // Timing out only means: look at the store again.
                let _woke = tokio::time::timeout(Duration::from_secs(5), wait).await;
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn agents(State(api): State<Api>) -> Json<Vec<AgentView>> {
    let now = acv_core::now_ms();
    let max_age = u64::try_from(api.engine.liveness().as_millis()).unwrap_or(u64::MAX);
    let reg = api.engine.registry().read().await;
    Json(
        reg.entries()
            .map(|(c, e)| AgentView {
                component: c.clone(),
                planner: e.planner.clone(),
                version: e.version.clone(),
                last_seen_ms: e.last_seen_ms,
                live: now.saturating_sub(e.last_seen_ms) <= max_age,
                healthy: e.healthy,
                safety: e.safety,
            })
            .collect(),
    )
}

async fn send_task(State(api): State<Api>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: TaskRequest = json_body(&body)?;
    if req.text.trim().is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the task text is empty".into(),
        ));
    }
    let timeout = Duration::from_secs(req.timeout_secs.unwrap_or(300).clamp(1, 86_400));
    let task = api.engine.send_task(req.to, req.text, timeout).await?;
    Ok((StatusCode::CREATED, Json(task)).into_response())
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<u32>,
}

async fn list_tasks(
    State(api): State<Api>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Vec<TaskRecord>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    Ok(Json(api.engine.store().tasks(limit).await?))
}

async fn get_task(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<TaskRecord>, ApiError> {
    api.engine.store().task(&id).await?.map(Json).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("task {id:?} not found"),
        )
    })
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        let msg = e.to_string();
        match e {
            DecideError::NotFound(_) => ApiError(StatusCode::NOT_FOUND, "not_found", msg),
            DecideError::Decided { .. } => ApiError(StatusCode::CONFLICT, "conflict", msg),
            DecideError::Invalid(_) => ApiError(StatusCode::BAD_REQUEST, "invalid", msg),
            DecideError::Engine(e) => e.into(),
        }
    }
}

fn bad(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "invalid", msg)
}

fn component_param(c: Option<&str>) -> Result<Option<ComponentName>, ApiError> {
    c.map(|c| ComponentName::new(c).map_err(|e| bad(format!("component: {e}"))))
        .transpose()
}

#[derive(Debug, Deserialize)]
struct ApprovalsQuery {
    state: Option<String>,
    component: Option<String>,
    episode: Option<String>,
    limit: Option<u32>,
}

async fn list_approvals(
    State(api): State<Api>,
    Query(q): Query<ApprovalsQuery>,
) -> Result<Json<Vec<Approval>>, ApiError> {
    let filter = ApprovalFilter {
        state: q.state.as_deref().map(str::parse).transpose().map_err(bad)?,
        component: component_param(q.component.as_deref())?,
        episode: q.episode,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    Ok(Json(api.engine.store().approvals(&filter, limit).await?))
}

async fn get_approval(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Approval>, ApiError> {
    api.engine.store().approval(&id).await?.map(Json).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("approval {id:?} not found"),
        )
    })
}

fn decision(body: &[u8]) -> Result<DecisionRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecisionRequest::default());
    }
    json_body(body)
}

async fn approve(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Approval>, ApiError> {
    let d = decision(&body)?;
    Ok(Json(api.engine.decide(&id, true, d.by, d.reason).await?))
}

async fn deny(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Approval>, ApiError> {
    let d = decision(&body)?;
    Ok(Json(api.engine.decide(&id, false, d.by, d.reason).await?))
}

#[derive(Debug, Deserialize)]
struct AuditParams {
    component: Option<String>,
    episode: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
}

async fn audit(
    State(api): State<Api>,
    Query(q): Query<AuditParams>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let query = AuditQuery {
        component: component_param(q.component.as_deref())?,
        episode: q.episode,
        since_ms: q
            .since
            .as_deref()
            .map(rfc3339::parse)
            .transpose()
            .map_err(|e| bad(format!("since: {e}")))?,
        limit: q.limit.unwrap_or(500).clamp(1, MAX_AUDIT_LIMIT),
    };
    Ok(Json(api.engine.store().audit(&query).await?))
}

/// Largest `limit` of `GET /v1/audit`.
pub const MAX_AUDIT_LIMIT: u32 = 10_000;

#[derive(Debug, Deserialize)]
struct EpisodesQuery {
    component: Option<String>,
    limit: Option<u32>,
}

async fn episodes(
    State(api): State<Api>,
    Query(q): Query<EpisodesQuery>,
) -> Result<Json<Vec<Episode>>, ApiError> {
    let component = component_param(q.component.as_deref())?;
    let limit = q.limit.unwrap_or(20).clamp(1, 200);
    Ok(Json(
        crate::episodes::recent(api.engine.store().as_ref(), component.as_ref(), limit).await?,
    ))
}
