//! The manager on Kubernetes: the Goal controller (Goal resources → this manager's goals, state → `.status`) and
//! the sidecar-injection webhook (HTTPS on its own port). Both are off unless asked for (`--goal-controller`,
//! `--webhook-addr` with `--webhook-tls-dir`); the logic lives in `acv_kube::{controller, webhook}`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use acv_kube::controller::{ControllerOptions, GoalSink, GoalView, SinkError};
use acv_kube::webhook::{InjectorConfig, server};
use acv_protocol::GoalResource;
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, EngineError};
use crate::measure::Measurer;

/// Command-line flags of `acv-manager serve` for Kubernetes.
#[derive(Debug, Clone, clap::Args)]
pub struct K8sArgs {
    /// Serve the sidecar-injection webhook (HTTPS) on this address (off when unset).
    #[arg(long, env = "ACV_MANAGER_WEBHOOK_ADDR", requires = "webhook_tls_dir")]
    pub webhook_addr: Option<SocketAddr>,
    /// Directory with the webhook's tls.crt and tls.key (a mounted cert-manager Secret).
    #[arg(long, env = "ACV_MANAGER_WEBHOOK_TLS_DIR", requires = "webhook_addr")]
    pub webhook_tls_dir: Option<PathBuf>,
    /// Image of the injected sidecar.
    #[arg(long, env = "ACV_MANAGER_INJECT_IMAGE", default_value = concat!("acv/sidecar:", env!("CARGO_PKG_VERSION")))]
    pub inject_image: String,
    /// Extra env of injected sidecars, KEY=VALUE (repeatable, or comma-separated), e.g. the bus URL.
    #[arg(long, env = "ACV_MANAGER_INJECT_ENV", value_delimiter = ',', value_parser = parse_env_pair)]
    pub inject_env: Vec<(String, String)>,
    /// Run the Goal controller: Goal resources become goals, their state goes to `.status` (in-cluster config).
    #[arg(long, env = "ACV_MANAGER_GOAL_CONTROLLER")]
    pub goal_controller: bool,
    /// Watch Goals in this namespace only (default: all namespaces).
    #[arg(long, env = "ACV_MANAGER_GOAL_NAMESPACE", requires = "goal_controller")]
    pub goal_namespace: Option<String>,
    /// How often the Goal controller copies the state of an unfinished goal to its `.status`.
    #[arg(long, env = "ACV_MANAGER_GOAL_POLL", default_value = "5s", value_parser = parse_poll)]
    pub goal_poll: std::time::Duration,
}

fn parse_poll(s: &str) -> Result<std::time::Duration, String> {
    match acv_core::env::parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    let valid = !k.is_empty()
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !k.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(format!("{k:?} is not an environment variable name"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// The engine as the Goal controller's sink: `create` is idempotent for the same name and spec, so every
/// reconcile can call it and read the current state back.
pub struct EngineSink(pub Arc<Engine>);

#[async_trait::async_trait]
impl GoalSink for EngineSink {
    async fn apply(&self, goal: GoalResource) -> Result<GoalView, SinkError> {
        let record = match self.0.create(goal).await {
            Ok(r) => r,
            Err(e @ (EngineError::Invalid(_) | EngineError::Refused(_))) => {
                return Err(SinkError::Refused(e.to_string()));
            }
            Err(EngineError::Conflict(id)) => {
                return Err(SinkError::Refused(format!(
                    "goal {id:?} was accepted with a different spec and goals do not change: delete this Goal and \
                     create one with a new name"
                )));
            }
            Err(e) => return Err(SinkError::Unavailable(e.to_string())),
        };
        let events = self
            .0
            .store()
            .events(&record.id, 0)
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        Ok(GoalView {
            events: events.len() as u64,
            last_event: events.last().map(|e| e.message.clone()),
            record,
        })
    }
}

/// Measures components through Kubernetes (Deployment status) and Prometheus (metrics), read-only: `--kube`.
/// The components are Deployments in one namespace (`ACV_KUBE_NAMESPACE`, else the client's default); the
/// Prometheus URL and request-metric names are the sidecars' `ACV_KUBE_*` keys (see docs/kubernetes.md).
pub struct KubeMeasurer {
    client: kube::Client,
    namespace: String,
    options: acv_kube::KubeOptions,
    window_secs: f64,
}

impl KubeMeasurer {
    /// Reads the `ACV_KUBE_*` keys and connects with the ambient configuration (in-cluster, else `KUBECONFIG`).
    pub async fn connect(window_secs: f64) -> anyhow::Result<Self> {
        let env = acv_core::env::ProcessEnv;
        let mut options = acv_kube::KubeOptions::from_env(&env).context("ACV_KUBE_* configuration")?;
        // One manager measures many components: each is the Deployment (and container) of its own name.
        options.deployment = None;
        options.container = None;
        if options.prometheus_url.is_none() {
            tracing::warn!("--kube without ACV_KUBE_PROMETHEUS_URL: only replica status can be measured.");
        }
        acv_kube::install_crypto_provider();
        let client = kube::Client::try_default()
            .await
            .context("Kubernetes client for measuring (in-cluster config or KUBECONFIG)")?;
        let namespace = acv_core::env::Strings::get(&env, acv_kube::ENV_NAMESPACE)
            .unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(Self::new(client, namespace, options, window_secs))
    }

    /// A measurer over `client` (tests pass a mocked one).
    pub fn new(
        client: kube::Client,
        namespace: String,
        options: acv_kube::KubeOptions,
        window_secs: f64,
    ) -> Self {
        Self {
            client,
            namespace,
            options,
            window_secs,
        }
    }
}

#[async_trait::async_trait]
impl Measurer for KubeMeasurer {
    async fn measure(
        &self,
        components: &[acv_protocol::ComponentName],
    ) -> Vec<(acv_protocol::ComponentName, acv_protocol::Measurement)> {
        let mut out = Vec::with_capacity(components.len());
        for c in components {
            let cluster = match acv_kube::KubeCluster::new(
                self.client.clone(),
                self.namespace.clone(),
                c.clone(),
                self.options.clone(),
            ) {
                Ok(k) => k,
                Err(error) => {
                    tracing::warn!(%error, "Cannot measure through Kubernetes.");
                    return out;
                }
            };
            if let Some(m) = crate::measure::measure_one(&cluster, c, self.window_secs).await {
                out.push((c.clone(), m));
            }
        }
        out
    }
}

/// What [`spawn`] started.
#[derive(Debug, Default)]
pub struct K8sTasks {
    /// The webhook's bound address, when it runs.
    pub webhook_addr: Option<SocketAddr>,
    /// The running tasks; they end on `shutdown`.
    pub tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// Starts what `args` asks for, with the ambient Kubernetes configuration (in-cluster, else `KUBECONFIG`) for the
/// Goal controller. Fails when the webhook's TLS files cannot be used or its address bound, and when the Goal
/// controller cannot list goals (no CRD, no RBAC), so that a misconfigured manager stops at startup.
pub async fn spawn(
    args: K8sArgs,
    engine: Arc<Engine>,
    shutdown: CancellationToken,
) -> anyhow::Result<K8sTasks> {
    let client = if args.goal_controller {
        acv_kube::install_crypto_provider();
        Some(
            kube::Client::try_default()
                .await
                .context("Kubernetes client for the Goal controller (in-cluster config or KUBECONFIG)")?,
        )
    } else {
        None
    };
    spawn_with(args, engine, client, shutdown).await
}

/// [`spawn`] with the Goal controller's client given (tests pass one over a mocked API server). `client` is used
/// only with `--goal-controller`, which needs it.
pub async fn spawn_with(
    args: K8sArgs,
    engine: Arc<Engine>,
    client: Option<kube::Client>,
    shutdown: CancellationToken,
) -> anyhow::Result<K8sTasks> {
    // The controller's check first: nothing is started when it fails.
    let controller = if args.goal_controller {
        let client = client.context("the Goal controller needs a Kubernetes client")?;
        let options = ControllerOptions {
            namespace: args.goal_namespace.clone(),
            poll: args.goal_poll,
            ..ControllerOptions::default()
        };
        acv_kube::controller::check(&client, &options)
            .await
            .context("Goal controller")?;
        Some((client, options))
    } else {
        None
    };
    let mut started = K8sTasks::default();
    if let (Some(addr), Some(dir)) = (args.webhook_addr, &args.webhook_tls_dir) {
        let tls = server::load_tls(dir)?;
        let config = InjectorConfig {
            image: args.inject_image.clone(),
            env: args.inject_env.clone(),
            ..InjectorConfig::default()
        };
        let (bound, fut) =
            server::bind(addr, tls, server::router(Arc::new(config)), shutdown.clone()).await?;
        tracing::info!(addr = %bound, image = %args.inject_image, "Sidecar-injection webhook listening (HTTPS).");
        started.webhook_addr = Some(bound);
        started.tasks.push(tokio::spawn(async move {
            fut.await;
            Ok(())
        }));
    }
    if let Some((client, options)) = controller {
        tracing::info!(namespace = ?options.namespace, "Goal controller starting.");
        let sink: Arc<dyn GoalSink> = Arc::new(EngineSink(engine));
        started.tasks.push(tokio::spawn(async move {
            acv_kube::controller::run(client, sink, options, shutdown).await;
            Ok(())
        }));
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_env_pairs_are_checked() {
        assert_eq!(
            parse_env_pair("ACV_NATS_URL=nats://nats:4222").unwrap(),
            ("ACV_NATS_URL".into(), "nats://nats:4222".into())
        );
        assert_eq!(parse_env_pair("A=").unwrap(), ("A".into(), String::new()));
        assert!(parse_env_pair("no-equals").is_err());
        assert!(parse_env_pair("BAD-KEY=1").is_err());
        assert!(parse_env_pair("1X=1").is_err());
        assert!(parse_env_pair("=1").is_err());
    }
}
