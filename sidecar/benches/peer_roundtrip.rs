//! `acv.ask_peer` round trip over mutual TLS on loopback: a read-only question ("status") from one in-process
//! sidecar client to another's peer API, a fresh TCP + TLS connection per call (as the client makes them).
//! Prints p50/p99; run by `make bench`.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use acv_cluster::{Cluster, ClusterError};
use acv_pki::{DevCa, Identity, TlsFiles, Validity};
use acv_protocol::{ComponentName, ComponentStatus, MetricsSnapshot, ResourceLimits, Revision};
use acv_sidecar::{
    handler::NoPlanner,
    peer::{Maintainer, PeerClient, PeerDirectory, PeerLimits, PeerService, server},
};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

const CALLS: usize = 500;

/// Answers status reads; nothing else is reached by a read-only question.
struct StatusOnly(ComponentName);

#[async_trait]
impl Cluster for StatusOnly {
    fn component(&self) -> &ComponentName {
        &self.0
    }
    async fn status(&self) -> Result<ComponentStatus, ClusterError> {
        Ok(ComponentStatus {
            component: self.0.clone(),
            desired_replicas: 1,
            ready_replicas: 1,
            replicas: vec![],
            revision: 1,
            image: "v1".into(),
            env: BTreeMap::new(),
            limits: ResourceLimits {
                cpu_millis: 500,
                memory_mib: 256,
            },
        })
    }
    async fn metrics(&self, _: f64) -> Result<MetricsSnapshot, ClusterError> {
        Err(ClusterError::Stopped)
    }
    async fn logs(&self, _: i64) -> Result<Vec<String>, ClusterError> {
        Err(ClusterError::Stopped)
    }
    async fn scale(&self, _: i64) -> Result<ComponentStatus, ClusterError> {
        Err(ClusterError::Stopped)
    }
    async fn restart(&self) -> Result<(), ClusterError> {
        Err(ClusterError::Stopped)
    }
    async fn set_image(&self, _: &str) -> Result<Revision, ClusterError> {
        Err(ClusterError::Stopped)
    }
    async fn set_env(&self, _: &str, _: &str) -> Result<Revision, ClusterError> {
        Err(ClusterError::Stopped)
    }
    async fn set_resources(&self, _: i64, _: i64) -> Result<Revision, ClusterError> {
        Err(ClusterError::Stopped)
    }
    async fn rollback(&self) -> Result<Revision, ClusterError> {
        Err(ClusterError::Stopped)
    }
    async fn history(&self) -> Result<Vec<Revision>, ClusterError> {
        Err(ClusterError::Stopped)
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let name = |s: &str| ComponentName::new(s).expect("name");
    let dir = std::env::temp_dir().join(format!("acv-peer-bench-{}", uuid::Uuid::new_v4()));
    let ca = DevCa::generate("bench CA", Duration::from_secs(3600)).expect("CA");
    ca.write(&dir).expect("write CA");
    for c in ["front-end", "catalogue"] {
        ca.issue(
            &Identity::new("bench", name(c)).expect("id"),
            Validity::from_now(Duration::from_secs(3600)),
        )
        .expect("issue")
        .write(&dir, c)
        .expect("write");
    }
    let server_tls = TlsFiles::in_dir(&dir, &name("catalogue"))
        .load()
        .expect("server TLS");
    let maintainer = Maintainer {
        cluster: Arc::new(StatusOnly(name("catalogue"))),
        handler: Arc::new(NoPlanner),
        slo: Default::default(),
        window_secs: 10.0,
        mode: acv_sandbox::SafetyMode::Observe,
        audit: acv_sidecar::audit::AuditLog::disabled(),
    };
    let service = PeerService::new(
        name("catalogue"),
        "bench".into(),
        Some(maintainer),
        Default::default(),
    )
    .with_limits(PeerLimits {
        per_minute: 1_000_000,
        burst: 1_000_000,
        ..Default::default()
    });
    let shutdown = CancellationToken::new();
    let (addr, _stats, fut) = server::bind(
        "127.0.0.1:0".parse().expect("addr"),
        acv_pki::server_config(&server_tls).expect("server config"),
        Arc::new(service),
        shutdown.clone(),
    )
    .await
    .expect("bind");
    tokio::spawn(fut);
    let client_tls = TlsFiles::in_dir(&dir, &name("front-end"))
        .load()
        .expect("client TLS");
    let directory = PeerDirectory::default();
    directory.insert(name("catalogue"), &format!("https://{addr}"));
    let client = PeerClient::new(
        name("front-end"),
        acv_pki::client_config(&client_tls).expect("client config"),
        directory,
    );
    // Warm up (first handshake, session ticket).
    for _ in 0..10 {
        client
            .request(&name("catalogue"), "status")
            .await
            .expect("warm-up");
    }
    let mut ms = Vec::with_capacity(CALLS);
    let started = Instant::now();
    for _ in 0..CALLS {
        let t = Instant::now();
        let (status, _) = client.request(&name("catalogue"), "status").await.expect("ask");
        assert_eq!(status, 200);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let total = started.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "peer ask_peer round trip (read-only, mTLS, new connection per call, loopback): {CALLS} calls, p50 {:.2} ms, p99 {:.2} ms, {:.0} calls/s",
        pct(0.50),
        pct(0.99),
        CALLS as f64 / total
    );
    shutdown.cancel();
    std::fs::remove_dir_all(&dir).ok();
}
