//! The real controllers (watches, queues, owned Secrets) converge against the
//! in-process Kubernetes API; two replicas elect one leader through a Lease.

mod common;

use std::time::Duration;

use coffer_operator::crd::{AccessKey, Bucket};
use coffer_operator::leader::LeaderElection;
use common::{Harness, NS, s3_client};
use kube::api::DeleteParams;

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn controllers_converge_from_watch_events() {
    let h = Harness::start().await;
    let controllers = tokio::spawn(coffer_operator::run::run_controllers(
        h.client.clone(),
        h.ctx.clone(),
    ));

    h.create::<Bucket>(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: watched\n  namespace: {NS}\nspec:\n  deletionPolicy: Delete\n"
    ))
    .await;
    // Created before its Bucket is ready: the key waits, then converges.
    h.create::<AccessKey>(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: AccessKey\nmetadata:\n  name: watched\n  namespace: {NS}\nspec:\n  buckets:\n  - name: watched\n    access: ReadWrite\n"
    ))
    .await;
    eventually("AccessKey Ready", || async {
        h.key_condition(NS, "watched", "Ready")
            .await
            .is_some_and(|(s, _)| s == "True")
    })
    .await;
    let env = h.secret_env(NS, "watched").await;
    s3_client(&env)
        .put_object()
        .bucket("team-a.watched")
        .key("k")
        .body(b"v".to_vec().into())
        .send()
        .await
        .expect("credentials from the controller work");

    // A deleted Secret is an event on an owned object: restored without a resync.
    h.secrets()
        .delete("watched", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("Secret restored", || async {
        h.secrets()
            .get_opt("watched")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    assert_eq!(h.secret_env(NS, "watched").await, env);

    // Deleting the resources runs the finalizers.
    h.keys()
        .delete("watched", &DeleteParams::default())
        .await
        .expect("delete key");
    eventually("AccessKey gone", || async {
        h.keys().get_opt("watched").await.ok().flatten().is_none()
    })
    .await;
    h.store
        .delete_object("team-a.watched", "k")
        .await
        .expect("empty the bucket");
    h.buckets()
        .delete("watched", &DeleteParams::default())
        .await
        .expect("delete bucket");
    eventually("Bucket gone", || async {
        h.buckets()
            .get_opt("watched")
            .await
            .ok()
            .flatten()
            .is_none()
    })
    .await;
    assert!(
        h.store
            .get_bucket("team-a.watched")
            .await
            .expect("store")
            .is_none()
    );
    controllers.abort();
}

#[tokio::test]
async fn only_one_replica_holds_the_lease_until_it_expires() {
    let api = common::apiserver::ApiServer::start(&[]).await;
    let lease = Duration::from_secs(1);
    let a = LeaderElection::new(
        api.client(),
        "coffer",
        "coffer-operator",
        "replica-a",
        lease,
    );
    let b = LeaderElection::new(
        api.client(),
        "coffer",
        "coffer-operator",
        "replica-b",
        lease,
    );
    assert!(
        a.try_acquire_or_renew().await.expect("a"),
        "first replica leads"
    );
    assert!(
        !b.try_acquire_or_renew().await.expect("b"),
        "second replica waits"
    );
    assert!(a.try_acquire_or_renew().await.expect("a renews"));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        b.try_acquire_or_renew().await.expect("b"),
        "an expired lease is taken over"
    );
    assert!(
        !a.try_acquire_or_renew().await.expect("a"),
        "the old leader does not take it back"
    );
    let stored = api.objects("coordination.k8s.io/v1", "leases", "coffer");
    assert_eq!(stored[0]["spec"]["holderIdentity"], "replica-b");
    assert_eq!(stored[0]["spec"]["leaseTransitions"], 1);
}

/// `coffer-operator run` as wired for production: it takes the Lease, serves
/// health and metrics, and its controllers provision what is applied.
#[tokio::test]
async fn run_serves_health_and_metrics_and_takes_the_lease() {
    use coffer_operator::Settings;
    use coffer_operator::run::{RunConfig, run_with_client};

    let h = Harness::start().await;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let config = RunConfig {
        database_url: h.database_url.clone(),
        settings: Settings::new(h.ctx.settings.s3_endpoint.clone(), "us-east-1"),
        listen,
        lease: Some(("coffer".into(), "coffer-operator".into())),
        identity: "replica-under-test".into(),
        master_key: h.store.master_key().cloned(),
    };
    let operator = tokio::spawn(run_with_client(config, h.client.clone()));
    let base = format!("http://{listen}");
    eventually("ready", || async {
        reqwest::get(format!("{base}/health/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let live = reqwest::get(format!("{base}/health/live"))
        .await
        .expect("live");
    assert!(live.status().is_success());
    eventually("lease held", || async {
        h.api
            .objects("coordination.k8s.io/v1", "leases", "coffer")
            .first()
            .is_some_and(|l| l["spec"]["holderIdentity"] == "replica-under-test")
    })
    .await;

    h.create::<Bucket>(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: metered\n  namespace: {NS}\nspec: {{}}\n"
    ))
    .await;
    eventually("Bucket Ready", || async {
        h.bucket_condition(NS, "metered", "Ready")
            .await
            .is_some_and(|(s, _)| s == "True")
    })
    .await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(r#"coffer_operator_reconciliations_total{kind="Bucket"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("coffer_operator_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );
    operator.abort();
}

/// The `coffer-operator` binary itself: flags from the environment, a kubeconfig,
/// JSON logs — and the Secret it writes works with aws-sdk-s3.
#[tokio::test]
async fn the_binary_provisions_from_its_environment() {
    let h = Harness::start().await;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coffer-operator"))
        .arg("run")
        .env("KUBECONFIG", h.kubeconfig())
        .env("COFFER_DATABASE_URL", &h.database_url)
        .env("COFFER_S3_ENDPOINT", &h.ctx.settings.s3_endpoint)
        .env("COFFER_REGION", "us-east-1")
        .env("COFFER_OPERATOR_LISTEN", listen.to_string())
        .env("COFFER_LEASE_NAMESPACE", "coffer")
        .env("POD_NAME", "coffer-operator-0")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start coffer-operator");

    h.create::<Bucket>(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: bin\n  namespace: {NS}\nspec: {{}}\n"
    ))
    .await;
    h.create::<AccessKey>(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: AccessKey\nmetadata:\n  name: bin\n  namespace: {NS}\nspec:\n  buckets:\n  - name: bin\n    access: ReadWrite\n"
    ))
    .await;
    eventually("AccessKey Ready from the binary", || async {
        h.key_condition(NS, "bin", "Ready")
            .await
            .is_some_and(|(s, _)| s == "True")
    })
    .await;
    let env = h.secret_env(NS, "bin").await;
    s3_client(&env)
        .put_object()
        .bucket("team-a.bin")
        .key("from-binary")
        .body(b"ok".to_vec().into())
        .send()
        .await
        .expect("credentials written by the binary work");
    let lease = h.api.objects("coordination.k8s.io/v1", "leases", "coffer");
    assert_eq!(lease[0]["spec"]["holderIdentity"], "coffer-operator-0");

    child.start_kill().expect("stop");
    let output = child.wait_with_output().await.expect("output");
    let logs = String::from_utf8_lossy(&output.stdout);
    let first = logs.lines().next().expect("the binary logs");
    let line: serde_json::Value = serde_json::from_str(first).expect("logs are JSON lines");
    assert!(
        line["level"].is_string() && line["fields"].is_object(),
        "{first}"
    );
}
