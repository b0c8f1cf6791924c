//! Planners: turn a task or an SLO violation into steps (Python programs for the sandbox) and reports, and a
//! manager's goal into per-component subtasks. Offline rules by default; any OpenAI-compatible LLM when configured.
//!
//! # Layout
//! - [`config`]: backend configuration (OpenAI, Azure OpenAI, other OpenAI-compatible servers) from YAML and env.
//! - [`client`]: the chat-completions client with retries, timeouts, token and cost accounting.
//! - [`cache`]: the on-disk response cache keyed by (model, messages, parameters, seed).
//! - [`prompts`]: system prompts and message builders for the LLM planner.
//! - [`planner`]: the [`Planner`] trait and its types; [`planner::llm`] and [`planner::rules`] implement it.
//! - [`session`]: the multi-turn maintainer loop over any [`session::Executor`].
//! - `testserver` (feature `test-support`): a scripted OpenAI-compatible HTTP server for tests.
#![forbid(unsafe_code)]

pub mod cache;
pub mod client;
pub mod config;
pub mod planner;
pub mod prompts;
pub mod session;
#[cfg(feature = "test-support")]
pub mod testserver;

pub use client::{ChatClient, ChatMessage, ChatRequest, ChatResponse, LlmError, Usage, UsageTotals};
pub use config::{Backend, ConfigError, LlmConfig, Secret};
pub use planner::{
    Baseline, FinalReport, Judgement, MaintainerContext, Observation, Plan, PlanError, PlannedStep, Planner,
    SafetyMode, StepPurpose, Subtask, TaskStep, Trigger, llm::LlmPlanner, rules::RulesPlanner,
};
pub use session::{Executor, StepResult, TaskFailure, TaskOutcome, drive};

/// The planner acv uses for this configuration: the LLM planner when an LLM is configured, else the rules planner.
pub fn planner_from_config(config: Option<LlmConfig>) -> Result<Box<dyn Planner>, LlmError> {
    match config {
        Some(c) => Ok(Box::new(LlmPlanner::new(ChatClient::new(c)?))),
        None => Ok(Box::new(RulesPlanner::new())),
    }
}
