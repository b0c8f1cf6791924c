//! Black-box tests of `acv-manager task send`: the real binary against a real broker, with a responder standing in
//! for the sidecar (the sidecar's own loop is tested in the sidecar crate).

use std::{process::Command, sync::Arc};

use acv_bus::{Bus, BusConfig, Transport};
use acv_protocol::{Address, Body, ComponentName, Envelope, Evidence, ReportBody, ReportStatus};

fn namespace() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn bus(t: Transport, ns: &str) -> Arc<dyn Bus> {
    let mut c = BusConfig::default().with_transport(t);
    c.namespace = ns.to_owned();
    acv_bus::connect(&c).await.unwrap()
}

fn cli(t: Transport, ns: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_acv-manager"))
        .env("ACV_BUS_NAMESPACE", ns)
        .env("RUST_LOG", "warn")
        .arg("--bus")
        .arg(t.as_str())
        .args(args)
        .output()
        .unwrap()
}

/// Answers every task in the catalogue inbox with a RESPONSE echoing the task text.
async fn responder(bus: Arc<dyn Bus>) {
    let me = Address::Component(ComponentName::new("catalogue").unwrap());
    let mut inbox = bus.subscribe(&me).await.unwrap();
    while let Some(Ok(d)) = inbox.next().await {
        if let Body::Task(task) = &d.envelope.body {
            let report = ReportBody {
                diagnosis: None,
                task_id: task.task_id.clone(),
                component: task.component.clone(),
                status: ReportStatus::Response,
                message: format!("did: {}", task.spec.text()),
                evidence: vec![Evidence {
                    name: "replicas".into(),
                    value: 3.into(),
                }],
                steps: vec![],
            };
            let reply = Envelope::new(
                "r-1",
                me.clone(),
                d.envelope.from.clone(),
                acv_core::now_ms(),
                Body::Report(report),
            )
            .with_correlation(d.envelope.id.clone());
            bus.publish(&reply).await.unwrap();
        }
        d.ack().await.unwrap();
    }
}

async fn prints_report(t: Transport) {
    let ns = namespace();
    let bus = bus(t, &ns).await;
    let r = tokio::spawn(responder(bus.clone()));
    let out = tokio::task::spawn_blocking({
        let ns = ns.clone();
        move || {
            cli(
                t,
                &ns,
                &[
                    "task",
                    "send",
                    "--to",
                    "catalogue",
                    "--timeout",
                    "20s",
                    "Report your status",
                ],
            )
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("RESPONSE from catalogue: did: Report your status"),
        "{stdout}"
    );
    assert!(stdout.contains("evidence replicas: 3"), "{stdout}");
    r.abort();
    bus.delete_namespace().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_prints_report() {
    prints_report(Transport::Amqp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_prints_report() {
    prints_report(Transport::Nats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn times_out_without_sidecar() {
    let ns = namespace();
    let out = tokio::task::spawn_blocking({
        let ns = ns.clone();
        move || {
            cli(
                Transport::Nats,
                &ns,
                &["task", "send", "--to", "catalogue", "--timeout", "1s", "anyone?"],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no report from catalogue"),
        "{out:?}"
    );
    bus(Transport::Nats, &ns).await.delete_namespace().await.unwrap();
}

#[test]
fn rejects_bad_component_name() {
    let out = cli(
        Transport::Memory,
        "x",
        &["task", "send", "--to", "Not/Valid", "hi"],
    );
    assert_eq!(out.status.code(), Some(2), "clap usage error: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lowercase"),
        "{out:?}"
    );
}

#[test]
fn rejects_bad_env_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_acv-manager"))
        .env("ACV_BUS_ACK_WAIT", "soon")
        .args(["--bus", "memory", "bus", "dead-letters"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ACV_BUS_ACK_WAIT"),
        "{out:?}"
    );
}
