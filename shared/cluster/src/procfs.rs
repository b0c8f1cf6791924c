//! CPU time and resident memory of a process, read from `/proc` (Linux). No unsafe code: the clock tick rate comes
//! from `getconf CLK_TCK` once, defaulting to 100 (the value on every mainstream Linux architecture).

use std::sync::OnceLock;

/// CPU time (user + system) and resident memory of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcUsage {
    /// CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Clock ticks per second used by `/proc/<pid>/stat`.
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Reads the usage of `pid`; `None` if it is gone (or a zombie).
pub fn usage(pid: u32) -> Option<ProcUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (state, utime, stime) = parse_stat(&stat)?;
    if state == 'Z' || state == 'X' {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = parse_vm_rss_kib(&status).unwrap_or(0);
    Some(ProcUsage {
        cpu_secs: (utime + stime) as f64 / clock_ticks(),
        rss_bytes: rss_kib * 1024,
    })
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .is_some_and(|(state, _, _)| state != 'Z' && state != 'X')
}

/// The parent pid of `pid`.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `(state, utime, stime)` from a `/proc/<pid>/stat` line. The command name may hold spaces and parentheses, so the
/// fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64, u64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Fields 14 and 15 of stat(5) are utime and stime; field 3 (state) is index 0 here.
    let utime = fields.get(11)?.parse().ok()?;
    let stime = fields.get(12)?.parse().ok()?;
    Some((state, utime, stime))
}

fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 250, 50)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let u = usage(me).unwrap();
        assert!(u.rss_bytes > 0);
        assert!(u.cpu_secs >= 0.0);
        assert!(is_alive(me));
        assert!(parent_pid(me).is_some());
        assert!(!is_alive(u32::MAX - 1));
    }
}
