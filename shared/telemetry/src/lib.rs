//! Telemetry for acv binaries: tracing setup, Prometheus metrics with typed names, and the admin HTTP server.
//!
//! # Layout
//! - [`init_tracing`]: `tracing` subscriber from `RUST_LOG` (text or JSON).
//! - [`metrics`]: metric names as an enum and the only functions that emit them.
//! - [`admin`]: the admin server (`/live`, `/ready`, `/metrics`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod metrics;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global subscriber or recorder was already installed.
    #[error("telemetry already initialised: {0}")]
    AlreadyInitialised(String),
    /// The admin server could not bind its address.
    #[error("admin server cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber. The filter comes from `RUST_LOG` (default `info`). Logs go to stderr
/// so that stdout stays free for command output.
pub fn init_tracing(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    result.map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}
