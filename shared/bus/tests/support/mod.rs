//! Helpers for the bus behaviour suite: per-test namespaces on the real brokers, sample envelopes, a killable
//! TCP proxy for connection-loss tests.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use acv_bus::{Bus, BusConfig, Subscription, Transport};
use acv_protocol::{Address, Body, ComponentName, Envelope, Mechanism, TaskBody, TaskSpec};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub const WAIT: Duration = Duration::from_secs(20);

pub fn config(transport: Transport) -> BusConfig {
    let mut c = BusConfig::default().with_transport(transport);
    if let Ok(url) = std::env::var("ACV_AMQP_URL") {
        c.amqp_url = url;
    }
    if let Ok(url) = std::env::var("ACV_NATS_URL") {
        c.nats_url = url;
    }
    // A fresh namespace per test keeps tests independent on a shared broker; idle queues and streams expire.
    c.namespace = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    c.inbox_expiry = Some(Duration::from_secs(120));
    c.ack_wait = Duration::from_secs(1);
    c.reconnect_max_backoff = Duration::from_millis(500);
    c
}

pub async fn bus(transport: Transport) -> Arc<dyn Bus> {
    acv_bus::connect(&config(transport))
        .await
        .unwrap_or_else(|e| panic!("{transport} broker must be up: {e}"))
}

pub fn catalogue() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

pub fn task(text: &str) -> Envelope {
    let body = Body::Task(TaskBody {
        task_id: uuid::Uuid::new_v4().to_string(),
        component: catalogue(),
        spec: TaskSpec::Imperative { text: text.into() },
        mechanism: Mechanism::Solo,
    });
    Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        Address::Manager,
        Address::Component(catalogue()),
        acv_core::now_ms(),
        body,
    )
}

pub async fn next(sub: &mut Subscription) -> acv_bus::Delivery {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no delivery within the wait")
        .expect("subscription closed")
        .expect("delivery error")
}

/// Asserts nothing arrives for a short while.
pub async fn assert_quiet(sub: &mut Subscription, for_: Duration) {
    if let Ok(Some(d)) = tokio::time::timeout(for_, sub.next()).await {
        panic!("unexpected delivery: {:?}", d.map(|d| d.envelope));
    }
}

/// A TCP proxy on 127.0.0.1 whose open connections can be cut, to simulate a broker connection loss.
pub struct Proxy {
    pub port: u16,
    cut: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = watch::channel(0u64);
        let cut_tx = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut_rx = cut_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self { port, cut }
    }

    /// Drops every connection open through the proxy; new ones are accepted again.
    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}
