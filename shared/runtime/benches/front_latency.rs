//! Added latency of the local runtime's round-robin front: the same small GET sent sequentially to a replica
//! directly and through the front, on 127.0.0.1. Prints p50/p99 of both and the difference.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acv_runtime::front::{FrontState, serve};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const WARMUP: usize = 300;
const REQUESTS: usize = 5000;

async fn replica() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            s.set_nodelay(true).ok();
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}"))))
                });
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await
                    .ok();
            });
        }
    });
    Ok(addr)
}

async fn one(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    uri: &hyper::Uri,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let resp = client.get(uri.clone()).await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    resp.into_body().collect().await?;
    Ok(t.elapsed().as_secs_f64() * 1e6)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = replica().await?;
    let b = replica().await?;
    let state = Arc::new(FrontState::default());
    state.set_backends(vec![a, b]);
    let front = TcpListener::bind("127.0.0.1:0").await?;
    let front_addr = front.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(serve(front, Arc::clone(&state), stop.clone()));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();

    // Interleaved (direct, front, direct, front, ...) so both see the same background noise on a shared machine.
    let direct: hyper::Uri = format!("http://{a}/catalogue").parse()?;
    let via: hyper::Uri = format!("http://{front_addr}/catalogue").parse()?;
    for _ in 0..WARMUP {
        one(&client, &direct).await?;
        one(&client, &via).await?;
    }
    let (mut d, mut f) = (Vec::with_capacity(REQUESTS), Vec::with_capacity(REQUESTS));
    for _ in 0..REQUESTS {
        d.push(one(&client, &direct).await?);
        f.push(one(&client, &via).await?);
    }
    stop.cancel();
    d.sort_by(f64::total_cmp);
    f.sort_by(f64::total_cmp);
    let (d50, d90, d99) = (quantile(&d, 0.5), quantile(&d, 0.9), quantile(&d, 0.99));
    let (f50, f90, f99) = (quantile(&f, 0.5), quantile(&f, 0.9), quantile(&f, 0.99));
    println!(
        "front_latency: {REQUESTS} interleaved sequential GET pairs on 127.0.0.1 (keep-alive), 2 replicas behind the front"
    );
    println!("  direct to replica : p50 {d50:8.1} us   p90 {d90:8.1} us   p99 {d99:8.1} us");
    println!("  via round-robin   : p50 {f50:8.1} us   p90 {f90:8.1} us   p99 {f99:8.1} us");
    println!(
        "  added by the front: p50 {:8.1} us   p90 {:8.1} us   p99 {:8.1} us",
        f50 - d50,
        f90 - d90,
        f99 - d99
    );
    Ok(())
}
