//! Tenant isolation (issue 20): each test attempts what one namespace must not
//! be able to do to another through its own Bucket and AccessKey resources, and
//! checks with real S3 requests through a real server that it is refused.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{
    BucketCannedAcl, ObjectCannedAcl, ObjectOwnership, OwnershipControls, OwnershipControlsRule,
    Tag, Tagging, VersioningConfiguration,
};
use coffer_operator::access_key;
use coffer_operator::crd::{AccessKey, Bucket};
use coffer_operator::tenancy::Tenancy;
use coffer_server::meta::{NewAccessKey, NewBucket, now_millis};
use common::{Harness, s3_client};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn bucket_yaml(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
    )
}

fn key_yaml(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: AccessKey\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
    )
}

fn tenancy(unowned: &[&str], retained: &[&str], names: &[&str]) -> Tenancy {
    Tenancy {
        adopt_unowned: unowned.iter().map(|s| s.parse().expect("rule")).collect(),
        adopt_retained: retained.iter().map(|s| s.parse().expect("rule")).collect(),
        bucket_names: names.iter().map(|s| s.parse().expect("rule")).collect(),
    }
}

/// Runs an SDK call, keeping only whether it worked and, if not, why.
async fn attempt<T, E>(call: impl Future<Output = Result<T, E>>) -> Result<(), String>
where
    E: std::error::Error + Send + Sync + 'static,
{
    call.await
        .map(|_| ())
        .map_err(|e| format!("{:?}", aws_sdk_s3::error::DisplayErrorContext(e)))
}

fn is_denied(result: &Result<(), String>) -> bool {
    matches!(result, Err(e) if e.contains("AccessDenied") || e.contains("InvalidAccessKeyId"))
}

/// Retries `call` until it is denied: the server trusts keys, policies and ACLs
/// it read for two seconds. Returns the last outcome.
async fn eventually_denied<F, Fut>(mut call: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let outcome = call().await;
        if is_denied(&outcome) || Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Retries `call` until it works (see [`eventually_denied`]).
async fn eventually_ok<F, Fut>(mut call: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let outcome = call().await;
        if outcome.is_ok() || Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(), String> {
    attempt(
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(b"data".to_vec().into())
            .send(),
    )
    .await
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(), String> {
    attempt(s3.get_object().bucket(bucket).key(key).send()).await
}

async fn list(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), String> {
    attempt(s3.list_objects_v2().bucket(bucket).send()).await
}

/// Status of an unsigned request, as a browser or `curl` would send it.
async fn anonymous(h: &Harness, method: reqwest::Method, path: &str) -> u16 {
    let url = format!(
        "{}/{path}",
        h.ctx.settings.s3_endpoint.trim_end_matches('/')
    );
    reqwest::Client::new()
        .request(method, &url)
        .body(if path.contains('?') { "" } else { "x" })
        .send()
        .await
        .expect("anonymous request")
        .status()
        .as_u16()
}

async fn eventually_status(h: &Harness, path: &str, want: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let status = anonymous(h, reqwest::Method::GET, path).await;
        if status == want || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn ready_bucket(h: &Harness, ns: &str, name: &str, spec: &str) -> String {
    h.create::<Bucket>(&bucket_yaml(ns, name, spec)).await;
    h.reconcile_bucket(ns, name)
        .await
        .expect("bucket reconciles");
    assert_eq!(
        h.bucket_condition(ns, name, "Ready").await,
        Some(("True".into(), "Provisioned".into())),
        "bucket {ns}/{name} should be ready"
    );
    bucket_status_name(h, ns, name).await
}

async fn bucket_status_name(h: &Harness, ns: &str, name: &str) -> String {
    Api::<Bucket>::namespaced(h.client.clone(), ns)
        .get(name)
        .await
        .expect("bucket")
        .status
        .and_then(|s| s.bucket_name)
        .expect("status.bucketName")
}

async fn ready_key(h: &Harness, ns: &str, name: &str, spec: &str) -> BTreeMap<String, String> {
    h.create::<AccessKey>(&key_yaml(ns, name, spec)).await;
    h.reconcile_key(ns, name).await.expect("key reconciles");
    assert_eq!(
        h.key_condition(ns, name, "Ready").await,
        Some(("True".into(), "Provisioned".into())),
        "access key {ns}/{name} should be ready"
    );
    h.secret_env(ns, name).await
}

async fn patch_key(h: &Harness, ns: &str, name: &str, patch: serde_json::Value) {
    Api::<AccessKey>::namespaced(h.client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch access key");
    h.reconcile_key(ns, name).await.expect("key reconciles");
}

async fn patch_bucket(h: &Harness, ns: &str, name: &str, patch: serde_json::Value) {
    Api::<Bucket>::namespaced(h.client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch bucket");
    h.reconcile_bucket(ns, name)
        .await
        .expect("bucket reconciles");
}

async fn ready_message(h: &Harness, ns: &str, name: &str) -> String {
    let bucket = Api::<Bucket>::namespaced(h.client.clone(), ns)
        .get(name)
        .await
        .expect("bucket");
    bucket
        .status
        .into_iter()
        .flat_map(|s| s.conditions)
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message)
        .unwrap_or_default()
}

async fn owner(h: &Harness, bucket: &str) -> String {
    h.store.require_bucket(bucket).await.expect("bucket").owner
}

// ---------------------------------------------------------------------------
// 1. An AccessKey's own policy never widens its reach; keys never administer.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn access_key_policy_that_widens_reach_is_refused_and_never_reaches_the_key() {
    let h = Harness::start().await;
    let victim = ready_bucket(&h, "team-a", "photos", "").await;
    let root = s3_client(&h.root_env());
    put(&root, &victim, "cat.jpg").await.expect("root writes");
    let own = ready_bucket(&h, "team-b", "own", "").await;
    let env = ready_key(
        &h,
        "team-b",
        "app",
        "  buckets:\n  - name: own\n    access: ReadWrite\n",
    )
    .await;
    let s3 = s3_client(&env);
    put(&s3, &own, "x").await.expect("own bucket works");

    // The exploit: an extra statement allowing every action on every resource.
    let everything = r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    patch_key(&h, "team-b", "app", json!({"spec": {"policy": everything}})).await;
    assert_eq!(
        h.key_condition("team-b", "app", "Ready").await,
        Some(("False".into(), "PolicyExceedsGrants".into()))
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(is_denied(&get(&s3, &victim, "cat.jpg").await));
    assert!(is_denied(&put(&s3, &victim, "cat.jpg").await));
    assert!(is_denied(&list(&s3, &victim).await));
    assert!(is_denied(
        &attempt(s3.delete_object().bucket(&victim).key("cat.jpg").send()).await
    ));
    let public = format!(
        r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{victim}/*"}}]}}"#
    );
    assert!(is_denied(
        &attempt(
            s3.put_bucket_policy()
                .bucket(&victim)
                .policy(&public)
                .send()
        )
        .await
    ));
    assert!(is_denied(
        &attempt(s3.delete_bucket().bucket(&victim).send()).await
    ));
    assert_eq!(
        anonymous(&h, reqwest::Method::GET, &format!("{victim}/cat.jpg")).await,
        403
    );
    // The key keeps exactly what its grants give.
    put(&s3, &own, "y").await.expect("own bucket still works");

    // Every other shape of widening is refused too, and a new AccessKey with one
    // is issued no key at all.
    for widening in [
        r#"{"Effect":"Allow","NotAction":"s3:DeleteBucket","Resource":"arn:aws:s3:::team-b.own/*"}"#,
        r#"{"Effect":"Allow","Action":"s3:GetObject","NotResource":"arn:aws:s3:::team-b.own/*"}"#,
        r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::team-*"}"#,
        r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::team-b.own*"}"#,
        r#"{"Effect":"Allow","Action":"s3:PutBucketPolicy","Resource":"arn:aws:s3:::team-b.own"}"#,
        r#"{"Effect":"Allow","Action":"s3:CreateBucket","Resource":"*"}"#,
    ] {
        let policy = format!(r#"{{"Statement":[{widening}]}}"#);
        h.create::<AccessKey>(&key_yaml(
            "team-b",
            "fresh",
            &format!("  buckets:\n  - name: own\n    access: ReadOnly\n  policy: '{policy}'\n"),
        ))
        .await;
        h.reconcile_key("team-b", "fresh").await.expect("reconcile");
        assert_eq!(
            h.key_condition("team-b", "fresh", "Ready").await,
            Some(("False".into(), "PolicyExceedsGrants".into())),
            "{widening}"
        );
        assert!(
            h.store
                .list_access_keys_by_owner("k8s:team-b/fresh")
                .await
                .expect("keys")
                .is_empty(),
            "no key is issued for {widening}"
        );
        h.delete_key("team-b", "fresh").await;
        h.reconcile_key("team-b", "fresh").await.expect("cleanup");
    }

    // Narrowing is what extra statements are for: a Deny is applied.
    let deny = r#"{"Statement":[{"Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::team-b.own/frozen/*"}]}"#;
    patch_key(&h, "team-b", "app", json!({"spec": {"policy": deny}})).await;
    assert_eq!(
        h.key_condition("team-b", "app", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    let frozen = eventually_denied(|| put(&s3, &own, "frozen/x")).await;
    assert!(is_denied(&frozen), "{frozen:?}");
    put(&s3, &own, "thawed/x").await.expect("outside the Deny");
}

#[tokio::test]
async fn keys_never_administer_their_buckets_or_make_data_public() {
    let h = Harness::start().await;
    let site = ready_bucket(&h, "team-a", "site", "").await;
    let env = ready_key(
        &h,
        "team-a",
        "admin",
        "  buckets:\n  - name: site\n    access: Admin\n",
    )
    .await;
    let s3 = s3_client(&env);
    put(&s3, &site, "index.html").await.expect("Admin writes");
    attempt(s3.get_bucket_versioning().bucket(&site).send())
        .await
        .expect("Admin reads settings");

    let public = format!(
        r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::{site}","arn:aws:s3:::{site}/*"]}}]}}"#
    );
    let refused = [
        (
            "PutBucketPolicy",
            attempt(s3.put_bucket_policy().bucket(&site).policy(&public).send()).await,
        ),
        (
            "PutBucketAcl",
            attempt(
                s3.put_bucket_acl()
                    .bucket(&site)
                    .acl(BucketCannedAcl::PublicReadWrite)
                    .send(),
            )
            .await,
        ),
        (
            "PutBucketOwnershipControls",
            attempt(
                s3.put_bucket_ownership_controls()
                    .bucket(&site)
                    .ownership_controls(
                        OwnershipControls::builder()
                            .rules(
                                OwnershipControlsRule::builder()
                                    .object_ownership(ObjectOwnership::BucketOwnerPreferred)
                                    .build()
                                    .expect("rule"),
                            )
                            .build()
                            .expect("controls"),
                    )
                    .send(),
            )
            .await,
        ),
        (
            "PutObjectAcl",
            attempt(
                s3.put_object_acl()
                    .bucket(&site)
                    .key("index.html")
                    .acl(ObjectCannedAcl::PublicRead)
                    .send(),
            )
            .await,
        ),
        (
            "PutBucketVersioning",
            attempt(
                s3.put_bucket_versioning()
                    .bucket(&site)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send(),
            )
            .await,
        ),
        (
            "PutBucketTagging",
            attempt(
                s3.put_bucket_tagging()
                    .bucket(&site)
                    .tagging(
                        Tagging::builder()
                            .tag_set(Tag::builder().key("k").value("v").build().expect("tag"))
                            .build()
                            .expect("tagging"),
                    )
                    .send(),
            )
            .await,
        ),
        (
            "DeleteBucket",
            attempt(s3.delete_bucket().bucket(&site).send()).await,
        ),
        (
            "CreateBucket",
            attempt(s3.create_bucket().bucket("team-a.sneaky").send()).await,
        ),
    ];
    for (action, outcome) in &refused {
        assert!(is_denied(outcome), "{action} must be denied: {outcome:?}");
    }
    assert_eq!(
        anonymous(&h, reqwest::Method::GET, &format!("{site}/index.html")).await,
        403
    );
    assert_eq!(
        anonymous(&h, reqwest::Method::GET, &format!("{site}?list-type=2")).await,
        403
    );
}

#[tokio::test]
async fn acls_that_expose_a_managed_bucket_are_reset_by_its_reconcile() {
    let h = Harness::start().await;
    let site = ready_bucket(&h, "team-a", "site", "").await;
    let root = s3_client(&h.root_env());
    put(&root, &site, "index.html").await.expect("put");
    // Out of band (nothing in the Bucket resource says so), the bucket is opened.
    attempt(
        root.put_bucket_ownership_controls()
            .bucket(&site)
            .ownership_controls(
                OwnershipControls::builder()
                    .rules(
                        OwnershipControlsRule::builder()
                            .object_ownership(ObjectOwnership::BucketOwnerPreferred)
                            .build()
                            .expect("rule"),
                    )
                    .build()
                    .expect("controls"),
            )
            .send(),
    )
    .await
    .expect("ownership");
    attempt(
        root.put_bucket_acl()
            .bucket(&site)
            .acl(BucketCannedAcl::PublicReadWrite)
            .send(),
    )
    .await
    .expect("acl");
    let listing = format!("{site}?list-type=2");
    assert_eq!(eventually_status(&h, &listing, 200).await, 200);

    h.reconcile_bucket("team-a", "site")
        .await
        .expect("reconcile");
    assert_eq!(eventually_status(&h, &listing, 403).await, 403);
    assert_eq!(
        anonymous(&h, reqwest::Method::PUT, &format!("{site}/dropped")).await,
        403
    );
    let acl = h.store.bucket_acl(&site).await.expect("acl");
    assert_eq!(
        acl.ownership,
        coffer_server::meta::ObjectOwnership::BucketOwnerEnforced
    );
    assert!(!acl.acl.shares(&acl.owner), "{:?}", acl.acl);
}

// ---------------------------------------------------------------------------
// 2. Adoption: retained buckets go home; unknown ones need an administrator.
// ---------------------------------------------------------------------------

/// team-a's Bucket `photos`, holding an object, deleted with `Retain`.
async fn retained_photos(h: &Harness) -> String {
    let name = ready_bucket(h, "team-a", "photos", "").await;
    put(&s3_client(&h.root_env()), &name, "cat.jpg")
        .await
        .expect("put");
    h.delete_bucket("team-a", "photos").await;
    h.reconcile_bucket("team-a", "photos")
        .await
        .expect("retain");
    assert_eq!(owner(h, &name).await, "retained:k8s:team-a/photos");
    name
}

#[tokio::test]
async fn retained_bucket_is_adopted_only_by_its_own_namespace() {
    let h = Harness::start().await;
    let photos = retained_photos(&h).await;

    // The exploit: another namespace adopts it, to read it and then destroy it.
    let grab = format!(
        "  bucketName: {photos}\n  adopt: true\n  deletionPolicy: Delete\n  forceDelete: true\n"
    );
    h.create::<Bucket>(&bucket_yaml("team-b", "grab", &grab))
        .await;
    h.reconcile_bucket("team-b", "grab")
        .await
        .expect("reconcile");
    let (status, _) = h
        .bucket_condition("team-b", "grab", "Ready")
        .await
        .expect("condition");
    assert_eq!(status, "False");
    let message = ready_message(&h, "team-b", "grab").await;
    assert!(
        !message.contains("team-a/") && !message.contains("retained"),
        "says nothing about the owner: {message}"
    );
    assert_eq!(owner(&h, &photos).await, "retained:k8s:team-a/photos");
    h.create::<AccessKey>(&key_yaml(
        "team-b",
        "thief",
        "  buckets:\n  - name: grab\n    access: ReadWrite\n",
    ))
    .await;
    h.reconcile_key("team-b", "thief").await.expect("reconcile");
    let thief = s3_client(&h.secret_env("team-b", "thief").await);
    assert!(is_denied(&get(&thief, &photos, "cat.jpg").await));
    // Deleting the would-be adopter deletes nothing of team-a's.
    h.delete_bucket("team-b", "grab").await;
    h.reconcile_bucket("team-b", "grab").await.expect("cleanup");
    get(&s3_client(&h.root_env()), &photos, "cat.jpg")
        .await
        .expect("team-a's data is intact");

    // team-a itself may take it back, under another resource name too.
    let again = format!("  bucketName: {photos}\n  adopt: true\n");
    h.create::<Bucket>(&bucket_yaml("team-a", "photos-v2", &again))
        .await;
    h.reconcile_bucket("team-a", "photos-v2")
        .await
        .expect("reconcile");
    assert_eq!(
        h.bucket_condition("team-a", "photos-v2", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    assert_eq!(owner(&h, &photos).await, "k8s:team-a/photos-v2");
}

#[tokio::test]
async fn retained_bucket_crosses_namespaces_only_with_administrator_consent() {
    let mut h = Harness::start().await;
    let photos = retained_photos(&h).await;
    h.set_tenancy(tenancy(&[], &["team-b=team-a"], &[]));
    let spec = format!("  bucketName: {photos}\n  adopt: true\n");
    h.create::<Bucket>(&bucket_yaml("team-c", "grab", &spec))
        .await;
    h.reconcile_bucket("team-c", "grab")
        .await
        .expect("reconcile");
    assert_eq!(
        h.bucket_condition("team-c", "grab", "Ready")
            .await
            .map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(owner(&h, &photos).await, "retained:k8s:team-a/photos");

    h.create::<Bucket>(&bucket_yaml("team-b", "heir", &spec))
        .await;
    h.reconcile_bucket("team-b", "heir")
        .await
        .expect("reconcile");
    assert_eq!(
        h.bucket_condition("team-b", "heir", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    assert_eq!(owner(&h, &photos).await, "k8s:team-b/heir");
    assert!(
        h.event_reasons("team-b", "heir")
            .contains(&"Adopted".to_owned())
    );
}

#[tokio::test]
async fn bucket_created_through_s3_is_adopted_only_where_an_administrator_allows() {
    let mut h = Harness::start().await;
    // A key allowed to create buckets (made with the CLI) makes one through S3:
    // it is owned by that key's id, not by any Kubernetes resource.
    let creator = h
        .store
        .create_access_key(&NewAccessKey {
            name: "uploader".into(),
            owner: "cli".into(),
            policy: Some(
                r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#.into(),
            ),
            is_root: false,
            credentials: None,
        })
        .await
        .expect("key");
    let creator_env = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID".to_owned(), creator.id.clone()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), creator.secret.clone()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        (
            "AWS_ENDPOINT_URL".to_owned(),
            h.ctx.settings.s3_endpoint.clone(),
        ),
    ]);
    let s3 = s3_client(&creator_env);
    attempt(s3.create_bucket().bucket("uploads-2026").send())
        .await
        .expect("create through S3");
    put(&s3, "uploads-2026", "report.csv").await.expect("put");
    assert_eq!(owner(&h, "uploads-2026").await, creator.id);

    let adopt = "  bucketName: uploads-2026\n  adopt: true\n";
    for ns in ["team-a", "team-b"] {
        h.create::<Bucket>(&bucket_yaml(ns, "uploads", adopt)).await;
        h.reconcile_bucket(ns, "uploads").await.expect("reconcile");
        assert_eq!(
            h.bucket_condition(ns, "uploads", "Ready")
                .await
                .map(|c| c.0),
            Some("False".into()),
            "{ns} may not adopt without consent"
        );
    }
    assert_eq!(owner(&h, "uploads-2026").await, creator.id);

    // The administrator lets team-b adopt buckets of unknown origin.
    h.set_tenancy(tenancy(&["team-b"], &[], &[]));
    h.reconcile_bucket("team-a", "uploads")
        .await
        .expect("reconcile");
    assert_eq!(
        h.bucket_condition("team-a", "uploads", "Ready")
            .await
            .map(|c| c.0),
        Some("False".into())
    );
    h.reconcile_bucket("team-b", "uploads")
        .await
        .expect("reconcile");
    assert_eq!(
        h.bucket_condition("team-b", "uploads", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    assert_eq!(owner(&h, "uploads-2026").await, "k8s:team-b/uploads");
}

// ---------------------------------------------------------------------------
// 3. Revocation fails closed.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn revoking_a_share_narrows_every_key_even_when_the_access_key_is_invalid() {
    let h = Harness::start().await;
    let data = ready_bucket(
        &h,
        "team-a",
        "data",
        "  access:\n    allowedNamespaces: [team-b]\n",
    )
    .await;
    put(&s3_client(&h.root_env()), &data, "secret.csv")
        .await
        .expect("put");
    let first = ready_key(
        &h,
        "team-b",
        "reader",
        "  buckets:\n  - name: data\n    namespace: team-a\n    access: ReadOnly\n  rotation:\n    overlap: 1h\n",
    )
    .await;
    // A rotation leaves the first key valid for its overlap.
    Api::<AccessKey>::namespaced(h.client.clone(), "team-b")
        .patch(
            "reader",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"coffer.dev/rotate": "1"}}})),
        )
        .await
        .expect("annotate");
    h.reconcile_key("team-b", "reader").await.expect("rotate");
    let second = h.secret_env("team-b", "reader").await;
    assert_ne!(first["AWS_ACCESS_KEY_ID"], second["AWS_ACCESS_KEY_ID"]);
    for env in [&first, &second] {
        let s3 = s3_client(env);
        eventually_ok(|| get(&s3, &data, "secret.csv"))
            .await
            .expect("both keys read during the overlap");
    }

    // The grantee breaks its own AccessKey, hoping to freeze its policies...
    patch_key(
        &h,
        "team-b",
        "reader",
        json!({"spec": {"policy": "{not json"}}),
    )
    .await;
    assert_eq!(
        h.key_condition("team-b", "reader", "Ready").await,
        Some(("False".into(), "InvalidPolicy".into()))
    );
    // ...then the owner withdraws the share.
    patch_bucket(&h, "team-a", "data", json!({"spec": {"access": null}})).await;
    h.reconcile_key("team-b", "reader")
        .await
        .expect("reconcile");
    for env in [&first, &second] {
        let s3 = s3_client(env);
        let outcome = eventually_denied(|| get(&s3, &data, "secret.csv")).await;
        assert!(
            is_denied(&outcome),
            "every key loses the share: {outcome:?}"
        );
    }
    let keys = h
        .store
        .list_access_keys_by_owner("k8s:team-b/reader")
        .await
        .expect("keys");
    assert_eq!(
        keys.len(),
        2,
        "the overlapping key is narrowed, not dropped"
    );
    assert!(
        keys.iter()
            .all(|k| !k.policy.as_deref().unwrap_or_default().contains(&data))
    );
}

#[tokio::test]
async fn revocation_happens_before_an_unusable_overlap_is_reported() {
    let h = Harness::start().await;
    let data = ready_bucket(
        &h,
        "team-a",
        "data",
        "  access:\n    allowedNamespaces: [team-b]\n",
    )
    .await;
    put(&s3_client(&h.root_env()), &data, "secret.csv")
        .await
        .expect("put");
    let env = ready_key(
        &h,
        "team-b",
        "reader",
        "  buckets:\n  - name: data\n    namespace: team-a\n    access: ReadOnly\n  rotation:\n    overlap: 1h\n",
    )
    .await;
    let s3 = s3_client(&env);
    eventually_ok(|| get(&s3, &data, "secret.csv"))
        .await
        .expect("shared");
    patch_bucket(&h, "team-a", "data", json!({"spec": {"access": null}})).await;
    // An overlap the schema's pattern lets through but no parser takes (handed
    // to the reconciler directly, as an older CRD would have stored it).
    let mut key = Api::<AccessKey>::namespaced(h.client.clone(), "team-b")
        .get("reader")
        .await
        .expect("key");
    key.spec.rotation.as_mut().expect("rotation").overlap = Some("99999999999999999999h".into());
    access_key::reconcile(Arc::new(key), h.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        h.key_condition("team-b", "reader", "Ready").await,
        Some(("False".into(), "InvalidRotation".into()))
    );
    let outcome = eventually_denied(|| get(&s3, &data, "secret.csv")).await;
    assert!(is_denied(&outcome), "the share is gone anyway: {outcome:?}");
}

#[tokio::test]
async fn rotation_overlap_has_a_maximum() {
    let h = Harness::start().await;
    ready_bucket(&h, "team-b", "own", "").await;
    let created = Api::<AccessKey>::namespaced(h.client.clone(), "team-b")
        .create(
            &PostParams::default(),
            &serde_yaml::from_str::<AccessKey>(&key_yaml(
                "team-b",
                "forever",
                "  buckets:\n  - name: own\n    access: ReadOnly\n  rotation:\n    overlap: 876000h\n",
            ))
            .expect("yaml"),
        )
        .await;
    let error = created.expect_err("an overlap of 100 years is refused");
    assert!(error.to_string().contains("at most 24h"), "{error}");

    ready_key(
        &h,
        "team-b",
        "app",
        "  buckets:\n  - name: own\n    access: ReadOnly\n  rotation:\n    overlap: 1h\n",
    )
    .await;
    let old = h.secret_env("team-b", "app").await["AWS_ACCESS_KEY_ID"].clone();
    Api::<AccessKey>::namespaced(h.client.clone(), "team-b")
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"coffer.dev/rotate": "1"}}})),
        )
        .await
        .expect("annotate");
    h.reconcile_key("team-b", "app").await.expect("rotate");
    // A key given a longer overlap before the limit existed is cut to it...
    let century = now_millis() + 100 * 365 * 24 * 3600 * 1000;
    h.store
        .set_access_key_expiry(&old, Some(century))
        .await
        .expect("expiry");
    h.reconcile_key("team-b", "app").await.expect("reconcile");
    let cut = h
        .store
        .get_access_key(&old)
        .await
        .expect("store")
        .and_then(|k| k.expires_at)
        .expect("expiry");
    let max = i64::try_from(access_key::MAX_OVERLAP.as_millis()).expect("ms");
    assert!(cut <= now_millis() + max, "overlap cut to 24h");

    // ...and an overlap the schema lets through but the reconciler cannot use
    // (here handed to it directly) is reported, after the narrowing.
    let mut key = Api::<AccessKey>::namespaced(h.client.clone(), "team-b")
        .get("app")
        .await
        .expect("key");
    key.spec.rotation.as_mut().expect("rotation").overlap = Some("99999999999999999999h".into());
    access_key::reconcile(Arc::new(key), h.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        h.key_condition("team-b", "app", "Ready").await,
        Some(("False".into(), "InvalidRotation".into()))
    );
}

// ---------------------------------------------------------------------------
// 4. The bucket owner states the most a share gives.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_share_gives_at_most_what_the_bucket_owner_states() {
    let h = Harness::start().await;
    let data = ready_bucket(
        &h,
        "team-a",
        "data",
        "  access:\n    allowedNamespaces: [team-b]\n",
    )
    .await;
    let root = s3_client(&h.root_env());
    put(&root, &data, "private/report.csv").await.expect("put");

    // The exploit: the grantee gives itself Admin on the shared bucket.
    h.create::<AccessKey>(&key_yaml(
        "team-b",
        "grabber",
        "  buckets:\n  - name: data\n    namespace: team-a\n    access: Admin\n",
    ))
    .await;
    h.reconcile_key("team-b", "grabber")
        .await
        .expect("reconcile");
    assert_eq!(
        h.key_condition("team-b", "grabber", "Ready").await,
        Some(("False".into(), "AccessNotShared".into()))
    );
    let s3 = s3_client(&h.secret_env("team-b", "grabber").await);
    assert!(is_denied(
        &attempt(
            s3.put_bucket_acl()
                .bucket(&data)
                .acl(BucketCannedAcl::PublicReadWrite)
                .send()
        )
        .await
    ));
    assert!(is_denied(&get(&s3, &data, "private/report.csv").await));
    // ReadWrite is more than a plain `allowedNamespaces` entry shares too.
    patch_key(
        &h,
        "team-b",
        "grabber",
        json!({"spec": {"buckets": [{"name": "data", "namespace": "team-a", "access": "ReadWrite"}]}}),
    )
    .await;
    assert_eq!(
        h.key_condition("team-b", "grabber", "Ready").await,
        Some(("False".into(), "AccessNotShared".into()))
    );
    patch_key(
        &h,
        "team-b",
        "grabber",
        json!({"spec": {"buckets": [{"name": "data", "namespace": "team-a", "access": "ReadOnly"}]}}),
    )
    .await;
    assert_eq!(
        h.key_condition("team-b", "grabber", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    eventually_ok(|| get(&s3, &data, "private/report.csv"))
        .await
        .expect("ReadOnly is shared");
    assert!(is_denied(&put(&s3, &data, "private/report.csv").await));

    // The owner shares writing, under a prefix only.
    patch_bucket(
        &h,
        "team-a",
        "data",
        json!({"spec": {"access": {"allowedNamespaces": null, "shares": [
            {"namespace": "team-b", "maxAccess": "ReadWrite", "prefix": "incoming/"}]}}}),
    )
    .await;
    h.reconcile_key("team-b", "grabber")
        .await
        .expect("reconcile");
    assert_eq!(
        h.key_condition("team-b", "grabber", "Ready").await,
        Some(("False".into(), "AccessNotShared".into())),
        "the whole bucket is no longer shared"
    );
    let outcome = eventually_denied(|| get(&s3, &data, "private/report.csv")).await;
    assert!(is_denied(&outcome), "{outcome:?}");
    patch_key(
        &h,
        "team-b",
        "grabber",
        json!({"spec": {"buckets": [{"name": "data", "namespace": "team-a", "access": "ReadWrite", "prefix": "incoming/"}]}}),
    )
    .await;
    assert_eq!(
        h.key_condition("team-b", "grabber", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    eventually_ok(|| put(&s3, &data, "incoming/upload.csv"))
        .await
        .expect("writes under the shared prefix");
    assert!(is_denied(&put(&s3, &data, "private/report.csv").await));
    assert!(is_denied(&get(&s3, &data, "private/report.csv").await));

    // Even an Admin share gives no administration of the bucket.
    patch_bucket(
        &h,
        "team-a",
        "data",
        json!({"spec": {"access": {"shares": [{"namespace": "team-b", "maxAccess": "Admin"}]}}}),
    )
    .await;
    patch_key(
        &h,
        "team-b",
        "grabber",
        json!({"spec": {"buckets": [{"name": "data", "namespace": "team-a", "access": "Admin"}]}}),
    )
    .await;
    assert_eq!(
        h.key_condition("team-b", "grabber", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    eventually_ok(|| get(&s3, &data, "private/report.csv"))
        .await
        .expect("Admin reads");
    let ownership = attempt(
        s3.put_bucket_ownership_controls()
            .bucket(&data)
            .ownership_controls(
                OwnershipControls::builder()
                    .rules(
                        OwnershipControlsRule::builder()
                            .object_ownership(ObjectOwnership::BucketOwnerPreferred)
                            .build()
                            .expect("rule"),
                    )
                    .build()
                    .expect("controls"),
            )
            .send(),
    )
    .await;
    assert!(is_denied(&ownership), "{ownership:?}");
    assert!(is_denied(
        &attempt(
            s3.put_bucket_acl()
                .bucket(&data)
                .acl(BucketCannedAcl::PublicReadWrite)
                .send()
        )
        .await
    ));
    assert_eq!(
        anonymous(&h, reqwest::Method::GET, &format!("{data}?list-type=2")).await,
        403
    );
}

// ---------------------------------------------------------------------------
// 5. Bucket names: no collisions, no squatting, no leaks.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn default_bucket_names_never_collide_and_claims_stay_in_the_namespace() {
    let mut h = Harness::start().await;
    let a = ready_bucket(&h, "team", "a-docs", "").await;
    let b = ready_bucket(&h, "team-a", "docs", "").await;
    assert_ne!(a, b);
    assert_eq!((a.as_str(), b.as_str()), ("team.a-docs", "team-a.docs"));

    // The exploit: team-b squats the name team-a's next Bucket will want.
    h.create::<Bucket>(&bucket_yaml(
        "team-b",
        "squat",
        "  bucketName: team-a.photos\n",
    ))
    .await;
    h.reconcile_bucket("team-b", "squat")
        .await
        .expect("reconcile");
    assert_eq!(
        h.bucket_condition("team-b", "squat", "Ready").await,
        Some(("False".into(), "BucketNameNotAllowed".into()))
    );
    assert!(
        h.store
            .get_bucket("team-a.photos")
            .await
            .expect("store")
            .is_none()
    );
    ready_bucket(&h, "team-a", "photos", "").await;

    // Names outside every namespace's own, where an administrator allows them:
    // taken is taken, and the refusal does not say by whom.
    h.set_tenancy(tenancy(&[], &[], &["*=shared-*"]));
    ready_bucket(&h, "team-a", "first", "  bucketName: shared-data\n").await;
    for (name, spec) in [
        ("second", "  bucketName: shared-data\n"),
        ("third", "  bucketName: shared-data\n  adopt: true\n"),
    ] {
        h.create::<Bucket>(&bucket_yaml("team-b", name, spec)).await;
        h.reconcile_bucket("team-b", name).await.expect("reconcile");
        assert_eq!(
            h.bucket_condition("team-b", name, "Ready").await,
            Some(("False".into(), "BucketNameTaken".into()))
        );
        let message = ready_message(&h, "team-b", name).await;
        assert!(
            !message.contains("team-a") && !message.contains("k8s:"),
            "{message}"
        );
    }
    assert_eq!(owner(&h, "shared-data").await, "k8s:team-a/first");
}

#[tokio::test]
async fn a_bucket_keeps_the_name_it_had_before_the_upgrade() {
    let h = Harness::start().await;
    // What the previous version left behind: `<namespace>-<name>` buckets, one
    // live and one retained.
    for (name, owner) in [
        ("team-a-old", "k8s:team-a/old"),
        ("team-a-kept", "retained:k8s:team-a/kept"),
    ] {
        h.store
            .create_bucket(&NewBucket {
                name: name.into(),
                owner: owner.into(),
                region: "us-east-1".into(),
            })
            .await
            .expect("bucket");
    }
    assert_eq!(ready_bucket(&h, "team-a", "old", "").await, "team-a-old");
    assert_eq!(ready_bucket(&h, "team-a", "kept", "").await, "team-a-kept");
    assert_eq!(owner(&h, "team-a-kept").await, "k8s:team-a/kept");
    assert!(
        h.store
            .get_bucket("team-a.old")
            .await
            .expect("store")
            .is_none()
    );
    let env = ready_key(
        &h,
        "team-a",
        "app",
        "  buckets:\n  - name: old\n    access: ReadWrite\n",
    )
    .await;
    assert_eq!(env["BUCKET_NAME"], "team-a-old");
    put(&s3_client(&env), "team-a-old", "x")
        .await
        .expect("the key works on the kept name");
}

// ---------------------------------------------------------------------------
// Also: secretName is a Kubernetes object name.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn secret_name_must_be_a_kubernetes_object_name() {
    let h = Harness::start().await;
    ready_bucket(&h, "team-a", "own", "").await;
    for bad in ["../kube-system/x", "a/b", ".."] {
        let key: AccessKey = serde_yaml::from_str(&key_yaml(
            "team-a",
            "sneaky",
            &format!("  secretName: '{bad}'\n"),
        ))
        .expect("yaml");
        let created = Api::<AccessKey>::namespaced(h.client.clone(), "team-a")
            .create(&PostParams::default(), &key)
            .await;
        assert!(created.is_err(), "secretName {bad:?} must be refused");
    }

    // Defence in depth: the reconciler refuses one that got past the schema.
    ready_key(
        &h,
        "team-a",
        "app",
        "  buckets:\n  - name: own\n    access: ReadOnly\n",
    )
    .await;
    let mut key = Api::<AccessKey>::namespaced(h.client.clone(), "team-a")
        .get("app")
        .await
        .expect("key");
    key.spec.secret_name = Some("../kube-system/x".into());
    access_key::reconcile(Arc::new(key), h.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        h.key_condition("team-a", "app", "Ready").await,
        Some(("False".into(), "InvalidSecretName".into()))
    );
    let status = Api::<AccessKey>::namespaced(h.client.clone(), "team-a")
        .get("app")
        .await
        .expect("key")
        .status
        .expect("status");
    assert_eq!(status.secret_name.as_deref(), Some("app"));
}
