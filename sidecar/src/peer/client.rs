//! The peer API client, behind `acv.ask_peer`: finds the peer in the [`PeerDirectory`], connects with mutual TLS
//! (the server must prove it is that component), continues the current [`Chain`] of peer calls, and returns the
//! answer. Refusals by the peer come back as [`HostErrorKind::Refused`] with the peer's reason.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use acv_protocol::{ComponentName, PeerAnswer, PeerOutcome, PeerRequest, peer::ASK_PATH};
use acv_sandbox::{HostError, HostErrorKind};
use acv_telemetry::metrics::{CounterName, HistogramName, count, observe};
use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{
    directory::{PeerDirectory, parse_peer_url},
    service::{DEFAULT_ASK_TIMEOUT, current_chain, outcome_label},
};
use crate::caps::Peers;

/// Largest answer accepted, in bytes.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why a peer could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No URL is known for the peer.
    #[error("no peer endpoint known for {0} (it has not announced one on the bus)")]
    Unknown(ComponentName),
    /// Connecting, the TLS handshake (e.g. the server is not who it should be) or HTTP failed.
    #[error("cannot reach {peer}: {reason}")]
    Transport {
        /// The peer.
        peer: ComponentName,
        /// What failed.
        reason: String,
    },
    /// The peer did not answer in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(ComponentName, Duration),
    /// The peer answered something that is not a peer answer.
    #[error("{peer} answered HTTP {status} with an unreadable body: {reason}")]
    BadAnswer {
        /// The peer.
        peer: ComponentName,
        /// HTTP status.
        status: u16,
        /// Parse error.
        reason: String,
    },
}

/// Asks peers on behalf of one component.
pub struct PeerClient {
    me: ComponentName,
    tls: TlsConnector,
    directory: PeerDirectory,
    timeout: Duration,
}

impl PeerClient {
    /// A client for `me`, with the TLS config from [`acv_pki::client_config`].
    pub fn new(me: ComponentName, tls: Arc<rustls::ClientConfig>, directory: PeerDirectory) -> Self {
        Self {
            me,
            tls: TlsConnector::from(tls),
            directory,
            timeout: DEFAULT_ASK_TIMEOUT,
        }
    }

    /// Another time limit per call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Asks `peer` `question`. Any answer the peer gives (refusals included) is `Ok`; the HTTP status is returned
    /// next to it.
    pub async fn request(
        &self,
        peer: &ComponentName,
        question: &str,
    ) -> Result<(u16, PeerAnswer), PeerError> {
        let request_id = uuid::Uuid::now_v7().to_string();
        let (origin, hops) = match current_chain() {
            Some(c) => (c.origin, c.hops + 1),
            None => (request_id.clone(), 1),
        };
        let req = PeerRequest {
            request_id,
            origin,
            from: self.me.clone(),
            to: peer.clone(),
            question: question.to_owned(),
            hops,
        };
        self.send(&req).await
    }

    /// Sends a prepared request (tests use this to send what a well-behaved client would not).
    pub async fn send(&self, req: &PeerRequest) -> Result<(u16, PeerAnswer), PeerError> {
        let peer = &req.to;
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.exchange(req)).await {
            Ok(r) => r,
            Err(_) => Err(PeerError::Timeout(peer.clone(), self.timeout)),
        };
        let outcome = match &result {
            Ok((_, a)) => outcome_label(a.outcome),
            Err(_) => "failed",
        };
        count(
            CounterName::PeerCalls,
            &[("side", "client"), ("outcome", outcome)],
            1,
        );
        observe(
            HistogramName::PeerRoundTripSeconds,
            &[],
            started.elapsed().as_secs_f64(),
        );
        match &result {
            Ok((status, a)) => tracing::info!(target: "acv::audit", side = "client", component = %self.me,
                peer = %peer, request_id = %req.request_id, origin = %req.origin, hops = req.hops,
                question = %req.question, status, outcome, message = %a.message, "Peer call made."),
            Err(error) => tracing::warn!(target: "acv::audit", side = "client", component = %self.me,
                peer = %peer, request_id = %req.request_id, origin = %req.origin, hops = req.hops,
                question = %req.question, %error, outcome, "Peer call failed."),
        }
        result
    }

    async fn exchange(&self, req: &PeerRequest) -> Result<(u16, PeerAnswer), PeerError> {
        let peer = &req.to;
        let url = self
            .directory
            .get(peer)
            .ok_or_else(|| PeerError::Unknown(peer.clone()))?;
        let transport = |reason: String| PeerError::Transport {
            peer: peer.clone(),
            reason,
        };
        let authority = parse_peer_url(&url).map_err(|e| transport(e.to_string()))?;
        let port = authority.port_u16().unwrap_or(443);
        let tcp = TcpStream::connect((authority.host(), port))
            .await
            .map_err(|e| transport(format!("connect {url}: {e}")))?;
        tcp.set_nodelay(true).ok();
        let tls = self
            .tls
            .connect(acv_pki::tls::server_name(peer), tcp)
            .await
            .map_err(|e| transport(format!("TLS handshake with {url}: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport(format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "Peer client connection ended.");
            }
        });
        let body = serde_json::to_vec(req).map_err(|e| transport(e.to_string()))?;
        let http_req = Request::post(ASK_PATH)
            .header(header::HOST, authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(e.to_string()))?;
        let resp = sender
            .send_request(http_req)
            .await
            .map_err(|e| transport(format!("HTTP: {e}")))?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .to_bytes();
        let answer: PeerAnswer = serde_json::from_slice(&bytes).map_err(|e| PeerError::BadAnswer {
            peer: peer.clone(),
            status,
            reason: e.to_string(),
        })?;
        Ok((status, answer))
    }
}

#[async_trait]
impl Peers for PeerClient {
    async fn ask(
        &self,
        from: &ComponentName,
        peer: &ComponentName,
        question: &str,
    ) -> Result<String, HostError> {
        if from != &self.me {
            return Err(HostError::new(
                HostErrorKind::Refused,
                format!("this sidecar speaks for {}, not {from}", self.me),
            ));
        }
        match self.request(peer, question).await {
            Ok((_, a)) if a.outcome == PeerOutcome::Refused => {
                Err(HostError::new(HostErrorKind::Refused, a.message))
            }
            Ok((_, a)) => {
                serde_json::to_string(&a).map_err(|e| HostError::new(HostErrorKind::Backend, e.to_string()))
            }
            Err(e @ PeerError::Unknown(_)) => Err(HostError::new(HostErrorKind::NotFound, e.to_string())),
            Err(e) => Err(HostError::unavailable(e.to_string())),
        }
    }
}
