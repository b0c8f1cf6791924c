//! The long-running manager: consumes its inbox (reports, issues) and the broadcast (registry).

use std::sync::Arc;

use acv_bus::{Bus, BusError};
use acv_protocol::{Address, Body};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// Runs until `shutdown`. The registry is shared so the API can read it.
pub async fn run(
    bus: Arc<dyn Bus>,
    registry: Arc<RwLock<Registry>>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let mut inbox = bus.subscribe(&Address::Manager).await?;
    let mut broadcast = bus.subscribe(&Address::Broadcast).await?;
    tracing::info!(transport = %bus.transport(), "Manager listening.");
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            next = broadcast.next() => match next {
                None => return Err(BusError::Closed),
                Some(Err(error)) => tracing::warn!(%error, "Broadcast error."),
                Some(Ok(d)) => {
                    if registry.write().await.apply(&d.envelope)
                        && let Body::Register(r) = &d.envelope.body
                    {
                        tracing::info!(component = %r.component, planner = %r.planner, "Sidecar registered.");
                    }
                    if let Err(error) = d.ack().await {
                        tracing::debug!(%error, "Broadcast ack failed.");
                    }
                }
            },
            next = inbox.next() => match next {
                None => return Err(BusError::Closed),
                Some(Err(error)) => tracing::warn!(%error, "Inbox error."),
                Some(Ok(d)) => {
                    match &d.envelope.body {
                        Body::Report(r) => tracing::info!(component = %r.component, task_id = %r.task_id,
                            status = ?r.status, message = %r.message, "Report received."),
                        Body::Issue(i) => tracing::warn!(component = %i.component, message = %i.message,
                            violations = i.violations.len(), "Issue raised."),
                        other => tracing::debug!(kind = ?other.kind(), "Ignored message."),
                    }
                    if let Err(error) = d.ack().await {
                        tracing::warn!(%error, "Ack failed.");
                    }
                }
            },
        }
    }
}
