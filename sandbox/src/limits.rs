//! Per-run limits and the store-side machinery that enforces them: a memory limiter that turns any growth past the
//! cap into a trap, and capped output pipes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::SandboxError;

/// Smallest accepted memory cap: the interpreter's snapshot alone needs most of this.
pub const MIN_MEMORY_BYTES: usize = 16 << 20;
/// Store-wide caps on wasm object counts: the Python component has more than ten core instances.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 8;
const MAX_TABLES: usize = 64;
/// Cap on the elements of one table.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Hard limits for one run. Every field is enforced by the host, whatever the program does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// CPU budget in wasmtime fuel units (≈ one per wasm instruction). Exhaustion ends the run with
    /// [`Verdict::OutOfFuel`](crate::Verdict::OutOfFuel). Deterministic, unlike the wall clock.
    pub fuel: u64,
    /// Wall-clock deadline for the whole run, host calls included: [`Verdict::Timeout`](crate::Verdict::Timeout).
    pub wall_clock: Duration,
    /// Cap on the total linear memory of the instance, in bytes (at least [`MIN_MEMORY_BYTES`]). Growing past it
    /// traps: [`Verdict::MemoryLimit`](crate::Verdict::MemoryLimit).
    pub memory_bytes: usize,
    /// Cap on captured stdout and on captured stderr, each, in bytes; output past it is dropped.
    pub max_output_bytes: usize,
    /// Cap on host calls per run; calls beyond it fail with `HostError` kind `limit_exceeded`.
    pub max_host_calls: u32,
}

impl Default for Limits {
    /// 4·10⁹ fuel (a few seconds of Python), 10 s, 128 MiB, 64 KiB of output per stream, 256 host calls.
    fn default() -> Self {
        Self {
            fuel: 4_000_000_000,
            wall_clock: Duration::from_secs(10),
            memory_bytes: 128 << 20,
            max_output_bytes: 64 << 10,
            max_host_calls: 256,
        }
    }
}

impl Limits {
    /// Checks the limits are usable.
    pub fn validate(&self) -> Result<(), SandboxError> {
        if self.fuel == 0 {
            return Err(SandboxError::InvalidLimits("fuel must be > 0".into()));
        }
        if self.wall_clock.is_zero() || self.wall_clock > Duration::from_secs(3600) {
            return Err(SandboxError::InvalidLimits(format!(
                "wall_clock must be in (0, 1h], got {:?}",
                self.wall_clock
            )));
        }
        if self.memory_bytes < MIN_MEMORY_BYTES {
            return Err(SandboxError::InvalidLimits(format!(
                "memory_bytes must be at least {MIN_MEMORY_BYTES} (16 MiB), got {}",
                self.memory_bytes
            )));
        }
        Ok(())
    }
}

/// Marker error returned from the limiter so the trap can be classified as a memory-cap hit.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {cap} bytes reached (asked for {desired} bytes in total)")]
pub(crate) struct MemoryCapHit {
    pub cap: usize,
    pub desired: usize,
}

/// Store-wide memory limiter: the sum of all linear memories stays under the cap; growth past it traps.
pub(crate) struct MemoryLimiter {
    cap: usize,
    total: usize,
    /// Set when a growth was denied.
    pub hit: bool,
}

impl MemoryLimiter {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            total: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        let total = self.total.saturating_add(grow);
        if total > self.cap || maximum.is_some_and(|max| desired > max) {
            self.hit = true;
            return Err(wasmtime::Error::new(MemoryCapHit {
                cap: self.cap,
                desired: total,
            }));
        }
        self.total = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The OS refused memory below our cap: treat it as the cap (trap), never as a recoverable MemoryError.
        self.hit = true;
        Err(error.context("memory growth failed"))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS || maximum.is_some_and(|max| desired > max) {
            return Err(wasmtime::format_err!(
                "table growth to {desired} elements refused"
            ));
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("table growth failed"))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[derive(Debug, Default)]
struct CappedBuf {
    bytes: Vec<u8>,
    truncated: bool,
}

/// An in-memory stdout/stderr that keeps the first `cap` bytes and silently drops the rest (so a chatty program
/// is neither killed nor able to exhaust host memory).
#[derive(Debug, Clone)]
pub(crate) struct CappedPipe {
    cap: usize,
    buf: Arc<Mutex<CappedBuf>>,
}

impl CappedPipe {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            buf: Arc::new(Mutex::new(CappedBuf::default())),
        }
    }

    fn append(&self, data: &[u8]) {
        let mut buf = match self.buf.lock() {
            Ok(buf) => buf,
            Err(poisoned) => poisoned.into_inner(),
        };
        let room = self.cap.saturating_sub(buf.bytes.len());
        if data.len() > room {
            buf.truncated = true;
        }
        let take = data.len().min(room);
        buf.bytes.extend_from_slice(&data[..take]);
    }

    /// The captured text (lossy UTF-8) and whether it was cut.
    pub fn contents(&self) -> (String, bool) {
        let buf = match self.buf.lock() {
            Ok(buf) => buf,
            Err(poisoned) => poisoned.into_inner(),
        };
        (String::from_utf8_lossy(&buf.bytes).into_owned(), buf.truncated)
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept: bytes past the cap are dropped, not refused, so Python never sees a write error.
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_pipe_keeps_the_first_bytes_and_flags_truncation() {
        let pipe = CappedPipe::new(5);
        pipe.append(b"abc");
        assert_eq!(pipe.contents(), ("abc".to_string(), false));
        pipe.append(b"defgh");
        assert_eq!(pipe.contents(), ("abcde".to_string(), true));
    }

    #[test]
    fn limiter_traps_past_the_cap_across_memories() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_growing(0, 30, None).unwrap());
        let err = l.memory_growing(30, 50, None).unwrap_err();
        assert!(err.downcast_ref::<MemoryCapHit>().is_some());
        assert!(l.hit);
    }

    #[test]
    fn limits_validate_rejects_tiny_memory_and_zero_fuel() {
        assert!(Limits::default().validate().is_ok());
        assert!(
            Limits {
                memory_bytes: 1 << 20,
                ..Limits::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Limits {
                fuel: 0,
                ..Limits::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Limits {
                wall_clock: Duration::ZERO,
                ..Limits::default()
            }
            .validate()
            .is_err()
        );
    }
}
