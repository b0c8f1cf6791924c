//! Component names: the unit every sidecar, inbox and host API call is scoped to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid component name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("component name is empty")]
    Empty,
    /// The name is longer than a Kubernetes DNS label allows.
    #[error("component name {0:?} is longer than 63 characters")]
    TooLong(String),
    /// The name has a character outside `[a-z0-9-]` or starts/ends with `-`.
    #[error(
        "component name {0:?} must be lowercase letters, digits and '-', not starting or ending with '-'"
    )]
    BadCharacter(String),
}

/// A validated component (microservice) name, an RFC 1123 DNS label like `catalogue` or `front-end`.
///
/// The same rule as Kubernetes Deployment names, so a name is also safe in queue names, NATS subjects and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ComponentName(String);

// === impl ComponentName ===

/// The JSON schema of a component name (for the Goal CRD): a string with the DNS-label rule of [`ComponentName::new`].
#[cfg(feature = "schema")]
impl schemars::JsonSchema for ComponentName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ComponentName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A component (Deployment) name: an RFC 1123 DNS label.",
            "minLength": 1,
            "maxLength": 63,
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl ComponentName {
    /// Validates and wraps a name.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > 63 {
            return Err(NameError::TooLong(name));
        }
        let ok_chars = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_chars || name.starts_with('-') || name.ends_with('-') {
            return Err(NameError::BadCharacter(name));
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ComponentName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl std::str::FromStr for ComponentName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl From<ComponentName> for String {
    fn from(value: ComponentName) -> Self {
        value.0
    }
}

impl fmt::Display for ComponentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ComponentName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["catalogue", "front-end", "a", "svc-2"] {
            assert_eq!(ComponentName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(ComponentName::new(""), Err(NameError::Empty));
        assert!(matches!(
            ComponentName::new("a".repeat(64)),
            Err(NameError::TooLong(_))
        ));
        for bad in ["Catalogue", "-x", "x-", "a.b", "a b", "a/b", "é"] {
            assert!(
                matches!(ComponentName::new(bad), Err(NameError::BadCharacter(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn deserialising_validates() {
        let err = serde_json::from_str::<ComponentName>("\"Bad Name\"").unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
    }
}
