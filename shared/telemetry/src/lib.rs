//! Telemetry for acv binaries: tracing setup, Prometheus metrics with typed names, and the admin HTTP server.
//!
//! # Layout
//! - [`init_tracing`]: `tracing` subscriber from `RUST_LOG` (text or JSON).
//! - [`metrics`]: metric names as an enum and the only functions that emit them.
//! - [`admin`]: the admin server (`/live`, `/ready`, `/metrics`).
//! - [`promtool`]: lint an exposition with Prometheus's `promtool check metrics` (used by the tests).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod metrics;
pub mod promtool;

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

/// Libraries whose own log lines (a driver's raw ERRORs while a broker restarts, ...) stay out of a user's way: the
/// bus reports what matters in one plain line (see `acv-bus`). They show with `RUST_LOG=debug` (or `trace`), or when
/// `RUST_LOG` names them, e.g. `RUST_LOG=info,lapin=warn`. Targets match by prefix (`amq_protocol` covers
/// `amq_protocol_tcp`).
pub const QUIET_LIBRARIES: [&str; 3] = ["lapin", "amq_protocol", "async_nats"];

/// The filter directives for a `RUST_LOG` value (`None` or blank: `info`): as given, plus `LIB=off` for each of
/// [`QUIET_LIBRARIES`] it does not name, unless its default level is `debug` or `trace`.
pub fn filter_directives(rust_log: Option<&str>) -> String {
    let base = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let directives: Vec<&str> = base.split(',').map(str::trim).collect();
    let verbose = directives
        .iter()
        .any(|d| !d.contains('=') && matches!(d.to_ascii_lowercase().as_str(), "debug" | "trace"));
    let mut out = base.to_owned();
    if verbose {
        return out;
    }
    for lib in QUIET_LIBRARIES {
        let named = directives.iter().any(|d| {
            d.split(['=', '['])
                .next()
                .is_some_and(|target| target.starts_with(lib))
        });
        if !named {
            out.push_str(&format!(",{lib}=off"));
        }
    }
    out
}

/// Installs the global tracing subscriber. The filter comes from `RUST_LOG` (default `info`) through
/// [`filter_directives`]; an invalid `RUST_LOG` falls back to the default with a warning. Logs go to stderr so
/// that stdout stays free for command output.
pub fn init_tracing(format: LogFormat) -> Result<(), TelemetryError> {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = EnvFilter::try_new(filter_directives(rust_log.as_deref())).unwrap_or_else(|e| {
        eprintln!("warning: ignoring RUST_LOG ({e}); logging at info");
        EnvFilter::new(filter_directives(None))
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_quiet_unless_asked_for() {
        assert_eq!(
            filter_directives(None),
            "info,lapin=off,amq_protocol=off,async_nats=off"
        );
        assert_eq!(
            filter_directives(Some("  ")),
            "info,lapin=off,amq_protocol=off,async_nats=off"
        );
        assert_eq!(
            filter_directives(Some("warn,acv::audit=info")),
            "warn,acv::audit=info,lapin=off,amq_protocol=off,async_nats=off"
        );
        // Named: left as the user asked.
        assert_eq!(
            filter_directives(Some("info,lapin=warn")),
            "info,lapin=warn,amq_protocol=off,async_nats=off"
        );
        assert_eq!(
            filter_directives(Some("info,amq_protocol_tcp=trace")),
            "info,amq_protocol_tcp=trace,lapin=off,async_nats=off"
        );
        // Debug logs keep library noise.
        assert_eq!(filter_directives(Some("debug")), "debug");
        assert_eq!(
            filter_directives(Some("acv_bus=info,TRACE")),
            "acv_bus=info,TRACE"
        );
        // Every result parses.
        for v in [None, Some("warn"), Some("info,lapin=warn"), Some("debug")] {
            EnvFilter::try_new(filter_directives(v)).unwrap();
        }
    }
}
