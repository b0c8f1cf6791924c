//! A small chat-completions client for OpenAI, Azure OpenAI and any OpenAI-compatible server, built on reqwest.
//!
//! One call = one `POST …/chat/completions`, retried with exponential backoff and jitter on 429, 5xx, timeouts and
//! connection errors, each attempt bounded by the per-call timeout. Answers can be served from the on-disk
//! [`Cache`](crate::cache::Cache) when a cache seed is set. Every call's tokens and cost are added to the client's
//! running totals.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    cache::{Cache, CacheKey, CachedResponse},
    config::{Backend, LlmConfig, Pricing},
};

/// Longest piece of a response body kept in an error message.
const ERROR_BODY_LIMIT: usize = 512;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The model.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Author.
    pub role: Role,
    /// Text.
    pub content: String,
}

/// A chat request, independent of the backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Ask for a JSON object answer.
    pub json: bool,
}

/// Tokens used by one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

/// Accumulated use over many calls (one task, or the whole process).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Calls answered (from the network or the cache).
    pub calls: u64,
    /// Calls answered from the cache (no network, no cost).
    pub cache_hits: u64,
    /// HTTP attempts that were retried.
    pub retries: u64,
    /// Prompt tokens billed (cache hits excluded).
    pub prompt_tokens: u64,
    /// Completion tokens billed (cache hits excluded).
    pub completion_tokens: u64,
    /// Cost in USD at the configured prices (cache hits excluded).
    pub cost_usd: f64,
}

/// The answer to one call.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The assistant's text.
    pub content: String,
    /// Tokens reported by the server (or recorded in the cache entry).
    pub usage: Usage,
    /// Cost of this call in USD (0 for cache hits).
    pub cost_usd: f64,
    /// Served from the cache.
    pub cached: bool,
    /// HTTP attempts made (0 for cache hits).
    pub attempts: u32,
}

/// Why a chat call failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The connection failed or broke (DNS, refused, reset, TLS).
    #[error("LLM transport error: {0}")]
    Transport(String),
    /// No complete answer within the per-call timeout.
    #[error("LLM call timed out after {0:?}")]
    Timeout(Duration),
    /// The server answered with an error status.
    #[error("LLM server answered HTTP {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The server answered 2xx with something that is not a chat completion (garbage, no choices, no content).
    #[error("unusable LLM response: {0}")]
    BadResponse(String),
    /// All attempts failed with retryable errors.
    #[error("LLM call failed after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<LlmError>,
    },
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client: {0}")]
    Build(String),
}

/// The chat client. Cheap to clone; clones share the HTTP pool and the usage totals.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    config: Arc<LlmConfig>,
    cache: Option<Cache>,
    totals: Arc<Mutex<UsageTotals>>,
}

/// Wire shape of an OpenAI chat completion (only what we read).
#[derive(Deserialize)]
struct WireResponse {
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

// === impl Usage ===

impl Usage {
    /// Cost of these tokens at `pricing`.
    pub fn cost(&self, pricing: &Pricing) -> f64 {
        // Token counts are far below 2^53, so the conversion is exact.
        (self.prompt_tokens as f64) / 1000.0 * pricing.prompt_per_1k
            + (self.completion_tokens as f64) / 1000.0 * pricing.completion_per_1k
    }

    /// Prompt plus completion tokens.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

// === impl UsageTotals ===

impl UsageTotals {
    /// Adds one response.
    pub fn record(&mut self, r: &ChatResponse) {
        self.calls += 1;
        self.retries += u64::from(r.attempts.saturating_sub(1));
        if r.cached {
            self.cache_hits += 1;
        } else {
            self.prompt_tokens += r.usage.prompt_tokens;
            self.completion_tokens += r.usage.completion_tokens;
            self.cost_usd += r.cost_usd;
        }
    }

    /// Adds another total.
    pub fn add(&mut self, o: &UsageTotals) {
        self.calls += o.calls;
        self.cache_hits += o.cache_hits;
        self.retries += o.retries;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cost_usd += o.cost_usd;
    }

    /// Billed tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

// === impl ChatMessage ===

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

// === impl LlmError ===

impl LlmError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Transport(_) | LlmError::Timeout(_) => true,
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            LlmError::Transport(_) => "transport",
            LlmError::Timeout(_) => "timeout",
            LlmError::Status { .. } => "status",
            LlmError::BadResponse(_) => "bad_response",
            LlmError::RetriesExhausted { .. } => "retries_exhausted",
            LlmError::Build(_) => "build",
        }
    }
}

// === impl ChatClient ===

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config's Debug already redacts the key; the HTTP client adds nothing useful.
        f.debug_struct("ChatClient")
            .field("config", &self.config)
            .field("cache", &self.cache)
            .finish()
    }
}

impl ChatClient {
    /// Builds a client. The cache is used when `config.cache_seed` is set.
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("acv-llm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Build(e.to_string()))?;
        let cache = config.cache_seed.map(|_| Cache::new(config.cache_dir.clone()));
        Ok(Self {
            http,
            config: Arc::new(config),
            cache,
            totals: Arc::new(Mutex::new(UsageTotals::default())),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Usage over every call made through this client (and its clones).
    pub fn totals(&self) -> UsageTotals {
        self.totals.lock().map(|t| *t).unwrap_or_default()
    }

    /// Sends one chat request, from the cache when possible.
    #[tracing::instrument(skip_all, fields(backend = self.config.backend.kind(), model = %self.config.backend.model_id()))]
    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self.wire_body(req);
        let key = self
            .config
            .cache_seed
            .map(|seed| CacheKey::new(&self.config.backend.model_id(), &body, seed));
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            match cache.get(key) {
                Ok(Some(hit)) => {
                    tracing::debug!(key = %key.hex(), "LLM cache hit.");
                    let resp = ChatResponse {
                        content: hit.content,
                        usage: hit.usage,
                        cost_usd: 0.0,
                        cached: true,
                        attempts: 0,
                    };
                    self.record(&resp);
                    return Ok(resp);
                }
                Ok(None) => {}
                // A broken cache entry must not stop the agent: log and ask the model.
                Err(e) => tracing::warn!(error = %e, "Unreadable LLM cache entry; calling the model."),
            }
        }
        let resp = self.call_with_retries(&body).await?;
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            let entry = CachedResponse {
                content: resp.content.clone(),
                usage: resp.usage,
            };
            if let Err(e) = cache.put(key, &self.config.backend.model_id(), &body, &entry) {
                tracing::warn!(error = %e, "Cannot write LLM cache entry.");
            }
        }
        self.record(&resp);
        Ok(resp)
    }

    fn record(&self, resp: &ChatResponse) {
        if let Ok(mut t) = self.totals.lock() {
            t.record(resp);
        }
    }

    /// The JSON body sent to the server (also the cache key material, with the model and seed).
    fn wire_body(&self, req: &ChatRequest) -> serde_json::Value {
        let mut body = serde_json::json!({
            "messages": req.messages,
            "temperature": self.config.temperature,
        });
        if let Backend::OpenAi { model, .. } | Backend::Other { model, .. } = &self.config.backend {
            body["model"] = serde_json::Value::String(model.clone());
        }
        if let Some(max) = self.config.max_tokens {
            body["max_tokens"] = max.into();
        }
        if req.json && self.config.json_mode {
            body["response_format"] = serde_json::json!({ "type": "json_object" });
        }
        body
    }

    async fn call_with_retries(&self, body: &serde_json::Value) -> Result<ChatResponse, LlmError> {
        let cfg = &self.config;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let outcome = match tokio::time::timeout(cfg.timeout, self.send_once(body)).await {
                Ok(r) => r,
                Err(_) => Err((LlmError::Timeout(cfg.timeout), None)),
            };
            let (err, retry_after) = match outcome {
                Ok((content, usage)) => {
                    return Ok(ChatResponse {
                        content,
                        usage,
                        cost_usd: usage.cost(&cfg.pricing),
                        cached: false,
                        attempts: attempt,
                    });
                }
                Err(e) => e,
            };
            if !err.is_retryable() {
                return Err(err);
            }
            if attempt > cfg.max_retries {
                return Err(if attempt == 1 {
                    err
                } else {
                    LlmError::RetriesExhausted {
                        attempts: attempt,
                        last: Box::new(err),
                    }
                });
            }
            let delay = backoff(cfg, attempt, retry_after);
            tracing::warn!(attempt, error = %err, delay_ms = delay.as_millis() as u64, "LLM call failed; retrying.");
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP attempt. On failure also returns the server's `Retry-After`, if any.
    async fn send_once(
        &self,
        body: &serde_json::Value,
    ) -> Result<(String, Usage), (LlmError, Option<Duration>)> {
        let mut rb = self.http.post(self.config.backend.chat_url()).json(body);
        rb = match &self.config.backend {
            Backend::OpenAi { api_key, .. } => rb.bearer_auth(api_key.expose()),
            Backend::Other { api_key: Some(k), .. } => rb.bearer_auth(k.expose()),
            Backend::Other { api_key: None, .. } => rb,
            Backend::Azure { api_key, .. } => rb.header("api-key", api_key.expose()),
        };
        let resp = rb.send().await.map_err(|e| (transport(e), None))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        let bytes = resp.bytes().await.map_err(|e| (transport(e), None))?;
        if !status.is_success() {
            return Err((
                LlmError::Status {
                    status: status.as_u16(),
                    body: snippet(&bytes),
                },
                retry_after,
            ));
        }
        parse_completion(&bytes).map_err(|e| (e, None))
    }
}

fn transport(e: reqwest::Error) -> LlmError {
    // `without_url` keeps query strings (which could carry tokens on some proxies) out of logs.
    LlmError::Transport(e.without_url().to_string())
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s.chars().take(ERROR_BODY_LIMIT).collect();
    if s.chars().count() > ERROR_BODY_LIMIT {
        out.push('…');
    }
    out
}

/// Parses a chat completion body into the first choice's text and the usage.
pub(crate) fn parse_completion(bytes: &[u8]) -> Result<(String, Usage), LlmError> {
    let wire: WireResponse = serde_json::from_slice(bytes)
        .map_err(|e| LlmError::BadResponse(format!("not a chat completion ({e}): {}", snippet(bytes))))?;
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::BadResponse("the response has no choices".into()))?;
    let content = choice
        .message
        .content
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| LlmError::BadResponse("the first choice has no text content".into()))?;
    let usage = wire
        .usage
        .map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        })
        .unwrap_or_default();
    Ok((content, usage))
}

/// Exponential backoff with ±25% jitter, at least the server's `Retry-After`, capped by `backoff_max`.
fn backoff(cfg: &LlmConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = cfg
        .backoff_initial
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let jitter = rand::random_range(0.75..=1.25);
    let base = exp.mul_f64(jitter).max(retry_after.unwrap_or_default());
    base.min(cfg.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_completions_and_rejects_garbage() {
        let ok = br#"{"choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let (c, u) = parse_completion(ok).unwrap();
        assert_eq!((c.as_str(), u.prompt_tokens, u.completion_tokens), ("hi", 3, 2));
        for bad in [
            &b"<html>oops"[..],
            br#"{"choices":[]}"#,
            br#"{"choices":[{"message":{"content":null}}]}"#,
        ] {
            assert!(matches!(parse_completion(bad), Err(LlmError::BadResponse(_))));
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut cfg = LlmConfig::new(Backend::Other {
            base_url: "http://x".into(),
            model: "m".into(),
            api_key: None,
        });
        cfg.backoff_initial = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_millis(1000);
        assert!(backoff(&cfg, 1, None) <= Duration::from_millis(125));
        assert!(backoff(&cfg, 3, None) >= Duration::from_millis(300));
        assert_eq!(backoff(&cfg, 10, None), Duration::from_millis(1000));
        assert_eq!(
            backoff(&cfg, 1, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn cost_uses_prices() {
        let u = Usage {
            prompt_tokens: 2000,
            completion_tokens: 500,
        };
        let p = Pricing {
            prompt_per_1k: 0.01,
            completion_per_1k: 0.03,
        };
        assert!((u.cost(&p) - 0.035).abs() < 1e-12);
    }
}
