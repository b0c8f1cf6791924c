//! Linting an exposition with Prometheus's own `promtool check metrics` (names, units, `_total` on counters, help
//! texts), for the tests of every crate that serves `/metrics`. promtool comes from Debian's `prometheus` package,
//! which `.ci/run` installs.

use std::{
    io::Write,
    process::{Command, Stdio},
};

/// Why an exposition did not pass.
#[derive(Debug, thiserror::Error)]
pub enum PromtoolError {
    /// promtool could not be run (not installed).
    #[error("promtool could not be run: {0}")]
    Missing(#[source] std::io::Error),
    /// promtool ran and complained, or failed.
    #[error("promtool check metrics: {0}")]
    Rejected(String),
}

/// Runs `promtool check metrics` on `text`; passing means exit 0 and nothing said.
pub fn check(text: &str) -> Result<(), PromtoolError> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(PromtoolError::Missing)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| PromtoolError::Rejected(format!("writing to promtool: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| PromtoolError::Rejected(format!("waiting for promtool: {e}")))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(PromtoolError::Rejected(format!("{} {}", out.status, said.trim())))
    }
}

/// For tests: panics unless `text` (the exposition of `what`) passes [`check`]. Without promtool it says so on
/// stderr and returns, except under `CI=true`, where a missing promtool is a failure.
pub fn assert_passes(what: &str, text: &str) {
    match check(text) {
        Ok(()) => {}
        Err(PromtoolError::Missing(e)) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is missing under CI=true ({e}); .ci/run installs Debian's prometheus package"
            );
            eprintln!("promtool not found ({e}): install Debian's `prometheus` package to lint {what}");
        }
        Err(e) => panic!("{what}: {e}\n--- exposition:\n{text}"),
    }
}
