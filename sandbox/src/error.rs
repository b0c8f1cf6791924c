//! Errors of the sandbox itself (not of the program it runs): bad configuration, a component that does not load,
//! an instantiation that fails. What happens *inside* a run (a trap, a timeout, a memory cap hit, a Python
//! exception) is not an error but a [`Verdict`](crate::Verdict) in the [`RunOutcome`](crate::RunOutcome).
//!
//! `wasmtime::Error` never leaves this crate: it is rendered to text at the edge, so callers do not depend on
//! wasmtime.

use std::path::PathBuf;

/// Why the sandbox could not be built or could not run a program.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The guest component file is missing or unreadable.
    #[error("cannot read guest component {path}: {source} (build it with `make guest`)")]
    ReadComponent {
        /// The path given in [`SandboxConfig::component_path`](crate::SandboxConfig::component_path).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The guest component is not where it was configured or expected (next to the binary).
    #[error(
        "sandbox guest component not found at {path}{where_}: pass --guest or set {env} to the built \
         acv-guest.wasm (`make guest` builds it into sandbox/guest/build/), or install it next to the binary",
        where_ = located(.configured),
        env = crate::guest::ENV_GUEST
    )]
    GuestNotFound {
        /// The path looked at.
        path: PathBuf,
        /// Whether the path was configured (flag/env) rather than the default next to the binary.
        configured: bool,
    },
    /// The guest component could not be built (componentize-py missing or failing).
    #[error("cannot build the guest component: {0}")]
    BuildGuest(String),
    /// The process-wide sandbox of `dev::shared_sandbox` could not be created; the message is the original error's.
    #[error("the shared sandbox could not be created: {0}")]
    Shared(String),
    /// The engine configuration was rejected by wasmtime (or the compiled-code cache could not be set up).
    #[error("invalid engine configuration: {0}")]
    Engine(String),
    /// The component did not compile, or was not the acv guest world.
    #[error("cannot compile guest component {path}: {message}")]
    Compile {
        /// The component file.
        path: PathBuf,
        /// wasmtime's error, rendered.
        message: String,
    },
    /// The component's imports could not be satisfied by the host (e.g. a WIT world mismatch).
    #[error("cannot link guest component: {0}")]
    Link(String),
    /// Run limits out of range (e.g. a memory cap below what the interpreter needs to start).
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    /// The program text is larger than [`MAX_PROGRAM_BYTES`](crate::engine::MAX_PROGRAM_BYTES).
    #[error("program is {0} bytes; the limit is {max}", max = crate::engine::MAX_PROGRAM_BYTES)]
    ProgramTooLarge(usize),
    /// A fresh instance could not be created for reasons other than the memory cap.
    #[error("cannot instantiate guest: {0}")]
    Instantiate(String),
    /// The guest failed in a way that is not a verdict about the program (a host bug or a broken component).
    #[error("sandbox host failure: {0}")]
    Host(String),
}

impl SandboxError {
    /// A short static label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SandboxError::ReadComponent { .. } => "read_component",
            SandboxError::GuestNotFound { .. } => "guest_not_found",
            SandboxError::BuildGuest(_) => "build_guest",
            SandboxError::Shared(_) => "shared",
            SandboxError::Engine(_) => "engine",
            SandboxError::Compile { .. } => "compile",
            SandboxError::Link(_) => "link",
            SandboxError::InvalidLimits(_) => "invalid_limits",
            SandboxError::ProgramTooLarge(_) => "program_too_large",
            SandboxError::Instantiate(_) => "instantiate",
            SandboxError::Host(_) => "host",
        }
    }
}

fn located(configured: &bool) -> &'static str {
    if *configured {
        " (as configured)"
    } else {
        " (next to the binary)"
    }
}

/// Renders a wasmtime error with its whole cause chain on one line.
pub(crate) fn render(err: &wasmtime::Error) -> String {
    format!("{err:#}")
}
