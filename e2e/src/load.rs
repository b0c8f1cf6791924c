//! The open-loop load generator: requests are sent on a schedule set by the rate profile, whether or not earlier
//! ones have answered (so a slow service builds a queue instead of slowing the load, as with real users), and it
//! reports its own latency percentiles.
//!
//! Presets follow the paper's Locust workloads (users / spawn rate): light 20/20, moderate 50/50, heavy 80/80,
//! increase 100/1. A Locust user there sends about one request per second, so N users ≈ N requests/s; `increase`
//! ramps from 1 to 100 requests/s at +1/s, like one new user per second.
//!
//! Safety: the target must be on 127.0.0.0/8, the rate at most [`MAX_RPS`] and the run at most [`MAX_SECS`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Highest rate accepted, requests/s.
pub const MAX_RPS: f64 = 2000.0;
/// Longest run accepted, seconds.
pub const MAX_SECS: f64 = 1800.0;

/// How the request rate changes over time.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// A fixed rate.
    Constant {
        /// Requests/s.
        rps: f64,
        /// Duration, s.
        secs: f64,
    },
    /// Fixed rates one after another.
    Steps(Vec<(f64, f64)>),
    /// A linear ramp from `from_rps` to `to_rps` over `ramp_secs`, then `to_rps` for `hold_secs`.
    Ramp {
        /// Starting rate.
        from_rps: f64,
        /// Final rate.
        to_rps: f64,
        /// Ramp length, s.
        ramp_secs: f64,
        /// Time at the final rate, s.
        hold_secs: f64,
    },
}

/// Named workloads after the paper's Locust settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// 20 users ≈ 20 requests/s.
    Light,
    /// 50 users ≈ 50 requests/s.
    Moderate,
    /// 80 users ≈ 80 requests/s.
    Heavy,
    /// 1 → 100 users at one new user per second.
    Increase,
}

/// One kind of request, sent in turn with the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path: String,
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where to send (must be loopback).
    pub target: SocketAddr,
    /// Requests, used round-robin.
    pub calls: Vec<Call>,
    /// Rate over time.
    pub profile: Profile,
    /// Requests allowed in flight; beyond that a scheduled request is dropped and counted.
    pub max_in_flight: usize,
    /// Per-request timeout (counted as a transport error).
    pub timeout: Duration,
}

/// What a run measured. Latency is from sending a request to having read its whole answer.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Answered with 2xx/3xx.
    pub ok: u64,
    /// Answered with 4xx/5xx.
    pub http_errors: u64,
    /// Connection failures and timeouts.
    pub transport_errors: u64,
    /// Scheduled but not sent because `max_in_flight` was reached.
    pub dropped: u64,
    /// Run length, s.
    pub secs: f64,
    /// Sent requests per second.
    pub achieved_rps: f64,
    /// Median latency of answered requests, ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    pub p90_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Slowest, ms.
    pub max_ms: Option<f64>,
}

/// A rejected load run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LoadError {
    /// The target is not on 127.0.0.0/8 (or ::1).
    #[error("target {0} is not a loopback address; load stays on 127.0.0.0/8")]
    NotLoopback(SocketAddr),
    /// The profile is out of bounds.
    #[error("invalid load profile: {0}")]
    InvalidProfile(String),
    /// No requests to send, or a bad path.
    #[error("invalid calls: {0}")]
    InvalidCalls(String),
}

// === impl Profile ===

impl Profile {
    /// Total length, s.
    pub fn total_secs(&self) -> f64 {
        match self {
            Profile::Constant { secs, .. } => *secs,
            Profile::Steps(steps) => steps.iter().map(|s| s.1).sum(),
            Profile::Ramp {
                ramp_secs, hold_secs, ..
            } => ramp_secs + hold_secs,
        }
    }

    /// Rate at `t` seconds into the run.
    pub fn rate_at(&self, t: f64) -> f64 {
        match self {
            Profile::Constant { rps, .. } => *rps,
            Profile::Steps(steps) => {
                let mut end = 0.0;
                for (rps, secs) in steps {
                    end += secs;
                    if t < end {
                        return *rps;
                    }
                }
                steps.last().map_or(0.0, |s| s.0)
            }
            Profile::Ramp {
                from_rps,
                to_rps,
                ramp_secs,
                ..
            } => {
                if *ramp_secs <= 0.0 || t >= *ramp_secs {
                    *to_rps
                } else {
                    from_rps + (to_rps - from_rps) * t / ramp_secs
                }
            }
        }
    }

    /// Checks rates and lengths.
    pub fn validate(&self) -> Result<(), LoadError> {
        let rates: Vec<f64> = match self {
            Profile::Constant { rps, .. } => vec![*rps],
            Profile::Steps(s) => s.iter().map(|x| x.0).collect(),
            Profile::Ramp { from_rps, to_rps, .. } => vec![*from_rps, *to_rps],
        };
        let parts: Vec<f64> = match self {
            Profile::Constant { secs, .. } => vec![*secs],
            Profile::Steps(s) => s.iter().map(|x| x.1).collect(),
            Profile::Ramp {
                ramp_secs, hold_secs, ..
            } => vec![*ramp_secs, *hold_secs],
        };
        if rates.is_empty() || rates.iter().any(|r| !r.is_finite() || *r < 0.0 || *r > MAX_RPS) {
            return Err(LoadError::InvalidProfile(format!(
                "rates must be in 0..={MAX_RPS} requests/s"
            )));
        }
        let total = self.total_secs();
        if parts.iter().any(|p| !p.is_finite() || *p < 0.0) || total <= 0.0 || total > MAX_SECS {
            return Err(LoadError::InvalidProfile(format!(
                "length must be in (0, {MAX_SECS}] s"
            )));
        }
        Ok(())
    }
}

// === impl Preset ===

impl Preset {
    /// The profile of this preset; `secs` overrides the default length (60 s; 100 s ramp + 20 s hold for
    /// `increase`, where `secs` then sets the ramp length).
    pub fn profile(self, secs: Option<f64>) -> Profile {
        let constant = |rps: f64| Profile::Constant {
            rps,
            secs: secs.unwrap_or(60.0),
        };
        match self {
            Preset::Light => constant(20.0),
            Preset::Moderate => constant(50.0),
            Preset::Heavy => constant(80.0),
            Preset::Increase => Profile::Ramp {
                from_rps: 1.0,
                to_rps: 100.0,
                ramp_secs: secs.unwrap_or(100.0),
                hold_secs: 20.0,
            },
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "light" => Ok(Preset::Light),
            "moderate" => Ok(Preset::Moderate),
            "heavy" => Ok(Preset::Heavy),
            "increase" => Ok(Preset::Increase),
            _ => Err(format!(
                "unknown preset {s:?}: expected light, moderate, heavy or increase"
            )),
        }
    }
}

// === impl Call ===

impl Call {
    /// A GET of `path`.
    pub fn get(path: &str) -> Self {
        Call {
            method: Method::GET,
            path: path.to_owned(),
        }
    }
}

/// The shop's front-end mix: browsing mostly, some cart and order traffic.
pub fn shop_mix() -> Vec<Call> {
    let mut calls = vec![Call::get("/catalogue"); 5];
    calls.push(Call::get("/"));
    calls.push(Call::get("/catalogue/sock-01"));
    calls.push(Call::get("/cart"));
    calls.push(Call {
        method: Method::POST,
        path: "/orders".into(),
    });
    calls.push(Call::get("/customers/1"));
    calls
}

/// Runs the load and returns what it measured.
pub async fn run(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    if !spec.target.ip().is_loopback() {
        return Err(LoadError::NotLoopback(spec.target));
    }
    spec.profile.validate()?;
    if spec.calls.is_empty() || spec.calls.iter().any(|c| !c.path.starts_with('/')) {
        return Err(LoadError::InvalidCalls(
            "need at least one call, each path starting with '/'".into(),
        ));
    }
    let max_in_flight = spec.max_in_flight.clamp(1, 10_000);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let counts = Arc::new(Mutex::new(LoadReport::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let total = spec.profile.total_secs();
    let start = Instant::now();
    let mut t = 0.0_f64;
    let mut i = 0usize;
    let (mut sent, mut dropped) = (0u64, 0u64);
    while t < total {
        let rate = spec.profile.rate_at(t);
        if rate <= 0.0 {
            t += 0.01;
            continue;
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(t)).await;
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            dropped += 1;
        } else {
            let call = &spec.calls[i % spec.calls.len()];
            i += 1;
            sent += 1;
            let req = Request::builder()
                .method(call.method.clone())
                .uri(format!("http://{}{}", spec.target, call.path))
                .body(Full::new(Bytes::new()));
            let (client, latencies, counts, in_flight) = (
                client.clone(),
                Arc::clone(&latencies),
                Arc::clone(&counts),
                Arc::clone(&in_flight),
            );
            let timeout = spec.timeout;
            in_flight.fetch_add(1, Ordering::Relaxed);
            tasks.spawn(async move {
                let begin = Instant::now();
                let outcome = match req {
                    Ok(req) => tokio::time::timeout(timeout, async {
                        let resp = client.request(req).await.ok()?;
                        let status = resp.status();
                        resp.into_body().collect().await.ok()?;
                        Some(status)
                    })
                    .await
                    .ok()
                    .flatten(),
                    Err(_) => None,
                };
                let ms = begin.elapsed().as_secs_f64() * 1000.0;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                let mut c = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match outcome {
                    Some(s) if s.is_success() || s.is_redirection() => c.ok += 1,
                    Some(_) => c.http_errors += 1,
                    None => {
                        c.transport_errors += 1;
                        return;
                    }
                }
                drop(c);
                latencies
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(ms);
            });
        }
        t += 1.0 / rate;
    }
    while tasks.join_next().await.is_some() {}
    let secs = start.elapsed().as_secs_f64();
    let mut report = counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut lat = std::mem::take(
        &mut *latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    lat.sort_by(f64::total_cmp);
    report.sent = sent;
    report.dropped = dropped;
    report.secs = secs;
    #[allow(clippy::cast_precision_loss)]
    let achieved = sent as f64 / total;
    report.achieved_rps = achieved;
    report.p50_ms = percentile(&lat, 0.50);
    report.p90_ms = percentile(&lat, 0.90);
    report.p99_ms = percentile(&lat, 0.99);
    report.max_ms = lat.last().copied();
    Ok(report)
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles() {
        let ramp = Preset::Increase.profile(Some(10.0));
        assert_eq!(ramp.rate_at(0.0), 1.0);
        assert!((ramp.rate_at(5.0) - 50.5).abs() < 1e-9);
        assert_eq!(ramp.rate_at(15.0), 100.0);
        assert_eq!(ramp.total_secs(), 30.0);
        let steps = Profile::Steps(vec![(10.0, 1.0), (20.0, 2.0)]);
        assert_eq!(
            (steps.rate_at(0.5), steps.rate_at(2.0), steps.total_secs()),
            (10.0, 20.0, 3.0)
        );
        assert_eq!(
            Preset::Heavy.profile(None),
            Profile::Constant {
                rps: 80.0,
                secs: 60.0
            }
        );
        assert!("nope".parse::<Preset>().is_err());
    }

    #[test]
    fn bounds() {
        assert!(
            Profile::Constant {
                rps: 5000.0,
                secs: 1.0
            }
            .validate()
            .is_err()
        );
        assert!(Profile::Constant { rps: 10.0, secs: 0.0 }.validate().is_err());
        assert!(
            Profile::Constant {
                rps: f64::NAN,
                secs: 1.0
            }
            .validate()
            .is_err()
        );
        assert!(Profile::Steps(vec![]).validate().is_err());
        assert!(Profile::Constant { rps: 10.0, secs: 5.0 }.validate().is_ok());
    }

    #[tokio::test]
    async fn refuses_non_loopback_targets() {
        let spec = LoadSpec {
            target: "10.0.0.1:80".parse().unwrap(),
            calls: vec![Call::get("/")],
            profile: Profile::Constant { rps: 1.0, secs: 1.0 },
            max_in_flight: 10,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(run(&spec).await, Err(LoadError::NotLoopback(spec.target)));
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
