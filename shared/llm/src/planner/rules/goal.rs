//! The manager's deterministic decomposer: a goal ([`GoalSpec`], in words or as objectives) becomes objectives over
//! registered components ([`resolve`]), and then one subtask per component with that component's own share
//! ([`split`]). Component names are resolved against the registry ("Front-end" → `front-end`); an unknown
//! component, a goal with no measurable objective, or impossible/contradictory objectives are errors, never a
//! guess. A total (or average) budget over several components is split by each one's measured share today, so the
//! component that uses most of the budget is asked for the largest absolute part of the cut.

use acv_protocol::{
    Combine, Comparison, ComponentName, Goal, GoalError, GoalObjective, GoalSpec, Measurement, Objective,
    TaskSpec, describe_objective, goal::validate_objectives, measured_value, metric_name,
};
use regex::Regex;

use super::parse;
use crate::planner::Subtask;

/// Why a goal cannot be decomposed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecomposeError {
    /// The goal names a component no sidecar registered.
    #[error("unknown component {name:?}; registered components: {}", known_list(known))]
    UnknownComponent {
        /// As written.
        name: String,
        /// What the registry knows.
        known: Vec<ComponentName>,
    },
    /// The text names no registered component.
    #[error(
        "the goal {text:?} names none of the registered components ({})",
        known_list(known)
    )]
    NoComponent {
        /// The text.
        text: String,
        /// What the registry knows.
        known: Vec<ComponentName>,
    },
    /// The text has no objective the rules understand.
    #[error(
        "the goal {0:?} has no measurable objective (the rules decomposer reads P99 latency in ms or s, and CPU or \
         memory use in % of the limit, e.g. \"Reduce the P99 latency of catalogue to under 300 ms\")"
    )]
    NoObjective(String),
    /// The objectives are impossible or contradictory.
    #[error(transparent)]
    Invalid(#[from] GoalError),
}

fn known_list(known: &[ComponentName]) -> String {
    if known.is_empty() {
        "none yet".to_owned()
    } else {
        known
            .iter()
            .map(ComponentName::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Resolves a name as a person writes it ("Front-end", "frontend", "Front End") to a registered component.
pub fn resolve_component(name: &str, known: &[ComponentName]) -> Option<ComponentName> {
    let want = squash(name);
    if want.is_empty() {
        return None;
    }
    known.iter().find(|k| squash(k.as_str()) == want).cloned()
}

/// The objectives a goal asks for, with every component resolved against `known`. Structured objectives win over
/// the text; text goals are parsed by the rules (metric, threshold, and "total"/"average"/"each").
pub fn resolve(spec: &GoalSpec, known: &[ComponentName]) -> Result<Vec<GoalObjective>, DecomposeError> {
    spec.validate()?;
    let objectives = if spec.objectives.is_empty() {
        from_text(&spec.text, known)?
    } else {
        spec.objectives
            .iter()
            .map(|o| {
                let components = o
                    .components
                    .iter()
                    .map(|c| {
                        resolve_component(c.as_str(), known).ok_or_else(|| DecomposeError::UnknownComponent {
                            name: c.to_string(),
                            known: known.to_vec(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(GoalObjective {
                    components,
                    ..o.clone()
                })
            })
            .collect::<Result<Vec<_>, DecomposeError>>()?
    };
    validate_objectives(&objectives)?;
    Ok(objectives)
}

/// Words after "of"/"for" that look like a component name the registry does not have ("of Payments").
fn unknown_named(text: &str, known: &[ComponentName]) -> Option<String> {
    let re = Regex::new(r"(?:\bof|\bfor)\s+((?:[A-Z][\w-]*)(?:(?:\s*,\s*|\s+and\s+)[A-Z][\w-]*)*)").ok()?;
    for caps in re.captures_iter(text) {
        for name in caps[1]
            .split([',', ' '])
            .map(str::trim)
            .filter(|w| !w.is_empty() && *w != "and")
        {
            let name = name.trim_end_matches("'s");
            let is_metric_word = ["P99", "P50", "CPU", "Memory", "The"]
                .iter()
                .any(|w| name.eq_ignore_ascii_case(w));
            if !is_metric_word && resolve_component(name, known).is_none() {
                return Some(name.to_owned());
            }
        }
    }
    None
}

fn from_text(text: &str, known: &[ComponentName]) -> Result<Vec<GoalObjective>, DecomposeError> {
    if let Some(name) = unknown_named(text, known) {
        return Err(DecomposeError::UnknownComponent {
            name,
            known: known.to_vec(),
        });
    }
    let components = parse::components_in(text, known);
    if components.is_empty() {
        return Err(DecomposeError::NoComponent {
            text: text.to_owned(),
            known: known.to_vec(),
        });
    }
    let targets = parse::parse_objectives_text(text);
    if targets.is_empty() {
        return Err(DecomposeError::NoObjective(text.to_owned()));
    }
    let lower = text.to_ascii_lowercase();
    let has = |w: &str| Regex::new(&format!(r"\b{w}\b")).is_ok_and(|r| r.is_match(&lower));
    let combine = if components.len() < 2 || has("each") || has("every") || has("both") {
        Combine::Each
    } else if has("total") || has("sum") || has("combined") {
        Combine::Total
    } else if has("average") || has("mean") {
        Combine::Average
    } else {
        Combine::Each
    };
    Ok(targets
        .into_iter()
        .map(|(metric, comparison, threshold)| GoalObjective {
            components: components.clone(),
            metric,
            comparison,
            threshold,
            combine,
        })
        .collect())
}

/// Each component's own objectives for a round: the full threshold for `each`, and for `total`/`average` a share of
/// the budget proportional to what the component measured (an even split when any value is missing).
pub fn split(
    objectives: &[GoalObjective],
    measured: &[(ComponentName, Measurement)],
) -> Vec<(ComponentName, Vec<Objective>)> {
    let mut out: Vec<(ComponentName, Vec<Objective>)> = Vec::new();
    let mut push = |c: &ComponentName, o: Objective| match out.iter_mut().find(|(x, _)| x == c) {
        Some((_, v)) => v.push(o),
        None => out.push((c.clone(), vec![o])),
    };
    for o in objectives {
        let n = o.components.len().max(1) as f64;
        let budget = match o.combine {
            Combine::Each => None,
            Combine::Total => Some(o.threshold),
            Combine::Average => Some(o.threshold * n),
        };
        let values: Option<Vec<f64>> = o
            .components
            .iter()
            .map(|c| {
                measured
                    .iter()
                    .find(|(m, _)| m == c)
                    .and_then(|(_, m)| measured_value(o.metric, m))
                    .filter(|v| v.is_finite() && *v > 0.0)
            })
            .collect();
        let sum: f64 = values.as_ref().map_or(0.0, |v| v.iter().sum());
        for (i, c) in o.components.iter().enumerate() {
            let threshold = match (budget, &values) {
                (None, _) => o.threshold,
                (Some(b), Some(vs)) if sum > 0.0 => b * vs[i] / sum,
                (Some(b), _) => b / n,
            };
            push(
                c,
                Objective {
                    component: c.clone(),
                    metric: o.metric,
                    comparison: o.comparison,
                    threshold: round2(threshold),
                },
            );
        }
    }
    out
}

/// Checks a split proposed by someone else (the LLM planner's manager prompt) against the goal's objectives, as
/// the rules decomposer understands them: every part is for a component the objectives name, every objective gets
/// a share on every one of its components (same metric and direction), and the shares add up to the goal — each
/// share within the threshold for `each`, the shares' sum (`total`) or mean (`average`) within it. A split that
/// passes can be assigned as is; one that does not is refused with the first problem found.
pub fn check_split(
    objectives: &[GoalObjective],
    parts: &[(ComponentName, Vec<Objective>)],
) -> Result<(), String> {
    let named: Vec<&ComponentName> = objectives.iter().flat_map(|o| &o.components).collect();
    if let Some((c, _)) = parts.iter().find(|(c, _)| !named.contains(&c)) {
        return Err(format!("{c} is not part of this goal"));
    }
    for o in objectives {
        let mut shares = Vec::with_capacity(o.components.len());
        for c in &o.components {
            let share = parts
                .iter()
                .filter(|(p, _)| p == c)
                .flat_map(|(_, os)| os)
                .filter(|x| x.metric == o.metric && x.comparison == o.comparison && x.threshold.is_finite())
                .map(|x| x.threshold)
                // Several shares for one component: the strictest one is what it will work towards.
                .reduce(|a, b| match o.comparison {
                    Comparison::Below => a.min(b),
                    Comparison::AtLeast => a.max(b),
                });
            match share {
                Some(t) => shares.push(t),
                None => {
                    return Err(format!(
                        "{c} has no {} objective for \"{}\"",
                        metric_name(o.metric),
                        o.describe()
                    ));
                }
            }
        }
        let n = shares.len().max(1) as f64;
        let combined = match o.combine {
            Combine::Each => match o.comparison {
                Comparison::Below => shares.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Comparison::AtLeast => shares.iter().copied().fold(f64::INFINITY, f64::min),
            },
            Combine::Total => shares.iter().sum(),
            Combine::Average => shares.iter().sum::<f64>() / n,
        };
        // A hundredth of slack for shares rounded to two decimals.
        let fits = match o.comparison {
            Comparison::Below => combined <= o.threshold + 0.01,
            Comparison::AtLeast => combined >= o.threshold - 0.01,
        };
        if !fits {
            return Err(format!(
                "the shares ({}) do not add up to \"{}\"",
                shares
                    .iter()
                    .map(|t| format!("{t}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                o.describe()
            ));
        }
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The subtasks of one round: a declarative task per component carrying its own objectives and the goal's words.
pub fn subtasks(text: &str, parts: &[(ComponentName, Vec<Objective>)]) -> Vec<Subtask> {
    parts
        .iter()
        .map(|(c, objectives)| {
            let mine = objectives
                .iter()
                .map(describe_objective)
                .collect::<Vec<_>>()
                .join(" and ");
            let text = if text.trim().is_empty() {
                format!("Reach: {mine}.")
            } else {
                format!("{} (your part: {mine})", text.trim())
            };
            Subtask {
                component: c.clone(),
                spec: TaskSpec::Declarative {
                    goal: Goal {
                        text,
                        objectives: objectives.clone(),
                    },
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use acv_protocol::{MetricsSnapshot, SloMetric};

    use super::*;

    fn c(n: &str) -> ComponentName {
        ComponentName::new(n).unwrap()
    }

    fn known() -> Vec<ComponentName> {
        vec![c("catalogue"), c("front-end"), c("carts")]
    }

    fn m(name: &str, p99: f64, cpu: f64) -> (ComponentName, Measurement) {
        (
            c(name),
            Measurement {
                metrics: Some(MetricsSnapshot {
                    component: c(name),
                    window_secs: 10.0,
                    cpu_percent_of_limit: Some(cpu),
                    memory_percent_of_limit: Some(10.0),
                    request_rate: Some(5.0),
                    p50_ms: Some(p99 / 2.0),
                    p99_ms: Some(p99),
                    error_rate_percent: Some(0.0),
                    calls: Vec::new(),
                }),
                status: None,
            },
        )
    }

    #[test]
    fn the_four_dataset_manager_tasks_resolve() {
        let k = known();
        let one = resolve(
            &GoalSpec::from_text("Reduce the P99 latency of Catalogue to under 300 ms."),
            &k,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].components, vec![c("catalogue")]);
        assert_eq!(
            (one[0].metric, one[0].threshold),
            (SloMetric::P99LatencyMs, 300.0)
        );

        let cpu = resolve(
            &GoalSpec::from_text("Reduce the average CPU usage of Catalogue to under 30% of resource limit."),
            &k,
        )
        .unwrap();
        assert_eq!(
            (cpu[0].metric, cpu[0].threshold, cpu[0].combine),
            (SloMetric::CpuPercentOfLimit, 30.0, Combine::Each)
        );

        let total = resolve(
            &GoalSpec::from_text("Reduce the total P99 latency of Catalogue and Front-end to under 400 ms."),
            &k,
        )
        .unwrap();
        assert_eq!(total[0].components, vec![c("catalogue"), c("front-end")]);
        assert_eq!((total[0].combine, total[0].threshold), (Combine::Total, 400.0));

        let each = resolve(
            &GoalSpec::from_text("Reduce each Catalogue and Front-end's average CPU usage to under 30%."),
            &k,
        )
        .unwrap();
        assert_eq!(each[0].components, vec![c("catalogue"), c("front-end")]);
        assert_eq!(
            (each[0].metric, each[0].combine),
            (SloMetric::CpuPercentOfLimit, Combine::Each)
        );
    }

    #[test]
    fn unknown_components_and_missing_objectives_are_errors() {
        let k = known();
        let err = resolve(
            &GoalSpec::from_text("Reduce the P99 latency of Payments to under 300 ms."),
            &k,
        )
        .unwrap_err();
        assert!(
            matches!(&err, DecomposeError::UnknownComponent { name, .. } if name == "Payments"),
            "{err}"
        );
        assert!(err.to_string().contains("catalogue, front-end, carts"), "{err}");
        let err = resolve(&GoalSpec::from_text("Make everything fast."), &k).unwrap_err();
        assert!(matches!(err, DecomposeError::NoComponent { .. }), "{err}");
        let err = resolve(&GoalSpec::from_text("Make catalogue nicer."), &k).unwrap_err();
        assert!(matches!(err, DecomposeError::NoObjective(_)), "{err}");
        let structured = GoalSpec {
            objectives: vec![GoalObjective {
                components: vec![c("orders")],
                metric: SloMetric::P99LatencyMs,
                comparison: Comparison::Below,
                threshold: 100.0,
                combine: Combine::Each,
            }],
            ..GoalSpec::default()
        };
        assert!(matches!(
            resolve(&structured, &k),
            Err(DecomposeError::UnknownComponent { .. })
        ));
        assert_eq!(resolve_component("Front End", &k), Some(c("front-end")));
        assert_eq!(resolve_component("FRONTEND", &k), Some(c("front-end")));
    }

    #[test]
    fn total_budget_is_split_by_measured_share() {
        let k = known();
        let total = resolve(
            &GoalSpec::from_text("Reduce the total P99 latency of Catalogue and Front-end to under 400 ms."),
            &k,
        )
        .unwrap();
        let parts = split(
            &total,
            &[m("catalogue", 300.0, 10.0), m("front-end", 500.0, 10.0)],
        );
        assert_eq!(parts[0].1[0].threshold, 150.0);
        assert_eq!(parts[1].1[0].threshold, 250.0);
        // Nothing measured: an even split.
        let parts = split(&total, &[]);
        assert_eq!(parts[0].1[0].threshold, 200.0);
        let each = resolve(
            &GoalSpec::from_text("Reduce each Catalogue and Front-end's CPU usage to under 30%."),
            &k,
        )
        .unwrap();
        let parts = split(&each, &[]);
        assert!(parts.iter().all(|(_, o)| o[0].threshold == 30.0));
        let tasks = subtasks("Reduce each ...", &parts);
        assert_eq!(tasks.len(), 2);
        assert!(
            tasks[1]
                .spec
                .text()
                .contains("your part: cpu_percent_of_limit of front-end below 30")
        );
    }

    #[test]
    fn a_proposed_split_is_checked_against_the_goal() {
        let k = known();
        let total = resolve(
            &GoalSpec::from_text("Reduce the total P99 latency of Catalogue and Front-end to under 400 ms."),
            &k,
        )
        .unwrap();
        let part = |name: &str, t: f64| {
            (
                c(name),
                vec![Objective {
                    component: c(name),
                    metric: SloMetric::P99LatencyMs,
                    comparison: Comparison::Below,
                    threshold: t,
                }],
            )
        };
        assert_eq!(
            check_split(&total, &[part("catalogue", 150.0), part("front-end", 250.0)]),
            Ok(())
        );
        let err = check_split(&total, &[part("catalogue", 300.0), part("front-end", 300.0)]).unwrap_err();
        assert!(err.contains("do not add up"), "{err}");
        let err = check_split(&total, &[part("catalogue", 150.0)]).unwrap_err();
        assert!(err.contains("front-end has no p99_latency_ms objective"), "{err}");
        let err = check_split(
            &total,
            &[
                part("catalogue", 100.0),
                part("front-end", 100.0),
                part("carts", 100.0),
            ],
        )
        .unwrap_err();
        assert!(err.contains("carts is not part of this goal"), "{err}");
        // The rules' own split always passes.
        let measured = [m("catalogue", 300.0, 10.0), m("front-end", 500.0, 10.0)];
        assert_eq!(check_split(&total, &split(&total, &measured)), Ok(()));
        let each = resolve(
            &GoalSpec::from_text("Reduce each Catalogue and Front-end's CPU usage to under 30%."),
            &k,
        )
        .unwrap();
        assert_eq!(check_split(&each, &split(&each, &[])), Ok(()));
    }
}
