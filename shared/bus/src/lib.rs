//! The acv message bus: one [`Bus`] trait over RabbitMQ (lapin), NATS JetStream (async-nats) and an in-memory
//! transport for single-process runs and unit tests.
//!
//! Semantics, the same on every transport:
//! - Inboxes (manager, each component, each client) are durable: a message published while nobody consumes is
//!   delivered when a consumer subscribes. Broadcasts (heartbeats, registry) are not.
//! - Delivery is at-least-once with manual acknowledgement: a consumer that goes away before acking gets the
//!   message redelivered (to itself or the next consumer of that inbox).
//! - Duplicates are dropped by envelope id in [`Subscription::next`], so handlers are idempotent.
//! - Payloads that do not decode are moved to a dead-letter place with the reason and never reach the handler;
//!   the consumer keeps running.
//! - With sender verification on ([`BusConfig::verify_sender`]), an envelope whose `from` is not the sender the
//!   broker vouches for is dead-lettered the same way, with the reason, and counted ([`identity`]).
//!
//! # Layout
//! - [`config`]: transport choice and broker settings from env.
//! - [`identity`]: principals, their broker users and permissions, the sender check.
//! - [`memory`], [`amqp`], [`nats`]: the transports; `outage`: one user-facing line per lost broker connection.
//! - this module: the trait, [`Subscription`] (decode, dedup, dead-letter), [`Delivery`], errors.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex},
};

use acv_protocol::{Address, Envelope};
use acv_telemetry::metrics::{CounterName, count};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

pub mod amqp;
pub mod config;
pub mod identity;
pub mod memory;
pub mod nats;
mod outage;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{BusConfig, Transport, connect};
pub use identity::{Principal, SenderCheck};

/// How many envelope ids a subscription remembers for duplicate detection.
pub const DEDUP_CAPACITY: usize = 16_384;

/// Errors from the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Could not reach or keep a connection to the broker.
    #[error("{transport} connection failed: {message}")]
    Connection {
        /// Which transport.
        transport: Transport,
        /// What happened.
        message: String,
    },
    /// The broker refused or did not confirm a publish.
    #[error("{transport} publish to {to} not confirmed: {message}")]
    Publish {
        /// Which transport.
        transport: Transport,
        /// The destination.
        to: String,
        /// What happened.
        message: String,
    },
    /// Declaring queues, streams or consumers failed.
    #[error("{transport} topology setup failed: {message}")]
    Topology {
        /// Which transport.
        transport: Transport,
        /// What happened.
        message: String,
    },
    /// Acknowledging a delivery failed (the broker will redeliver it).
    #[error("{transport} ack failed: {message}")]
    Ack {
        /// Which transport.
        transport: Transport,
        /// What happened.
        message: String,
    },
    /// The subscription ended because the bus was shut down.
    #[error("subscription closed")]
    Closed,
    /// Bad bus configuration.
    #[error("bus configuration: {0}")]
    Config(String),
}

impl BusError {
    pub(crate) fn connection(transport: Transport, e: impl std::fmt::Display) -> Self {
        BusError::Connection {
            transport,
            message: e.to_string(),
        }
    }

    pub(crate) fn topology(transport: Transport, e: impl std::fmt::Display) -> Self {
        BusError::Topology {
            transport,
            message: e.to_string(),
        }
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            BusError::Connection { .. } => "connection",
            BusError::Publish { .. } => "publish",
            BusError::Topology { .. } => "topology",
            BusError::Ack { .. } => "ack",
            BusError::Closed => "closed",
            BusError::Config(_) => "config",
        }
    }
}

/// A payload that could not be decoded, kept with the reason it was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The inbox it was addressed to (its token, e.g. `component.catalogue`).
    pub inbox: String,
    /// Why it was rejected.
    pub reason: String,
    /// The raw payload, unchanged.
    pub payload: Vec<u8>,
}

/// The message bus.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Which transport this is.
    fn transport(&self) -> Transport;

    /// Publishes an envelope to the inbox named by `envelope.to`. Returns once the broker has confirmed it (for
    /// durable inboxes: stored durably).
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError>;

    /// Publishes raw bytes to an inbox. Used for bridging and by tests that need to send malformed payloads; normal
    /// code uses [`Bus::publish`].
    async fn publish_raw(&self, to: &Address, payload: Vec<u8>) -> Result<(), BusError>;

    /// Starts consuming an inbox. For [`Address::Broadcast`] each subscription gets its own copy of every message
    /// published after it subscribed.
    async fn subscribe(&self, inbox: &Address) -> Result<Subscription, BusError>;

    /// Removes and returns up to `max` dead letters (oldest first), for inspection and repair.
    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, BusError>;

    /// Deletes the broker-side state of this bus's namespace (queues, exchanges, streams and their messages).
    /// For tests and teardown only: messages still queued are lost.
    async fn delete_namespace(&self) -> Result<(), BusError>;
}

/// Transport-specific acknowledgement of one raw delivery.
#[async_trait]
pub trait Acker: Send {
    /// Acknowledges: the broker forgets the message.
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// Negative acknowledgement: the broker delivers it again.
    async fn nack(self: Box<Self>) -> Result<(), BusError>;
    /// Moves the payload to the dead-letter place with `reason`, then acknowledges the original.
    async fn dead_letter(self: Box<Self>, payload: Vec<u8>, reason: String) -> Result<(), BusError>;
}

/// What a transport's consumer task hands to a [`Subscription`].
pub struct RawDelivery {
    /// The payload.
    pub payload: Vec<u8>,
    /// Whether the broker says this was delivered before.
    pub redelivered: bool,
    /// The sender as the broker vouches for it (RabbitMQ: the validated `user_id`; NATS: the subject's sender
    /// tokens), if any.
    pub sender: Option<String>,
    /// How to acknowledge it.
    pub acker: Box<dyn Acker>,
}

/// A stream of decoded, de-duplicated deliveries from one inbox. Dropping it stops the consumer; unacknowledged
/// deliveries are then redelivered by the broker.
pub struct Subscription {
    rx: mpsc::Receiver<Result<RawDelivery, BusError>>,
    seen: Arc<Mutex<Dedup>>,
    transport: Transport,
    inbox: String,
    check: Option<SenderCheck>,
    _guard: DropGuard,
}

/// One decoded message. Call [`Delivery::ack`] once handled; dropping it unacked leaves it to be redelivered when
/// the subscription ends.
pub struct Delivery {
    /// The message.
    pub envelope: Envelope,
    /// Whether the broker delivered it before (a previous consumer did not ack it).
    pub redelivered: bool,
    acker: Box<dyn Acker>,
    seen: Arc<Mutex<Dedup>>,
}

/// Remembers recently acknowledged envelope ids, bounded.
#[derive(Debug, Default)]
struct Dedup {
    set: HashSet<String>,
    order: VecDeque<String>,
}

// === impl Subscription ===

impl Subscription {
    /// Builds a subscription over a transport's raw delivery channel. `cancel` stops the transport's consumer task.
    pub fn new(
        transport: Transport,
        inbox: String,
        rx: mpsc::Receiver<Result<RawDelivery, BusError>>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            rx,
            seen: Arc::default(),
            transport,
            inbox,
            check: None,
            _guard: cancel.drop_guard(),
        }
    }

    /// Rejects (dead-letters, with the reason) every envelope whose `from` fails `check`.
    pub fn with_sender_check(mut self, check: Option<SenderCheck>) -> Self {
        self.check = check;
        self
    }

    async fn reject(&self, raw: RawDelivery, reason: String, counter: CounterName) {
        count(counter, &[("transport", self.transport.as_str())], 1);
        if let Err(error) = raw.acker.dead_letter(raw.payload, reason).await {
            tracing::error!(%error, "Dead-lettering failed; the broker will redeliver the payload.");
        }
    }

    /// The next valid, not yet handled message. Malformed payloads are dead-lettered and duplicates of acknowledged
    /// messages are acknowledged and skipped here, so the caller never sees them. `None` when the bus closed.
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        loop {
            let raw = match self.rx.recv().await? {
                Ok(raw) => raw,
                Err(e) => return Some(Err(e)),
            };
            let envelope = match Envelope::decode(&raw.payload) {
                Ok(env) => env,
                Err(error) => {
                    let reason = error.to_string();
                    tracing::warn!(inbox = %self.inbox, transport = %self.transport, %reason,
                        bytes = raw.payload.len(), "Rejected malformed payload to the dead-letter queue.");
                    self.reject(raw, reason, CounterName::BusDeadLettered).await;
                    continue;
                }
            };
            if let Some(check) = &self.check
                && let Err(reason) = check.verify(raw.sender.as_deref(), &envelope.from)
            {
                tracing::warn!(inbox = %self.inbox, transport = %self.transport, id = %envelope.id,
                    kind = ?envelope.kind(), %reason, "Rejected an envelope from an unverified sender to the dead-letter queue.");
                self.reject(raw, reason, CounterName::BusSenderRejected).await;
                continue;
            }
            let duplicate = self
                .seen
                .lock()
                .map(|s| s.contains(&envelope.id))
                .unwrap_or(false);
            if duplicate {
                tracing::info!(id = %envelope.id, inbox = %self.inbox, "Dropped duplicate delivery.");
                count(
                    CounterName::BusDuplicates,
                    &[("transport", self.transport.as_str())],
                    1,
                );
                if let Err(error) = raw.acker.ack().await {
                    tracing::warn!(%error, "Ack of duplicate failed.");
                }
                continue;
            }
            count(
                CounterName::BusDelivered,
                &[("transport", self.transport.as_str())],
                1,
            );
            return Some(Ok(Delivery {
                envelope,
                redelivered: raw.redelivered,
                acker: raw.acker,
                seen: self.seen.clone(),
            }));
        }
    }
}

// === impl Delivery ===

impl Delivery {
    /// Acknowledges: the message is handled and will not be delivered again (later duplicates are dropped).
    pub async fn ack(self) -> Result<(), BusError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(self.envelope.id.clone());
        }
        self.acker.ack().await
    }

    /// Gives the message back to the broker for redelivery.
    pub async fn nack(self) -> Result<(), BusError> {
        self.acker.nack().await
    }
}

// === impl Dedup ===

impl Dedup {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            while self.order.len() > DEDUP_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// Backoff schedule for reconnects: 100 ms doubling to `max`, with no jitter needed on loopback-sized fleets but
/// some added so that a fleet of sidecars does not reconnect in lockstep.
pub(crate) fn backoff(attempt: u32, max: std::time::Duration) -> std::time::Duration {
    let base = std::time::Duration::from_millis(100).saturating_mul(1u32 << attempt.min(10));
    let jitter = std::time::Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 50);
    base.min(max) + jitter
}
