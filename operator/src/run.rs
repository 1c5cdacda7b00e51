//! `coffer-operator run`: health and metrics endpoints, leader election, and the
//! Bucket and AccessKey controllers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use coffer_server::meta::MetaStore;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::crd::{AccessKey, Bucket};
use crate::leader::LeaderElection;
use crate::metrics::Metrics;
use crate::{Context, Settings, access_key, bucket};

/// Everything `run` needs, from the command line.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub database_url: String,
    pub settings: Settings,
    pub listen: SocketAddr,
    /// Lease namespace and name; `None` disables leader election (one replica).
    pub lease: Option<(String, String)>,
    pub identity: String,
    /// The servers' master key: access-key secrets are sealed with it in the
    /// store. Without it secrets are written in plaintext (the servers seal them
    /// when they next start) and sealed ones cannot be read.
    pub master_key: Option<coffer_server::crypto::Key>,
}

#[derive(Clone)]
struct Health {
    metrics: Arc<Metrics>,
    store: MetaStore,
    leading: Arc<AtomicBool>,
}

/// Runs until the process is stopped or leadership is lost, with the client from
/// the environment (in-cluster service account or kubeconfig).
pub async fn run(config: RunConfig) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    run_with_client(config, client).await
}

/// [`run`] with a given Kubernetes client.
pub async fn run_with_client(config: RunConfig, client: kube::Client) -> anyhow::Result<()> {
    let mut store = connect(&config.database_url).await;
    match config.master_key.clone() {
        Some(key) => store
            .unlock(key)
            .await
            .context("cannot unlock the metadata store with the master key")?,
        None => tracing::warn!(
            "no master key (COFFER_MASTER_KEY / --master-key-file): access-key secrets \
             sealed by the servers cannot be read"
        ),
    }
    let metrics = Arc::new(Metrics::new());
    let leading = Arc::new(AtomicBool::new(false));
    let health = Health {
        metrics: metrics.clone(),
        store: store.clone(),
        leading: leading.clone(),
    };
    let app = axum::Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, "serving health and metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health server stopped");
        }
    });

    let election = config.lease.as_ref().map(|(ns, name)| {
        LeaderElection::new(
            client.clone(),
            ns,
            name,
            &config.identity,
            Duration::from_secs(15),
        )
    });
    if let Some(election) = &election {
        election.acquire().await;
    }
    leading.store(true, Ordering::SeqCst);

    let ctx = Context::new(client.clone(), store, config.settings.clone(), metrics);
    let controllers = run_controllers(client, ctx);
    match &election {
        Some(election) => {
            tokio::select! {
                () = controllers => {}
                () = election.hold() => anyhow::bail!("leadership lost; exiting so a new leader takes over"),
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            tokio::select! {
                () = controllers => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    }
    Ok(())
}

/// Both controllers until they stop (on shutdown signals handled by kube-runtime).
pub async fn run_controllers(client: kube::Client, ctx: Arc<Context>) {
    let buckets = Controller::new(
        Api::<Bucket>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .shutdown_on_signal()
    .run(bucket::reconcile, bucket::error_policy, ctx.clone())
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "bucket reconcile");
        }
    });
    let keys = Controller::new(
        Api::<AccessKey>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    // A Bucket change (ready, allowedNamespaces edited) re-runs the AccessKeys granted it.
    let granted = keys.store();
    let keys = keys
        .owns(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(access_key::ACCESS_KEY_LABEL),
        )
        .watches(
            Api::<Bucket>::all(client),
            watcher::Config::default().any_semantic(),
            move |bucket: Bucket| {
                let namespace = bucket.namespace().unwrap_or_default();
                let name = bucket.name_any();
                granted
                    .state()
                    .into_iter()
                    .filter(|key| access_key::grants_bucket(key, &namespace, &name))
                    .map(|key| ObjectRef::from(key.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(access_key::reconcile, access_key::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "access key reconcile");
            }
        });
    futures::join!(buckets, keys);
}

/// Connects to the metadata store, retrying while it is unreachable (the database
/// often starts after the operator).
async fn connect(url: &str) -> MetaStore {
    let mut delay = Duration::from_secs(1);
    loop {
        match MetaStore::connect(url).await {
            Ok(store) => return store,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "metadata store unreachable");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn ready(State(health): State<Health>) -> (StatusCode, &'static str) {
    if health.store.ping().await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metadata store unreachable",
        );
    }
    if !health.leading.load(Ordering::SeqCst) {
        // A standby is healthy; it reports ready so rollouts proceed.
        return (StatusCode::OK, "standby");
    }
    (StatusCode::OK, "ok")
}

async fn render_metrics(State(health): State<Health>) -> String {
    health.metrics.render()
}
