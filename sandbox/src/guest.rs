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
    let beside = guest
        .parent()
        .map_or_else(|| PathBuf::from(CACHE_DIR_NAME), |dir| dir.join(CACHE_DIR_NAME));
    let cache = match cache_dir {
        Some(dir) => {
            if dir != beside {
                match seed_cache(&beside, dir) {
                    Ok(0) => {}
                    Ok(files) => tracing::info!(from = %beside.display(), to = %dir.display(), files,
                        "Seeded the sandbox's compiled-code cache with the one shipped beside the guest."),
                    Err(error) => tracing::warn!(from = %beside.display(), to = %dir.display(), %error,
                        "Could not seed the sandbox's compiled-code cache; the guest is compiled at the first step."),
                }
            }
            dir.to_path_buf()
        }
        None => beside,
    };
    Ok(SandboxConfig::new(guest).with_cache_dir(cache))
}

/// Copies the compiled code shipped beside the guest (`seed`, e.g. an image's `/app/cache`, filled at build time)
/// into the cache directory `dir` when `dir` is missing or empty (e.g. a pod's fresh writable volume), so the first
/// step loads the guest instead of compiling it again. Returns the files copied: 0 when there is no seed or `dir`
/// already has entries (a cache in use is never overwritten).
pub fn seed_cache(seed: &Path, dir: &Path) -> std::io::Result<u64> {
    if !seed.is_dir() {
        return Ok(0);
    }
    if dir.is_dir() && std::fs::read_dir(dir)?.next().is_some() {
        return Ok(0);
    }
    std::fs::create_dir_all(dir)?;
    copy_tree(seed, dir)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut files = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            files += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            files += 1;
        }
    }
    Ok(files)
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
    fn an_empty_cache_dir_is_seeded_from_the_one_beside_the_guest_and_a_used_one_never_overwritten() {
        let root = std::env::temp_dir().join(format!("acv-seed-test-{}", std::process::id()));
        let seed = root.join("app").join(CACHE_DIR_NAME);
        std::fs::create_dir_all(seed.join("modules").join("ab")).unwrap();
        std::fs::write(seed.join("modules").join("ab").join("code"), b"compiled").unwrap();
        std::fs::write(seed.join("stats"), b"1").unwrap();
        std::fs::write(root.join("app").join(GUEST_FILE_NAME), b"not wasm").unwrap();

        let pod_cache = root.join("var-cache-acv");
        let config =
            installed_config(Some(&root.join("app").join(GUEST_FILE_NAME)), Some(&pod_cache)).unwrap();
        assert_eq!(config.cache_dir.as_deref(), Some(pod_cache.as_path()));
        assert_eq!(
            std::fs::read(pod_cache.join("modules").join("ab").join("code")).unwrap(),
            b"compiled"
        );
        assert!(pod_cache.join("stats").is_file());

        // Used already: left alone.
        std::fs::write(pod_cache.join("stats"), b"2").unwrap();
        assert_eq!(seed_cache(&seed, &pod_cache).unwrap(), 0);
        assert_eq!(std::fs::read(pod_cache.join("stats")).unwrap(), b"2");
        // No seed: nothing to do.
        assert_eq!(seed_cache(&root.join("missing"), &root.join("other")).unwrap(), 0);
        std::fs::remove_dir_all(&root).ok();
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
