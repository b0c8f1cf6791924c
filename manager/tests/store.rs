//! The same store suite on SQLite (a file in a fresh state dir) and on PostgreSQL (127.0.0.1:5432, db `test`, a
//! fresh schema per run, dropped afterwards).

use acv_manager::store::{
    Approval, ApprovalFilter, AuditQuery, GoalFilter, NewEvent, SqlStore, Store, StoreError, TaskRecord,
    TaskState,
};
use acv_protocol::{
    ApprovalState, AuditKind, AuditRecord, Combine, Comparison, ComponentName, EventKind, Goal,
    GoalObjective, GoalRecord, GoalSpec, GoalState, ReportBody, ReportStatus, SloMetric, SubtaskRecord,
    SubtaskState, TaskSpec,
};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn c(n: &str) -> ComponentName {
    ComponentName::new(n).unwrap()
}

fn goal(id: &str, created: u64) -> GoalRecord {
    GoalRecord {
        id: id.to_owned(),
        spec: GoalSpec {
            text: "Reduce the total P99 latency of Catalogue and Front-end to under 400 ms.".into(),
            objectives: vec![GoalObjective {
                components: vec![c("catalogue"), c("front-end")],
                metric: SloMetric::P99LatencyMs,
                comparison: Comparison::Below,
                threshold: 400.0,
                combine: Combine::Total,
            }],
            deadline_seconds: Some(600),
            ..GoalSpec::default()
        },
        objectives: Vec::new(),
        state: GoalState::Accepted,
        round: 0,
        reason: "accepted".into(),
        created_ms: created,
        updated_ms: created,
        deadline_ms: created + 600_000,
        results: Vec::new(),
    }
}

fn subtask(goal: &str, round: u32, comp: &str) -> SubtaskRecord {
    SubtaskRecord {
        id: format!("{goal}-r{round}-{comp}"),
        goal_id: goal.to_owned(),
        round,
        component: c(comp),
        spec: TaskSpec::Declarative {
            goal: Goal {
                text: "your part".into(),
                objectives: Vec::new(),
            },
        },
        state: SubtaskState::Pending,
        attempts: 0,
        deadline_ms: 5_000,
        updated_ms: 1_000,
        report_status: None,
        message: String::new(),
    }
}

async fn suite(store: &dyn Store) {
    // Goals: create, conflict, get, update, list with filters, newest first.
    let g1 = goal("g1", 1_000);
    store.create_goal(&g1).await.unwrap();
    let err = store.create_goal(&g1).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "goal", .. }), "{err}");
    assert_eq!(store.goal("g1").await.unwrap().as_ref(), Some(&g1));
    assert_eq!(store.goal("nope").await.unwrap(), None);
    let mut g2 = goal("g2", 2_000);
    store.create_goal(&g2).await.unwrap();
    g2.state = GoalState::Achieved;
    g2.round = 2;
    g2.reason = "achieved: total below 400 — ünïcode ok".into();
    g2.objectives = g2.spec.objectives.clone();
    store.update_goal(&g2).await.unwrap();
    assert_eq!(store.goal("g2").await.unwrap().unwrap(), g2);
    let missing = goal("ghost", 1);
    assert!(matches!(
        store.update_goal(&missing).await,
        Err(StoreError::NotFound { .. })
    ));
    let all: Vec<String> = store
        .goals(GoalFilter::All, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(all, vec!["g2", "g1"]);
    let active: Vec<String> = store
        .goals(GoalFilter::Active, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(active, vec!["g1"]);
    let achieved = store
        .goals(GoalFilter::State(GoalState::Achieved), 10)
        .await
        .unwrap();
    assert_eq!(achieved.len(), 1);
    assert_eq!(store.goals(GoalFilter::All, 1).await.unwrap().len(), 1);

    // Events: per-goal sequence numbers, read after a seq.
    for (i, msg) in ["accepted", "planning", "assigned"].iter().enumerate() {
        let e = store
            .append_event("g1", 10 + i as u64, EventKind::State, GoalState::Planning, msg)
            .await
            .unwrap();
        assert_eq!(e.seq, i as u64 + 1);
    }
    let other = store
        .append_event("g2", 5, EventKind::Report, GoalState::Assigned, "x")
        .await
        .unwrap();
    assert_eq!(other.seq, 1);
    let after1 = store.events("g1", 1).await.unwrap();
    assert_eq!(after1.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(after1[1].message, "assigned");
    assert_eq!(after1[1].kind, EventKind::State);
    assert!(store.events("g1", 3).await.unwrap().is_empty());

    // Subtasks: upsert by id keeps one row.
    let mut s = subtask("g1", 1, "front-end");
    store.put_subtask(&s).await.unwrap();
    store.put_subtask(&subtask("g1", 1, "catalogue")).await.unwrap();
    s.state = SubtaskState::Issue;
    s.attempts = 2;
    s.report_status = Some(ReportStatus::Issue);
    s.message = "could not".into();
    store.put_subtask(&s).await.unwrap();
    let subs = store.subtasks("g1").await.unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0].component, c("catalogue"));
    assert_eq!(subs[1], s);
    assert_eq!(store.subtask(&s.id).await.unwrap(), Some(s));
    assert!(store.subtasks("g2").await.unwrap().is_empty());

    // A batch: subtasks (one new, one replaced) and events in one transaction, numbered after the last event.
    let mut replaced = subtask("g1", 1, "catalogue");
    replaced.state = SubtaskState::Sent;
    replaced.attempts = 1;
    let fresh = subtask("g1", 2, "carts");
    let events: Vec<NewEvent> = ["sent catalogue", "subtask carts"]
        .iter()
        .map(|m| NewEvent {
            at_ms: 20,
            kind: EventKind::Subtask,
            state: GoalState::Assigned,
            message: (*m).to_owned(),
        })
        .collect();
    let stored = store
        .put_batch("g1", &[replaced.clone(), fresh.clone()], &events)
        .await
        .unwrap();
    assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(store.events("g1", 3).await.unwrap(), stored);
    assert_eq!(store.subtask(&replaced.id).await.unwrap(), Some(replaced));
    assert_eq!(store.subtask(&fresh.id).await.unwrap(), Some(fresh));
    assert_eq!(store.subtasks("g1").await.unwrap().len(), 3);
    assert!(store.put_batch("g1", &[], &[]).await.unwrap().is_empty());

    // Tasks: create, conflict, report.
    let mut t = TaskRecord {
        id: "t1".into(),
        component: c("catalogue"),
        text: "Restart".into(),
        state: TaskState::Sent,
        created_ms: 7,
        updated_ms: 7,
        report: None,
    };
    store.create_task(&t).await.unwrap();
    assert!(matches!(
        store.create_task(&t).await,
        Err(StoreError::Conflict { what: "task", .. })
    ));
    t.state = TaskState::Reported;
    t.report = Some(ReportBody {
        diagnosis: None,
        task_id: "t1".into(),
        component: c("catalogue"),
        status: ReportStatus::Response,
        message: "restarted".into(),
        evidence: Vec::new(),
        steps: Vec::new(),
    });
    t.updated_ms = 9;
    store.update_task(&t).await.unwrap();
    assert_eq!(store.task("t1").await.unwrap(), Some(t.clone()));
    assert_eq!(store.tasks(10).await.unwrap(), vec![t]);
}

fn approval(id: &str, comp: &str, requested: u64, expires: u64) -> Approval {
    Approval {
        id: id.into(),
        component: c(comp),
        episode: format!("ep-{id}"),
        task_id: None,
        call: "scale".into(),
        args: serde_json::json!({"replicas": 3}),
        program: "import acv\nacv.scale(3)\n".into(),
        state: ApprovalState::Pending,
        requested_ms: requested,
        expires_ms: expires,
        decided_ms: None,
        decided_by: None,
        reason: None,
        result: None,
    }
}

fn record(id: &str, comp: &str, episode: &str, at: u64, kind: AuditKind) -> AuditRecord {
    AuditRecord {
        id: id.into(),
        component: c(comp),
        episode: episode.into(),
        at_ms: at,
        kind,
        name: Some("scale".into()),
        args: Some(serde_json::json!({"replicas": 2})),
        outcome: Some("ok".into()),
        detail: serde_json::json!({"step": 1}),
    }
}

/// Approvals (insert once, filters, compare-and-set, expiry), the audit trail and goal counts.
async fn ops_suite(store: &dyn Store) {
    let a1 = approval("a1", "catalogue", 100, 1_000);
    assert!(store.insert_approval(&a1).await.unwrap());
    let mut changed = a1.clone();
    changed.program = "other".into();
    assert!(
        !store.insert_approval(&changed).await.unwrap(),
        "a redelivered request changes nothing"
    );
    assert_eq!(store.approval("a1").await.unwrap(), Some(a1.clone()));
    assert_eq!(store.approval("nope").await.unwrap(), None);
    store
        .insert_approval(&approval("a2", "orders", 200, 300))
        .await
        .unwrap();
    store
        .insert_approval(&approval("a3", "catalogue", 300, 5_000))
        .await
        .unwrap();
    let all = store.approvals(&ApprovalFilter::default(), 10).await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a3", "a2", "a1"]
    );
    let mine = ApprovalFilter {
        component: Some(c("catalogue")),
        state: Some(ApprovalState::Pending),
        ..Default::default()
    };
    assert_eq!(store.approvals(&mine, 1).await.unwrap().len(), 1);
    assert_eq!(store.approvals(&mine, 10).await.unwrap().len(), 2);
    let by_episode = ApprovalFilter {
        episode: Some("ep-a2".into()),
        ..Default::default()
    };
    assert_eq!(store.approvals(&by_episode, 10).await.unwrap()[0].id, "a2");

    // Compare and set: only one decision wins.
    let mut approved = a1.clone();
    approved.state = ApprovalState::Approved;
    approved.decided_ms = Some(150);
    approved.decided_by = Some("alice".into());
    approved.reason = Some("go".into());
    assert!(
        store
            .update_approval(&approved, ApprovalState::Pending)
            .await
            .unwrap()
    );
    let mut denied = a1.clone();
    denied.state = ApprovalState::Denied;
    assert!(
        !store
            .update_approval(&denied, ApprovalState::Pending)
            .await
            .unwrap()
    );
    approved.state = ApprovalState::Executed;
    approved.result = Some(serde_json::json!({"ready_replicas": 3}));
    assert!(
        store
            .update_approval(&approved, ApprovalState::Approved)
            .await
            .unwrap()
    );
    assert_eq!(store.approval("a1").await.unwrap(), Some(approved));

    // Expiry: only pending ones past their time.
    let expired = store.expire_approvals(1_000).await.unwrap();
    assert_eq!(expired.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["a2"]);
    let a2 = store.approval("a2").await.unwrap().unwrap();
    assert_eq!(a2.state, ApprovalState::Expired);
    assert_eq!(a2.decided_by.as_deref(), Some("expiry"));
    assert!(store.expire_approvals(1_000).await.unwrap().is_empty());

    // Audit: duplicates skipped, filters, the newest `limit` oldest first.
    let records = vec![
        record("r1", "catalogue", "e1", 10, AuditKind::Program),
        record("r2", "catalogue", "e1", 20, AuditKind::HostCall),
        record("r3", "orders", "e2", 15, AuditKind::PeerCall),
        record("r4", "catalogue", "e3", 30, AuditKind::Report),
    ];
    assert_eq!(store.insert_audit(&records).await.unwrap(), 4);
    assert_eq!(
        store.insert_audit(&records[..2]).await.unwrap(),
        0,
        "a resent batch adds nothing"
    );
    let q = |component: Option<&str>, episode: Option<&str>, since_ms: Option<u64>, limit: u32| AuditQuery {
        component: component.map(c),
        episode: episode.map(Into::into),
        since_ms,
        limit,
    };
    let ids = |v: Vec<acv_manager::store::AuditEntry>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.audit(&q(None, None, None, 10)).await.unwrap()),
        ["r1", "r3", "r2", "r4"]
    );
    assert_eq!(
        ids(store.audit(&q(None, None, None, 2)).await.unwrap()),
        ["r2", "r4"]
    );
    assert_eq!(
        ids(store
            .audit(&q(Some("catalogue"), Some("e1"), None, 10))
            .await
            .unwrap()),
        ["r1", "r2"]
    );
    assert_eq!(
        ids(store
            .audit(&q(Some("catalogue"), None, Some(20), 10))
            .await
            .unwrap()),
        ["r2", "r4"]
    );
    assert_eq!(
        ids(store.audit(&q(None, None, Some(16), 10)).await.unwrap()),
        ["r2", "r4"]
    );
    let one = store.audit(&q(None, Some("e2"), None, 10)).await.unwrap();
    assert_eq!(one[0].kind, AuditKind::PeerCall);
    assert_eq!(one[0].args, Some(serde_json::json!({"replicas": 2})));
    assert_eq!(one[0].detail["step"], 1);
    let recent = store.recent_episodes(None, 2).await.unwrap();
    assert_eq!(
        recent,
        vec![
            (c("catalogue"), "e3".to_owned()),
            (c("catalogue"), "e1".to_owned())
        ]
    );
    let recent = store.recent_episodes(Some(&c("orders")), 10).await.unwrap();
    assert_eq!(recent, vec![(c("orders"), "e2".to_owned())]);

    assert_eq!(store.prune_audit(16).await.unwrap(), 2, "r1 and r3 are older");
    assert_eq!(
        ids(store.audit(&q(None, None, None, 10)).await.unwrap()),
        ["r2", "r4"]
    );

    // Goal counts (the suite left g1 and g2 in it).
    let counts = store.goal_counts().await.unwrap();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(
        total,
        store.goals(GoalFilter::All, 100).await.unwrap().len() as u64
    );
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("acv-store-{}", uuid::Uuid::new_v4().simple()))
}

#[tokio::test]
async fn sqlite_store_suite_and_reopen() {
    let dir = temp_dir();
    let store = SqlStore::open_sqlite(&dir).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    suite(&store).await;
    ops_suite(&store).await;
    store.close().await;
    // Durable: a new process (a new pool) reads what the old one wrote, and migrating again is a no-op.
    let again = SqlStore::open_sqlite(&dir).await.unwrap();
    assert_eq!(
        again.goal("g2").await.unwrap().unwrap().state,
        GoalState::Achieved
    );
    assert_eq!(again.events("g1", 0).await.unwrap().len(), 5);
    again.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn postgres_store_suite() {
    let schema = format!("acv_test_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let store = SqlStore::connect(PG_URL, Some(&schema)).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    suite(&store).await;
    ops_suite(&store).await;
    store.close().await;
    let again = SqlStore::connect(PG_URL, Some(&schema)).await.unwrap();
    assert_eq!(
        again.goal("g2").await.unwrap().unwrap().state,
        GoalState::Achieved
    );
    again.close().await;
    SqlStore::drop_schema(PG_URL, &schema).await.unwrap();
}

#[tokio::test]
async fn corrupt_rows_and_bad_urls_are_typed_errors() {
    let err = SqlStore::connect("mysql://x", None).await.err().unwrap();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    let err = SqlStore::connect(PG_URL, Some("bad;schema")).await.err().unwrap();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    let dir = temp_dir();
    let store = SqlStore::open_sqlite(&dir).await.unwrap();
    store.create_goal(&goal("g1", 1)).await.unwrap();
    store.close().await;
    // Edit the row by hand the way a broken writer might.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", dir.join("manager.db").display()))
        .await
        .unwrap();
    sqlx::query("UPDATE goals SET state = 'exploded' WHERE id = 'g1'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = SqlStore::open_sqlite(&dir).await.unwrap();
    let err = store.goal("g1").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { what: "goal", .. }), "{err}");
    assert!(err.to_string().contains("exploded"), "{err}");
    store.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
