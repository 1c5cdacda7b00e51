//! Object Lock (WORM): bucket configuration and default retention, per-version
//! retention and legal hold, and the deletes they refuse — with the official SDK,
//! and raw signed requests for what the SDK always adds (checksums).

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, DefaultRetention, Delete, ObjectIdentifier, ObjectLockConfiguration,
    ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode, ObjectLockRule, VersioningConfiguration,
};

use crate::common::{Backend, TestServer, code, send, sign, xml_code};
use crate::on_both_backends;

type Client = aws_sdk_s3::Client;

fn in_hours(hours: u64) -> DateTime {
    DateTime::from(SystemTime::now() + Duration::from_secs(hours * 3600))
}

async fn locked_bucket(s3: &Client, name: &str) {
    s3.create_bucket()
        .bucket(name)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
}

/// Writes `key` with an optional retention; returns its version id.
async fn put(
    s3: &Client,
    bucket: &str,
    key: &str,
    retention: Option<(ObjectLockMode, DateTime)>,
) -> String {
    let mut request = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(key.as_bytes().to_vec()));
    if let Some((mode, until)) = retention {
        request = request
            .object_lock_mode(mode)
            .object_lock_retain_until_date(until);
    }
    request
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned()
}

fn retention(mode: ObjectLockRetentionMode, until: DateTime) -> ObjectLockRetention {
    ObjectLockRetention::builder()
        .mode(mode)
        .retain_until_date(until)
        .build()
}

async fn delete_version(
    s3: &Client,
    bucket: &str,
    key: &str,
    version: &str,
    bypass: bool,
) -> Result<(), String> {
    let mut request = s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .version_id(version);
    if bypass {
        request = request.bypass_governance_retention(true);
    }
    request
        .send()
        .await
        .map(|_| ())
        .map_err(|e| code(Err::<(), _>(e)))
}

async fn version_exists(s3: &Client, bucket: &str, key: &str, version: &str) -> bool {
    s3.head_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .is_ok()
}

async fn lock_configuration_enables_versioning_for_good(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    // A bucket without Object Lock.
    s3.create_bucket().bucket("plain").send().await.unwrap();
    assert_eq!(
        code(
            s3.get_object_lock_configuration()
                .bucket("plain")
                .send()
                .await
        ),
        "ObjectLockConfigurationNotFoundError"
    );
    let enabled = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .build();
    assert_eq!(
        code(
            s3.put_object_lock_configuration()
                .bucket("plain")
                .object_lock_configuration(enabled.clone())
                .send()
                .await
        ),
        "InvalidBucketState"
    );
    let err = s3
        .put_object()
        .bucket("plain")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(in_hours(1))
        .send()
        .await;
    assert_eq!(code(err), "InvalidRequest");
    s3.put_object()
        .bucket("plain")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.put_object_legal_hold()
                .bucket("plain")
                .key("k")
                .legal_hold(
                    ObjectLockLegalHold::builder()
                        .status(ObjectLockLegalHoldStatus::On)
                        .build()
                )
                .send()
                .await
        ),
        "InvalidRequest"
    );

    // A bucket created with Object Lock: versioning on, and it stays on.
    locked_bucket(&s3, "vault").await;
    let versioning = s3
        .get_bucket_versioning()
        .bucket("vault")
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
    let suspend = s3
        .put_bucket_versioning()
        .bucket("vault")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await;
    assert_eq!(code(suspend), "InvalidBucketState");
    let config = s3
        .get_object_lock_configuration()
        .bucket("vault")
        .send()
        .await
        .unwrap();
    let config = config.object_lock_configuration().unwrap();
    assert_eq!(
        config.object_lock_enabled(),
        Some(&ObjectLockEnabled::Enabled)
    );
    assert!(config.rule().is_none());

    // Days and Years together are refused; a default retention is stored...
    let both = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(
            ObjectLockRule::builder()
                .default_retention(
                    DefaultRetention::builder()
                        .mode(ObjectLockRetentionMode::Governance)
                        .days(1)
                        .years(1)
                        .build(),
                )
                .build(),
        )
        .build();
    assert_eq!(
        code(
            s3.put_object_lock_configuration()
                .bucket("vault")
                .object_lock_configuration(both)
                .send()
                .await
        ),
        "MalformedXML"
    );
    let one_day = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(
            ObjectLockRule::builder()
                .default_retention(
                    DefaultRetention::builder()
                        .mode(ObjectLockRetentionMode::Governance)
                        .days(1)
                        .build(),
                )
                .build(),
        )
        .build();
    s3.put_object_lock_configuration()
        .bucket("vault")
        .object_lock_configuration(one_day)
        .send()
        .await
        .unwrap();
    let config = s3
        .get_object_lock_configuration()
        .bucket("vault")
        .send()
        .await
        .unwrap();
    let default = config
        .object_lock_configuration()
        .and_then(|c| c.rule())
        .and_then(|r| r.default_retention())
        .unwrap();
    assert_eq!(default.mode(), Some(&ObjectLockRetentionMode::Governance));
    assert_eq!(default.days(), Some(1));

    // ...and given to new versions that do not ask for their own.
    let version = put(&s3, "vault", "defaulted", None).await;
    let got = s3
        .get_object_retention()
        .bucket("vault")
        .key("defaulted")
        .version_id(&version)
        .send()
        .await
        .unwrap();
    let got = got.retention().unwrap();
    assert_eq!(got.mode(), Some(&ObjectLockRetentionMode::Governance));
    let until = got.retain_until_date().unwrap().secs();
    let now = DateTime::from(SystemTime::now()).secs();
    assert!(
        (now + 23 * 3600..=now + 25 * 3600).contains(&until),
        "{until} vs {now}"
    );
    let head = s3
        .head_object()
        .bucket("vault")
        .key("defaulted")
        .send()
        .await
        .unwrap();
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Governance));
    assert_eq!(
        delete_version(&s3, "vault", "defaulted", &version, false).await,
        Err("AccessDenied".to_owned())
    );
    t.stop().await;
}

async fn compliance_and_legal_hold_stop_even_root(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    locked_bucket(&s3, "vault").await;
    let v1 = put(
        &s3,
        "vault",
        "ledger",
        Some((ObjectLockMode::Compliance, in_hours(1))),
    )
    .await;
    // Deleting the version, bypass or not, is refused; the version stays.
    assert_eq!(
        delete_version(&s3, "vault", "ledger", &v1, false).await,
        Err("AccessDenied".to_owned())
    );
    assert_eq!(
        delete_version(&s3, "vault", "ledger", &v1, true).await,
        Err("AccessDenied".to_owned())
    );
    let batch = s3
        .delete_objects()
        .bucket("vault")
        .bypass_governance_retention(true)
        .delete(
            Delete::builder()
                .objects(
                    ObjectIdentifier::builder()
                        .key("ledger")
                        .version_id(&v1)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(batch.deleted().is_empty());
    assert_eq!(batch.errors()[0].code(), Some("AccessDenied"));
    assert!(version_exists(&s3, "vault", "ledger", &v1).await);

    // A plain DELETE still just adds a delete marker, as on S3.
    let marker = s3
        .delete_object()
        .bucket("vault")
        .key("ledger")
        .send()
        .await
        .unwrap();
    assert_eq!(marker.delete_marker(), Some(true));
    assert!(version_exists(&s3, "vault", "ledger", &v1).await);

    // COMPLIANCE can be extended, never shortened or removed.
    s3.put_object_retention()
        .bucket("vault")
        .key("ledger")
        .version_id(&v1)
        .retention(retention(ObjectLockRetentionMode::Compliance, in_hours(2)))
        .send()
        .await
        .unwrap();
    let shorten = s3
        .put_object_retention()
        .bucket("vault")
        .key("ledger")
        .version_id(&v1)
        .bypass_governance_retention(true)
        .retention(retention(ObjectLockRetentionMode::Compliance, in_hours(1)))
        .send()
        .await;
    assert_eq!(code(shorten), "AccessDenied");
    let downgrade = s3
        .put_object_retention()
        .bucket("vault")
        .key("ledger")
        .version_id(&v1)
        .bypass_governance_retention(true)
        .retention(retention(ObjectLockRetentionMode::Governance, in_hours(3)))
        .send()
        .await;
    assert_eq!(code(downgrade), "AccessDenied");
    let remove = s3
        .put_object_retention()
        .bucket("vault")
        .key("ledger")
        .version_id(&v1)
        .bypass_governance_retention(true)
        .retention(ObjectLockRetention::builder().build())
        .send()
        .await;
    assert_eq!(code(remove), "AccessDenied");
    let kept = s3
        .get_object_retention()
        .bucket("vault")
        .key("ledger")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    let kept_until = kept
        .retention()
        .unwrap()
        .retain_until_date()
        .unwrap()
        .secs();
    assert!(kept_until > DateTime::from(SystemTime::now()).secs() + 3600 + 1800);

    // A legal hold stops even root with the bypass, until it is lifted.
    let v2 = put(&s3, "vault", "evidence", None).await;
    let hold = |status: ObjectLockLegalHoldStatus| {
        s3.put_object_legal_hold()
            .bucket("vault")
            .key("evidence")
            .version_id(&v2)
            .legal_hold(ObjectLockLegalHold::builder().status(status).build())
            .send()
    };
    hold(ObjectLockLegalHoldStatus::On).await.unwrap();
    let got = s3
        .get_object_legal_hold()
        .bucket("vault")
        .key("evidence")
        .version_id(&v2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.legal_hold().and_then(|h| h.status()),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    assert_eq!(
        delete_version(&s3, "vault", "evidence", &v2, true).await,
        Err("AccessDenied".to_owned())
    );
    assert_eq!(
        code(
            s3.get_object_retention()
                .bucket("vault")
                .key("evidence")
                .send()
                .await
        ),
        "NoSuchObjectLockConfiguration"
    );
    hold(ObjectLockLegalHoldStatus::Off).await.unwrap();
    delete_version(&s3, "vault", "evidence", &v2, false)
        .await
        .unwrap();
    assert!(!version_exists(&s3, "vault", "evidence", &v2).await);
    t.stop().await;
}

async fn governance_bypass_needs_the_permission(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    locked_bucket(&s3, "vault").await;
    let actions = r#""s3:GetObject","s3:GetObjectVersion","s3:PutObject","s3:DeleteObject",
        "s3:DeleteObjectVersion","s3:PutObjectRetention","s3:GetObjectRetention""#;
    let policy = |extra: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow",
            "Action":[{actions}{extra}],"Resource":"arn:aws:s3:::vault/*"}}]}}"#
        )
    };
    let plain_key = t.key_with_policy("plain", Some(&policy(""))).await;
    let bypass_key = t
        .key_with_policy(
            "bypasser",
            Some(&policy(r#","s3:BypassGovernanceRetention""#)),
        )
        .await;
    let plain = t.client_for(&plain_key);
    let bypasser = t.client_for(&bypass_key);
    let v = put(
        &s3,
        "vault",
        "draft",
        Some((ObjectLockMode::Governance, in_hours(2))),
    )
    .await;

    // Without the permission, asking for the bypass changes nothing.
    assert_eq!(
        delete_version(&plain, "vault", "draft", &v, true).await,
        Err("AccessDenied".to_owned())
    );
    let shorten = |client: &Client| {
        client
            .put_object_retention()
            .bucket("vault")
            .key("draft")
            .version_id(&v)
            .bypass_governance_retention(true)
            .retention(retention(ObjectLockRetentionMode::Governance, in_hours(1)))
            .send()
    };
    assert_eq!(code(shorten(&plain).await), "AccessDenied");
    // Extending needs no bypass.
    plain
        .put_object_retention()
        .bucket("vault")
        .key("draft")
        .version_id(&v)
        .retention(retention(ObjectLockRetentionMode::Governance, in_hours(3)))
        .send()
        .await
        .unwrap();
    // With the permission but without asking, GOVERNANCE still holds.
    assert_eq!(
        delete_version(&bypasser, "vault", "draft", &v, false).await,
        Err("AccessDenied".to_owned())
    );
    assert!(version_exists(&s3, "vault", "draft", &v).await);
    // Permission and header: it may be shortened and deleted.
    shorten(&bypasser).await.unwrap();
    delete_version(&bypasser, "vault", "draft", &v, true)
        .await
        .unwrap();
    assert!(!version_exists(&s3, "vault", "draft", &v).await);

    // The root key holds every permission: root + header bypasses GOVERNANCE.
    let v = put(
        &s3,
        "vault",
        "memo",
        Some((ObjectLockMode::Governance, in_hours(1))),
    )
    .await;
    assert_eq!(
        delete_version(&s3, "vault", "memo", &v, false).await,
        Err("AccessDenied".to_owned())
    );
    delete_version(&s3, "vault", "memo", &v, true)
        .await
        .unwrap();
    assert!(!version_exists(&s3, "vault", "memo", &v).await);
    t.stop().await;
}

async fn writes_carry_lock_headers_as_on_s3(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    locked_bucket(&s3, "vault").await;
    let root = t.server.root_key();
    let until = "2099-01-01T00:00:00Z";
    // A raw PUT with lock headers but neither Content-MD5 nor a checksum.
    let raw_put = |md5: Option<&str>| {
        let mut builder = http::Request::put(format!("{}/vault/raw", t.endpoint()))
            .header("x-amz-object-lock-mode", "COMPLIANCE")
            .header("x-amz-object-lock-retain-until-date", until);
        if let Some(md5) = md5 {
            builder = builder.header("content-md5", md5);
        }
        let mut request = builder.body(b"raw".to_vec()).unwrap();
        sign(&mut request, &root.id, &root.secret, false);
        request
    };
    let (status, _, body) = send(raw_put(None)).await;
    assert_eq!((status, xml_code(&body)), (400, "InvalidRequest"));
    assert!(
        s3.head_object()
            .bucket("vault")
            .key("raw")
            .send()
            .await
            .is_err()
    );
    // base64(md5("raw"))
    let (status, _, body) = send(raw_put(Some("vdFmrzpj975pbdF6IYpv+w=="))).await;
    assert_eq!(status, 200, "{body}");
    let got = s3
        .get_object_retention()
        .bucket("vault")
        .key("raw")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.retention().and_then(|r| r.mode()),
        Some(&ObjectLockRetentionMode::Compliance)
    );

    // A mode without a date, or a date in the past, is refused.
    let half = s3
        .put_object()
        .bucket("vault")
        .key("half")
        .body(ByteStream::from_static(b"x"))
        .object_lock_mode(ObjectLockMode::Governance)
        .send()
        .await;
    assert_eq!(code(half), "InvalidArgument");
    let past = s3
        .put_object()
        .bucket("vault")
        .key("past")
        .body(ByteStream::from_static(b"x"))
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(DateTime::from_secs(1_000_000_000))
        .send()
        .await;
    assert_eq!(code(past), "InvalidArgument");

    // CopyObject: the copy takes the request's lock, not the source's.
    s3.copy_object()
        .bucket("vault")
        .key("copy")
        .copy_source("vault/raw")
        .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
        .send()
        .await
        .unwrap();
    let copy = s3
        .head_object()
        .bucket("vault")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(
        copy.object_lock_legal_hold_status(),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    assert!(copy.object_lock_mode().is_none());

    // CreateMultipartUpload: the lock is applied when the upload completes.
    let upload = s3
        .create_multipart_upload()
        .bucket("vault")
        .key("big")
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(in_hours(1))
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket("vault")
        .key("big")
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"only part"))
        .send()
        .await
        .unwrap();
    let done = s3
        .complete_multipart_upload()
        .bucket("vault")
        .key("big")
        .upload_id(upload_id)
        .multipart_upload(crate::common::one_part(part.e_tag().unwrap()))
        .send()
        .await
        .unwrap();
    let version = done.version_id().unwrap();
    let got = s3
        .get_object_retention()
        .bucket("vault")
        .key("big")
        .version_id(version)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.retention().and_then(|r| r.mode()),
        Some(&ObjectLockRetentionMode::Compliance)
    );
    assert_eq!(
        delete_version(&s3, "vault", "big", version, true).await,
        Err("AccessDenied".to_owned())
    );
    // A bucket holding locked versions cannot be deleted.
    assert_eq!(
        code(s3.delete_bucket().bucket("vault").send().await),
        "BucketNotEmpty"
    );
    t.stop().await;
}

/// A browser form upload (PostObject) with the lock fields, signed with a POST
/// policy that covers them; returns (status, body).
async fn post_locked_form(t: &TestServer, bucket: &str, key: &str) -> (u16, String) {
    let root = t.server.root_key();
    let lock_fields = [
        ("x-amz-object-lock-mode", "GOVERNANCE"),
        (
            "x-amz-object-lock-retain-until-date",
            "2099-01-01T00:00:00Z",
        ),
        ("x-amz-object-lock-legal-hold", "ON"),
    ];
    let mut conditions = vec![
        serde_json::json!({"bucket": bucket}),
        serde_json::json!({"key": key}),
    ];
    conditions.extend(lock_fields.iter().map(|(n, v)| serde_json::json!({*n: v})));
    let mut fields: Vec<(String, String)> = vec![("key".to_owned(), key.to_owned())];
    fields.extend(
        lock_fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    fields.extend(crate::common::signed_policy(
        conditions,
        time::Duration::minutes(5),
        &root.id,
        &root.secret,
    ));
    let boundary = "----CofferLockFormBoundary";
    let mut body = Vec::new();
    for (name, value) in &fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\nform\r\n--{boundary}--\r\n")
            .as_bytes(),
    );
    let response = reqwest::Client::new()
        .post(format!("{}/{bucket}", t.endpoint()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn form_uploads_carry_lock_fields(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    locked_bucket(&s3, "vault").await;
    s3.create_bucket().bucket("plain").send().await.unwrap();
    let (status, body) = post_locked_form(&t, "vault", "form").await;
    assert_eq!(status, 204, "{body}");
    let retention = s3
        .get_object_retention()
        .bucket("vault")
        .key("form")
        .send()
        .await
        .unwrap();
    assert_eq!(
        retention.retention().and_then(|r| r.mode()),
        Some(&ObjectLockRetentionMode::Governance)
    );
    let hold = s3
        .get_object_legal_hold()
        .bucket("vault")
        .key("form")
        .send()
        .await
        .unwrap();
    assert_eq!(
        hold.legal_hold().and_then(|h| h.status()),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    // The same form to a bucket without Object Lock is refused, not stored unlocked.
    let (status, body) = post_locked_form(&t, "plain", "form").await;
    assert_eq!((status, xml_code(&body)), (400, "InvalidRequest"), "{body}");
    assert!(
        s3.head_object()
            .bucket("plain")
            .key("form")
            .send()
            .await
            .is_err()
    );
    t.stop().await;
}

on_both_backends!(
    form_uploads_carry_lock_fields,
    lock_configuration_enables_versioning_for_good,
    compliance_and_legal_hold_stop_even_root,
    governance_bypass_needs_the_permission,
    writes_carry_lock_headers_as_on_s3,
);
