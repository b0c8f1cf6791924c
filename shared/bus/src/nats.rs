//! NATS transport (async-nats) with JetStream for durable inboxes.
//!
//! Every address is two subject tokens ([`sender_tokens`]): `manager._`, `component.NAME`, `client.NAME`. Topology,
//! with namespace `ns` (stream names use it upper-cased, `-` → `_`):
//! - stream `NS_INBOX` on subjects `ns.inbox.>`, work-queue retention, file storage. A message to inbox
//!   `component.catalogue` from the manager is published on `ns.inbox.component.catalogue.manager._`: the sender is
//!   part of the subject, so subject permissions make it broker-verified (see [`crate::identity`]). One durable pull
//!   consumer per inbox, `component_catalogue`, filtered on `ns.inbox.component.catalogue.*.*` (explicit ack,
//!   `ack_wait` from the config: an unacked message is redelivered after it).
//! - stream `NS_DEAD` on `ns.dead.>` for payloads that were rejected, with headers `x-acv-reason`, `x-acv-inbox`.
//! - broadcasts on the core subjects `ns.broadcast.<sender>` (no persistence, as heartbeats need none).
//! - replies (JetStream acks, pulled messages) arrive on `_INBOX.<user>.…` when a user is configured, so subject
//!   permissions can keep one user from reading another's replies.
//!
//! Publishes set `Nats-Msg-Id` to the envelope id, so JetStream also drops publisher retries server-side, and wait
//! for the stream's ack. async-nats reconnects by itself; consumers re-create their message stream after errors.
//! TLS (`tls://` URLs or [`BusConfig::tls_required`]) uses rustls with the configured CA.

use std::{sync::Arc, time::Duration};

use acv_protocol::{Address, Envelope};
use acv_telemetry::metrics::{CounterName, count};
use async_nats::{
    HeaderMap,
    jetstream::{self, consumer::pull, stream},
};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    Acker, Bus, BusError, DeadLetter, RawDelivery, Subscription, Transport,
    config::{BusConfig, CLIENT_INBOX_EXPIRY},
    outage::Outage,
};

const PREFETCH: usize = 16;
const T: Transport = Transport::Nats;
/// Publish attempts before giving up (the client reconnects in the background meanwhile).
const PUBLISH_ATTEMPTS: u32 = 6;
/// Messages older than this are dropped from the inbox stream (nobody consumed them for a week).
const INBOX_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// NATS JetStream bus.
pub struct NatsBus {
    config: BusConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Shared with the event callback and every consumer: one user-facing line per outage.
    outage: Arc<Outage>,
}

struct NatsAcker {
    message: jetstream::Message,
    js: jetstream::Context,
    dead_subject: String,
    inbox: String,
}

fn conn_err(e: impl std::fmt::Display) -> BusError {
    BusError::connection(T, e)
}

fn topo_err(e: impl std::fmt::Display) -> BusError {
    BusError::topology(T, e)
}

// === impl NatsBus ===

impl NatsBus {
    /// Connects and makes sure the streams exist.
    pub async fn connect(config: BusConfig) -> Result<Self, BusError> {
        config.check_tls()?;
        // Several rustls crypto providers are linked in (through lapin and async-nats): pick ring, as the rest of
        // acv does, or the first TLS handshake panics. A provider installed earlier wins.
        rustls::crypto::ring::default_provider().install_default().ok();
        let outage = Outage::new("NATS");
        let events = Arc::new(outage.watch("client"));
        let mut options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
        if let (Some(user), Some(password)) = (&config.nats_user, &config.nats_password) {
            options = options
                .user_and_password(user.clone(), password.expose().to_owned())
                .custom_inbox_prefix(inbox_prefix(user));
        }
        if config.tls_required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        let client = options
            .event_callback(move |event| {
                let outage = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            count(CounterName::BusReconnects, &[("transport", "nats")], 1);
                            outage.restored();
                        }
                        async_nats::Event::Disconnected => {
                            outage.lost(&"disconnected");
                        }
                        other => tracing::debug!(event = %other, "NATS event."),
                    }
                }
            })
            .connect(&config.nats_url)
            .await
            .map_err(|e| conn_err(acv_core::env::redact_url(&e.to_string())))?;
        let js = jetstream::new(client.clone());
        let bus = Self {
            config,
            client,
            js,
            outage,
        };
        bus.inbox_stream().await?;
        bus.dead_stream().await?;
        Ok(bus)
    }

    fn stream_prefix(&self) -> String {
        stream_prefix(&self.config.namespace)
    }

    /// The subject of a message to `to` from `from` (sender tokens, see [`sender_tokens`]).
    fn subject(&self, to: &Address, from: &str) -> String {
        match to {
            Address::Broadcast => format!("{}.broadcast.{from}", self.config.namespace),
            other => format!("{}.inbox.{}.{from}", self.config.namespace, sender_tokens(other)),
        }
    }

    /// The sender tokens of raw publishes: those of this connection's own principal.
    fn raw_sender(&self) -> String {
        let principal = self
            .config
            .nats_user
            .as_deref()
            .and_then(|u| crate::identity::Principal::from_user(&self.config.namespace, u));
        match principal {
            Some(p) => p
                .address()
                .map_or_else(|| "client.raw".to_owned(), |a| sender_tokens(&a)),
            None => "raw._".to_owned(),
        }
    }

    async fn inbox_stream(&self) -> Result<stream::Stream, BusError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: format!("{}_INBOX", self.stream_prefix()),
                subjects: vec![format!("{}.inbox.>", self.config.namespace)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                max_age: self.config.inbox_expiry.unwrap_or(INBOX_MAX_AGE),
                ..Default::default()
            })
            .await
            .map_err(topo_err)
    }

    async fn dead_stream(&self) -> Result<stream::Stream, BusError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: format!("{}_DEAD", self.stream_prefix()),
                subjects: vec![format!("{}.dead.>", self.config.namespace)],
                storage: stream::StorageType::File,
                max_age: self.config.inbox_expiry.unwrap_or(INBOX_MAX_AGE),
                ..Default::default()
            })
            .await
            .map_err(topo_err)
    }

    async fn publish_bytes(
        &self,
        to: &Address,
        from: &str,
        payload: Vec<u8>,
        id: Option<&str>,
    ) -> Result<(), BusError> {
        let subject = self.subject(to, from);
        let publish_err = |e: &dyn std::fmt::Display| BusError::Publish {
            transport: T,
            to: to.to_string(),
            message: e.to_string(),
        };
        if matches!(to, Address::Broadcast) {
            self.client
                .publish(subject, payload.into())
                .await
                .map_err(|e| publish_err(&e))?;
            return self.client.flush().await.map_err(|e| publish_err(&e));
        }
        let mut headers = HeaderMap::new();
        if let Some(id) = id {
            headers.insert("Nats-Msg-Id", id);
        }
        let ack = self
            .js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| publish_err(&e))?;
        ack.await.map_err(|e| publish_err(&e))?;
        Ok(())
    }

    /// Retries while the client reconnects. Retrying is safe: with `Nats-Msg-Id` set, JetStream stores a message
    /// once even if an earlier attempt did reach it.
    async fn publish_with_retry(
        &self,
        to: &Address,
        from: &str,
        payload: Vec<u8>,
        id: Option<&str>,
    ) -> Result<(), BusError> {
        let mut attempt = 0;
        loop {
            match self.publish_bytes(to, from, payload.clone(), id).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt + 1 < PUBLISH_ATTEMPTS => {
                    if self.outage.is_lost() {
                        tracing::debug!(error = %e, attempt, "NATS publish failed; retrying.");
                    } else {
                        tracing::warn!(error = %e, attempt, "NATS publish failed; retrying.");
                    }
                    tokio::time::sleep(crate::backoff(attempt, self.config.reconnect_max_backoff)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn transport(&self) -> Transport {
        T
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        crate::identity::may_send(
            T,
            &self.config.namespace,
            self.config.nats_user.as_deref(),
            envelope,
        )?;
        let from = sender_tokens(&envelope.from);
        self.publish_with_retry(&envelope.to, &from, envelope.encode(), Some(&envelope.id))
            .await?;
        count(CounterName::BusPublished, &[("transport", "nats")], 1);
        Ok(())
    }

    async fn publish_raw(&self, to: &Address, payload: Vec<u8>) -> Result<(), BusError> {
        let from = self.raw_sender();
        self.publish_with_retry(to, &from, payload, None).await
    }

    async fn subscribe(&self, inbox: &Address) -> Result<Subscription, BusError> {
        let (tx, rx) = mpsc::channel(PREFETCH);
        let cancel = CancellationToken::new();
        let token = inbox.inbox_token();
        if matches!(inbox, Address::Broadcast) {
            let sub = self
                .client
                .subscribe(format!("{}.broadcast.>", self.config.namespace))
                .await
                .map_err(conn_err)?;
            // Make sure the server registered the subscription before the caller publishes.
            self.client.flush().await.map_err(conn_err)?;
            tokio::spawn(broadcast_loop(sub, tx, cancel.clone()));
            return Ok(Subscription::new(T, token, rx, cancel).with_sender_check(self.config.sender_check()));
        }
        let stream = self.inbox_stream().await?;
        let durable = token.replace('.', "_");
        let inactive = match inbox {
            Address::Client(_) => self.config.inbox_expiry.unwrap_or(CLIENT_INBOX_EXPIRY),
            _ => self.config.inbox_expiry.unwrap_or(Duration::ZERO),
        };
        let config = pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: consumer_filter(&self.config.namespace, inbox),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_ack_pending: i64::try_from(PREFETCH).unwrap_or(16),
            inactive_threshold: inactive,
            ..Default::default()
        };
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(&durable, config.clone())
            .await
            .map_err(topo_err)?;
        if consumer.cached_info().config.filter_subject != config.filter_subject {
            // A consumer left by a build with the older subject layout (no sender tokens): replace it, or it
            // would never see a message again.
            tracing::info!(inbox = %inbox, "Replacing a NATS consumer with an outdated subject filter.");
            stream.delete_consumer(&durable).await.map_err(topo_err)?;
            consumer = stream.create_consumer(config).await.map_err(topo_err)?;
        }
        let ctx = ConsumerCtx {
            consumer,
            js: self.js.clone(),
            dead_subject: format!("{}.dead.{token}", self.config.namespace),
            inbox: token.clone(),
            max_backoff: self.config.reconnect_max_backoff,
            outage: self.outage.clone(),
        };
        let messages = ctx.consumer.messages().await.map_err(topo_err)?;
        tokio::spawn(ctx.run(messages, tx, cancel.clone()));
        Ok(Subscription::new(T, token, rx, cancel).with_sender_check(self.config.sender_check()))
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, BusError> {
        let stream = self.dead_stream().await?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                "dead-letter-reader",
                pull::Config {
                    durable_name: Some("dead-letter-reader".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .map_err(topo_err)?;
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(conn_err)?;
        let mut out = Vec::new();
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(conn_err)?;
            let header = |name: &str| {
                msg.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            out.push(DeadLetter {
                inbox: header("x-acv-inbox"),
                reason: header("x-acv-reason"),
                payload: msg.payload.to_vec(),
            });
            msg.ack().await.map_err(conn_err)?;
        }
        Ok(out)
    }

    async fn delete_namespace(&self) -> Result<(), BusError> {
        for suffix in ["INBOX", "DEAD"] {
            let name = format!("{}_{suffix}", self.stream_prefix());
            self.js.delete_stream(&name).await.map_err(topo_err)?;
        }
        Ok(())
    }
}

/// The two subject tokens naming an address as sender or inbox: `manager._`, `component.NAME`, `client.NAME`,
/// `broadcast._`. Always two, so that subject permissions and consumer filters can use `*` for each.
pub(crate) fn sender_tokens(address: &Address) -> String {
    match address {
        Address::Manager => "manager._".to_owned(),
        Address::Broadcast => "broadcast._".to_owned(),
        other => other.inbox_token(),
    }
}

/// The sender tokens of a delivered subject: its last two tokens.
fn subject_sender(subject: &str) -> Option<String> {
    let mut parts = subject.rsplitn(3, '.');
    let name = parts.next()?;
    let kind = parts.next()?;
    parts.next()?;
    Some(format!("{kind}.{name}"))
}

/// The reply-inbox prefix of a connection as `user`, so permissions can confine replies to their user.
pub(crate) fn inbox_prefix(user: &str) -> String {
    format!("_INBOX.{user}")
}

/// The stream-name prefix of a namespace.
pub(crate) fn stream_prefix(namespace: &str) -> String {
    namespace.to_ascii_uppercase().replace('-', "_")
}

/// The filter subject of an inbox's durable consumer: everything to it, from any sender.
pub(crate) fn consumer_filter(namespace: &str, inbox: &Address) -> String {
    format!("{namespace}.inbox.{}.*.*", sender_tokens(inbox))
}

struct ConsumerCtx {
    consumer: jetstream::consumer::PullConsumer,
    js: jetstream::Context,
    dead_subject: String,
    inbox: String,
    max_backoff: Duration,
    outage: Arc<Outage>,
}

impl ConsumerCtx {
    async fn run(
        self,
        mut messages: pull::Stream,
        tx: mpsc::Sender<Result<RawDelivery, BusError>>,
        cancel: CancellationToken,
    ) {
        let mut attempt = 0u32;
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tx.closed() => return,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    attempt = 0;
                    let redelivered = message.info().map(|i| i.delivered > 1).unwrap_or(false);
                    let payload = message.payload.to_vec();
                    let sender = subject_sender(message.subject.as_str());
                    let acker = NatsAcker {
                        message,
                        js: self.js.clone(),
                        dead_subject: self.dead_subject.clone(),
                        inbox: self.inbox.clone(),
                    };
                    if tx
                        .send(Ok(RawDelivery {
                            payload,
                            redelivered,
                            sender,
                            acker: Box::new(acker),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Some(Err(error)) => {
                    // Transient (missed heartbeats during a reconnect, etc.): the stream keeps going.
                    if self.outage.is_lost() {
                        tracing::debug!(%error, inbox = %self.inbox, "NATS consumer error.");
                    } else {
                        tracing::warn!(%error, inbox = %self.inbox, "NATS consumer error.");
                    }
                }
                None => {
                    // The message stream ended: re-create it, with backoff, until cancelled.
                    let wait = crate::backoff(attempt, self.max_backoff);
                    attempt += 1;
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    match self.consumer.messages().await {
                        Ok(m) => messages = m,
                        Err(error) => {
                            tracing::debug!(%error, inbox = %self.inbox, "NATS consumer restart failed.")
                        }
                    }
                }
            }
        }
    }
}

async fn broadcast_loop(
    mut sub: async_nats::Subscriber,
    tx: mpsc::Sender<Result<RawDelivery, BusError>>,
    cancel: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            msg = sub.next() => match msg { Some(m) => m, None => break },
        };
        let raw = RawDelivery {
            payload: msg.payload.to_vec(),
            redelivered: false,
            sender: subject_sender(msg.subject.as_str()),
            acker: Box::new(NoAck),
        };
        if tx.send(Ok(raw)).await.is_err() {
            break;
        }
    }
    if let Err(error) = sub.unsubscribe().await {
        tracing::debug!(%error, "Broadcast unsubscribe failed; the connection is probably gone.");
    }
}

/// Core NATS broadcasts have nothing to acknowledge.
struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
    async fn nack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
    async fn dead_letter(self: Box<Self>, _payload: Vec<u8>, _reason: String) -> Result<(), BusError> {
        // A malformed broadcast is dropped (already logged by the subscription): broadcasts are not durable.
        Ok(())
    }
}

// === impl NatsAcker ===

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        // Double ack: wait until the server confirms, so a crash right after `ack` returns cannot redeliver.
        self.message.double_ack().await.map_err(|e| BusError::Ack {
            transport: T,
            message: e.to_string(),
        })
    }

    async fn nack(self: Box<Self>) -> Result<(), BusError> {
        self.message
            .ack_with(jetstream::AckKind::Nak(None))
            .await
            .map_err(|e| BusError::Ack {
                transport: T,
                message: e.to_string(),
            })
    }

    async fn dead_letter(self: Box<Self>, payload: Vec<u8>, reason: String) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        headers.insert("x-acv-reason", reason.as_str());
        headers.insert("x-acv-inbox", self.inbox.as_str());
        let publish_err = |e: &dyn std::fmt::Display| BusError::Publish {
            transport: T,
            to: self.dead_subject.clone(),
            message: e.to_string(),
        };
        let ack = self
            .js
            .publish_with_headers(self.dead_subject.clone(), headers, payload.into())
            .await
            .map_err(|e| publish_err(&e))?;
        ack.await.map_err(|e| publish_err(&e))?;
        self.ack().await
    }
}
