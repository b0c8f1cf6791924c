//! In-memory transport: tokio primitives inside one process. Same semantics as the broker transports (durable
//! inboxes for the life of the process, manual ack, redelivery of unacked messages when a subscription ends),
//! so the single-process mode and unit tests exercise the same code paths.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use acv_protocol::{Address, Envelope};
use acv_telemetry::metrics::{CounterName, count};
use async_trait::async_trait;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{Acker, Bus, BusError, DeadLetter, RawDelivery, Subscription, Transport};

/// Messages a subscriber may hold unacknowledged at once.
const PREFETCH: usize = 16;

/// The in-memory bus. Cloning shares the same queues.
#[derive(Clone)]
pub struct MemoryBus {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    broadcast: broadcast::Sender<Vec<u8>>,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Queue>,
    dead: VecDeque<DeadLetter>,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Msg>,
    notify: Arc<Notify>,
}

#[derive(Clone)]
struct Msg {
    payload: Vec<u8>,
    redelivered: bool,
}

type Unacked = Arc<Mutex<HashMap<u64, Msg>>>;

struct MemAcker {
    shared: Arc<Shared>,
    inbox: String,
    tag: u64,
    unacked: Unacked,
}

// === impl MemoryBus ===

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        let (broadcast, _) = broadcast::channel(1024);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::default(),
                broadcast,
            }),
        }
    }

    /// Messages waiting (not delivered) in an inbox.
    pub fn queued(&self, inbox: &Address) -> usize {
        self.shared
            .lock()
            .queues
            .get(&inbox.inbox_token())
            .map_or(0, |q| q.ready.len())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of plain collections; the data is still
        // consistent enough to keep delivering, which beats losing every queued message.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(&self, inbox: &str, msg: Msg, front: bool) {
        let mut state = self.lock();
        let q = state.queues.entry(inbox.to_owned()).or_default();
        if front {
            q.ready.push_front(msg);
        } else {
            q.ready.push_back(msg);
        }
        q.notify.notify_one();
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn transport(&self) -> Transport {
        Transport::Memory
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.publish_raw(&envelope.to, envelope.encode()).await?;
        count(CounterName::BusPublished, &[("transport", "memory")], 1);
        Ok(())
    }

    async fn publish_raw(&self, to: &Address, payload: Vec<u8>) -> Result<(), BusError> {
        if matches!(to, Address::Broadcast) {
            // No subscribers is fine for a broadcast: nobody is listening.
            if self.shared.broadcast.send(payload).is_err() {
                tracing::trace!("Broadcast with no subscribers.");
            }
            return Ok(());
        }
        self.shared.enqueue(
            &to.inbox_token(),
            Msg {
                payload,
                redelivered: false,
            },
            false,
        );
        Ok(())
    }

    async fn subscribe(&self, inbox: &Address) -> Result<Subscription, BusError> {
        let (tx, rx) = mpsc::channel(PREFETCH);
        let cancel = CancellationToken::new();
        let token = inbox.inbox_token();
        if matches!(inbox, Address::Broadcast) {
            tokio::spawn(broadcast_loop(
                self.shared.broadcast.subscribe(),
                tx,
                cancel.clone(),
                self.shared.clone(),
            ));
        } else {
            tokio::spawn(queue_loop(self.shared.clone(), token.clone(), tx, cancel.clone()));
        }
        Ok(Subscription::new(Transport::Memory, token, rx, cancel))
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, BusError> {
        let mut state = self.shared.lock();
        let n = max.min(state.dead.len());
        Ok(state.dead.drain(..n).collect())
    }

    async fn delete_namespace(&self) -> Result<(), BusError> {
        let mut state = self.shared.lock();
        state.queues.clear();
        state.dead.clear();
        Ok(())
    }
}

async fn queue_loop(
    shared: Arc<Shared>,
    inbox: String,
    tx: mpsc::Sender<Result<RawDelivery, BusError>>,
    cancel: CancellationToken,
) {
    let unacked: Unacked = Arc::default();
    let mut next_tag = 0u64;
    loop {
        // Wait for capacity first so that we never pop a message we cannot hand over.
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            permit = tx.reserve() => match permit { Ok(p) => p, Err(_) => break },
        };
        let notify = shared
            .lock()
            .queues
            .entry(inbox.clone())
            .or_default()
            .notify
            .clone();
        let msg = loop {
            let notified = notify.notified();
            if let Some(msg) = shared
                .lock()
                .queues
                .get_mut(&inbox)
                .and_then(|q| q.ready.pop_front())
            {
                break Some(msg);
            }
            tokio::select! {
                _ = cancel.cancelled() => break None,
                _ = notified => {}
            }
        };
        let Some(msg) = msg else { break };
        next_tag += 1;
        unacked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(next_tag, msg.clone());
        let acker = MemAcker {
            shared: shared.clone(),
            inbox: inbox.clone(),
            tag: next_tag,
            unacked: unacked.clone(),
        };
        permit.send(Ok(RawDelivery {
            payload: msg.payload,
            redelivered: msg.redelivered,
            sender: None,
            acker: Box::new(acker),
        }));
    }
    // The consumer went away: like a broker, give every unacknowledged message back, marked redelivered, in order.
    let mut pending: Vec<(u64, Msg)> = unacked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    pending.sort_by_key(|(tag, _)| std::cmp::Reverse(*tag));
    for (_, mut msg) in pending {
        msg.redelivered = true;
        shared.enqueue(&inbox, msg, true);
    }
}

async fn broadcast_loop(
    mut rx: broadcast::Receiver<Vec<u8>>,
    tx: mpsc::Sender<Result<RawDelivery, BusError>>,
    cancel: CancellationToken,
    shared: Arc<Shared>,
) {
    loop {
        let payload = tokio::select! {
            _ = cancel.cancelled() => break,
            r = rx.recv() => match r {
                Ok(p) => p,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "Broadcast subscriber lagged; heartbeats were skipped.");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        let acker = MemAcker {
            shared: shared.clone(),
            inbox: "broadcast".into(),
            tag: 0,
            unacked: Arc::default(),
        };
        if tx
            .send(Ok(RawDelivery {
                payload,
                redelivered: false,
                sender: None,
                acker: Box::new(acker),
            }))
            .await
            .is_err()
        {
            break;
        }
    }
}

// === impl MemAcker ===

impl MemAcker {
    fn take(&self) -> Option<Msg> {
        self.unacked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.tag)
    }
}

#[async_trait]
impl Acker for MemAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.take();
        Ok(())
    }

    async fn nack(self: Box<Self>) -> Result<(), BusError> {
        if let Some(mut msg) = self.take() {
            msg.redelivered = true;
            self.shared.enqueue(&self.inbox, msg, true);
        }
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, payload: Vec<u8>, reason: String) -> Result<(), BusError> {
        self.take();
        self.shared.lock().dead.push_back(DeadLetter {
            inbox: self.inbox.clone(),
            reason,
            payload,
        });
        Ok(())
    }
}
