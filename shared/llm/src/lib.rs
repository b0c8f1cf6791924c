//! Planners: turn a task or an SLO violation into steps (Python programs for the sandbox).
//! Filled by the planners issue: OpenAI-compatible client, response cache, LLM planner, rules planner.
#![forbid(unsafe_code)]
