//! Issue #11 end to end: the real processes — `acv-local` running the shop, `acv-manager serve`, one `acv-sidecar`
//! per component (rules planner), `acvctl` against the manager's API, `acv-manager task send` / `bus dead-letters`
//! as bus clients — each with its own per-agent broker user and `ACV_BUS_VERIFY_SENDER=true`, on RabbitMQ (a fresh
//! vhost whose users the test creates and deletes) and on NATS (a private nats-server with the generated
//! authorization config). Checked by the test's own measurement through the runtime's control API:
//!
//! 0. the manager's API requires its bearer token: `acvctl` without it (or with a wrong one) is refused;
//! 1. a goal created with `acvctl goal create --wait` is achieved (catalogue's CPU under 30 % of its limit);
//! 2. an imperative task sent with `acvctl task send` runs (front-end scaled to 2);
//! 3. an operator's client on the bus (`acv-manager task send` with the operator's user) tasks front-end directly;
//! 4. a task forged with front-end's sidecar credentials but claiming `from: manager` is not executed: it is
//!    dead-lettered with the reason (read with the manager's user), counted in catalogue's sidecar's
//!    `acv_bus_sender_rejected_total`, and catalogue's replicas are only what the legitimate tasks set.

mod common;
mod manager_stack;

use std::time::Duration;

use acv_bus::{Principal, Transport};
use acv_protocol::{Address, Body, ComponentName, Envelope, Mechanism, TaskBody, TaskSpec};
use manager_stack::{ManagerTimings, Restricted, Stack};

/// One scenario at a time: each runs a shop, a manager, two sidecars and a CPU stressor.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CPU_GOAL: &str = "Reduce the average CPU usage of Catalogue to under 30% of resource limit.";

fn name(s: &str) -> ComponentName {
    ComponentName::new(s).unwrap()
}

fn scale_text(n: u32) -> String {
    format!("Scale replicas to {n} for your microservice component.")
}

/// A well-formed task to catalogue that claims to come from the manager.
fn forged_task(n: u32) -> Envelope {
    Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        Address::Manager,
        Address::Component(name("catalogue")),
        acv_core::now_ms(),
        Body::Task(TaskBody {
            task_id: uuid::Uuid::new_v4().to_string(),
            component: name("catalogue"),
            spec: TaskSpec::Imperative { text: scale_text(n) },
            mechanism: Mechanism::Solo,
        }),
    )
}

async fn scenario(transport: Transport) {
    let _turn = TURN.lock().await;
    let restricted = Restricted::create(transport, &["catalogue", "front-end"]);
    let mut stack = Stack::start_restricted(restricted, ManagerTimings::default());
    // Catalogue over its CPU objective: a stressor next to its pod.
    let before = stack.stress_catalogue().await;
    stack.start_sidecar("catalogue");
    stack.start_sidecar("front-end");
    stack.wait_agents_live(&["catalogue", "front-end"], 60).await;

    // 0. The manager's API requires its bearer token: without it acvctl is refused and nothing is created.
    let refused = stack
        .acvctl_with_token(None, &["goal", "create", "--name", "no-token", CPU_GOAL])
        .await;
    assert_ne!(
        refused.status.code(),
        Some(0),
        "{}",
        common::output_text(&refused)
    );
    assert!(
        common::output_text(&refused).contains("bearer token"),
        "{}",
        common::output_text(&refused)
    );
    let wrong = stack
        .acvctl_with_token(
            Some("not-the-token"),
            &["task", "send", "--to", "catalogue", &scale_text(9)],
        )
        .await;
    assert_ne!(wrong.status.code(), Some(0), "{}", common::output_text(&wrong));
    assert_eq!(stack.api_get("/v1/goals/no-token").await.0, 404);

    // 1. A goal, achieved by measurement.
    let goal = format!("cpu-sec-{transport}");
    let out = stack
        .acvctl(&[
            "goal",
            "create",
            "--name",
            &goal,
            "--deadline",
            "110s",
            "--wait",
            "--timeout",
            "150s",
            CPU_GOAL,
        ])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "acvctl goal create (0 = achieved), CPU before {before:.1}%:\n{}\n{}",
        common::output_text(&out),
        stack.story(&goal).await
    );
    assert_eq!(stack.goal(&goal).await["goal"]["state"], "achieved");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = stack.cpu("catalogue").await;
    let cat_replicas = stack.replicas("catalogue").await;
    eprintln!(
        "{transport}: restricted users: catalogue CPU {before:.1}% -> {after:.1}% of limit, {cat_replicas} replicas"
    );
    assert!(after < 30.0, "catalogue CPU {after:.1}% of limit after the goal");

    // 2. An imperative task through the manager's API (the manager sends it with its own user).
    let out = stack
        .acvctl(&[
            "task",
            "send",
            "--to",
            "front-end",
            "--timeout",
            "90s",
            &scale_text(2),
        ])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "acvctl task send:\n{}",
        common::output_text(&out)
    );
    assert_eq!(
        stack.replicas("front-end").await,
        2,
        "{}",
        common::output_text(&out)
    );

    // 3. An operator's client on the bus, with the operator's user.
    let out = stack
        .manager_cli(
            &Principal::Operator,
            &[
                "task",
                "send",
                "--to",
                "front-end",
                "--timeout",
                "90s",
                &scale_text(3),
            ],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "acv-manager task send as operator:\n{}",
        common::output_text(&out)
    );
    assert_eq!(
        stack.replicas("front-end").await,
        3,
        "{}",
        common::output_text(&out)
    );

    // 4. front-end's sidecar credentials forge a task "from the manager" to catalogue.
    let restricted = stack.restricted().expect("restricted users");
    let fe = acv_bus::connect(&restricted.config(&Principal::Component(name("front-end"))))
        .await
        .expect("front-end's user connects");
    let forged_n = cat_replicas + 4;
    let forged = forged_task(forged_n);
    fe.publish_raw(&Address::Component(name("catalogue")), forged.encode())
        .await
        .expect("the broker takes the message (in front-end's name)");
    // The manager's user reads the dead letters with the real CLI.
    let mut seen = String::new();
    let mut letter = None;
    for _ in 0..60 {
        let out = stack
            .manager_cli(&Principal::Manager, &["bus", "dead-letters"])
            .await;
        seen.push_str(&common::output_text(&out));
        letter = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains(&forged.id))
            .map(str::to_owned);
        if letter.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let letter =
        letter.unwrap_or_else(|| panic!("the forged task was not dead-lettered; the CLI said:\n{seen}"));
    eprintln!(
        "{transport}: dead letter: {}",
        letter.split('\t').take(2).collect::<Vec<_>>().join("\t")
    );
    assert!(
        letter.contains("sender mismatch") && letter.contains("front-end"),
        "dead-letter reason: {letter}"
    );
    // ... and counted by catalogue's sidecar.
    let rejected = stack
        .sidecar_metric("catalogue", "acv_bus_sender_rejected_total")
        .await;
    assert_eq!(
        rejected, 1.0,
        "acv_bus_sender_rejected_total of catalogue's sidecar"
    );
    // A message is either delivered to the handler or dead-lettered, never both: nothing was scaled.
    assert_eq!(stack.replicas("catalogue").await, cat_replicas);
    // A legitimate task after the forged one: once it has run, catalogue's sidecar has been through its inbox.
    let legit_n = cat_replicas + 1;
    let out = stack
        .acvctl(&[
            "task",
            "send",
            "--to",
            "catalogue",
            "--timeout",
            "90s",
            &scale_text(legit_n),
        ])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "acvctl task send:\n{}",
        common::output_text(&out)
    );
    let n = stack.replicas("catalogue").await;
    assert_eq!(
        n, legit_n,
        "catalogue's replicas (the forged task asked for {forged_n})"
    );
    drop(fe);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_users_end_to_end_over_rabbitmq() {
    scenario(Transport::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_users_end_to_end_over_nats() {
    scenario(Transport::Nats).await;
}
