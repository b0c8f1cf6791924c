//! Starting the testbed shop on the local runtime from Rust (tests, the experiment harness): the shop's runtime
//! file is compiled in, the `acv-shop` binary is found next to the running executable, and ports/timings can be
//! switched to ephemeral ports and fast test timings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use acv_cluster::ClusterError;
use acv_runtime::RuntimeSpec;

/// The shop's runtime file (`e2e/shop.yaml`), compiled in.
pub const SHOP_YAML: &str = include_str!("../shop.yaml");

/// Every shop service (front-end needs catalogue, carts, orders and user; orders needs payment and shipping).
pub const ALL: [&str; 7] = crate::shop::SERVICES;

/// How to start the shop.
#[derive(Debug, Clone)]
pub struct ShopOptions {
    /// The `acv-shop` binary.
    pub shop_bin: PathBuf,
    /// Every front on an ephemeral port (instead of 8079, 8081-8086), so runs can overlap.
    pub ephemeral_ports: bool,
    /// Short probe, sample and backoff intervals (100 ms probes, 500 ms samples, 200 ms-1 s backoff, 1.5 s grace).
    pub fast: bool,
    /// Only these services (all if empty).
    pub services: Vec<String>,
}

// === impl ShopOptions ===

impl ShopOptions {
    /// Ephemeral ports, default timings, every service, `acv-shop` found by [`find_shop_bin`].
    pub fn new() -> Result<Self, ClusterError> {
        let shop_bin = find_shop_bin().ok_or_else(|| {
            ClusterError::RuntimeFile(
                "cannot find the acv-shop binary; build it with cargo build -p acv-e2e".into(),
            )
        })?;
        Ok(ShopOptions {
            shop_bin,
            ephemeral_ports: true,
            fast: false,
            services: Vec::new(),
        })
    }

    /// The runtime spec.
    pub fn spec(&self) -> Result<RuntimeSpec, ClusterError> {
        let mut vars = BTreeMap::new();
        vars.insert("SHOP_BIN".to_owned(), self.shop_bin.display().to_string());
        if self.ephemeral_ports {
            for s in ALL {
                vars.insert(
                    format!("{}_PORT", s.to_ascii_uppercase().replace('-', "_")),
                    "0".to_owned(),
                );
            }
        }
        if self.fast {
            for (k, v) in [
                ("PROBE_INTERVAL_MS", "100"),
                ("SAMPLE_INTERVAL_MS", "500"),
                ("BACKOFF_INITIAL_MS", "200"),
                ("BACKOFF_MAX_MS", "1000"),
                ("STARTUP_GRACE_MS", "1500"),
            ] {
                vars.insert(k.to_owned(), v.to_owned());
            }
        }
        let mut spec = RuntimeSpec::parse(SHOP_YAML, &vars)?;
        if !self.services.is_empty() {
            for s in &self.services {
                if spec.service(s).is_none() {
                    return Err(ClusterError::UnknownComponent(s.clone()));
                }
            }
            spec.services
                .retain(|s| self.services.iter().any(|n| n == s.name.as_str()));
        }
        Ok(spec)
    }
}

/// `acv-shop` next to the running executable, or one directory up (where cargo puts binaries for tests in `deps/`).
pub fn find_shop_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("acv-shop"),
        dir.parent().map(|p| p.join("acv-shop")).unwrap_or_default(),
    ]
    .into_iter()
    .find(|p| is_file(p))
}

fn is_file(p: &Path) -> bool {
    p.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_variants() {
        let opts = ShopOptions {
            shop_bin: "/x/acv-shop".into(),
            ephemeral_ports: true,
            fast: true,
            services: vec!["catalogue".into(), "user".into()],
        };
        let spec = opts.spec().unwrap();
        assert_eq!(spec.services.len(), 2);
        assert!(
            spec.services
                .iter()
                .all(|s| s.port == 0 && s.command[0] == "/x/acv-shop")
        );
        assert_eq!(spec.settings.probe_interval_ms, 100);
        let fixed = ShopOptions {
            ephemeral_ports: false,
            fast: false,
            services: vec![],
            ..opts.clone()
        };
        let spec = fixed.spec().unwrap();
        assert_eq!(spec.service("front-end").unwrap().port, 8079);
        assert_eq!(spec.services.len(), 7);
        let bad = ShopOptions {
            services: vec!["nope".into()],
            ..opts
        };
        assert!(matches!(bad.spec(), Err(ClusterError::UnknownComponent(_))));
    }
}
