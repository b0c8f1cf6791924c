//! One clear line per broker outage. A process has a publisher and several consumers per broker; when the broker
//! restarts each of them notices on its own. The first to notice logs "Connection to RabbitMQ lost; reconnecting."
//! at WARN, the first to get back logs "Reconnected to RabbitMQ." at INFO; every other detail (which inbox, the
//! driver's error, each failed attempt) goes to DEBUG, so a command-line user sees two plain lines, not a storm.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the connection to one broker is currently known to be lost.
#[derive(Debug)]
pub(crate) struct Outage {
    broker: &'static str,
    lost: AtomicBool,
}

impl Outage {
    /// Connected, for the broker named `broker` in user-facing lines.
    pub(crate) fn new(broker: &'static str) -> Self {
        Self {
            broker,
            lost: AtomicBool::new(false),
        }
    }

    /// Records a loss noticed by `who` because of `detail`; returns whether this call started the outage (and
    /// logged the user-facing line).
    pub(crate) fn lost(&self, who: &str, detail: &dyn std::fmt::Display) -> bool {
        let first = !self.lost.swap(true, Ordering::SeqCst);
        if first {
            tracing::warn!("Connection to {} lost; reconnecting.", self.broker);
        }
        tracing::debug!(who, detail = %detail, broker = self.broker, "Connection lost.");
        first
    }

    /// Records a (re)connection by `who`; returns whether this call ended an outage (and logged the line).
    pub(crate) fn restored(&self, who: &str) -> bool {
        let ended = self.lost.swap(false, Ordering::SeqCst);
        if ended {
            tracing::info!("Reconnected to {}.", self.broker);
        }
        tracing::debug!(who, broker = self.broker, "Connected.");
        ended
    }

    /// Whether an outage is in progress.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_outage_whoever_notices() {
        let o = Outage::new("RabbitMQ");
        assert!(!o.restored("publisher"), "the first connection is not a recovery");
        assert!(o.lost("consumer catalogue", &"io error"));
        assert!(!o.lost("consumer manager", &"io error"), "second notice of the same outage is quiet");
        assert!(!o.lost("publisher", &"closed"));
        assert!(o.is_lost());
        assert!(o.restored("consumer catalogue"));
        assert!(!o.restored("consumer manager"), "one recovery line");
        assert!(!o.is_lost());
        assert!(o.lost("publisher", &"closed"), "a new outage is reported again");
    }
}
