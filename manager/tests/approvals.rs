//! Approvals, the audit trail and episodes at the manager, over HTTP and with the real `acvctl`, against a sidecar
//! played by the test on the memory bus: requests are stored once, listed, decided once (409 after), the decision
//! reaches the sidecar that asked, its result closes the approval, undecided ones expire; audit batches are stored
//! once and queryable; episodes are derived from them; bad input is a 400.

mod common;

use std::{sync::Arc, time::Duration};

use acv_bus::{Bus, Subscription, memory::MemoryBus};
use acv_manager::{
    engine::Engine,
    episodes::Episode,
    store::{Approval, AuditEntry, SqlStore, Store},
};
use acv_protocol::{
    Address, ApprovalRequest, ApprovalResult, ApprovalState, AuditBatch, AuditKind, AuditRecord, Body,
    Envelope,
};
use common::{World, c, test_config, wait_until};
use tokio_util::sync::CancellationToken;

struct Rig {
    url: String,
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    sidecar: Subscription,
    stop: CancellationToken,
}

async fn rig() -> Rig {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let sidecar = bus.subscribe(&Address::Component(c("catalogue"))).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&common::temp_dir()).await.unwrap());
    let engine = Engine::new(
        store.clone(),
        bus.clone(),
        Arc::default(),
        World::new().measurer(),
        test_config(),
    );
    let stop = CancellationToken::new();
    tokio::spawn(engine.clone().run(stop.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = acv_manager::api::router(engine, None);
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    Rig {
        url: format!("http://{addr}"),
        bus,
        store,
        sidecar,
        stop,
    }
}

fn request(id: &str, expires_in_ms: u64) -> ApprovalRequest {
    let now = acv_core::now_ms();
    ApprovalRequest {
        id: id.into(),
        component: c("catalogue"),
        episode: format!("ep-{id}"),
        task_id: Some(format!("ep-{id}")),
        call: "scale".into(),
        args: serde_json::json!({"replicas": 3}),
        program: "import acv\nacv.scale(3)\n".into(),
        step: 1,
        seq: 0,
        requested_at_ms: now,
        expires_at_ms: now + expires_in_ms,
    }
}

impl Rig {
    async fn send_as_sidecar(&self, body: Body) {
        let env = Envelope::new(
            uuid::Uuid::new_v4().to_string(),
            Address::Component(c("catalogue")),
            Address::Manager,
            acv_core::now_ms(),
            body,
        );
        self.bus.publish(&env).await.unwrap();
    }

    async fn state_is(&self, id: &str, state: ApprovalState) {
        let (store, id) = (self.store.clone(), id.to_owned());
        wait_until(&format!("approval {id} {state}"), move || {
            let (store, id) = (store.clone(), id.clone());
            async move {
                store
                    .approval(&id)
                    .await
                    .unwrap()
                    .is_some_and(|a| a.state == state)
            }
        })
        .await;
    }
}

fn acvctl(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_acvctl"))
        .env("ACV_MANAGER_URL", url)
        .env_remove("ACV_MANAGER_TOKEN")
        .env("USER", "tester")
        .args(args)
        .output()
        .unwrap()
}

async fn acvctl_async(url: &str, args: &[&str]) -> std::process::Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        acvctl(&url, &a)
    })
    .await
    .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_decided_once_and_reach_the_sidecar() {
    let mut rig = rig().await;
    let http = reqwest::Client::new();
    rig.send_as_sidecar(Body::ApprovalRequest(request("a1", 60_000)))
        .await;
    rig.send_as_sidecar(Body::ApprovalRequest(request("a1", 60_000)))
        .await; // redelivered
    rig.send_as_sidecar(Body::ApprovalRequest(request("a2", 60_000)))
        .await;
    rig.send_as_sidecar(Body::ApprovalRequest(request("a3", 300)))
        .await;
    rig.state_is("a2", ApprovalState::Pending).await;

    // Listed with the program that wanted it, RFC 3339 times.
    let list: serde_json::Value = http
        .get(format!(
            "{}/v1/approvals?state=pending&component=catalogue",
            rig.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"a1") && ids.contains(&"a2"), "{list:#}");
    let a1 = list.as_array().unwrap().iter().find(|a| a["id"] == "a1").unwrap();
    assert_eq!(a1["program"], "import acv\nacv.scale(3)\n");
    assert_eq!(a1["args"]["replicas"], 3);
    assert_eq!(a1["state"], "pending");
    assert!(a1["requested_at"].as_str().unwrap().ends_with('Z'), "{a1:#}");
    assert!(a1["decided_at"].is_null() && a1["result"].is_null(), "{a1:#}");
    let out = acvctl_async(&rig.url, &["approvals", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("a1") && text(&out).contains("scale(replicas=3)"),
        "{}",
        text(&out)
    );

    // Approve with acvctl: the decision reaches the sidecar, who decided is recorded.
    let out = acvctl_async(
        &rig.url,
        &["approvals", "approve", "a1", "--reason", "capacity for the sale"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let d = tokio::time::timeout(Duration::from_secs(10), rig.sidecar.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Body::ApprovalDecision(decision) = &d.envelope.body else {
        panic!("not a decision: {:?}", d.envelope)
    };
    assert_eq!(d.envelope.from, Address::Manager);
    assert!(decision.approve && decision.id == "a1");
    assert_eq!(decision.by.as_deref(), Some("tester"));
    let a: Approval = http
        .get(format!("{}/v1/approvals/a1", rig.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a.state, ApprovalState::Approved);
    assert_eq!(a.reason.as_deref(), Some("capacity for the sale"));

    // Deciding twice: 409 with a clear message (HTTP and acvctl).
    let r = http
        .post(format!("{}/v1/approvals/a1/deny", rig.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already approved (by tester"),
        "{body}"
    );
    let out = acvctl_async(&rig.url, &["approvals", "deny", "a1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The sidecar's result closes it.
    rig.send_as_sidecar(Body::ApprovalResult(ApprovalResult {
        id: "a1".into(),
        component: c("catalogue"),
        state: ApprovalState::Executed,
        result: Some(serde_json::json!({"desired_replicas": 3})),
        error: None,
        at_ms: acv_core::now_ms(),
    }))
    .await;
    rig.state_is("a1", ApprovalState::Executed).await;
    let a1 = rig.store.approval("a1").await.unwrap().unwrap();
    assert_eq!(a1.result, Some(serde_json::json!({"desired_replicas": 3})));

    // Deny over HTTP with a JSON body; the sidecar hears it.
    let r = http
        .post(format!("{}/v1/approvals/a2/deny", rig.url))
        .json(&serde_json::json!({"by": "bob", "reason": "not now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = tokio::time::timeout(Duration::from_secs(10), rig.sidecar.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(&d.envelope.body, Body::ApprovalDecision(d) if !d.approve && d.id == "a2"));

    // Undecided past its expiry: expired by the manager, cannot be approved.
    rig.state_is("a3", ApprovalState::Expired).await;
    let r = http
        .post(format!("{}/v1/approvals/a3/approve", rig.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Bad input.
    for (path, want) in [
        ("/v1/approvals/nope", 404),
        ("/v1/approvals?state=maybe", 400),
        ("/v1/approvals?component=Not%20A%20Name", 400),
    ] {
        let r = http.get(format!("{}{path}", rig.url)).send().await.unwrap();
        assert_eq!(r.status(), want, "{path}");
    }
    let r = http
        .post(format!("{}/v1/approvals/a2/approve", rig.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{}/v1/approvals/nope/approve", rig.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    rig.stop.cancel();
}

fn audit(
    id: &str,
    episode: &str,
    at: u64,
    kind: AuditKind,
    name: &str,
    outcome: &str,
    detail: serde_json::Value,
) -> AuditRecord {
    AuditRecord {
        id: id.into(),
        component: c("catalogue"),
        episode: episode.into(),
        at_ms: at,
        kind,
        name: Some(name.into()),
        args: Some(serde_json::json!({})),
        outcome: Some(outcome.into()),
        detail,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_batches_are_stored_once_and_episodes_derived() {
    let rig = rig().await;
    let http = reqwest::Client::new();
    let t0 = acv_core::now_ms();
    let records = vec![
        audit(
            "r1",
            "e1",
            t0,
            AuditKind::HostCall,
            "status",
            "ok",
            serde_json::json!({"step": 1, "seq": 0, "result": {"ready": 1}}),
        ),
        audit(
            "r2",
            "e1",
            t0 + 1,
            AuditKind::Program,
            "look",
            "ok",
            serde_json::json!({"step": 1, "program": "import acv\nacv.status()", "output": "1 ready"}),
        ),
        audit(
            "r3",
            "e1",
            t0 + 2,
            AuditKind::Report,
            "slo",
            "response",
            serde_json::json!({"trigger": "slo", "started_at_ms": t0, "time_to_detect_ms": 4000, "report": {"message": "fine"}}),
        ),
        audit(
            "r4",
            "e2",
            t0 + 3,
            AuditKind::PeerCall,
            "ask_peer",
            "ok",
            serde_json::json!({"step": 1, "seq": 0}),
        ),
    ];
    let batch = AuditBatch {
        component: c("catalogue"),
        records,
    };
    rig.send_as_sidecar(Body::Audit(batch.clone())).await;
    rig.send_as_sidecar(Body::Audit(batch)).await; // sent again after a lost ack
    let store = rig.store.clone();
    wait_until("audit stored", move || {
        let store = store.clone();
        async move { store.recent_episodes(None, 10).await.unwrap().len() == 2 }
    })
    .await;
    let records: Vec<AuditEntry> = http
        .get(format!("{}/v1/audit?component=catalogue", rig.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1", "r2", "r3", "r4"]
    );
    let raw: serde_json::Value = http
        .get(format!("{}/v1/audit?episode=e1&limit=1", rig.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw.as_array().unwrap().len(), 1);
    assert_eq!(raw[0]["id"], "r3", "the newest");
    assert_eq!(raw[0]["kind"], "report");
    assert!(raw[0]["at"].as_str().unwrap().ends_with('Z'));
    let since = acv_manager::store::rfc3339::format(t0 + 3);
    let late: Vec<AuditEntry> = http
        .get(format!("{}/v1/audit", rig.url))
        .query(&[("since", since.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(late.len(), 1);

    let episodes: Vec<Episode> = http
        .get(format!("{}/v1/episodes?component=catalogue", rig.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        episodes.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e2", "e1"]
    );
    let e1 = &episodes[1];
    assert_eq!(e1.trigger, "slo");
    assert_eq!(e1.outcome.as_deref(), Some("response"));
    assert_eq!(e1.time_to_detect_ms, Some(4000));
    assert_eq!(e1.steps.len(), 1);
    assert_eq!(e1.steps[0].calls[0].name, "status");
    assert_eq!(e1.steps[0].output, "1 ready");
    assert_eq!(e1.report.as_ref().unwrap()["message"], "fine");
    assert!(episodes[0].ended_ms.is_none(), "e2 has no report yet");

    let out = acvctl_async(&rig.url, &["episodes", "--component", "catalogue"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("catalogue e1 [slo]") && text(&out).contains("detect 4.0s"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("status() → ok"), "{}", text(&out));
    let out = acvctl_async(&rig.url, &["audit", "--episode", "e1"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("report") && text(&out).contains("program"),
        "{}",
        text(&out)
    );
    let out = acvctl_async(&rig.url, &["audit", "--since", &since]).await;
    assert!(
        text(&out).contains("peer_call") && !text(&out).contains("host_call"),
        "{}",
        text(&out)
    );
    let out = acvctl_async(&rig.url, &["audit", "--since", "yesterday"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    for path in [
        "/v1/audit?since=yesterday",
        "/v1/audit?component=BAD",
        "/v1/episodes?component=BAD",
    ] {
        let r = http.get(format!("{}{path}", rig.url)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }
    rig.stop.cancel();
}
