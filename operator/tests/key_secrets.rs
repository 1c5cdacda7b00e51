//! The key Secrets the chart no longer renders: `coffer-operator ensure-secrets`
//! (the chart's hook Job) against the in-process Kubernetes API creates a missing
//! one once and never replaces or edits one that exists.

mod common;

use std::collections::BTreeMap;

use coffer_operator::secrets::{EnsureError, GeneratedSecret, Outcome, ensure};
use coffer_server::crypto::Key;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use common::apiserver::ApiServer;

const NS: &str = "coffer";

fn wanted(name: &str, key: &str) -> GeneratedSecret {
    GeneratedSecret {
        name: name.to_owned(),
        key: key.to_owned(),
    }
}

async fn create_secret(api: &Api<Secret>, name: &str, data: &[(&str, &str)]) -> Secret {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    };
    api.create(&PostParams::default(), &secret).await.unwrap()
}

fn value(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn missing_key_secrets_are_created_once_and_existing_ones_never_change() {
    let server = ApiServer::start(&common::crds()).await;
    let secrets: Api<Secret> = Api::namespaced(server.client(), NS);
    let kept = create_secret(&secrets, "coffer-cluster", &[("secret", "the-live-secret")]).await;
    let wanted = [
        wanted("coffer-master-key", "masterKey"),
        wanted("coffer-cluster", "secret"),
    ];

    let outcomes = ensure(server.client(), NS, &wanted).await.unwrap();
    assert_eq!(
        outcomes,
        vec![
            ("coffer-master-key".to_owned(), Outcome::Created),
            ("coffer-cluster".to_owned(), Outcome::Kept),
        ]
    );
    let master = secrets.get("coffer-master-key").await.unwrap();
    let key = value(&master, "masterKey");
    Key::from_base64(&key).expect("a usable master key");
    let cluster = secrets.get("coffer-cluster").await.unwrap();
    assert_eq!(value(&cluster, "secret"), "the-live-secret");
    assert_eq!(
        cluster.metadata.resource_version,
        kept.metadata.resource_version
    );

    // Every later run (each helm upgrade, each Argo CD sync) keeps both.
    let again = ensure(server.client(), NS, &wanted).await.unwrap();
    assert!(again.iter().all(|(_, o)| *o == Outcome::Kept), "{again:?}");
    let master_after = secrets.get("coffer-master-key").await.unwrap();
    assert_eq!(value(&master_after, "masterKey"), key);
    assert_eq!(
        master_after.metadata.resource_version,
        master.metadata.resource_version
    );
}

#[tokio::test]
async fn a_secret_without_its_key_is_reported_not_repaired() {
    let server = ApiServer::start(&common::crds()).await;
    let secrets: Api<Secret> = Api::namespaced(server.client(), NS);
    let before = create_secret(&secrets, "coffer-master-key", &[("other", "x")]).await;
    let result = ensure(
        server.client(),
        NS,
        &[wanted("coffer-master-key", "masterKey")],
    )
    .await;
    assert!(
        matches!(result, Err(EnsureError::Incomplete { .. })),
        "{result:?}"
    );
    let after = secrets.get("coffer-master-key").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert!(!after.data.unwrap().contains_key("masterKey"));
}

#[tokio::test]
async fn the_hook_command_creates_what_is_missing_and_prints_no_key_material() {
    let server = ApiServer::start(&common::crds()).await;
    let dir = coffer_testkit::temp_dir("kubeconfig");
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\nusers:\n- name: test\n  user: {{}}\n",
            server.addr
        ),
    )
    .unwrap();
    // Async, so the API server on this runtime keeps answering the binary.
    let run = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_coffer-operator"))
            .args([
                "ensure-secrets",
                "--namespace",
                NS,
                "--master-key-secret",
                "coffer-master-key",
                "--cluster-secret",
                "coffer-cluster",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .output()
    };
    let first = run().await.unwrap();
    assert!(first.status.success(), "{first:?}");
    let secrets: Api<Secret> = Api::namespaced(server.client(), NS);
    let master = value(
        &secrets.get("coffer-master-key").await.unwrap(),
        "masterKey",
    );
    let cluster = value(&secrets.get("coffer-cluster").await.unwrap(), "secret");
    assert_ne!(master, cluster);
    let second = run().await.unwrap();
    assert!(second.status.success(), "{second:?}");
    assert_eq!(
        value(
            &secrets.get("coffer-master-key").await.unwrap(),
            "masterKey"
        ),
        master
    );
    for output in [&first, &second] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !text.contains(&master) && !text.contains(&cluster),
            "{text}"
        );
    }
}
