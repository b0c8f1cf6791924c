//! The same behaviour suite against every transport: in-memory, RabbitMQ on 127.0.0.1:5672 and NATS JetStream on
//! 127.0.0.1:4222 (real brokers; the tests fail, not skip, when a broker is down).

mod support;

use std::{sync::Arc, time::Duration};

use acv_bus::Bus;
use acv_protocol::{Address, Body, Envelope, Heartbeat};
use support::*;

async fn round_trip(bus: Arc<dyn Bus>) {
    let mut sub = bus.subscribe(&Address::Component(catalogue())).await.unwrap();
    let env = task("Report your status").with_correlation("round-1");
    bus.publish(&env).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.envelope, env);
    assert!(!d.redelivered);
    d.ack().await.unwrap();
    assert_quiet(&mut sub, Duration::from_millis(300)).await;
}

async fn published_while_consumer_down(bus: Arc<dyn Bus>) {
    // Nobody has ever subscribed to this inbox.
    let env = task("queued while down");
    bus.publish(&env).await.unwrap();
    let mut sub = bus.subscribe(&Address::Component(catalogue())).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.envelope.id, env.id);
    d.ack().await.unwrap();
}

async fn redelivered_after_consumer_dies(bus: Arc<dyn Bus>) {
    let inbox = Address::Component(catalogue());
    let mut sub = bus.subscribe(&inbox).await.unwrap();
    let env = task("will crash");
    bus.publish(&env).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.envelope.id, env.id);
    // The consumer dies without acking.
    drop(d);
    drop(sub);
    let mut sub = bus.subscribe(&inbox).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.envelope.id, env.id, "the unacked message comes back");
    assert!(d.redelivered, "and is marked redelivered");
    d.ack().await.unwrap();
    assert_quiet(&mut sub, Duration::from_millis(1500)).await;
}

async fn nack_redelivers(bus: Arc<dyn Bus>) {
    let mut sub = bus.subscribe(&Address::Component(catalogue())).await.unwrap();
    let env = task("try again");
    bus.publish(&env).await.unwrap();
    next(&mut sub).await.nack().await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.envelope.id, env.id);
    assert!(d.redelivered);
    d.ack().await.unwrap();
}

async fn duplicates_dropped_by_envelope_id(bus: Arc<dyn Bus>) {
    let inbox = Address::Component(catalogue());
    let first = task("once only");
    let other = task("something else");
    bus.publish(&first).await.unwrap();
    // The same envelope again, as a publisher retry or a bridge would send it (raw, so the broker cannot dedup it).
    bus.publish_raw(&inbox, first.encode()).await.unwrap();
    bus.publish(&other).await.unwrap();
    let mut sub = bus.subscribe(&inbox).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.envelope.id, first.id);
    d.ack().await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.envelope.id, other.id, "the duplicate of the first was dropped");
    d.ack().await.unwrap();
    assert_quiet(&mut sub, Duration::from_millis(500)).await;
}

async fn malformed_payload_dead_lettered(bus: Arc<dyn Bus>) {
    let inbox = Address::Component(catalogue());
    let mut sub = bus.subscribe(&inbox).await.unwrap();
    bus.publish_raw(&inbox, b"{\"this is\": not an envelope".to_vec())
        .await
        .unwrap();
    let mut future = task("after garbage");
    future.v = 99;
    bus.publish_raw(&inbox, future.encode()).await.unwrap();
    let good = task("still works");
    bus.publish(&good).await.unwrap();
    // The consumer survives the garbage and gets the next valid message.
    let d = next(&mut sub).await;
    assert_eq!(d.envelope.id, good.id);
    d.ack().await.unwrap();
    let mut dead = Vec::new();
    for _ in 0..20 {
        dead.extend(bus.take_dead_letters(10).await.unwrap());
        if dead.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].payload, b"{\"this is\": not an envelope");
    assert!(dead[0].reason.contains("malformed"), "{}", dead[0].reason);
    assert_eq!(dead[0].inbox, "component.catalogue");
    assert!(
        dead[1].reason.contains("unsupported protocol version 99"),
        "{}",
        dead[1].reason
    );
    assert!(
        bus.take_dead_letters(10).await.unwrap().is_empty(),
        "taken letters are gone"
    );
}

async fn broadcast_reaches_every_subscriber(bus: Arc<dyn Bus>) {
    let mut a = bus.subscribe(&Address::Broadcast).await.unwrap();
    let mut b = bus.subscribe(&Address::Broadcast).await.unwrap();
    let hb = Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        Address::Component(catalogue()),
        Address::Broadcast,
        acv_core::now_ms(),
        Body::Heartbeat(Heartbeat {
            component: catalogue(),
            seq: 1,
            healthy: Some(true),
            peer_url: None,
            planner: None,
            safety: None,
        }),
    );
    bus.publish(&hb).await.unwrap();
    for sub in [&mut a, &mut b] {
        let d = next(sub).await;
        assert_eq!(d.envelope, hb);
        d.ack().await.unwrap();
    }
}

async fn inboxes_are_separate(bus: Arc<dyn Bus>) {
    let mut cat = bus.subscribe(&Address::Component(catalogue())).await.unwrap();
    let mut manager = bus.subscribe(&Address::Manager).await.unwrap();
    let mut to_manager = task("for the manager");
    to_manager.to = Address::Manager;
    bus.publish(&to_manager).await.unwrap();
    let d = next(&mut manager).await;
    assert_eq!(d.envelope.id, to_manager.id);
    d.ack().await.unwrap();
    assert_quiet(&mut cat, Duration::from_millis(300)).await;
}

/// Runs a case on a fresh namespace of `transport`, then deletes the namespace from the broker.
async fn run<F: std::future::Future<Output = ()>>(
    transport: acv_bus::Transport,
    case: impl FnOnce(Arc<dyn Bus>) -> F,
) {
    let bus = bus(transport).await;
    case(bus.clone()).await;
    bus.delete_namespace().await.unwrap();
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[tokio::test] async fn $name() { super::run(acv_bus::Transport::Memory, super::$name).await } )* }
        mod amqp { $( #[tokio::test] async fn $name() { super::run(acv_bus::Transport::Amqp, super::$name).await } )* }
        mod nats { $( #[tokio::test] async fn $name() { super::run(acv_bus::Transport::Nats, super::$name).await } )* }
    };
}

suite!(
    round_trip,
    published_while_consumer_down,
    redelivered_after_consumer_dies,
    nack_redelivers,
    duplicates_dropped_by_envelope_id,
    malformed_payload_dead_lettered,
    broadcast_reaches_every_subscriber,
    inboxes_are_separate,
);
