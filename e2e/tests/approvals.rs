//! Approve mode end to end on real parts: the local runtime running the real `acv-shop` catalogue, a sidecar in
//! approve mode (rules planner, Python steps in the wasmtime sandbox, its audit trail on), the manager (engine,
//! SQLite store, HTTP API) and the real `acvctl` binary, on the in-memory bus.
//!
//! Three tasks each queue one mutating call: a restart approved with `acvctl` runs exactly once (counted in the
//! runtime's own supervisor log, also after the decision is delivered again); a scale denied with `acvctl` never
//! runs (replicas and the runtime's log unchanged); a `set_env` nobody decides expires, never runs, and the task's
//! report says so. The audit trail and the episodes derived from it are then read back from the manager's API.
//! A second test breaks catalogue with a bad release under the sidecar's own health check: the episode's rollback
//! waits for an approval, runs once approved, and the episode records its times to detect and to mitigate.

mod common;

use std::{net::SocketAddr, process::Output, sync::Arc, time::Duration};

use acv_bus::{Bus, memory::MemoryBus};
use acv_cluster::Cluster;
use acv_manager::{
    engine::{Engine, EngineConfig},
    episodes::Episode,
    measure::NoMeasurer,
    store::{Approval, ApprovalFilter, AuditEntry, SqlStore, Store, TaskRecord, TaskState},
};
use acv_protocol::{
    Address, ApprovalDecision, ApprovalState, AuditKind, Body, ComponentName, Envelope, ReportBody,
    ReportStatus, SloPolicy,
};
use acv_runtime::LocalRuntime;
use acv_sandbox::{LazySandbox, Limits, SafetyMode};
use acv_sidecar::{
    Agent,
    audit::AuditLog,
    caps::{ClusterCaps, NoPeers},
    handler::PlanningHandler,
};
use tokio_util::sync::CancellationToken;

/// How long a queued call waits for a decision in this test.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(15);

fn catalogue() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

fn acvctl(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(common::workspace_bin("acvctl"))
        .arg("--manager")
        .arg(url)
        .args(args)
        .env_remove("ACV_MANAGER_TOKEN")
        .output()
        .unwrap()
}

async fn acvctl_async(url: &str, args: &[&str]) -> Output {
    let (url, args): (String, Vec<String>) = (url.to_owned(), args.iter().map(|a| (*a).to_owned()).collect());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        acvctl(&url, &args)
    })
    .await
    .unwrap()
}

struct Rig {
    runtime: LocalRuntime,
    cluster: Arc<dyn Cluster>,
    bus: Arc<dyn Bus>,
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    url: String,
    addr: SocketAddr,
    stop: CancellationToken,
}

async fn rig() -> Rig {
    rig_with(None).await
}

/// The rig, with the sidecar's own SLO health check every `watch` when given.
async fn rig_with(watch: Option<Duration>) -> Rig {
    let runtime = LocalRuntime::start(common::shop_spec(&["catalogue"]))
        .await
        .unwrap();
    runtime.wait_all_ready(Duration::from_secs(30)).await.unwrap();
    let cluster: Arc<dyn Cluster> = Arc::new(runtime.cluster("catalogue").unwrap());
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let stop = CancellationToken::new();

    // The sidecar, in approve mode, with its audit trail flowing to the manager.
    let audit = AuditLog::new(catalogue(), 1_000);
    tokio::spawn(
        audit
            .clone()
            .run_flusher(bus.clone(), Duration::from_millis(200), stop.clone()),
    );
    let handler = PlanningHandler {
        planner: Arc::new(acv_llm::RulesPlanner::new()),
        sandbox: Arc::new(LazySandbox::preloaded(
            acv_sandbox::dev::shared_sandbox().unwrap(),
        )),
        cluster: cluster.clone(),
        caps: Arc::new(ClusterCaps::new(cluster.clone(), Arc::new(NoPeers))),
        mode: SafetyMode::Approve,
        limits: Limits::default(),
        slo: SloPolicy::default(),
        max_turns: 8,
        settle: Duration::from_millis(500),
        audit: audit.clone(),
        approval_timeout: APPROVAL_TIMEOUT,
        guard: acv_sidecar::guard::GuardConfig::default(),
    };
    let mut agent = Agent::new(
        catalogue(),
        bus.clone(),
        Arc::new(handler),
        Duration::from_secs(1),
    )
    .with_audit(audit);
    if let Some(every) = watch {
        agent = agent.with_watcher(
            acv_sidecar::watch::Watcher::new(cluster.clone(), SloPolicy::default(), 5.0),
            every,
        );
    }
    tokio::spawn(agent.start(stop.clone()).await.unwrap());

    // The manager: engine, store, API.
    let dir = std::env::temp_dir().join(format!("acv-approvals-{}", uuid::Uuid::new_v4().simple()));
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&dir).await.unwrap());
    let engine = Engine::new(
        store.clone(),
        bus.clone(),
        Arc::default(),
        Arc::new(NoMeasurer),
        EngineConfig {
            tick: Duration::from_millis(100),
            ..EngineConfig::default()
        },
    );
    tokio::spawn(engine.clone().run(stop.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = acv_manager::api::router(engine.clone(), None);
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    Rig {
        runtime,
        cluster,
        bus,
        engine,
        store,
        url: format!("http://{addr}"),
        addr,
        stop,
    }
}

impl Rig {
    /// Sends a task through the manager and waits for its (first) report.
    async fn task(&self, text: &str) -> (TaskRecord, ReportBody) {
        let t = self
            .engine
            .send_task(catalogue(), text.into(), Duration::from_secs(120))
            .await
            .unwrap();
        let store = self.store.clone();
        let id = t.id.clone();
        common::eventually(120, "the task's report", move || {
            let (store, id) = (store.clone(), id.clone());
            async move {
                let t = store.task(&id).await.unwrap()?;
                (t.state == TaskState::Reported).then(|| t.clone()).and_then(|t| {
                    let r = t.report.clone()?;
                    Some((t, r))
                })
            }
        })
        .await
    }

    /// Waits until the task's report says `needle` (the report sent again once its approvals closed).
    async fn final_report(&self, task_id: &str, needle: &str) -> ReportBody {
        let (store, id, needle) = (self.store.clone(), task_id.to_owned(), needle.to_owned());
        common::eventually(60, "the report after the approvals closed", move || {
            let (store, id, needle) = (store.clone(), id.clone(), needle.clone());
            async move {
                let r = store.task(&id).await.unwrap()?.report?;
                r.message.contains(&needle).then_some(r)
            }
        })
        .await
    }

    /// The one approval the episode `task_id` asked for.
    async fn approval_of(&self, task_id: &str) -> Approval {
        let (store, id) = (self.store.clone(), task_id.to_owned());
        common::eventually(30, "the approval request at the manager", move || {
            let (store, id) = (store.clone(), id.clone());
            async move {
                let filter = ApprovalFilter {
                    episode: Some(id),
                    ..Default::default()
                };
                let mut list = store.approvals(&filter, 10).await.unwrap();
                (list.len() == 1).then(|| list.remove(0))
            }
        })
        .await
    }

    async fn approval_state(&self, id: &str, state: ApprovalState) -> Approval {
        let (store, id) = (self.store.clone(), id.to_owned());
        common::eventually(60, &format!("approval in state {state}"), move || {
            let (store, id) = (store.clone(), id.clone());
            async move {
                let a = store.approval(&id).await.unwrap()?;
                (a.state == state).then_some(a)
            }
        })
        .await
    }

    /// Lines of the runtime's own log for catalogue (the supervisor's events) containing `needle`.
    async fn runtime_events(&self, needle: &str) -> usize {
        self.cluster
            .logs(10_000)
            .await
            .unwrap()
            .iter()
            .filter(|l| l.contains("[supervisor]") && l.contains(needle))
            .count()
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = common::get(self.addr, path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_runs_once_denied_never_expired_reported() {
    let rig = rig().await;
    let restarts_before = rig.runtime_events("restart of every replica requested").await;

    // 1. Approved with acvctl: runs exactly once.
    let (task, first) = rig.task("Restart your microservice component.").await;
    assert!(
        !first.approval_requests().is_empty(),
        "the restart was queued: {first:#?}"
    );
    let approval = rig.approval_of(&task.id).await;
    assert_eq!(approval.state, ApprovalState::Pending);
    assert_eq!(approval.call, "restart");
    assert!(approval.program.contains("acv.restart"), "{}", approval.program);
    assert_eq!(
        rig.runtime_events("restart of every replica requested").await,
        restarts_before,
        "nothing ran before the approval"
    );
    let listed = acvctl_async(&rig.url, &["approvals", "list"]).await;
    assert!(listed.status.success(), "{}", common::output_text(&listed));
    assert!(
        common::output_text(&listed).contains(&approval.id),
        "{}",
        common::output_text(&listed)
    );
    assert!(
        common::output_text(&listed).contains("restart()"),
        "{}",
        common::output_text(&listed)
    );
    let approved = acvctl_async(
        &rig.url,
        &[
            "approvals",
            "approve",
            &approval.id,
            "--by",
            "alice",
            "--reason",
            "planned",
        ],
    )
    .await;
    assert!(approved.status.success(), "{}", common::output_text(&approved));
    let executed = rig.approval_state(&approval.id, ApprovalState::Executed).await;
    assert_eq!(executed.decided_by.as_deref(), Some("alice"));
    assert_eq!(executed.reason.as_deref(), Some("planned"));
    assert!(executed.decided_ms.is_some());
    let report = rig.final_report(&task.id, "approved by alice").await;
    assert_eq!(report.status, ReportStatus::Response, "{report:#?}");

    // The same decision delivered again runs nothing; a second decision is refused.
    let again = Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        Address::Manager,
        Address::Component(catalogue()),
        acv_core::now_ms(),
        Body::ApprovalDecision(ApprovalDecision {
            id: approval.id.clone(),
            component: catalogue(),
            approve: true,
            by: Some("alice".into()),
            reason: None,
            decided_at_ms: acv_core::now_ms(),
        }),
    );
    rig.bus.publish(&again).await.unwrap();
    // The sidecar handles its inbox in order: once the next task is answered, the redelivery was handled.
    let _answered = rig
        .task("Report the P99 latency of your microservice component.")
        .await;
    assert_eq!(
        rig.runtime_events("restart of every replica requested").await,
        restarts_before + 1,
        "the approved restart ran exactly once, redelivery included"
    );
    let twice = acvctl_async(&rig.url, &["approvals", "approve", &approval.id]).await;
    assert_eq!(twice.status.code(), Some(2), "{}", common::output_text(&twice));
    assert!(
        common::output_text(&twice).contains("already executed"),
        "{}",
        common::output_text(&twice)
    );

    // 2. Denied with acvctl: never runs.
    let (task2, _) = rig
        .task("Scale replicas to 3 for your microservice component.")
        .await;
    let approval2 = rig.approval_of(&task2.id).await;
    assert_eq!(approval2.call, "scale");
    assert_eq!(approval2.args["replicas"], 3);
    let denied = acvctl_async(
        &rig.url,
        &[
            "approvals",
            "deny",
            &approval2.id,
            "--by",
            "bob",
            "--reason",
            "not during the sale",
        ],
    )
    .await;
    assert!(denied.status.success(), "{}", common::output_text(&denied));
    let report2 = rig.final_report(&task2.id, "denied by bob").await;
    assert_eq!(report2.status, ReportStatus::Issue, "{report2:#?}");
    assert!(report2.message.contains("not during the sale"), "{report2:#?}");
    assert_eq!(rig.cluster.status().await.unwrap().desired_replicas, 1);
    assert_eq!(
        rig.runtime_events("scaled from").await,
        0,
        "the denied scale never ran"
    );
    let deny_again = acvctl_async(&rig.url, &["approvals", "approve", &approval2.id]).await;
    assert_eq!(
        deny_again.status.code(),
        Some(2),
        "{}",
        common::output_text(&deny_again)
    );
    assert!(
        common::output_text(&deny_again).contains("already denied"),
        "{}",
        common::output_text(&deny_again)
    );

    // 3. Nobody decides: it expires, never runs, and the report says so.
    let (task3, _) = rig
        .task("Update your deployment and set the environment variable logger_flag to true.")
        .await;
    let approval3 = rig.approval_of(&task3.id).await;
    assert_eq!(approval3.call, "set_env");
    let expired = rig.approval_state(&approval3.id, ApprovalState::Expired).await;
    assert!(expired.decided_ms.is_some());
    let report3 = rig.final_report(&task3.id, "expired").await;
    assert_eq!(report3.status, ReportStatus::Issue, "{report3:#?}");
    let status = rig.cluster.status().await.unwrap();
    assert!(!status.env.contains_key("logger_flag"), "{status:?}");
    let late = acvctl_async(&rig.url, &["approvals", "approve", &approval3.id]).await;
    assert_eq!(late.status.code(), Some(2), "{}", common::output_text(&late));
    assert!(
        common::output_text(&late).contains("already expired"),
        "{}",
        common::output_text(&late)
    );

    // Who decided what is recorded, and listed by state.
    let all: Vec<Approval> = rig.get("/v1/approvals?component=catalogue").await;
    assert_eq!(all.len(), 3, "{all:#?}");
    let denied_list: Vec<Approval> = rig.get("/v1/approvals?state=denied").await;
    assert_eq!(denied_list.len(), 1);
    assert_eq!(denied_list[0].decided_by.as_deref(), Some("bob"));

    // 4. The audit trail reached the manager and is queryable; the episode is derived from it.
    let records: Vec<AuditEntry> =
        common::eventually(30, "the audit records of the approved episode", || {
            let rig = &rig;
            let id = task.id.clone();
            async move {
                let r: Vec<AuditEntry> = rig
                    .get(&format!("/v1/audit?component=catalogue&episode={id}"))
                    .await;
                let ran = r
                    .iter()
                    .any(|e| e.kind == AuditKind::HostCall && e.outcome.as_deref() == Some("ok"));
                ran.then_some(r)
            }
        })
        .await;
    let kinds: Vec<AuditKind> = records.iter().map(|r| r.kind).collect();
    for kind in [AuditKind::Program, AuditKind::HostCall, AuditKind::Report] {
        assert!(kinds.contains(&kind), "{kind} missing: {records:#?}");
    }
    assert!(
        records
            .iter()
            .any(|r| r.name.as_deref() == Some("restart") && r.outcome.as_deref() == Some("pending_approval")),
        "{records:#?}"
    );
    assert!(
        records.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
        "oldest first"
    );
    let episodes: Vec<Episode> = rig.get("/v1/episodes?component=catalogue&limit=10").await;
    let e = episodes
        .iter()
        .find(|e| e.id == task.id)
        .unwrap_or_else(|| panic!("episode {} not listed: {episodes:#?}", task.id));
    assert_eq!(e.trigger, "task");
    assert_eq!(e.outcome.as_deref(), Some("response"));
    assert!(e.ended_ms.is_some());
    let calls: Vec<&str> = e
        .steps
        .iter()
        .flat_map(|s| s.calls.iter())
        .map(|c| c.outcome.as_str())
        .collect();
    assert!(
        calls.contains(&"pending_approval") && calls.contains(&"ok"),
        "{e:#?}"
    );
    assert!(
        e.steps.iter().any(|s| s.program.contains("acv.restart")),
        "{e:#?}"
    );
    let (bad, body) = common::get(rig.addr, "/v1/audit?since=yesterday").await;
    assert_eq!(bad, 400, "{body}");

    rig.stop.cancel();
    rig.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_slo_episode_waits_for_approval_then_recovers() {
    let rig = rig_with(Some(Duration::from_secs(2))).await;
    let healthy = rig.cluster.status().await.unwrap().image;
    // A bad release: the dataset's broken catalogue build crash-loops on start.
    rig.cluster
        .set_image("weaveworksdemos/catalogue:0.3.6")
        .await
        .unwrap();

    // The watcher's episode queues the rollback and asks the manager.
    let store = rig.store.clone();
    let approval = common::eventually(120, "the rollback waiting for approval", move || {
        let store = store.clone();
        async move {
            let filter = ApprovalFilter {
                state: Some(ApprovalState::Pending),
                ..Default::default()
            };
            store
                .approvals(&filter, 10)
                .await
                .unwrap()
                .into_iter()
                .find(|a| a.call == "rollback")
        }
    })
    .await;
    assert_eq!(approval.task_id, None, "an SLO episode answers no task");
    assert_ne!(
        rig.cluster.status().await.unwrap().image,
        healthy,
        "nothing rolled back yet"
    );
    let out = acvctl_async(&rig.url, &["approvals", "approve", &approval.id, "--by", "carol"]).await;
    assert!(out.status.success(), "{}", common::output_text(&out));
    rig.approval_state(&approval.id, ApprovalState::Executed).await;

    // Back on the healthy build; the episode records its times to detect and to mitigate.
    let episode: Episode = common::eventually(120, "the episode's recovery", || {
        let rig = &rig;
        let id = approval.episode.clone();
        async move {
            let list: Vec<Episode> = rig.get("/v1/episodes?component=catalogue").await;
            list.into_iter()
                .find(|e| e.id == id && e.time_to_mitigate_ms.is_some())
        }
    })
    .await;
    let status = rig.cluster.status().await.unwrap();
    assert_eq!(status.image, healthy, "rolled back by the approved call");
    assert_eq!(episode.trigger, "slo");
    assert_eq!(episode.outcome.as_deref(), Some("recovered"));
    assert!(episode.time_to_detect_ms.is_some(), "{episode:#?}");
    assert!(
        episode
            .steps
            .iter()
            .flat_map(|s| &s.calls)
            .any(|c| c.name == "rollback" && c.outcome == "ok"),
        "{episode:#?}"
    );
    rig.stop.cancel();
    rig.runtime.shutdown().await;
}
