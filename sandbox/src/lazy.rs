//! [`LazySandbox`]: a [`Sandbox`] loaded on first use and released after an idle period, so a process that waits
//! for work (the sidecar) does not hold the engine, the compiled guest and the instance pool while it waits.
//!
//! Loading takes the time of [`Sandbox::new`] (with a warm compiled-code cache, well under a second; see the bench);
//! it happens on a blocking thread, once, however many runs ask at the same time. A run in progress keeps the
//! sandbox loaded; the idle period counts from the end of the last run.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use acv_protocol::ComponentName;

use crate::caps::{Capabilities, SafetyMode};
use crate::engine::{Sandbox, SandboxConfig};
use crate::error::SandboxError;
use crate::limits::Limits;
use crate::outcome::RunOutcome;

#[derive(Default)]
struct State {
    sandbox: Option<Sandbox>,
    /// Runs in progress.
    active: u32,
    /// Bumped at the end of every run; an idle timer unloads only if no run ended after it was started.
    generation: u64,
    loads: u64,
    unloads: u64,
}

/// Where the sandbox comes from.
enum Source {
    /// Built from this config on demand.
    Config(SandboxConfig),
    /// Given already loaded; never unloaded.
    Fixed,
}

/// A [`Sandbox`] loaded on first use and dropped after `idle` without runs. Share it behind an `Arc`.
pub struct LazySandbox {
    source: Source,
    idle: Option<Duration>,
    state: Arc<Mutex<State>>,
    /// Serialises loading, so concurrent first runs load once.
    loading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for LazySandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = lock(&self.state);
        f.debug_struct("LazySandbox")
            .field("idle", &self.idle)
            .field("loaded", &st.sandbox.is_some())
            .field("active", &st.active)
            .field("loads", &st.loads)
            .finish_non_exhaustive()
    }
}

/// Counters for logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LazyStats {
    /// Whether the sandbox is loaded now.
    pub loaded: bool,
    /// Runs in progress.
    pub active: u32,
    /// Times the sandbox was loaded.
    pub loads: u64,
    /// Times it was released after an idle period.
    pub unloads: u64,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is a few counters and an Option; a panic elsewhere cannot leave it half-written.
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LazySandbox {
    /// Loads from `config` on first use; releases the sandbox after `idle` without runs (`None`: keep it loaded
    /// once loaded).
    pub fn new(config: SandboxConfig, idle: Option<Duration>) -> Self {
        Self {
            source: Source::Config(config),
            idle,
            state: Arc::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Wraps a sandbox that is already loaded (tests share one per process); it is never released.
    pub fn preloaded(sandbox: Sandbox) -> Self {
        let state = State {
            sandbox: Some(sandbox),
            loads: 1,
            ..State::default()
        };
        Self {
            source: Source::Fixed,
            idle: None,
            state: Arc::new(Mutex::new(state)),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// The idle period after which the sandbox is released.
    pub fn idle(&self) -> Option<Duration> {
        self.idle
    }

    /// Current counters.
    pub fn stats(&self) -> LazyStats {
        let st = lock(&self.state);
        LazyStats {
            loaded: st.sandbox.is_some(),
            active: st.active,
            loads: st.loads,
            unloads: st.unloads,
        }
    }

    /// [`Sandbox::run`], loading the sandbox first if needed. Must be awaited inside a tokio runtime.
    pub async fn run(
        &self,
        program: &str,
        component: &ComponentName,
        mode: SafetyMode,
        caps: Arc<dyn Capabilities>,
        limits: Limits,
    ) -> Result<RunOutcome, SandboxError> {
        let lease = self.acquire().await?;
        lease.sandbox.run(program, component, mode, caps, limits).await
    }

    /// Releases the sandbox now if no run is in progress (as the idle timer does). Returns whether it did.
    pub fn unload_if_idle(&self) -> bool {
        matches!(self.source, Source::Config(_)) && unload(&self.state, None)
    }

    async fn acquire(&self) -> Result<Lease, SandboxError> {
        if let Some(lease) = self.try_lease() {
            return Ok(lease);
        }
        let _loading = self.loading.lock().await;
        if let Some(lease) = self.try_lease() {
            return Ok(lease);
        }
        let Source::Config(config) = &self.source else {
            return Err(SandboxError::Host("the preloaded sandbox is gone".into()));
        };
        let config = config.clone();
        let sandbox = tokio::task::spawn_blocking(move || Sandbox::new(config))
            .await
            .map_err(|e| SandboxError::Host(format!("the loading thread failed: {e}")))??;
        let mut st = lock(&self.state);
        st.loads += 1;
        st.active += 1;
        st.sandbox = Some(sandbox.clone());
        tracing::info!(loads = st.loads, "Sandbox loaded on demand.");
        Ok(self.lease(sandbox))
    }

    fn try_lease(&self) -> Option<Lease> {
        let mut st = lock(&self.state);
        let sandbox = st.sandbox.clone()?;
        st.active += 1;
        drop(st);
        Some(self.lease(sandbox))
    }

    fn lease(&self, sandbox: Sandbox) -> Lease {
        Lease {
            sandbox,
            _release: Release {
                state: Arc::downgrade(&self.state),
                idle: match self.source {
                    Source::Config(_) => self.idle,
                    Source::Fixed => None,
                },
            },
        }
    }
}

/// Releases a sandbox loaded from a config if no run is active (and, for a timer, no run ended since it started). The engine, the
/// compiled guest and the instance pool are dropped on a blocking thread (unmapping the pool takes a moment).
fn unload(state: &Mutex<State>, generation: Option<u64>) -> bool {
    let released = {
        let mut st = lock(state);
        if st.active > 0 || generation.is_some_and(|g| g != st.generation) {
            return false;
        }
        let released = st.sandbox.take();
        if released.is_some() {
            st.unloads += 1;
        }
        released
    };
    let Some(sandbox) = released else {
        return false;
    };
    tracing::info!("Sandbox released after an idle period.");
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || drop(sandbox));
        }
        Err(_) => drop(sandbox),
    }
    true
}

/// One run's hold on the loaded sandbox. Fields drop in order: our clone of the sandbox first, then [`Release`]
/// does the bookkeeping, so an unload really frees the sandbox.
struct Lease {
    sandbox: Sandbox,
    _release: Release,
}

/// On drop (the run ended or was cancelled): one run fewer, and the idle timer starts.
struct Release {
    state: Weak<Mutex<State>>,
    idle: Option<Duration>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let generation = {
            let mut st = lock(&state);
            st.active = st.active.saturating_sub(1);
            st.generation += 1;
            st.generation
        };
        let (Some(idle), Ok(handle)) = (self.idle, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let weak = Arc::downgrade(&state);
        handle.spawn(async move {
            tokio::time::sleep(idle).await;
            if let Some(state) = weak.upgrade() {
                unload(&state, Some(generation));
            }
        });
    }
}
