//! RabbitMQ transport (lapin).
//!
//! Topology, all names prefixed by the namespace `NS`:
//! - direct exchange `NS.inbox` (durable); one durable queue `NS.<inbox>` per inbox (e.g. `acv.component.catalogue`)
//!   bound with the inbox token as routing key. Publishers declare the destination queue before their first
//!   publish, so a message sent while the consumer is down waits in the queue.
//! - fanout exchange `NS.broadcast`; each broadcast subscriber gets an exclusive auto-delete queue.
//! - durable queue `NS.dead-letter`, fed by the fanout exchange `NS.dead-letter`, for payloads that were rejected
//!   (undecodable, or from an unverified sender), with headers `x-acv-reason` and `x-acv-inbox`.
//!
//! Identity: every publish carries the `user_id` property set to the connection's user, which RabbitMQ validates;
//! receivers compare it with the envelope's `from` ([`crate::identity`]). Declarations are passive first (they
//! need no permission), and only what is missing is declared for real, so agents with per-agent users and narrow
//! `configure` permissions work on topology the manager (or an admin) created. `amqps://` URLs use rustls, with
//! the CA from [`BusConfig::tls_ca`].
//!
//! Messages are persistent, publishes wait for publisher confirms (a nack is an error), consumers ack manually and
//! each subscription has its own connection so that a dead consumer's unacked messages are requeued by the broker.
//! Lost connections are re-established with capped exponential backoff, by the publisher on its next publish and
//! by each consumer in its own loop.

use std::{collections::HashSet, sync::Arc, time::Duration};

use acv_protocol::{Address, Envelope};
use acv_telemetry::metrics::{CounterName, count};
use async_trait::async_trait;
use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
        BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    Acker, Bus, BusError, DeadLetter, RawDelivery, Subscription, Transport,
    config::{BusConfig, CLIENT_INBOX_EXPIRY},
    outage::{ConnectionWatch, Outage},
};

const PREFETCH: u16 = 16;
/// Publish attempts (with reconnects in between) before giving up.
const PUBLISH_ATTEMPTS: u32 = 6;
const T: Transport = Transport::Amqp;

/// RabbitMQ bus.
pub struct AmqpBus {
    config: BusConfig,
    link: Mutex<Option<Link>>,
    /// Every inbox queue this bus declared, for [`Bus::delete_namespace`].
    queues: Mutex<HashSet<String>>,
    /// Shared with every consumer: one user-facing line per outage.
    outage: Arc<Outage>,
    /// The publisher connection's part in it.
    publisher: ConnectionWatch,
    /// How to connect (URL, TLS).
    endpoint: Endpoint,
}

/// Where and as whom to connect.
#[derive(Clone)]
struct Endpoint {
    url: String,
    /// The user in the URL: what RabbitMQ authenticates and what `user_id` must say.
    user: String,
    /// PEM of the CA for `amqps://`.
    ca_pem: Option<String>,
}

/// The publisher's connection and what it already declared.
struct Link {
    connection: Connection,
    channel: Channel,
    declared: HashSet<String>,
}

struct AmqpAcker {
    acker: lapin::Acker,
    channel: Channel,
    dead_letter_queue: String,
    inbox: String,
}

fn conn_err(e: impl std::fmt::Display) -> BusError {
    BusError::connection(T, e)
}

fn topo_err(e: impl std::fmt::Display) -> BusError {
    BusError::topology(T, e)
}

fn s(v: &str) -> ShortString {
    v.into()
}

// === impl AmqpBus ===

impl AmqpBus {
    /// Connects (once, to fail fast on a wrong URL or credentials) and declares the shared exchanges.
    pub async fn connect(config: BusConfig) -> Result<Self, BusError> {
        config.check_tls()?;
        let endpoint = Endpoint::from_config(&config)?;
        let outage = Outage::new("RabbitMQ");
        let bus = Self {
            endpoint,
            config,
            link: Mutex::new(None),
            queues: Mutex::default(),
            outage: outage.clone(),
            publisher: outage.watch("publisher"),
        };
        let channel = bus.channel().await?;
        drop(channel);
        Ok(bus)
    }

    fn inbox_exchange(&self) -> String {
        format!("{}.inbox", self.config.namespace)
    }

    fn broadcast_exchange(&self) -> String {
        format!("{}.broadcast", self.config.namespace)
    }

    fn queue_name(&self, token: &str) -> String {
        format!("{}.{token}", self.config.namespace)
    }

    fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.config.namespace)
    }

    /// Queue arguments must be identical wherever a queue is declared, or the broker refuses the declaration.
    fn queue_args(&self, inbox: &Address) -> FieldTable {
        let mut args = FieldTable::default();
        let expiry = match inbox {
            Address::Client(_) => Some(self.config.inbox_expiry.unwrap_or(CLIENT_INBOX_EXPIRY)),
            _ => self.config.inbox_expiry,
        };
        if let Some(expiry) = expiry {
            let ms = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX);
            args.insert(s("x-expires"), AMQPValue::LongLongInt(ms));
        }
        args
    }

    async fn open(&self) -> Result<(Connection, Channel), BusError> {
        let connection = self.endpoint.connect("acv-bus").await?;
        let channel = connection.create_channel().await.map_err(conn_err)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(conn_err)?;
        declare_shared(
            &connection,
            &self.inbox_exchange(),
            &self.broadcast_exchange(),
            &self.dead_letter_queue(),
        )
        .await?;
        Ok((connection, channel))
    }

    /// The publisher channel, connecting if needed.
    async fn channel(&self) -> Result<Channel, BusError> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref()
            && l.channel.status().connected()
        {
            return Ok(l.channel.clone());
        }
        if link.is_some() {
            count(CounterName::BusReconnects, &[("transport", "amqp")], 1);
            self.publisher.lost(&"channel closed");
        }
        let (connection, channel) = self.open().await?;
        self.publisher.restored();
        *link = Some(Link {
            connection,
            channel: channel.clone(),
            declared: HashSet::new(),
        });
        Ok(channel)
    }

    async fn declare_inbox(&self, inbox: &Address) -> Result<String, BusError> {
        let token = inbox.inbox_token();
        let queue = self.queue_name(&token);
        let mut link = self.link.lock().await;
        let Some(l) = link.as_mut() else {
            return Err(conn_err("publisher connection lost"));
        };
        if l.declared.contains(&token) {
            return Ok(queue);
        }
        ensure_inbox_queue(
            &l.connection,
            &queue,
            &self.inbox_exchange(),
            &token,
            self.queue_args(inbox),
        )
        .await?;
        l.declared.insert(token);
        drop(link);
        self.queues.lock().await.insert(queue.clone());
        Ok(queue)
    }

    async fn publish_once(&self, to: &Address, payload: &[u8], id: Option<&str>) -> Result<(), BusError> {
        let channel = self.channel().await?;
        let (exchange, key, props) = if matches!(to, Address::Broadcast) {
            (
                self.broadcast_exchange(),
                String::new(),
                BasicProperties::default(),
            )
        } else {
            self.declare_inbox(to).await?;
            (
                self.inbox_exchange(),
                to.inbox_token(),
                BasicProperties::default().with_delivery_mode(2),
            )
        };
        // RabbitMQ refuses a `user_id` other than the authenticated user, so receivers can trust it.
        let props = props.with_user_id(s(&self.endpoint.user));
        let props = match id {
            Some(id) => props.with_message_id(s(id)),
            None => props,
        };
        let opts = BasicPublishOptions {
            mandatory: !matches!(to, Address::Broadcast),
            ..Default::default()
        };
        let publish_err = |e: lapin::Error| BusError::Publish {
            transport: T,
            to: to.to_string(),
            message: e.to_string(),
        };
        let confirm = channel
            .basic_publish(s(&exchange), s(&key), opts, payload, props)
            .await
            .map_err(publish_err)?
            .await
            .map_err(publish_err)?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(BusError::Publish {
                transport: T,
                to: to.to_string(),
                message: format!("unroutable, returned by broker: {:?}", returned.reply_text),
            }),
            Confirmation::Nack(_) => Err(BusError::Publish {
                transport: T,
                to: to.to_string(),
                message: "broker nacked".into(),
            }),
        }
    }

    async fn publish_with_retry(
        &self,
        to: &Address,
        payload: &[u8],
        id: Option<&str>,
    ) -> Result<(), BusError> {
        let mut attempt = 0;
        loop {
            match self.publish_once(to, payload, id).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt + 1 < PUBLISH_ATTEMPTS && !is_permanent(&e) => {
                    self.publisher.lost(&e);
                    tracing::debug!(error = %e, attempt, "RabbitMQ publish failed; retrying after reconnect.");
                    *self.link.lock().await = None;
                    tokio::time::sleep(crate::backoff(attempt, self.config.reconnect_max_backoff)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Errors a retry cannot fix: unroutable messages and refusals by the broker's access control.
fn is_permanent(e: &BusError) -> bool {
    let message = match e {
        BusError::Publish { message, .. }
        | BusError::Topology { message, .. }
        | BusError::Connection { message, .. } => message,
        _ => return false,
    };
    [
        "unroutable",
        "ACCESS_REFUSED",
        "PRECONDITION_FAILED",
        "may not send as",
    ]
    .iter()
    .any(|m| message.contains(m))
}

// === impl Endpoint ===

impl Endpoint {
    fn from_config(config: &BusConfig) -> Result<Self, BusError> {
        let uri: lapin::uri::AMQPUri = config.amqp_url.parse().map_err(|e: String| {
            BusError::Config(format!(
                "bad RabbitMQ URL {}: {e}",
                acv_core::env::redact_url(&config.amqp_url)
            ))
        })?;
        let ca_pem = match &config.tls_ca {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                BusError::Config(format!("cannot read the broker CA {}: {e}", path.display()))
            })?),
            None => None,
        };
        Ok(Self {
            url: config.amqp_url.clone(),
            user: uri.authority.userinfo.username,
            ca_pem,
        })
    }

    async fn connect(&self, name: &str) -> Result<Connection, BusError> {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let tls = lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: self.ca_pem.clone(),
        };
        let runtime = lapin::runtime::default_runtime().map_err(conn_err)?;
        Connection::connect_with_config(&self.url, props, tls, runtime)
            .await
            .map_err(|e| conn_err(acv_core::env::redact_url(&e.to_string())))
    }
}

/// Declares what every publisher and consumer of a namespace relies on: the inbox, broadcast and dead-letter
/// exchanges and the dead-letter queue. Declarations are idempotent, so each connection makes them once.
async fn declare_shared(
    connection: &Connection,
    inbox_exchange: &str,
    broadcast_exchange: &str,
    dead_letter: &str,
) -> Result<(), BusError> {
    for (exchange, kind) in [
        (inbox_exchange, ExchangeKind::Direct),
        (broadcast_exchange, ExchangeKind::Fanout),
    ] {
        ensure_exchange(connection, exchange, kind).await?;
    }
    let new_exchange = ensure_exchange(connection, dead_letter, ExchangeKind::Fanout).await?;
    let bind = Some((dead_letter, ""));
    if !ensure_queue(connection, dead_letter, FieldTable::default(), bind).await? && new_exchange {
        // A dead-letter queue from before the exchange existed: bind it now.
        let ch = scratch(connection).await?;
        let result = ch
            .queue_bind(
                s(dead_letter),
                s(dead_letter),
                s(""),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(topo_err);
        close_scratch(ch).await;
        result?;
    }
    Ok(())
}

/// A channel for one declaration attempt: a refused declaration closes its channel, so each gets its own.
async fn scratch(connection: &Connection) -> Result<Channel, BusError> {
    connection.create_channel().await.map_err(conn_err)
}

async fn close_scratch(channel: Channel) {
    if channel.status().connected()
        && let Err(error) = channel.close(200, s("declared")).await
    {
        tracing::debug!(%error, "Closing a declaration channel failed.");
    }
}

/// Declares an exchange unless it exists (a passive check needs no permission). Returns whether it declared it.
async fn ensure_exchange(connection: &Connection, name: &str, kind: ExchangeKind) -> Result<bool, BusError> {
    let ch = scratch(connection).await?;
    let passive = ExchangeDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    let exists = ch
        .exchange_declare(s(name), kind.clone(), passive, FieldTable::default())
        .await
        .is_ok();
    close_scratch(ch).await;
    if exists {
        return Ok(false);
    }
    let ch = scratch(connection).await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let result = ch
        .exchange_declare(s(name), kind, durable, FieldTable::default())
        .await
        .map_err(topo_err);
    close_scratch(ch).await;
    result.map(|()| true)
}

/// Declares a durable queue (and binds it to `bind`'s exchange and key) unless it exists. An existing queue is
/// left as it is: whoever declared it bound it. Returns whether it declared it.
async fn ensure_queue(
    connection: &Connection,
    queue: &str,
    args: FieldTable,
    bind: Option<(&str, &str)>,
) -> Result<bool, BusError> {
    let ch = scratch(connection).await?;
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    let exists = ch
        .queue_declare(s(queue), passive, FieldTable::default())
        .await
        .is_ok();
    close_scratch(ch).await;
    if exists {
        return Ok(false);
    }
    let ch = scratch(connection).await?;
    let result = declare_and_bind(&ch, queue, args, bind).await;
    close_scratch(ch).await;
    result.map(|()| true)
}

async fn declare_and_bind(
    channel: &Channel,
    queue: &str,
    args: FieldTable,
    bind: Option<(&str, &str)>,
) -> Result<(), BusError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(s(queue), durable, args)
        .await
        .map_err(topo_err)?;
    if let Some((exchange, key)) = bind {
        channel
            .queue_bind(
                s(queue),
                s(exchange),
                s(key),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(topo_err)?;
    }
    Ok(())
}

async fn ensure_inbox_queue(
    connection: &Connection,
    queue: &str,
    exchange: &str,
    token: &str,
    args: FieldTable,
) -> Result<(), BusError> {
    ensure_queue(connection, queue, args, Some((exchange, token)))
        .await
        .map(drop)
}

#[async_trait]
impl Bus for AmqpBus {
    fn transport(&self) -> Transport {
        T
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        crate::identity::may_send(T, &self.config.namespace, Some(&self.endpoint.user), envelope)?;
        self.publish_with_retry(&envelope.to, &envelope.encode(), Some(&envelope.id))
            .await?;
        count(CounterName::BusPublished, &[("transport", "amqp")], 1);
        Ok(())
    }

    async fn publish_raw(&self, to: &Address, payload: Vec<u8>) -> Result<(), BusError> {
        self.publish_with_retry(to, &payload, None).await
    }

    async fn subscribe(&self, inbox: &Address) -> Result<Subscription, BusError> {
        let (tx, rx) = mpsc::channel(usize::from(PREFETCH));
        let cancel = CancellationToken::new();
        if !matches!(inbox, Address::Broadcast) {
            self.queues
                .lock()
                .await
                .insert(self.queue_name(&inbox.inbox_token()));
        }
        let consumer = Consumer {
            endpoint: self.endpoint.clone(),
            inbox: inbox.clone(),
            queue: self.queue_name(&inbox.inbox_token()),
            inbox_exchange: self.inbox_exchange(),
            broadcast_exchange: self.broadcast_exchange(),
            dead_letter_queue: self.dead_letter_queue(),
            args: self.queue_args(inbox),
            max_backoff: self.config.reconnect_max_backoff,
            watch: self.outage.watch(format!("consumer {inbox}")),
        };
        // Set up the first consumer before returning, so that errors like a wrong URL surface here and so that a
        // broadcast subscriber is bound before the caller publishes.
        let first = consumer.start().await?;
        tokio::spawn(consumer.run(first, tx, cancel.clone()));
        Ok(Subscription::new(T, inbox.inbox_token(), rx, cancel)
            .with_sender_check(self.config.sender_check()))
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, BusError> {
        let channel = self.channel().await?;
        let mut out = Vec::new();
        while out.len() < max {
            let got = channel
                .basic_get(s(&self.dead_letter_queue()), BasicGetOptions { no_ack: false })
                .await
                .map_err(conn_err)?;
            let Some(msg) = got else { break };
            let header = |name: &str| -> String {
                msg.delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get(name).cloned())
                    .map(|v| match v {
                        AMQPValue::LongString(l) => String::from_utf8_lossy(l.as_bytes()).into_owned(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default()
            };
            let letter = DeadLetter {
                inbox: header("x-acv-inbox"),
                reason: header("x-acv-reason"),
                payload: msg.delivery.data.clone(),
            };
            msg.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(conn_err)?;
            out.push(letter);
        }
        Ok(out)
    }

    async fn delete_namespace(&self) -> Result<(), BusError> {
        let channel = self.channel().await?;
        let mut queues: Vec<String> = self.queues.lock().await.drain().collect();
        queues.push(self.dead_letter_queue());
        for q in queues {
            channel
                .queue_delete(s(&q), QueueDeleteOptions::default())
                .await
                .map_err(topo_err)?;
        }
        for x in [
            self.inbox_exchange(),
            self.broadcast_exchange(),
            self.dead_letter_queue(),
        ] {
            channel
                .exchange_delete(s(&x), ExchangeDeleteOptions::default())
                .await
                .map_err(topo_err)?;
        }
        Ok(())
    }
}

/// One subscription's consumer: owns its connection, reconnects on loss.
struct Consumer {
    endpoint: Endpoint,
    inbox: Address,
    queue: String,
    inbox_exchange: String,
    broadcast_exchange: String,
    dead_letter_queue: String,
    args: FieldTable,
    max_backoff: Duration,
    watch: ConnectionWatch,
}

struct Active {
    connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
}

impl Consumer {
    async fn start(&self) -> Result<Active, BusError> {
        let connection = self.endpoint.connect("acv-bus-consumer").await?;
        declare_shared(
            &connection,
            &self.inbox_exchange,
            &self.broadcast_exchange,
            &self.dead_letter_queue,
        )
        .await?;
        if !matches!(self.inbox, Address::Broadcast) {
            ensure_inbox_queue(
                &connection,
                &self.queue,
                &self.inbox_exchange,
                &self.inbox.inbox_token(),
                self.args.clone(),
            )
            .await?;
        }
        let channel = connection.create_channel().await.map_err(conn_err)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(conn_err)?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(conn_err)?;
        let queue = if matches!(self.inbox, Address::Broadcast) {
            let opts = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            let q = channel
                .queue_declare(s(""), opts, FieldTable::default())
                .await
                .map_err(topo_err)?;
            let name = q.name().to_string();
            channel
                .queue_bind(
                    s(&name),
                    s(&self.broadcast_exchange),
                    s(""),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(topo_err)?;
            name
        } else {
            self.queue.clone()
        };
        let tag = format!("acv-{}", uuid::Uuid::new_v4().simple());
        let consumer = channel
            .basic_consume(
                s(&queue),
                s(&tag),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(topo_err)?;
        Ok(Active {
            connection,
            channel,
            consumer,
        })
    }

    async fn run(
        self,
        first: Active,
        tx: mpsc::Sender<Result<RawDelivery, BusError>>,
        cancel: CancellationToken,
    ) {
        let mut active = Some(first);
        let mut attempt = 0u32;
        loop {
            let mut a = match active.take() {
                Some(a) => a,
                None => match self.start().await {
                    Ok(a) => {
                        self.watch.restored();
                        count(CounterName::BusReconnects, &[("transport", "amqp")], 1);
                        attempt = 0;
                        a
                    }
                    Err(error) => {
                        tracing::debug!(%error, attempt, inbox = %self.inbox, "RabbitMQ consumer reconnect failed.");
                        let wait = crate::backoff(attempt, self.max_backoff);
                        attempt += 1;
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(wait) => continue,
                        }
                    }
                },
            };
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => {
                        // Closing the connection makes the broker requeue everything we did not ack.
                        close_quietly(&a.connection).await;
                        return;
                    }
                    _ = tx.closed() => {
                        close_quietly(&a.connection).await;
                        return;
                    }
                    next = a.consumer.next() => next,
                };
                match next {
                    Some(Ok(delivery)) => {
                        let acker = AmqpAcker {
                            acker: delivery.acker,
                            channel: a.channel.clone(),
                            dead_letter_queue: self.dead_letter_queue.clone(),
                            inbox: self.inbox.inbox_token(),
                        };
                        let sender = delivery.properties.user_id().as_ref().map(|u| u.to_string());
                        let raw = RawDelivery {
                            payload: delivery.data,
                            redelivered: delivery.redelivered,
                            sender,
                            acker: Box::new(acker),
                        };
                        if tx.send(Ok(raw)).await.is_err() {
                            close_quietly(&a.connection).await;
                            return;
                        }
                    }
                    Some(Err(error)) => {
                        self.watch.lost(&error);
                        break;
                    }
                    None => {
                        // A broker shutting down cancels its consumers; a deleted queue does too.
                        self.watch.lost(&"consumer cancelled by the broker");
                        break;
                    }
                }
            }
        }
    }
}

/// Closes a consumer connection; the broker requeues what it did not ack. A failure only means it is gone already.
async fn close_quietly(connection: &Connection) {
    if let Err(error) = connection.close(200, s("subscription dropped")).await {
        tracing::debug!(%error, "Consumer connection already closed.");
    }
}

// === impl AmqpAcker ===

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|e| BusError::Ack {
                transport: T,
                message: e.to_string(),
            })
    }

    async fn nack(self: Box<Self>) -> Result<(), BusError> {
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .map(drop)
            .map_err(|e| BusError::Ack {
                transport: T,
                message: e.to_string(),
            })
    }

    async fn dead_letter(self: Box<Self>, payload: Vec<u8>, reason: String) -> Result<(), BusError> {
        let mut headers = FieldTable::default();
        headers.insert(s("x-acv-reason"), AMQPValue::LongString(reason.into()));
        headers.insert(s("x-acv-inbox"), AMQPValue::LongString(self.inbox.clone().into()));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let publish_err = |e: lapin::Error| BusError::Publish {
            transport: T,
            to: self.dead_letter_queue.clone(),
            message: e.to_string(),
        };
        let confirm = self
            .channel
            .basic_publish(
                s(&self.dead_letter_queue),
                s(""),
                BasicPublishOptions::default(),
                &payload,
                props,
            )
            .await
            .map_err(publish_err)?
            .await
            .map_err(publish_err)?;
        if matches!(confirm, Confirmation::Nack(_)) {
            return Err(BusError::Publish {
                transport: T,
                to: self.dead_letter_queue.clone(),
                message: "broker nacked".into(),
            });
        }
        self.ack().await
    }
}
