//! Sidecar configuration. Every flag has an env fallback (`ACV_SIDECAR_*`), which is how the injector configures
//! a sidecar in a pod; the bus is configured by the `ACV_BUS*` keys of [`acv_bus::config`].

use std::{net::SocketAddr, time::Duration};

use acv_bus::Transport;
use acv_protocol::ComponentName;
use clap::Parser;

/// Env key: the component this sidecar maintains (required).
pub const ENV_COMPONENT: &str = "ACV_SIDECAR_COMPONENT";
/// Env key: admin server address, default `127.0.0.1:9991`.
pub const ENV_ADMIN_ADDR: &str = "ACV_SIDECAR_ADMIN_ADDR";
/// Env key: heartbeat interval, e.g. `10s`.
pub const ENV_HEARTBEAT: &str = "ACV_SIDECAR_HEARTBEAT";

/// acv sidecar maintainer.
#[derive(Debug, Clone, Parser)]
#[command(name = "acv-sidecar", version, about = "acv sidecar maintainer for one microservice")]
pub struct SidecarConfig {
    /// The component (microservice) this sidecar maintains, e.g. `catalogue`.
    #[arg(long, env = ENV_COMPONENT)]
    pub component: ComponentName,
    /// Bus transport: memory, amqp or nats (memory only makes sense inside one process).
    #[arg(long, env = acv_bus::config::ENV_BUS, default_value = "amqp")]
    pub bus: Transport,
    /// Admin server (/live, /ready, /metrics) address.
    #[arg(long, env = ENV_ADMIN_ADDR, default_value = "127.0.0.1:9991")]
    pub admin_addr: SocketAddr,
    /// Interval between heartbeats on the broadcast.
    #[arg(long, env = ENV_HEARTBEAT, default_value = "10s", value_parser = acv_core::env::parse_duration)]
    pub heartbeat: Duration,
    /// How long to wait for an in-flight task when shutting down.
    #[arg(long, default_value = "10s", value_parser = acv_core::env::parse_duration)]
    pub grace: Duration,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_rejects_bad_names() {
        let c = SidecarConfig::try_parse_from(["acv-sidecar", "--component", "catalogue", "--bus", "nats"]).unwrap();
        assert_eq!(c.component.as_str(), "catalogue");
        assert_eq!(c.bus, Transport::Nats);
        let err = SidecarConfig::try_parse_from(["acv-sidecar", "--component", "Cata Logue"]).unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
        let err = SidecarConfig::try_parse_from(["acv-sidecar", "--component", "x", "--bus", "kafka"]).unwrap_err();
        assert!(err.to_string().contains("unknown bus transport"), "{err}");
    }
}
