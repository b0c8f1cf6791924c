//! The exposition acv's recorder renders passes `promtool check metrics` (Prometheus's own linter: names, units,
//! `_total` on counters, help texts). promtool comes from Debian's `prometheus` package, which `.ci/run` installs;
//! without it the test says so and passes, except under `CI=true`, where a missing promtool is a failure.

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
    acv_telemetry::promtool::assert_passes("the full catalogue", &text);
}

#[test]
fn promtool_rejects_a_counter_without_total() {
    // Proves the lint above can fail: a counter must end in `_total`.
    match acv_telemetry::promtool::check("# HELP acv_bad A counter.\n# TYPE acv_bad counter\nacv_bad 1\n") {
        Err(acv_telemetry::promtool::PromtoolError::Rejected(said)) => {
            assert!(said.contains("_total"), "{said}")
        }
        Err(acv_telemetry::promtool::PromtoolError::Missing(e)) => assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing under CI=true ({e})"
        ),
        Ok(()) => panic!("promtool accepted a counter without _total"),
    }
}
