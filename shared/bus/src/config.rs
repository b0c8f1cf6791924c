//! Which transport to use and how to reach its broker.
//!
//! Env keys (all optional):
//! - [`ENV_BUS`]: `memory` (default), `amqp` or `nats`.
//! - [`ENV_AMQP_URL`]: default `amqp://guest:guest@127.0.0.1:5672/%2f`.
//! - [`ENV_NATS_URL`]: default `nats://127.0.0.1:4222`.
//! - [`ENV_BUS_NAMESPACE`]: prefix of every exchange, queue, stream and subject; default `acv`.
//! - [`ENV_BUS_ACK_WAIT`]: how long NATS waits for an ack before redelivering; default `30s`.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use acv_core::env::{EnvError, Parser, Strings};

use crate::{Bus, BusError};

/// Env key selecting the transport.
pub const ENV_BUS: &str = "ACV_BUS";
/// Env key for the RabbitMQ URL.
pub const ENV_AMQP_URL: &str = "ACV_AMQP_URL";
/// Env key for the NATS URL.
pub const ENV_NATS_URL: &str = "ACV_NATS_URL";
/// Env key for the naming prefix.
pub const ENV_BUS_NAMESPACE: &str = "ACV_BUS_NAMESPACE";
/// Env key for the NATS ack wait.
pub const ENV_BUS_ACK_WAIT: &str = "ACV_BUS_ACK_WAIT";

/// A bus transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// In-process tokio channels.
    Memory,
    /// RabbitMQ over AMQP 0.9.1.
    Amqp,
    /// NATS with JetStream.
    Nats,
}

/// Settings for connecting to a bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Which transport.
    pub transport: Transport,
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// NATS URL.
    pub nats_url: String,
    /// Prefix for all broker-side names, so several deployments (or test runs) can share a broker.
    pub namespace: String,
    /// NATS: redelivery delay for unacknowledged messages.
    pub ack_wait: Duration,
    /// Delete idle inboxes after this long (RabbitMQ `x-expires`, NATS consumer inactivity). `None`: keep forever
    /// (production); client reply inboxes always expire after [`CLIENT_INBOX_EXPIRY`].
    pub inbox_expiry: Option<Duration>,
    /// Longest wait between reconnect attempts.
    pub reconnect_max_backoff: Duration,
}

/// Client (CLI) reply inboxes are removed after being idle this long.
pub const CLIENT_INBOX_EXPIRY: Duration = Duration::from_secs(600);

// === impl Transport ===

impl Transport {
    /// Lowercase name, used in metrics and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Memory => "memory",
            Transport::Amqp => "amqp",
            Transport::Nats => "nats",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "memory" | "mem" => Ok(Transport::Memory),
            "amqp" | "rabbitmq" => Ok(Transport::Amqp),
            "nats" | "jetstream" => Ok(Transport::Nats),
            other => Err(format!(
                "unknown bus transport {other:?}: expected memory, amqp or nats"
            )),
        }
    }
}

// === impl BusConfig ===

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            transport: Transport::Memory,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            namespace: "acv".into(),
            ack_wait: Duration::from_secs(30),
            inbox_expiry: None,
            reconnect_max_backoff: Duration::from_secs(5),
        }
    }
}

impl BusConfig {
    /// Reads the config from env, reporting every bad key.
    pub fn from_env(env: &dyn Strings) -> Result<Self, EnvError> {
        let d = Self::default();
        let mut p = Parser::default();
        let transport = p.parse_or(env, ENV_BUS, d.transport);
        let amqp_url = env.get(ENV_AMQP_URL).unwrap_or(d.amqp_url);
        let nats_url = env.get(ENV_NATS_URL).unwrap_or(d.nats_url);
        let namespace = p
            .parse_with(env, ENV_BUS_NAMESPACE, |s| {
                let ok = !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if ok {
                    Ok(s.to_owned())
                } else {
                    Err("use lowercase letters, digits and '-'".into())
                }
            })
            .unwrap_or(d.namespace);
        let ack_wait = p.duration_or(env, ENV_BUS_ACK_WAIT, d.ack_wait);
        p.finish()?;
        Ok(Self {
            transport,
            amqp_url,
            nats_url,
            namespace,
            ack_wait,
            ..d
        })
    }

    /// The same config with another transport.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }
}

/// Connects the configured transport.
pub async fn connect(config: &BusConfig) -> Result<Arc<dyn Bus>, BusError> {
    Ok(match config.transport {
        Transport::Memory => Arc::new(crate::memory::MemoryBus::new()),
        Transport::Amqp => Arc::new(crate::amqp::AmqpBus::connect(config.clone()).await?),
        Transport::Nats => Arc::new(crate::nats::NatsBus::connect(config.clone()).await?),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn reads_env_and_reports_bad_keys() {
        let env: HashMap<&str, &str> = [
            (ENV_BUS, "nats"),
            (ENV_BUS_NAMESPACE, "team-a"),
            (ENV_BUS_ACK_WAIT, "2s"),
        ]
        .into_iter()
        .collect();
        let c = BusConfig::from_env(&env).unwrap();
        assert_eq!(c.transport, Transport::Nats);
        assert_eq!(c.namespace, "team-a");
        assert_eq!(c.ack_wait, Duration::from_secs(2));

        let env: HashMap<&str, &str> = [(ENV_BUS, "kafka"), (ENV_BUS_NAMESPACE, "Bad.NS")]
            .into_iter()
            .collect();
        let err = BusConfig::from_env(&env).unwrap_err().to_string();
        assert!(
            err.contains("ACV_BUS=") && err.contains("ACV_BUS_NAMESPACE="),
            "{err}"
        );
    }
}
