//! Which transport to use and how to reach its broker.
//!
//! Env keys (all optional):
//! - [`ENV_BUS`]: `memory` (default), `amqp` or `nats`.
//! - [`ENV_AMQP_URL`]: default `amqp://guest:guest@127.0.0.1:5672/%2f`.
//! - [`ENV_NATS_URL`]: default `nats://127.0.0.1:4222`.
//! - [`ENV_BUS_NAMESPACE`]: prefix of every exchange, queue, stream and subject; default `acv`.
//! - [`ENV_BUS_ACK_WAIT`]: how long NATS waits for an ack before redelivering; default `30s`.
//! - [`ENV_BUS_VERIFY_SENDER`]: `true` to reject envelopes whose `from` is not the broker-verified sender (run
//!   with per-agent users, see `scripts/broker-users.sh`); default `false` (development with one shared user).
//! - [`ENV_BUS_TLS_REQUIRED`]: `true` refuses plain connections (an `amqp://` URL; NATS without TLS); default
//!   `false`. [`ENV_BUS_TLS_CA`]: PEM file of the CA that signed the brokers' certificates.
//! - [`ENV_NATS_USER`], [`ENV_NATS_PASSWORD`]: NATS credentials.
//!
//! Secrets (`ACV_AMQP_URL`, which holds the password, and `ACV_NATS_PASSWORD`) can be given as files with the
//! `_FILE` suffix (e.g. `ACV_NATS_PASSWORD_FILE=/run/secrets/nats`). [`BusConfig`]'s `Debug` never shows them.

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use acv_core::env::{EnvError, Parser, Secret, Strings, redact_url, secret};

use crate::{Bus, BusError, SenderCheck};

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
/// Env key turning sender verification on.
pub const ENV_BUS_VERIFY_SENDER: &str = "ACV_BUS_VERIFY_SENDER";
/// Env key requiring TLS to the broker.
pub const ENV_BUS_TLS_REQUIRED: &str = "ACV_BUS_TLS_REQUIRED";
/// Env key for the brokers' CA certificate (PEM file).
pub const ENV_BUS_TLS_CA: &str = "ACV_BUS_TLS_CA";
/// Env key for the NATS user.
pub const ENV_NATS_USER: &str = "ACV_NATS_USER";
/// Env key for the NATS password (or `ACV_NATS_PASSWORD_FILE`).
pub const ENV_NATS_PASSWORD: &str = "ACV_NATS_PASSWORD";

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

/// Settings for connecting to a bus. `Debug` hides passwords.
#[derive(Clone)]
pub struct BusConfig {
    /// Which transport.
    pub transport: Transport,
    /// RabbitMQ URL (`amqp://` or `amqps://`); it holds the password, so it is never logged as is.
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
    /// Reject envelopes whose `from` is not the broker-verified sender (per-agent broker users required).
    pub verify_sender: bool,
    /// Refuse plain (non-TLS) broker connections.
    pub tls_required: bool,
    /// PEM file of the CA that signed the brokers' certificates (default: none, so TLS needs this set).
    pub tls_ca: Option<PathBuf>,
    /// NATS user.
    pub nats_user: Option<String>,
    /// NATS password.
    pub nats_password: Option<Secret>,
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
            verify_sender: false,
            tls_required: false,
            tls_ca: None,
            nats_user: None,
            nats_password: None,
        }
    }
}

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusConfig")
            .field("transport", &self.transport)
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("nats_url", &redact_url(&self.nats_url))
            .field("namespace", &self.namespace)
            .field("ack_wait", &self.ack_wait)
            .field("inbox_expiry", &self.inbox_expiry)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .field("verify_sender", &self.verify_sender)
            .field("tls_required", &self.tls_required)
            .field("tls_ca", &self.tls_ca)
            .field("nats_user", &self.nats_user)
            .field("nats_password", &self.nats_password)
            .finish()
    }
}

impl BusConfig {
    /// Reads the config from env, reporting every bad key.
    pub fn from_env(env: &dyn Strings) -> Result<Self, EnvError> {
        let d = Self::default();
        let mut p = Parser::default();
        let transport = p.parse_or(env, ENV_BUS, d.transport);
        let mut bad = Vec::new();
        let mut secret_or = |key: &str| match secret(env, key) {
            Ok(v) => v,
            Err(b) => {
                bad.push(b);
                None
            }
        };
        let amqp_url = secret_or(ENV_AMQP_URL).map_or(d.amqp_url, |s| s.expose().to_owned());
        let nats_url = secret_or(ENV_NATS_URL).map_or(d.nats_url, |s| s.expose().to_owned());
        let nats_password = secret_or(ENV_NATS_PASSWORD);
        let nats_user = env.get(ENV_NATS_USER);
        let verify_sender = p.parse_or(env, ENV_BUS_VERIFY_SENDER, false);
        let tls_required = p.parse_or(env, ENV_BUS_TLS_REQUIRED, false);
        let tls_ca = env.get(ENV_BUS_TLS_CA).map(PathBuf::from);
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
        if let Err(EnvError::Invalid(more)) = p.finish() {
            bad.extend(more);
        }
        if !bad.is_empty() {
            return Err(EnvError::Invalid(bad));
        }
        Ok(Self {
            transport,
            amqp_url,
            nats_url,
            namespace,
            ack_wait,
            verify_sender,
            tls_required,
            tls_ca,
            nats_user,
            nats_password,
            ..d
        })
    }

    /// The sender check subscriptions apply: `None` unless [`BusConfig::verify_sender`] is on.
    pub fn sender_check(&self) -> Option<SenderCheck> {
        if self.verify_sender {
            SenderCheck::for_transport(self.transport, &self.namespace)
        } else {
            None
        }
    }

    /// Refuses settings that would connect in the clear although TLS is required.
    pub fn check_tls(&self) -> Result<(), BusError> {
        if !self.tls_required {
            return Ok(());
        }
        let plain = match self.transport {
            Transport::Memory => false,
            Transport::Amqp => !self.amqp_url.starts_with("amqps://"),
            // The NATS client itself insists on a TLS handshake when required (`require_tls`).
            Transport::Nats => false,
        };
        if plain {
            return Err(BusError::Config(format!(
                "TLS is required ({ENV_BUS_TLS_REQUIRED}) but the {} connection would be plain: use an amqps:// \
                 URL",
                self.transport
            )));
        }
        Ok(())
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
