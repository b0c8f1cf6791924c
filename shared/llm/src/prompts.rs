//! System prompts and message builders for the LLM planner, in our own words. The answers are JSON objects that
//! [`crate::planner::llm`] validates; the shapes are spelled out here so prompt and validator stay together.

use acv_protocol::{
    ComponentName, Goal, MUTATING_CALLS, Measurement, StepRecord, TaskSpec, describe_objective,
    describe_violation,
};

use crate::planner::{
    MaintainerContext, Observation, SafetyMode, Trigger,
    rules::diagnose::{Findings, RECENT_CHANGE_SECS},
};

/// Appends formatted text to a `String` (which cannot fail, unlike `write!`).
macro_rules! put {
    ($s:expr, $($arg:tt)*) => { $s.push_str(&format!($($arg)*)) };
}

/// [`put!`] plus a newline.
macro_rules! putln {
    ($s:expr, $($arg:tt)*) => {{ $s.push_str(&format!($($arg)*)); $s.push('\n'); }};
}

/// Longest step output quoted back to the model, in characters (the end is kept: errors are at the end).
pub const MAX_OUTPUT_CHARS: usize = 4000;

/// The host API, as the maintainer sees it (which calls mutate is added from [`MUTATING_CALLS`] by
/// [`maintainer_system`]).
pub const HOST_API: &str = r#"Python host API (module `acv`; every function acts on YOUR component only):
- acv.component() -> str                      your component's name
- acv.status() -> dict                        {"component", "desired_replicas", "ready_replicas",
                                               "replicas": [{"name", "state", "restarts"}], "revision", "image",
                                               "env": {...}, "limits": {"cpu_millis", "memory_mib"}}
                                               state is one of starting, ready, not_ready, crash_loop_back_off, terminated
- acv.metrics(window_secs=60) -> dict         {"component", "window_secs", "cpu_percent_of_limit",
                                               "memory_percent_of_limit", "request_rate", "p50_ms", "p99_ms",
                                               "error_rate_percent", "calls"}  (any value may be None when not measured)
                                               "calls": your calls to components you depend on, per callee:
                                               [{"callee", "request_rate", "p50_ms", "p99_ms", "error_rate_percent"}]
- acv.logs(tail=100) -> list[str]
- acv.history() -> list[dict]                 revisions oldest first: {"revision", "image", "env", "limits",
                                               "created_at_ms", "cause"}
- acv.scale(replicas: int) -> dict            status after scaling
- acv.restart() -> None                       restarts all replicas
- acv.set_image(image: str) -> dict           new revision
- acv.set_env(key: str, value: str) -> dict   new revision
- acv.set_resources(cpu_millis: int, memory_mib: int) -> dict   new revision (per-replica limits)
- acv.rollback() -> dict                      back to the previous revision; returns the new revision
- acv.report(status: str, message: str) -> None   status "RESPONSE" (done, here is the answer) or "ISSUE"
                                               (cannot do it / problem remains); the last call is the step's report
- acv.ask_peer(component: str, question: str) -> str   ask another component's agent directly (JSON answer:
                                               {"outcome": answered|acted|declined|refused, "message", "data"});
                                               a question with "please check and fix" is a request for action that
                                               the peer handles under its own SLOs and safety mode (it may decline);
                                               "status", "metrics", "health" or "recent changes" only read
Failures raise acv.HostError (attributes kind, message); kinds: refused, approval_required, invalid_argument,
not_found, unavailable, backend, timeout, limit_exceeded. Besides acv, programs may import only these standard
modules: bisect, collections, copy, dataclasses, datetime, enum, functools, heapq, itertools, json, math, operator,
random, re, statistics, string, textwrap, time, typing. No files, network, environment, processes or threads;
print() output is captured and shown to you. A step whose change makes the component's health worse by the SLO
measure is undone by the sidecar (outcome: reverted, with the before/after in its output): do not repeat it; try
something else or report."#;

/// The maintainer's system prompt.
pub fn maintainer_system(ctx: &MaintainerContext) -> String {
    let slo = &ctx.slo;
    let mutating = MUTATING_CALLS.join(", ");
    let safety = match ctx.safety {
        SafetyMode::Observe => format!(
            "OBSERVE: mutating calls ({mutating}) will be refused. Diagnose and report what you would do."
        ),
        SafetyMode::Approve => {
            format!(
                "APPROVE: each mutating call ({mutating}) waits for a person's approval; keep changes minimal."
            )
        }
        SafetyMode::Autonomous => "AUTONOMOUS: you may change your component within the host API.".to_owned(),
    };
    format!(
        r#"You are the autonomic maintainer of the microservice component "{component}". You keep it healthy and carry
out tasks about it. You act only through short Python programs that run in a sandbox with the host API below; you
see their printed output on the next turn.

Service level objectives of {component}: all replicas ready (at least {ready}% of desired), CPU use below {cpu}% of
its limit, memory use below {mem}% of its limit, P99 latency below {p99} ms{errors}.

Safety mode: {safety}

{api}
Mutating calls (they change your component): {mutating}.

How to work:
- Each turn, answer with ONE JSON object and nothing else:
  {{"thought": "<one or two sentences>",
    "steps": [{{"description": "<what this step does>", "program": "<python source>"}}],
    "done": <true when the task is finished after these steps>,
    "report": null or {{"status": "RESPONSE" | "ISSUE", "message": "<answer for a person>"}},
    "diagnosis": null or {{"cause": "<one of {causes}>", "component": "<for downstream: where the cause lies>",
                          "summary": "<one line with the figures>"}}}}
- Prefer one step per turn. Observe first (print what you need), then act, then verify on a later turn.
- Every program must start with `import acv`. Print the facts you need to see next turn.
- When finished, set "done": true and either give "report" yourself (using values you saw) or make the last
  program call acv.report(...). If the task cannot be done with this API, report status "ISSUE" and say why.
- You have {max_turns} turns in total for this task; on the last turn you must finish.
- Never invent measurements: quote values you printed.
- If your latency or errors come from a component you call (your replicas are fine, and "calls" shows that callee
  slow or failing), the cause is there: do not scale, restart or roll back yourself; ask that component's agent
  with acv.ask_peer(callee, "... please check and fix") and report its answer (diagnosis "downstream").

When repairing broken objectives, work as a careful SRE: diagnose BEFORE acting and give "diagnosis" with the
cause as soon as you know it.
- Check what changed recently (revision history with ages), which replicas are bad and which are fine, whether
  the request rate is up against the healthy baseline, and whether CPU or memory is high without more load (CPU
  per request up: a hog or stress in the replicas).
- Match the fix to the cause: bad replicas -> replace them (acv.restart() replaces replicas one by one, new ones
  start clean); bad release (broken since a recent image/env change) -> acv.rollback(); more load -> scale out in
  proportion to the measured load, so each replica sits at about {headroom:.0}% of the CPU objective (never jump to
  the maximum); a hog -> replace the replicas; raise a limit only when the replicas are clean and the work needs it.
- Every action has a cost: each extra replica costs its limits for as long as it runs, a rolling restart briefly
  runs one extra replica, a raised limit is capacity held. Prefer the cheapest fix that addresses the cause; added
  capacity is given back by the agent after a quiet period.
- If nothing you can do fixes it, say so once with status "ISSUE" and your diagnosis; do not repeat an action that
  did not help."#,
        component = ctx.component,
        ready = slo.ready_percent,
        cpu = slo.cpu_percent,
        mem = slo.memory_percent,
        p99 = slo.p99_ms,
        api = HOST_API,
        max_turns = ctx.max_turns,
        causes = crate::planner::llm::CAUSES.join(", "),
        errors = slo
            .error_rate_percent
            .map_or(String::new(), |e| format!(", error rate (5xx) below {e}%")),
        headroom = crate::planner::rules::diagnose::HEADROOM * slo.cpu_percent,
    )
}

/// The maintainer's user message for this turn: the task, observations, and every step so far.
pub fn maintainer_user(ctx: &MaintainerContext) -> String {
    let mut s = String::new();
    match &ctx.trigger {
        Trigger::Task {
            spec: TaskSpec::Imperative { text },
            ..
        } => {
            putln!(s, "Task: {text}");
        }
        Trigger::Task {
            spec: TaskSpec::Declarative { goal },
            ..
        } => {
            putln!(s, "Goal: {}", goal.text);
            for o in &goal.objectives {
                putln!(s, "- objective: {}", describe_objective(o));
            }
            putln!(
                s,
                "Reach the objectives, verify them with measurements, then report."
            );
        }
        Trigger::Violations { violations } => {
            putln!(s, "Your health check found broken objectives:");
            for v in violations {
                putln!(s, "- {}", describe_violation(v));
            }
            putln!(
                s,
                "Diagnose the cause, fix it, verify the objectives hold again, and report what you found and did."
            );
        }
    }
    if let Some(obs) = &ctx.observation {
        let json = serde_json::to_string(obs).unwrap_or_default();
        putln!(s, "\nCurrent observation (JSON): {json}");
        if matches!(ctx.trigger, Trigger::Violations { .. }) {
            write_facts(&mut s, obs);
        }
    }
    if ctx.steps.is_empty() {
        putln!(s, "\nNo steps have run yet.");
    } else {
        putln!(s, "\nSteps so far:");
        for st in &ctx.steps {
            write_step(&mut s, &st.record);
        }
    }
    put!(s, "\nThis is turn {} of {}.", ctx.turn, ctx.max_turns);
    if ctx.turn >= ctx.max_turns {
        put!(s, " It is the LAST turn: set \"done\": true and give a report.");
    }
    s
}

/// The facts a diagnosis rests on (the same ones the rules planner uses), and what each kind of action costs.
fn write_facts(s: &mut String, obs: &Observation) {
    let f = Findings::of(obs);
    putln!(s, "\nFacts for your diagnosis:");
    putln!(s, "- replicas: {}", f.replicas_text());
    match &f.change {
        Some(c) => putln!(
            s,
            "- recent change: revision {} ({}), {} s ago",
            c.revision,
            c.what,
            c.age_secs
        ),
        None => putln!(s, "- recent change: none in the last {} s", RECENT_CHANGE_SECS),
    }
    putln!(s, "- load: {}; {}", f.load_text(), f.cost_text());
    match (f.cpu_percent, f.memory_percent) {
        (Some(c), Some(m)) => putln!(
            s,
            "- usage: CPU {c:.1}% and memory {m:.1}% of the per-replica limits"
        ),
        _ => putln!(s, "- usage: CPU or memory not measured"),
    }
    if let Some(b) = &obs.baseline {
        putln!(
            s,
            "- capacity before this episode: {} replicas{}",
            b.replicas,
            b.limits
                .map(|l| format!(", {}m CPU / {} MiB per replica", l.cpu_millis, l.memory_mib))
                .unwrap_or_default()
        );
    }
    if let Some(st) = &obs.status {
        putln!(
            s,
            "- cost of actions: +1 replica = {}m CPU and {} MiB held while it runs; a rolling restart runs one extra \
             replica for a few seconds; raising a limit holds it on all {} replicas",
            st.limits.cpu_millis,
            st.limits.memory_mib,
            st.desired_replicas
        );
    }
}

fn write_step(s: &mut String, st: &StepRecord) {
    let out = &st.output;
    let count = out.chars().count();
    let shown: String = if count > MAX_OUTPUT_CHARS {
        let skip = count - MAX_OUTPUT_CHARS;
        format!("…{}", out.chars().skip(skip).collect::<String>())
    } else {
        out.clone()
    };
    let outcome = serde_json::to_string(&st.outcome).unwrap_or_default();
    putln!(
        s,
        "Step {}: {}\n```python\n{}\n```\noutcome: {}\noutput:\n{}\n",
        st.index,
        st.description,
        st.program.trim_end(),
        outcome.trim_matches('"'),
        if shown.trim().is_empty() {
            "(none)"
        } else {
            shown.trim_end()
        }
    );
}

/// The manager's system prompt for decomposition.
pub fn manager_decompose_system(components: &[ComponentName]) -> String {
    let names = components
        .iter()
        .map(ComponentName::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"You are the manager of a group of microservice components, each maintained by its own agent. You turn a
person's declarative goal into subtasks, one per component that must act. The components are: {names}.

Measurable metrics: p99_latency_ms, cpu_percent_of_limit, memory_percent_of_limit, ready_percent,
error_rate_percent. Comparisons: "below" (value must be strictly below the threshold) or "at_least".

Answer with ONE JSON object and nothing else:
{{"subtasks": [{{"component": "<one of the components>",
                 "task": "<instruction for that component's agent, in plain words>",
                 "objectives": [{{"metric": "<metric>", "comparison": "below" | "at_least", "threshold": <number>}}]}}]}}
Rules: only use the listed components; give each subtask the objectives its component must meet so that the goal
holds (split a shared budget such as a total latency between components); at least one subtask."#
    )
}

/// The manager's user message for decomposition.
pub fn manager_decompose_user(goal: &Goal, measured: &[(ComponentName, Measurement)]) -> String {
    let mut s = format!("Goal: {}\n", goal.text);
    for o in &goal.objectives {
        putln!(s, "- objective: {}", describe_objective(o));
    }
    if !measured.is_empty() {
        putln!(s, "Latest measurements (JSON):");
        for (c, m) in measured {
            putln!(s, "- {c}: {}", serde_json::to_string(m).unwrap_or_default());
        }
    }
    s
}

/// The manager's system prompt for judging a goal that has no machine-checkable objectives.
pub const MANAGER_JUDGE_SYSTEM: &str = r#"You are the manager of a group of microservice components. Decide from the
measurements alone (not from any agent's claims) whether a person's goal is reached. Answer with ONE JSON object and
nothing else: {"met": true | false, "message": "<why, quoting the measured values>"}"#;

/// The manager's user message for judging.
pub fn manager_judge_user(goal: &Goal, measured: &[(ComponentName, Measurement)]) -> String {
    manager_decompose_user(goal, measured)
}

/// The message sent back to the model after an invalid answer.
pub fn repair(error: &str) -> String {
    format!(
        "Your answer could not be used: {error}\nAnswer again with ONE corrected JSON object in the required shape \
         and nothing else."
    )
}

#[cfg(test)]
mod tests {
    use acv_protocol::{HOST_CALLS, TaskSpec};

    use super::*;

    #[test]
    fn prompt_lists_every_host_call_and_which_mutate() {
        for name in HOST_CALLS {
            assert!(
                HOST_API.contains(&format!("- acv.{name}(")),
                "{name} missing from HOST_API"
            );
        }
        let c = ComponentName::new("catalogue").unwrap();
        let mut ctx = MaintainerContext::for_task(c, "t", TaskSpec::Imperative { text: "x".into() });
        for mode in [SafetyMode::Observe, SafetyMode::Approve, SafetyMode::Autonomous] {
            ctx.safety = mode;
            let system = maintainer_system(&ctx);
            let line = system
                .lines()
                .find_map(|l| l.strip_prefix("Mutating calls (they change your component): "))
                .expect("mutating line");
            let listed: Vec<&str> = line.trim_end_matches('.').split(", ").collect();
            assert_eq!(listed, MUTATING_CALLS);
            if mode != SafetyMode::Autonomous {
                assert!(system.contains(&MUTATING_CALLS.join(", ")), "{mode}");
            }
        }
    }
}
