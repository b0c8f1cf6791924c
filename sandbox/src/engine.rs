//! The [`Sandbox`]: one wasmtime engine with the guest component compiled (or loaded from the compiled-code cache)
//! and pre-linked once; every [`Sandbox::run`] gets a fresh `Store` and instance.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use acv_protocol::ComponentName;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use crate::caps::{Capabilities, HostErrorKind, SafetyMode};
use crate::error::{SandboxError, render};
use crate::host::bindings::{Sandbox as GuestWorld, SandboxPre};
use crate::host::{HostDeadline, RunState};
use crate::limits::{CappedPipe, Limits, MemoryCapHit, MemoryLimiter};
use crate::outcome::{CallOutcome, RunOutcome, Verdict};

/// How often the engine's epoch advances; the wall-clock deadline is enforced at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Fuel between cooperative yields to the async executor, so a busy guest never holds a worker thread for long.
const FUEL_YIELD_INTERVAL: u64 = 20_000_000;

/// How to build a [`Sandbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The guest component built by `make guest` (`sandbox/guest/build/acv-guest.wasm` in a checkout).
    pub component_path: PathBuf,
    /// Directory for wasmtime's compiled-code cache (absolute, created if missing). Entries are keyed by wasmtime's
    /// version, the engine configuration and the component bytes, so a stale entry is never loaded. `None` (or a
    /// directory that cannot be created) compiles the component on every [`Sandbox::new`] (tens of seconds).
    pub cache_dir: Option<PathBuf>,
    /// Use wasmtime's pooling instance allocator with room for this many concurrent runs (further runs wait for a
    /// free slot). Pooled slots are reused and reset in place (only dirty pages, via `PAGEMAP_SCAN` where the
    /// kernel has it), which measured up to 25% faster per run and up to 1.6× the throughput of the on-demand
    /// allocator (see the bench and `docs/sandbox.md`). Memory caps above [`POOLED_MAX_MEMORY_BYTES`] act as
    /// that value. It reserves (but does not commit) several GiB of address space per slot. `None` allocates on
    /// demand. Default: `Some(`[`DEFAULT_POOLED_RUNS`]`)`.
    pub pooling: Option<u32>,
}

impl SandboxConfig {
    /// A config for `component_path` without a compiled-code cache, with the pooling allocator.
    pub fn new(component_path: impl Into<PathBuf>) -> Self {
        Self {
            component_path: component_path.into(),
            cache_dir: None,
            pooling: Some(DEFAULT_POOLED_RUNS),
        }
    }

    /// Uses the pooling allocator sized for `max_concurrent_runs` (see [`SandboxConfig::pooling`]).
    pub fn with_pooling(mut self, max_concurrent_runs: u32) -> Self {
        self.pooling = Some(max_concurrent_runs.max(1));
        self
    }

    /// Allocates instances on demand instead of from a pool.
    pub fn without_pooling(mut self) -> Self {
        self.pooling = None;
        self
    }

    /// Sets the compiled-code cache directory.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }
}

/// Timings of [`Sandbox::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadStats {
    /// Reading, compiling (or loading from cache) and pre-linking the component.
    pub load: Duration,
}

/// Advances the engine epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Result<Self, SandboxError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("acv-sandbox-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| SandboxError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            if handle.join().is_err() {
                tracing::warn!("Sandbox epoch thread panicked.");
            }
        }
    }
}

struct Inner {
    engine: Engine,
    /// One permit per pooled slot, so runs beyond the pool wait instead of failing.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    pre: SandboxPre<RunState>,
    load: LoadStats,
    _ticker: EpochTicker,
}

/// Runs generated Python programs inside wasmtime, one fresh instance per run. Cheap to clone and share.
///
/// ```no_run
/// # async fn demo(caps: std::sync::Arc<dyn acv_sandbox::Capabilities>) -> Result<(), acv_sandbox::SandboxError> {
/// use acv_sandbox::{Limits, SafetyMode, Sandbox, SandboxConfig};
/// let sandbox = Sandbox::new(SandboxConfig::new("sandbox/guest/build/acv-guest.wasm"))?;
/// let own = "catalogue".parse().expect("valid name");
/// let outcome = sandbox
///     .run("import acv\nprint(acv.status()['ready_replicas'])", &own, SafetyMode::Observe, caps, Limits::default())
///     .await?;
/// println!("{:?}: {}", outcome.verdict, outcome.stdout);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("load", &self.inner.load)
            .finish_non_exhaustive()
    }
}

/// Largest program text [`Sandbox::run`] accepts (1 MiB).
pub const MAX_PROGRAM_BYTES: usize = 1 << 20;
/// Default number of pooled instance slots (concurrent runs).
pub const DEFAULT_POOLED_RUNS: u32 = 8;
/// Largest linear memory a pooled slot can hold.
pub const POOLED_MAX_MEMORY_BYTES: usize = 512 << 20;

fn pooling_config(runs: u32) -> wasmtime::PoolingAllocationConfig {
    // Per run: the Python component has more than ten core instances; these mirror the store limits.
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(runs)
        .total_core_instances(runs.saturating_mul(64))
        .total_memories(runs.saturating_mul(8))
        .total_tables(runs.saturating_mul(64))
        .total_stacks(runs)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(64)
        .max_memory_size(POOLED_MAX_MEMORY_BYTES)
        .table_elements(100_000)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .linear_memory_keep_resident(64 << 20)
        .table_keep_resident(1 << 20)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

fn engine_config(cache_dir: Option<&PathBuf>, pooling: Option<u32>) -> Result<Config, SandboxError> {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.wasm_backtrace_max_frames(None);
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    if let Some(runs) = pooling {
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling_config(
            runs,
        )));
    }
    if let Some(dir) = cache_dir {
        match compiled_code_cache(dir) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), %reason, "Sandbox compiled-code cache unavailable; compiling without it.");
            }
        }
    }
    Ok(config)
}

/// wasmtime's compiled-code cache in `dir` (created if missing).
fn compiled_code_cache(dir: &Path) -> Result<wasmtime::Cache, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("cannot resolve it: {e}"))?;
    let mut cache_config = wasmtime::CacheConfig::new();
    cache_config.with_directory(dir);
    wasmtime::Cache::new(cache_config).map_err(|e| render(&e))
}

impl Sandbox {
    /// Compiles (or loads from the cache) and pre-links the guest component, and starts the epoch thread.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let started = Instant::now();
        let engine = Engine::new(&engine_config(config.cache_dir.as_ref(), config.pooling)?)
            .map_err(|e| SandboxError::Engine(render(&e)))?;
        let bytes = std::fs::read(&config.component_path).map_err(|source| SandboxError::ReadComponent {
            path: config.component_path.clone(),
            source,
        })?;
        let component = Component::from_binary(&engine, &bytes).map_err(|e| SandboxError::Compile {
            path: config.component_path.clone(),
            message: render(&e),
        })?;
        drop(bytes);

        let mut linker: Linker<RunState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| SandboxError::Link(render(&e)))?;
        GuestWorld::add_to_linker::<RunState, wasmtime::component::HasSelf<RunState>>(&mut linker, |state| {
            state
        })
        .map_err(|e| SandboxError::Link(render(&e)))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| SandboxError::Link(render(&e)))?;
        let pre = SandboxPre::new(instance_pre).map_err(|e| SandboxError::Link(render(&e)))?;

        let ticker = EpochTicker::start(engine.clone())?;
        let load = LoadStats {
            load: started.elapsed(),
        };
        tracing::info!(component = %config.component_path.display(), load_ms = load.load.as_millis() as u64, "Sandbox guest loaded.");
        Ok(Self {
            inner: Arc::new(Inner {
                slots: config
                    .pooling
                    .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize))),
                engine,
                pre,
                load,
                _ticker: ticker,
            }),
        })
    }

    /// How long [`Sandbox::new`] took.
    pub fn load_stats(&self) -> LoadStats {
        self.inner.load
    }

    /// Creates one fresh instance with default limits and drops it, returning how long instantiation took.
    /// Useful at startup (faults in the component's memory image) and for benchmarks.
    pub async fn warm_up(&self) -> Result<Duration, SandboxError> {
        let _slot = self.slot().await?;
        let limits = Limits::default();
        let own = ComponentName::new("warm-up").map_err(|e| SandboxError::Host(e.to_string()))?;
        let caps: Arc<dyn Capabilities> = Arc::new(crate::caps::NoBackend);
        let (mut store, _, _) = self.store(&own, SafetyMode::Observe, caps, &limits)?;
        let started = Instant::now();
        let instance = self.inner.pre.instantiate_async(&mut store).await;
        let elapsed = started.elapsed();
        instance.map_err(|e| SandboxError::Instantiate(render(&e)))?;
        Ok(elapsed)
    }

    /// Runs `program` in a fresh instance scoped to `component` under `mode` and `limits`.
    ///
    /// Returns `Ok` whatever the program does (its fate is the [`Verdict`]); `Err` only when the sandbox itself
    /// cannot run it (bad limits, a broken component). Must be awaited inside a tokio runtime (host calls and the
    /// deadline use tokio timers). The guest yields to the executor every few milliseconds of CPU. With the pooling
    /// allocator, a run first waits for a free slot; the wall clock starts once it has one.
    pub async fn run(
        &self,
        program: &str,
        component: &ComponentName,
        mode: SafetyMode,
        caps: Arc<dyn Capabilities>,
        limits: Limits,
    ) -> Result<RunOutcome, SandboxError> {
        limits.validate()?;
        if program.len() > MAX_PROGRAM_BYTES {
            return Err(SandboxError::ProgramTooLarge(program.len()));
        }
        let _slot = self.slot().await?;
        let started = Instant::now();
        let (mut store, stdout, stderr) = self.store(component, mode, caps, &limits)?;
        let deadline = store.data().deadline;

        let fut = async {
            let guest = self
                .inner
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(Phase::Instantiate)?;
            guest.call_run(&mut store, program).await.map_err(Phase::Run)
        };
        let result = tokio::time::timeout_at(deadline, fut).await;

        let fuel_left = store.get_fuel().unwrap_or(0);
        let memory_hit = store.data().limiter.hit;
        let state = store.into_data();
        let verdict = match result {
            Err(_elapsed) => Verdict::Timeout,
            Ok(Ok(run)) => {
                if run.ok {
                    Verdict::Ok
                } else {
                    let traceback = run.traceback.unwrap_or_default();
                    let refused_kind = matches!(
                        run.host_error_kind.as_deref(),
                        Some(k) if k == HostErrorKind::Refused.as_str() || k == HostErrorKind::ApprovalRequired.as_str()
                    );
                    // Trust the guest's claim only if the host's own record agrees.
                    let host_reason = state.calls.last().and_then(|c| match &c.outcome {
                        CallOutcome::Refused { reason } => Some(reason.clone()),
                        CallOutcome::PendingApproval => {
                            Some(format!("{} is pending operator approval", c.name))
                        }
                        _ => None,
                    });
                    match (refused_kind, host_reason) {
                        (true, Some(reason)) => Verdict::Refused { reason, traceback },
                        _ => Verdict::GuestError { traceback },
                    }
                }
            }
            Ok(Err(Phase::Instantiate(e))) => {
                if memory_hit || e.downcast_ref::<MemoryCapHit>().is_some() {
                    Verdict::MemoryLimit
                } else {
                    return Err(SandboxError::Instantiate(render(&e)));
                }
            }
            Ok(Err(Phase::Run(e))) => classify_trap(&e, memory_hit),
        };
        let (stdout, out_cut) = stdout.contents();
        let (stderr, err_cut) = stderr.contents();
        let outcome = RunOutcome {
            verdict,
            stdout,
            stderr,
            output_truncated: out_cut || err_cut,
            calls: state.calls,
            calls_over_limit: state.calls_over_limit,
            pending: state.pending,
            report: state.report,
            fuel_consumed: limits.fuel.saturating_sub(fuel_left),
            elapsed: started.elapsed(),
        };
        tracing::debug!(
            component = %component,
            mode = mode.as_str(),
            verdict = outcome.verdict.label(),
            calls = outcome.calls.len(),
            elapsed_us = outcome.elapsed.as_micros() as u64,
            "Sandbox run finished."
        );
        Ok(outcome)
    }

    /// Waits for a pooled slot (no-op without pooling).
    async fn slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, SandboxError> {
        match &self.inner.slots {
            None => Ok(None),
            Some(slots) => Arc::clone(slots)
                .acquire_owned()
                .await
                .map(Some)
                .map_err(|_| SandboxError::Host("instance pool closed".into())),
        }
    }

    /// A fresh store for one run: WASI with no args, no env, no preopened dirs, no network (socket use and name
    /// lookup denied), empty stdin and capped stdout/stderr; the memory limiter, fuel and the epoch deadline set.
    fn store(
        &self,
        component: &ComponentName,
        mode: SafetyMode,
        caps: Arc<dyn Capabilities>,
        limits: &Limits,
    ) -> Result<(Store<RunState>, CappedPipe, CappedPipe), SandboxError> {
        let deadline = tokio::time::Instant::now() + limits.wall_clock;
        let stdout = CappedPipe::new(limits.max_output_bytes);
        let stderr = CappedPipe::new(limits.max_output_bytes);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let state = RunState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            own: component.clone(),
            mode,
            caps,
            deadline,
            max_host_calls: limits.max_host_calls,
            calls: Vec::new(),
            calls_over_limit: 0,
            pending: Vec::new(),
            report: None,
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| SandboxError::Host(render(&e)))?;
        store
            .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
            .map_err(|e| SandboxError::Host(render(&e)))?;
        let ticks = limits
            .wall_clock
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos())
            .saturating_add(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        Ok((store, stdout, stderr))
    }
}

enum Phase {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

fn classify_trap(e: &wasmtime::Error, memory_hit: bool) -> Verdict {
    if e.downcast_ref::<HostDeadline>().is_some() {
        return Verdict::Timeout;
    }
    if memory_hit || e.downcast_ref::<MemoryCapHit>().is_some() {
        return Verdict::MemoryLimit;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Verdict::OutOfFuel,
        Some(Trap::Interrupt) => Verdict::Timeout,
        _ => Verdict::Crashed { message: render(e) },
    }
}
