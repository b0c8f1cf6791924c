//! One clear line per broker outage. A process has a publisher connection and one per consumer; when the broker
//! restarts each notices on its own. The first to lose its connection logs "Connection to RabbitMQ lost;
//! reconnecting." at WARN, the last to get back logs "Reconnected to RabbitMQ." at INFO; every other detail (which
//! inbox, the driver's error, each failed attempt) goes to DEBUG. A command-line user sees two plain lines, not a
//! storm of driver errors.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

/// How many connections to one broker are currently lost.
#[derive(Debug)]
pub(crate) struct Outage {
    broker: &'static str,
    down: AtomicUsize,
}

/// One connection's view: marks it lost or restored at most once per change, and takes itself out of the count
/// when dropped while lost.
#[derive(Debug)]
pub(crate) struct ConnectionWatch {
    outage: Arc<Outage>,
    who: String,
    down: AtomicBool,
}

impl Outage {
    /// No connection lost, for the broker named `broker` in user-facing lines.
    pub(crate) fn new(broker: &'static str) -> Arc<Self> {
        Arc::new(Self {
            broker,
            down: AtomicUsize::new(0),
        })
    }

    /// A watch for one connection, named `who` in debug lines.
    pub(crate) fn watch(self: &Arc<Self>, who: impl Into<String>) -> ConnectionWatch {
        ConnectionWatch {
            outage: self.clone(),
            who: who.into(),
            down: AtomicBool::new(false),
        }
    }

    /// Whether any connection is lost right now.
    pub(crate) fn is_lost(&self) -> bool {
        self.down.load(Ordering::SeqCst) > 0
    }
}

impl ConnectionWatch {
    /// This connection is lost because of `detail`; returns whether this started the outage (and logged the line).
    pub(crate) fn lost(&self, detail: &dyn std::fmt::Display) -> bool {
        let o = &self.outage;
        tracing::debug!(who = %self.who, detail = %detail, broker = o.broker, "Connection lost.");
        if self.down.swap(true, Ordering::SeqCst) {
            return false;
        }
        let first = o.down.fetch_add(1, Ordering::SeqCst) == 0;
        if first {
            tracing::warn!("Connection to {} lost; reconnecting.", o.broker);
        }
        first
    }

    /// This connection is (re)established; returns whether this ended the outage (and logged the line).
    pub(crate) fn restored(&self) -> bool {
        if !self.down.swap(false, Ordering::SeqCst) {
            return false;
        }
        let o = &self.outage;
        tracing::debug!(who = %self.who, broker = o.broker, "Connection restored.");
        let last = o.down.fetch_sub(1, Ordering::SeqCst) == 1;
        if last {
            tracing::info!("Reconnected to {}.", o.broker);
        }
        last
    }
}

impl Drop for ConnectionWatch {
    fn drop(&mut self) {
        if *self.down.get_mut() {
            self.outage.down.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_when_the_first_is_lost_and_one_when_the_last_is_back() {
        let o = Outage::new("RabbitMQ");
        let (publisher, consumer_a, consumer_b) = (o.watch("publisher"), o.watch("a"), o.watch("b"));
        assert!(!publisher.restored(), "a first connection is not a recovery");
        assert!(consumer_a.lost(&"io error"));
        assert!(
            !consumer_a.lost(&"io error again"),
            "the same connection counts once"
        );
        assert!(
            !consumer_b.lost(&"io error"),
            "a second connection in the same outage is quiet"
        );
        assert!(o.is_lost());
        assert!(!consumer_a.restored(), "b is still down");
        assert!(!consumer_a.restored());
        assert!(consumer_b.restored(), "the last one back ends the outage");
        assert!(!o.is_lost());
        assert!(publisher.lost(&"closed"), "a new outage is reported again");
        assert!(publisher.restored());
    }

    #[test]
    fn a_connection_dropped_while_lost_leaves_the_count() {
        let o = Outage::new("NATS");
        let a = o.watch("a");
        let b = o.watch("b");
        assert!(a.lost(&"x"));
        assert!(!b.lost(&"x"));
        drop(b);
        assert!(a.restored(), "b's subscription went away; a is the last");
        assert!(!o.is_lost());
    }
}
