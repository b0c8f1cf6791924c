//! Where an installed sidecar finds the guest component and its compiled-code cache: a configured path (flag or
//! `ACV_SANDBOX_GUEST`), else `acv-guest.wasm` next to the running binary. Never the source tree (that is
//! [`dev`](crate::dev)'s job, for tests and benches only).

use std::path::{Path, PathBuf};

use crate::{SandboxConfig, SandboxError};

/// Env var naming the guest component (`acv-guest.wasm`, built by `make guest`).
pub const ENV_GUEST: &str = "ACV_SANDBOX_GUEST";
/// Env var naming the compiled-code cache directory (default: `cache/` next to the guest).
pub const ENV_CACHE_DIR: &str = "ACV_SANDBOX_CACHE_DIR";
/// File name of the guest component when it ships next to the binary.
pub const GUEST_FILE_NAME: &str = "acv-guest.wasm";
/// Name of the compiled-code cache directory next to the guest.
pub const CACHE_DIR_NAME: &str = "cache";

/// The guest component: `configured` if given (it must be a file), else [`GUEST_FILE_NAME`] in the directory of the
/// running binary. A missing file is [`SandboxError::GuestNotFound`], naming the path looked at and how to fix it.
pub fn locate_guest(configured: Option<&Path>) -> Result<PathBuf, SandboxError> {
    let path = match configured {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(GUEST_FILE_NAME)))
            .ok_or_else(|| SandboxError::GuestNotFound {
                path: PathBuf::from(GUEST_FILE_NAME),
                configured: false,
            })?,
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(SandboxError::GuestNotFound {
            path,
            configured: configured.is_some(),
        })
    }
}

/// A [`SandboxConfig`] for an installation: the guest of [`locate_guest`] and the compiled-code cache in
/// `cache_dir`, else [`CACHE_DIR_NAME`] next to the guest (if it cannot be created the sandbox compiles without a
/// cache and logs a warning).
pub fn installed_config(
    guest: Option<&Path>,
    cache_dir: Option<&Path>,
) -> Result<SandboxConfig, SandboxError> {
    let guest = locate_guest(guest)?;
    let cache = match cache_dir {
        Some(dir) => dir.to_path_buf(),
        None => guest
            .parent()
            .map_or_else(|| PathBuf::from(CACHE_DIR_NAME), |dir| dir.join(CACHE_DIR_NAME)),
    };
    Ok(SandboxConfig::new(guest).with_cache_dir(cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_guest_must_exist() {
        let missing = std::env::temp_dir().join(format!("acv-no-guest-{}.wasm", std::process::id()));
        let err = locate_guest(Some(&missing)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains(ENV_GUEST) && msg.contains("make guest"), "{msg}");

        let dir = std::env::temp_dir().join(format!("acv-guest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(GUEST_FILE_NAME);
        std::fs::write(&file, b"not wasm").unwrap();
        let config = installed_config(Some(&file), None).unwrap();
        assert_eq!(config.component_path, file);
        assert_eq!(config.cache_dir, Some(dir.join(CACHE_DIR_NAME)));
        let config = installed_config(Some(&file), Some(Path::new("/tmp/elsewhere"))).unwrap();
        assert_eq!(config.cache_dir.as_deref(), Some(Path::new("/tmp/elsewhere")));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_default_is_next_to_the_binary() {
        // The test binary's directory has no acv-guest.wasm: the error names that place.
        let err = locate_guest(None).unwrap_err();
        let exe_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
        match err {
            SandboxError::GuestNotFound { path, configured } => {
                assert_eq!(path, exe_dir.join(GUEST_FILE_NAME));
                assert!(!configured);
            }
            other => panic!("expected GuestNotFound, got {other}"),
        }
    }
}
