//! Finding (and if needed building) the guest component of this checkout, for tests and benches (feature `dev`).
//! Production callers use [`guest::installed_config`](crate::guest::installed_config).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::{Sandbox, SandboxConfig, SandboxError};

pub use crate::guest::{ENV_CACHE_DIR, ENV_GUEST};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `sandbox/guest/build/acv-guest.wasm` in this checkout.
pub fn checkout_guest_path() -> PathBuf {
    crate_dir().join("guest/build/acv-guest.wasm")
}

/// Compiled-code cache next to the built guest (`sandbox/guest/build/cache`, never committed).
pub fn checkout_cache_dir() -> PathBuf {
    crate_dir().join("guest/build/cache")
}

/// The guest to use: `$ACV_SANDBOX_GUEST` if set (must exist), else this checkout's guest, built with
/// `make -C sandbox/guest` (a no-op when up to date; needs `componentize-py`, see `docs/sandbox.md`).
/// Builds at most once per process.
pub fn ensure_guest() -> Result<PathBuf, SandboxError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Ok(path) = std::env::var(ENV_GUEST) {
                let path = PathBuf::from(path);
                return if path.is_file() {
                    Ok(path)
                } else {
                    Err(format!("{ENV_GUEST}={} does not name a file", path.display()))
                };
            }
            let output = Command::new("make")
                .arg("-s")
                .arg("-C")
                .arg(crate_dir().join("guest"))
                .output()
                .map_err(|e| format!("cannot run `make -C sandbox/guest`: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "`make -C sandbox/guest` failed ({}): {}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            let path = checkout_guest_path();
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{} missing after make", path.display()))
            }
        })
        .clone()
        .map_err(SandboxError::BuildGuest)
}

/// A [`SandboxConfig`] for the guest of [`ensure_guest`] with the compiled-code cache in `$ACV_SANDBOX_CACHE_DIR`,
/// else `sandbox/guest/build/cache` of this checkout. (If the cache directory cannot be created the sandbox
/// compiles without a cache and logs a warning.)
pub fn checkout_config() -> Result<SandboxConfig, SandboxError> {
    let cache = std::env::var_os(ENV_CACHE_DIR).map_or_else(checkout_cache_dir, PathBuf::from);
    Ok(SandboxConfig::new(ensure_guest()?).with_cache_dir(cache))
}

/// One [`Sandbox`] per process for this checkout's guest ([`checkout_config`]), created on first use: tests and
/// benches share it instead of each loading the component again. Clones share the engine and the loaded component.
pub fn shared_sandbox() -> Result<Sandbox, SandboxError> {
    static SANDBOX: OnceLock<Result<Sandbox, String>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            checkout_config()
                .and_then(Sandbox::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(SandboxError::Shared)
}
