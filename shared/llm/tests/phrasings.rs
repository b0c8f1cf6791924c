//! The rules planner's grammar on phrasings written for this test (not the dataset's): varied verbs, word orders,
//! politeness, numbers as words, units, typos, questions and commands, other components. Each row states the parsed
//! intent the planner must reach (or the refusal), so a grammar regression fails here.

use acv_llm::{
    MaintainerContext, RulesPlanner,
    planner::rules::parse::{Intent, LimitChange, Limits, ReportMetric, parse_task},
};
use acv_protocol::{Comparison, ComponentName, ReportStatus, SloMetric, TaskSpec};

enum Expect {
    Is(Intent),
    /// A "Cannot do this" with the list of what the planner can do.
    Cannot,
    /// Refused: names another component.
    NotMine(&'static [&'static str]),
}
use Expect::*;

fn cpu(c: LimitChange) -> Intent {
    Intent::SetLimits(Limits {
        cpu_millis: Some(c),
        memory_mib: None,
    })
}

fn mem(c: LimitChange) -> Intent {
    Intent::SetLimits(Limits {
        cpu_millis: None,
        memory_mib: Some(c),
    })
}

fn env(k: &str, v: &str) -> Intent {
    Intent::SetEnv {
        key: k.into(),
        value: v.into(),
    }
}

fn reach(metric: SloMetric, threshold: f64) -> Intent {
    Intent::Reach(vec![(metric, Comparison::Below, threshold)])
}

/// (own component, task text, expected).
fn table() -> Vec<(&'static str, &'static str, Expect)> {
    use Intent::*;
    use LimitChange::{Times, To};
    use ReportMetric as R;
    let c = "catalogue";
    vec![
        // --- scaling to a count: numbers as words, word orders, politeness, a typo
        (c, "scale catalogue to five replicas", Is(Scale(5))),
        (
            c,
            "Could you please run 4 instances of the catalogue?",
            Is(Scale(4)),
        ),
        (c, "I want twelve pods.", Is(Scale(12))),
        (c, "Set the replica count to 2 please", Is(Scale(2))),
        (c, "scale down to one replica", Is(Scale(1))),
        // what the sidecar sends itself to give capacity back after an incident
        (c, "Scale to 1 replicas", Is(Scale(1))),
        (c, "Sacle replicas to 3", Is(Scale(3))),
        (c, "replicas: 6", Is(Scale(6))),
        (c, "Scale from 2 to 7 replicas.", Is(Scale(7))),
        (c, "scale to twenty-one replicas", Is(Scale(21))),
        // --- relative scaling
        (c, "add two more replicas", Is(ScaleBy(2))),
        (c, "Add another instance.", Is(ScaleBy(1))),
        (c, "one fewer replica please", Is(ScaleBy(-1))),
        (c, "scale up by three", Is(ScaleBy(3))),
        (c, "Scale catalogue down by 2.", Is(ScaleBy(-2))),
        (c, "remove a replica", Is(ScaleBy(-1))),
        (c, "scale out", Is(ScaleBy(1))),
        (c, "increase the number of replicas by 1", Is(ScaleBy(1))),
        (c, "We need a couple more pods", Is(ScaleBy(2))),
        (c, "double the replicas", Cannot),
        (c, "scale it", Cannot),
        // --- restart
        (c, "restart the service", Is(Restart)),
        (c, "Please reboot all pods of catalogue now.", Is(Restart)),
        (c, "bounce it", Is(Restart)),
        (c, "Restrat the catalogue pods", Is(Restart)),
        (c, "turn it off and on again", Is(Restart)),
        // --- environment variables
        (c, "set env LOG_LEVEL=debug", Is(env("LOG_LEVEL", "debug"))),
        (
            c,
            "Change the environment variable FEATURE_X to on",
            Is(env("FEATURE_X", "on")),
        ),
        (c, "export CACHE_TTL=30", Is(env("CACHE_TTL", "30"))),
        (c, "Set LOGGER_FLAG to false.", Is(env("LOGGER_FLAG", "false"))),
        (
            c,
            "please set the env var mode to \"read only\"",
            Is(env("mode", "read only")),
        ),
        (
            c,
            "update the enviroment variable timeout_ms as 500",
            Is(env("timeout_ms", "500")),
        ),
        (
            c,
            "set the environment variable RETRIES to three",
            Is(env("RETRIES", "three")),
        ),
        // --- resource limits with units
        (c, "set the memory limit to 256Mi", Is(mem(To(256)))),
        (c, "Give it 1Gi of memory", Is(mem(To(1024)))),
        (c, "limit cpu to 300m", Is(cpu(To(300)))),
        (c, "Set the CPU limit to 200m", Is(cpu(To(200)))),
        (c, "Set the memory limit to 128Mi", Is(mem(To(128)))),
        (c, "raise the CPU limit to 0.5 cores", Is(cpu(To(500)))),
        (c, "set cpu to half a core", Is(cpu(To(500)))),
        (
            c,
            "Bump the CPU limit to 2 CPUs and memory to 512Mi",
            Is(Intent::SetLimits(Limits {
                cpu_millis: Some(To(2000)),
                memory_mib: Some(To(512)),
            })),
        ),
        (c, "double the memory limit", Is(mem(Times(2.0)))),
        (c, "increase the cpu limit by 50%", Is(cpu(Times(1.5)))),
        (c, "set memory to 512MB", Is(mem(To(488)))),
        (c, "cpu limit 750 millicores please", Is(cpu(To(750)))),
        (c, "set the memory limit to 512", Cannot),
        (c, "raise the memory limit", Cannot),
        // --- image / version
        (c, "upgrade to 0.3.6", Is(SetImage("0.3.6".into()))),
        (
            c,
            "Deploy version 0.3.7 of catalogue",
            Is(SetImage("0.3.7".into())),
        ),
        (
            c,
            "switch the image to weaveworksdemos/catalogue:0.3.5",
            Is(SetImage("weaveworksdemos/catalogue:0.3.5".into())),
        ),
        (c, "use tag v0.4.0", Is(SetImage("0.4.0".into()))),
        // --- rollback / undo
        (c, "undo the last change", Is(Rollback)),
        (c, "Revert the last deployment, please.", Is(Rollback)),
        (
            c,
            "roll catalogue back to version 0.3.4",
            Is(RollbackTo("0.3.4".into())),
        ),
        (c, "go back to 0.3.5", Is(RollbackTo("0.3.5".into()))),
        (c, "downgrade to v0.3.4", Is(RollbackTo("0.3.4".into()))),
        (c, "rollbak please", Is(Rollback)),
        (c, "roll back two versions", Cannot),
        // --- create / start
        (c, "start the service", Is(Create)),
        (c, "spin up the deployment", Is(Create)),
        // --- metric questions and reports
        (c, "what's the cpu usage right now?", Is(Report(vec![R::Cpu]))),
        (
            c,
            "How much memory is catalogue using?",
            Is(Report(vec![R::Memory])),
        ),
        (
            c,
            "how many requests per second is it handling?",
            Is(Report(vec![R::RequestRate])),
        ),
        (c, "What's your throughput?", Is(Report(vec![R::RequestRate]))),
        (
            c,
            "show me the p99 and error rate",
            Is(Report(vec![R::P99, R::ErrorRate])),
        ),
        (c, "median latency?", Is(Report(vec![R::P50]))),
        (
            c,
            "tell me the request rate of catalogue",
            Is(Report(vec![R::RequestRate])),
        ),
        (
            c,
            "how much traffic are you getting",
            Is(Report(vec![R::RequestRate])),
        ),
        (c, "report the memroy usage", Is(Report(vec![R::Memory]))),
        // --- deployment status
        (c, "how many replicas are running?", Is(Status)),
        (c, "which version is deployed?", Is(Status)),
        (c, "what image are you running", Is(Status)),
        // --- health
        (c, "is catalogue healthy?", Is(HealthCheck)),
        (c, "Are you OK?", Is(HealthCheck)),
        (c, "how is the service doing", Is(HealthCheck)),
        (c, "is the latency normal?", Is(HealthCheck)),
        // --- objectives to reach, and improving without a figure
        (
            c,
            "get the p99 under 250 ms",
            Is(reach(SloMetric::P99LatencyMs, 250.0)),
        ),
        (
            c,
            "keep memory usage below seventy percent",
            Is(reach(SloMetric::MemoryPercentOfLimit, 70.0)),
        ),
        (
            c,
            "make sure cpu stays under 40%",
            Is(reach(SloMetric::CpuPercentOfLimit, 40.0)),
        ),
        (
            c,
            "bring latency down to half a second",
            Is(reach(SloMetric::P99LatencyMs, 500.0)),
        ),
        (
            c,
            "reduce the latency",
            Is(Improve(vec![SloMetric::P99LatencyMs])),
        ),
        (c, "make it faster", Is(Improve(vec![SloMetric::P99LatencyMs]))),
        (c, "keep memory under 300Mi", Cannot),
        // --- what it cannot do
        (c, "set up autoscaling between 2 and 6 replicas", Cannot),
        (c, "delete the deployment", Cannot),
        (c, "stop the service", Cannot),
        (c, "write a haiku about latency", Cannot),
        (c, "open a shell in the pod", Cannot),
        // --- another component named: refused, whatever the phrasing
        (c, "scale front-end to 5", NotMine(&["front-end"])),
        (c, "Restart the orders service", NotMine(&["orders"])),
        (c, "what is the p99 latency of carts?", NotMine(&["carts"])),
        (c, "is front end healthy?", NotMine(&["front end"])),
        (c, "roll payment back to 1.2.0", NotMine(&["payment"])),
        (
            c,
            "set the memory limit of shipping to 1Gi",
            NotMine(&["shipping"]),
        ),
        // --- the own component in its other written forms
        ("front-end", "scale Front End to 3", Is(Scale(3))),
        ("front-end", "restart frontend", Is(Restart)),
        (
            "front-end",
            "What's the P99 latency of front-end?",
            Is(Report(vec![R::P99])),
        ),
        (c, "scale Catalogue to 2", Is(Scale(2))),
        (c, "restart this component", Is(Restart)),
        (
            c,
            "Report the cpu usage of your service",
            Is(Report(vec![R::Cpu])),
        ),
    ]
}

#[test]
fn every_phrasing_parses_to_its_intent() {
    let rows = table();
    assert!(rows.len() >= 60, "{} rows", rows.len());
    let mut failures = Vec::new();
    for (own, text, want) in &rows {
        let own = ComponentName::new(*own).unwrap();
        let got = parse_task(text, &own);
        let ok = match (want, &got) {
            (Is(w), g) => w == g,
            (Cannot, Intent::CannotDo(why)) => why.contains("I can:"),
            (NotMine(names), Intent::NotMine { named }) => named == names,
            _ => false,
        };
        if !ok {
            let want = match want {
                Is(w) => format!("{w:?}"),
                Cannot => "CannotDo(.. I can: ..)".into(),
                NotMine(n) => format!("NotMine {n:?}"),
            };
            failures.push(format!("{text:?}: want {want}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} phrasings misparsed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Through the planner: refusals and impossible tasks end at once with an ISSUE and plan nothing.
#[test]
fn refusals_are_issues_without_steps() {
    let planner = RulesPlanner::new();
    let cases = [
        (
            "scale front-end to 5",
            "Not mine: this task is for front-end, but I maintain catalogue",
        ),
        (
            "delete the deployment",
            "Cannot do this: the host API cannot delete",
        ),
        ("scale to 5000 replicas", "Cannot do this: 5000 replicas"),
        ("set the memory limit to 512", "needs a unit"),
    ];
    for (text, want) in cases {
        let ctx = MaintainerContext::for_task(
            ComponentName::new("catalogue").unwrap(),
            "t",
            TaskSpec::Imperative { text: text.into() },
        );
        let plan = planner.plan(&ctx).unwrap();
        assert!(plan.steps.is_empty() && plan.done, "{text}");
        let report = plan.report.unwrap();
        assert_eq!(report.status, ReportStatus::Issue, "{text}");
        assert!(report.message.contains(want), "{text}: {}", report.message);
    }
}
