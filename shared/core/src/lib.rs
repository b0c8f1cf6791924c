//! Small building blocks shared by the acv binaries: reading env config through a testable [`env::Strings`]
//! source, readiness latches and build information. No workspace dependencies.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod env;
pub mod readiness;

/// The version of this build, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// sysexits `EX_USAGE`: the exit code of a binary started with bad configuration.
pub const EX_USAGE: u8 = 64;

/// Runs a binary's async `main` on a new multi-thread tokio runtime; a runtime that cannot start is reported and
/// exits with failure.
pub fn block_on(main: impl std::future::Future<Output = std::process::ExitCode>) -> std::process::ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(main),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Milliseconds since the Unix epoch, saturating at 0 for clocks set before 1970.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
