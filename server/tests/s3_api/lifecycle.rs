use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator,
    LifecycleRuleFilter, NoncurrentVersionExpiration, Tag, Transition, TransitionStorageClass,
    VersioningConfiguration,
};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

type Client = aws_sdk_s3::Client;

fn prefix_rule(id: &str, prefix: &str) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
}

async fn put_rules(s3: &Client, bucket: &str, rules: Vec<LifecycleRule>) -> Result<(), String> {
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| code(Err::<(), _>(e)))
}

async fn lifecycle_configuration_is_stored_and_validated(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("life").send().await.unwrap();
    assert_eq!(
        code(
            s3.get_bucket_lifecycle_configuration()
                .bucket("life")
                .send()
                .await
        ),
        "NoSuchLifecycleConfiguration"
    );
    let tagged = LifecycleRule::builder()
        .id("tagged-logs")
        .status(ExpirationStatus::Enabled)
        .filter(
            LifecycleRuleFilter::builder()
                .and(
                    LifecycleRuleAndOperator::builder()
                        .prefix("logs/")
                        .tags(Tag::builder().key("tier").value("scratch").build().unwrap())
                        .object_size_greater_than(10)
                        .build(),
                )
                .build(),
        )
        .expiration(LifecycleExpiration::builder().days(30).build())
        .build()
        .unwrap();
    let trim = prefix_rule("trim", "")
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(7)
                .newer_noncurrent_versions(3)
                .build(),
        )
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(2)
                .build(),
        )
        .build()
        .unwrap();
    put_rules(&s3, "life", vec![tagged, trim]).await.unwrap();
    let got = s3
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .unwrap();
    let rules = got.rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].id(), Some("tagged-logs"));
    assert_eq!(rules[0].expiration().and_then(|e| e.days()), Some(30));
    let and = rules[0].filter().and_then(|f| f.and()).expect("And filter");
    assert_eq!(and.prefix(), Some("logs/"));
    assert_eq!(and.tags()[0].key(), "tier");
    assert_eq!(and.object_size_greater_than(), Some(10));
    let noncurrent = rules[1].noncurrent_version_expiration().unwrap();
    assert_eq!(
        (
            noncurrent.noncurrent_days(),
            noncurrent.newer_noncurrent_versions()
        ),
        (Some(7), Some(3))
    );
    assert_eq!(
        rules[1]
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(2)
    );
    // Refusals change nothing: too early a transition, non-positive days,
    // rules without action.
    let transition = prefix_rule("cold", "")
        .transitions(
            Transition::builder()
                .days(10)
                .storage_class(TransitionStorageClass::StandardIa)
                .build(),
        )
        .build()
        .unwrap();
    assert_eq!(
        put_rules(&s3, "life", vec![transition]).await,
        Err("InvalidArgument".to_owned())
    );
    let zero = prefix_rule("zero", "")
        .expiration(LifecycleExpiration::builder().days(0).build())
        .build()
        .unwrap();
    assert_eq!(
        put_rules(&s3, "life", vec![zero]).await,
        Err("InvalidArgument".to_owned())
    );
    let idle = prefix_rule("idle", "").build().unwrap();
    assert_eq!(
        put_rules(&s3, "life", vec![idle]).await,
        Err("InvalidRequest".to_owned())
    );
    let still = s3
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .unwrap();
    assert_eq!(still.rules().len(), 2);
    s3.delete_bucket_lifecycle()
        .bucket("life")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.get_bucket_lifecycle_configuration()
                .bucket("life")
                .send()
                .await
        ),
        "NoSuchLifecycleConfiguration"
    );
    t.stop().await;
}

async fn put(s3: &Client, key: &str, body: &str) {
    s3.put_object()
        .bucket("life")
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

/// (key, is delete marker) of every version, in listing order.
async fn versions(s3: &Client) -> Vec<(String, bool)> {
    let out = s3
        .list_object_versions()
        .bucket("life")
        .send()
        .await
        .unwrap();
    let mut all: Vec<(String, bool)> = out
        .versions()
        .iter()
        .map(|v| (v.key().unwrap().to_owned(), false))
        .chain(
            out.delete_markers()
                .iter()
                .map(|m| (m.key().unwrap().to_owned(), true)),
        )
        .collect();
    all.sort();
    all
}

async fn lifecycle_worker_expires_trims_and_aborts_with_a_short_day(backend: Backend) {
    let t = TestServer::start_with(backend, |config| {
        config.lifecycle_day = Duration::from_secs(1);
        config.lifecycle_interval = Duration::from_millis(200);
    })
    .await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("life").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("life")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let rules = vec![
        prefix_rule("expire-tmp", "tmp/")
            .expiration(LifecycleExpiration::builder().days(1).build())
            .build()
            .unwrap(),
        prefix_rule("trim", "")
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .newer_noncurrent_versions(1)
                    .build(),
            )
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build()
            .unwrap(),
        prefix_rule("markers", "gone/")
            .expiration(
                LifecycleExpiration::builder()
                    .expired_object_delete_marker(true)
                    .build(),
            )
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .build(),
            )
            .build()
            .unwrap(),
    ];
    put_rules(&s3, "life", rules).await.unwrap();
    put(&s3, "tmp/a", "scratch").await;
    for n in 1..=4 {
        put(&s3, "keep/b", &format!("v{n}")).await;
    }
    put(&s3, "keep/c", "stays").await;
    put(&s3, "gone/x", "old").await;
    s3.delete_object()
        .bucket("life")
        .key("gone/x")
        .send()
        .await
        .unwrap();
    s3.create_multipart_upload()
        .bucket("life")
        .key("keep/upload")
        .send()
        .await
        .unwrap();
    // Expected once every rule has had its day: tmp/a hidden by a marker (its
    // version kept as the one newest noncurrent), keep/b trimmed to current + 1
    // noncurrent, keep/c untouched, gone/x gone entirely, the upload aborted.
    let expected: Vec<(String, bool)> = [
        ("keep/b", false),
        ("keep/b", false),
        ("keep/c", false),
        ("tmp/a", false),
        ("tmp/a", true),
    ]
    .iter()
    .map(|(k, m)| ((*k).to_owned(), *m))
    .collect();
    let started = Instant::now();
    loop {
        let now = versions(&s3).await;
        let uploads = s3
            .list_multipart_uploads()
            .bucket("life")
            .send()
            .await
            .unwrap();
        if now == expected && uploads.uploads().is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "lifecycle did not converge: {now:?}, uploads {:?}",
            uploads.uploads()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        code(s3.get_object().bucket("life").key("tmp/a").send().await),
        "NoSuchKey"
    );
    let b = s3
        .get_object()
        .bucket("life")
        .key("keep/b")
        .send()
        .await
        .unwrap();
    let body = b.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"v4");
    t.stop().await;
}

/// Object Lock outranks lifecycle: expiry may hide a locked version behind a
/// delete marker but never removes it. The locked keys sort first, so a pass
/// that stopped at them would never reach `z-free`, and this would not converge.
async fn lifecycle_never_removes_a_locked_version(backend: Backend) {
    use aws_sdk_s3::primitives::DateTime;
    use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode};
    let t = TestServer::start_with(backend, |config| {
        config.lifecycle_day = Duration::from_secs(1);
        config.lifecycle_interval = Duration::from_millis(200);
    })
    .await;
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("life")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let rules = vec![
        prefix_rule("expire-all", "")
            .expiration(LifecycleExpiration::builder().days(1).build())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(1)
                    .build(),
            )
            .build()
            .unwrap(),
    ];
    put_rules(&s3, "life", rules).await.unwrap();
    let held = s3
        .put_object()
        .bucket("life")
        .key("a-held")
        .body(ByteStream::from_static(b"held"))
        .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
        .send()
        .await
        .unwrap();
    let retained = s3
        .put_object()
        .bucket("life")
        .key("b-retained")
        .body(ByteStream::from_static(b"retained"))
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(DateTime::from(
            std::time::SystemTime::now() + Duration::from_secs(3600),
        ))
        .send()
        .await
        .unwrap();
    for key in ["a-held", "b-retained", "z-free", "z-free"] {
        put(&s3, key, "newer").await;
    }
    // Once every rule has had its days: each current version hidden by a marker
    // and every unlocked version removed; the two locked versions remain.
    let expected: Vec<(String, bool)> = [
        ("a-held", false),
        ("a-held", true),
        ("b-retained", false),
        ("b-retained", true),
        ("z-free", true),
    ]
    .iter()
    .map(|(k, m)| ((*k).to_owned(), *m))
    .collect();
    let started = Instant::now();
    loop {
        let now = versions(&s3).await;
        if now == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "lifecycle did not converge: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (key, version) in [
        ("a-held", held.version_id()),
        ("b-retained", retained.version_id()),
    ] {
        let body = s3
            .get_object()
            .bucket("life")
            .key(key)
            .version_id(version.unwrap())
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert_ne!(&body[..], b"newer", "{key}");
    }
    t.stop().await;
}

on_both_backends!(
    lifecycle_configuration_is_stored_and_validated,
    lifecycle_worker_expires_trims_and_aborts_with_a_short_day,
    lifecycle_never_removes_a_locked_version,
);
