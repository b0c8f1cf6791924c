//! A minimal Prometheus HTTP API client: instant queries (`GET /api/v1/query`) that read one number.

use std::time::Duration;

use serde::Deserialize;

use crate::KubeError;

/// Instant-query client for one Prometheus base URL (e.g. `http://prometheus.monitoring:9090`).
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: reqwest::Url,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    Matrix(serde_json::Value),
    String(serde_json::Value),
}

#[derive(Debug, Deserialize)]
struct Sample {
    value: (f64, String),
}

// === impl Prometheus ===

impl Prometheus {
    /// A client for `base` (scheme, host, optional path prefix) with a per-query timeout.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, KubeError> {
        let mut base =
            reqwest::Url::parse(base).map_err(|e| KubeError::PrometheusConfig(format!("{base:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(KubeError::PrometheusConfig(format!(
                "{base} is not an http(s) URL"
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| KubeError::PrometheusConfig(e.to_string()))?;
        Ok(Self { base, http })
    }

    /// The base URL.
    pub fn base(&self) -> &reqwest::Url {
        &self.base
    }

    /// Runs an instant query and reads its single value: `None` for an empty result or a NaN/infinite value
    /// (e.g. `histogram_quantile` over no traffic), the first sample's value otherwise.
    pub async fn query(&self, promql: &str) -> Result<Option<f64>, KubeError> {
        let fail = |message: String| KubeError::Prometheus {
            query: promql.to_owned(),
            message,
        };
        let url = self.base.join("api/v1/query").map_err(|e| fail(e.to_string()))?;
        let resp = self
            .http
            .get(url)
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| fail(format!("request failed: {e}")))?;
        let code = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| fail(format!("reading the answer: {e}")))?;
        let parsed: ApiResponse = serde_json::from_str(&body).map_err(|e| {
            fail(if code.is_success() {
                format!("unexpected answer: {e}")
            } else {
                format!("HTTP {code}: {}", body.chars().take(200).collect::<String>())
            })
        })?;
        if parsed.status != "success" {
            return Err(fail(format!(
                "{}: {}",
                parsed.error_type.unwrap_or_else(|| format!("HTTP {code}")),
                parsed.error.unwrap_or_default()
            )));
        }
        let raw = match parsed.data {
            Some(Data::Vector(samples)) => samples.into_iter().next().map(|s| s.value.1),
            Some(Data::Scalar((_, v))) => Some(v),
            Some(Data::Matrix(other) | Data::String(other)) => {
                let text = other.to_string();
                return Err(fail(format!(
                    "expected a vector or scalar result, got {}",
                    text.chars().take(120).collect::<String>()
                )));
            }
            None => return Err(fail("the answer has no data".into())),
        };
        match raw {
            None => Ok(None),
            Some(v) => {
                let v: f64 = v
                    .parse()
                    .map_err(|_| fail(format!("value {v:?} is not a number")))?;
                Ok(v.is_finite().then_some(v))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let p = Prometheus::new("http://prom:9090", Duration::from_secs(1)).unwrap();
        assert_eq!(
            p.base().join("api/v1/query").unwrap().as_str(),
            "http://prom:9090/api/v1/query"
        );
        let p = Prometheus::new("http://prom:9090/prometheus", Duration::from_secs(1)).unwrap();
        assert_eq!(
            p.base().join("api/v1/query").unwrap().as_str(),
            "http://prom:9090/prometheus/api/v1/query"
        );
        assert!(matches!(
            Prometheus::new("not a url", Duration::from_secs(1)),
            Err(KubeError::PrometheusConfig(_))
        ));
        assert!(matches!(
            Prometheus::new("ftp://prom", Duration::from_secs(1)),
            Err(KubeError::PrometheusConfig(_))
        ));
    }
}
