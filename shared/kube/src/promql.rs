//! PromQL builders for one Deployment's metrics: pure functions, so every query is unit-tested as text.
//!
//! Container metrics come from cAdvisor (`container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`)
//! and are matched by namespace, container and a pod-name regex for the Deployment's pods. Request metrics use a
//! latency histogram whose name and labels are configured per component (default: Sock Shop's
//! `request_duration_seconds_bucket` / `_count` with a `status_code` label), selected either by a label naming the
//! service (`name` as in the Sock Shop dashboards, or `service`) or by the Deployment's pods (the `namespace` and
//! `pod` labels Prometheus' Kubernetes pod discovery adds), for services that do not label their own metrics.

/// What the container queries select on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSelector<'a> {
    /// Namespace of the Deployment.
    pub namespace: &'a str,
    /// The Deployment's name (pods are named `<deployment>-<template hash>-<suffix>`).
    pub deployment: &'a str,
    /// The component's container in those pods.
    pub container: &'a str,
}

/// What the request queries select on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSelector<'a> {
    /// Histogram base name without `_bucket`/`_count` (Sock Shop: `request_duration_seconds`).
    pub metric: &'a str,
    /// Which series of that histogram are the component's.
    pub scope: RequestScope<'a>,
    /// The label holding the HTTP status code (Sock Shop: `status_code`).
    pub status_label: &'a str,
}

/// Which series of the request histogram belong to the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestScope<'a> {
    /// A label naming the service (Sock Shop dashboards: `name`; the services themselves set `service`).
    Label {
        /// The label.
        label: &'a str,
        /// Its value (normally the component name).
        value: &'a str,
    },
    /// The Deployment's pods, by the `namespace` and `pod` labels of Prometheus' Kubernetes pod discovery.
    Pods {
        /// Namespace of the Deployment.
        namespace: &'a str,
        /// The Deployment's name.
        deployment: &'a str,
    },
}

/// Quotes a PromQL string literal (backslash and double quote escaped).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A range selector duration: whole seconds (`60s`) when possible, otherwise milliseconds (`1500ms`), at least 1ms.
pub fn range(window_secs: f64) -> String {
    let ms = (window_secs * 1000.0).round().max(1.0);
    // Validated windows are at most a day, so this fits easily; clamp anyway rather than wrap.
    let ms = if ms.is_finite() {
        ms.min(1e12) as u64
    } else {
        60_000
    };
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Escapes regex metacharacters of `s` for use inside a PromQL `=~` matcher (RE2 syntax).
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The pod-name regex of a Deployment's pods: `<deployment>-<hash>-<suffix>`, so that `carts` does not also match
/// the pods of `carts-db`.
pub fn pod_regex(deployment: &str) -> String {
    format!("{}-[a-z0-9]+-[a-z0-9]+", regex_escape(deployment))
}

/// The label matchers of a container selector.
fn container_matchers(sel: &ContainerSelector<'_>) -> String {
    format!(
        "namespace={},pod=~{},container={}",
        quote(sel.namespace),
        quote(&pod_regex(sel.deployment)),
        quote(sel.container)
    )
}

/// CPU cores used per pod, averaged over pods: compare with the CPU limit (in cores).
pub fn cpu_cores_per_pod(sel: &ContainerSelector<'_>, window_secs: f64) -> String {
    format!(
        "avg(sum by (pod) (rate(container_cpu_usage_seconds_total{{{}}}[{}])))",
        container_matchers(sel),
        range(window_secs)
    )
}

/// Working-set bytes per pod, averaged over the window and over pods: compare with the memory limit (in bytes).
pub fn memory_bytes_per_pod(sel: &ContainerSelector<'_>, window_secs: f64) -> String {
    format!(
        "avg(sum by (pod) (avg_over_time(container_memory_working_set_bytes{{{}}}[{}])))",
        container_matchers(sel),
        range(window_secs)
    )
}

fn request_matchers(sel: &RequestSelector<'_>) -> String {
    match sel.scope {
        RequestScope::Label { label, value } => format!("{label}={}", quote(value)),
        RequestScope::Pods {
            namespace,
            deployment,
        } => format!(
            "namespace={},pod=~{}",
            quote(namespace),
            quote(&pod_regex(deployment))
        ),
    }
}

/// The `q` quantile (0..1) of request latency in seconds.
pub fn latency_quantile(sel: &RequestSelector<'_>, q: f64, window_secs: f64) -> String {
    format!(
        "histogram_quantile({q}, sum by (le) (rate({}_bucket{{{}}}[{}])))",
        sel.metric,
        request_matchers(sel),
        range(window_secs)
    )
}

/// Requests per second.
pub fn request_rate(sel: &RequestSelector<'_>, window_secs: f64) -> String {
    format!(
        "sum(rate({}_count{{{}}}[{}]))",
        sel.metric,
        request_matchers(sel),
        range(window_secs)
    )
}

/// 5xx answers per second (`or vector(0)` so that a service without errors reads 0, not "no data").
pub fn error_rate(sel: &RequestSelector<'_>, window_secs: f64) -> String {
    format!(
        "sum(rate({}_count{{{},{}=~\"5..\"}}[{}])) or vector(0)",
        sel.metric,
        request_matchers(sel),
        sel.status_label,
        range(window_secs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ContainerSelector<'static> = ContainerSelector {
        namespace: "sock-shop",
        deployment: "carts",
        container: "carts",
    };
    const R: RequestSelector<'static> = RequestSelector {
        metric: "request_duration_seconds",
        scope: RequestScope::Label {
            label: "name",
            value: "carts",
        },
        status_label: "status_code",
    };

    #[test]
    fn container_queries() {
        assert_eq!(
            cpu_cores_per_pod(&C, 60.0),
            r#"avg(sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="sock-shop",pod=~"carts-[a-z0-9]+-[a-z0-9]+",container="carts"}[60s])))"#
        );
        assert_eq!(
            memory_bytes_per_pod(&C, 30.0),
            r#"avg(sum by (pod) (avg_over_time(container_memory_working_set_bytes{namespace="sock-shop",pod=~"carts-[a-z0-9]+-[a-z0-9]+",container="carts"}[30s])))"#
        );
    }

    #[test]
    fn request_queries() {
        assert_eq!(
            latency_quantile(&R, 0.99, 60.0),
            r#"histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket{name="carts"}[60s])))"#
        );
        assert_eq!(
            latency_quantile(&R, 0.5, 60.0),
            r#"histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket{name="carts"}[60s])))"#
        );
        assert_eq!(
            request_rate(&R, 120.0),
            r#"sum(rate(request_duration_seconds_count{name="carts"}[120s]))"#
        );
        assert_eq!(
            error_rate(&R, 60.0),
            r#"sum(rate(request_duration_seconds_count{name="carts",status_code=~"5.."}[60s])) or vector(0)"#
        );
        let svc = RequestSelector {
            scope: RequestScope::Label {
                label: "service",
                value: "carts",
            },
            ..R
        };
        assert!(request_rate(&svc, 60.0).contains(r#"{service="carts"}"#));
    }

    #[test]
    fn request_queries_of_another_histogram_by_pod() {
        let sel = RequestSelector {
            metric: "http_server_requests_seconds",
            scope: RequestScope::Pods {
                namespace: "shop",
                deployment: "web",
            },
            status_label: "status",
        };
        assert_eq!(
            latency_quantile(&sel, 0.99, 30.0),
            r#"histogram_quantile(0.99, sum by (le) (rate(http_server_requests_seconds_bucket{namespace="shop",pod=~"web-[a-z0-9]+-[a-z0-9]+"}[30s])))"#
        );
        assert_eq!(
            error_rate(&sel, 30.0),
            r#"sum(rate(http_server_requests_seconds_count{namespace="shop",pod=~"web-[a-z0-9]+-[a-z0-9]+",status=~"5.."}[30s])) or vector(0)"#
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(range(60.0), "60s");
        assert_eq!(range(1.5), "1500ms");
        assert_eq!(range(0.0001), "1ms");
        assert_eq!(range(86_400.0), "86400s");
    }

    #[test]
    fn quoting_and_regex() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(regex_escape("a.b"), r"a\.b");
        // The pod regex must not match another Deployment's pods that share a prefix.
        let re = pod_regex("carts");
        assert_eq!(re, "carts-[a-z0-9]+-[a-z0-9]+");
        let anchored = regex::Regex::new(&format!("^(?:{re})$")).unwrap();
        assert!(anchored.is_match("carts-5d8f7b9c4-x2x7q"));
        assert!(!anchored.is_match("carts-db-6c7d8b-abcde"));
        assert!(!anchored.is_match("carts"));
        let sel = ContainerSelector {
            namespace: r#"x"y"#,
            ..C
        };
        assert!(cpu_cores_per_pod(&sel, 60.0).contains(r#"namespace="x\"y""#));
    }
}
