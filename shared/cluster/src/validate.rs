//! Input checks shared by every backend, so that a bad call fails the same way on Kubernetes and locally.

use crate::ClusterError;

/// Largest CPU limit accepted, in millicores (64 cores).
pub const MAX_CPU_MILLIS: i64 = 64_000;
/// Largest memory limit accepted, in MiB (64 GiB).
pub const MAX_MEMORY_MIB: i64 = 65_536;
/// Largest metrics window accepted, in seconds (one day).
pub const MAX_WINDOW_SECS: f64 = 86_400.0;
/// Largest log tail accepted.
pub const MAX_TAIL: i64 = 10_000;

/// A replica count in `0..=max`.
pub fn replicas(requested: i64, max: u32) -> Result<u32, ClusterError> {
    match u32::try_from(requested) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ClusterError::InvalidReplicas { requested, max }),
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 256 bytes; the value has no NUL byte.
pub fn env_var(key: &str, value: &str) -> Result<(), ClusterError> {
    let mut bytes = key.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') || key.len() > 256 {
        return Err(ClusterError::invalid(
            "env key",
            format!("{key:?} must match [A-Za-z_][A-Za-z0-9_]* and be at most 256 bytes"),
        ));
    }
    if value.contains('\0') || value.len() > 32 * 1024 {
        return Err(ClusterError::invalid(
            "env value",
            "must have no NUL byte and be at most 32 KiB",
        ));
    }
    Ok(())
}

/// Resource limits: CPU in `1..=64000` millicores, memory in `1..=65536` MiB.
pub fn resources(cpu_millis: i64, memory_mib: i64) -> Result<acv_protocol::ResourceLimits, ClusterError> {
    if !(1..=MAX_CPU_MILLIS).contains(&cpu_millis) {
        return Err(ClusterError::invalid(
            "cpu_millis",
            format!("{cpu_millis} is outside 1..={MAX_CPU_MILLIS}"),
        ));
    }
    if !(1..=MAX_MEMORY_MIB).contains(&memory_mib) {
        return Err(ClusterError::invalid(
            "memory_mib",
            format!("{memory_mib} is outside 1..={MAX_MEMORY_MIB}"),
        ));
    }
    // Both ranges fit in u32, checked just above.
    Ok(acv_protocol::ResourceLimits {
        cpu_millis: u32::try_from(cpu_millis).unwrap_or(u32::MAX),
        memory_mib: u32::try_from(memory_mib).unwrap_or(u32::MAX),
    })
}

/// A metrics window: finite, above zero, at most a day.
pub fn window(window_secs: f64) -> Result<f64, ClusterError> {
    if window_secs.is_finite() && window_secs > 0.0 && window_secs <= MAX_WINDOW_SECS {
        Ok(window_secs)
    } else {
        Err(ClusterError::invalid(
            "window_secs",
            format!("{window_secs} is not in (0, {MAX_WINDOW_SECS}]"),
        ))
    }
}

/// A log tail: `0..=10000` lines.
pub fn tail(tail: i64) -> Result<usize, ClusterError> {
    if (0..=MAX_TAIL).contains(&tail) {
        Ok(usize::try_from(tail).unwrap_or(0))
    } else {
        Err(ClusterError::invalid(
            "tail",
            format!("{tail} is outside 0..={MAX_TAIL}"),
        ))
    }
}

/// An image or version string: non-empty, printable, at most 256 bytes.
pub fn image(image: &str) -> Result<(), ClusterError> {
    if image.is_empty() || image.len() > 256 || image.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ClusterError::invalid(
            "image",
            format!("{image:?} must be 1-256 printable characters, no spaces"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_bounds() {
        assert_eq!(replicas(0, 10).unwrap(), 0);
        assert_eq!(replicas(10, 10).unwrap(), 10);
        assert!(matches!(
            replicas(-1, 10),
            Err(ClusterError::InvalidReplicas {
                requested: -1,
                max: 10
            })
        ));
        assert!(matches!(
            replicas(11, 10),
            Err(ClusterError::InvalidReplicas { .. })
        ));
        assert!(matches!(
            replicas(i64::MAX, 10),
            Err(ClusterError::InvalidReplicas { .. })
        ));
    }

    #[test]
    fn env_keys() {
        env_var("logger_flag", "true").unwrap();
        env_var("_X1", "").unwrap();
        for bad in ["", "1A", "A-B", "A B", "É"] {
            assert!(env_var(bad, "v").is_err(), "{bad}");
        }
        assert!(env_var("A", "a\0b").is_err());
    }

    #[test]
    fn resource_bounds() {
        let l = resources(500, 256).unwrap();
        assert_eq!((l.cpu_millis, l.memory_mib), (500, 256));
        assert!(resources(0, 256).is_err());
        assert!(resources(500, -1).is_err());
        assert!(resources(MAX_CPU_MILLIS + 1, 1).is_err());
    }

    #[test]
    fn window_and_tail() {
        assert!(window(60.0).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(window(bad).is_err(), "{bad}");
        }
        assert_eq!(tail(5).unwrap(), 5);
        assert!(tail(-1).is_err());
        assert!(image("0.3.5").is_ok());
        assert!(image("").is_err() && image("a b").is_err());
    }
}
