//! Manager rules: split a goal over the components it names, and judge it from measurements.

use acv_protocol::{
    ComponentName, Goal, Measurement, Objective, ReportStatus, TaskSpec, check_objectives,
    describe_objective, describe_violation, measured_value,
};

use super::{RulesPlanner, parse};
use crate::{
    client::UsageTotals,
    planner::{Judgement, PlanError, Subtask},
};

// === impl RulesPlanner ===

impl RulesPlanner {
    /// Manager rules: one subtask per component named by the goal (or by its objectives).
    pub fn split_goal(&self, goal: &Goal, components: &[ComponentName]) -> Result<Vec<Subtask>, PlanError> {
        let mut named = parse::components_in(&goal.text, components);
        for o in &goal.objectives {
            if !named.contains(&o.component) {
                named.push(o.component.clone());
            }
        }
        if named.is_empty() {
            match components {
                [only] => named.push(only.clone()),
                _ => {
                    return Err(PlanError::Invalid(format!(
                        "the goal {:?} names none of the known components ({})",
                        goal.text,
                        components
                            .iter()
                            .map(ComponentName::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        let objectives = if goal.objectives.is_empty() {
            parse::parse_goal_objectives(&goal.text, &named)
        } else {
            goal.objectives.clone()
        };
        Ok(named
            .into_iter()
            .map(|c| {
                let mine: Vec<Objective> = objectives.iter().filter(|o| o.component == c).cloned().collect();
                let spec = if mine.is_empty() {
                    TaskSpec::Imperative {
                        text: goal.text.clone(),
                    }
                } else {
                    let parts = mine
                        .iter()
                        .map(describe_objective)
                        .collect::<Vec<_>>()
                        .join(" and ");
                    TaskSpec::Declarative {
                        goal: Goal {
                            text: format!("{} (your part: {parts})", goal.text),
                            objectives: mine,
                        },
                    }
                };
                Subtask { component: c, spec }
            })
            .collect())
    }

    /// Manager rules: the goal holds when every objective holds in the measurements.
    pub fn judge_goal(&self, goal: &Goal, measured: &[(ComponentName, Measurement)]) -> Judgement {
        let objectives = if goal.objectives.is_empty() {
            let known: Vec<ComponentName> = measured.iter().map(|(c, _)| c.clone()).collect();
            let named = parse::components_in(&goal.text, &known);
            parse::parse_goal_objectives(&goal.text, if named.is_empty() { &known } else { &named })
        } else {
            goal.objectives.clone()
        };
        if objectives.is_empty() {
            return Judgement {
                met: false,
                status: ReportStatus::Issue,
                message: format!("Cannot judge {:?}: it has no measurable objective.", goal.text),
                violations: Vec::new(),
                usage: UsageTotals::default(),
            };
        }
        let violations = check_objectives(&objectives, measured);
        let facts = objectives
            .iter()
            .map(|o| {
                let v = measured
                    .iter()
                    .find(|(c, _)| c == &o.component)
                    .and_then(|(_, m)| measured_value(o.metric, m));
                match v {
                    Some(x) => format!("{}: {x:.1}", describe_objective(o)),
                    None => format!("{}: not measured", describe_objective(o)),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let met = violations.is_empty();
        Judgement {
            met,
            status: if met {
                ReportStatus::Response
            } else {
                ReportStatus::Issue
            },
            message: if met {
                format!("Goal reached: {facts}.")
            } else {
                format!(
                    "Goal not reached: {}.",
                    violations
                        .iter()
                        .map(describe_violation)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            },
            violations,
            usage: UsageTotals::default(),
        }
    }
}
