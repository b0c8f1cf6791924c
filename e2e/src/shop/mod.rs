//! The testbed shop: seven small HTTP services in one binary, after Sock Shop. `front-end` calls `catalogue`,
//! `carts`, `orders` and `user`; `orders` calls `payment` and `shipping`. Each request does some CPU work and
//! waits a little (its "database"), then calls its downstreams.
//!
//! Every service serves `GET /health` (200 when ready) and `GET /metrics` (the `request_duration_seconds`
//! histogram, labels `name`, `route`, `status_code`; `/health` and `/metrics` themselves are not recorded). Services
//! that call others also export `client_request_duration_seconds` (labels `name`, `callee`, `status_code`): how
//! long each call to another service took and how it ended, as the caller saw it.
//!
//! Configuration (env, as the local runtime sets it):
//! - `PORT`: port on 127.0.0.1 (required).
//! - `SHOP_MODE`: `healthy` (default), `crash` (exit 1 at start), `errors` (500 on every business route),
//!   `slow` (adds `SHOP_SLOW_MS`, default 300 ms), `unready` (`/health` answers 503).
//! - `SHOP_WORK_US`: CPU work per request in µs; `SHOP_DELAY_MS` + uniform `SHOP_JITTER_MS`: waiting per request.
//! - `<SERVICE>_SERVICE_HOST` / `<SERVICE>_SERVICE_PORT`: where downstream services are (Kubernetes style).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use acv_core::env::{Parser, Strings};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub mod metrics;

use metrics::RequestMetrics;

/// The services of the shop.
pub const SERVICES: [&str; 7] = [
    "front-end",
    "catalogue",
    "carts",
    "orders",
    "payment",
    "shipping",
    "user",
];

/// Behaviour selected by the version switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Works.
    Healthy,
    /// Exits with status 1 right at start.
    Crash,
    /// Answers 500 on every business route.
    Errors,
    /// Adds a fixed delay to every business route.
    Slow,
    /// `/health` answers 503.
    Unready,
}

/// Shop configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// The service name is not one of [`SERVICES`].
    #[error("unknown shop service {0:?}; known: {SERVICES:?}")]
    UnknownService(String),
    /// Bad or missing env.
    #[error(transparent)]
    Env(#[from] acv_core::env::EnvError),
    /// A downstream service's address is not in the env.
    #[error("{service} needs {key} in its environment")]
    MissingDownstream {
        /// The service.
        service: String,
        /// The env key.
        key: String,
    },
    /// Binding or serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// One service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which service.
    pub service: &'static str,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Version switch.
    pub mode: Mode,
    /// CPU work per request.
    pub work: Duration,
    /// Fixed wait per request.
    pub delay: Duration,
    /// Extra uniform random wait per request, up to this.
    pub jitter: Duration,
    /// Delay added in `slow` mode.
    pub slow: Duration,
    /// Downstream services by name.
    pub downstream: Vec<(&'static str, SocketAddr)>,
    /// Log every request (env `logger_flag=true`, the flag of the paper's update_deployment task).
    pub log_requests: bool,
}

struct Ctx {
    cfg: Config,
    metrics: RequestMetrics,
    client: Client<HttpConnector, Full<Bytes>>,
    rng: AtomicU64,
    items: Vec<String>,
}

// === impl Mode ===

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "healthy" => Ok(Mode::Healthy),
            "crash" => Ok(Mode::Crash),
            "errors" => Ok(Mode::Errors),
            "slow" => Ok(Mode::Slow),
            "unready" => Ok(Mode::Unready),
            _ => Err("expected healthy, crash, errors, slow or unready".into()),
        }
    }
}

// === impl Config ===

impl Config {
    /// Reads the configuration of service `name` from `env`.
    pub fn from_env(name: &str, env: &dyn Strings) -> Result<Self, ShopError> {
        let service = SERVICES
            .iter()
            .copied()
            .find(|s| *s == name)
            .ok_or_else(|| ShopError::UnknownService(name.into()))?;
        // (work µs, delay ms, jitter ms) per service: catalogue and front-end do the most. Catalogue is calibrated
        // so the paper's workloads show its symptoms on a 2-core machine: one replica (200m) crosses 50% of its CPU
        // limit between the `heavy` (80 req/s) and the top of `increase` (100 req/s); see docs/local-runtime.md.
        let (work, delay, jitter) = match service {
            "front-end" => (200, 1, 1),
            "catalogue" => (1000, 3, 4),
            "carts" => (200, 2, 3),
            "orders" => (300, 2, 3),
            _ => (100, 1, 2),
        };
        let mut p = Parser::default();
        let port = p.parse_or::<u16>(env, "PORT", 0);
        let mode = p.parse_or(env, "SHOP_MODE", Mode::Healthy);
        let work = Duration::from_micros(p.parse_or(env, "SHOP_WORK_US", work));
        let delay = Duration::from_millis(p.parse_or(env, "SHOP_DELAY_MS", delay));
        let jitter = Duration::from_millis(p.parse_or(env, "SHOP_JITTER_MS", jitter));
        let slow = Duration::from_millis(p.parse_or(env, "SHOP_SLOW_MS", 300));
        let log_requests = p.parse_or(env, "logger_flag", false);
        p.finish()?;
        if port == 0 {
            return Err(acv_core::env::EnvError::Missing("PORT".into()).into());
        }
        let needs: &[&'static str] = match service {
            "front-end" => &["catalogue", "carts", "orders", "user"],
            "orders" => &["payment", "shipping"],
            _ => &[],
        };
        let mut downstream = Vec::new();
        for d in needs {
            let prefix = d.to_ascii_uppercase().replace('-', "_");
            let host_key = format!("{prefix}_SERVICE_HOST");
            let port_key = format!("{prefix}_SERVICE_PORT");
            let host = env.get(&host_key).unwrap_or_else(|| "127.0.0.1".into());
            let addr = env
                .get(&port_key)
                .and_then(|port| format!("{host}:{port}").parse::<SocketAddr>().ok())
                .ok_or_else(|| ShopError::MissingDownstream {
                    service: service.into(),
                    key: port_key,
                })?;
            downstream.push((*d, addr));
        }
        Ok(Config {
            service,
            port,
            mode,
            work,
            delay,
            jitter,
            slow,
            downstream,
            log_requests,
        })
    }
}

/// Runs a service until the process ends. `crash` mode exits here.
pub async fn run(cfg: Config) -> Result<(), ShopError> {
    if cfg.mode == Mode::Crash {
        eprintln!("{}: fatal: cannot start (crash build)", cfg.service);
        std::process::exit(1);
    }
    let listener = TcpListener::bind(("127.0.0.1", cfg.port)).await?;
    println!(
        "{} listening on {} (mode {:?})",
        cfg.service,
        listener.local_addr()?,
        cfg.mode
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let service = cfg.service;
    serve(listener, cfg, async move {
        term.recv().await;
        println!("{service}: SIGTERM, draining");
    })
    .await
}

/// How long in-flight requests may take to finish after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Serves on an already bound listener until `shutdown` completes, then stops accepting, lets in-flight requests
/// finish (closing idle keep-alive connections) for at most [`DRAIN`], and returns.
pub async fn serve(
    listener: TcpListener,
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ShopError> {
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let seed = u64::from(std::process::id()) ^ acv_core::now_ms();
    let items = (0..60).map(|i| format!("sock-{i:02}")).collect();
    let metrics = RequestMetrics::new(cfg.service);
    let ctx = Arc::new(Ctx {
        cfg,
        metrics,
        client,
        rng: AtomicU64::new(seed | 1),
        items,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        stream.set_nodelay(true).ok();
        let ctx = Arc::clone(&ctx);
        let svc = service_fn(move |req| {
            let ctx = Arc::clone(&ctx);
            async move { Ok::<_, Infallible>(handle(req, &ctx).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Connection ended with an error.");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        eprintln!("shutdown: connections still open after {DRAIN:?}; exiting anyway");
    }
    Ok(())
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(req: Request<Incoming>, ctx: &Ctx) -> Response<Full<Bytes>> {
    let start = Instant::now();
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/health" => {
            return if ctx.cfg.mode == Mode::Unready {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            } else {
                text(StatusCode::OK, "{\"health\":\"ok\"}\n")
            };
        }
        "/metrics" => return text(StatusCode::OK, ctx.metrics.render()),
        _ => {}
    }
    let method = req.method().clone();
    // Drain the request body (bounded) so keep-alive works.
    Limited::new(req.into_body(), 64 * 1024).collect().await.ok();
    let Some(route) = route(ctx.cfg.service, &method, &path) else {
        let resp = text(StatusCode::NOT_FOUND, "not found\n");
        ctx.metrics.observe("unknown", 404, start.elapsed());
        return resp;
    };
    let (resp, failure) = business(ctx, route, &path).await;
    let status = resp.status().as_u16();
    ctx.metrics.observe(route, status, start.elapsed());
    // Errors always reach the log (with their cause); every request does with logger_flag=true.
    if let Some(why) = failure {
        eprintln!("ERROR {method} {path} -> {status}: {why}");
    } else if ctx.cfg.log_requests {
        println!(
            "{method} {path} -> {status} in {:.1} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
    resp
}

/// The route template of a request, bounded to a fixed set per service.
fn route(service: &str, method: &Method, path: &str) -> Option<&'static str> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    match (service, seg.as_slice()) {
        ("front-end", [""]) if get => Some("/"),
        ("front-end", ["catalogue"]) if get => Some("/catalogue"),
        ("front-end", ["catalogue", _]) if get => Some("/catalogue/{id}"),
        ("front-end", ["cart"]) if get || post => Some("/cart"),
        ("front-end", ["orders"]) if get || post => Some("/orders"),
        ("front-end", ["customers", _]) if get => Some("/customers/{id}"),
        ("front-end", ["login"]) if get => Some("/login"),
        ("catalogue", ["catalogue"]) if get => Some("/catalogue"),
        ("catalogue", ["catalogue", "size"]) if get => Some("/catalogue/size"),
        ("catalogue", ["catalogue", _]) if get => Some("/catalogue/{id}"),
        ("catalogue", ["tags"]) if get => Some("/tags"),
        ("carts", ["carts", _, "items"]) if get || post => Some("/carts/{id}/items"),
        ("orders", ["orders"]) if get || post => Some("/orders"),
        ("payment", ["paymentAuth"]) if post => Some("/paymentAuth"),
        ("shipping", ["shipping"]) if post => Some("/shipping"),
        ("user", ["customers", _]) if get => Some("/customers/{id}"),
        ("user", ["login"]) if get => Some("/login"),
        _ => None,
    }
}

/// The answer, and why it failed if it did.
async fn business(ctx: &Ctx, route: &'static str, path: &str) -> (Response<Full<Bytes>>, Option<String>) {
    let cfg = &ctx.cfg;
    burn(cfg.work);
    let jitter_ms = u64::try_from(cfg.jitter.as_millis()).unwrap_or(0);
    let jitter = if jitter_ms > 0 {
        Duration::from_micros(ctx.next_rand() % (jitter_ms * 1000 + 1))
    } else {
        Duration::ZERO
    };
    tokio::time::sleep(cfg.delay + jitter).await;
    if cfg.mode == Mode::Slow {
        tokio::time::sleep(cfg.slow).await;
    }
    if cfg.mode == Mode::Errors {
        let resp = text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"error\":\"{} is broken\"}}\n", cfg.service),
        );
        return (resp, Some("this build is broken (SHOP_MODE=errors)".into()));
    }
    let body = match (cfg.service, route) {
        ("front-end", "/") => Ok("<html><body><h1>acv sock shop</h1></body></html>\n".to_owned()),
        ("front-end", "/catalogue" | "/catalogue/{id}") => ctx.call("catalogue", Method::GET, path).await,
        ("front-end", "/cart") => ctx.call("carts", Method::GET, "/carts/1/items").await,
        ("front-end", "/orders") => ctx.call("orders", Method::POST, "/orders").await,
        ("front-end", "/customers/{id}" | "/login") => ctx.call("user", Method::GET, path).await,
        ("orders", "/orders") => match ctx.call("payment", Method::POST, "/paymentAuth").await {
            Ok(_) => ctx
                .call("shipping", Method::POST, "/shipping")
                .await
                .map(|s| format!("{{\"order\":{s}}}")),
            Err(e) => Err(e),
        },
        ("catalogue", "/catalogue") => Ok(ctx.catalogue_page()),
        ("catalogue", "/catalogue/size") => Ok(format!("{{\"size\":{}}}", ctx.items.len())),
        ("catalogue", "/tags") => {
            Ok("{\"tags\":[\"brown\",\"geek\",\"formal\",\"blue\",\"sport\"]}".to_owned())
        }
        (_, _) => Ok(format!(
            "{{\"service\":\"{}\",\"route\":\"{route}\",\"ok\":true}}",
            cfg.service
        )),
    };
    match body {
        Ok(b) => (text(StatusCode::OK, b), None),
        Err((status, why)) => (
            text(
                status,
                format!("{{\"error\":\"downstream failed with {status}\"}}\n"),
            ),
            Some(why),
        ),
    }
}

/// Busy CPU work for `d` (what a real handler spends on JSON, templates and business logic).
fn burn(d: Duration) {
    let start = Instant::now();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while start.elapsed() < d {
        for _ in 0..200 {
            x = std::hint::black_box(x.rotate_left(5) ^ x.wrapping_mul(0x5851_f42d_4c95_7f2d));
        }
    }
    std::hint::black_box(x);
}

// === impl Ctx ===

impl Ctx {
    fn next_rand(&self) -> u64 {
        // splitmix64 over an atomic counter: cheap, good enough for jitter.
        let mut z = self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn catalogue_page(&self) -> String {
        let mut items: Vec<&String> = self.items.iter().collect();
        items.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let list: Vec<String> = items
            .iter()
            .take(12)
            .map(|s| format!("{{\"id\":\"{s}\",\"price\":9.99}}"))
            .collect();
        format!("[{}]", list.join(","))
    }

    /// Calls a downstream service (timed into the `client_request_duration_seconds` histogram); on failure, the
    /// status to answer and why.
    async fn call(&self, service: &str, method: Method, path: &str) -> Result<String, (StatusCode, String)> {
        let internal = |why: String| (StatusCode::INTERNAL_SERVER_ERROR, why);
        let Some((callee, addr)) = self.cfg.downstream.iter().find(|(n, _)| *n == service).copied() else {
            return Err(internal(format!("no address for {service}")));
        };
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| internal(e.to_string()))?;
        let started = Instant::now();
        // The status the call ended with, as the histogram records it: the callee's, 502 without an answer.
        let mut seen = StatusCode::BAD_GATEWAY;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| (StatusCode::BAD_GATEWAY, format!("{service} unreachable: {e}")))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| (StatusCode::BAD_GATEWAY, format!("{service} answer broken: {e}")))?
                .to_bytes();
            seen = status;
            if !status.is_success() {
                return Err(internal(format!(
                    "{service} answered {status} to {method} {path}"
                )));
            }
            Ok(String::from_utf8_lossy(&body).into_owned())
        };
        let result = tokio::time::timeout(Duration::from_secs(5), fut).await;
        let (status, result) = match result {
            Ok(r) => (seen, r),
            Err(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                Err((
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("{service} did not answer {method} {path} within 5 s"),
                )),
            ),
        };
        self.metrics
            .observe_call(callee, status.as_u16(), started.elapsed());
        result
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn config_from_env() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("PORT", "8080"),
            ("SHOP_MODE", "slow"),
            ("PAYMENT_SERVICE_PORT", "9001"),
            ("SHIPPING_SERVICE_PORT", "9002"),
        ]);
        let cfg = Config::from_env("orders", &env).unwrap();
        assert_eq!((cfg.port, cfg.mode), (8080, Mode::Slow));
        assert_eq!(cfg.downstream[1].1, "127.0.0.1:9002".parse().unwrap());
        assert!(matches!(
            Config::from_env("nope", &env),
            Err(ShopError::UnknownService(_))
        ));
        assert!(matches!(
            Config::from_env("front-end", &env),
            Err(ShopError::MissingDownstream { .. })
        ));
        let bad: HashMap<&str, &str> = HashMap::from([("PORT", "x"), ("SHOP_MODE", "weird")]);
        let err = Config::from_env("user", &bad).unwrap_err().to_string();
        assert!(err.contains("PORT") && err.contains("SHOP_MODE"), "{err}");
    }

    #[test]
    fn routes_are_bounded() {
        assert_eq!(
            route("catalogue", &Method::GET, "/catalogue/abc"),
            Some("/catalogue/{id}")
        );
        assert_eq!(
            route("catalogue", &Method::GET, "/catalogue/size"),
            Some("/catalogue/size")
        );
        assert_eq!(route("front-end", &Method::GET, "/"), Some("/"));
        assert_eq!(route("catalogue", &Method::POST, "/catalogue"), None);
        assert_eq!(route("payment", &Method::GET, "/paymentAuth"), None);
    }
}
