//! Plain-English task and goal parsing for the rules planner, by grammar category rather than by sentence.
//!
//! 1. [`words`]: numbers written as words become digits, near-misses of the vocabulary are corrected.
//! 2. [`target`]: a task that names another component than the own one is refused ([`Intent::NotMine`]).
//! 3. Categories, tried in this order: cannot-do (autoscaling, deleting), objectives to reach ("P99 below 300 ms"),
//!    rollback / undo, environment variables, resource limits ([`quantity`]), image / version, restart, scaling
//!    (absolute, relative, "N more"), stop / delete, create, status questions, metric reports, "improve X" without a
//!    figure, health checks; anything else is [`Intent::CannotDo`] with the list of what the planner can do.
//!
//! Values (env values, image names) are taken from the text as written; everything else from the normalised,
//! lowercase text.

use std::sync::LazyLock;

use acv_protocol::{Comparison, ComponentName, Objective, SloMetric};
use regex::Regex;

pub mod quantity;
pub mod target;
mod words;

pub use quantity::{LimitChange, Limits};

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
    /// Change the CPU and/or memory limit.
    SetLimits(Limits),
    /// Switch to an image or version.
    SetImage(String),
    /// Go back to a named version.
    RollbackTo(String),
    /// Go back to the previous revision (also "undo the last change").
    Rollback,
    /// (Re)create the deployment.
    Create,
    /// Report metrics.
    Report(Vec<ReportMetric>),
    /// Report the deployment's state: replicas, image, revision, limits.
    Status,
    /// Check health / performance against the SLO policy.
    HealthCheck,
    /// Reach objectives (reduce latency/CPU/memory below a threshold).
    Reach(Vec<(SloMetric, Comparison, f64)>),
    /// Improve metrics without a figure ("reduce the latency"): reach the SLO policy's objectives for them.
    Improve(Vec<SloMetric>),
    /// The task names another component; the sidecar acts on its own only.
    NotMine {
        /// The component(s) named, as written.
        named: Vec<String>,
    },
    /// Not something the rules planner can do; the reason says why and what it can do.
    CannotDo(String),
}

macro_rules! re {
    ($name:ident, $pat:expr) => {
        static $name: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new($pat).ok());
    };
}
pub(crate) use re;

pub(crate) fn m(re: &LazyLock<Option<Regex>>, text: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(text))
}

pub(crate) fn caps<'t>(re: &LazyLock<Option<Regex>>, text: &'t str) -> Option<regex::Captures<'t>> {
    re.as_ref().and_then(|r| r.captures(text))
}

// --- cannot do ---
re!(AUTOSCALE, r"\bauto[- ]?scal|\bhpa\b|\bautoscaler\b");
re!(
    DELETE,
    r"\b(delete|destroy|uninstall|tear down|teardown|remove|drop|wipe)\b"
);
re!(STOP, r"\b(stop|shut ?down|turn off|kill|halt|pause)\b");
// --- objectives ---
re!(
    COMPARISON_VALUE,
    r"(?:\b(?:below|under|less than|lower than|at most|no more than|beneath|within|down to|max(?:imum)?(?: of)?|not (?:exceed|above|over|more than))|<=?)\s*(\d+(?:\.\d+)?)\s*(ms|milliseconds?|msecs?|s|secs?|seconds?|%|percent)?"
);
re!(
    IMPROVE,
    r"\b(reduce|lower|decrease|cut|improve|minimi[sz]e|bring\b.{0,30}\bdown|optimi[sz]e|fix)\b"
);
re!(FASTER, r"\b(faster|quicker|speed\s+(?:it\s+)?up)\b");
re!(
    QUESTION,
    r"^(?:what|what's|whats|how|which|is|are|does|do|did|has|have|any|can you tell|could you tell|tell me)\b"
);
// --- rollback ---
re!(
    ROLLBACK,
    r"\broll(?:ed|ing)?[- ]?back\b|\broll\b.{1,40}?\bback\b|\b(revert|downgrade|undo)\b|\bgo(?:ing)? back\b|\b(previous|prior|last good|earlier|older) (version|revision|release|image|build|deployment)\b"
);
re!(
    ROLLBACK_MANY,
    r"\b([2-9]|\d{2,})\s+(versions|revisions|releases|changes|deployments|steps)\b"
);
re!(
    VERSION_TO,
    r"(?i)\bto\s+(?:the\s+)?(?:version\s+|image\s+|tag\s+|release\s+|build\s+)?v?([0-9][\w.\-]*|[\w.\-/]+:[\w.\-]+)"
);
re!(
    VERSION_NAMED,
    r"(?i)\b(?:version|tag|release|build|image)\s+v?([0-9][\w.\-]*|[\w.\-/]+:[\w.\-]+)"
);
re!(
    VERSION_AFTER_VERB,
    r"(?i)\b(?:upgrade|update|deploy|install|run|roll ?out|release|use|ship|promote|downgrade)\s+(?:to\s+)?v?([0-9]+\.[\w.\-]+|[\w.\-/]+:[\w.\-]+)"
);
// --- environment ---
re!(
    SET_ENV,
    r#"(?i)\b(?:environment\s+variable|env(?:ironment)?\s+var(?:iable)?|env|variable)\s+(?:named\s+|called\s+)?[`'"]?([A-Za-z_][A-Za-z0-9_]*)[`'"]?\s*(?:to|=|as|:|with\s+(?:the\s+)?value|should\s+be|equal\s+to|(?:is|be)(?:\s+set\s+to)?)\s*("[^"]*"|'[^']*'|`[^`]*`|[^\s,;]+)"#
);
re!(
    SET_KV,
    r#"(?i)\b(?:set|export|change|update|add|put|define|configure)\s+(?:the\s+)?[`'"]?([A-Za-z_][A-Za-z0-9_]*)[`'"]?\s*=\s*("[^"]*"|'[^']*'|`[^`]*`|[^\s,;]+)"#
);
re!(
    SET_CAPS_TO,
    r#"\b(?i:set|change|update|switch|flip|make)\s+(?:(?i:the)\s+)?[`'"]?([A-Z][A-Z0-9]*_[A-Z0-9_]+|[A-Z]{2,}[A-Z0-9]*)[`'"]?\s+(?:to|=)\s*("[^"]*"|'[^']*'|`[^`]*`|[^\s,;]+)"#
);
// --- image ---
re!(IMAGE, r"\b(image|version|tag|release|build)\b|\bv?\d+\.\d+");
re!(
    IMAGE_VERB,
    r"\b(set|update|change|upgrade|switch|use|deploy|move|bump|roll ?out|install|run|release|ship|promote|go)\b"
);
// --- restart ---
re!(
    RESTART,
    r"\b(restart|reboot|bounce|recycle|cycle|kick|re-start)\b|\bturn\b.{1,30}\boff and on\b"
);
// --- scaling ---
re!(
    SCALE_WORD,
    r"\b(scale|scaling|scaled|replicas?|instances?|pods?|copies|containers?|horizontal(?:ly)?|resize)\b"
);
re!(SCALE_VERB, r"\b(scale|scaling|resize)\b");
re!(MORE_FEWER, r"\b(\d+)\s+(?:more|extra|additional|fewer|less)\b");
re!(FEWER, r"\b\d+\s+(?:fewer|less)\b");
re!(BY_N, r"\bby\s+(\d+)\b");
re!(
    DIRECTION_DOWN,
    r"\b(?:scale|scaling)\s+(?:\S+\s+)?(?:in|down)\b|\b(decrease|reduce|remove|shrink|lower|cut|fewer|less|drop)\b"
);
re!(DIRECTION_UP, r"\b(out|up|increase|add|more|grow|raise)\b");
re!(
    TO_N,
    r"(?:\bto|\bat|=|:|\bof)\s*(\d+)(\.\d|\s*(?:%|percent|ms|s|m|mi|gi|cores?|millicores?|seconds?|minutes?)\b)?"
);
re!(
    N_REPLICAS,
    r"\b(\d+)\s*(?:replicas?|pods?|instances?|copies|containers?)\b"
);
re!(ADD_N, r"\b(?:add|adding|launch|spin up|start)\s+(\d+|an?)\b");
re!(
    REMOVE_N,
    r"\b(?:remove|drop|kill|take away|terminate|delete|stop)\s+(\d+|an?)\s+(?:replicas?|pods?|instances?|copies|containers?)\b"
);
re!(SCALE_UP, r"\b(?:scale|scaling)\s+(?:it\s+|\S+\s+)?(?:out|up)\b");
re!(
    SCALE_DOWN,
    r"\b(?:scale|scaling)\s+(?:it\s+|\S+\s+)?(?:in|down)\b"
);
re!(MULTIPLY, r"\b(double|triple|halve|twice)\b");
// --- create ---
re!(
    CREATE,
    r"\b(create|deploy|redeploy|re-create|recreate|bring up|spin up|install|provision|launch|start)\b"
);
// --- questions and reports ---
re!(
    STATUS_Q,
    r"\bhow many (?:replicas|pods|instances|copies)\b|\b(?:which|what)(?:'s| is)? (?:the )?(?:current )?(?:version|image|tag|revision|release)\b|\b(?:show|report|get|describe|list|give|tell)\b.{0,40}\b(?:replicas|version|image|revision|limits|configuration|config|env(?:ironment)?(?: variables)?)\b|\b(?:cpu|memory) limits?\b\s*\?"
);
re!(
    REPORT,
    r"\b(report|what|whats|show|tell|give|get|measure|collect|read|display|print|fetch|how much|how many|how high|how fast|how slow|how busy|current|look up|find out|let me know|check|monitor)\b|\?\s*$"
);
re!(
    JUDGE,
    r"\b(health|healthy|normal|ok|okay|fine|good|acceptable|alright|within|alive|broken|wrong|problems?|issues?|slos?|up and running|working|sick|doing|too high|too slow|too much|slow|degraded)\b"
);
re!(
    CHECK,
    r"\b(check|is|are|verify|inspect|diagnose|how|any|everything|make sure|confirm|status|performance)\b|\?\s*$"
);
re!(CPU, r"\b(cpu|processor|compute)\b");
re!(MEMORY, r"\b(memory|mem|ram)\b");
re!(
    P99,
    r"\b(p99|99(?:th)?\s*(?:%|percentile)|tail\s+latency|latency|latencies|response\s+times?|how (?:fast|slow))\b"
);
re!(P50, r"\b(p50|median|50(?:th)?\s*percentile)\b");
re!(
    RATE,
    r"\b(request\s+rate|throughput|rps|qps|req/s|requests?\s+(?:per|a|each|/)\s*(?:second|sec|s)\b|traffic|how many requests|how busy)"
);
re!(
    ERRORS,
    r"\b(error\s+rate|errors?|5xx|failures?|failing|failed\s+requests)\b"
);

/// What the rules planner can do, for "cannot do this" answers.
pub const CAPABILITIES: &str = "scale to N replicas or by ±N, restart, set an environment variable, set the CPU or \
memory limit (300m, 0.5 cores, 256Mi, 1Gi, double), set the image version, roll back (one revision, or to a named \
version), create (start) the deployment, report CPU/memory/P99/P50/request rate/error rate or the deployment's \
status, check health, and reduce P99 latency, CPU or memory use below a threshold";

fn cannot(why: impl std::fmt::Display) -> Intent {
    Intent::CannotDo(format!("{why}. I can: {CAPABILITIES}."))
}

/// Parses an imperative task for the component `own`: refuses one that names another component, else
/// [`parse_intent`].
pub fn parse_task(text: &str, own: &ComponentName) -> Intent {
    let keep: Vec<String> = target::name_variants(own)
        .iter()
        .flat_map(|v| v.split([' ', '-']).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let n = words::normalize(text.trim(), &keep).to_lowercase();
    let named = target::other_components(&n, own);
    if !named.is_empty() {
        return Intent::NotMine { named };
    }
    intent_of(text.trim(), &words::normalize(text.trim(), &keep))
}

/// Parses an imperative task without checking which component it names.
pub fn parse_intent(text: &str) -> Intent {
    let t = text.trim();
    intent_of(t, &words::normalize(t, &[]))
}

/// `t`: the text as written (for values); `fixed`: numbers and typos normalised, case kept.
fn intent_of(t: &str, fixed: &str) -> Intent {
    let n = fixed.to_lowercase();
    let n = n.trim();
    if n.is_empty() {
        return cannot("the task is empty");
    }
    if m(&AUTOSCALE, n) {
        return cannot(
            "the host API has no autoscaler to configure; this sidecar already scales out by itself when its SLOs \
             break",
        );
    }
    let question = m(&QUESTION, n);
    let targets = parse_objectives_text(n);
    if !targets.is_empty() && !question && !m(&SET_ENV, t) {
        return Intent::Reach(targets);
    }
    if m(&ROLLBACK, n) && !question {
        if let Some(c) = caps(&ROLLBACK_MANY, n) {
            return cannot(format!(
                "I roll back one revision at a time (not {} {}); name the version to go back further",
                &c[1], &c[2]
            ));
        }
        return match caps(&VERSION_TO, t)
            .or_else(|| caps(&VERSION_NAMED, t))
            .or_else(|| caps(&VERSION_AFTER_VERB, t))
        {
            Some(c) => Intent::RollbackTo(trim_version(&c[1])),
            None => Intent::Rollback,
        };
    }
    if let Some((key, value)) = env_assignment(t).or_else(|| env_assignment(fixed)) {
        return Intent::SetEnv { key, value };
    }
    match quantity::parse_limits(n) {
        Ok(Some(limits)) => return Intent::SetLimits(limits),
        Ok(None) => {}
        Err(why) => return cannot(format!("cannot use that limit: {why}")),
    }
    if m(&IMAGE, n)
        && m(&IMAGE_VERB, n)
        && let Some(c) = caps(&VERSION_TO, t)
            .or_else(|| caps(&VERSION_AFTER_VERB, t))
            .or_else(|| caps(&VERSION_NAMED, t))
    {
        return Intent::SetImage(trim_version(&c[1]));
    }
    if m(&RESTART, n) {
        return Intent::Restart;
    }
    if let Some(intent) = scaling(n) {
        return intent;
    }
    if m(&DELETE, n) {
        return cannot("the host API cannot delete a component (nor replicas other than by scaling in)");
    }
    if m(&STOP, n) {
        return cannot("I stop a component only by scaling it: say \"scale to 0\" if that is what you mean");
    }
    if m(&STATUS_Q, n) {
        return Intent::Status;
    }
    if m(&CREATE, n) {
        return Intent::Create;
    }
    let metrics = report_metrics(n);
    let judging = m(&JUDGE, n);
    if !question && (m(&FASTER, n) || !metrics.is_empty() && m(&IMPROVE, n)) {
        let mut wanted: Vec<SloMetric> = metrics.iter().filter_map(|r| r.slo_metric()).collect();
        if m(&FASTER, n) && !wanted.contains(&SloMetric::P99LatencyMs) {
            wanted.push(SloMetric::P99LatencyMs);
        }
        if !wanted.is_empty() {
            return Intent::Improve(wanted);
        }
    }
    if !metrics.is_empty() && !judging && (m(&REPORT, n) || question || n.split_whitespace().count() <= 3) {
        return Intent::Report(metrics);
    }
    if (judging || !metrics.is_empty()) && (m(&CHECK, n) || question) {
        return Intent::HealthCheck;
    }
    cannot(format!("I do not understand {t:?}"))
}

/// Scaling, absolute or relative. `None` when the text is not about replicas.
fn scaling(n: &str) -> Option<Intent> {
    if !m(&SCALE_WORD, n) {
        return None;
    }
    let count = |s: &str| -> Option<i64> {
        match s {
            "a" | "an" => Some(1),
            d => d.parse().ok(),
        }
    };
    let sign = if m(&DIRECTION_DOWN, n) && !m(&DIRECTION_UP, n) {
        -1
    } else {
        1
    };
    if let Some(c) = caps(&MORE_FEWER, n) {
        let k = count(&c[1])?;
        let s = if m(&FEWER, n) { -1 } else { 1 };
        return Some(relative(s * k));
    }
    if (m(&SCALE_VERB, n) || m(&N_REPLICAS, n) || n.contains("replica") || n.contains("instance"))
        && let Some(c) = caps(&BY_N, n)
    {
        return Some(relative(sign * count(&c[1])?));
    }
    if let Some(c) = caps(&REMOVE_N, n) {
        return Some(relative(-count(&c[1])?));
    }
    if let Some(c) = caps(&TO_N, n)
        && c.get(2).is_none()
        && let Ok(k) = c[1].parse::<u32>()
    {
        return Some(Intent::Scale(k));
    }
    if let Some(c) = caps(&N_REPLICAS, n) {
        if let Some(a) = caps(&ADD_N, n)
            && count(&a[1]).is_some()
        {
            return Some(relative(count(&c[1])?));
        }
        return c[1].parse::<u32>().ok().map(Intent::Scale);
    }
    if let Some(a) = caps(&ADD_N, n) {
        return Some(relative(count(&a[1])?));
    }
    if m(&SCALE_UP, n) {
        return Some(Intent::ScaleBy(1));
    }
    if m(&SCALE_DOWN, n) {
        return Some(Intent::ScaleBy(-1));
    }
    if m(&SCALE_VERB, n) {
        if m(&MULTIPLY, n) {
            return Some(cannot(
                "I scale by a number of replicas, not by a factor: say \"scale to 4\" or \"scale out by 2\"",
            ));
        }
        return Some(cannot(
            "say how many replicas: \"scale to 3\", \"scale out by 2\" or \"2 more replicas\"",
        ));
    }
    None
}

fn relative(delta: i64) -> Intent {
    match i32::try_from(delta) {
        Ok(d) if d != 0 => Intent::ScaleBy(d),
        Ok(_) => cannot("scaling by 0 replicas changes nothing"),
        Err(_) => cannot(format!("{delta} replicas is not a sensible change")),
    }
}

/// An environment assignment in `t`: "environment variable K to V" (or "… K is V", "… K be V"), "set K=V",
/// "set LOG_LEVEL to debug".
fn env_assignment(t: &str) -> Option<(String, String)> {
    const NOT_ENV: &[&str] = &[
        "replicas",
        "replica",
        "instances",
        "cpu",
        "memory",
        "limit",
        "limits",
        "image",
        "version",
        "tag",
        "it",
        "the",
        "to",
        "scale",
        "pods",
    ];
    /// What follows "variable K is" when K's state is described rather than a value given.
    const NOT_A_VALUE: &[&str] = &[
        "set",
        "unset",
        "defined",
        "undefined",
        "present",
        "missing",
        "there",
        "correct",
        "right",
        "wrong",
        "still",
        "not",
        "now",
        "already",
        "being",
    ];
    let c = caps(&SET_ENV, t)
        .or_else(|| caps(&SET_KV, t))
        .or_else(|| caps(&SET_CAPS_TO, t))?;
    let key = c[1].to_owned();
    if NOT_ENV.contains(&key.to_ascii_lowercase().as_str()) {
        return None;
    }
    let raw = &c[2];
    let value = match raw.chars().next() {
        Some(q @ ('"' | '\'' | '`')) if raw.len() >= 2 && raw.ends_with(q) => {
            raw[1..raw.len() - 1].to_owned()
        }
        _ => raw.trim_end_matches(['.', ',', ';', '!', '?']).to_owned(),
    };
    // "… variable K is set", "… is defined": a state asked about, not a value to set.
    if NOT_A_VALUE.contains(&value.to_ascii_lowercase().as_str()) {
        return None;
    }
    Some((key, value))
}

fn trim_version(v: &str) -> String {
    v.trim_end_matches(['.', ',', ';', '!', '?']).to_owned()
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

    /// The SLO metric with the same meaning, if there is one.
    pub fn slo_metric(self) -> Option<SloMetric> {
        match self {
            ReportMetric::Cpu => Some(SloMetric::CpuPercentOfLimit),
            ReportMetric::Memory => Some(SloMetric::MemoryPercentOfLimit),
            ReportMetric::P99 | ReportMetric::P50 => Some(SloMetric::P99LatencyMs),
            ReportMetric::ErrorRate => Some(SloMetric::ErrorRatePercent),
            ReportMetric::RequestRate => None,
        }
    }
}

fn report_metrics(n: &str) -> Vec<ReportMetric> {
    let mut out = Vec::new();
    if m(&CPU, n) {
        out.push(ReportMetric::Cpu);
    }
    if m(&MEMORY, n) {
        out.push(ReportMetric::Memory);
    }
    if m(&P50, n) {
        out.push(ReportMetric::P50);
    }
    if m(&P99, n) && (!m(&P50, n) || n.contains("99")) {
        out.push(ReportMetric::P99);
    }
    if m(&RATE, n) {
        out.push(ReportMetric::RequestRate);
    }
    if m(&ERRORS, n) {
        out.push(ReportMetric::ErrorRate);
    }
    out
}

/// Objectives in a sentence, each a metric with a comparison word and a figure: "P99 latency below 300ms",
/// "CPU usage lower than 30% resource limit", "memory under seventy percent", "latency at most 0.5 s".
pub fn parse_objectives_text(text: &str) -> Vec<(SloMetric, Comparison, f64)> {
    let n = words::normalize(text, &[]).to_lowercase();
    let mut out = Vec::new();
    let Some(re) = COMPARISON_VALUE.as_ref() else {
        return out;
    };
    for c in re.captures_iter(&n) {
        let Ok(v) = c[1].parse::<f64>() else {
            continue;
        };
        let unit = c.get(2).map_or("", |u| u.as_str());
        match unit {
            "%" | "percent" => {
                if m(&CPU, &n) {
                    out.push((SloMetric::CpuPercentOfLimit, Comparison::Below, v));
                }
                if m(&MEMORY, &n) {
                    out.push((SloMetric::MemoryPercentOfLimit, Comparison::Below, v));
                }
                if m(&ERRORS, &n) && !m(&CPU, &n) && !m(&MEMORY, &n) {
                    out.push((SloMetric::ErrorRatePercent, Comparison::Below, v));
                }
            }
            "" => {}
            u if m(&P99, &n) || m(&P50, &n) => {
                let ms = if u.starts_with("ms") || u.starts_with("milli") || u.starts_with("msec") {
                    v
                } else {
                    v * 1000.0
                };
                out.push((SloMetric::P99LatencyMs, Comparison::Below, ms));
            }
            _ => {}
        }
    }
    // One objective per metric, the first: a sentence naming CPU and memory twice ("CPU below 50% …, memory below
    // 50% …") would otherwise list each twice.
    let mut seen = Vec::new();
    out.retain(|(metric, _, _)| {
        let first = !seen.contains(metric);
        seen.push(*metric);
        first
    });
    out
}

/// Components named in `text` (case-insensitive; `front-end` also matches "front end" and "frontend"), in the
/// order of `known`.
pub fn components_in(text: &str, known: &[ComponentName]) -> Vec<ComponentName> {
    let lower = text.to_ascii_lowercase();
    known
        .iter()
        .filter(|c| {
            target::name_variants(c)
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
