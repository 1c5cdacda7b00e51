//! What every reconciliation needs: the Kubernetes client, the metadata store,
//! the operator's settings, the event recorder, metrics and per-object backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_server::meta::MetaStore;
use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::Metrics;
use crate::tenancy::Tenancy;

/// Operator settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The S3 endpoint URL written into Secrets (`AWS_ENDPOINT_URL`).
    pub s3_endpoint: String,
    /// Region written into Secrets (`AWS_REGION`) and given to new buckets.
    pub region: String,
    /// PEM CA bundle of the endpoint, when it is TLS with a private CA.
    pub ca_bundle: Option<String>,
    /// How often a healthy resource is reconciled again (usage refresh, drift repair).
    pub resync: Duration,
    /// What an administrator allows namespaces beyond the strict defaults.
    pub tenancy: Tenancy,
    /// The ServiceAccount token issuer Coffer's STS trusts (the server's
    /// `--oidc-issuer`); workload identity is unavailable without it.
    pub oidc_issuer: Option<String>,
    /// The audience pods request for their projected token.
    pub sts_audience: String,
}

impl Settings {
    pub fn new(s3_endpoint: impl Into<String>, region: impl Into<String>) -> Self {
        Settings {
            s3_endpoint: s3_endpoint.into(),
            region: region.into(),
            ca_bundle: None,
            resync: Duration::from_secs(300),
            tenancy: Tenancy::default(),
            oidc_issuer: None,
            sts_audience: "sts.coffer.dev".to_owned(),
        }
    }
}

pub struct Context {
    pub client: kube::Client,
    pub store: MetaStore,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        store: MetaStore,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: crate::MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            store,
            settings,
            metrics,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_after(*n)
    }

    /// Forgets the failures of `key` after a successful reconciliation.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }
}

/// Delay after `failures` consecutive failures: 5s, 10s, 20s, ... capped at 5 minutes.
pub fn backoff_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    Duration::from_secs((5u64 << doublings).min(300))
}

impl Context {
    /// Records an Event about an object; failing to record one is logged, not fatal.
    /// Owned arguments keep the future `Send + 'static` inside `finalizer()`.
    pub fn publish(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        type_: kube::runtime::events::EventType,
        reason: &str,
        note: String,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let recorder = self.recorder.clone();
        let reference = reference.clone();
        let event = kube::runtime::events::Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, reason = %event.reason, "cannot record event");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_after;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff_after(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff_after(u32::MAX), Duration::from_secs(300));
    }
}
