//! Planner figures: rules-planner decision time per dataset task, chat round trip through the scripted
//! OpenAI-compatible server on loopback, cache-hit time, and one LLM planner turn (prompt + call + validation).
//! Run with `cargo bench -p acv-llm`; prints p50/p99.

use std::time::{Duration, Instant};

use acv_llm::{
    Backend, ChatClient, ChatMessage, ChatRequest, LlmConfig, LlmPlanner, MaintainerContext, Planner,
    RulesPlanner,
    testserver::{Reply, ScriptedServer},
};
use acv_protocol::{ComponentName, TaskSpec};

const TASKS: &[&str] = &[
    "Create a deployment using your deployment YAML file.",
    "Update your deployment and set the environment variable logger_flag to true.",
    "Rollback the image version of your microservice component to version 0.3.4.",
    "Restart all the pods of your microservice component immediately.",
    "Report the cpu usage of your microservice component.",
    "Report the P99 latency of your microservice component.",
    "Scale replicas to 3 for your microservice component.",
    "Check your microservice's healthy status immediately.",
    "Check whether your microservice component performance is normal immediately.",
    "Reduce your microservice component P99 latency below 300ms.",
    "Reduce your microservice component average CPU usage lower than 30% resource limit.",
    "Implement auto-scaling with sensible thresholds for your microservice component.",
];

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn show(name: &str, mut d: Vec<Duration>) {
    d.sort();
    println!(
        "{name:<44} n={:<5} p50={:>10.1?} p99={:>10.1?} max={:>10.1?}",
        d.len(),
        pct(&d, 0.5),
        pct(&d, 0.99),
        d[d.len() - 1]
    );
}

fn ctx(text: &str) -> MaintainerContext {
    let c = ComponentName::new("catalogue").expect("valid name");
    MaintainerContext::for_task(c, "bench", TaskSpec::Imperative { text: text.into() })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let rules = RulesPlanner::new();
    let contexts: Vec<_> = TASKS.iter().map(|t| ctx(t)).collect();
    let mut times = Vec::new();
    for _ in 0..200 {
        for c in &contexts {
            let t = Instant::now();
            let plan = rules.plan(c)?;
            times.push(t.elapsed());
            std::hint::black_box(plan);
        }
    }
    show("rules planner: one decision (12 dataset tasks)", times);

    let server = ScriptedServer::start(vec![]).await?;
    server.set_fallback(|_| {
        Reply::chat(r#"{"steps": [], "done": true, "report": {"status": "RESPONSE", "message": "ok"}}"#)
    });
    let mut cfg = LlmConfig::new(Backend::Other {
        base_url: server.base_url(),
        model: "bench".into(),
        api_key: None,
    });
    cfg.timeout = Duration::from_secs(5);
    let client = ChatClient::new(cfg.clone())?;
    let req = ChatRequest {
        messages: vec![ChatMessage::user("hello")],
        json: true,
    };
    let mut times = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        client.chat(&req).await?;
        times.push(t.elapsed());
    }
    show("chat round trip, loopback scripted server", times);

    let dir = std::env::temp_dir().join(format!("acv-llm-bench-{}", std::process::id()));
    let mut cached = cfg.clone();
    cached.cache_seed = Some(1);
    cached.cache_dir = dir.clone();
    let cclient = ChatClient::new(cached)?;
    cclient.chat(&req).await?;
    let mut times = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let r = cclient.chat(&req).await?;
        times.push(t.elapsed());
        assert!(r.cached);
    }
    show("chat served from the disk cache", times);
    std::fs::remove_dir_all(&dir).ok();

    let planner = LlmPlanner::new(ChatClient::new(cfg)?);
    let mut times = Vec::new();
    for i in 0..300 {
        let c = &contexts[i % contexts.len()];
        let t = Instant::now();
        planner.next(c).await?;
        times.push(t.elapsed());
    }
    show("LLM planner turn (prompt, call, validate)", times);
    let totals = planner.client().totals();
    println!(
        "LLM planner totals: {} calls, {} tokens, ${:.4}",
        totals.calls,
        totals.total_tokens(),
        totals.cost_usd
    );
    Ok(())
}
