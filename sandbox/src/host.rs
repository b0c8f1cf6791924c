//! The host side of the WIT world: per-run store state and the `acv:sandbox/host` implementation that checks,
//! records and forwards every call.
//!
//! Order of checks for each call: call budget → component scope → argument validation → safety mode → execute
//! (bounded by the run deadline). Every call is recorded, whatever its fate.

use std::sync::Arc;
use std::time::Instant;

use acv_protocol::cluster::ResourceLimits;
use acv_protocol::{ComponentName, ReportStatus};
use serde_json::{Value, json};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::caps::{
    Capabilities, HostCall, HostError, HostErrorKind, MAX_CPU_MILLIS, MAX_LOG_TAIL, MAX_MEMORY_MIB,
    MAX_REPLICAS, MAX_STRING_BYTES, MAX_WINDOW_SECS, SafetyMode,
};
use crate::limits::MemoryLimiter;
use crate::outcome::{CallOutcome, FinalReport, HostCallRecord, PendingCall};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "sandbox",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use bindings::acv::sandbox::host::HostError as WitHostError;

/// Marker error: a host call was still pending at the run deadline. Traps the guest; classified as a timeout.
#[derive(Debug, thiserror::Error)]
#[error("host call {0} did not finish before the run deadline")]
pub(crate) struct HostDeadline(pub &'static str);

/// Everything one run's `Store` holds.
pub(crate) struct RunState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub own: ComponentName,
    pub mode: SafetyMode,
    pub caps: Arc<dyn Capabilities>,
    pub deadline: tokio::time::Instant,
    pub max_host_calls: u32,
    pub calls: Vec<HostCallRecord>,
    /// Calls refused for exceeding `max_host_calls` (counted, not recorded).
    pub calls_over_limit: u32,
    pub pending: Vec<PendingCall>,
    pub report: Option<FinalReport>,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

type CallResult<T> = wasmtime::Result<Result<T, WitHostError>>;

fn to_wit(err: &HostError) -> WitHostError {
    WitHostError {
        kind: err.kind.as_str().to_string(),
        message: err.message.clone(),
    }
}

fn in_range(name: &str, value: i64, min: u32, max: u32) -> Result<u32, HostError> {
    match u32::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(HostError::invalid(format!(
            "{name} must be in {min}..={max}, got {value}"
        ))),
    }
}

fn bounded_str(name: &str, value: &str) -> Result<(), HostError> {
    if value.len() > MAX_STRING_BYTES {
        return Err(HostError::invalid(format!(
            "{name} is longer than {MAX_STRING_BYTES} bytes"
        )));
    }
    Ok(())
}

fn valid_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 256
}

/// The arguments as the program passed them, for the audit record.
fn args_with_component(component: &Option<String>, mut args: Value) -> Value {
    if let (Some(c), Value::Object(map)) = (component, &mut args) {
        map.insert("component".into(), Value::String(c.clone()));
    }
    args
}

impl RunState {
    fn record(&mut self, name: &str, args: Value, outcome: CallOutcome, started: Instant) -> u32 {
        let seq = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
        tracing::debug!(seq, call = name, outcome = ?outcome, "Sandbox host call.");
        self.calls.push(HostCallRecord {
            seq,
            name: name.to_string(),
            args,
            outcome,
            elapsed: started.elapsed(),
        });
        seq
    }

    /// Checks that `component` (as the program named it) is the own component.
    fn scope(&self, name: &str, component: &Option<String>) -> Result<(), String> {
        match component {
            None => Ok(()),
            Some(c) if c == self.own.as_str() => Ok(()),
            Some(c) => Err(format!(
                "{name}: component {c:?} is out of scope; this sandbox may only address its own component {:?}",
                self.own.as_str()
            )),
        }
    }

    /// Records a call the sandbox refused and builds the error the program receives.
    fn refuse(&mut self, name: &str, args: Value, reason: String, started: Instant) -> WitHostError {
        self.record(
            name,
            args,
            CallOutcome::Refused {
                reason: reason.clone(),
            },
            started,
        );
        to_wit(&HostError::new(HostErrorKind::Refused, reason))
    }

    /// The single path every host call takes. `parse` validates the raw arguments into a [`HostCall`].
    async fn dispatch(
        &mut self,
        name: &'static str,
        component: Option<String>,
        args: Value,
        parse: impl FnOnce(&ComponentName) -> Result<HostCall, HostError>,
    ) -> CallResult<Value> {
        let started = Instant::now();
        let args = args_with_component(&component, args);

        if self.calls.len() >= self.max_host_calls as usize {
            // Counted but not recorded: the record list is bounded by the same limit.
            self.calls_over_limit = self.calls_over_limit.saturating_add(1);
            let err = HostError::new(
                HostErrorKind::LimitExceeded,
                format!(
                    "this run already made {} host calls (the limit)",
                    self.max_host_calls
                ),
            );
            return Ok(Err(to_wit(&err)));
        }
        if let Err(reason) = self.scope(name, &component) {
            return Ok(Err(self.refuse(name, args, reason, started)));
        }
        let call = match parse(&self.own) {
            Ok(call) => call,
            Err(error) => {
                let wit = to_wit(&error);
                self.record(name, args, CallOutcome::Error { error }, started);
                return Ok(Err(wit));
            }
        };
        if call.is_mutating() {
            match self.mode {
                SafetyMode::Observe => {
                    let reason = format!(
                        "{name} changes the cluster and this run is in observe mode (read-only); nothing was changed"
                    );
                    return Ok(Err(self.refuse(name, args, reason, started)));
                }
                SafetyMode::Approve => {
                    let seq = self.record(name, args, CallOutcome::PendingApproval, started);
                    self.pending.push(PendingCall { seq, call });
                    let message = format!(
                        "{name} was queued for operator approval (call #{seq}) and has not run; this run is in approve mode"
                    );
                    return Ok(Err(to_wit(&HostError::new(
                        HostErrorKind::ApprovalRequired,
                        message,
                    ))));
                }
                SafetyMode::Autonomous => {}
            }
        }

        let caps = Arc::clone(&self.caps);
        let result =
            match tokio::time::timeout_at(self.deadline, call.execute(caps.as_ref(), &self.own)).await {
                Ok(result) => result,
                Err(_) => {
                    let error =
                        HostError::new(HostErrorKind::Timeout, "the run deadline passed during this call");
                    self.record(name, args, CallOutcome::Error { error }, started);
                    return Err(wasmtime::Error::new(HostDeadline(name)));
                }
            };
        match result {
            Ok(value) => {
                if let HostCall::Report { status, message } = &call {
                    self.report = Some(FinalReport {
                        status: *status,
                        message: message.clone(),
                    });
                }
                self.record(
                    name,
                    args,
                    CallOutcome::Ok {
                        result: value.clone(),
                    },
                    started,
                );
                Ok(Ok(value))
            }
            Err(error) => {
                let wit = to_wit(&error);
                self.record(name, args, CallOutcome::Error { error }, started);
                Ok(Err(wit))
            }
        }
    }

    async fn dispatch_json(
        &mut self,
        name: &'static str,
        component: Option<String>,
        args: Value,
        parse: impl FnOnce(&ComponentName) -> Result<HostCall, HostError>,
    ) -> CallResult<String> {
        Ok(self
            .dispatch(name, component, args, parse)
            .await?
            .map(|v| v.to_string()))
    }

    async fn dispatch_unit(
        &mut self,
        name: &'static str,
        component: Option<String>,
        args: Value,
        parse: impl FnOnce(&ComponentName) -> Result<HostCall, HostError>,
    ) -> CallResult<()> {
        Ok(self.dispatch(name, component, args, parse).await?.map(|_| ()))
    }
}

impl bindings::acv::sandbox::host::Host for RunState {
    async fn own_component(&mut self) -> wasmtime::Result<String> {
        Ok(self.own.as_str().to_string())
    }

    async fn status(&mut self, component: Option<String>) -> CallResult<String> {
        self.dispatch_json("status", component, json!({}), |_| Ok(HostCall::Status))
            .await
    }

    async fn metrics(&mut self, component: Option<String>, window_secs: i64) -> CallResult<String> {
        self.dispatch_json(
            "metrics",
            component,
            json!({ "window_secs": window_secs }),
            |_| {
                Ok(HostCall::Metrics {
                    window_secs: in_range("window_secs", window_secs, 1, MAX_WINDOW_SECS)?,
                })
            },
        )
        .await
    }

    async fn logs(&mut self, component: Option<String>, tail: i64) -> CallResult<Vec<String>> {
        let value = self
            .dispatch("logs", component, json!({ "tail": tail }), |_| {
                Ok(HostCall::Logs {
                    tail: in_range("tail", tail, 0, MAX_LOG_TAIL)?,
                })
            })
            .await?;
        Ok(value.map(|v| match v {
            Value::Array(lines) => lines
                .into_iter()
                .map(|l| match l {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        }))
    }

    async fn history(&mut self, component: Option<String>) -> CallResult<String> {
        self.dispatch_json("history", component, json!({}), |_| Ok(HostCall::History))
            .await
    }

    async fn scale(&mut self, component: Option<String>, replicas: i64) -> CallResult<String> {
        self.dispatch_json("scale", component, json!({ "replicas": replicas }), |_| {
            Ok(HostCall::Scale {
                replicas: in_range("replicas", replicas, 0, MAX_REPLICAS)?,
            })
        })
        .await
    }

    async fn restart(&mut self, component: Option<String>) -> CallResult<()> {
        self.dispatch_unit("restart", component, json!({}), |_| Ok(HostCall::Restart))
            .await
    }

    async fn set_image(&mut self, component: Option<String>, image: String) -> CallResult<String> {
        let args = json!({ "image": image });
        self.dispatch_json("set_image", component, args, move |_| {
            bounded_str("image", &image)?;
            if image.is_empty() || image.chars().any(char::is_whitespace) {
                return Err(HostError::invalid(
                    "image must be non-empty and contain no whitespace",
                ));
            }
            Ok(HostCall::SetImage { image })
        })
        .await
    }

    async fn set_env(&mut self, component: Option<String>, key: String, value: String) -> CallResult<String> {
        let args = json!({ "key": key, "value": value });
        self.dispatch_json("set_env", component, args, move |_| {
            if !valid_env_key(&key) {
                return Err(HostError::invalid(format!(
                    "{key:?} is not a valid environment variable name"
                )));
            }
            bounded_str("value", &value)?;
            Ok(HostCall::SetEnv { key, value })
        })
        .await
    }

    async fn set_resources(
        &mut self,
        component: Option<String>,
        cpu_millis: i64,
        memory_mib: i64,
    ) -> CallResult<String> {
        let args = json!({ "cpu_millis": cpu_millis, "memory_mib": memory_mib });
        self.dispatch_json("set_resources", component, args, |_| {
            Ok(HostCall::SetResources {
                limits: ResourceLimits {
                    cpu_millis: in_range("cpu_millis", cpu_millis, 1, MAX_CPU_MILLIS)?,
                    memory_mib: in_range("memory_mib", memory_mib, 1, MAX_MEMORY_MIB)?,
                },
            })
        })
        .await
    }

    async fn rollback(&mut self, component: Option<String>) -> CallResult<String> {
        self.dispatch_json("rollback", component, json!({}), |_| Ok(HostCall::Rollback))
            .await
    }

    async fn report(&mut self, component: Option<String>, status: String, message: String) -> CallResult<()> {
        let args = json!({ "status": status, "message": message });
        self.dispatch_unit("report", component, args, move |_| {
            let status = match status.as_str() {
                "RESPONSE" => ReportStatus::Response,
                "ISSUE" => ReportStatus::Issue,
                other => {
                    return Err(HostError::invalid(format!(
                        "status must be \"RESPONSE\" or \"ISSUE\", got {other:?}"
                    )));
                }
            };
            bounded_str("message", &message)?;
            Ok(HostCall::Report { status, message })
        })
        .await
    }

    async fn ask_peer(&mut self, component: String, question: String) -> CallResult<String> {
        let args = json!({ "component": component, "question": question });
        // `component` here names the peer, so it is not subject to the own-component scope check.
        let value = self
            .dispatch("ask_peer", None, args, move |own| {
                let peer = ComponentName::new(component.as_str())
                    .map_err(|e| HostError::invalid(format!("ask_peer: {e}")))?;
                if &peer == own {
                    return Err(HostError::invalid("ask_peer: cannot ask your own component"));
                }
                bounded_str("question", &question)?;
                Ok(HostCall::AskPeer { peer, question })
            })
            .await?;
        Ok(value.map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}
