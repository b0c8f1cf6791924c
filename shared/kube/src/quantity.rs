//! Kubernetes resource quantities (`500m`, `1`, `0.5`, `512Mi`, `1Gi`, `1e3`, `128974848`) parsed exactly into
//! millicores and MiB, and formatted back.
//!
//! Parsing is exact (integer arithmetic, no floats) so that `0.1` CPU is 100 millicores, not 101. Like Kubernetes,
//! a value that is not a whole number of the target unit is rounded up.

/// Why a quantity string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string is empty.
    #[error("empty quantity")]
    Empty,
    /// The numeric part is not a decimal number.
    #[error("quantity {0:?} does not start with a decimal number")]
    BadNumber(String),
    /// The suffix is none of `n u m k M G T P E Ki Mi Gi Ti Pi Ei` or a decimal exponent.
    #[error("quantity {quantity:?} has unknown suffix {suffix:?}")]
    UnknownSuffix {
        /// The whole quantity.
        quantity: String,
        /// The suffix that was not understood.
        suffix: String,
    },
    /// The quantity is negative (limits never are).
    #[error("quantity {0:?} is negative")]
    Negative(String),
    /// The quantity does not fit the target unit's integer range.
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

/// A number `mantissa / 10^scale * 10^exp10 * 2^exp2`.
struct Parsed {
    mantissa: i128,
    scale: u32,
    exp10: i32,
    exp2: u32,
}

const MAX_DIGITS: usize = 24;

/// Parses a CPU quantity into millicores, rounding up (`500m` → 500, `1` → 1000, `0.25` → 250, `2k` → 2 000 000).
pub fn cpu_millis(quantity: &str) -> Result<u32, QuantityError> {
    to_unit(quantity, 3, 0)
}

/// Parses a memory quantity into MiB, rounding up (`512Mi` → 512, `1Gi` → 1024, `1G` → 954, `1048576` → 1).
pub fn memory_mib(quantity: &str) -> Result<u32, QuantityError> {
    to_unit(quantity, 0, 20)
}

/// Formats millicores the way `kubectl` shows them (`500m`, or `2` for whole cores).
pub fn format_cpu(millis: u32) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Formats MiB as a binary quantity (`512Mi`, or `2Gi` for whole GiB).
pub fn format_memory(mib: u32) -> String {
    if mib.is_multiple_of(1024) && mib > 0 {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

/// `quantity * 10^mul10 / 2^div2`, rounded up, as a `u32`.
fn to_unit(quantity: &str, mul10: i32, div2: u32) -> Result<u32, QuantityError> {
    let p = parse(quantity)?;
    let too_large = || QuantityError::TooLarge(quantity.to_owned());
    // value = mantissa * 10^(exp10 + mul10 - scale) * 2^(exp2 - div2), as num / den.
    let e10 = p.exp10 + mul10 - i32::try_from(p.scale).map_err(|_| too_large())?;
    let mut num = p.mantissa;
    let mut den: i128 = 1;
    let pow10 = |e: u32| 10_i128.checked_pow(e);
    if e10 >= 0 {
        num = num
            .checked_mul(pow10(e10.unsigned_abs()).ok_or_else(too_large)?)
            .ok_or_else(too_large)?;
    } else {
        // A very small quantity (`1n` of memory) rounds up to 1 unless it is zero.
        den = pow10(e10.unsigned_abs()).unwrap_or(i128::MAX);
    }
    if p.exp2 >= div2 {
        num = num
            .checked_mul(1_i128.checked_shl(p.exp2 - div2).ok_or_else(too_large)?)
            .ok_or_else(too_large)?;
    } else {
        den = den.checked_mul(1_i128 << (div2 - p.exp2)).unwrap_or(i128::MAX);
    }
    let whole = num / den + i128::from(num % den != 0);
    u32::try_from(whole).map_err(|_| too_large())
}

fn parse(quantity: &str) -> Result<Parsed, QuantityError> {
    let q = quantity.trim();
    if q.is_empty() {
        return Err(QuantityError::Empty);
    }
    let bad_number = || QuantityError::BadNumber(quantity.to_owned());
    let (negative, rest) = match q.as_bytes()[0] {
        b'-' => (true, &q[1..]),
        b'+' => (false, &q[1..]),
        _ => (false, q),
    };
    let split = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') || int.len() + frac.len() > MAX_DIGITS {
        return Err(bad_number());
    }
    let mut mantissa: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative(quantity.to_owned()));
    }
    let scale = u32::try_from(frac.len()).map_err(|_| bad_number())?;
    let (exp10, exp2) = suffix_exponents(suffix).ok_or_else(|| QuantityError::UnknownSuffix {
        quantity: quantity.to_owned(),
        suffix: suffix.to_owned(),
    })?;
    Ok(Parsed {
        mantissa,
        scale,
        exp10,
        exp2,
    })
}

/// The decimal and binary exponents of a suffix (`""`, `m`, `Mi`, `e3`, …).
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    let decimal = match suffix {
        "" => Some(0),
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(e) = decimal {
        return Some((e, 0));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(e) = binary {
        return Some((0, e));
    }
    // Decimal exponent form: `1e3`, `5E-3`, `2e+6`.
    let exp = suffix.strip_prefix('e').or_else(|| suffix.strip_prefix('E'))?;
    let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    exp.parse::<i32>().ok().map(|e| (e, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        for (q, want) in [
            ("500m", 500),
            ("1", 1000),
            ("0.1", 100),
            ("0.25", 250),
            ("2", 2000),
            ("1.5", 1500),
            ("250000u", 250),
            ("1n", 1),
            ("0", 0),
            ("+2", 2000),
            ("1e3", 1_000_000),
            ("100e-3", 100),
            ("2k", 2_000_000),
            (" 750m ", 750),
            (".5", 500),
        ] {
            assert_eq!(cpu_millis(q), Ok(want), "{q}");
        }
    }

    #[test]
    fn memory() {
        for (q, want) in [
            ("512Mi", 512),
            ("1Gi", 1024),
            ("1G", 954),
            ("128974848", 123),
            ("129e6", 124),
            ("123Mi", 123),
            ("1048576", 1),
            ("1Ki", 1),
            ("0.5Gi", 512),
            ("1Ti", 1_048_576),
            ("64Gi", 65_536),
        ] {
            assert_eq!(memory_mib(q), Ok(want), "{q}");
        }
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(cpu_millis(""), Err(QuantityError::Empty));
        assert!(matches!(cpu_millis("abc"), Err(QuantityError::BadNumber(_))));
        assert!(matches!(cpu_millis("1.2.3"), Err(QuantityError::BadNumber(_))));
        assert!(matches!(cpu_millis("-1"), Err(QuantityError::Negative(_))));
        assert!(matches!(
            memory_mib("12Xi"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            memory_mib("1 Gi"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            memory_mib("5MiB"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            cpu_millis("1e"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
        assert!(matches!(cpu_millis("5E"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(memory_mib("1Ei"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(
            cpu_millis("99999999999999999999999999"),
            Err(QuantityError::BadNumber(_))
        ));
        assert!(matches!(cpu_millis("1e99"), Err(QuantityError::TooLarge(_))));
    }

    #[test]
    fn formats_round_trip() {
        for m in [1, 100, 500, 1000, 1500, 64_000] {
            assert_eq!(cpu_millis(&format_cpu(m)), Ok(m));
        }
        for m in [1, 256, 512, 1024, 1536, 2048, 65_536] {
            assert_eq!(memory_mib(&format_memory(m)), Ok(m));
        }
        assert_eq!(format_cpu(500), "500m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_memory(2048), "2Gi");
        assert_eq!(format_memory(300), "300Mi");
    }
}
