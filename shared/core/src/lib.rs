//! Small building blocks shared by the acv binaries: reading env config through a testable [`env::Strings`]
//! source, readiness latches and build information. No workspace dependencies.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod env;
pub mod readiness;

/// The version of this build, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch, saturating at 0 for clocks set before 1970.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
