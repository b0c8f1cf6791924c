//! Times stored as ms since the Unix epoch, written as RFC 3339 in the API (`2026-11-27T21:03:31.123Z`).

use serde::{Deserialize, Deserializer, Serializer};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// `ms` as RFC 3339 in UTC (millisecond precision).
pub fn format(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// An RFC 3339 time as ms since the Unix epoch (times before 1970 are an error).
pub fn parse(s: &str) -> Result<u64, String> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("{s:?} is before 1970"))
}

/// Serde for a `u64` of ms.
pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*ms))
}

/// Serde for a `u64` of ms.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// Serde for an `Option<u64>` of ms.
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises `None` as `null`.
    pub fn serialize<S: Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&super::format(*ms)),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` as `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => super::parse(&s).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_milliseconds() {
        let ms = 1_795_000_000_123;
        let s = super::format(ms);
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(super::parse(&s).unwrap(), ms);
        assert!(super::parse("yesterday").is_err());
    }
}
