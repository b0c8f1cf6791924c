//! The sidecar's audit trail: every program, host call, peer call and report becomes an [`AuditRecord`] that
//! reaches the manager's store, in batches, without ever blocking the agent.
//!
//! Recording only appends to an in-memory buffer (a short mutex, no I/O, no await). A flusher task sends the buffer
//! to the manager as [`Body::Audit`] envelopes of at most [`MAX_AUDIT_BATCH`] records, every flush interval and at
//! shutdown. A batch the bus does not take (broker down) stays in the buffer and is sent again at the next interval;
//! records have unique ids and the manager skips ids it already has, so a resend is harmless. The buffer is
//! bounded: when it is full, the **oldest** records are dropped (newest kept), each drop is counted in
//! `acv_audit_dropped_total` and logged (once per flush interval), so a long outage loses the start of the trail,
//! never the agent's time. Records also go to the log (tracing target `acv::audit`) as before.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use acv_bus::{Bus, BusError};
use acv_protocol::{Address, AuditBatch, AuditKind, AuditRecord, Body, ComponentName, Envelope};
use acv_telemetry::metrics::{CounterName, count};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Most records one envelope carries.
pub const MAX_AUDIT_BATCH: usize = acv_protocol::audit::MAX_AUDIT_BATCH;

/// Default bound of the buffer, in records.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Default flush interval.
pub const DEFAULT_FLUSH_EVERY: Duration = Duration::from_secs(1);

struct Buffer {
    records: VecDeque<(u64, AuditRecord)>,
    /// Sequence number of the next record.
    next: u64,
    /// Dropped since the last warning.
    dropped_unreported: u64,
}

struct Inner {
    component: ComponentName,
    capacity: usize,
    buffer: Mutex<Buffer>,
    /// Woken when a full batch is waiting.
    ready: tokio::sync::Notify,
}

/// A handle to the audit trail of one sidecar; cheap to clone. [`AuditLog::disabled`] records nothing (tests,
/// tools).
#[derive(Clone, Default)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(i) => write!(f, "AuditLog({}, {} max)", i.component, i.capacity),
            None => f.write_str("AuditLog(disabled)"),
        }
    }
}

/// One record to write (the log fills in id, component and time).
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The call, peer or step description.
    pub name: Option<String>,
    /// Arguments of a call.
    pub args: Option<Value>,
    /// How it ended, one word.
    pub outcome: Option<String>,
    /// Everything else.
    pub detail: Value,
}

// === impl AuditLog ===

impl AuditLog {
    /// A log that records nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// A log for `component` buffering at most `capacity` records (at least one batch).
    pub fn new(component: ComponentName, capacity: usize) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                component,
                capacity: capacity.max(MAX_AUDIT_BATCH),
                buffer: Mutex::new(Buffer {
                    records: VecDeque::new(),
                    next: 0,
                    dropped_unreported: 0,
                }),
                ready: tokio::sync::Notify::new(),
            })),
        }
    }

    /// Whether records are kept.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Records one thing the sidecar did in `episode`. Never blocks on I/O; drops the oldest record when full.
    pub fn record(&self, episode: &str, kind: AuditKind, entry: Entry) {
        let Some(inner) = &self.inner else { return };
        let record = AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            component: inner.component.clone(),
            episode: episode.to_owned(),
            at_ms: acv_core::now_ms(),
            kind,
            name: entry.name,
            args: entry.args,
            outcome: entry.outcome,
            detail: entry.detail,
        };
        let full_batch = {
            let mut b = inner
                .buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while b.records.len() >= inner.capacity {
                b.records.pop_front();
                b.dropped_unreported += 1;
                count(CounterName::AuditDropped, &[], 1);
            }
            let seq = b.next;
            b.next += 1;
            b.records.push_back((seq, record));
            b.records.len() >= MAX_AUDIT_BATCH
        };
        if full_batch {
            inner.ready.notify_one();
        }
    }

    /// Records waiting to be sent.
    pub fn buffered(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| {
            i.buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .records
                .len()
        })
    }

    /// Sends everything buffered to the manager, batch by batch; stops at the first batch the bus refuses (it stays
    /// buffered). Returns how many records were sent.
    pub async fn flush(&self, bus: &dyn Bus) -> Result<usize, BusError> {
        let Some(inner) = &self.inner else { return Ok(0) };
        let mut sent = 0;
        loop {
            let (batch, last_seq) = {
                let mut b = inner
                    .buffer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if b.dropped_unreported > 0 {
                    tracing::warn!(
                        dropped = b.dropped_unreported,
                        capacity = inner.capacity,
                        "Audit buffer full: the oldest records were dropped (is the bus down?)."
                    );
                    b.dropped_unreported = 0;
                }
                let batch: Vec<AuditRecord> = b
                    .records
                    .iter()
                    .take(MAX_AUDIT_BATCH)
                    .map(|(_, r)| r.clone())
                    .collect();
                let last = batch
                    .len()
                    .checked_sub(1)
                    .and_then(|i| b.records.get(i))
                    .map(|(s, _)| *s);
                (batch, last)
            };
            let Some(last_seq) = last_seq else { return Ok(sent) };
            let n = batch.len();
            let env = Envelope::new(
                uuid::Uuid::now_v7().to_string(),
                Address::Component(inner.component.clone()),
                Address::Manager,
                acv_core::now_ms(),
                Body::Audit(AuditBatch {
                    component: inner.component.clone(),
                    records: batch,
                }),
            );
            bus.publish(&env).await?;
            sent += n;
            // Remove what was sent (records dropped meanwhile for space are gone already).
            let mut b = inner
                .buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while b.records.front().is_some_and(|(s, _)| *s <= last_seq) {
                b.records.pop_front();
            }
        }
    }

    /// Runs the flusher until `shutdown`: every `every` (or as soon as a full batch waits) the buffer goes to the
    /// manager; after `shutdown` one last flush is tried.
    pub async fn run_flusher(self, bus: Arc<dyn Bus>, every: Duration, shutdown: CancellationToken) {
        let Some(inner) = self.inner.clone() else { return };
        let mut failing = false;
        loop {
            let stop = tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(every) => false,
                () = inner.ready.notified() => false,
            };
            match self.flush(bus.as_ref()).await {
                Ok(_) if failing => {
                    tracing::info!("Audit records flow to the manager again.");
                    failing = false;
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    tracing::warn!(%error, buffered = self.buffered(),
                        "Audit batch not sent; kept and retried at the next interval.");
                    failing = true;
                }
                Err(_) => {}
            }
            if stop {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use acv_bus::{DeadLetter, Subscription, Transport, memory::MemoryBus};

    use super::*;

    /// A memory bus whose publishes fail while `down` is set (a broker outage).
    struct Flaky {
        inner: MemoryBus,
        down: AtomicBool,
    }

    #[async_trait::async_trait]
    impl Bus for Flaky {
        fn transport(&self) -> Transport {
            self.inner.transport()
        }
        async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(BusError::Publish {
                    transport: Transport::Memory,
                    to: envelope.to.to_string(),
                    message: "broker down (test)".into(),
                });
            }
            self.inner.publish(envelope).await
        }
        async fn publish_raw(&self, to: &Address, payload: Vec<u8>) -> Result<(), BusError> {
            self.inner.publish_raw(to, payload).await
        }
        async fn subscribe(&self, inbox: &Address) -> Result<Subscription, BusError> {
            self.inner.subscribe(inbox).await
        }
        async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, BusError> {
            self.inner.take_dead_letters(max).await
        }
        async fn delete_namespace(&self) -> Result<(), BusError> {
            self.inner.delete_namespace().await
        }
    }

    #[tokio::test]
    async fn records_survive_an_outage_and_are_sent_after_it() {
        let bus = Arc::new(Flaky {
            inner: MemoryBus::new(),
            down: AtomicBool::new(true),
        });
        let mut manager = bus.subscribe(&Address::Manager).await.unwrap();
        let log = log(1_000);
        let stop = CancellationToken::new();
        let flusher = tokio::spawn(log.clone().run_flusher(
            bus.clone(),
            Duration::from_millis(20),
            stop.clone(),
        ));
        for n in 0..5 {
            log.record("e1", AuditKind::HostCall, entry(n));
        }
        // Several intervals pass while the broker is down: nothing is lost, nothing blocks.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(log.buffered(), 5);
        bus.down.store(false, Ordering::SeqCst);
        let d = tokio::time::timeout(Duration::from_secs(5), manager.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Body::Audit(batch) = &d.envelope.body else {
            panic!("not audit")
        };
        assert_eq!(batch.records.len(), 5);
        assert_eq!(batch.records[0].name.as_deref(), Some("r0"));
        stop.cancel();
        flusher.await.unwrap();
        assert_eq!(log.buffered(), 0);
    }

    fn log(capacity: usize) -> AuditLog {
        AuditLog::new(ComponentName::new("catalogue").unwrap(), capacity)
    }

    fn entry(n: u64) -> Entry {
        Entry {
            name: Some(format!("r{n}")),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn flushes_in_batches_and_drops_the_oldest_when_full() {
        let log = log(MAX_AUDIT_BATCH + 10);
        for n in 0..(MAX_AUDIT_BATCH as u64 + 20) {
            log.record("e1", AuditKind::Program, entry(n));
        }
        assert_eq!(log.buffered(), MAX_AUDIT_BATCH + 10, "bounded");
        let bus = MemoryBus::new();
        let mut manager = bus.subscribe(&Address::Manager).await.unwrap();
        let sent = log.flush(&bus).await.unwrap();
        assert_eq!(sent, MAX_AUDIT_BATCH + 10);
        assert_eq!(log.buffered(), 0);
        let mut names = Vec::new();
        for _ in 0..2 {
            let d = manager.next().await.unwrap().unwrap();
            let Body::Audit(batch) = &d.envelope.body else {
                panic!("not audit")
            };
            names.extend(batch.records.iter().map(|r| r.name.clone().unwrap()));
        }
        assert_eq!(
            names.first().map(String::as_str),
            Some("r10"),
            "the 10 oldest were dropped"
        );
        assert_eq!(names.len(), MAX_AUDIT_BATCH + 10);
        assert!(AuditLog::disabled().flush(&bus).await.unwrap() == 0);
    }
}
