//! Broker-verified identities on the real brokers: RabbitMQ on 127.0.0.1:5672 (uniquely named vhost and users,
//! deleted afterwards) and a private nats-server started by the test with per-agent users. A forged sender is
//! dead-lettered with the reason and never delivered; one sidecar's credentials cannot read another's inbox nor
//! publish as another component.

mod support;

use std::{sync::OnceLock, time::Duration};

use acv_bus::{
    Bus, Principal,
    amqp::AmqpBus,
    nats::NatsBus,
    testing::{NatsServer, RabbitUsers},
};
use acv_protocol::{Address, Body, ComponentName, Envelope, Heartbeat, ReportBody, ReportStatus};
use support::*;

fn front_end() -> ComponentName {
    ComponentName::new("front-end").unwrap()
}

fn principals() -> Vec<Principal> {
    vec![
        Principal::Manager,
        Principal::Operator,
        Principal::Component(catalogue()),
        Principal::Component(front_end()),
    ]
}

fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| acv_telemetry::metrics::install_prometheus().unwrap())
}

fn report(from: &ComponentName) -> Envelope {
    Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        Address::Component(from.clone()),
        Address::Manager,
        acv_core::now_ms(),
        Body::Report(ReportBody {
            task_id: "t-1".into(),
            component: from.clone(),
            status: ReportStatus::Response,
            message: "done".into(),
            evidence: Vec::new(),
            steps: Vec::new(),
            diagnosis: None,
        }),
    )
}

fn heartbeat(from: &ComponentName) -> Envelope {
    Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        Address::Component(from.clone()),
        Address::Broadcast,
        acv_core::now_ms(),
        Body::Heartbeat(Heartbeat {
            component: from.clone(),
            seq: 1,
            healthy: Some(true),
            peer_url: Some("https://attacker.example:1".into()),
            planner: None,
            safety: None,
        }),
    )
}

/// The dead letter of envelope `id`, waiting until it shows up.
async fn dead_letter_of(admin: &dyn Bus, id: &str) -> acv_bus::DeadLetter {
    for _ in 0..20 {
        for letter in admin.take_dead_letters(50).await.unwrap() {
            if Envelope::decode(&letter.payload).is_ok_and(|e| e.id == id) {
                return letter;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no dead letter for {id}");
}

/// The scenario both transports must pass. `manager`, `cat`, `fe`: buses connected as those principals.
async fn forged_senders_are_rejected(manager: &dyn Bus, cat: &dyn Bus, fe: &dyn Bus) {
    let cat_inbox = Address::Component(catalogue());
    let mut inbox = cat.subscribe(&cat_inbox).await.unwrap();
    let mut mgr_inbox = manager.subscribe(&Address::Manager).await.unwrap();
    let mut mgr_broadcast = manager.subscribe(&Address::Broadcast).await.unwrap();

    // The real manager tasks catalogue; catalogue reports back: the restricted users work.
    let legit = task("Report your status");
    manager.publish(&legit).await.unwrap();
    let d = next(&mut inbox).await;
    assert_eq!(d.envelope.id, legit.id);
    d.ack().await.unwrap();
    let answer = report(&catalogue());
    cat.publish(&answer).await.unwrap();
    let d = next(&mut mgr_inbox).await;
    assert_eq!(d.envelope.id, answer.id);
    d.ack().await.unwrap();

    // front-end forges a well-formed task "from the manager". Its own bus refuses outright ...
    let forged = task("scale to 0, says the 'manager'");
    let err = fe.publish(&forged).await.unwrap_err().to_string();
    assert!(err.contains("may not send as manager"), "{err}");
    // ... and sent anyway (raw, under its own broker identity) it never reaches catalogue's handler.
    fe.publish_raw(&cat_inbox, forged.encode()).await.unwrap();
    assert_quiet(&mut inbox, Duration::from_millis(1500)).await;
    let letter = dead_letter_of(manager, &forged.id).await;
    assert_eq!(letter.inbox, "component.catalogue");
    assert!(
        letter.reason.contains("sender mismatch") && letter.reason.contains("manager"),
        "{}",
        letter.reason
    );

    // A report in catalogue's name, sent with front-end's credentials: rejected too.
    let fake_report = report(&catalogue());
    fe.publish_raw(&Address::Manager, fake_report.encode())
        .await
        .unwrap();
    assert_quiet(&mut mgr_inbox, Duration::from_millis(1500)).await;
    let letter = dead_letter_of(manager, &fake_report.id).await;
    assert!(letter.reason.contains("component/catalogue"), "{}", letter.reason);

    // A heartbeat in catalogue's name (it would point peers at another URL): dropped; the real one arrives.
    fe.publish_raw(&Address::Broadcast, heartbeat(&catalogue()).encode())
        .await
        .unwrap();
    let real = heartbeat(&catalogue());
    cat.publish(&real).await.unwrap();
    let d = next(&mut mgr_broadcast).await;
    assert_eq!(
        d.envelope.id, real.id,
        "the forged heartbeat must not be delivered"
    );

    // front-end cannot consume catalogue's inbox.
    let stolen = tokio::time::timeout(Duration::from_secs(20), fe.subscribe(&cat_inbox)).await;
    assert!(
        !matches!(stolen, Ok(Ok(_))),
        "front-end subscribed to catalogue's inbox"
    );
    let rendered = metrics().render();
    let transport = manager.transport().as_str();
    assert!(
        rendered.contains(&format!(
            "acv_bus_sender_rejected_total{{transport=\"{transport}\"}}"
        )),
        "{rendered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_senders_are_broker_verified() {
    metrics();
    let users = RabbitUsers::create(&principals()).expect("rabbitmqctl must work");
    let connect = |p: Principal| {
        let c = users.config(&p);
        async move { AmqpBus::connect(c).await.unwrap() }
    };
    // The manager first: it declares the namespace's topology, which the others may only use.
    let manager = connect(Principal::Manager).await;
    let cat = connect(Principal::Component(catalogue())).await;
    let fe = connect(Principal::Component(front_end())).await;
    forged_senders_are_rejected(&manager, &cat, &fe).await;

    // RabbitMQ itself refuses a `user_id` that is not the connection's user.
    let conn = lapin::Connection::connect(
        &users.config(&Principal::Component(front_end())).amqp_url,
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let props = lapin::BasicProperties::default()
        .with_user_id(Principal::Component(catalogue()).user(&users.namespace).into());
    let sent = match ch
        .basic_publish(
            format!("{}.inbox", users.namespace).into(),
            "manager".into(),
            Default::default(),
            &report(&catalogue()).encode(),
            props,
        )
        .await
    {
        Ok(confirm) => confirm.await.map(|c| c.is_ack()),
        Err(e) => Err(e),
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sent.is_err() || !ch.status().connected(),
        "a spoofed user_id was accepted: {sent:?}"
    );
    // And a sidecar cannot read the dead letters (only the manager may).
    assert!(fe.take_dead_letters(1).await.is_err());
    let _outcome = manager.delete_namespace().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_senders_are_broker_verified() {
    metrics();
    let server = NatsServer::start(&principals(), "").expect("nats-server must start");
    let connect = |p: Principal| {
        let c = server.config(&p);
        async move { NatsBus::connect(c).await.unwrap() }
    };
    let manager = connect(Principal::Manager).await;
    let cat = connect(Principal::Component(catalogue())).await;
    let fe = connect(Principal::Component(front_end())).await;

    // A raw client with front-end's credentials tries to eavesdrop on catalogue's replies and on the inbox
    // subjects, and to publish under the manager's sender tokens: the server's permissions stop all three.
    let fe_user = Principal::Component(front_end()).user(&server.namespace);
    let raw = async_nats::ConnectOptions::new()
        .user_and_password(
            fe_user.clone(),
            server.password(&Principal::Component(front_end())),
        )
        .custom_inbox_prefix(format!("_INBOX.{fe_user}"))
        .connect(format!("nats://127.0.0.1:{}", server.port))
        .await
        .unwrap();
    let ns = server.namespace.clone();
    let mut spy_replies = raw
        .subscribe(format!("_INBOX.{ns}.component.catalogue.>"))
        .await
        .unwrap();
    let mut spy_inbox = raw.subscribe(format!("{ns}.inbox.>")).await.unwrap();
    raw.flush().await.unwrap();

    forged_senders_are_rejected(&manager, &cat, &fe).await;

    let mut js = async_nats::jetstream::new(raw.clone());
    js.set_timeout(Duration::from_secs(2));
    let forged = task("forged on the manager's subject");
    let subject = format!("{ns}.inbox.component.catalogue.manager._");
    let stored = match js.publish(subject, forged.encode().into()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    assert!(!stored, "the server stored a message on another sender's subject");
    use futures::StreamExt;
    for (name, sub) in [("replies", &mut spy_replies), ("inbox", &mut spy_inbox)] {
        let got = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(
            !matches!(got, Ok(Some(_))),
            "front-end eavesdropped on catalogue's {name}"
        );
    }
    let mut inbox = cat.subscribe(&Address::Component(catalogue())).await.unwrap();
    assert_quiet(&mut inbox, Duration::from_millis(1000)).await;
    drop(inbox);
    let _outcome = manager.delete_namespace().await;
}
