//! TLS to the brokers (rustls): against a private TLS-only nats-server, and against RabbitMQ through a TLS front
//! the test runs (the shared RabbitMQ has no TLS listener, and enabling one would mean reconfiguring and restarting
//! it). A plain connection is refused when TLS is required.

mod support;

use std::{path::PathBuf, sync::Arc, time::Duration};

use acv_bus::{Bus, Principal, amqp::AmqpBus, nats::NatsBus, testing::NatsServer, testing::RabbitUsers};
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
