//! Where peers are: component → HTTPS base URL, learned from registrations and heartbeats on the bus broadcast
//! (and static entries from the command line). A wrong or forged URL cannot impersonate a peer: the TLS client
//! accepts only a certificate naming the component it asked for.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use acv_bus::{Bus, BusError};
use acv_protocol::{Address, Body, ComponentName};
use tokio_util::sync::CancellationToken;

/// Known peer endpoints.
#[derive(Debug, Clone, Default)]
pub struct PeerDirectory {
    inner: Arc<RwLock<HashMap<ComponentName, String>>>,
}

/// Why a peer URL was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("bad peer URL {url:?}: {reason}")]
pub struct BadPeerUrl {
    url: String,
    reason: &'static str,
}

/// Checks a peer URL: `https://host:port` with nothing after the authority but an optional `/`.
pub fn parse_peer_url(url: &str) -> Result<http::uri::Authority, BadPeerUrl> {
    let bad = |reason| BadPeerUrl {
        url: url.to_owned(),
        reason,
    };
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URI"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("the scheme must be https"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("only https://host:port is expected"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
    if authority.port_u16().is_none() {
        return Err(bad("the port is required"));
    }
    Ok(authority)
}

impl PeerDirectory {
    /// Records (or replaces) `component`'s URL; invalid URLs are ignored with a warning.
    pub fn insert(&self, component: ComponentName, url: &str) {
        if let Err(error) = parse_peer_url(url) {
            tracing::warn!(%component, %error, "Ignored a peer announcement.");
            return;
        }
        if let Ok(mut m) = self.inner.write() {
            let old = m.insert(component.clone(), url.to_owned());
            if old.as_deref() != Some(url) {
                tracing::info!(%component, url, "Peer endpoint learned.");
            }
        }
    }

    /// The URL of `component`, if known.
    pub fn get(&self, component: &ComponentName) -> Option<String> {
        self.inner.read().ok().and_then(|m| m.get(component).cloned())
    }

    /// Follows the bus broadcast until `shutdown`, learning peers from registrations and heartbeats (`me` is
    /// skipped). Returns once subscribed; the returned future does the following.
    pub async fn follow(
        &self,
        bus: Arc<dyn Bus>,
        me: ComponentName,
        shutdown: CancellationToken,
    ) -> Result<impl Future<Output = ()> + Send + 'static, BusError> {
        let mut sub = bus.subscribe(&Address::Broadcast).await?;
        let dir = self.clone();
        Ok(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = sub.next() => n,
                };
                let delivery = match next {
                    None => return,
                    Some(Err(error)) => {
                        tracing::debug!(%error, "Broadcast error.");
                        continue;
                    }
                    Some(Ok(d)) => d,
                };
                let announced = match &delivery.envelope.body {
                    Body::Register(r) => r.peer_url.as_ref().map(|u| (r.component.clone(), u.clone())),
                    Body::Heartbeat(h) => h.peer_url.as_ref().map(|u| (h.component.clone(), u.clone())),
                    _ => None,
                };
                // Only a component's own sidecar may announce it (the bus verified the sender).
                if let Some((component, url)) = announced
                    && component != me
                    && delivery.envelope.from == Address::Component(component.clone())
                {
                    dir.insert(component, &url);
                }
                if let Err(error) = delivery.ack().await {
                    tracing::debug!(%error, "Broadcast ack failed.");
                }
            }
        })
    }
}
