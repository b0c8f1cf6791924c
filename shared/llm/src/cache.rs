//! On-disk response cache, like the paper's `cache_seed`: the same (model, messages, parameters, seed) gives the same
//! answer without a network call; another seed gives a fresh call.
//!
//! One pretty-printed JSON file per entry, `<dir>/<sha256>.json`, holding the request and the answer so a person
//! can read what the model was asked and what it said. Writes go to a temporary file renamed into place, so readers
//! never see half an entry.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::Usage;

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// A request's cache key: SHA-256 over the model, the exact request body and the seed.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheKey {
    hex: String,
    seed: u64,
}

/// What is stored per answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResponse {
    /// The assistant's text.
    pub content: String,
    /// Tokens of the original call.
    pub usage: Usage,
}

/// Why the cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// File system error.
    #[error("cache I/O on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The entry is not valid JSON of the expected shape.
    #[error("corrupt cache entry {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

/// The file layout.
#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    model: String,
    seed: u64,
    created_at_ms: u64,
    request: serde_json::Value,
    response: CachedResponse,
}

// === impl CacheKey ===

impl CacheKey {
    /// Hashes the model, the request body (messages and parameters) and the seed.
    pub fn new(model: &str, request: &serde_json::Value, seed: u64) -> Self {
        let mut h = Sha256::new();
        // Length-prefix each part so that no two different triples hash the same bytes.
        for part in [
            model.as_bytes(),
            request.to_string().as_bytes(),
            &seed.to_le_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Self { hex, seed }
    }

    /// Hex digest (the file name without `.json`).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.hex)
    }
}

// === impl Cache ===

impl Cache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex))
    }

    /// The stored answer for `key`, if any.
    pub fn get(&self, key: &CacheKey) -> Result<Option<CachedResponse>, CacheError> {
        let path = self.path(key);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { path, source }),
        };
        let entry: Entry =
            serde_json::from_str(&text).map_err(|source| CacheError::Corrupt { path, source })?;
        Ok(Some(entry.response))
    }

    /// Stores an answer.
    pub fn put(
        &self,
        key: &CacheKey,
        model: &str,
        request: &serde_json::Value,
        response: &CachedResponse,
    ) -> Result<(), CacheError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let entry = Entry {
            key: key.hex.clone(),
            model: model.to_owned(),
            seed: key.seed,
            created_at_ms: acv_core::now_ms(),
            request: request.clone(),
            response: response.clone(),
        };
        let path = self.path(key);
        let text = serde_json::to_string_pretty(&entry).map_err(|source| CacheError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let tmp = self.dir.join(format!(".{}.{}.tmp", key.hex, std::process::id()));
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_every_part() {
        let req = serde_json::json!({"messages":[{"role":"user","content":"hi"}],"temperature":0.0});
        let k = CacheKey::new("m", &req, 1);
        assert_eq!(k, CacheKey::new("m", &req, 1));
        assert_ne!(k, CacheKey::new("m", &req, 2));
        assert_ne!(k, CacheKey::new("n", &req, 1));
        let other = serde_json::json!({"messages":[{"role":"user","content":"hi"}],"temperature":0.5});
        assert_ne!(k, CacheKey::new("m", &other, 1));
    }

    #[test]
    fn round_trip_and_corrupt_entries() {
        let dir = std::env::temp_dir().join(format!("acv-llm-cache-{}", uuid::Uuid::new_v4()));
        let cache = Cache::new(&dir);
        let req = serde_json::json!({"messages":[]});
        let key = CacheKey::new("m", &req, 7);
        assert!(cache.get(&key).unwrap().is_none());
        let resp = CachedResponse {
            content: "{\"a\":1}".into(),
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
            },
        };
        cache.put(&key, "m", &req, &resp).unwrap();
        assert_eq!(cache.get(&key).unwrap(), Some(resp));
        let text = std::fs::read_to_string(dir.join(format!("{}.json", key.hex()))).unwrap();
        assert!(
            text.contains("\n  \"model\": \"m\""),
            "pretty JSON for people: {text}"
        );
        std::fs::write(dir.join(format!("{}.json", key.hex())), "garbage").unwrap();
        assert!(matches!(cache.get(&key), Err(CacheError::Corrupt { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
