//! The reconcilers against the in-process Kubernetes API, a real Postgres metadata
//! store and a real coffer-server: Secrets must hold credentials that work.

mod common;

use std::time::Duration;

use coffer_operator::crd::{AccessKey, Bucket};
use coffer_server::meta::NewBucket;
use common::{Harness, NS, s3_client};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn bucket_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n{extra}"
    )
}

fn key_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: AccessKey\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n{spec}"
    )
}

async fn put(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &str,
) -> Result<(), String> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{:?}", aws_sdk_s3::error::DisplayErrorContext(e)))
}

async fn get(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<String, String> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{:?}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .into_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn is_access_denied(result: &Result<(), String>) -> bool {
    matches!(result, Err(e) if e.contains("AccessDenied"))
}

async fn ready_bucket(h: &Harness, name: &str, extra: &str) -> Bucket {
    h.create::<Bucket>(&bucket_yaml(name, extra)).await;
    h.reconcile_bucket(NS, name)
        .await
        .expect("bucket reconciles");
    let bucket = h.buckets().get(name).await.expect("bucket");
    assert_eq!(
        h.bucket_condition(NS, name, "Ready").await,
        Some(("True".into(), "Provisioned".into())),
        "bucket {name} should be ready: {:?}",
        bucket.status
    );
    bucket
}

#[tokio::test]
async fn access_key_secret_works_with_aws_sdk_in_granted_bucket_only() {
    let h = Harness::start().await;
    let photos = ready_bucket(&h, "photos", "  deletionPolicy: Delete\n").await;
    ready_bucket(&h, "other", "  bucketName: team-a.other-x\n").await;
    let status = photos.status.expect("status");
    assert_eq!(status.bucket_name.as_deref(), Some("team-a.photos"));
    assert_eq!(status.usage.map(|u| u.objects), Some(0));
    let stored = h
        .store
        .require_bucket("team-a.photos")
        .await
        .expect("bucket in store");
    assert_eq!(stored.owner, "k8s:team-a/photos");
    assert!(
        h.event_reasons(NS, "photos")
            .contains(&"Created".to_owned())
    );

    h.create::<AccessKey>(&key_yaml(
        "app",
        "  buckets:\n  - name: photos\n    access: ReadWrite\n",
    ))
    .await;
    h.reconcile_key(NS, "app").await.expect("key reconciles");
    assert_eq!(
        h.key_condition(NS, "app", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    let env = h.secret_env(NS, "app").await;
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "BUCKET_NAME",
        "BUCKET_HOST",
        "BUCKET_PORT",
    ] {
        assert!(
            env.contains_key(var),
            "Secret lacks {var}: {:?}",
            env.keys()
        );
    }
    assert_eq!(env["BUCKET_NAME"], "team-a.photos");
    assert_eq!(env["BUCKET_HOST"], "127.0.0.1");
    let secret = h.secrets().get("app").await.expect("secret");
    assert_eq!(
        secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("coffer.dev/access-key-id")),
        Some(&env["AWS_ACCESS_KEY_ID"])
    );
    let owners = secret.metadata.owner_references.unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.kind == "AccessKey" && o.name == "app" && o.controller == Some(true))
    );
    let key = h.keys().get("app").await.expect("key");
    assert_eq!(
        key.status.and_then(|s| s.access_key_id),
        Some(env["AWS_ACCESS_KEY_ID"].clone())
    );

    let s3 = s3_client(&env);
    put(&s3, "team-a.photos", "cat.jpg", "meow")
        .await
        .expect("put in granted bucket");
    assert_eq!(
        get(&s3, "team-a.photos", "cat.jpg").await.expect("get"),
        "meow"
    );
    let listed = s3
        .list_objects_v2()
        .bucket("team-a.photos")
        .send()
        .await
        .expect("list");
    assert_eq!(listed.key_count(), Some(1));
    assert!(is_access_denied(
        &put(&s3, "team-a.other-x", "cat.jpg", "meow").await
    ));

    // A second AccessKey without any grant gets nothing.
    h.create::<AccessKey>(&key_yaml("nothing", "  secretName: nothing-creds\n"))
        .await;
    h.reconcile_key(NS, "nothing")
        .await
        .expect("key reconciles");
    let nothing = s3_client(&h.secret_env(NS, "nothing-creds").await);
    assert!(is_access_denied(
        &put(&nothing, "team-a.photos", "x", "y").await
    ));
    assert!(
        get(&nothing, "team-a.photos", "cat.jpg")
            .await
            .is_err_and(|e| e.contains("AccessDenied"))
    );

    // Usage is reported on the next reconcile.
    h.reconcile_bucket(NS, "photos").await.expect("reconcile");
    let usage = h
        .buckets()
        .get("photos")
        .await
        .expect("bucket")
        .status
        .and_then(|s| s.usage);
    assert_eq!(usage.map(|u| (u.objects, u.bytes)), Some((1, 4)));

    // Deleting the AccessKey revokes the key and removes the Secret.
    h.delete_key(NS, "app").await;
    h.reconcile_key(NS, "app").await.expect("cleanup");
    assert!(h.keys().get_opt("app").await.expect("get").is_none());
    assert!(h.secrets().get_opt("app").await.expect("get").is_none());
    assert!(
        h.store
            .get_access_key(&env["AWS_ACCESS_KEY_ID"])
            .await
            .expect("store")
            .is_none()
    );
}

#[tokio::test]
async fn reconcile_of_an_unchanged_resource_writes_nothing() {
    let h = Harness::start().await;
    ready_bucket(&h, "quiet", "").await;
    h.create::<AccessKey>(&key_yaml(
        "quiet",
        "  buckets:\n  - name: quiet\n    access: ReadOnly\n",
    ))
    .await;
    h.reconcile_key(NS, "quiet").await.expect("key reconciles");
    let versions = |b: Bucket, k: AccessKey, s: Secret| {
        (
            b.metadata.resource_version,
            k.metadata.resource_version,
            s.metadata.resource_version,
        )
    };
    let before = versions(
        h.buckets().get("quiet").await.expect("b"),
        h.keys().get("quiet").await.expect("k"),
        h.secrets().get("quiet").await.expect("s"),
    );
    for _ in 0..3 {
        h.reconcile_bucket(NS, "quiet").await.expect("bucket");
        h.reconcile_key(NS, "quiet").await.expect("key");
    }
    let after = versions(
        h.buckets().get("quiet").await.expect("b"),
        h.keys().get("quiet").await.expect("k"),
        h.secrets().get("quiet").await.expect("s"),
    );
    assert_eq!(before, after, "an idle reconcile must not write");
    let keys = h
        .store
        .list_access_keys_by_owner("k8s:team-a/quiet")
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1, "no extra keys are minted");
}

#[tokio::test]
async fn rotation_keeps_the_old_key_through_the_overlap_then_revokes_it() {
    let h = Harness::start().await;
    ready_bucket(&h, "rot", "").await;
    h.create::<AccessKey>(&key_yaml(
        "rot",
        "  buckets:\n  - name: rot\n    access: ReadWrite\n  rotation:\n    overlap: 3s\n",
    ))
    .await;
    h.reconcile_key(NS, "rot").await.expect("key reconciles");
    let old = h.secret_env(NS, "rot").await;

    let patch = json!({"metadata": {"annotations": {"coffer.dev/rotate": "2026-11-22"}}});
    h.keys()
        .patch("rot", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    h.reconcile_key(NS, "rot").await.expect("rotation");
    let new = h.secret_env(NS, "rot").await;
    assert_ne!(
        old["AWS_ACCESS_KEY_ID"], new["AWS_ACCESS_KEY_ID"],
        "the Secret holds a new key"
    );
    assert_eq!(
        h.key_condition(NS, "rot", "Rotating").await,
        Some(("True".into(), "PreviousKeyValid".into()))
    );
    let secret = h.secrets().get("rot").await.expect("secret");
    assert_eq!(
        secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("coffer.dev/access-key-id")),
        Some(&new["AWS_ACCESS_KEY_ID"])
    );
    // Both keys work during the overlap.
    put(&s3_client(&old), "team-a.rot", "a", "old")
        .await
        .expect("old key works in overlap");
    put(&s3_client(&new), "team-a.rot", "b", "new")
        .await
        .expect("new key works");
    // Reconciling again does not rotate again: the annotation value was handled.
    h.reconcile_key(NS, "rot").await.expect("reconcile");
    assert_eq!(
        h.secret_env(NS, "rot").await["AWS_ACCESS_KEY_ID"],
        new["AWS_ACCESS_KEY_ID"]
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    h.reconcile_key(NS, "rot").await.expect("revocation");
    assert_eq!(
        h.key_condition(NS, "rot", "Rotating").await,
        Some(("False".into(), "RotationComplete".into()))
    );
    assert!(
        h.store
            .get_access_key(&old["AWS_ACCESS_KEY_ID"])
            .await
            .expect("store")
            .is_none()
    );
    // The server caches keys briefly; after that the old key is refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = put(&s3_client(&old), "team-a.rot", "c", "old").await;
    assert!(refused.is_err(), "revoked key must not work: {refused:?}");
    put(&s3_client(&new), "team-a.rot", "d", "new")
        .await
        .expect("new key still works");
    let reasons = h.event_reasons(NS, "rot");
    assert!(
        reasons.contains(&"Rotated".to_owned()) && reasons.contains(&"Revoked".to_owned()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn deletion_policy_retain_keeps_delete_removes_empty_and_refuses_non_empty() {
    let h = Harness::start().await;
    ready_bucket(&h, "keep", "").await;
    ready_bucket(&h, "drop", "  deletionPolicy: Delete\n").await;
    ready_bucket(&h, "full", "  deletionPolicy: Delete\n").await;
    let root = h.server.as_ref().expect("server").root_key().clone();
    let root_env = [
        ("AWS_ACCESS_KEY_ID", root.id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", root.secret.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", h.ctx.settings.s3_endpoint.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    put(&s3_client(&root_env), "team-a.full", "x", "data")
        .await
        .expect("put as root");

    h.delete_bucket(NS, "keep").await;
    h.reconcile_bucket(NS, "keep").await.expect("retain");
    assert!(h.buckets().get_opt("keep").await.expect("get").is_none());
    assert!(
        h.store
            .get_bucket("team-a.keep")
            .await
            .expect("store")
            .is_some(),
        "Retain keeps the bucket"
    );

    h.delete_bucket(NS, "drop").await;
    h.reconcile_bucket(NS, "drop").await.expect("delete");
    assert!(h.buckets().get_opt("drop").await.expect("get").is_none());
    assert!(
        h.store
            .get_bucket("team-a.drop")
            .await
            .expect("store")
            .is_none(),
        "Delete removes it"
    );

    h.delete_bucket(NS, "full").await;
    assert!(
        h.reconcile_bucket(NS, "full").await.is_err(),
        "non-empty bucket deletion fails"
    );
    assert_eq!(
        h.bucket_condition(NS, "full", "DeletionBlocked").await,
        Some(("True".into(), "BucketNotEmpty".into()))
    );
    assert!(
        h.store
            .get_bucket("team-a.full")
            .await
            .expect("store")
            .is_some()
    );
    // forceDelete empties and deletes it.
    let patch = json!({"spec": {"forceDelete": true}});
    h.buckets()
        .patch("full", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    h.reconcile_bucket(NS, "full").await.expect("force delete");
    assert!(h.buckets().get_opt("full").await.expect("get").is_none());
    assert!(
        h.store
            .get_bucket("team-a.full")
            .await
            .expect("store")
            .is_none()
    );

    // A Bucket whose backend bucket is already gone is not stuck in Terminating.
    ready_bucket(&h, "gone", "  deletionPolicy: Delete\n").await;
    h.store
        .delete_bucket("team-a.gone")
        .await
        .expect("delete behind the operator's back");
    h.delete_bucket(NS, "gone").await;
    h.reconcile_bucket(NS, "gone")
        .await
        .expect("cleanup of a missing bucket");
    assert!(h.buckets().get_opt("gone").await.expect("get").is_none());

    // Re-creating the retained resource reclaims its bucket.
    ready_bucket(&h, "keep", "").await;
    assert_eq!(
        h.store
            .require_bucket("team-a.keep")
            .await
            .expect("bucket")
            .owner,
        "k8s:team-a/keep"
    );
}

#[tokio::test]
async fn bucket_name_owned_by_another_resource_is_reported_never_taken_over() {
    let mut h = Harness::start().await;
    ready_bucket(&h, "first", "  bucketName: team-a.shared\n").await;
    h.create::<Bucket>(&bucket_yaml(
        "second",
        "  bucketName: team-a.shared\n  adopt: true\n",
    ))
    .await;
    h.reconcile_bucket(NS, "second").await.expect("reconcile");
    assert_eq!(
        h.bucket_condition(NS, "second", "Ready").await,
        Some(("False".into(), "BucketNameTaken".into()))
    );
    assert_eq!(
        h.store
            .require_bucket("team-a.shared")
            .await
            .expect("b")
            .owner,
        "k8s:team-a/first"
    );

    // A bucket made outside Kubernetes, where the administrator lets team-a
    // claim such names and adopt such buckets: taken unless adopt is set.
    h.set_tenancy(coffer_operator::tenancy::Tenancy {
        adopt_unowned: vec!["team-a".parse().expect("rule")],
        adopt_retained: Vec::new(),
        bucket_names: vec!["team-a=legacy-*".parse().expect("rule")],
    });
    h.store
        .create_bucket(&NewBucket {
            name: "legacy-data".into(),
            owner: "cli".into(),
            region: "us-east-1".into(),
        })
        .await
        .expect("create");
    h.create::<Bucket>(&bucket_yaml("legacy", "  bucketName: legacy-data\n"))
        .await;
    h.reconcile_bucket(NS, "legacy").await.expect("reconcile");
    assert_eq!(
        h.bucket_condition(NS, "legacy", "Ready").await,
        Some(("False".into(), "BucketNameTaken".into()))
    );
    h.create::<Bucket>(&bucket_yaml(
        "adopter",
        "  bucketName: legacy-data\n  adopt: true\n",
    ))
    .await;
    h.reconcile_bucket(NS, "adopter").await.expect("reconcile");
    assert_eq!(
        h.bucket_condition(NS, "adopter", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    assert_eq!(
        h.store
            .require_bucket("legacy-data")
            .await
            .expect("b")
            .owner,
        "k8s:team-a/adopter"
    );
    assert!(
        h.event_reasons(NS, "adopter")
            .contains(&"Adopted".to_owned())
    );
}

#[tokio::test]
async fn drift_in_secret_key_and_policy_is_repaired() {
    let h = Harness::start().await;
    ready_bucket(&h, "drift", "").await;
    h.create::<AccessKey>(&key_yaml(
        "drift",
        "  buckets:\n  - name: drift\n    access: ReadWrite\n",
    ))
    .await;
    h.reconcile_key(NS, "drift").await.expect("reconcile");
    let env = h.secret_env(NS, "drift").await;

    // Deleted Secret: restored with the same key.
    h.secrets()
        .delete("drift", &Default::default())
        .await
        .expect("delete secret");
    h.reconcile_key(NS, "drift").await.expect("reconcile");
    assert_eq!(h.secret_env(NS, "drift").await, env);

    // Edited Secret: put back.
    let patch = json!({"stringData": null, "data": {"AWS_SECRET_ACCESS_KEY": "dGFtcGVyZWQ="}});
    h.secrets()
        .patch("drift", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("tamper");
    h.reconcile_key(NS, "drift").await.expect("reconcile");
    assert_eq!(h.secret_env(NS, "drift").await, env);

    // Policy edited out of band: put back.
    h.store
        .set_access_key_policy(&env["AWS_ACCESS_KEY_ID"], None)
        .await
        .expect("strip policy");
    h.reconcile_key(NS, "drift").await.expect("reconcile");
    let stored = h
        .store
        .get_access_key(&env["AWS_ACCESS_KEY_ID"])
        .await
        .expect("s")
        .expect("key");
    assert!(stored.policy.is_some_and(|p| p.contains("team-a.drift")));

    // Renamed Secret: the new one is written, the old one removed.
    let patch = json!({"spec": {"secretName": "drift-renamed"}});
    h.keys()
        .patch("drift", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("rename");
    h.reconcile_key(NS, "drift").await.expect("reconcile");
    assert_eq!(h.secret_env(NS, "drift-renamed").await, env);
    assert!(h.secrets().get_opt("drift").await.expect("get").is_none());
    let patch = json!({"spec": {"secretName": null}});
    h.keys()
        .patch("drift", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("rename back");
    h.reconcile_key(NS, "drift").await.expect("reconcile");
    assert!(
        h.secrets()
            .get_opt("drift-renamed")
            .await
            .expect("get")
            .is_none()
    );

    // Key removed from the store: a new one is issued and the Secret updated.
    h.store
        .delete_access_key(&env["AWS_ACCESS_KEY_ID"])
        .await
        .expect("delete key");
    h.reconcile_key(NS, "drift").await.expect("reconcile");
    let renewed = h.secret_env(NS, "drift").await;
    assert_ne!(renewed["AWS_ACCESS_KEY_ID"], env["AWS_ACCESS_KEY_ID"]);
    put(&s3_client(&renewed), "team-a.drift", "k", "v")
        .await
        .expect("new key works");
    assert!(
        h.event_reasons(NS, "drift")
            .contains(&"Recreated".to_owned())
    );
}

#[tokio::test]
async fn cross_namespace_grant_requires_allowed_namespaces() {
    let h = Harness::start().await;
    let shared: Api<Bucket> = Api::namespaced(h.client.clone(), "shared");
    let bucket: Bucket = serde_yaml::from_str(
        "apiVersion: coffer.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: datasets\n  namespace: shared\nspec: {}\n",
    )
    .expect("yaml");
    shared
        .create(&PostParams::default(), &bucket)
        .await
        .expect("create");
    h.reconcile_bucket("shared", "datasets")
        .await
        .expect("reconcile");

    h.create::<AccessKey>(&key_yaml(
        "reader",
        "  buckets:\n  - name: datasets\n    namespace: shared\n    access: ReadOnly\n",
    ))
    .await;
    h.reconcile_key(NS, "reader").await.expect("reconcile");
    assert_eq!(
        h.key_condition(NS, "reader", "Ready").await,
        Some(("False".into(), "NamespaceNotAllowed".into()))
    );
    let env = h.secret_env(NS, "reader").await;
    let denied = s3_client(&env)
        .list_objects_v2()
        .bucket("shared.datasets")
        .send()
        .await;
    assert!(
        denied.is_err(),
        "no access before the Bucket allows the namespace"
    );

    let patch = json!({"spec": {"access": {"allowedNamespaces": [NS]}}});
    shared
        .patch("datasets", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("allow");
    h.reconcile_bucket("shared", "datasets")
        .await
        .expect("reconcile");
    h.reconcile_key(NS, "reader").await.expect("reconcile");
    assert_eq!(
        h.key_condition(NS, "reader", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    let env = h.secret_env(NS, "reader").await;
    // The server caches keys (and their policies) for a couple of seconds.
    let mut listed = Err(String::new());
    for _ in 0..20 {
        listed = s3_client(&env)
            .list_objects_v2()
            .bucket("shared.datasets")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"));
        if listed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    listed.expect("listing allowed once the Bucket allows the namespace");
    assert!(
        is_access_denied(&put(&s3_client(&env), "shared.datasets", "x", "y").await),
        "ReadOnly"
    );
}

#[tokio::test]
async fn a_secret_the_operator_did_not_create_is_never_overwritten() {
    let h = Harness::start().await;
    ready_bucket(&h, "mine", "").await;
    let foreign: Secret = serde_yaml::from_str(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-creds\nstringData: {}\ndata:\n  password: aHVudGVyMg==\n",
    )
    .expect("yaml");
    h.secrets()
        .create(&PostParams::default(), &foreign)
        .await
        .expect("create");
    h.create::<AccessKey>(&key_yaml(
        "app",
        "  secretName: app-creds\n  buckets:\n  - name: mine\n    access: ReadOnly\n",
    ))
    .await;
    h.reconcile_key(NS, "app").await.expect("reconcile");
    assert_eq!(
        h.key_condition(NS, "app", "Ready").await,
        Some(("False".into(), "SecretConflict".into()))
    );
    let env = h.secret_env(NS, "app-creds").await;
    assert_eq!(env.keys().collect::<Vec<_>>(), ["password"]);
    assert!(
        h.store
            .list_access_keys_by_owner("k8s:team-a/app")
            .await
            .expect("keys")
            .is_empty()
    );
}

#[tokio::test]
async fn bucket_quota_and_versioning_take_effect_on_the_server() {
    let h = Harness::start().await;
    ready_bucket(
        &h,
        "limited",
        "  versioning: Enabled\n  quota:\n    maxObjects: 2\n",
    )
    .await;
    let root = h.server.as_ref().expect("server").root_key().clone();
    let env = [
        ("AWS_ACCESS_KEY_ID", root.id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", root.secret.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", h.ctx.settings.s3_endpoint.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let s3 = s3_client(&env);
    let bucket = "team-a.limited";
    let versioning = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .expect("versioning");
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    // Versioning keeps both writes of one key; they fill the quota of two.
    put(&s3, bucket, "doc", "one").await.expect("first put");
    put(&s3, bucket, "doc", "two").await.expect("second put");
    let refused = put(&s3, bucket, "other", "three").await;
    assert!(
        matches!(&refused, Err(e) if e.contains("QuotaExceeded")),
        "{refused:?}"
    );
    h.reconcile_bucket(NS, "limited").await.expect("reconcile");
    let usage = h
        .buckets()
        .get("limited")
        .await
        .expect("bucket")
        .status
        .and_then(|s| s.usage);
    assert_eq!(usage.map(|u| (u.objects, u.bytes)), Some((2, 6)));
    assert_eq!(
        h.bucket_condition(NS, "limited", "SettingsEnforced").await,
        Some(("True".into(), "Enforced".into()))
    );
}

#[tokio::test]
async fn settings_are_stored_and_unenforced_ones_reported() {
    let h = Harness::start().await;
    let spec = "  versioning: Enabled\n  quota:\n    maxSize: 10Gi\n    maxObjects: 1000\n  lifecycle:\n  - id: expire-tmp\n    prefix: tmp/\n    expirationDays: 7\n  cors:\n  - allowedOrigins: ['https://app.example.com']\n    allowedMethods: [GET, PUT]\n  policy: |\n    {\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::team-a.site/public/*\"}]}\n";
    ready_bucket(&h, "site", spec).await;
    let config = |kind: &'static str| {
        let store = h.store.clone();
        async move {
            store
                .get_bucket_config("team-a.site", kind)
                .await
                .expect("config")
        }
    };
    assert_eq!(
        config("versioning").await.as_deref(),
        Some(r#"{"Status":"Enabled"}"#)
    );
    let quota: serde_json::Value =
        serde_json::from_str(&config("quota").await.expect("quota")).expect("json");
    assert_eq!(
        quota,
        json!({"MaxSizeBytes": 10u64 << 30, "MaxObjects": 1000})
    );
    assert!(
        config("lifecycle")
            .await
            .is_some_and(|l| l.contains("expire-tmp"))
    );
    assert!(
        config("cors")
            .await
            .is_some_and(|c| c.contains("https://app.example.com"))
    );
    assert!(
        h.store
            .get_bucket_policy("team-a.site")
            .await
            .expect("policy")
            .is_some()
    );
    // Every setting kind is enforced by the server now (Object Lock included,
    // see `object_lock_is_applied_on_the_server`).
    let (status, reason) = h
        .bucket_condition(NS, "site", "SettingsEnforced")
        .await
        .expect("condition");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Enforced"));
    // The bucket policy is enforced by the server: anonymous reads of public/ work.
    let root = h.server.as_ref().expect("server").root_key().clone();
    let env = [
        ("AWS_ACCESS_KEY_ID", root.id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", root.secret.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", h.ctx.settings.s3_endpoint.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    put(&s3_client(&env), "team-a.site", "public/index.html", "hi")
        .await
        .expect("put");
    let url = format!(
        "{}/team-a.site/public/index.html",
        h.ctx.settings.s3_endpoint
    );
    let response = reqwest::get(&url).await.expect("anonymous get");
    assert_eq!(response.status().as_u16(), 200);
    // The CORS rules are enforced too: a browser preflight from the allowed origin
    // passes, one from elsewhere is refused.
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .send()
    };
    let allowed = preflight("https://app.example.com")
        .await
        .expect("preflight");
    assert_eq!(allowed.status().as_u16(), 200);
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    let refused = preflight("https://other.example.com")
        .await
        .expect("preflight");
    assert_eq!(refused.status().as_u16(), 403);
    // The server reads the lifecycle rules the operator stored.
    let lifecycle = s3_client(&env)
        .get_bucket_lifecycle_configuration()
        .bucket("team-a.site")
        .send()
        .await
        .expect("lifecycle");
    let rule = &lifecycle.rules()[0];
    assert_eq!(rule.id(), Some("expire-tmp"));
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(7));
    assert_eq!(rule.filter().and_then(|f| f.prefix()), Some("tmp/"));

    // Removing a setting from the spec removes it from the store; versioning
    // cannot be undone, so removing it suspends it.
    let patch = json!({"spec": {"versioning": null, "quota": null}});
    h.buckets()
        .patch("site", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    h.reconcile_bucket(NS, "site").await.expect("reconcile");
    assert_eq!(
        config("versioning").await.as_deref(),
        Some(r#"{"Status":"Suspended"}"#)
    );
    assert_eq!(config("quota").await, None);

    // An invalid policy is refused with a reason, and the stored one is kept.
    let patch = json!({"spec": {"policy": "{\"Statement\": 5}"}});
    h.buckets()
        .patch("site", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    h.reconcile_bucket(NS, "site").await.expect("reconcile");
    assert_eq!(
        h.bucket_condition(NS, "site", "Ready").await,
        Some(("False".into(), "InvalidPolicy".into()))
    );
    assert!(
        h.store
            .get_bucket_policy("team-a.site")
            .await
            .expect("policy")
            .is_some()
    );
}

#[tokio::test]
async fn invalid_default_bucket_name_is_reported() {
    let h = Harness::start().await;
    let long = "x".repeat(60);
    h.create::<Bucket>(&bucket_yaml(&long, "")).await;
    h.reconcile_bucket(NS, &long).await.expect("reconcile");
    assert_eq!(
        h.bucket_condition(NS, &long, "Ready").await,
        Some(("False".into(), "InvalidBucketName".into()))
    );
    assert!(h.store.list_buckets().await.expect("list").is_empty());
}

#[tokio::test]
async fn rotation_every_issues_a_new_key_when_the_period_elapses() {
    let h = Harness::start().await;
    ready_bucket(&h, "sched", "").await;
    h.create::<AccessKey>(&key_yaml(
        "sched",
        "  buckets:\n  - name: sched\n    access: ReadOnly\n  rotation:\n    every: 2s\n    overlap: 1h\n",
    ))
    .await;
    let first_action = h.reconcile_key(NS, "sched").await.expect("reconcile");
    // Scheduled for the rotation, well before the periodic resync.
    assert_ne!(
        first_action,
        kube::runtime::controller::Action::requeue(h.ctx.settings.resync)
    );
    assert_ne!(
        first_action,
        kube::runtime::controller::Action::await_change()
    );
    let first = h.secret_env(NS, "sched").await;
    h.reconcile_key(NS, "sched").await.expect("reconcile");
    assert_eq!(
        h.secret_env(NS, "sched").await["AWS_ACCESS_KEY_ID"],
        first["AWS_ACCESS_KEY_ID"]
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.reconcile_key(NS, "sched").await.expect("reconcile");
    let second = h.secret_env(NS, "sched").await;
    assert_ne!(
        second["AWS_ACCESS_KEY_ID"], first["AWS_ACCESS_KEY_ID"],
        "rotated after `every`"
    );
    let old = h
        .store
        .get_access_key(&first["AWS_ACCESS_KEY_ID"])
        .await
        .expect("s")
        .expect("old key kept");
    assert!(
        old.expires_at.is_some(),
        "the previous key expires after the overlap"
    );
    let status = h
        .keys()
        .get("sched")
        .await
        .expect("key")
        .status
        .expect("status");
    assert_eq!(
        status.access_key_id.as_deref(),
        Some(second["AWS_ACCESS_KEY_ID"].as_str())
    );
    assert!(status.last_rotated.is_some());
}

#[tokio::test]
async fn object_lock_is_applied_on_the_server() {
    let h = Harness::start().await;
    let spec = "  objectLock:\n    enabled: true\n    defaultRetention:\n      mode: COMPLIANCE\n      days: 1\n";
    ready_bucket(&h, "vault", spec).await;
    assert_eq!(
        h.bucket_condition(NS, "vault", "SettingsEnforced").await,
        Some(("True".into(), "Enforced".into()))
    );
    let root = h.server.as_ref().expect("server").root_key().clone();
    let env = [
        ("AWS_ACCESS_KEY_ID", root.id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", root.secret.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", h.ctx.settings.s3_endpoint.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let s3 = s3_client(&env);
    let bucket = "team-a.vault";
    // The bucket was created locked, so versioning is on without being asked for.
    let versioning = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .expect("versioning");
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    let default_retention = |config: aws_sdk_s3::operation::get_object_lock_configuration::GetObjectLockConfigurationOutput| {
        let retention = config
            .object_lock_configuration()
            .and_then(|c| c.rule())
            .and_then(|r| r.default_retention())
            .cloned()
            .expect("default retention");
        (
            retention.mode().map(|m| m.as_str().to_owned()),
            retention.days(),
            retention.years(),
        )
    };
    let config = s3
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
        .expect("lock configuration");
    assert_eq!(
        default_retention(config),
        (Some("COMPLIANCE".to_owned()), Some(1), None)
    );
    // New objects get the default retention, and their versions cannot go.
    let written = s3
        .put_object()
        .bucket(bucket)
        .key("record")
        .body(b"kept".to_vec().into())
        .send()
        .await
        .expect("put");
    let version = written.version_id().expect("version id");
    let deleted = s3
        .delete_object()
        .bucket(bucket)
        .key("record")
        .version_id(version)
        .bypass_governance_retention(true)
        .send()
        .await;
    assert!(
        matches!(&deleted, Err(e) if format!("{:?}", aws_sdk_s3::error::DisplayErrorContext(e)).contains("AccessDenied")),
        "{deleted:?}"
    );

    // Changing the default retention in the spec changes it on the server.
    let patch = json!({"spec": {"objectLock": {"enabled": true, "defaultRetention": {"mode": "GOVERNANCE", "days": null, "years": 2}}}});
    h.buckets()
        .patch("vault", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    h.reconcile_bucket(NS, "vault").await.expect("reconcile");
    let config = s3
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
        .expect("lock configuration");
    assert_eq!(
        default_retention(config),
        (Some("GOVERNANCE".to_owned()), None, Some(2))
    );

    // Versioning cannot be suspended on a locked bucket: the spec is reported
    // invalid and the server keeps versioning on.
    let patch = json!({"spec": {"versioning": "Suspended"}});
    h.buckets()
        .patch("vault", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    h.reconcile_bucket(NS, "vault").await.expect("reconcile");
    assert_eq!(
        h.bucket_condition(NS, "vault", "Ready").await,
        Some(("False".into(), "InvalidObjectLock".into()))
    );
    let versioning = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .expect("versioning");
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
}

#[tokio::test]
async fn encryption_sse_kms_gives_the_bucket_its_own_key() {
    use aws_sdk_s3::types::ServerSideEncryption;
    use coffer_server::meta::{ENCRYPTION, KmsKeyState};

    let h = Harness::start().await;
    ready_bucket(&h, "sealed", "  encryption:\n    type: SSE-KMS\n").await;
    assert_eq!(
        h.bucket_condition(NS, "sealed", "SettingsEnforced").await,
        Some(("True".into(), "Enforced".into()))
    );
    let bucket = "team-a.sealed";
    let key = h
        .store
        .get_kms_key("bucket/team-a.sealed")
        .await
        .expect("kms lookup")
        .expect("the bucket's KMS key was created");
    let arn = format!("arn:aws:kms:us-east-1:000000000000:key/{}", key.id);
    let s3 = s3_client(&h.root_env());
    let config = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket encryption");
    let default = config
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .cloned()
        .expect("a default");
    assert_eq!(default.sse_algorithm(), &ServerSideEncryption::AwsKms);
    assert_eq!(default.kms_master_key_id(), Some(arn.as_str()));

    // Objects written without asking are sealed under the bucket's key.
    let written = s3
        .put_object()
        .bucket(bucket)
        .key("secret")
        .body(b"payload".to_vec().into())
        .send()
        .await
        .expect("put");
    assert_eq!(
        written.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(written.ssekms_key_id(), Some(arn.as_str()));

    // Reconciling again reuses the key, and never re-enables one an
    // administrator disabled: the bucket's objects stay unreadable.
    h.store
        .set_kms_key_state(&key.id, KmsKeyState::Disabled, None)
        .await
        .expect("disable");
    h.reconcile_bucket(NS, "sealed").await.expect("reconcile");
    let named: Vec<_> = h
        .store
        .list_kms_keys()
        .await
        .expect("kms keys")
        .into_iter()
        .filter(|k| k.name == "bucket/team-a.sealed")
        .collect();
    assert_eq!(named.len(), 1, "one key per bucket: {named:?}");
    assert_eq!(named[0].state, KmsKeyState::Disabled);
    let refused = get(&s3, bucket, "secret").await;
    assert!(
        matches!(&refused, Err(e) if e.contains("KMS.DisabledException")),
        "{refused:?}"
    );
    h.store
        .set_kms_key_state(&key.id, KmsKeyState::Enabled, None)
        .await
        .expect("enable");
    assert_eq!(get(&s3, bucket, "secret").await.as_deref(), Ok("payload"));

    // SSE-S3 in the spec replaces the default; removing it removes it.
    let patch = json!({"spec": {"encryption": {"type": "SSE-S3"}}});
    h.buckets()
        .patch("sealed", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    h.reconcile_bucket(NS, "sealed").await.expect("reconcile");
    assert_eq!(
        h.store
            .get_bucket_config(bucket, ENCRYPTION)
            .await
            .expect("config")
            .as_deref(),
        Some("AES256")
    );
    // The server trusts bucket settings it read for a moment; wait it out.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let written = s3
            .put_object()
            .bucket(bucket)
            .key("plain-default")
            .body(b"x".to_vec().into())
            .send()
            .await
            .expect("put");
        if written.server_side_encryption() == Some(&ServerSideEncryption::Aes256) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the SSE-S3 default never applied: {written:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let patch = json!({"spec": {"encryption": null}});
    h.buckets()
        .patch("sealed", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    h.reconcile_bucket(NS, "sealed").await.expect("reconcile");
    assert_eq!(
        h.store
            .get_bucket_config(bucket, ENCRYPTION)
            .await
            .expect("config"),
        None
    );
}

#[tokio::test]
async fn data_protection_is_applied_changed_and_reset_to_the_cluster_default() {
    let h = Harness::start().await;
    let spec = "  dataProtection:\n    scheme: Erasure\n    dataShards: 4\n    parityShards: 2\n";
    ready_bucket(&h, "media", spec).await;
    let stored = || {
        let store = h.store.clone();
        async move {
            store
                .bucket_with_configs("team-a.media", &[coffer_server::meta::DATA_PROTECTION])
                .await
                .expect("bucket")
                .data_protection()
        }
    };
    assert_eq!(
        stored().await,
        Some(coffer_server::meta::DataProtection::Erasure {
            data_shards: 4,
            parity_shards: 2
        })
    );
    let (status, reason) = h
        .bucket_condition(NS, "media", "SettingsEnforced")
        .await
        .expect("condition");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Enforced"));

    let patch = json!({"spec": {"dataProtection": {"scheme": "Replicas", "dataShards": null, "parityShards": null}}});
    h.buckets()
        .patch("media", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    h.reconcile_bucket(NS, "media").await.expect("reconcile");
    assert_eq!(
        stored().await,
        Some(coffer_server::meta::DataProtection::Replicas)
    );

    // An Erasure scheme without its shard counts is refused by the schema's
    // rule, and the stored setting is kept.
    let patch = json!({"spec": {"dataProtection": {"scheme": "Erasure", "dataShards": 4}}});
    let refused = h
        .buckets()
        .patch("media", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("Erasure needs dataShards and parityShards"),
        "{refused}"
    );
    h.reconcile_bucket(NS, "media").await.expect("reconcile");
    assert_eq!(
        stored().await,
        Some(coffer_server::meta::DataProtection::Replicas)
    );

    // Removing the field returns the bucket to the cluster default.
    let patch = json!({"spec": {"dataProtection": null}});
    h.buckets()
        .patch("media", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    h.reconcile_bucket(NS, "media").await.expect("reconcile");
    assert_eq!(stored().await, None);
    assert_eq!(
        h.bucket_condition(NS, "media", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
}
