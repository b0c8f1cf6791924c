//! The exposition acv's recorder renders passes `promtool check metrics` (Prometheus's own linter: names, units,
//! `_total` on counters, help texts). promtool comes from Debian's `prometheus` package, which `.ci/run` installs;
//! without it the test says so and passes, except under `CI=true`, where a missing promtool is a failure.

use std::{io::Write, process::Command};

use acv_telemetry::metrics::{
    CounterName, GaugeName, HistogramName, count, describe_all, observe, prometheus_builder, set,
};

fn exposition_with_every_metric() -> String {
    let recorder = prometheus_builder().unwrap().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe_all();
        for c in CounterName::ALL {
            count(c, &[("outcome", "ok")], 2);
        }
        for h in HistogramName::ALL {
            observe(h, &[("verdict", "ok")], 0.42);
        }
        for g in GaugeName::ALL {
            set(g, &[("state", "achieved")], 1.0);
        }
    });
    handle.render()
}

#[test]
fn promtool_accepts_the_exposition() {
    let text = exposition_with_every_metric();
    for c in CounterName::ALL {
        assert!(
            text.contains(&format!("# HELP {}", c.as_str())),
            "no help for {}:\n{text}",
            c.as_str()
        );
    }
    for h in HistogramName::ALL {
        assert!(
            text.contains(&format!("{}_bucket{{", h.as_str())),
            "{} is not a histogram:\n{text}",
            h.as_str()
        );
    }
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is missing under CI=true ({e}); .ci/run installs Debian's prometheus package"
            );
            eprintln!("promtool not found ({e}): install Debian's `prometheus` package to run this check");
            return;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}\n--- exposition:\n{text}"
    );
}
