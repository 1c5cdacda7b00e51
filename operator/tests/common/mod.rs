//! Test harness: an in-process Kubernetes API ([`apiserver`]), a real Postgres
//! metadata store, and a real `coffer-server` on that store, so Secrets the
//! operator writes can be used with `aws-sdk-s3`.

#![allow(dead_code)]

pub mod apiserver;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_operator::crd::{AccessKey, Bucket};
use coffer_operator::metrics::Metrics;
use coffer_operator::{Context, Settings, access_key, bucket};
use coffer_server::meta::MetaStore;
use coffer_server::serve::{RunningServer, ServeConfig};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::Value;

pub const NS: &str = "team-a";

pub struct Harness {
    pub api: apiserver::ApiServer,
    pub client: kube::Client,
    pub ctx: Arc<Context>,
    pub store: MetaStore,
    pub server: Option<RunningServer>,
    /// The metadata store's URL (shared by the server and the operator).
    pub database_url: String,
}

/// The CRDs as checked in under `crds/`.
pub fn crds() -> Vec<Value> {
    let text = include_str!("../../../crds/coffer.yaml");
    text.split("\n---\n")
        .map(|doc| doc.trim_start_matches("---\n"))
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| serde_yaml::from_str(doc).expect("CRD YAML parses"))
        .collect()
}

impl Harness {
    /// Everything, with a real S3 server on a fresh Postgres database.
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    /// Everything, with the server's configuration adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> Harness {
        let url = coffer_testkit::postgres_url().await;
        let mut config = ServeConfig::new(coffer_testkit::temp_dir("operator-s3"));
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.database_url = Some(url.clone());
        tweak(&mut config);
        let server = coffer_server::serve::start(config)
            .await
            .expect("start coffer-server");
        let endpoint = server.endpoint();
        Self::with(url, endpoint, Some(server)).await
    }

    async fn with(url: String, endpoint: String, server: Option<RunningServer>) -> Harness {
        let api = apiserver::ApiServer::start(&crds()).await;
        let client = api.client();
        let mut store = MetaStore::connect(&url).await.expect("metadata store");
        // The operator uses the servers' master key, as the chart gives it.
        if let Some(key) = server.as_ref().and_then(|s| s.meta().master_key()) {
            store
                .unlock(key.clone())
                .await
                .expect("unlock with the master key");
        }
        let database_url = url.clone();
        let ctx = Context::new(
            client.clone(),
            store.clone(),
            Settings::new(endpoint, "us-east-1"),
            Arc::new(Metrics::new()),
        );
        Harness {
            api,
            client,
            ctx,
            store,
            server,
            database_url,
        }
    }

    /// The operator's context again, with these tenancy rules (what an
    /// administrator allows with the operator's flags).
    pub fn set_tenancy(&mut self, tenancy: coffer_operator::tenancy::Tenancy) {
        let mut settings = self.ctx.settings.clone();
        settings.tenancy = tenancy;
        self.ctx = Context::new(
            self.client.clone(),
            self.store.clone(),
            settings,
            Arc::new(Metrics::new()),
        );
    }

    /// The operator's context again, with workload identity trusting `issuer`.
    pub fn set_oidc_issuer(&mut self, issuer: &str) {
        let mut settings = self.ctx.settings.clone();
        settings.oidc_issuer = Some(issuer.to_owned());
        self.ctx = Context::new(
            self.client.clone(),
            self.store.clone(),
            settings,
            Arc::new(Metrics::new()),
        );
    }

    /// Credentials of the server's root key, as a Secret's environment.
    pub fn root_env(&self) -> BTreeMap<String, String> {
        let root = self.server.as_ref().expect("server").root_key().clone();
        [
            ("AWS_ACCESS_KEY_ID", root.id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", root.secret.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.ctx.settings.s3_endpoint.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// A kubeconfig file pointing at the in-process API server, for the binary.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        let path = coffer_testkit::temp_dir("kubeconfig").join("config");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\nusers:\n- name: test\n  user: {{}}\n",
            self.api.addr
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    pub fn buckets(&self) -> Api<Bucket> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn keys(&self) -> Api<AccessKey> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Creates a resource from YAML in its namespace (default `team-a`).
    pub async fn create<K>(&self, yaml: &str) -> K
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let object: K = serde_yaml::from_str(yaml).expect("manifest parses");
        let ns = object
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| NS.to_owned());
        Api::<K>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &object)
            .await
            .expect("create")
    }

    /// Runs the Bucket reconciler on the stored object until it settles (the
    /// first pass only adds the finalizer, as with the real controller).
    pub async fn reconcile_bucket(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Action, coffer_operator::Error> {
        let api: Api<Bucket> = Api::namespaced(self.client.clone(), ns);
        let mut result = None;
        for _ in 0..2 {
            let Some(object) = api.get_opt(name).await.expect("get bucket") else {
                break;
            };
            result = Some(bucket::reconcile(Arc::new(object), self.ctx.clone()).await);
        }
        result.unwrap_or(Ok(Action::await_change()))
    }

    pub async fn reconcile_key(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Action, coffer_operator::Error> {
        let api: Api<AccessKey> = Api::namespaced(self.client.clone(), ns);
        let mut result = None;
        for _ in 0..2 {
            let Some(object) = api.get_opt(name).await.expect("get access key") else {
                break;
            };
            result = Some(access_key::reconcile(Arc::new(object), self.ctx.clone()).await);
        }
        result.unwrap_or(Ok(Action::await_change()))
    }

    pub async fn delete_bucket(&self, ns: &str, name: &str) {
        Api::<Bucket>::namespaced(self.client.clone(), ns)
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete bucket");
    }

    pub async fn delete_key(&self, ns: &str, name: &str) {
        Api::<AccessKey>::namespaced(self.client.clone(), ns)
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete access key");
    }

    /// The Secret's data as strings.
    pub async fn secret_env(&self, ns: &str, name: &str) -> BTreeMap<String, String> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .expect("secret exists");
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf-8 secret value")))
            .collect()
    }

    /// The status condition `type_` of a Bucket, as (status, reason).
    pub async fn bucket_condition(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
    ) -> Option<(String, String)> {
        let bucket = Api::<Bucket>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .ok()?;
        let status = bucket.status?;
        let c = status.conditions.into_iter().find(|c| c.type_ == type_)?;
        Some((c.status, c.reason))
    }

    pub async fn key_condition(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
    ) -> Option<(String, String)> {
        let key = Api::<AccessKey>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .ok()?;
        let status = key.status?;
        let c = status.conditions.into_iter().find(|c| c.type_ == type_)?;
        Some((c.status, c.reason))
    }

    /// Events recorded about `name`, as reasons.
    pub fn event_reasons(&self, ns: &str, name: &str) -> Vec<String> {
        self.api
            .objects("events.k8s.io/v1", "events", ns)
            .iter()
            .filter(|e| e["regarding"]["name"] == name)
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }
}

/// An S3 client configured only from a Secret's environment, as a pod would be.
pub fn s3_client(env: &BTreeMap<String, String>) -> aws_sdk_s3::Client {
    let credentials = aws_credential_types::Credentials::new(
        env["AWS_ACCESS_KEY_ID"].clone(),
        env["AWS_SECRET_ACCESS_KEY"].clone(),
        None,
        None,
        "secret",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new(env["AWS_REGION"].clone()))
        .endpoint_url(env["AWS_ENDPOINT_URL"].clone())
        .credentials_provider(credentials)
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
