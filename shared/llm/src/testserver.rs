//! A scripted OpenAI-compatible chat server for tests (feature `test-support`): real HTTP on `127.0.0.1:0` that
//! answers each request with the next prepared reply (a completion, an error status, a delay, garbage) and records
//! every request so tests can check its method, path, headers and JSON body.
//!
//! ```ignore
//! let server = ScriptedServer::start(vec![Reply::status(429), Reply::chat("{\"done\":true}")]).await?;
//! let base_url = server.base_url(); // http://127.0.0.1:PORT/v1
//! ```

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

/// One prepared answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with a chat completion whose message content is `content`.
    Chat {
        /// Assistant text.
        content: String,
        /// Reported prompt tokens.
        prompt_tokens: u64,
        /// Reported completion tokens.
        completion_tokens: u64,
    },
    /// An error status with a JSON error body, and an optional `Retry-After` in seconds.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After` header value.
        retry_after: Option<u32>,
    },
    /// 200 with this raw body (not a chat completion).
    Garbage(String),
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<Reply>),
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path_and_query: String,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
}

type Responder = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
    fallback: Option<Responder>,
}

/// The running server. Dropping it stops accepting connections.
pub struct ScriptedServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

// === impl Reply ===

impl Reply {
    /// A completion with 10 prompt and 5 completion tokens.
    pub fn chat(content: impl Into<String>) -> Self {
        Reply::Chat {
            content: content.into(),
            prompt_tokens: 10,
            completion_tokens: 5,
        }
    }

    /// A completion with the given token counts.
    pub fn chat_with_usage(content: impl Into<String>, prompt_tokens: u64, completion_tokens: u64) -> Self {
        Reply::Chat {
            content: content.into(),
            prompt_tokens,
            completion_tokens,
        }
    }

    /// An error status.
    pub fn status(status: u16) -> Self {
        Reply::Status {
            status,
            retry_after: None,
        }
    }

    /// Wraps in a delay.
    pub fn delayed(self, delay: Duration) -> Self {
        Reply::Delay(delay, Box::new(self))
    }
}

// === impl RecordedRequest ===

impl RecordedRequest {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

// === impl ScriptedServer ===

impl std::fmt::Debug for ScriptedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ScriptedServer {
    /// Starts on 127.0.0.1 with a free port and the given replies, served in order.
    pub async fn start(script: Vec<Reply>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let st = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&st), req));
                    // Client disconnects (e.g. after a client-side timeout) end the connection; nothing to do.
                    if let Err(e) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!(error = %e, "Scripted server connection ended.");
                    }
                });
            }
        });
        Ok(Self { addr, state, accept })
    }

    /// Appends replies to the script.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        if let Ok(mut s) = self.state.lock() {
            s.script.extend(replies);
        }
    }

    /// Answers with `f` once the script is used up (default: HTTP 500 "script exhausted").
    pub fn set_fallback(&self, f: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) {
        if let Ok(mut s) = self.state.lock() {
            s.fallback = Some(Arc::new(f));
        }
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL for the OpenAI and other backends.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, the endpoint for the Azure backend.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().map(|s| s.requests.clone()).unwrap_or_default()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        self.state.lock().map(|s| s.requests.len()).unwrap_or_default()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    };
    let reply = match state.lock() {
        Ok(mut s) => {
            s.requests.push(recorded.clone());
            match s.script.pop_front() {
                Some(r) => r,
                None => match &s.fallback {
                    Some(f) => f(&recorded),
                    None => Reply::Status {
                        status: 500,
                        retry_after: None,
                    },
                },
            }
        }
        Err(_) => Reply::status(500),
    };
    Ok(render(reply).await)
}

async fn render(mut reply: Reply) -> Response<Full<Bytes>> {
    while let Reply::Delay(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    let (status, body, retry_after) = match reply {
        Reply::Chat {
            content,
            prompt_tokens,
            completion_tokens,
        } => {
            let body = serde_json::json!({
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 0,
                "model": "scripted",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            });
            (200, body.to_string(), None)
        }
        Reply::Status { status, retry_after } => {
            let body = serde_json::json!({"error": {"message": format!("scripted status {status}"), "code": status}});
            (status, body.to_string(), retry_after)
        }
        Reply::Garbage(g) => (200, g, None),
        Reply::Delay(..) => (500, String::new(), None),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(secs));
    }
    resp
}
