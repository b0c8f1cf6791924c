//! Resource-limit quantities as a person writes them: CPU in millicores (`300m`, `500 millicores`) or cores (`0.5`,
//! `2 cores`, `1 cpu`); memory in Kubernetes units (`256Mi`, `1Gi`, `512Ki`; `M`/`MB`/`G`/`GB` are decimal, as in
//! Kubernetes) — and relative changes ("double", "by 50%", "1.5x").

use std::sync::LazyLock;

use regex::Regex;

use super::{caps, m, re};

/// A new limit: an absolute value or a factor of the current one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitChange {
    /// Set to this value (millicores for CPU, MiB for memory).
    To(u32),
    /// Multiply the current value.
    Times(f64),
}

/// Which limits a task changes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// CPU, in millicores.
    pub cpu_millis: Option<LimitChange>,
    /// Memory, in MiB.
    pub memory_mib: Option<LimitChange>,
}

re!(CPU_WORD, r"\b(cpu|cpus|processor|cores?|millicores?)\b");
re!(MEM_WORD, r"\b(memory|mem|ram)\b");
re!(LIMIT_WORD, r"\b(limits?|resources?|allocation|quota|cap)\b");
re!(
    USAGE,
    r"\b(usage|utili[sz]ation|consumption|consumes?|using|uses)\b"
);
re!(
    COMPARISON,
    r"\b(below|under|less than|lower than|at most|no more than|beneath|within)\b|<"
);
re!(
    QUANTITY,
    r"(\d+(?:\.\d+)?)\s*(millicores?|millicpus?|milli-cores?|cores?|vcpus?|cpus?|mib|gib|kib|tib|mi|gi|ki|ti|mb|gb|kb|megabytes?|gigabytes?|kilobytes?|m|g|k)?\b"
);
re!(
    SET_VERB,
    r"\b(set|change|raise|increase|bump|lower|reduce|decrease|update|adjust|make|double|halve|triple|cut|give|cap|limit|allow|allocate|assign|put)\b"
);
re!(CLAUSE_SPLIT, r"\band\b|,|;|\bplus\b");
re!(DOUBLE, r"\b(double|twice|2x)\b");
re!(TRIPLE, r"\b(triple|3x)\b");
re!(HALVE, r"\b(halve|half)\b");
re!(BY_PERCENT, r"\bby\s+(\d+(?:\.\d+)?)\s*(?:%|percent)");
re!(TIMES, r"\b(\d+(?:\.\d+)?)\s*(?:x|times)\b");
re!(DOWN, r"\b(lower|reduce|decrease|cut|shrink|drop|less)\b");

#[derive(Debug, Clone, Copy, PartialEq)]
enum Resource {
    Cpu,
    Memory,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Converts one quantity; `Err` says what is wrong with it for a person.
fn convert(value: f64, unit: &str, res: Resource) -> Result<u32, String> {
    let raw = match (res, unit) {
        (
            Resource::Cpu,
            "m" | "millicore" | "millicores" | "millicpu" | "millicpus" | "milli-core" | "milli-cores",
        ) => value,
        (Resource::Cpu, "core" | "cores" | "cpu" | "cpus" | "vcpu" | "vcpus") => value * 1000.0,
        (Resource::Cpu, "") if value < 100.0 => value * 1000.0,
        (Resource::Cpu, "") => {
            return Err(format!(
                "a CPU limit of {value} needs a unit: write {value}m for millicores or a number of cores"
            ));
        }
        (Resource::Memory, "mi" | "mib") => value,
        (Resource::Memory, "gi" | "gib") => value * 1024.0,
        (Resource::Memory, "ti" | "tib") => value * 1024.0 * 1024.0,
        (Resource::Memory, "ki" | "kib") => value / 1024.0,
        (Resource::Memory, "k" | "kb" | "kilobyte" | "kilobytes") => value * 1e3 / MIB,
        (Resource::Memory, "m" | "mb" | "megabyte" | "megabytes") => value * 1e6 / MIB,
        (Resource::Memory, "g" | "gb" | "gigabyte" | "gigabytes") => value * 1e9 / MIB,
        (Resource::Memory, "") => {
            return Err(format!(
                "a memory limit of {value} needs a unit: write {value}Mi or a number of Gi"
            ));
        }
        (r, u) => return Err(format!("{u:?} is not a unit for {r:?} limits")),
    };
    let rounded = raw.round();
    if !(1.0..=f64::from(u32::MAX)).contains(&rounded) {
        return Err(match res {
            Resource::Cpu => format!("a CPU limit of {raw} millicores is out of range"),
            Resource::Memory => format!("a memory limit of {raw:.3} MiB is out of range"),
        });
    }
    Ok(rounded as u32)
}

fn unit_resource(unit: &str) -> Option<Resource> {
    match unit {
        "" | "m" => None,
        u if u.starts_with("milli") || u.starts_with("core") || u.contains("cpu") => Some(Resource::Cpu),
        _ => Some(Resource::Memory),
    }
}

/// A relative change written in `clause`, if any.
fn factor(clause: &str) -> Option<f64> {
    if m(&DOUBLE, clause) {
        return Some(2.0);
    }
    if m(&TRIPLE, clause) {
        return Some(3.0);
    }
    if m(&HALVE, clause) {
        return Some(0.5);
    }
    if let Some(c) = caps(&BY_PERCENT, clause)
        && let Ok(p) = c[1].parse::<f64>()
    {
        return Some(if m(&DOWN, clause) {
            1.0 - p / 100.0
        } else {
            1.0 + p / 100.0
        });
    }
    caps(&TIMES, clause).and_then(|c| c[1].parse::<f64>().ok())
}

/// A resource-limit task in normalised lowercase text: `Ok(None)` when the text is not about limits, `Err` with the
/// reason when it is but a value cannot be used.
pub(super) fn parse_limits(n: &str) -> Result<Option<Limits>, String> {
    let names_cpu = m(&CPU_WORD, n);
    let names_mem = m(&MEM_WORD, n);
    let quantities: Vec<(f64, String, usize)> = QUANTITY
        .as_ref()
        .map(|r| {
            r.captures_iter(n)
                .filter_map(|c| {
                    let whole = c.get(0)?;
                    // A percentage or a duration is not a quantity of a resource.
                    if n[whole.end()..].trim_start().starts_with(['%', '/']) {
                        return None;
                    }
                    let v = c[1].parse::<f64>().ok()?;
                    let unit = c.get(2).map_or("", |u| u.as_str()).to_owned();
                    Some((v, unit, whole.start()))
                })
                .collect()
        })
        .unwrap_or_default();
    let unit_named = quantities.iter().any(|(_, u, _)| unit_resource(u).is_some());
    let about_limits = (names_cpu || names_mem) && m(&LIMIT_WORD, n) || unit_named;
    if !about_limits {
        return Ok(None);
    }
    if m(&COMPARISON, n) && (m(&USAGE, n) || !m(&LIMIT_WORD, n)) {
        return Err(
            "CPU and memory objectives are in % of the limit (\"keep memory below 70%\"), not in absolute units"
                .into(),
        );
    }
    let mut out = Limits::default();
    let mut bounds = vec![0];
    if let Some(r) = CLAUSE_SPLIT.as_ref() {
        for sep in r.find_iter(n) {
            bounds.push(sep.start());
            bounds.push(sep.end());
        }
    }
    bounds.push(n.len());
    for range in bounds.chunks(2).map(|b| b[0]..b[1]) {
        let clause = &n[range.clone()];
        let clause_cpu = m(&CPU_WORD, clause);
        let clause_mem = m(&MEM_WORD, clause);
        let qs: Vec<&(f64, String, usize)> = quantities
            .iter()
            .filter(|(_, _, at)| range.contains(at))
            .collect();
        for (v, unit, _) in qs {
            let res = match unit_resource(unit) {
                Some(r) => r,
                // `m`: millicores wherever CPU is mentioned (a memory "m" would be milli-bytes in Kubernetes).
                None if unit == "m" && names_cpu => Resource::Cpu,
                None if clause_mem && !clause_cpu => Resource::Memory,
                None if clause_cpu => Resource::Cpu,
                None if names_mem && !names_cpu => Resource::Memory,
                None if names_cpu && !names_mem => Resource::Cpu,
                None => continue,
            };
            let value = convert(*v, unit, res)?;
            match res {
                Resource::Cpu => out.cpu_millis = Some(LimitChange::To(value)),
                Resource::Memory => out.memory_mib = Some(LimitChange::To(value)),
            }
        }
        if let Some(f) = factor(clause) {
            if !(f.is_finite() && f > 0.0) {
                return Err(format!("a factor of {f} cannot be a limit"));
            }
            if clause_cpu && out.cpu_millis.is_none() {
                out.cpu_millis = Some(LimitChange::Times(f));
            }
            if clause_mem && out.memory_mib.is_none() {
                out.memory_mib = Some(LimitChange::Times(f));
            }
        }
    }
    if out == Limits::default() {
        if !m(&SET_VERB, n) {
            return Ok(None); // a question about the limits, not a change
        }
        let what = match (names_cpu, names_mem) {
            (true, false) => "the CPU limit",
            (false, true) => "the memory limit",
            _ => "the limits",
        };
        return Err(format!(
            "say what to set {what} to, e.g. \"set the CPU limit to 500m\" or \"set the memory limit to 512Mi\", \
             or by how much (\"double the memory limit\")"
        ));
    }
    Ok(Some(out))
}
