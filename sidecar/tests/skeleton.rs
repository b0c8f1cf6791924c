//! Walking skeleton: a task published to the component's inbox is answered with a truthful report, over the
//! in-memory bus and the real brokers.

use std::{sync::Arc, time::Duration};

use acv_bus::{Bus, BusConfig, Transport};
use acv_protocol::{Address, Body, ComponentName, Envelope, Mechanism, ReportStatus, TaskBody, TaskSpec};
use acv_sidecar::{Agent, handler::NoPlanner};
use tokio_util::sync::CancellationToken;

async fn bus(t: Transport) -> Arc<dyn Bus> {
    let mut c = BusConfig::default().with_transport(t);
    c.namespace = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    c.inbox_expiry = Some(Duration::from_secs(120));
    acv_bus::connect(&c).await.unwrap()
}

async fn task_gets_report(t: Transport) {
    let bus = bus(t).await;
    let catalogue = ComponentName::new("catalogue").unwrap();
    let shutdown = CancellationToken::new();
    let agent = Agent::new(
        catalogue.clone(),
        bus.clone(),
        Arc::new(NoPlanner),
        Duration::from_secs(60),
    );
    let running = tokio::spawn(agent.start(shutdown.clone()).await.unwrap());

    let me = Address::Client(ComponentName::new("test-client").unwrap());
    let mut replies = bus.subscribe(&me).await.unwrap();
    let task = Envelope::new(
        "task-1",
        me.clone(),
        Address::Component(catalogue.clone()),
        acv_core::now_ms(),
        Body::Task(TaskBody {
            task_id: "t-1".into(),
            component: catalogue.clone(),
            spec: TaskSpec::Imperative {
                text: "Report your status".into(),
            },
            mechanism: Mechanism::Solo,
        }),
    );
    bus.publish(&task).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(20), replies.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.envelope.correlation_id.as_deref(), Some("task-1"));
    assert_eq!(d.envelope.from, Address::Component(catalogue.clone()));
    let Body::Report(report) = &d.envelope.body else {
        panic!("expected a report, got {:?}", d.envelope.body)
    };
    assert_eq!(report.task_id, "t-1");
    // No planner is wired in: the sidecar must say so, not pretend it did the work.
    assert_eq!(report.status, ReportStatus::Issue);
    assert!(
        report.message.contains("no planner configured"),
        "{}",
        report.message
    );
    assert!(report.steps.is_empty());
    d.ack().await.unwrap();

    // An expired task is dropped without a report.
    let expired = Envelope {
        id: "task-2".into(),
        deadline_ms: Some(1),
        ..task.clone()
    };
    bus.publish(&expired).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(800), replies.next())
            .await
            .is_err()
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
    drop(replies);
    bus.delete_namespace().await.unwrap();
}

#[tokio::test]
async fn memory_task_gets_report() {
    task_gets_report(Transport::Memory).await;
}

#[tokio::test]
async fn amqp_task_gets_report() {
    task_gets_report(Transport::Amqp).await;
}

#[tokio::test]
async fn nats_task_gets_report() {
    task_gets_report(Transport::Nats).await;
}
