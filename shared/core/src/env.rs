//! Env configuration read through a [`Strings`] source so tests pass a map instead of mutating the process env.
//!
//! Every key is parsed; every bad key is logged and collected, and [`EnvError`] lists them all at once.

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

// === impl ProcessEnv ===

impl Strings for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
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
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1d").is_err());
    }
}
