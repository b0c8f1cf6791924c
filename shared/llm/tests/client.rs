//! The chat client end to end against the scripted OpenAI-compatible server: request shape per backend, retries,
//! timeouts, garbage, the cache and token accounting.

use std::time::Duration;

use acv_llm::{
    Backend, ChatClient, ChatMessage, ChatRequest, LlmConfig, LlmError, Secret,
    config::Pricing,
    testserver::{Reply, ScriptedServer},
};

fn quick(mut cfg: LlmConfig) -> LlmConfig {
    cfg.timeout = Duration::from_secs(5);
    cfg.backoff_initial = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(20);
    cfg.max_retries = 3;
    cfg
}

fn other(server: &ScriptedServer) -> LlmConfig {
    quick(LlmConfig::new(Backend::Other {
        base_url: server.base_url(),
        model: "llama3".into(),
        api_key: None,
    }))
}

fn req(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::system("be brief"), ChatMessage::user(text)],
        json: true,
    }
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("acv-llm-test-{}", uuid::Uuid::new_v4()))
}

#[tokio::test]
async fn openai_request_shape() {
    let server = ScriptedServer::start(vec![Reply::chat("{}")]).await.unwrap();
    let cfg = quick(LlmConfig::new(Backend::OpenAi {
        model: "gpt-4o".into(),
        api_key: Secret::new("sk-test-123"),
        base_url: server.base_url(),
    }));
    let client = ChatClient::new(cfg).unwrap();
    let resp = client.chat(&req("hello")).await.unwrap();
    assert_eq!(resp.content, "{}");
    let r = &server.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path_and_query, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test-123"));
    assert_eq!(r.header("api-key"), None);
    assert_eq!(r.body["model"], "gpt-4o");
    assert_eq!(r.body["messages"][0]["role"], "system");
    assert_eq!(
        r.body["messages"][1],
        serde_json::json!({"role": "user", "content": "hello"})
    );
    assert_eq!(r.body["response_format"]["type"], "json_object");
    assert_eq!(r.body["temperature"], 0.0);
    assert!(
        !format!("{client:?}").contains("sk-test-123"),
        "the key never shows in Debug"
    );
}

#[tokio::test]
async fn azure_request_shape() {
    let server = ScriptedServer::start(vec![Reply::chat("ok")]).await.unwrap();
    let cfg = quick(LlmConfig::new(Backend::Azure {
        endpoint: format!("{}/", server.endpoint()),
        deployment: "gpt-4-turbo".into(),
        api_version: "2024-02-01".into(),
        api_key: Secret::new("azure-key"),
    }));
    let client = ChatClient::new(cfg).unwrap();
    client
        .chat(&ChatRequest {
            messages: vec![ChatMessage::user("hi")],
            json: false,
        })
        .await
        .unwrap();
    let r = &server.requests()[0];
    assert_eq!(
        r.path_and_query,
        "/openai/deployments/gpt-4-turbo/chat/completions?api-version=2024-02-01"
    );
    assert_eq!(r.header("api-key"), Some("azure-key"));
    assert_eq!(r.header("authorization"), None);
    assert!(
        r.body.get("model").is_none(),
        "Azure picks the model by deployment"
    );
    assert!(r.body.get("response_format").is_none(), "json: false");
}

#[tokio::test]
async fn other_backend_sends_a_key_only_when_set() {
    let server = ScriptedServer::start(vec![Reply::chat("a"), Reply::chat("b")])
        .await
        .unwrap();
    ChatClient::new(other(&server))
        .unwrap()
        .chat(&req("x"))
        .await
        .unwrap();
    let mut cfg = other(&server);
    cfg.backend = Backend::Other {
        base_url: server.base_url(),
        model: "qwen".into(),
        api_key: Some(Secret::new("k")),
    };
    ChatClient::new(cfg).unwrap().chat(&req("x")).await.unwrap();
    let rs = server.requests();
    assert_eq!(rs[0].header("authorization"), None);
    assert_eq!(rs[0].body["model"], "llama3");
    assert_eq!(rs[1].header("authorization"), Some("Bearer k"));
    assert_eq!(rs[1].path_and_query, "/v1/chat/completions");
}

#[tokio::test]
async fn retries_429_and_500_then_succeeds() {
    let server = ScriptedServer::start(vec![
        Reply::Status {
            status: 429,
            retry_after: Some(0),
        },
        Reply::status(500),
        Reply::status(503),
        Reply::chat("finally"),
    ])
    .await
    .unwrap();
    let client = ChatClient::new(other(&server)).unwrap();
    let resp = client.chat(&req("x")).await.unwrap();
    assert_eq!(resp.content, "finally");
    assert_eq!(resp.attempts, 4);
    assert_eq!(server.request_count(), 4);
    assert_eq!(client.totals().retries, 3);
}

#[tokio::test]
async fn gives_up_after_max_retries_and_never_retries_client_errors() {
    let server = ScriptedServer::start(vec![]).await.unwrap(); // every request: 500
    let mut cfg = other(&server);
    cfg.max_retries = 2;
    let err = ChatClient::new(cfg).unwrap().chat(&req("x")).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::RetriesExhausted { attempts: 3, last } if matches!(**last, LlmError::Status { status: 500, .. })),
        "{err}"
    );
    assert_eq!(server.request_count(), 3);

    let server = ScriptedServer::start(vec![Reply::status(400), Reply::chat("never")])
        .await
        .unwrap();
    let err = ChatClient::new(other(&server))
        .unwrap()
        .chat(&req("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Status { status: 400, .. }), "{err}");
    assert!(
        err.to_string().contains("scripted status 400"),
        "the server's error text is kept: {err}"
    );
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn times_out_and_retries_after_a_timeout() {
    let server = ScriptedServer::start(vec![Reply::chat("late").delayed(Duration::from_secs(3))])
        .await
        .unwrap();
    let mut cfg = other(&server);
    cfg.timeout = Duration::from_millis(200);
    cfg.max_retries = 0;
    let err = ChatClient::new(cfg.clone())
        .unwrap()
        .chat(&req("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Timeout(d) if d == Duration::from_millis(200)),
        "{err}"
    );

    server.push([
        Reply::chat("slow").delayed(Duration::from_secs(3)),
        Reply::chat("fast"),
    ]);
    cfg.max_retries = 1;
    let resp = ChatClient::new(cfg).unwrap().chat(&req("x")).await.unwrap();
    assert_eq!((resp.content.as_str(), resp.attempts), ("fast", 2));
}

#[tokio::test]
async fn garbage_is_a_clear_error() {
    let server = ScriptedServer::start(vec![
        Reply::Garbage("<html>502 Bad Gateway</html>".into()),
        Reply::Garbage(r#"{"choices": []}"#.into()),
        Reply::Garbage(
            r#"{"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": []}}]}"#.into(),
        ),
    ])
    .await
    .unwrap();
    let client = ChatClient::new(other(&server)).unwrap();
    for want in ["not a chat completion", "no choices", "no text content"] {
        let err = client.chat(&req("x")).await.unwrap_err();
        assert!(matches!(err, LlmError::BadResponse(_)), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
    assert_eq!(server.request_count(), 3, "garbage is not retried");
    assert_eq!(client.totals().calls, 0);
}

#[tokio::test]
async fn cache_hit_with_same_seed_miss_with_another() {
    let server = ScriptedServer::start(vec![]).await.unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    server.set_fallback(move |_| {
        Reply::chat(format!(
            "answer {}",
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ))
    });
    let dir = temp_dir();
    let with_seed = |seed: Option<u64>| {
        let mut cfg = other(&server);
        cfg.cache_dir = dir.clone();
        cfg.cache_seed = seed;
        ChatClient::new(cfg).unwrap()
    };
    let a = with_seed(Some(42));
    let first = a.chat(&req("what now?")).await.unwrap();
    let again = a.chat(&req("what now?")).await.unwrap();
    assert_eq!((first.cached, again.cached), (false, true));
    assert_eq!(first.content, again.content);
    assert_eq!(server.request_count(), 1, "the hit made no call");

    // Another client (another process, same directory) with the same seed also hits.
    let b = with_seed(Some(42));
    assert!(b.chat(&req("what now?")).await.unwrap().cached);
    // A different seed, a different question, or no seed at all: fresh calls.
    let c = with_seed(Some(43));
    let fresh = c.chat(&req("what now?")).await.unwrap();
    assert!(!fresh.cached);
    assert_ne!(fresh.content, first.content);
    assert!(!a.chat(&req("something else")).await.unwrap().cached);
    let none = with_seed(None);
    none.chat(&req("what now?")).await.unwrap();
    none.chat(&req("what now?")).await.unwrap();
    assert_eq!(server.request_count(), 5);

    // One readable JSON file per entry, with the question and the answer.
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 3);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let entry: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        entry["seed"].is_u64()
            && entry["request"]["messages"].is_array()
            && entry["response"]["content"].is_string()
    );
    assert!(text.lines().count() > 10, "pretty-printed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn token_and_cost_accounting_sums() {
    let server = ScriptedServer::start(vec![
        Reply::chat_with_usage("a", 10, 5),
        Reply::chat_with_usage("b", 100, 50),
        Reply::chat_with_usage("c", 1000, 1),
    ])
    .await
    .unwrap();
    let dir = temp_dir();
    let mut cfg = other(&server);
    cfg.pricing = Pricing {
        prompt_per_1k: 0.01,
        completion_per_1k: 0.03,
    };
    cfg.cache_seed = Some(1);
    cfg.cache_dir = dir.clone();
    let client = ChatClient::new(cfg).unwrap();
    let clone = client.clone();
    let r1 = client.chat(&req("1")).await.unwrap();
    clone.chat(&req("2")).await.unwrap();
    client.chat(&req("3")).await.unwrap();
    let hit = client.chat(&req("1")).await.unwrap();
    assert_eq!(r1.usage, hit.usage, "the cache keeps the original usage");
    assert_eq!(hit.cost_usd, 0.0);
    let t = client.totals();
    assert_eq!((t.calls, t.cache_hits), (4, 1));
    assert_eq!(
        (t.prompt_tokens, t.completion_tokens, t.total_tokens()),
        (1110, 56, 1166)
    );
    let expected = 1.110 * 0.01 + 0.056 * 0.03;
    assert!(
        (t.cost_usd - expected).abs() < 1e-9,
        "{} vs {expected}",
        t.cost_usd
    );
    assert!((r1.cost_usd - (0.010 * 0.01 + 0.005 * 0.03)).abs() < 1e-12);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let server = ScriptedServer::start(vec![]).await.unwrap();
    let base = server.base_url();
    drop(server);
    tokio::task::yield_now().await;
    let mut cfg = quick(LlmConfig::new(Backend::Other {
        base_url: base,
        model: "m".into(),
        api_key: None,
    }));
    cfg.max_retries = 1;
    // The listener may linger for a moment after the accept task is aborted; either way no answer is a chat.
    match ChatClient::new(cfg).unwrap().chat(&req("x")).await {
        Err(LlmError::RetriesExhausted { attempts: 2, .. }) => {}
        other => panic!("expected exhausted retries, got {other:?}"),
    }
}
