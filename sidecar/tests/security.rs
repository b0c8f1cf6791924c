//! The sidecar with restricted broker users and sender verification, on both real brokers: an operator's task is
//! answered end to end; a task forged by another component's credentials is never handled (dead-lettered with
//! the reason); a peer that tasks under its own name is refused by the task policy before any planning.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use acv_bus::{
    BusConfig, Principal, Subscription,
    testing::{NatsServer, RabbitUsers},
};
use acv_protocol::{
    Address, Body, ComponentName, Envelope, Mechanism, ReportBody, ReportStatus, TaskBody, TaskSpec,
    Violation,
};
use acv_sidecar::{
    Agent,
    handler::{NoPlanner, TaskHandler},
};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

/// Counts the tasks that reached planning.
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl TaskHandler for Counting {
    async fn handle(&self, component: &ComponentName, task: &TaskBody) -> ReportBody {
        self.0.fetch_add(1, Ordering::SeqCst);
        NoPlanner.handle(component, task).await
    }
    async fn mitigate(&self, component: &ComponentName, work_id: &str, v: &[Violation]) -> ReportBody {
        NoPlanner.mitigate(component, work_id, v).await
    }
    fn planner_name(&self) -> String {
        "counting".into()
    }
}

fn name(s: &str) -> ComponentName {
    ComponentName::new(s).unwrap()
}

fn task(from: Address, text: &str) -> Envelope {
    Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        from,
        Address::Component(name("catalogue")),
        acv_core::now_ms(),
        Body::Task(TaskBody {
            task_id: uuid::Uuid::new_v4().to_string(),
            component: name("catalogue"),
            spec: TaskSpec::Imperative { text: text.into() },
            mechanism: Mechanism::Solo,
        }),
    )
}

async fn report(inbox: &mut Subscription, wait: Duration) -> Option<(Envelope, ReportBody)> {
    let d = tokio::time::timeout(wait, inbox.next()).await.ok()??.ok()?;
    let env = d.envelope.clone();
    d.ack().await.unwrap();
    match env.body.clone() {
        Body::Report(r) => Some((env, r)),
        _ => None,
    }
}

fn principals() -> Vec<Principal> {
    vec![
        Principal::Manager,
        Principal::Operator,
        Principal::Component(name("catalogue")),
        Principal::Component(name("front-end")),
    ]
}

async fn scenario(config: impl Fn(&Principal) -> BusConfig) {
    let connect = |p: Principal| {
        let c = config(&p);
        async move { acv_bus::connect(&c).await.unwrap() }
    };
    let manager = connect(Principal::Manager).await;
    let operator = connect(Principal::Operator).await;
    let cat = connect(Principal::Component(name("catalogue"))).await;
    let fe = connect(Principal::Component(name("front-end"))).await;

    let handler = Arc::new(Counting::default());
    let shutdown = CancellationToken::new();
    let agent = Agent::new(
        name("catalogue"),
        cat.clone(),
        handler.clone(),
        Duration::from_secs(60),
    );
    let running = tokio::spawn(agent.start(shutdown.clone()).await.unwrap());

    // End to end with restricted users: an operator's client tasks catalogue and gets the report.
    let me = Address::Client(name("cli-sec"));
    let mut replies = operator.subscribe(&me).await.unwrap();
    let legit = task(me.clone(), "Report your status");
    operator.publish(&legit).await.unwrap();
    let (env, r) = report(&mut replies, Duration::from_secs(20))
        .await
        .expect("a report");
    assert_eq!(env.correlation_id.as_deref(), Some(legit.id.as_str()));
    assert_eq!(r.component, name("catalogue"));
    assert_eq!(handler.0.load(Ordering::SeqCst), 1);

    // front-end's credentials forge the same task "from the operator's client": never handled, no report.
    let forged = task(me.clone(), "Scale to 0 replicas");
    fe.publish_raw(&Address::Component(name("catalogue")), forged.encode())
        .await
        .unwrap();
    assert!(report(&mut replies, Duration::from_millis(2000)).await.is_none());
    assert_eq!(
        handler.0.load(Ordering::SeqCst),
        1,
        "a forged task reached planning"
    );
    let mut letters = Vec::new();
    for _ in 0..20 {
        letters.extend(manager.take_dead_letters(20).await.unwrap());
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let letter = letters
        .iter()
        .find(|l| Envelope::decode(&l.payload).is_ok_and(|e| e.id == forged.id))
        .expect("the forged task is dead-lettered");
    assert!(letter.reason.contains("sender mismatch"), "{}", letter.reason);

    // front-end tasks catalogue under its own, verified name: the policy refuses it, with a clear report.
    let fe_addr = Address::Component(name("front-end"));
    let mut fe_inbox = fe.subscribe(&fe_addr).await.unwrap();
    fe.publish(&task(fe_addr.clone(), "Scale to 5 replicas"))
        .await
        .unwrap();
    let (_, r) = report(&mut fe_inbox, Duration::from_secs(20))
        .await
        .expect("a refusal");
    assert_eq!(r.status, ReportStatus::Issue);
    assert!(r.message.contains("not allowed to send tasks"), "{}", r.message);
    assert_eq!(
        handler.0.load(Ordering::SeqCst),
        1,
        "a peer's task reached planning"
    );

    shutdown.cancel();
    let _outcome = running.await;
    let _outcome = manager.delete_namespace().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_restricted_users() {
    let users = RabbitUsers::create(&principals()).expect("rabbitmqctl must work");
    scenario(|p| users.config(p)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restricted_users() {
    let server = NatsServer::start(&principals(), "").expect("nats-server must start");
    scenario(|p| server.config(p)).await;
}
