//! Python programs the rules planner emits. Each uses only the host API contract (`import acv`) plus `json`, and
//! is self-contained: it re-checks what it needs instead of trusting the planner's possibly stale view.

use acv_protocol::SloPolicy;

use super::parse::{LimitChange, ReportMetric};
use crate::planner::OBSERVATION_MARKER;

/// A Python string literal for `s` (JSON string syntax is valid Python).
pub fn py_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A Python float literal.
fn py_f(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        "0.0".to_owned()
    }
}

/// Prints status, metrics and history as one `ACV_OBSERVATION` line.
pub fn observe() -> String {
    format!(
        r#"import acv
import json

obs = {{"status": acv.status(), "metrics": acv.metrics(window_secs=60), "history": acv.history()}}
print({marker} + json.dumps(obs))
"#,
        marker = py_str(OBSERVATION_MARKER)
    )
}

/// Asks `peer`'s agent to check and fix itself (a request for action, handled by the peer under its own safety mode
/// and SLOs), prints its answer and reports: RESPONSE when the peer acted and its own re-check passed, ISSUE when it
/// declined, refused, could not be reached, or acted without fixing itself yet.
pub fn ask_peer(peer: &str, question: &str) -> String {
    format!(
        r#"import acv
import json

peer = {peer}
question = {question}
try:
    answer = json.loads(acv.ask_peer(peer, question))
except acv.HostError as e:
    acv.report("ISSUE", "The cause lies in %s, but its agent could not be asked (%s): %s" % (peer, e.kind, e.message))
else:
    print("PEER_ANSWER " + json.dumps(answer))
    outcome = answer.get("outcome")
    message = answer.get("message", "")
    data = answer.get("data") or {{}}
    after = data.get("after") if isinstance(data, dict) else None
    if outcome == "acted" and not after:
        acv.report("RESPONSE", "The cause lies in %s; asked its agent, which acted and re-checked its own SLOs: %s" % (
            peer, message))
    elif outcome == "acted":
        acv.report("ISSUE", "The cause lies in %s; asked its agent, which acted but is not healthy yet: %s" % (
            peer, message))
    else:
        acv.report("ISSUE", "The cause lies in %s; asked its agent, which did not act (%s): %s" % (
            peer, outcome, message))
"#,
        peer = py_str(peer),
        question = py_str(question)
    )
}

/// Scales to `n` replicas and reports.
pub fn scale(n: u32) -> String {
    format!(
        r#"import acv

before = acv.status()
after = acv.scale({n})
acv.report("RESPONSE", "Scaled %s from %d to %d replicas (%d ready so far)." % (
    acv.component(), before["desired_replicas"], after["desired_replicas"], after["ready_replicas"]))
"#
    )
}

/// Scales by a relative amount (at least 1 replica) and reports.
pub fn scale_relative(delta: i32) -> String {
    format!(
        r#"import acv

before = acv.status()
target = max(1, before["desired_replicas"] + ({delta}))
after = acv.scale(target)
acv.report("RESPONSE", "Scaled %s from %d to %d replicas (%d ready so far)." % (
    acv.component(), before["desired_replicas"], after["desired_replicas"], after["ready_replicas"]))
"#
    )
}

/// Restarts every replica and reports.
pub fn restart() -> String {
    r#"import acv

before = acv.status()
acv.restart()
after = acv.status()
acv.report("RESPONSE", "Restarted all %d replicas of %s (%d ready so far, restarts before: %d)." % (
    before["desired_replicas"], acv.component(), after["ready_replicas"],
    sum(r["restarts"] for r in before["replicas"])))
"#
    .to_owned()
}

/// Sets one environment variable (a new revision) and reports.
pub fn set_env(key: &str, value: &str) -> String {
    format!(
        r#"import acv

key = {key}
value = {value}
before = acv.status()
if before["env"].get(key) == value:
    acv.report("RESPONSE", "%s already has %s=%s (revision %d); nothing to change." % (
        acv.component(), key, value, before["revision"]))
else:
    rev = acv.set_env(key, value)
    acv.report("RESPONSE", "Set %s=%s on %s: revision %d (was %r)." % (
        key, value, acv.component(), rev["revision"], before["env"].get(key)))
"#,
        key = py_str(key),
        value = py_str(value)
    )
}

/// Switches the image/version. A bare version like `0.3.4` replaces the tag of the current image.
pub fn set_image(wanted: &str, verb: &str) -> String {
    format!(
        r#"import acv

wanted = {wanted}
current = acv.status()["image"]
name, sep, tag = current.rpartition(":")
if ":" in wanted or "/" in wanted:
    target = wanted
elif sep and "/" not in tag:
    target = name + ":" + wanted
else:
    target = wanted
if current == target:
    acv.report("RESPONSE", "%s already runs %s; nothing to change." % (acv.component(), target))
else:
    rev = acv.set_image(target)
    acv.report("RESPONSE", "{verb} %s from %s to %s (revision %d)." % (
        acv.component(), current, rev["image"], rev["revision"]))
"#,
        wanted = py_str(wanted)
    )
}

/// A Python expression for a new limit given the current one in `var`.
fn py_limit(change: Option<LimitChange>, var: &str) -> String {
    match change {
        None => var.to_owned(),
        Some(LimitChange::To(v)) => v.to_string(),
        Some(LimitChange::Times(f)) => format!("max(1, int(round({var} * {})))", py_f(f)),
    }
}

/// Sets the CPU (millicores) and/or memory (MiB) limit, keeping the other, and reports.
pub fn set_limits(cpu: Option<LimitChange>, memory: Option<LimitChange>) -> String {
    format!(
        r#"import acv

limits = acv.status()["limits"]
cpu_was = limits["cpu_millis"]
mem_was = limits["memory_mib"]
cpu = {cpu}
mem = {mem}
if cpu == cpu_was and mem == mem_was:
    acv.report("RESPONSE", "%s already has %d millicores / %d MiB; nothing to change." % (acv.component(), cpu, mem))
else:
    rev = acv.set_resources(cpu, mem)
    acv.report("RESPONSE", "Set the limits of %s from %d millicores / %d MiB to %d millicores / %d MiB (revision %d)." % (
        acv.component(), cpu_was, mem_was, rev["limits"]["cpu_millis"], rev["limits"]["memory_mib"], rev["revision"]))
"#,
        cpu = py_limit(cpu, "cpu_was"),
        mem = py_limit(memory, "mem_was"),
    )
}

/// Reports the deployment's state: replicas, image, revision, limits.
pub fn report_status() -> String {
    r#"import acv

st = acv.status()
states = {}
for r in st["replicas"]:
    states[r["state"]] = states.get(r["state"], 0) + 1
acv.report("RESPONSE", "%s runs %s (revision %d): %d/%d replicas ready (%s); limits %d millicores / %d MiB." % (
    acv.component(), st["image"], st["revision"], st["ready_replicas"], st["desired_replicas"],
    ", ".join("%d %s" % (n, s) for s, n in sorted(states.items())) or "no replicas",
    st["limits"]["cpu_millis"], st["limits"]["memory_mib"]))
"#
    .to_owned()
}

/// Rolls back to the previous revision and reports.
pub fn rollback() -> String {
    r#"import acv

before = acv.status()
history = acv.history()
if len(history) < 2:
    acv.report("ISSUE", "%s has no previous revision to roll back to (current: %s, revision %d)." % (
        acv.component(), before["image"], before["revision"]))
else:
    rev = acv.rollback()
    acv.report("RESPONSE", "Rolled %s back from %s (revision %d) to %s (revision %d)." % (
        acv.component(), before["image"], before["revision"], rev["image"], rev["revision"]))
"#
    .to_owned()
}

/// "Create the deployment": the host API cannot create a component, so make sure it exists and runs.
pub fn create() -> String {
    r#"import acv

try:
    st = acv.status()
except acv.HostError as e:
    acv.report("ISSUE", "Cannot create %s: it does not exist and the host API has no create call (%s: %s). "
               "Apply its manifest (kubectl apply -f) or add it to the runtime file." % (acv.component(), e.kind, e.message))
else:
    if st["desired_replicas"] == 0:
        after = acv.scale(1)
        acv.report("RESPONSE", "Started %s (%s) with %d replica (was scaled to 0)." % (
            acv.component(), st["image"], after["desired_replicas"]))
    else:
        acv.report("RESPONSE", "%s is deployed: %s, %d/%d replicas ready, revision %d." % (
            acv.component(), st["image"], st["ready_replicas"], st["desired_replicas"], st["revision"]))
"#
    .to_owned()
}

/// Reports the requested metrics.
pub fn report_metrics(metrics: &[ReportMetric]) -> String {
    let mut keys = String::new();
    for m in metrics {
        let (key, label, unit) = m.parts();
        keys.push_str(&format!(
            "    ({}, {}, {}),\n",
            py_str(key),
            py_str(label),
            py_str(unit)
        ));
    }
    format!(
        r#"import acv

wanted = [
{keys}]
m = acv.metrics(window_secs=60)
st = acv.status()
found = []
missing = []
for key, label, unit in wanted:
    v = m.get(key)
    if v is None:
        missing.append(label)
    elif unit == "%" and key == "cpu_percent_of_limit":
        found.append("%s %.1f%% of the %d millicore limit (about %.0f millicores per replica)" % (
            label, v, st["limits"]["cpu_millis"], v * st["limits"]["cpu_millis"] / 100.0))
    elif unit == "%" and key == "memory_percent_of_limit":
        found.append("%s %.1f%% of the %d MiB limit (about %.0f MiB per replica)" % (
            label, v, st["limits"]["memory_mib"], v * st["limits"]["memory_mib"] / 100.0))
    else:
        found.append("%s %.1f %s" % (label, v, unit))
span = m["window_secs"]
span = ("%.0f" % span) if span >= 10 else ("%.1f" % span)
if missing and not found:
    acv.report("ISSUE", "No data for %s of %s over the last %s s (is it receiving traffic?)." % (
        ", ".join(missing), acv.component(), span))
else:
    msg = "%s over the last %s s: %s." % (acv.component(), span, "; ".join(found))
    if missing:
        msg += " No data for: %s." % ", ".join(missing)
    acv.report("RESPONSE", msg)
"#
    )
}

/// Checks the SLO policy once and reports RESPONSE (healthy) or ISSUE (what is broken).
pub fn health_check(slo: &SloPolicy) -> String {
    format!(
        r#"import acv

st = acv.status()
m = acv.metrics(window_secs=60)
problems = []
facts = []
desired = st["desired_replicas"]
ready_pct = 100.0 * st["ready_replicas"] / desired if desired else 0.0
facts.append("%d/%d replicas ready" % (st["ready_replicas"], desired))
if ready_pct < {ready}:
    bad = [r["name"] + " " + r["state"] for r in st["replicas"] if r["state"] != "ready"]
    problems.append("only %d/%d replicas ready (%s)" % (st["ready_replicas"], desired, ", ".join(bad)))
for key, label, limit, unit in [
    ("cpu_percent_of_limit", "CPU", {cpu}, "% of limit"),
    ("memory_percent_of_limit", "memory", {mem}, "% of limit"),
    ("p99_ms", "P99 latency", {p99}, " ms"),
]:
    v = m.get(key)
    if v is None:
        facts.append("%s not measured" % label)
    else:
        facts.append("%s %.1f%s" % (label, v, unit))
        if v >= limit:
            problems.append("%s %.1f%s is over the %.0f%s objective" % (label, v, unit, limit, unit))
if problems:
    acv.report("ISSUE", "%s is unhealthy: %s. (%s)" % (acv.component(), "; ".join(problems), "; ".join(facts)))
else:
    acv.report("RESPONSE", "%s is healthy: %s." % (acv.component(), "; ".join(facts)))
"#,
        ready = py_f(slo.ready_percent),
        cpu = py_f(slo.cpu_percent),
        mem = py_f(slo.memory_percent),
        p99 = py_f(slo.p99_ms),
    )
}

/// Remediation: roll back to the previous revision, restarting instead when there is none.
pub fn remediate_rollback() -> String {
    r#"import acv

before = acv.status()
history = acv.history()
if len(history) >= 2:
    rev = acv.rollback()
    print("rolled back from %s (revision %d) to %s (revision %d)" % (
        before["image"], before["revision"], rev["image"], rev["revision"]))
else:
    acv.restart()
    print("no previous revision; restarted %d replicas" % before["desired_replicas"])
"#
    .to_owned()
}

/// Remediation: restart all replicas.
pub fn remediate_restart() -> String {
    r#"import acv

before = acv.status()
acv.restart()
print("restarted %d replicas (%d were ready)" % (before["desired_replicas"], before["ready_replicas"]))
"#
    .to_owned()
}

/// Remediation: scale out to `target` replicas unless already there.
pub fn remediate_scale_out(target: u32) -> String {
    format!(
        r#"import acv

before = acv.status()
target = {target}
if before["desired_replicas"] >= target:
    print("already at %d replicas (target %d)" % (before["desired_replicas"], target))
else:
    after = acv.scale(target)
    print("scaled out from %d to %d replicas" % (before["desired_replicas"], after["desired_replicas"]))
"#
    )
}

/// Remediation: multiply the CPU (`cpu_factor`) and memory (`memory_factor`) limits, capped.
pub fn remediate_raise_limits(cpu_factor: f64, memory_factor: f64) -> String {
    format!(
        r#"import acv

limits = acv.status()["limits"]
cpu = min(int(limits["cpu_millis"] * {cf}), 8000)
mem = min(int(limits["memory_mib"] * {mf}), 16384)
rev = acv.set_resources(max(cpu, limits["cpu_millis"]), max(mem, limits["memory_mib"]))
print("limits raised from %d millicores / %d MiB to %d millicores / %d MiB (revision %d)" % (
    limits["cpu_millis"], limits["memory_mib"], rev["limits"]["cpu_millis"], rev["limits"]["memory_mib"],
    rev["revision"]))
"#,
        cf = py_f(cpu_factor),
        mf = py_f(memory_factor)
    )
}
