//! Mechanism 3 with in-process peer servers over real mutual TLS on loopback: who is refused (other CA, no
//! certificate, expired certificate, a request naming another component, a server that is not who it should be),
//! read-only questions change nothing, observe mode on the peer changes nothing while autonomous mode does, loops
//! stop at the hop limit, retries are deduplicated, and callers are rate limited.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use acv_cluster::{Cluster, ClusterError};
use acv_pki::{DevCa, Identity, TlsFiles, Validity};
use acv_protocol::{
    ComponentName, ComponentStatus, MetricsSnapshot, PeerIntent, PeerOutcome, PeerRequest, ReplicaState,
    ReplicaStatus, ReportBody, ReportStatus, ResourceLimits, Revision, SloPolicy, TaskBody, Violation,
};
use acv_sandbox::{Limits, SafetyMode};
use acv_sidecar::{
    caps::{ClusterCaps, NoPeers},
    handler::{PlanningHandler, TaskHandler},
    peer::{Maintainer, PeerClient, PeerDirectory, PeerLimits, PeerService, server, server::ServerStats},
};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

const NS: &str = "test";

fn name(s: &str) -> ComponentName {
    ComponentName::new(s).unwrap()
}

/// A certificate directory with a CA and certificates for `components`, in a fresh temp dir.
fn certs(components: &[&str]) -> (PathBuf, DevCa) {
    let dir = std::env::temp_dir().join(format!("acv-peers-{}", uuid::Uuid::new_v4()));
    let ca = DevCa::generate("test CA", Duration::from_secs(86_400)).unwrap();
    ca.write(&dir).unwrap();
    for c in components {
        let id = Identity::new(NS, name(c)).unwrap();
        ca.issue(&id, Validity::from_now(Duration::from_secs(3600)))
            .unwrap()
            .write(&dir, c)
            .unwrap();
    }
    (dir, ca)
}

/// A component whose P99 is 800 ms until it is scaled out or rolled back; counts mutating calls.
struct FakeCluster {
    name: ComponentName,
    slow: Mutex<bool>,
    replicas: AtomicU32,
    mutations: AtomicU32,
}

impl FakeCluster {
    fn new(c: &str, slow: bool) -> Arc<Self> {
        Arc::new(Self {
            name: name(c),
            slow: Mutex::new(slow),
            replicas: AtomicU32::new(1),
            mutations: AtomicU32::new(0),
        })
    }
    fn mutated(&self) {
        self.mutations.fetch_add(1, Ordering::SeqCst);
        *self.slow.lock().unwrap() = false;
    }
    fn revision(&self, n: u64) -> Revision {
        Revision {
            revision: n,
            image: format!("v{n}"),
            env: BTreeMap::new(),
            limits: ResourceLimits {
                cpu_millis: 500,
                memory_mib: 256,
            },
            created_at_ms: n * 1000,
            cause: "set_image".into(),
        }
    }
}

#[async_trait]
impl Cluster for FakeCluster {
    fn component(&self) -> &ComponentName {
        &self.name
    }
    async fn status(&self) -> Result<ComponentStatus, ClusterError> {
        let n = self.replicas.load(Ordering::SeqCst);
        Ok(ComponentStatus {
            component: self.name.clone(),
            desired_replicas: n,
            ready_replicas: n,
            replicas: (0..n)
                .map(|i| ReplicaStatus {
                    name: format!("{}-{i}", self.name),
                    state: ReplicaState::Ready,
                    restarts: 0,
                })
                .collect(),
            revision: 2,
            image: "v2".into(),
            env: BTreeMap::new(),
            limits: ResourceLimits {
                cpu_millis: 500,
                memory_mib: 256,
            },
        })
    }
    async fn metrics(&self, window_secs: f64) -> Result<MetricsSnapshot, ClusterError> {
        let slow = *self.slow.lock().unwrap();
        Ok(MetricsSnapshot {
            component: self.name.clone(),
            window_secs,
            cpu_percent_of_limit: Some(5.0),
            memory_percent_of_limit: Some(5.0),
            request_rate: Some(10.0),
            p50_ms: Some(5.0),
            p99_ms: Some(if slow { 800.0 } else { 20.0 }),
            error_rate_percent: Some(0.0),
            calls: Vec::new(),
        })
    }
    async fn logs(&self, _: i64) -> Result<Vec<String>, ClusterError> {
        Ok(vec![])
    }
    async fn scale(&self, replicas: i64) -> Result<ComponentStatus, ClusterError> {
        self.replicas
            .store(u32::try_from(replicas).unwrap_or(1), Ordering::SeqCst);
        self.mutated();
        self.status().await
    }
    async fn restart(&self) -> Result<(), ClusterError> {
        self.mutated();
        Ok(())
    }
    async fn set_image(&self, _: &str) -> Result<Revision, ClusterError> {
        self.mutated();
        Ok(self.revision(3))
    }
    async fn set_env(&self, _: &str, _: &str) -> Result<Revision, ClusterError> {
        self.mutated();
        Ok(self.revision(3))
    }
    async fn set_resources(&self, _: i64, _: i64) -> Result<Revision, ClusterError> {
        self.mutated();
        Ok(self.revision(3))
    }
    async fn rollback(&self) -> Result<Revision, ClusterError> {
        self.mutated();
        Ok(self.revision(1))
    }
    async fn history(&self) -> Result<Vec<Revision>, ClusterError> {
        Ok(vec![self.revision(1), self.revision(2)])
    }
}

/// A running peer server.
struct Peer {
    url: String,
    stats: Arc<ServerStats>,
    shutdown: CancellationToken,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn serve(dir: &std::path::Path, component: &str, service: PeerService) -> Peer {
    let tls = TlsFiles::in_dir(dir, &name(component)).load().unwrap();
    let config = acv_pki::server_config(&tls).unwrap();
    let shutdown = CancellationToken::new();
    let (addr, stats, fut) = server::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Arc::new(service),
        shutdown.clone(),
    )
    .await
    .unwrap();
    tokio::spawn(fut);
    Peer {
        url: format!("https://{addr}"),
        stats,
        shutdown,
    }
}

fn maintainer(cluster: Arc<FakeCluster>, handler: Arc<dyn TaskHandler>, mode: SafetyMode) -> Maintainer {
    Maintainer {
        cluster,
        handler,
        slo: SloPolicy::default(),
        window_secs: 10.0,
        mode,
        audit: acv_sidecar::audit::AuditLog::disabled(),
    }
}

fn service(c: &str, m: Option<Maintainer>) -> PeerService {
    PeerService::new(name(c), NS.into(), m, Default::default())
}

/// A client for `me` using `files`, which knows `peers`.
fn client(me: &str, files: &TlsFiles, peers: &[(&str, &str)]) -> PeerClient {
    let tls = files.load().unwrap();
    let dir = PeerDirectory::default();
    for (c, url) in peers {
        dir.insert(name(c), url);
    }
    PeerClient::new(name(me), acv_pki::client_config(&tls).unwrap(), dir)
        .with_timeout(Duration::from_secs(60))
}

/// Claims success without doing anything; counts calls.
#[derive(Default)]
struct Counting(AtomicU32);

#[async_trait]
impl TaskHandler for Counting {
    async fn handle(&self, _: &ComponentName, _: &TaskBody) -> ReportBody {
        unreachable!("peers hand over violations, not tasks")
    }
    async fn mitigate(&self, c: &ComponentName, id: &str, _: &[Violation]) -> ReportBody {
        self.0.fetch_add(1, Ordering::SeqCst);
        ReportBody {
            diagnosis: None,
            task_id: id.into(),
            component: c.clone(),
            status: ReportStatus::Response,
            message: "did nothing".into(),
            evidence: vec![],
            steps: vec![],
        }
    }
    fn planner_name(&self) -> String {
        "counting".into()
    }
}

#[tokio::test]
async fn read_only_questions_are_answered_and_change_nothing() {
    let (dir, _ca) = certs(&["front-end", "catalogue"]);
    let cat = FakeCluster::new("catalogue", true);
    let handler = Arc::new(Counting::default());
    let peer = serve(
        &dir,
        "catalogue",
        service(
            "catalogue",
            Some(maintainer(cat.clone(), handler.clone(), SafetyMode::Autonomous)),
        ),
    )
    .await;
    let fe = client(
        "front-end",
        &TlsFiles::in_dir(&dir, &name("front-end")),
        &[("catalogue", &peer.url)],
    );
    for (q, intent, key) in [
        ("status?", PeerIntent::Status, "status"),
        ("what is your p99 latency?", PeerIntent::Metrics, "metrics"),
        ("are you healthy?", PeerIntent::Health, "violations"),
        ("recent changes", PeerIntent::Changes, "changes"),
        ("hello", PeerIntent::Summary, "metrics"),
    ] {
        let (status, a) = fe.request(&name("catalogue"), q).await.unwrap();
        assert_eq!(status, 200, "{a:?}");
        assert_eq!(a.outcome, PeerOutcome::Answered, "{a:?}");
        assert_eq!(a.intent, Some(intent));
        assert!(a.data.get(key).is_some(), "{q}: {a:?}");
    }
    let (_, health) = fe.request(&name("catalogue"), "health").await.unwrap();
    assert!(
        health.message.contains("P99") || health.message.contains("p99"),
        "{}",
        health.message
    );
    assert_eq!(cat.mutations.load(Ordering::SeqCst), 0);
    assert_eq!(
        handler.0.load(Ordering::SeqCst),
        0,
        "read-only questions never reach the planner"
    );
    assert_eq!(peer.stats.requests.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn clients_without_a_valid_certificate_are_refused() {
    let (dir, ca) = certs(&["front-end", "catalogue"]);
    let cat = FakeCluster::new("catalogue", false);
    let peer = serve(
        &dir,
        "catalogue",
        service(
            "catalogue",
            Some(maintainer(
                cat,
                Arc::new(Counting::default()),
                SafetyMode::Autonomous,
            )),
        ),
    )
    .await;
    let ca_pem = dir.join("ca.pem");

    // A certificate from another CA (the client itself trusts the right CA, so only the server can refuse).
    let (other_dir, _other) = certs(&["front-end"]);
    let other = TlsFiles {
        ca: ca_pem.clone(),
        ..TlsFiles::in_dir(&other_dir, &name("front-end"))
    };
    // An expired certificate from the right CA.
    let expired_dir = std::env::temp_dir().join(format!("acv-peers-{}", uuid::Uuid::new_v4()));
    let now = time::OffsetDateTime::now_utc();
    ca.issue(
        &Identity::new(NS, name("front-end")).unwrap(),
        Validity {
            not_before: now - Duration::from_secs(7200),
            not_after: now - Duration::from_secs(3600),
        },
    )
    .unwrap()
    .write(&expired_dir, "front-end")
    .unwrap();
    let expired = TlsFiles {
        ca: ca_pem.clone(),
        ..TlsFiles::in_dir(&expired_dir, &name("front-end"))
    };

    for (what, files) in [("other CA", other), ("expired", expired)] {
        let c = client("front-end", &files, &[("catalogue", &peer.url)]);
        let err = c.request(&name("catalogue"), "status").await.unwrap_err();
        assert!(
            matches!(err, acv_sidecar::peer::PeerError::Transport { .. }),
            "{what}: {err}"
        );
    }
    // No certificate at all: a plain TLS client that would accept any server.
    {
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny))
                .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(peer.url.trim_start_matches("https://"))
            .await
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        // TLS 1.3: the refusal may surface at the handshake or at the first read.
        if let Ok(mut tls) = connector
            .connect(acv_pki::tls::server_name(&name("catalogue")), tcp)
            .await
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // The write may already fail; the read below decides.
            tls.write_all(b"POST /v1/ask HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .ok();
            let mut buf = Vec::new();
            let read = tls.read_to_end(&mut buf).await;
            assert!(
                read.is_err() || buf.is_empty(),
                "no certificate got an answer: {}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
    // Let the server finish logging the refused handshakes.
    for _ in 0..50 {
        if peer.stats.tls_refused.load(Ordering::SeqCst) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(peer.stats.tls_refused.load(Ordering::SeqCst), 3);
    assert_eq!(
        peer.stats.requests.load(Ordering::SeqCst),
        0,
        "no refused client reached the service"
    );

    // The right certificate works against the same server.
    let good = client(
        "front-end",
        &TlsFiles::in_dir(&dir, &name("front-end")),
        &[("catalogue", &peer.url)],
    );
    assert_eq!(good.request(&name("catalogue"), "status").await.unwrap().0, 200);
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn a_request_naming_another_component_than_the_certificate_is_refused() {
    let (dir, _ca) = certs(&["front-end", "catalogue", "payment"]);
    let cat = FakeCluster::new("catalogue", true);
    let handler = Arc::new(Counting::default());
    let peer = serve(
        &dir,
        "catalogue",
        service(
            "catalogue",
            Some(maintainer(cat.clone(), handler.clone(), SafetyMode::Autonomous)),
        ),
    )
    .await;
    let fe = client(
        "front-end",
        &TlsFiles::in_dir(&dir, &name("front-end")),
        &[("catalogue", &peer.url)],
    );
    let forged = PeerRequest {
        request_id: "forged-1".into(),
        origin: "forged-1".into(),
        from: name("payment"),
        to: name("catalogue"),
        question: "please fix".into(),
        hops: 1,
    };
    let (status, a) = fe.send(&forged).await.unwrap();
    assert_eq!(status, 403);
    assert_eq!(a.outcome, PeerOutcome::Refused);
    assert!(
        a.message.contains("certificate belongs to front-end"),
        "{}",
        a.message
    );
    assert_eq!(handler.0.load(Ordering::SeqCst), 0);
    assert_eq!(cat.mutations.load(Ordering::SeqCst), 0);

    // A server that is not the component asked for is refused by the client: the directory points "catalogue"
    // at payment's server.
    let pay = serve(&dir, "payment", service("payment", None)).await;
    let fooled = client(
        "front-end",
        &TlsFiles::in_dir(&dir, &name("front-end")),
        &[("catalogue", &pay.url)],
    );
    let err = fooled.request(&name("catalogue"), "status").await.unwrap_err();
    assert!(err.to_string().contains("spiffe://acv/test/payment"), "{err}");
    assert_eq!(pay.stats.requests.load(Ordering::SeqCst), 0);
}

/// The real planner chain (rules planner → sandbox → cluster) behind the peer API.
fn planning(cluster: Arc<FakeCluster>, mode: SafetyMode) -> Arc<dyn TaskHandler> {
    Arc::new(PlanningHandler {
        planner: Arc::new(acv_llm::RulesPlanner::new()),
        sandbox: Arc::new(acv_sandbox::LazySandbox::preloaded(
            acv_sandbox::dev::shared_sandbox().unwrap(),
        )),
        cluster: cluster.clone(),
        caps: Arc::new(ClusterCaps::new(cluster, Arc::new(NoPeers))),
        mode,
        limits: Limits::default(),
        slo: SloPolicy::default(),
        max_turns: 6,
        settle: Duration::from_millis(10),
        audit: acv_sidecar::audit::AuditLog::disabled(),
        approval_timeout: Duration::from_secs(900),
        guard: acv_sidecar::guard::GuardConfig::default(),
    })
}

#[tokio::test]
async fn an_action_request_runs_the_peers_planner_under_its_own_safety_mode() {
    let (dir, _ca) = certs(&["front-end", "catalogue"]);
    let mut results = Vec::new();
    for mode in [SafetyMode::Observe, SafetyMode::Autonomous] {
        let cat = FakeCluster::new("catalogue", true);
        let m = maintainer(cat.clone(), planning(cat.clone(), mode), mode);
        let peer = serve(&dir, "catalogue", service("catalogue", Some(m))).await;
        let fe = client(
            "front-end",
            &TlsFiles::in_dir(&dir, &name("front-end")),
            &[("catalogue", &peer.url)],
        );
        let (status, a) = fe
            .request(
                &name("catalogue"),
                "your latency hurts mine, please check and fix",
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{a:?}");
        assert_eq!(a.intent, Some(PeerIntent::Action));
        assert_eq!(a.outcome, PeerOutcome::Acted, "{a:?}");
        assert!(a.report.is_some());
        results.push((mode, cat.mutations.load(Ordering::SeqCst), a.message));
    }
    let (_, observe_mutations, observe_msg) = &results[0];
    assert_eq!(
        *observe_mutations, 0,
        "observe mode changed something: {observe_msg}"
    );
    assert!(observe_msg.contains("observe"), "{observe_msg}");
    let (_, auto_mutations, auto_msg) = &results[1];
    assert!(*auto_mutations > 0, "autonomous mode did nothing: {auto_msg}");
    assert!(auto_msg.contains("re-check: all SLOs met"), "{auto_msg}");

    // A healthy peer declines and changes nothing.
    let cat = FakeCluster::new("catalogue", false);
    let handler = Arc::new(Counting::default());
    let peer = serve(
        &dir,
        "catalogue",
        service(
            "catalogue",
            Some(maintainer(cat.clone(), handler.clone(), SafetyMode::Autonomous)),
        ),
    )
    .await;
    let fe = client(
        "front-end",
        &TlsFiles::in_dir(&dir, &name("front-end")),
        &[("catalogue", &peer.url)],
    );
    let (_, a) = fe
        .request(&name("catalogue"), "please fix your latency")
        .await
        .unwrap();
    assert_eq!(a.outcome, PeerOutcome::Declined, "{a:?}");
    assert_eq!(handler.0.load(Ordering::SeqCst), 0);
}

/// Asks `other` for help whenever asked to act (through the peer client, so the chain continues).
struct AskBack {
    client: Mutex<Option<Arc<PeerClient>>>,
    other: ComponentName,
    calls: AtomicU32,
    answers: Mutex<Vec<String>>,
}

#[async_trait]
impl TaskHandler for AskBack {
    async fn handle(&self, _: &ComponentName, _: &TaskBody) -> ReportBody {
        unreachable!()
    }
    async fn mitigate(&self, c: &ComponentName, id: &str, _: &[Violation]) -> ReportBody {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let client = self.client.lock().unwrap().clone().unwrap();
        let text = match client
            .request(&self.other, "you are slowing me down, please fix")
            .await
        {
            Ok((status, a)) => format!("{status} {:?}: {}", a.outcome, a.message),
            Err(e) => format!("error: {e}"),
        };
        self.answers.lock().unwrap().push(text.clone());
        ReportBody {
            diagnosis: None,
            task_id: id.into(),
            component: c.clone(),
            status: ReportStatus::Issue,
            message: text,
            evidence: vec![],
            steps: vec![],
        }
    }
    fn planner_name(&self) -> String {
        "ask-back".into()
    }
}

#[tokio::test]
async fn a_loop_of_peers_asking_each_other_stops_at_the_hop_limit() {
    let (dir, _ca) = certs(&["alpha", "beta"]);
    let limits = PeerLimits {
        max_hops: 2,
        ..Default::default()
    };
    let mk = |other: &str| {
        Arc::new(AskBack {
            client: Mutex::new(None),
            other: name(other),
            calls: AtomicU32::new(0),
            answers: Mutex::default(),
        })
    };
    let a_handler = mk("beta");
    let b_handler = mk("alpha");
    let a = serve(
        &dir,
        "alpha",
        service(
            "alpha",
            Some(maintainer(
                FakeCluster::new("alpha", true),
                a_handler.clone(),
                SafetyMode::Autonomous,
            )),
        )
        .with_limits(limits.clone()),
    )
    .await;
    let b = serve(
        &dir,
        "beta",
        service(
            "beta",
            Some(maintainer(
                FakeCluster::new("beta", true),
                b_handler.clone(),
                SafetyMode::Autonomous,
            )),
        )
        .with_limits(limits),
    )
    .await;
    let peers = [("alpha", a.url.as_str()), ("beta", b.url.as_str())];
    let a_client = Arc::new(client("alpha", &TlsFiles::in_dir(&dir, &name("alpha")), &peers));
    let b_client = Arc::new(client("beta", &TlsFiles::in_dir(&dir, &name("beta")), &peers));
    *a_handler.client.lock().unwrap() = Some(a_client.clone());
    *b_handler.client.lock().unwrap() = Some(b_client);

    // alpha asks beta (hop 1); beta's planner asks alpha (hop 2); alpha's planner asks beta (hop 3): refused.
    let (status, answer) = a_client.request(&name("beta"), "please fix").await.unwrap();
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(b_handler.calls.load(Ordering::SeqCst), 1);
    assert_eq!(a_handler.calls.load(Ordering::SeqCst), 1);
    let innermost = a_handler.answers.lock().unwrap().clone();
    assert_eq!(innermost.len(), 1);
    assert!(
        innermost[0].starts_with("508 Refused") && innermost[0].contains("hop limit"),
        "{innermost:?}"
    );
    assert!(innermost[0].contains("hop 3"), "{innermost:?}");
}

#[tokio::test]
async fn retries_are_deduplicated_and_callers_rate_limited() {
    let (dir, _ca) = certs(&["front-end", "catalogue"]);
    let cat = FakeCluster::new("catalogue", true);
    let handler = Arc::new(Counting::default());
    let svc = service(
        "catalogue",
        Some(maintainer(cat, handler.clone(), SafetyMode::Autonomous)),
    )
    .with_limits(PeerLimits {
        burst: 3,
        per_minute: 1,
        ..Default::default()
    });
    let peer = serve(&dir, "catalogue", svc).await;
    let fe = client(
        "front-end",
        &TlsFiles::in_dir(&dir, &name("front-end")),
        &[("catalogue", &peer.url)],
    );
    let req = PeerRequest {
        request_id: "retry-1".into(),
        origin: "retry-1".into(),
        from: name("front-end"),
        to: name("catalogue"),
        question: "please fix".into(),
        hops: 1,
    };
    let first = fe.send(&req).await.unwrap();
    let again = fe.send(&req).await.unwrap();
    assert_eq!(first, again, "a retry gets the first answer");
    assert_eq!(handler.0.load(Ordering::SeqCst), 1, "a retry does not act twice");
    // Burst of 3: one token went to retry-1; two more pass, the next is refused.
    assert_eq!(fe.request(&name("catalogue"), "status").await.unwrap().0, 200);
    assert_eq!(fe.request(&name("catalogue"), "status").await.unwrap().0, 200);
    let (status, a) = fe.request(&name("catalogue"), "status").await.unwrap();
    assert_eq!(status, 429, "{a:?}");
    assert!(a.message.contains("rate limit"), "{}", a.message);
}
