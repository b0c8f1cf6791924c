//! No secret is ever logged: passwords read from `*_FILE` secrets stay out of `Debug` output, log lines and the
//! errors of refused logins, on both brokers.

use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex},
};

use acv_bus::{BusConfig, Principal, amqp::AmqpBus, nats::NatsBus, testing::NatsServer};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_logs_or_errors() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let amqp_pw = format!("amqp-secret-{}", uuid::Uuid::new_v4().simple());
    let nats_pw = format!("nats-secret-{}", uuid::Uuid::new_v4().simple());
    let dir = std::env::temp_dir().join(format!("acv-secrets-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url_file = dir.join("amqp-url");
    std::fs::write(&url_file, format!("amqp://nobody:{amqp_pw}@127.0.0.1:5672/%2f\n")).unwrap();
    let pw_file = dir.join("nats-pw");
    std::fs::write(&pw_file, format!("{nats_pw}\n")).unwrap();
    let server = NatsServer::start(&[Principal::Manager], "").expect("nats-server must start");
    let env: HashMap<String, String> = [
        ("ACV_AMQP_URL_FILE", url_file.to_string_lossy().into_owned()),
        ("ACV_NATS_PASSWORD_FILE", pw_file.to_string_lossy().into_owned()),
        ("ACV_NATS_USER", Principal::Manager.user(&server.namespace)),
        ("ACV_NATS_URL", format!("nats://127.0.0.1:{}", server.port)),
        ("ACV_BUS_NAMESPACE", server.namespace.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = BusConfig::from_env(&env).unwrap();
    assert!(config.amqp_url.contains(&amqp_pw), "the secret file was read");
    assert_eq!(
        config.nats_password.as_ref().map(|s| s.expose()),
        Some(nats_pw.as_str())
    );
    tracing::info!(?config, "Bus configuration.");

    // Both logins are refused (wrong user, wrong password); neither error nor log shows the password.
    let amqp = AmqpBus::connect(config.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    let nats = NatsBus::connect(config.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("Bus configuration"),
        "the capture works: {logged}"
    );
    for text in [&amqp, &nats, &logged, &format!("{config:?}")] {
        assert!(
            !text.contains(&amqp_pw) && !text.contains(&nats_pw),
            "secret leaked: {text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
