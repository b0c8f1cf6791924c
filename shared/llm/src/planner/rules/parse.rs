//! Plain-English task and goal parsing for the rules planner. Deliberately small: it understands the paper's L1/L2
//! phrasings and close variants, and says clearly when it does not.

use std::sync::LazyLock;

use acv_protocol::{Comparison, ComponentName, Objective, SloMetric};
use regex::Regex;

/// A metric a task asks to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportMetric {
    /// CPU use in % of limit.
    Cpu,
    /// Memory use in % of limit.
    Memory,
    /// P99 latency.
    P99,
    /// P50 latency.
    P50,
    /// Requests per second.
    RequestRate,
    /// 5xx share.
    ErrorRate,
}

/// What an imperative task asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Scale to an absolute replica count.
    Scale(u32),
    /// Scale by a relative amount.
    ScaleBy(i32),
    /// Restart all replicas.
    Restart,
    /// Set an environment variable.
    SetEnv {
        /// Variable name.
        key: String,
        /// Value.
        value: String,
    },
    /// Switch to an image or version.
    SetImage(String),
    /// Go back to a named version.
    RollbackTo(String),
    /// Go back to the previous revision.
    Rollback,
    /// (Re)create the deployment.
    Create,
    /// Report metrics.
    Report(Vec<ReportMetric>),
    /// Check health / performance against the SLO policy.
    HealthCheck,
    /// Reach objectives (reduce latency/CPU/memory below a threshold).
    Reach(Vec<(SloMetric, Comparison, f64)>),
    /// Not something the rules planner can do; the reason says why and what it can do.
    CannotDo(String),
}

macro_rules! re {
    ($name:ident, $pat:expr) => {
        static $name: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new($pat).ok());
    };
}

re!(AUTOSCALE, r"(?i)\bauto[- ]?scal");
re!(
    REDUCE,
    r"(?i)\b(reduce|lower|decrease|bring|keep|get|cut|improve|make)\b"
);
re!(ROLLBACK, r"(?i)\b(roll[- ]?back|revert|downgrade)\b");
re!(
    VERSION_TO,
    r"(?i)\bto\s+(?:the\s+)?(?:version\s+|image\s+|tag\s+)?v?([0-9][\w.\-]*|[\w.\-/]+:[\w.\-]+)"
);
re!(CREATE, r"(?i)\b(create|deploy|redeploy|re-create)\b");
re!(RESTART, r"(?i)\b(restart|reboot|bounce|recycle)\b");
re!(SCALE, r"(?i)\b(scale|replicas?|instances?)\b");
re!(
    SCALE_N,
    r"(?i)(?:\bto\s+(\d+)\b|\b(\d+)\s*(?:replicas?|pods?|instances?|copies)\b)"
);
re!(SCALE_BY, r"(?i)\bscale\s+(out|up|in|down)(?:\s+by\s+(\d+))?");
re!(
    SET_ENV,
    r#"(?i)\b(?:environment\s+variable|env(?:ironment)?\s+var(?:iable)?|env)\s+[`'"]?([A-Za-z_][A-Za-z0-9_]*)[`'"]?\s*(?:to|=|as)\s*[`'"]?([^\s`'"]+?)[`'"]?[.,;]?(?:\s|$)"#
);
re!(
    SET_KV,
    r#"(?i)\bset\s+[`'"]?([A-Za-z_][A-Za-z0-9_]*)[`'"]?\s*=\s*[`'"]?([^\s`'"]+?)[`'"]?[.,;]?(?:\s|$)"#
);
re!(IMAGE, r"(?i)\b(image|version|tag)\b");
re!(
    IMAGE_VERB,
    r"(?i)\b(set|update|change|upgrade|switch|use|deploy|move)\b"
);
re!(
    REPORT,
    r"(?i)\b(report|what\s+is|what's|show|tell|give|get|measure|collect|read)\b"
);
re!(CHECK, r"(?i)\b(check|is|are|verify|inspect|diagnose)\b");
re!(HEALTH, r"(?i)\b(health|healthy|status|performance|normal|slo)\b");
re!(CPU, r"(?i)\bcpu\b");
re!(MEMORY, r"(?i)\b(memory|mem|ram)\b");
re!(
    P99,
    r"(?i)\b(p99|99(?:th)?\s*percentile|tail\s+latency|latency)\b"
);
re!(P50, r"(?i)\b(p50|median)\b");
re!(
    RATE,
    r"(?i)\b(request\s+rate|throughput|rps|qps|requests\s+per\s+second)\b"
);
re!(ERRORS, r"(?i)\b(error\s+rate|errors|5xx)\b");
re!(MS, r"(?i)(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|seconds?)\b");
re!(PCT, r"(?i)(\d+(?:\.\d+)?)\s*(?:%|percent)");

fn m(re: &LazyLock<Option<Regex>>, text: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(text))
}

fn caps<'t>(re: &LazyLock<Option<Regex>>, text: &'t str) -> Option<regex::Captures<'t>> {
    re.as_ref().and_then(|r| r.captures(text))
}

// === impl ReportMetric ===

impl ReportMetric {
    /// MetricsSnapshot field, label for people, unit.
    pub fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ReportMetric::Cpu => ("cpu_percent_of_limit", "CPU usage", "%"),
            ReportMetric::Memory => ("memory_percent_of_limit", "memory usage", "%"),
            ReportMetric::P99 => ("p99_ms", "P99 latency", "ms"),
            ReportMetric::P50 => ("p50_ms", "P50 latency", "ms"),
            ReportMetric::RequestRate => ("request_rate", "request rate", "req/s"),
            ReportMetric::ErrorRate => ("error_rate_percent", "error rate", "% 5xx"),
        }
    }
}

/// What the rules planner can do, for "cannot do this" answers.
pub const CAPABILITIES: &str = "scale to N replicas, restart, set an environment variable, set or roll back the \
image version, create (start) the deployment, report CPU/memory/P99/P50/request rate/error rate, check health, and \
reduce P99 latency, CPU or memory use below a threshold";

/// Parses an imperative task.
pub fn parse_intent(text: &str) -> Intent {
    let t = text.trim();
    if t.is_empty() {
        return Intent::CannotDo(format!("the task is empty. I can: {CAPABILITIES}."));
    }
    if m(&AUTOSCALE, t) {
        return Intent::CannotDo(format!(
            "the host API has no autoscaler to configure; this sidecar already scales out by itself when its SLOs \
             break. I can: {CAPABILITIES}."
        ));
    }
    if m(&REDUCE, t) && !m(&REPORT, t) {
        let targets = parse_objectives_text(t);
        if !targets.is_empty() {
            return Intent::Reach(targets);
        }
    }
    if m(&ROLLBACK, t) {
        return match caps(&VERSION_TO, t) {
            Some(c) => Intent::RollbackTo(trim_version(&c[1])),
            None => Intent::Rollback,
        };
    }
    if let Some(c) = caps(&SET_ENV, t).or_else(|| caps(&SET_KV, t)) {
        return Intent::SetEnv {
            key: c[1].to_owned(),
            value: c[2].to_owned(),
        };
    }
    if m(&IMAGE, t)
        && m(&IMAGE_VERB, t)
        && let Some(c) = caps(&VERSION_TO, t)
    {
        return Intent::SetImage(trim_version(&c[1]));
    }
    if m(&RESTART, t) {
        return Intent::Restart;
    }
    if m(&SCALE, t) {
        if let Some(c) = caps(&SCALE_N, t) {
            let n = c.get(1).or(c.get(2)).and_then(|x| x.as_str().parse::<u32>().ok());
            if let Some(n) = n {
                return Intent::Scale(n);
            }
        }
        if let Some(c) = caps(&SCALE_BY, t) {
            let by = c.get(2).and_then(|x| x.as_str().parse::<i32>().ok()).unwrap_or(1);
            let sign = if matches!(c[1].to_ascii_lowercase().as_str(), "in" | "down") {
                -1
            } else {
                1
            };
            return Intent::ScaleBy(sign * by);
        }
    }
    if m(&CREATE, t) {
        return Intent::Create;
    }
    if m(&REPORT, t) {
        let metrics = report_metrics(t);
        if !metrics.is_empty() {
            return Intent::Report(metrics);
        }
    }
    if m(&HEALTH, t) && (m(&CHECK, t) || m(&REPORT, t)) {
        return Intent::HealthCheck;
    }
    Intent::CannotDo(format!("I do not understand {t:?}. I can: {CAPABILITIES}."))
}

fn trim_version(v: &str) -> String {
    v.trim_end_matches(['.', ',', ';']).to_owned()
}

fn report_metrics(t: &str) -> Vec<ReportMetric> {
    let mut out = Vec::new();
    if m(&CPU, t) {
        out.push(ReportMetric::Cpu);
    }
    if m(&MEMORY, t) {
        out.push(ReportMetric::Memory);
    }
    if m(&P50, t) {
        out.push(ReportMetric::P50);
    }
    if m(&P99, t) && (!m(&P50, t) || t.to_ascii_lowercase().contains("99")) {
        out.push(ReportMetric::P99);
    }
    if m(&RATE, t) {
        out.push(ReportMetric::RequestRate);
    }
    if m(&ERRORS, t) {
        out.push(ReportMetric::ErrorRate);
    }
    out
}

/// Objectives in a sentence: "P99 latency below 300ms", "CPU usage lower than 30% resource limit".
pub fn parse_objectives_text(t: &str) -> Vec<(SloMetric, Comparison, f64)> {
    let mut out = Vec::new();
    if m(&P99, t)
        && let Some(c) = caps(&MS, t)
        && let Ok(v) = c[1].parse::<f64>()
    {
        let ms = if c[2].to_ascii_lowercase().starts_with("ms")
            || c[2].to_ascii_lowercase().starts_with("milli")
        {
            v
        } else {
            v * 1000.0
        };
        out.push((SloMetric::P99LatencyMs, Comparison::Below, ms));
    }
    if let Some(c) = caps(&PCT, t)
        && let Ok(v) = c[1].parse::<f64>()
    {
        if m(&CPU, t) {
            out.push((SloMetric::CpuPercentOfLimit, Comparison::Below, v));
        }
        if m(&MEMORY, t) {
            out.push((SloMetric::MemoryPercentOfLimit, Comparison::Below, v));
        }
    }
    out
}

/// Components named in `text` (case-insensitive; `front-end` also matches "front end" and "frontend"), in the
/// order of `known`.
pub fn components_in(text: &str, known: &[ComponentName]) -> Vec<ComponentName> {
    let lower = text.to_ascii_lowercase();
    known
        .iter()
        .filter(|c| {
            let name = c.as_str();
            let variants = [name.to_owned(), name.replace('-', " "), name.replace('-', "")];
            variants
                .iter()
                .any(|v| Regex::new(&format!(r"\b{}\b", regex::escape(v))).is_ok_and(|r| r.is_match(&lower)))
        })
        .cloned()
        .collect()
}

/// Turns a goal sentence into objectives for the named components. "total" thresholds are split evenly so that
/// their sum holds; "each" (or a single component) gives every component the full threshold.
pub fn parse_goal_objectives(text: &str, components: &[ComponentName]) -> Vec<Objective> {
    let targets = parse_objectives_text(text);
    let total = text.to_ascii_lowercase().contains("total") && components.len() > 1;
    let mut out = Vec::new();
    for c in components {
        for (metric, comparison, threshold) in &targets {
            let threshold = if total && *metric == SloMetric::P99LatencyMs {
                threshold / components.len() as f64
            } else {
                *threshold
            };
            out.push(Objective {
                component: c.clone(),
                metric: *metric,
                comparison: *comparison,
                threshold,
            });
        }
    }
    out
}
