//! A readiness flag shared between the parts of a binary and its admin server's `/ready`.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// Cloneable readiness flag; starts not ready.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

// === impl Readiness ===

impl Readiness {
    /// Marks ready or not ready.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
