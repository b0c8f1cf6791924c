//! Connection loss: the broker connection is cut (through a TCP proxy on loopback) and both the publisher and the
//! consumer recover by themselves, without losing the message.

mod support;

use acv_bus::Transport;
use acv_protocol::Address;
use support::*;

async fn survives_connection_cut(t: Transport, broker_port: u16) {
    let proxy = Proxy::start(broker_port).await;
    let mut cfg = config(t);
    match t {
        Transport::Amqp => cfg.amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
        Transport::Nats => cfg.nats_url = format!("nats://127.0.0.1:{}", proxy.port),
        Transport::Memory => unreachable!(),
    }
    let bus = acv_bus::connect(&cfg).await.unwrap();
    let inbox = Address::Component(catalogue());
    let mut sub = bus.subscribe(&inbox).await.unwrap();
    let before = task("before the cut");
    bus.publish(&before).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.envelope.id, before.id);
    d.ack().await.unwrap();

    proxy.cut_all();

    let after = task("after the cut");
    bus.publish(&after).await.expect("publish reconnects");
    let d = next(&mut sub).await;
    assert_eq!(
        d.envelope.id, after.id,
        "consumer reconnected and got the message"
    );
    d.ack().await.unwrap();
    drop(sub);
    bus.delete_namespace().await.unwrap();
}

#[tokio::test]
async fn amqp_survives_connection_cut() {
    survives_connection_cut(Transport::Amqp, 5672).await;
}

#[tokio::test]
async fn nats_survives_connection_cut() {
    survives_connection_cut(Transport::Nats, 4222).await;
}
