//! A bus client that sends one task and waits for the report answering it.

use std::{sync::Arc, time::Duration};

use acv_bus::{Bus, BusError, Subscription};
use acv_protocol::{Address, Body, ComponentName, Envelope, Mechanism, ReportBody, TaskBody, TaskSpec};

/// Errors from a task round trip.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// No report arrived in time.
    #[error("no report from {component} within {waited:?} (is its sidecar running on this bus?)")]
    Timeout {
        /// The component asked.
        component: ComponentName,
        /// How long we waited.
        waited: Duration,
    },
}

/// A client with its own reply inbox.
pub struct Client {
    bus: Arc<dyn Bus>,
    me: Address,
    inbox: Subscription,
}

/// A received report with the envelope it came in.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The envelope (sender, timing, correlation).
    pub envelope: Envelope,
    /// The report.
    pub report: ReportBody,
}

// === impl Client ===

impl Client {
    /// Creates a reply inbox `client/cli-<random>` and subscribes to it.
    pub async fn connect(bus: Arc<dyn Bus>) -> Result<Self, ClientError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name =
            ComponentName::new(format!("cli-{}", &id[..12])).map_err(|e| BusError::Config(e.to_string()))?;
        let me = Address::Client(name);
        let inbox = bus.subscribe(&me).await?;
        Ok(Self { bus, me, inbox })
    }

    /// This client's address.
    pub fn address(&self) -> &Address {
        &self.me
    }

    /// Publishes an imperative task to `component` and returns the task envelope (without waiting).
    pub async fn send(
        &self,
        component: &ComponentName,
        text: &str,
        timeout: Duration,
    ) -> Result<Envelope, ClientError> {
        let now = acv_core::now_ms();
        let task = TaskBody {
            task_id: uuid::Uuid::now_v7().to_string(),
            component: component.clone(),
            spec: TaskSpec::Imperative {
                text: text.to_owned(),
            },
            mechanism: Mechanism::Solo,
        };
        let deadline = now.saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let env = Envelope::new(
            uuid::Uuid::now_v7().to_string(),
            self.me.clone(),
            Address::Component(component.clone()),
            now,
            Body::Task(task),
        )
        .with_deadline_ms(deadline);
        self.bus.publish(&env).await?;
        Ok(env)
    }

    /// Waits for the next report in the inbox, whatever it answers.
    pub async fn next_reply(&mut self) -> Result<Option<Reply>, ClientError> {
        loop {
            let Some(delivery) = self.inbox.next().await else {
                return Ok(None);
            };
            let delivery = delivery?;
            let envelope = delivery.envelope.clone();
            delivery.ack().await?;
            match envelope.body.clone() {
                Body::Report(report) => return Ok(Some(Reply { envelope, report })),
                other => {
                    tracing::debug!(kind = ?other.kind(), "Ignored a non-report message in the client inbox.")
                }
            }
        }
    }

    /// Sends a task and waits up to `timeout` for the report correlated with it.
    pub async fn ask(
        &mut self,
        component: &ComponentName,
        text: &str,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let task = self.send(component, text, timeout).await?;
        let wait = async {
            loop {
                match self.next_reply().await? {
                    Some(reply) if reply.envelope.correlation_id.as_deref() == Some(task.id.as_str()) => {
                        return Ok(reply);
                    }
                    Some(other) => {
                        tracing::debug!(id = %other.envelope.id, "Ignored a report for another task.")
                    }
                    None => return Err(ClientError::Bus(BusError::Closed)),
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Err(ClientError::Timeout {
                component: component.clone(),
                waited: timeout,
            }))
    }
}
