//! The operator dashboard, served by the manager on its API port: one static page (`/dashboard/`, with `/`
//! redirecting there) and a small script that reads the JSON API, plus what only the dashboard needs:
//!
//! | method and path | what |
//! |---|---|
//! | `GET /dashboard/`, `GET /dashboard/assets/{file}` | the page, its script and style, uPlot (vendored, no internet needed); no token needed, they hold no data |
//! | `GET /v1/series` | `{interval_ms, capacity, components, mutating_calls}`: the components sampled so far |
//! | `GET /v1/series?component=X` | `{component, interval_ms, samples, marks}`: the component's SLO samples (oldest first) and marks (faults from the backend, goal state changes, tasks' mutating steps) |
//! | `GET /v1/dashboard/events` | Server-Sent Events: `goal` (a goal event), `sample` (a new sample), `refresh` every 2 s (re-read the lists) |
//!
//! The `/v1` routes sit behind the API's bearer token like every other; the page asks for the token once, keeps it
//! in the tab's `sessionStorage` and sends it as `Authorization: Bearer` (the event stream is read with `fetch`,
//! not `EventSource`, so it can carry the header too). No cookie, so no cross-site request can act with it.
//!
//! [`series`]: the sampler and its bounded rings.

pub mod series;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use acv_protocol::{ComponentName, EventKind, GoalEvent, GoalRecord, StepOutcome};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{
        IntoResponse, Redirect, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

pub use series::{Mark, MarkKind, Sample, SampleEvent, Series, SeriesConfig};

use crate::api::ErrorBody;
use crate::engine::Engine;
use crate::store::GoalFilter;

/// How often the event stream tells the page to re-read its lists.
const REFRESH: Duration = Duration::from_secs(2);
/// Goals and tasks looked at for marks.
const MARK_SOURCES: u32 = 100;

#[derive(Clone)]
struct Dash {
    engine: Arc<Engine>,
    series: Arc<Series>,
    /// Stops the sampler when the last clone of the router is dropped.
    _sampler: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The dashboard's data routes (`/v1/series`, `/v1/dashboard/events`), to be mounted behind the API's auth. Starts
/// the sampler, which runs until the router is dropped.
pub fn api(engine: Arc<Engine>, config: SeriesConfig) -> Router {
    let series = Arc::new(Series::new(config));
    let stop = CancellationToken::new();
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(series::run_sampler(engine.clone(), series.clone(), stop.clone()));
        }
        Err(_) => tracing::warn!("No async runtime: the dashboard's SLO series will stay empty."),
    }
    let dash = Dash {
        engine,
        series,
        _sampler: Arc::new(StopOnDrop(stop)),
    };
    Router::new()
        .route("/v1/series", get(series_handler))
        .route("/v1/dashboard/events", get(events))
        .with_state(dash)
}

/// The page and its assets (no data, so no token).
pub fn pages() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard/", get(|| async { asset("index.html") }))
        .route(
            "/dashboard/assets/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

/// The embedded files.
fn asset(name: &str) -> Response {
    let (body, kind): (&'static [u8], &str) = match name {
        "index.html" => (include_bytes!("assets/index.html"), "text/html; charset=utf-8"),
        "app.js" => (include_bytes!("assets/app.js"), "text/javascript; charset=utf-8"),
        "app.css" => (include_bytes!("assets/app.css"), "text/css; charset=utf-8"),
        "uPlot.iife.min.js" => (
            include_bytes!("assets/uplot/uPlot.iife.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "uPlot.min.css" => (
            include_bytes!("assets/uplot/uPlot.min.css"),
            "text/css; charset=utf-8",
        ),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(ErrorBody {
                    error: "not_found".into(),
                    message: format!("no dashboard asset {name:?}"),
                }),
            )
                .into_response();
        }
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct SeriesQuery {
    component: Option<String>,
}

/// `GET /v1/series` without a component.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesIndex {
    /// Time between samples, ms.
    pub interval_ms: u64,
    /// Samples kept per component.
    pub capacity: usize,
    /// Components sampled so far.
    pub components: Vec<ComponentName>,
    /// The host calls that change the cluster (the page marks episodes that made one as actions).
    pub mutating_calls: Vec<String>,
}

/// `GET /v1/series?component=X`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentSeries {
    /// The component.
    pub component: ComponentName,
    /// Time between samples, ms.
    pub interval_ms: u64,
    /// Oldest first.
    pub samples: Vec<Sample>,
    /// Oldest first.
    pub marks: Vec<Mark>,
}

fn interval_ms(config: SeriesConfig) -> u64 {
    u64::try_from(config.interval.as_millis()).unwrap_or(u64::MAX)
}

fn error(status: StatusCode, kind: &str, message: String) -> Response {
    (
        status,
        Json(ErrorBody {
            error: kind.into(),
            message,
        }),
    )
        .into_response()
}

async fn series_handler(State(dash): State<Dash>, Query(q): Query<SeriesQuery>) -> Response {
    let config = dash.series.config();
    let Some(name) = q.component else {
        return Json(SeriesIndex {
            interval_ms: interval_ms(config),
            capacity: config.capacity,
            components: dash.series.components(),
            mutating_calls: acv_protocol::MUTATING_CALLS
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
        })
        .into_response();
    };
    let component = match ComponentName::new(&name) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let Some((samples, mut marks)) = dash.series.get(&component) else {
        let known = dash.series.components();
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no samples of {component:?} (yet); sampled: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        );
    };
    match store_marks(&dash.engine, &component).await {
        Ok(more) => marks.extend(more),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
    marks.sort_by_key(|m| m.at_ms);
    Json(ComponentSeries {
        component,
        interval_ms: interval_ms(config),
        samples,
        marks,
    })
    .into_response()
}

/// Marks from the store: state changes of the goals over `component`, and the mutating steps of tasks it ran.
async fn store_marks(
    engine: &Engine,
    component: &ComponentName,
) -> Result<Vec<Mark>, crate::store::StoreError> {
    let store = engine.store();
    let mut marks = Vec::new();
    let goals = store.goals(GoalFilter::All, MARK_SOURCES).await?;
    for goal in goals.iter().filter(|g| concerns(g, component)) {
        for e in store.events(&goal.id, 0).await? {
            if let Some(m) = goal_mark(&e) {
                marks.push(m);
            }
        }
    }
    for task in store.tasks(MARK_SOURCES).await? {
        let Some(report) = task.report.filter(|_| &task.component == component) else {
            continue;
        };
        for step in report
            .steps
            .iter()
            .filter(|s| s.mutated && s.outcome != StepOutcome::Skipped)
        {
            marks.push(Mark {
                at_ms: task.updated_ms,
                kind: MarkKind::Action,
                text: format!("task {}: {}", task.id, step.description),
            });
        }
    }
    Ok(marks)
}

fn concerns(goal: &GoalRecord, component: &ComponentName) -> bool {
    goal.objectives.iter().any(|o| o.components.contains(component))
}

fn goal_mark(e: &GoalEvent) -> Option<Mark> {
    use acv_protocol::GoalState as S;
    if e.kind != EventKind::State {
        return None;
    }
    let kind = match e.state {
        // The manager measured and found work to do.
        S::Assigned => MarkKind::Detection,
        S::Accepted | S::Planning | S::Verifying => return None,
        _ => MarkKind::Goal,
    };
    Some(Mark {
        at_ms: e.at_ms,
        kind,
        text: format!("goal {}: {}", e.goal_id, e.message),
    })
}

async fn events(State(dash): State<Dash>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let goals = dash.engine.subscribe();
    let samples = dash.series.subscribe();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures::stream::unfold(
        (goals, samples, tick),
        |(mut goals, mut samples, mut tick)| async move {
            let ev = tokio::select! {
                r = goals.recv() => match r {
                    Ok(e) => json_event("goal", &e),
                    Err(RecvError::Lagged(_)) => Event::default().event("refresh").data("lagged"),
                    Err(RecvError::Closed) => return None,
                },
                r = samples.recv() => match r {
                    Ok(s) => json_event("sample", &s),
                    Err(RecvError::Lagged(_)) => Event::default().event("refresh").data("lagged"),
                    Err(RecvError::Closed) => return None,
                },
                _ = tick.tick() => Event::default().event("refresh").data(acv_core::now_ms().to_string()),
            };
            Some((Ok(ev), (goals, samples, tick)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn json_event<T: Serialize>(name: &str, value: &T) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_default())
}
