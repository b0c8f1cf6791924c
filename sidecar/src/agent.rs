//! The sidecar's bus loop: receive tasks for our component, handle them, report to the sender, then ack.
//! The ack comes after the report is published, so a crash in between redelivers the task rather than losing it.

use std::{sync::Arc, time::Duration};

use acv_bus::{Bus, BusError, Delivery};
use acv_protocol::{Address, Body, ComponentName, Envelope, Heartbeat, Registration};
use acv_telemetry::metrics::{CounterName, count};
use tokio_util::sync::CancellationToken;

use crate::handler::TaskHandler;

/// A running sidecar agent.
pub struct Agent {
    component: ComponentName,
    bus: Arc<dyn Bus>,
    handler: Arc<dyn TaskHandler>,
    heartbeat: Duration,
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// === impl Agent ===

impl Agent {
    /// An agent for `component` on `bus`.
    pub fn new(
        component: ComponentName,
        bus: Arc<dyn Bus>,
        handler: Arc<dyn TaskHandler>,
        heartbeat: Duration,
    ) -> Self {
        Self { component, bus, handler, heartbeat }
    }

    fn me(&self) -> Address {
        Address::Component(self.component.clone())
    }

    /// Subscribes to the inbox and announces the sidecar. Returns the running loop, which ends when `shutdown`
    /// fires (after finishing the task in hand) or the bus closes.
    pub async fn start(
        self,
        shutdown: CancellationToken,
    ) -> Result<impl std::future::Future<Output = Result<(), BusError>>, BusError> {
        let mut inbox = self.bus.subscribe(&self.me()).await?;
        let register = Envelope::new(
            new_id(),
            self.me(),
            Address::Broadcast,
            acv_core::now_ms(),
            Body::Register(Registration {
                component: self.component.clone(),
                peer_url: None,
                planner: self.handler.planner_name(),
                version: acv_core::VERSION.into(),
            }),
        );
        self.bus.publish(&register).await?;
        tracing::info!(component = %self.component, transport = %self.bus.transport(), "Sidecar registered.");
        Ok(async move {
            let mut ticker = tokio::time::interval(self.heartbeat);
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = ticker.tick() => {
                        seq += 1;
                        let hb = Envelope::new(new_id(), self.me(), Address::Broadcast, acv_core::now_ms(),
                            Body::Heartbeat(Heartbeat { component: self.component.clone(), seq, healthy: None }));
                        if let Err(error) = self.bus.publish(&hb).await {
                            tracing::warn!(%error, "Heartbeat publish failed.");
                        }
                    }
                    next = inbox.next() => match next {
                        None => return Err(BusError::Closed),
                        Some(Err(error)) => tracing::warn!(%error, "Inbox error."),
                        Some(Ok(delivery)) => self.on_delivery(delivery).await,
                    },
                }
            }
        })
    }

    async fn on_delivery(&self, delivery: Delivery) {
        let env = &delivery.envelope;
        let now = acv_core::now_ms();
        let task = match &env.body {
            Body::Task(task) if env.is_expired(now) => {
                tracing::warn!(id = %env.id, task_id = %task.task_id, "Dropped task past its deadline.");
                count(CounterName::TasksHandled, &[("outcome", "expired")], 1);
                None
            }
            Body::Task(task) => Some(task.clone()),
            other => {
                tracing::warn!(id = %env.id, kind = ?other.kind(), "Ignored a non-task message in the inbox.");
                None
            }
        };
        if let Some(task) = task {
            tracing::info!(task_id = %task.task_id, from = %env.from, text = task.spec.text(), "Task received.");
            let report = self.handler.handle(&self.component, &task).await;
            let reply = Envelope::new(new_id(), self.me(), env.from.clone(), acv_core::now_ms(), Body::Report(report))
                .with_correlation(env.id.clone());
            if let Err(error) = self.bus.publish(&reply).await {
                // Not acking makes the broker redeliver the task, so the report is retried rather than lost.
                tracing::error!(%error, task_id = %task.task_id, "Report publish failed; task left unacked.");
                count(CounterName::TasksHandled, &[("outcome", "report_failed")], 1);
                if let Err(error) = delivery.nack().await {
                    tracing::warn!(%error, "Nack failed.");
                }
                return;
            }
            count(CounterName::TasksHandled, &[("outcome", "reported")], 1);
        }
        if let Err(error) = delivery.ack().await {
            tracing::warn!(%error, "Ack failed; the message may be redelivered and will be deduplicated.");
        }
    }
}
