//! The experiment harness end to end on a small subset with short timings: the rules planner scored against no
//! agent, the outputs (results.json, summary.md, timelines), the `none` planner scoring 0 on L1, L2 and L5, and the
//! LLM planner through the harness against a scripted OpenAI-compatible server whose "model" takes a wrong step
//! (scales to 2 when asked for 3) and says it is done — which the L1 oracle catches by measuring.
//! The tests share one lock: each starts shops, and two at once would disturb each other's measurements.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use acv_e2e::experiment::{
    agents::{PlannerKind, Planners},
    case::{self, Case},
    episode::{Episode, EpisodeEnv},
    runner::{RunOptions, run_all},
    summary::RunResults,
};
use acv_llm::testserver::{Reply, ScriptedServer};
use tokio_util::sync::CancellationToken;

static ONE_AT_A_TIME: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

fn cases(ids: &[&str]) -> Vec<Case> {
    let all = case::load_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cases")).unwrap();
    ids.iter()
        .map(|id| {
            let mut c = all.iter().find(|c| c.id == *id).unwrap().clone();
            // Short episodes: the oracles are the same, only the windows shrink.
            c.timing.warmup_secs = 3.0;
            c.timing.fault_lead_secs = 4.0;
            c.timing.hold_secs = 5.0;
            c.timing.max_secs = 40.0;
            c.timing.answer_secs = 40.0;
            c
        })
        .collect()
}

fn env(kind: PlannerKind) -> EpisodeEnv {
    let sandbox = (!matches!(kind, PlannerKind::None)).then(|| {
        Arc::new(acv_sandbox::LazySandbox::preloaded(
            acv_sandbox::dev::shared_sandbox().unwrap(),
        ))
    });
    EpisodeEnv {
        shop_bin: env!("CARGO_BIN_EXE_acv-shop").into(),
        planners: Planners {
            kind,
            sandbox,
            seed: 7,
        },
        watch_interval: Duration::from_secs(2),
    }
}

fn out_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("acv-exp-{name}-{}", uuid::Uuid::new_v4().simple()))
}

async fn run(cases: Vec<Case>, env: EpisodeEnv, agent_only: bool, out: &std::path::Path) -> RunResults {
    let opts = RunOptions {
        cases,
        runs: 1,
        out_dir: out.to_path_buf(),
        env,
        agent_only,
        command: "test".into(),
        progress: false,
    };
    let r = run_all(&opts, &CancellationToken::new()).await.unwrap();
    assert!(r.errors.is_empty(), "episodes failed to run: {:?}", r.errors);
    r
}

fn find<'a>(r: &'a RunResults, case: &str, arm: &str) -> &'a Episode {
    r.episodes
        .iter()
        .find(|e| e.case == case && e.arm == arm)
        .unwrap_or_else(|| panic!("no episode {case}/{arm}"))
}

fn passed(e: &Episode, level: u8) -> Option<bool> {
    e.scores.iter().find(|s| s.level == level).and_then(|s| s.passed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_against_no_agent_with_outputs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let out = out_dir("rules");
    let r = run(
        cases(&["manual_scaling", "pod_failure"]),
        env(PlannerKind::Rules),
        false,
        &out,
    )
    .await;
    assert_eq!(r.episodes.len(), 4, "agent and no-agent for each case");

    let scaled = find(&r, "manual_scaling", "agent");
    assert_eq!(passed(scaled, 1), Some(true), "{:#?}", scaled.scores);
    assert!(scaled.steps >= 1 && scaled.answered_after_s.is_some());
    let nothing = find(&r, "manual_scaling", "no-agent");
    assert_eq!(passed(nothing, 1), Some(false), "no agent, no 3 replicas");

    let pod = find(&r, "pod_failure", "no-agent");
    assert!(
        pod.slo.broken,
        "the pod failure broke the SLOs: {:?}",
        pod.samples.last()
    );
    assert_eq!(passed(pod, 5), Some(false), "nobody restored the SLOs");
    assert_eq!(passed(pod, 3), Some(false), "no agent, no verdict");
    let agent = find(&r, "pod_failure", "agent");
    assert_eq!(passed(agent, 3), Some(true), "{:#?}", agent.scores);

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["episodes"].as_array().unwrap().len(), 4);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for needle in [
        "| L1 | 1.00 |",
        "| L5 | 0.25 | 0.42 |",
        "agent m1 (rules)",
        "no-agent",
        "manual_scaling",
    ] {
        assert!(md.contains(needle), "{needle:?} not in\n{md}");
    }
    for f in [
        "timeline-pod_failure-agent.svg",
        "timeline-manual_scaling-no-agent.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{f}");
    }
    std::fs::remove_dir_all(out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_none_planner_scores_zero_on_l1_l2_l5() {
    let _one = ONE_AT_A_TIME.lock().await;
    let out = out_dir("none");
    let r = run(
        cases(&["manual_scaling", "reduce_resource_usage", "pod_failure"]),
        env(PlannerKind::None),
        true,
        &out,
    )
    .await;
    assert_eq!(r.episodes.len(), 3);
    for e in &r.episodes {
        for s in &e.scores {
            if [1, 2, 5].contains(&s.level) {
                assert_ne!(
                    s.passed,
                    Some(true),
                    "{} L{} passed with no planner: {}",
                    e.case,
                    s.level,
                    s.why
                );
            }
        }
    }
    assert_eq!(passed(find(&r, "pod_failure", "agent"), 5), Some(false));
    std::fs::remove_dir_all(out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_through_the_harness_and_its_wrong_step_caught() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The scripted "model": asked for 3 replicas, it scales to 2 and claims success.
    let plan = serde_json::json!({
        "thought": "scale out",
        "steps": [{"description": "scale to 3 replicas", "program": "import acv\nacv.scale(2)\n"}],
        "done": true,
        "report": {"status": "RESPONSE", "message": "Scaled catalogue to 3 replicas."},
    })
    .to_string();
    let server = ScriptedServer::start(vec![Reply::chat_with_usage(plan.clone(), 700, 80); 4])
        .await
        .unwrap();
    let cache = out_dir("llm-cache");
    let mut cfg = acv_llm::LlmConfig::new(acv_llm::Backend::Other {
        base_url: server.base_url(),
        model: "scripted".into(),
        api_key: None,
    });
    cfg.timeout = Duration::from_secs(10);
    cfg.cache_dir = cache.clone();
    let out = out_dir("llm");
    let r = run(
        cases(&["manual_scaling"]),
        env(PlannerKind::Llm(Box::new(cfg))),
        true,
        &out,
    )
    .await;
    let e = find(&r, "manual_scaling", "agent");
    assert_eq!(e.planner, "llm:scripted");
    assert_eq!(
        e.claim,
        Some(acv_e2e::experiment::oracle::Claim::Done),
        "the model said it was done"
    );
    assert_eq!(
        passed(e, 1),
        Some(false),
        "the oracle measures 2 replicas: {:#?}",
        e.scores
    );
    assert!(e.scores[0].why.contains("want 3"), "{}", e.scores[0].why);
    assert!(
        e.prompt_tokens >= 700 && e.completion_tokens >= 80,
        "tokens counted: {e:?}"
    );
    assert!(!server.requests().is_empty());
    std::fs::remove_dir_all(out).ok();
    std::fs::remove_dir_all(cache).ok();
}
