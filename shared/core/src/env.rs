//! Env configuration read through a [`Strings`] source so tests pass a map instead of mutating the process env.
//!
//! Every key is parsed; every bad key is logged and collected, and [`EnvError`] lists them all at once.
//!
//! Secrets (passwords, API keys, URLs with credentials) can also come from files, the way Kubernetes Secrets are
//! mounted: when `KEY` is unset, [`ProcessEnv`] reads the file named by `KEY_FILE` (see [`FILE_SUFFIX`]), and
//! [`secret`] does the same for any [`Strings`] source and reports an unreadable file as a bad key. Secret values
//! travel as [`Secret`], whose `Debug`/`Display` never show the value; [`redact_url`] hides a URL's password.

use std::{collections::HashMap, str::FromStr, time::Duration};

/// A source of configuration strings.
pub trait Strings {
    /// The value of `key`, if set. Empty values count as unset.
    fn get(&self, key: &str) -> Option<String>;
}

/// Reads the process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

/// One bad configuration key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}={value:?}: {reason}")]
pub struct BadKey {
    /// The key.
    pub key: String,
    /// The value found.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// One or more keys had bad values.
    #[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<BadKey>),
    /// A required key is missing.
    #[error("missing required configuration {0}")]
    Missing(String),
}

/// Collects parse errors over many keys so that all of them are reported together.
#[derive(Debug, Default)]
pub struct Parser {
    bad: Vec<BadKey>,
}

/// The suffix of the key naming a file that holds a key's value: `ACV_LLM_API_KEY_FILE=/run/secrets/llm-key`.
pub const FILE_SUFFIX: &str = "_FILE";

/// A secret value. `Debug` and `Display` print `***`, so it cannot end up in a log line by accident; call
/// [`Secret::expose`] where the value is really needed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

// === impl ProcessEnv ===

impl Strings for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        if let Some(v) = std::env::var(key).ok().filter(|v| !v.is_empty()) {
            return Some(v);
        }
        let path = std::env::var(format!("{key}{FILE_SUFFIX}"))
            .ok()
            .filter(|p| !p.is_empty())?;
        match read_secret_file(&path) {
            Ok(v) => Some(v).filter(|v| !v.is_empty()),
            Err(reason) => {
                // The path and the I/O error only: the content is never logged.
                tracing::error!(key, %path, %reason, "Could not read the configuration file for a key; it counts as unset.");
                None
            }
        }
    }
}

fn read_secret_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Reads a secret: the value of `key`, or else the content of the file named by `key_FILE` (one trailing newline
/// trimmed). An unreadable file is a [`BadKey`] naming the path, never the content.
pub fn secret(env: &dyn Strings, key: &str) -> Result<Option<Secret>, BadKey> {
    if let Some(v) = env.get(key) {
        return Ok(Some(Secret(v)));
    }
    let file_key = format!("{key}{FILE_SUFFIX}");
    let Some(path) = env.get(&file_key) else {
        return Ok(None);
    };
    match read_secret_file(&path) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(Secret(v))),
        Err(reason) => Err(BadKey {
            key: file_key,
            value: path,
            reason,
        }),
    }
}

/// `url` with the password part of its userinfo replaced by `***` (`amqp://u:***@host/`; a userinfo without `:`,
/// which may be a token, is hidden whole), for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..scheme_end], &rest[..colon], &rest[at..]),
        // A lone userinfo may be a token (`nats://TOKEN@host`): hide all of it.
        None => format!("{}***{}", &url[..scheme_end], &rest[at..]),
    }
}

// === impl Secret ===

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Strings for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).filter(|v| !v.is_empty()).cloned()
    }
}

impl Strings for HashMap<&str, &str> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key)
            .filter(|v| !v.is_empty())
            .map(|v| (*v).to_owned())
    }
}

// === impl Parser ===

impl Parser {
    /// Parses `key` with `FromStr`, or returns `default` when unset. A bad value is recorded and `default` returned.
    pub fn parse_or<T>(&mut self, env: &dyn Strings, key: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.parse_with(env, key, |s| s.parse::<T>().map_err(|e| e.to_string()))
            .unwrap_or(default)
    }

    /// Parses `key` with `f` when set.
    pub fn parse_with<T>(
        &mut self,
        env: &dyn Strings,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = env.get(key)?;
        match f(value.trim()) {
            Ok(v) => Some(v),
            Err(reason) => {
                tracing::error!(key, value = %value, %reason, "Invalid configuration value.");
                self.bad.push(BadKey {
                    key: key.to_owned(),
                    value,
                    reason,
                });
                None
            }
        }
    }

    /// Parses a duration like `500ms`, `5s`, `2m` or `1h` when set, otherwise `default`.
    pub fn duration_or(&mut self, env: &dyn Strings, key: &str, default: Duration) -> Duration {
        self.parse_with(env, key, parse_duration).unwrap_or(default)
    }

    /// Finishes: `Ok(())` if every key parsed.
    pub fn finish(self) -> Result<(), EnvError> {
        if self.bad.is_empty() {
            Ok(())
        } else {
            Err(EnvError::Invalid(self.bad))
        }
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h` (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use e.g. 500ms, 5s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "unknown duration unit {unit:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_collects_all_errors() {
        let env: HashMap<&str, &str> = [
            ("A", "12"),
            ("B", "x"),
            ("C", "5s"),
            ("D", "3 parsecs"),
            ("E", ""),
        ]
        .into_iter()
        .collect();
        let mut p = Parser::default();
        assert_eq!(p.parse_or::<u32>(&env, "A", 1), 12);
        assert_eq!(p.parse_or::<u32>(&env, "B", 1), 1);
        assert_eq!(p.duration_or(&env, "C", Duration::ZERO), Duration::from_secs(5));
        assert_eq!(p.duration_or(&env, "D", Duration::ZERO), Duration::ZERO);
        assert_eq!(p.parse_or::<u32>(&env, "E", 9), 9, "empty counts as unset");
        let Err(EnvError::Invalid(bad)) = p.finish() else {
            panic!("expected errors")
        };
        assert_eq!(bad.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(), ["B", "D"]);
    }

    #[test]
    fn secrets_come_from_env_or_file_and_never_print() {
        let dir = std::env::temp_dir().join(format!("acv-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cr3t-from-file\n").unwrap();
        let path = file.to_string_lossy().into_owned();
        let env: HashMap<String, String> = [
            ("A".to_owned(), "s3cr3t-inline".to_owned()),
            ("B_FILE".to_owned(), path),
            ("C_FILE".to_owned(), "/nonexistent/acv/secret".to_owned()),
        ]
        .into_iter()
        .collect();
        let a = secret(&env, "A").unwrap().unwrap();
        assert_eq!(a.expose(), "s3cr3t-inline");
        let b = secret(&env, "B").unwrap().unwrap();
        assert_eq!(b.expose(), "s3cr3t-from-file", "trailing newline trimmed");
        assert!(secret(&env, "D").unwrap().is_none());
        let bad = secret(&env, "C").unwrap_err();
        assert_eq!(bad.key, "C_FILE");
        assert!(bad.reason.contains("/nonexistent/acv/secret"), "{bad}");
        let shown = format!("{a:?} {a} {b:?} {b}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("amqp://u:pw@127.0.0.1:5672/%2f"),
            "amqp://u:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("nats://tok@h:1"), "nats://***@h:1");
        assert_eq!(redact_url("amqps://a:b@c@h/x"), "amqps://a:***@h/x");
        assert_eq!(redact_url("no scheme"), "no scheme");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1d").is_err());
    }
}
