//! LLM backend configuration: which OpenAI-compatible endpoint to call, with which model, timeouts, retries, cache
//! and prices. Read from a YAML file and/or the environment; secrets are never printed.
//!
//! A file looks like this (see `docs/planners.md` for every backend):
//! ```yaml
//! backend: azure            # openai | azure | other
//! endpoint: https://my-resource.openai.azure.com
//! deployment: gpt-4-turbo
//! api_version: 2024-02-01
//! api_key_env: AZURE_OPENAI_API_KEY   # or api_key: "..." (not recommended in files)
//! timeout: 60s
//! cache_seed: 42
//! ```

use std::{fmt, path::PathBuf, time::Duration};

use acv_core::env::{Parser, Strings, parse_duration};
use serde::{Deserialize, Deserializer};

/// Path of a YAML config file. Optional; env keys below override file values.
pub const ENV_CONFIG: &str = "ACV_LLM_CONFIG";
/// Backend: `openai`, `azure` or `other`. Default `openai` when a model is set.
pub const ENV_BACKEND: &str = "ACV_LLM_BACKEND";
/// Model name (OpenAI and other backends), e.g. `gpt-4o` or `llama3.1:8b`.
pub const ENV_MODEL: &str = "ACV_LLM_MODEL";
/// Base URL. OpenAI default `https://api.openai.com/v1`; for `other` e.g. `http://127.0.0.1:11434/v1` (Ollama).
pub const ENV_BASE_URL: &str = "ACV_LLM_BASE_URL";
/// API key (OpenAI, Azure, optional for other). Falls back to `OPENAI_API_KEY` / `AZURE_OPENAI_API_KEY`.
pub const ENV_API_KEY: &str = "ACV_LLM_API_KEY";
/// Azure resource endpoint, e.g. `https://my-resource.openai.azure.com`.
pub const ENV_AZURE_ENDPOINT: &str = "ACV_LLM_AZURE_ENDPOINT";
/// Azure deployment name.
pub const ENV_AZURE_DEPLOYMENT: &str = "ACV_LLM_AZURE_DEPLOYMENT";
/// Azure API version, default [`DEFAULT_AZURE_API_VERSION`].
pub const ENV_AZURE_API_VERSION: &str = "ACV_LLM_AZURE_API_VERSION";
/// Per-call timeout (`500ms`, `60s`, `2m`). Default 60 s.
pub const ENV_TIMEOUT: &str = "ACV_LLM_TIMEOUT";
/// Retries after the first attempt on 429/5xx/timeouts/connection errors. Default 4.
pub const ENV_MAX_RETRIES: &str = "ACV_LLM_MAX_RETRIES";
/// Directory of the response cache. Default `.acv-cache/llm`.
pub const ENV_CACHE_DIR: &str = "ACV_LLM_CACHE_DIR";
/// Cache seed (integer). Unset or `none` disables the cache; a different seed gives a fresh answer.
pub const ENV_CACHE_SEED: &str = "ACV_LLM_CACHE_SEED";
/// Sampling temperature, default 0.
pub const ENV_TEMPERATURE: &str = "ACV_LLM_TEMPERATURE";
/// Price in USD per 1000 prompt tokens, default 0.
pub const ENV_PRICE_PROMPT: &str = "ACV_LLM_PRICE_PROMPT_PER_1K";
/// Price in USD per 1000 completion tokens, default 0.
pub const ENV_PRICE_COMPLETION: &str = "ACV_LLM_PRICE_COMPLETION_PER_1K";
/// Planner turns allowed per task (one turn = one plan request), default 8.
pub const ENV_MAX_TURNS: &str = "ACV_LLM_MAX_TURNS";
/// How often a malformed plan is sent back to the model with the error, default 2.
pub const ENV_MAX_REPAIRS: &str = "ACV_LLM_MAX_REPAIRS";

/// OpenAI's public API.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Azure OpenAI API version used when none is configured.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-06-01";

/// A secret string (API key). `Debug` and `Display` print `<redacted>`; it is never serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Which service answers chat completions.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// api.openai.com (or a proxy with the same API): `Authorization: Bearer KEY`, `{base}/chat/completions`.
    OpenAi {
        /// Model, e.g. `gpt-4o`.
        model: String,
        /// API key.
        api_key: Secret,
        /// Base URL, default [`DEFAULT_OPENAI_BASE_URL`].
        base_url: String,
    },
    /// Azure OpenAI: `api-key: KEY`, `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V`.
    Azure {
        /// Resource endpoint, e.g. `https://my-resource.openai.azure.com`.
        endpoint: String,
        /// Deployment name.
        deployment: String,
        /// API version, e.g. `2024-06-01`.
        api_version: String,
        /// API key.
        api_key: Secret,
    },
    /// Any OpenAI-compatible server (Ollama, vLLM, llama-server, LiteLLM): `{base_url}/chat/completions`,
    /// `Authorization: Bearer KEY` only when a key is set.
    Other {
        /// Base URL including the `/v1` prefix, e.g. `http://127.0.0.1:11434/v1`.
        base_url: String,
        /// Model name as the server knows it.
        model: String,
        /// Optional API key.
        api_key: Option<Secret>,
    },
}

/// Token prices for cost accounting.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
pub struct Pricing {
    /// USD per 1000 prompt tokens.
    #[serde(default)]
    pub prompt_per_1k: f64,
    /// USD per 1000 completion tokens.
    #[serde(default)]
    pub completion_per_1k: f64,
}

/// Everything the chat client and the LLM planner need.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// The endpoint.
    pub backend: Backend,
    /// Per-call timeout (whole request, including reading the body).
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff delay; doubles per retry, with jitter.
    pub backoff_initial: Duration,
    /// Largest backoff delay (also caps a server's `Retry-After`).
    pub backoff_max: Duration,
    /// Sampling temperature.
    pub temperature: f32,
    /// Completion token cap sent as `max_tokens` (`None`: server default).
    pub max_tokens: Option<u32>,
    /// Ask for a JSON object (`response_format: json_object`). Turn off for servers that reject it.
    pub json_mode: bool,
    /// Response cache directory.
    pub cache_dir: PathBuf,
    /// Cache seed; `None` disables the cache (the paper's `cache_seed`).
    pub cache_seed: Option<u64>,
    /// Token prices.
    pub pricing: Pricing,
    /// Plan requests allowed per task.
    pub max_turns: u32,
    /// Repairs of a malformed plan per turn.
    pub max_repairs: u32,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read LLM config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape.
    #[error("bad LLM config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_yaml::Error,
    },
    /// An env key had a bad value.
    #[error(transparent)]
    Env(#[from] acv_core::env::EnvError),
    /// A value is missing or inconsistent.
    #[error("invalid LLM config: {0}")]
    Invalid(String),
}

/// The raw file shape: every field optional so env can fill the rest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `openai`, `azure` or `other`.
    pub backend: Option<String>,
    /// Model (openai/other).
    pub model: Option<String>,
    /// Base URL (openai/other).
    pub base_url: Option<String>,
    /// Literal API key (prefer `api_key_env`).
    pub api_key: Option<Secret>,
    /// Name of the env var holding the API key.
    pub api_key_env: Option<String>,
    /// Azure endpoint.
    pub endpoint: Option<String>,
    /// Azure deployment.
    pub deployment: Option<String>,
    /// Azure API version.
    pub api_version: Option<String>,
    /// Per-call timeout, e.g. `60s`.
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// Retries.
    pub max_retries: Option<u32>,
    /// First backoff, e.g. `500ms`.
    #[serde(default, deserialize_with = "de_duration")]
    pub backoff_initial: Option<Duration>,
    /// Backoff cap, e.g. `20s`.
    #[serde(default, deserialize_with = "de_duration")]
    pub backoff_max: Option<Duration>,
    /// Temperature.
    pub temperature: Option<f32>,
    /// Completion token cap.
    pub max_tokens: Option<u32>,
    /// JSON mode.
    pub json_mode: Option<bool>,
    /// Cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Cache seed.
    pub cache_seed: Option<u64>,
    /// Prices.
    pub pricing: Option<Pricing>,
    /// Turn budget per task.
    pub max_turns: Option<u32>,
    /// Repairs per turn.
    pub max_repairs: Option<u32>,
}

// === impl Secret ===

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret value, for building a request header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<serde_yaml::Value> = Option::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(serde_yaml::Value::Number(n)) => {
            let secs = n
                .as_f64()
                .ok_or_else(|| serde::de::Error::custom("bad duration"))?;
            Duration::try_from_secs_f64(secs)
                .map(Some)
                .map_err(serde::de::Error::custom)
        }
        Some(serde_yaml::Value::String(s)) => parse_duration(&s).map(Some).map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!("bad duration {other:?}"))),
    }
}

// === impl Backend ===

impl Backend {
    /// The model identity used in cache keys, logs and the planner name (`gpt-4o`, `azure:deployment`).
    pub fn model_id(&self) -> String {
        match self {
            Backend::OpenAi { model, .. } | Backend::Other { model, .. } => model.clone(),
            Backend::Azure { deployment, .. } => format!("azure:{deployment}"),
        }
    }

    /// The chat completions URL.
    pub fn chat_url(&self) -> String {
        match self {
            Backend::OpenAi { base_url, .. } | Backend::Other { base_url, .. } => {
                format!("{}/chat/completions", base_url.trim_end_matches('/'))
            }
            Backend::Azure {
                endpoint,
                deployment,
                api_version,
                ..
            } => format!(
                "{}/openai/deployments/{deployment}/chat/completions?api-version={api_version}",
                endpoint.trim_end_matches('/')
            ),
        }
    }

    /// Short backend kind for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::OpenAi { .. } => "openai",
            Backend::Azure { .. } => "azure",
            Backend::Other { .. } => "other",
        }
    }
}

// === impl LlmConfig ===

impl LlmConfig {
    /// A config with the defaults for `backend`.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            timeout: Duration::from_secs(60),
            max_retries: 4,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(20),
            temperature: 0.0,
            max_tokens: None,
            json_mode: true,
            cache_dir: PathBuf::from(".acv-cache/llm"),
            cache_seed: None,
            pricing: Pricing::default(),
            max_turns: 8,
            max_repairs: 2,
        }
    }

    /// Loads from the file named by [`ENV_CONFIG`] (if set), then applies env overrides. Returns `Ok(None)` when
    /// nothing configures an LLM at all (the caller then uses the rules planner).
    pub fn from_env(env: &dyn Strings) -> Result<Option<Self>, ConfigError> {
        let file = match env.get(ENV_CONFIG) {
            Some(path) => Self::read_file(&PathBuf::from(path))?,
            None => FileConfig::default(),
        };
        Self::from_file_and_env(file, env)
    }

    /// Reads and parses a YAML file.
    pub fn read_file(path: &std::path::Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse_file(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Parses YAML text into the raw file shape.
    pub fn parse_file(text: &str) -> Result<FileConfig, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    /// Merges a parsed file with env overrides and validates. `Ok(None)`: no LLM configured.
    pub fn from_file_and_env(file: FileConfig, env: &dyn Strings) -> Result<Option<Self>, ConfigError> {
        let mut p = Parser::default();
        let pick = |key: &str, file: Option<String>| env.get(key).or(file);
        let backend_kind = pick(ENV_BACKEND, file.backend.clone());
        let model = pick(ENV_MODEL, file.model.clone());
        let base_url = pick(ENV_BASE_URL, file.base_url.clone());
        let endpoint = pick(ENV_AZURE_ENDPOINT, file.endpoint.clone());
        let deployment = pick(ENV_AZURE_DEPLOYMENT, file.deployment.clone());
        let api_version = pick(ENV_AZURE_API_VERSION, file.api_version.clone());
        let key_from_named_env = file.api_key_env.as_deref().and_then(|k| env.get(k));
        let api_key = env
            .get(ENV_API_KEY)
            .map(Secret)
            .or(key_from_named_env.map(Secret))
            .or(file.api_key.clone());

        let kind = match backend_kind.as_deref().map(str::to_ascii_lowercase) {
            Some(k) => k,
            None if deployment.is_some() || endpoint.is_some() => "azure".to_owned(),
            None if model.is_some() => {
                if base_url.is_some() {
                    "other".to_owned()
                } else {
                    "openai".to_owned()
                }
            }
            None => return Ok(None),
        };
        let missing = |what: &str| ConfigError::Invalid(format!("backend {kind} needs {what}"));
        let backend = match kind.as_str() {
            "openai" => Backend::OpenAi {
                model: model.ok_or_else(|| missing("a model (model / ACV_LLM_MODEL)"))?,
                api_key: api_key
                    .or_else(|| env.get("OPENAI_API_KEY").map(Secret))
                    .ok_or_else(|| missing("an API key (ACV_LLM_API_KEY, api_key_env or OPENAI_API_KEY)"))?,
                base_url: base_url.unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned()),
            },
            "azure" => Backend::Azure {
                endpoint: endpoint
                    .ok_or_else(|| missing("an endpoint (endpoint / ACV_LLM_AZURE_ENDPOINT)"))?,
                deployment: deployment
                    .ok_or_else(|| missing("a deployment (deployment / ACV_LLM_AZURE_DEPLOYMENT)"))?,
                api_version: api_version.unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_owned()),
                api_key: api_key
                    .or_else(|| env.get("AZURE_OPENAI_API_KEY").map(Secret))
                    .ok_or_else(|| {
                        missing("an API key (ACV_LLM_API_KEY, api_key_env or AZURE_OPENAI_API_KEY)")
                    })?,
            },
            "other" | "ollama" | "vllm" | "llama-server" | "compatible" => Backend::Other {
                base_url: base_url.ok_or_else(|| missing("a base URL (base_url / ACV_LLM_BASE_URL)"))?,
                model: model.ok_or_else(|| missing("a model (model / ACV_LLM_MODEL)"))?,
                api_key,
            },
            other => {
                return Err(ConfigError::Invalid(format!(
                    "unknown backend {other:?}: expected openai, azure or other"
                )));
            }
        };
        let url = backend.chat_url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "URL {url:?} must start with http:// or https://"
            )));
        }

        let mut cfg = LlmConfig::new(backend);
        cfg.timeout = p.duration_or(env, ENV_TIMEOUT, file.timeout.unwrap_or(cfg.timeout));
        cfg.max_retries = p.parse_or(env, ENV_MAX_RETRIES, file.max_retries.unwrap_or(cfg.max_retries));
        cfg.backoff_initial = file.backoff_initial.unwrap_or(cfg.backoff_initial);
        cfg.backoff_max = file.backoff_max.unwrap_or(cfg.backoff_max);
        cfg.temperature = p.parse_or(env, ENV_TEMPERATURE, file.temperature.unwrap_or(cfg.temperature));
        cfg.max_tokens = file.max_tokens;
        cfg.json_mode = file.json_mode.unwrap_or(cfg.json_mode);
        cfg.cache_dir = env
            .get(ENV_CACHE_DIR)
            .map(PathBuf::from)
            .or(file.cache_dir)
            .unwrap_or(cfg.cache_dir);
        cfg.cache_seed = p
            .parse_with(env, ENV_CACHE_SEED, |s| {
                if s.eq_ignore_ascii_case("none") {
                    Ok(None)
                } else {
                    s.parse::<u64>()
                        .map(Some)
                        .map_err(|e| format!("not an integer seed or none: {e}"))
                }
            })
            .unwrap_or(file.cache_seed);
        let pricing = file.pricing.unwrap_or_default();
        cfg.pricing = Pricing {
            prompt_per_1k: p.parse_or(env, ENV_PRICE_PROMPT, pricing.prompt_per_1k),
            completion_per_1k: p.parse_or(env, ENV_PRICE_COMPLETION, pricing.completion_per_1k),
        };
        cfg.max_turns = p.parse_or(env, ENV_MAX_TURNS, file.max_turns.unwrap_or(cfg.max_turns));
        cfg.max_repairs = p.parse_or(env, ENV_MAX_REPAIRS, file.max_repairs.unwrap_or(cfg.max_repairs));
        p.finish()?;
        if cfg.max_turns == 0 {
            return Err(ConfigError::Invalid("max_turns must be at least 1".into()));
        }
        if cfg.timeout.is_zero() {
            return Err(ConfigError::Invalid("timeout must be positive".into()));
        }
        if !(0.0..=2.0).contains(&cfg.temperature) {
            return Err(ConfigError::Invalid(format!(
                "temperature {} is outside 0..=2",
                cfg.temperature
            )));
        }
        Ok(Some(cfg))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn nothing_configured_means_no_llm() {
        assert!(LlmConfig::from_env(&env(&[])).unwrap().is_none());
    }

    #[test]
    fn azure_from_file_with_key_from_named_env() {
        let file = LlmConfig::parse_file(
            "backend: azure\nendpoint: https://r.openai.azure.com/\ndeployment: gpt4\napi_version: 2024-02-01\n\
             api_key_env: MY_KEY\ntimeout: 5s\ncache_seed: 41\npricing: {prompt_per_1k: 0.01, completion_per_1k: 0.03}\n",
        )
        .unwrap();
        let cfg = LlmConfig::from_file_and_env(file, &env(&[("MY_KEY", "sk-azure")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            cfg.backend.chat_url(),
            "https://r.openai.azure.com/openai/deployments/gpt4/chat/completions?api-version=2024-02-01"
        );
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert_eq!(cfg.cache_seed, Some(41));
        assert_eq!(cfg.pricing.completion_per_1k, 0.03);
        let Backend::Azure { api_key, .. } = &cfg.backend else {
            panic!("not azure")
        };
        assert_eq!(api_key.expose(), "sk-azure");
    }

    #[test]
    fn env_overrides_file_and_secrets_are_redacted() {
        let file =
            LlmConfig::parse_file("backend: openai\nmodel: gpt-4o\napi_key: sk-file-secret\n").unwrap();
        let cfg = LlmConfig::from_file_and_env(
            file,
            &env(&[("ACV_LLM_MODEL", "gpt-4-turbo"), ("ACV_LLM_CACHE_SEED", "none")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(cfg.backend.model_id(), "gpt-4-turbo");
        assert_eq!(cfg.cache_seed, None);
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("sk-file-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn other_backend_key_optional() {
        let cfg = LlmConfig::from_env(&env(&[
            ("ACV_LLM_BACKEND", "other"),
            ("ACV_LLM_BASE_URL", "http://127.0.0.1:11434/v1/"),
            ("ACV_LLM_MODEL", "llama3.1:8b"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            cfg.backend.chat_url(),
            "http://127.0.0.1:11434/v1/chat/completions"
        );
        assert!(matches!(cfg.backend, Backend::Other { api_key: None, .. }));
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../examples/llm.yaml");
        let file = LlmConfig::parse_file(text).unwrap();
        let cfg = LlmConfig::from_file_and_env(file, &env(&[("OPENAI_API_KEY", "sk-x")]))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.backend.model_id(), "gpt-4o");
        assert_eq!(cfg.cache_seed, Some(42));
        assert_eq!(cfg.backoff_initial, Duration::from_millis(500));
        assert_eq!(cfg.max_repairs, 2);
    }

    #[test]
    fn bad_input_gives_clear_errors() {
        let e = LlmConfig::from_env(&env(&[("ACV_LLM_BACKEND", "azure")])).unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
        let e = LlmConfig::from_env(&env(&[
            ("ACV_LLM_BACKEND", "other"),
            ("ACV_LLM_BASE_URL", "localhost:11434/v1"),
            ("ACV_LLM_MODEL", "m"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("must start with http"), "{e}");
        let e =
            LlmConfig::from_env(&env(&[("ACV_LLM_BACKEND", "bard"), ("ACV_LLM_MODEL", "x")])).unwrap_err();
        assert!(e.to_string().contains("unknown backend"), "{e}");
        let e = LlmConfig::from_env(&env(&[
            ("ACV_LLM_MODEL", "m"),
            ("ACV_LLM_API_KEY", "k"),
            ("ACV_LLM_TIMEOUT", "soon"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("ACV_LLM_TIMEOUT"), "{e}");
        assert!(
            LlmConfig::parse_file("backend: openai\nmodle: x\n").is_err(),
            "unknown keys are rejected"
        );
        let e = LlmConfig::from_env(&env(&[("ACV_LLM_CONFIG", "/nonexistent/llm.yaml")])).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
    }
}
