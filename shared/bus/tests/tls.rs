//! TLS to the brokers (rustls): against a private TLS-only nats-server; against a private TLS-only RabbitMQ node
//! the test starts (its own node name, ports, config, Mnesia and log directories under a temp dir — the shared node
//! on :5672 is never touched); and against the shared RabbitMQ through a TLS front the test runs. A plain
//! connection is refused when TLS is required.

mod support;

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use acv_bus::{
    Bus, BusConfig, Principal, Transport, amqp::AmqpBus, nats::NatsBus, testing::NatsServer,
    testing::RabbitUsers,
};
use acv_protocol::{Address, Body, Envelope, ReportBody, ReportStatus};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::*;
use tokio::net::{TcpListener, TcpStream};

struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    /// A CA and a server certificate for 127.0.0.1 / localhost.
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("acv-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "acv test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        Self {
            dir,
            ca,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _outcome = std::fs::remove_dir_all(&self.dir);
    }
}

fn note() -> Envelope {
    Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        Address::Manager,
        Address::Manager,
        acv_core::now_ms(),
        Body::Report(ReportBody {
            task_id: "tls".into(),
            component: catalogue(),
            status: ReportStatus::Response,
            message: "over TLS".into(),
            evidence: Vec::new(),
            steps: Vec::new(),
            diagnosis: None,
        }),
    )
}

async fn round_trip(bus: &dyn Bus) {
    let mut inbox = bus.subscribe(&Address::Manager).await.unwrap();
    let env = note();
    bus.publish(&env).await.unwrap();
    let d = next(&mut inbox).await;
    assert_eq!(d.envelope.id, env.id);
    d.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_over_tls_and_plain_refused() {
    let pki = Pki::new();
    let tls = format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\", timeout: 2 }}",
        pki.dir.join("server.pem").display(),
        pki.dir.join("server.key").display()
    );
    let server = NatsServer::start(&[Principal::Manager], &tls).expect("nats-server must start");
    let mut config = server.config(&Principal::Manager);
    config.tls_ca = Some(pki.ca.clone());
    config.tls_required = true;
    let bus = NatsBus::connect(config).await.expect("TLS connection");
    round_trip(&bus).await;
    let _outcome = bus.delete_namespace().await;

    // Without the CA (so without a TLS session the client trusts) the server cannot be used.
    let plain = tokio::time::timeout(
        Duration::from_secs(20),
        NatsBus::connect(server.config(&Principal::Manager)),
    )
    .await;
    assert!(!matches!(plain, Ok(Ok(_))), "a plain NATS client got in");
}

/// A TLS front on 127.0.0.1 forwarding decrypted bytes to the shared RabbitMQ on :5672.
async fn tls_front(pki: &Pki) -> u16 {
    let certs = vec![rustls::pki_types::CertificateDer::from(
        rustls::pki_types::pem::PemObject::from_pem_slice(pki.cert_pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
            .unwrap(),
    )];
    let key: rustls::pki_types::PrivateKeyDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(inbound).await else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", 5672)).await else {
                    return;
                };
                let _outcome = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_rustls_and_plain_refused() {
    let pki = Pki::new();
    let users = RabbitUsers::create(&[Principal::Manager]).expect("rabbitmqctl must work");
    let port = tls_front(&pki).await;
    let mut config = users.config_at(&Principal::Manager, "amqps", "127.0.0.1", port);
    config.tls_ca = Some(pki.ca.clone());
    config.tls_required = true;
    let bus = AmqpBus::connect(config).await.expect("amqps connection");
    round_trip(&bus).await;

    // TLS required but a plain URL: refused before connecting.
    let mut plain = users.config(&Principal::Manager);
    plain.tls_required = true;
    let err = AmqpBus::connect(plain)
        .await
        .err()
        .expect("plain refused")
        .to_string();
    assert!(err.contains("TLS is required"), "{err}");
    // amqps to a server whose CA is not trusted fails the handshake.
    let untrusted = users.config_at(&Principal::Manager, "amqps", "127.0.0.1", port);
    let failed = tokio::time::timeout(Duration::from_secs(20), AmqpBus::connect(untrusted)).await;
    assert!(
        !matches!(failed, Ok(Ok(_))),
        "an untrusted certificate was accepted"
    );
    let _outcome = bus.delete_namespace().await;
}

/// A private RabbitMQ node that listens only with TLS: `acvtls-<ns>@localhost`, free loopback ports for AMQPS and
/// distribution, no plugins, a generated `rabbitmq.conf` (`listeners.tcp = none`, `listeners.ssl.default`), the
/// test's certificate, and its own Mnesia/log directories and Erlang cookie (`HOME`) under a temp dir. The node runs
/// in its own process group, which is stopped (TERM, then KILL) and its files removed on drop.
struct TlsRabbit {
    namespace: String,
    dir: PathBuf,
    port: u16,
    password: String,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

impl TlsRabbit {
    /// Starts the node (`$RABBITMQ_SERVER`, default `/usr/lib/rabbitmq/bin/rabbitmq-server`) and waits at most
    /// 60 s for its TLS port.
    fn start(pki: &Pki) -> Result<Self, String> {
        let server = std::env::var("RABBITMQ_SERVER")
            .unwrap_or_else(|_| "/usr/lib/rabbitmq/bin/rabbitmq-server".into());
        if !Path::new(&server).is_file() {
            return Err(format!("{server} is not installed (set RABBITMQ_SERVER)"));
        }
        let namespace = acv_bus::testing::namespace();
        let dir = std::env::temp_dir().join(format!("acv-rabbit-{namespace}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (port, dist_port) = (free_port(), free_port());
        let password = uuid::Uuid::new_v4().simple().to_string();
        let conf = format!(
            "listeners.tcp = none\n\
             listeners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {ca}\n\
             ssl_options.certfile = {cert}\n\
             ssl_options.keyfile = {key}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n\
             default_user = {user}\n\
             default_pass = {password}\n",
            ca = pki.ca.display(),
            cert = pki.dir.join("server.pem").display(),
            key = pki.dir.join("server.key").display(),
            user = Principal::Manager.user(&namespace),
        );
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map(|()| path)
                .map_err(|e| e.to_string())
        };
        let config = write("rabbitmq.conf", &conf)?;
        let plugins = write("enabled_plugins", "[].\n")?;
        let env_file = write("rabbitmq-env.conf", "")?;
        let log = std::fs::File::create(dir.join("node.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&server)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin:/usr/sbin:/sbin".into()),
            )
            .env("HOME", &dir)
            .env("RABBITMQ_CONF_ENV_FILE", &env_file)
            .env("RABBITMQ_NODENAME", format!("acvtls-{namespace}@localhost"))
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env(
                "RABBITMQ_SERVER_START_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {server}: {e}"))?;
        let mut node = Self {
            namespace,
            dir,
            port,
            password,
            child,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let tail = || {
                let log = std::fs::read_to_string(node.dir.join("node.log")).unwrap_or_default();
                log.lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            if let Ok(Some(status)) = node.child.try_wait() {
                return Err(format!("the RabbitMQ node exited ({status}):\n{}", tail()));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "the RabbitMQ node did not open its TLS port within 60 s:\n{}",
                    tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "private RabbitMQ node with TLS on :{port} up after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(node)
    }

    /// The manager's bus config for `scheme://…@127.0.0.1:<TLS port>/` (sender verification on).
    fn config(&self, scheme: &str) -> BusConfig {
        let mut c = BusConfig::default().with_transport(Transport::Amqp);
        c.namespace.clone_from(&self.namespace);
        c.verify_sender = true;
        c.reconnect_max_backoff = Duration::from_millis(500);
        c.amqp_url = format!(
            "{scheme}://{}:{}@127.0.0.1:{}/%2f",
            Principal::Manager.user(&self.namespace),
            self.password,
            self.port
        );
        c
    }
}

impl Drop for TlsRabbit {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _outcome = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever is left of the group (the node itself if the script went first).
        let _outcome = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _outcome = self.child.wait();
        let _outcome = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_node_with_tls_listener_only() {
    let pki = Pki::new();
    let node = tokio::task::spawn_blocking(move || TlsRabbit::start(&pki).map(|n| (n, pki)))
        .await
        .unwrap();
    let (node, pki) = node.expect("a private RabbitMQ node must start");

    // amqps:// with the test CA: connects, and a round trip works (with the broker-validated user_id).
    let mut config = node.config("amqps");
    config.tls_ca = Some(pki.ca.clone());
    config.tls_required = true;
    let bus = AmqpBus::connect(config).await.expect("amqps connection");
    round_trip(&bus).await;

    // TLS required but a plain URL: refused by the client before connecting.
    let mut plain = node.config("amqp");
    plain.tls_required = true;
    let err = AmqpBus::connect(plain)
        .await
        .err()
        .expect("plain refused")
        .to_string();
    assert!(err.contains("TLS is required"), "{err}");
    // A plain AMQP connection to the node (the only listener is TLS): the server does not speak to it.
    let plain = tokio::time::timeout(Duration::from_secs(20), AmqpBus::connect(node.config("amqp"))).await;
    assert!(!matches!(plain, Ok(Ok(_))), "a plain AMQP connection got in");
    // amqps without the CA: the client does not trust the server's certificate.
    let untrusted =
        tokio::time::timeout(Duration::from_secs(20), AmqpBus::connect(node.config("amqps"))).await;
    assert!(
        !matches!(untrusted, Ok(Ok(_))),
        "an untrusted certificate was accepted"
    );

    let _outcome = bus.delete_namespace().await;
    drop(bus);
    tokio::task::spawn_blocking(move || drop(node)).await.unwrap();
}
