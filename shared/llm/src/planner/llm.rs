//! The LLM planner: asks an OpenAI-compatible model for JSON plans, validates them, and sends a malformed answer
//! back with the problem up to `max_repairs` times.
//!
//! It is stateless between turns: each turn's conversation is rebuilt from the [`MaintainerContext`] (system prompt,
//! task, observation, every step with its output), so a repeated turn is a cache hit when a cache seed is set.

use acv_protocol::{
    Comparison, ComponentName, Diagnosis, Goal, Measurement, Objective, ReportStatus, RootCause, SloMetric,
    TaskSpec, check_objectives,
};
use serde::Deserialize;

use super::{FinalReport, Judgement, MaintainerContext, Plan, PlanError, PlannedStep, Planner, Subtask};
use crate::{
    client::{ChatClient, ChatMessage, ChatRequest, UsageTotals},
    prompts,
};

/// Most steps accepted in one plan.
pub const MAX_STEPS_PER_PLAN: usize = 5;
/// Longest program accepted, in bytes.
pub const MAX_PROGRAM_BYTES: usize = 20_000;

/// Modules the sandbox does not offer; a program importing them is sent back as malformed.
const FORBIDDEN_IMPORTS: &[&str] = &[
    "subprocess",
    "socket",
    "os",
    "sys",
    "requests",
    "urllib",
    "http",
    "kubernetes",
    "shutil",
    "pathlib",
];

/// The LLM planner.
#[derive(Debug, Clone)]
pub struct LlmPlanner {
    client: ChatClient,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePlan {
    #[serde(default)]
    thought: Option<String>,
    #[serde(default)]
    steps: Vec<WireStep>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    report: Option<WireReport>,
    #[serde(default)]
    diagnosis: Option<WireDiagnosis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDiagnosis {
    cause: String,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    summary: String,
}

/// The root-cause categories a model may name, as on the wire.
pub const CAUSES: &[&str] = &[
    "healthy",
    "bad_replicas",
    "cpu_saturation",
    "memory_pressure",
    "load_increase",
    "bad_release",
    "tight_limits",
    "downstream",
    "unknown",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStep {
    description: String,
    program: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireReport {
    status: String,
    message: String,
}

#[derive(Deserialize)]
struct WireDecomposition {
    subtasks: Vec<WireSubtask>,
}

#[derive(Deserialize)]
struct WireSubtask {
    component: String,
    task: String,
    #[serde(default)]
    objectives: Vec<WireObjective>,
}

#[derive(Deserialize)]
struct WireObjective {
    metric: SloMetric,
    comparison: Comparison,
    threshold: f64,
}

#[derive(Deserialize)]
struct WireJudgement {
    met: bool,
    message: String,
}

/// Extracts the JSON object from a model answer: the whole text, a fenced block, or the outermost braces.
pub fn extract_json(text: &str) -> Option<&str> {
    let t = text.trim();
    if t.starts_with('{') && t.ends_with('}') {
        return Some(t);
    }
    let start = t.find('{')?;
    let end = t.rfind('}')?;
    (end > start).then(|| &t[start..=end])
}

/// Parses and validates a maintainer plan. The error text is what the model gets back.
pub fn validate_plan(text: &str, ctx: &MaintainerContext) -> Result<Plan, String> {
    let json = extract_json(text).ok_or("the answer contains no JSON object")?;
    let wire: WirePlan =
        serde_json::from_str(json).map_err(|e| format!("the JSON does not match the plan shape: {e}"))?;
    if wire.steps.len() > MAX_STEPS_PER_PLAN {
        return Err(format!(
            "{} steps is too many; give at most {MAX_STEPS_PER_PLAN}",
            wire.steps.len()
        ));
    }
    let mut steps = Vec::with_capacity(wire.steps.len());
    for (i, s) in wire.steps.into_iter().enumerate() {
        let n = i + 1;
        if s.description.trim().is_empty() {
            return Err(format!("step {n} has an empty description"));
        }
        check_program(&s.program).map_err(|e| format!("step {n}: {e}"))?;
        steps.push(PlannedStep {
            description: s.description.trim().to_owned(),
            program: s.program,
            purpose: None,
        });
    }
    let report = match wire.report {
        None => None,
        Some(r) => {
            let status = match r.status.trim().to_ascii_uppercase().as_str() {
                "RESPONSE" => ReportStatus::Response,
                "ISSUE" => ReportStatus::Issue,
                other => {
                    return Err(format!(
                        "report status {other:?} must be \"RESPONSE\" or \"ISSUE\""
                    ));
                }
            };
            if r.message.trim().is_empty() {
                return Err("the report message is empty".into());
            }
            Some(FinalReport {
                status,
                message: r.message.trim().to_owned(),
            })
        }
    };
    if steps.is_empty() && report.is_none() {
        return Err(
            "the plan has neither steps nor a report; give the next step or finish with a report".into(),
        );
    }
    let done = wire.done || (steps.is_empty() && report.is_some());
    if ctx.turn >= ctx.max_turns && !done {
        return Err("this is the last turn: set \"done\": true and give a report".into());
    }
    let diagnosis = wire.diagnosis.map(wire_diagnosis).transpose()?;
    Ok(Plan {
        thought: wire.thought.unwrap_or_default(),
        steps,
        done,
        report,
        usage: UsageTotals::default(),
        diagnosis,
    })
}

fn wire_diagnosis(d: WireDiagnosis) -> Result<Diagnosis, String> {
    let cause: RootCause = serde_json::from_value(serde_json::Value::String(d.cause.trim().to_owned()))
        .map_err(|_| {
            format!(
                "diagnosis cause {:?} is not one of: {}",
                d.cause,
                CAUSES.join(", ")
            )
        })?;
    let component = match d.component.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(c) => Some(
            ComponentName::new(c)
                .map_err(|e| format!("diagnosis component {c:?} is not a component name: {e}"))?,
        ),
    };
    if cause == RootCause::Downstream && component.is_none() {
        return Err("a downstream diagnosis must name the component the cause lies in".into());
    }
    let mut out = Diagnosis::new(cause, d.summary.trim());
    out.component = component;
    Ok(out)
}

fn check_program(p: &str) -> Result<(), String> {
    if p.trim().is_empty() {
        return Err("the program is empty".into());
    }
    if p.len() > MAX_PROGRAM_BYTES {
        return Err(format!("the program is longer than {MAX_PROGRAM_BYTES} bytes"));
    }
    if !p.contains("import acv") {
        return Err("the program must `import acv`".into());
    }
    for line in p.lines() {
        let l = line.trim();
        let module = l.strip_prefix("import ").or_else(|| {
            l.strip_prefix("from ")
                .and_then(|r| r.split_once(" import").map(|(m, _)| m))
        });
        if let Some(mods) = module {
            for m in mods.split(',') {
                let root = m.trim().split([' ', '.']).next().unwrap_or_default();
                if FORBIDDEN_IMPORTS.contains(&root) {
                    return Err(format!(
                        "module {root:?} is not available in the sandbox; use only the acv host API and the allowed standard modules"
                    ));
                }
            }
        }
    }
    if p.contains("kubectl") {
        return Err("there is no kubectl in the sandbox; use the acv host API".into());
    }
    Ok(())
}

fn validate_decomposition(text: &str, components: &[ComponentName]) -> Result<Vec<Subtask>, String> {
    let json = extract_json(text).ok_or("the answer contains no JSON object")?;
    let wire: WireDecomposition =
        serde_json::from_str(json).map_err(|e| format!("the JSON does not match the subtasks shape: {e}"))?;
    if wire.subtasks.is_empty() {
        return Err("give at least one subtask".into());
    }
    let mut out = Vec::new();
    for s in wire.subtasks {
        let c = ComponentName::new(s.component.trim().to_ascii_lowercase())
            .map_err(|e| format!("bad component {:?}: {e}", s.component))?;
        if !components.contains(&c) {
            return Err(format!("{c} is not one of the components"));
        }
        if s.task.trim().is_empty() {
            return Err(format!("the task for {c} is empty"));
        }
        let objectives: Vec<Objective> = s
            .objectives
            .into_iter()
            .map(|o| Objective {
                component: c.clone(),
                metric: o.metric,
                comparison: o.comparison,
                threshold: o.threshold,
            })
            .collect();
        if let Some(o) = objectives.iter().find(|o| !o.threshold.is_finite()) {
            return Err(format!("threshold {} is not a number", o.threshold));
        }
        let spec = if objectives.is_empty() {
            TaskSpec::Imperative {
                text: s.task.trim().to_owned(),
            }
        } else {
            TaskSpec::Declarative {
                goal: Goal {
                    text: s.task.trim().to_owned(),
                    objectives,
                },
            }
        };
        out.push(Subtask { component: c, spec });
    }
    Ok(out)
}

// === impl LlmPlanner ===

impl LlmPlanner {
    /// A planner over `client`.
    pub fn new(client: ChatClient) -> Self {
        Self { client }
    }

    /// The client (for its totals).
    pub fn client(&self) -> &ChatClient {
        &self.client
    }

    /// Asks, validates, and repairs up to `max_repairs` times. Returns the value and this exchange's usage.
    async fn ask<T>(
        &self,
        mut messages: Vec<ChatMessage>,
        validate: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(T, UsageTotals), PlanError> {
        let mut usage = UsageTotals::default();
        let attempts = self.client.config().max_repairs + 1;
        let mut last = String::new();
        for attempt in 1..=attempts {
            let resp = self
                .client
                .chat(&ChatRequest {
                    messages: messages.clone(),
                    json: true,
                })
                .await?;
            usage.record(&resp);
            match validate(&resp.content) {
                Ok(v) => return Ok((v, usage)),
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "Malformed LLM answer; asking for a repair.");
                    messages.push(ChatMessage::assistant(resp.content));
                    messages.push(ChatMessage::user(prompts::repair(&e)));
                    last = e;
                }
            }
        }
        Err(PlanError::Malformed { attempts, last })
    }
}

#[async_trait::async_trait]
impl Planner for LlmPlanner {
    fn name(&self) -> String {
        format!("llm:{}", self.client.config().backend.model_id())
    }

    async fn next(&self, ctx: &MaintainerContext) -> Result<Plan, PlanError> {
        ctx.check_budget()?;
        let messages = vec![
            ChatMessage::system(prompts::maintainer_system(ctx)),
            ChatMessage::user(prompts::maintainer_user(ctx)),
        ];
        let (mut plan, usage) = self.ask(messages, |t| validate_plan(t, ctx)).await?;
        plan.usage = usage;
        Ok(plan)
    }

    async fn decompose(
        &self,
        goal: &Goal,
        components: &[ComponentName],
        measured: &[(ComponentName, Measurement)],
    ) -> Result<Vec<Subtask>, PlanError> {
        if components.is_empty() {
            return Err(PlanError::Invalid("no components are registered".into()));
        }
        let messages = vec![
            ChatMessage::system(prompts::manager_decompose_system(components)),
            ChatMessage::user(prompts::manager_decompose_user(goal, measured)),
        ];
        let (subtasks, _usage) = self
            .ask(messages, |t| validate_decomposition(t, components))
            .await?;
        Ok(subtasks)
    }

    async fn judge(
        &self,
        goal: &Goal,
        measured: &[(ComponentName, Measurement)],
    ) -> Result<Judgement, PlanError> {
        // Objectives are checked against the numbers, never against the model's opinion.
        if !goal.objectives.is_empty() {
            let mut j = super::rules::RulesPlanner::new().judge_goal(goal, measured);
            j.violations = check_objectives(&goal.objectives, measured);
            return Ok(j);
        }
        let messages = vec![
            ChatMessage::system(prompts::MANAGER_JUDGE_SYSTEM),
            ChatMessage::user(prompts::manager_judge_user(goal, measured)),
        ];
        let (wire, usage) = self
            .ask(messages, |t| {
                let json = extract_json(t).ok_or("the answer contains no JSON object")?;
                let j: WireJudgement =
                    serde_json::from_str(json).map_err(|e| format!("bad judgement shape: {e}"))?;
                if j.message.trim().is_empty() {
                    return Err("the message is empty".to_owned());
                }
                Ok(j)
            })
            .await?;
        Ok(Judgement {
            met: wire.met,
            status: if wire.met {
                ReportStatus::Response
            } else {
                ReportStatus::Issue
            },
            message: wire.message,
            violations: Vec::new(),
            usage,
        })
    }
}
