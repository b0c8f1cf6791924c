//! CPU time and resident memory of a process, read from `/proc/<pid>/stat` through the `procfs` crate (Linux).

use procfs::process::{Process, Stat};

/// CPU time (user + system) and resident memory of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcUsage {
    /// CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// The stat line of a live process; `None` if it is gone, a zombie or unreadable.
fn live_stat(pid: u32) -> Option<Stat> {
    let stat = Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    (stat.state != 'Z' && stat.state != 'X').then_some(stat)
}

/// Reads the usage of `pid`; `None` if it is gone (or a zombie).
pub fn usage(pid: u32) -> Option<ProcUsage> {
    let stat = live_stat(pid)?;
    #[allow(clippy::cast_precision_loss)]
    let cpu_secs = (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64;
    Some(ProcUsage {
        cpu_secs,
        rss_bytes: stat.rss.saturating_mul(procfs::page_size()),
    })
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    live_stat(pid).is_some()
}

/// The parent pid of `pid`.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    u32::try_from(stat.ppid).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process_and_a_child() {
        let me = std::process::id();
        let u = usage(me).unwrap();
        assert!(u.rss_bytes > 0);
        assert!(u.cpu_secs >= 0.0);
        assert!(is_alive(me));
        assert!(parent_pid(me).is_some());
        assert!(!is_alive(u32::MAX - 1));
        assert_eq!(usage(u32::MAX), None);

        // A child: our pid is its parent; once exited and not yet reaped it is a zombie, which counts as gone.
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().unwrap();
        let pid = child.id();
        assert_eq!(parent_pid(pid), Some(me));
        assert!(is_alive(pid));
        let mut zombie = false;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            if !is_alive(pid) {
                zombie = true;
                break;
            }
        }
        assert!(zombie, "the exited child still counted as alive");
        child.wait().unwrap();
    }
}
