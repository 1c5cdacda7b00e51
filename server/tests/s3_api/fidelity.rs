//! Behaviour that must match AWS exactly, because SDKs and applications branch
//! on it: opaque keys, retried completions, part numbers, bucket re-creation,
//! pagination edges, digest and validation errors, SigV2's error order, what
//! HEAD carries, and chunked uploads.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ChecksumAlgorithm,
    CompletedMultipartUpload, CompletedPart, DefaultRetention, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter,
    ObjectLockConfiguration, ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus,
    ObjectLockRetention, ObjectLockRetentionMode, ObjectLockRule, Transition,
    TransitionStorageClass, VersioningConfiguration,
};
use base64::Engine as _;
use serde_json::json;

use crate::common::{
    Backend, Payload, TestServer, code, send, sign, sign_at, signed_policy, xml_code,
};
use crate::on_both_backends;

type Client = aws_sdk_s3::Client;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn body_of(s3: &Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

async fn put(s3: &Client, bucket: &str, key: &str, body: &[u8]) -> String {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e:?}"))
        .e_tag()
        .unwrap_or_default()
        .to_owned()
}

/// The HTTP status of a failed SDK call (HEAD errors carry no code).
fn status<E, R: std::fmt::Debug>(
    result: Result<R, aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> u16 {
    match result {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => e.raw_response().map_or(0, |r| r.status().as_u16()),
    }
}

/// A raw request signed with SigV4 (payload hashed) against the test server.
async fn raw(
    t: &TestServer,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, String) {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("{}{path_and_query}", t.endpoint()));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(body).unwrap();
    let root = t.server.root_key();
    sign(&mut request, &root.id, &root.secret, false);
    send(request).await
}

async fn dot_segments_are_ordinary_key_characters(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("dots").send().await.unwrap();
    let keys = [
        "../etc/passwd",
        "a/../../b",
        "a/./b",
        ".",
        "..",
        "./x",
        "a/..",
    ];
    for key in keys {
        put(&s3, "dots", key, key.as_bytes()).await;
    }
    for key in keys {
        assert_eq!(body_of(&s3, "dots", key).await, key.as_bytes(), "{key}");
    }
    let listed = s3.list_objects_v2().bucket("dots").send().await.unwrap();
    let mut names: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    names.sort_unstable();
    let mut expected = keys.to_vec();
    expected.sort_unstable();
    assert_eq!(
        names, expected,
        "every key is stored as sent, none resolved"
    );
    // Copies and multipart uploads take such keys too.
    s3.copy_object()
        .bucket("dots")
        .key("copy/../of")
        .copy_source("dots/a/./b")
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(&s3, "dots", "copy/../of").await, b"a/./b");
    t.stop().await;
}

async fn upload_one_part(s3: &Client, bucket: &str, key: &str, body: &[u8]) -> (String, String) {
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap().to_owned();
    let part = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
    (id, part.e_tag().unwrap().to_owned())
}

fn parts(etags: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            etags
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

async fn completion_retried_after_success_returns_the_same_success(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("retry").send().await.unwrap();
    for versioned in [false, true] {
        if versioned {
            s3.put_bucket_versioning()
                .bucket("retry")
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
        let (id, etag) = upload_one_part(&s3, "retry", "big", b"the only part").await;
        let complete = || {
            s3.complete_multipart_upload()
                .bucket("retry")
                .key("big")
                .upload_id(&id)
                .multipart_upload(parts(&[(1, &etag)]))
                .send()
        };
        let first = complete().await.unwrap();
        let again = complete().await.unwrap();
        assert_eq!(first.e_tag(), again.e_tag(), "versioned={versioned}");
        assert_eq!(first.version_id(), again.version_id());
        assert_eq!(first.version_id().is_some(), versioned);
        assert_eq!(body_of(&s3, "retry", "big").await, b"the only part");
        // Once another write replaced what it made, the upload is gone for good.
        put(&s3, "retry", "big", b"newer").await;
        assert_eq!(code(complete().await), "NoSuchUpload");
    }
    // An upload that never existed, or completed under another key, is unknown.
    let (id, etag) = upload_one_part(&s3, "retry", "one", b"x").await;
    s3.complete_multipart_upload()
        .bucket("retry")
        .key("one")
        .upload_id(&id)
        .multipart_upload(parts(&[(1, &etag)]))
        .send()
        .await
        .unwrap();
    let elsewhere = s3
        .complete_multipart_upload()
        .bucket("retry")
        .key("two")
        .upload_id(&id)
        .multipart_upload(parts(&[(1, &etag)]))
        .send()
        .await;
    assert_eq!(code(elsewhere), "NoSuchUpload");
    t.stop().await;
}

async fn a_part_uploaded_twice_keeps_the_one_that_finished_last(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("twice").send().await.unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("twice")
        .key("k")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap().to_owned();
    let upload_part = |body: &'static [u8]| {
        s3.upload_part()
            .bucket("twice")
            .key("k")
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from_static(body))
            .send()
    };
    // Concurrent uploads of one number: one of them, whole, is the part.
    let (a, b) = tokio::join!(upload_part(b"first body"), upload_part(b"second body"));
    let (a, b) = (a.unwrap(), b.unwrap());
    let listed = s3
        .list_parts()
        .bucket("twice")
        .key("k")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 1);
    let kept = listed.parts()[0].e_tag().unwrap().to_owned();
    assert!(kept == a.e_tag().unwrap() || kept == b.e_tag().unwrap());
    // In sequence: the later upload wins and the earlier ETag no longer names it.
    let early = upload_part(b"early").await.unwrap();
    let late = upload_part(b"late").await.unwrap();
    let stale = s3
        .complete_multipart_upload()
        .bucket("twice")
        .key("k")
        .upload_id(&id)
        .multipart_upload(parts(&[(1, early.e_tag().unwrap())]))
        .send()
        .await;
    assert_eq!(code(stale), "InvalidPart");
    s3.complete_multipart_upload()
        .bucket("twice")
        .key("k")
        .upload_id(&id)
        .multipart_upload(parts(&[(1, late.e_tag().unwrap())]))
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(&s3, "twice", "k").await, b"late");
    t.stop().await;
}

async fn part_number_beyond_the_parts_is_invalid_part(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("pnum").send().await.unwrap();
    put(&s3, "pnum", "single", b"one piece").await;
    let whole = s3
        .get_object()
        .bucket("pnum")
        .key("single")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.content_length(), Some(9));
    let get = |key: &'static str, n: i32| {
        s3.get_object()
            .bucket("pnum")
            .key(key)
            .part_number(n)
            .send()
    };
    let beyond = get("single", 2).await;
    assert_eq!(code(beyond), "InvalidPart");
    assert_eq!(status(get("single", 2).await), 400);
    let head = s3
        .head_object()
        .bucket("pnum")
        .key("single")
        .part_number(2)
        .send()
        .await;
    assert_eq!(status(head), 400);
    // A two-part object.
    let upload = s3
        .create_multipart_upload()
        .bucket("pnum")
        .key("multi")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let mut etags = Vec::new();
    for (n, body) in [(1, vec![b'a'; 5 << 20]), (2, b"tail".to_vec())] {
        let part = s3
            .upload_part()
            .bucket("pnum")
            .key("multi")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
        etags.push((n, part.e_tag().unwrap().to_owned()));
    }
    let list: Vec<(i32, &str)> = etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
    s3.complete_multipart_upload()
        .bucket("pnum")
        .key("multi")
        .upload_id(id)
        .multipart_upload(parts(&list))
        .send()
        .await
        .unwrap();
    let second = get("multi", 2).await.unwrap();
    assert_eq!(second.content_length(), Some(4));
    assert_eq!(second.parts_count(), Some(2));
    assert_eq!(code(get("multi", 3).await), "InvalidPart");
    assert_eq!(code(get("multi", 0).await), "InvalidArgument");
    assert_eq!(code(get("multi", 10_001).await), "InvalidArgument");
    t.stop().await;
}

async fn creating_a_bucket_you_own_answers_as_aws_per_region(backend: Backend) {
    // us-east-1: the legacy 200, and the bucket (with its objects) is untouched.
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("mine").send().await.unwrap();
    put(&s3, "mine", "kept", b"still here").await;
    let again = s3.create_bucket().bucket("mine").send().await.unwrap();
    assert_eq!(again.location(), Some("/mine"));
    assert_eq!(body_of(&s3, "mine", "kept").await, b"still here");
    t.stop().await;
    // Any other region: 409 BucketAlreadyOwnedByYou.
    let t = TestServer::start_with(backend, |c| c.region = "eu-west-1".to_owned()).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("mine").send().await.unwrap();
    let again = s3.create_bucket().bucket("mine").send().await;
    assert_eq!(code(again), "BucketAlreadyOwnedByYou");
    assert_eq!(status(s3.create_bucket().bucket("mine").send().await), 409);
    t.stop().await;
}

async fn list_buckets_pages_with_max_buckets_and_continuation_token(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    for name in [
        "page-c",
        "page-a",
        "page-e",
        "page-b",
        "page-d",
        "zzz-other",
    ] {
        s3.create_bucket().bucket(name).send().await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s3
            .list_buckets()
            .prefix("page-")
            .max_buckets(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(page.buckets().len() <= 2);
        seen.extend(
            page.buckets()
                .iter()
                .filter_map(|b| b.name().map(str::to_owned)),
        );
        assert_eq!(page.prefix(), Some("page-"));
        match page.continuation_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, ["page-a", "page-b", "page-c", "page-d", "page-e"]);
    assert_eq!(pages, 3);
    // Without max-buckets: every bucket, no token.
    let all = s3.list_buckets().send().await.unwrap();
    assert_eq!(all.buckets().len(), 6);
    assert_eq!(all.continuation_token(), None);
    assert_eq!(
        code(s3.list_buckets().max_buckets(0).send().await),
        "InvalidArgument"
    );
    assert_eq!(
        code(s3.list_buckets().continuation_token("%%%").send().await),
        "InvalidArgument"
    );
    t.stop().await;
}

async fn max_keys_zero_is_an_empty_page_that_is_not_truncated(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("zero").send().await.unwrap();
    for key in ["a", "b", "c"] {
        put(&s3, "zero", key, b"x").await;
    }
    let v2 = s3
        .list_objects_v2()
        .bucket("zero")
        .max_keys(0)
        .send()
        .await
        .unwrap();
    assert!(v2.contents().is_empty());
    assert_eq!(v2.is_truncated(), Some(false));
    assert_eq!(v2.key_count(), Some(0));
    let v1 = s3
        .list_objects()
        .bucket("zero")
        .max_keys(0)
        .send()
        .await
        .unwrap();
    assert!(v1.contents().is_empty());
    assert_eq!(v1.is_truncated(), Some(false));
    let versions = s3
        .list_object_versions()
        .bucket("zero")
        .max_keys(0)
        .send()
        .await
        .unwrap();
    assert!(versions.versions().is_empty());
    assert_eq!(versions.is_truncated(), Some(false));
    t.stop().await;
}

/// A well-formed but wrong checksum value for each algorithm.
fn wrong_checksums() -> [(ChecksumAlgorithm, &'static str, String); 5] {
    [
        (ChecksumAlgorithm::Crc32, "crc32", b64(&[0; 4])),
        (ChecksumAlgorithm::Crc32C, "crc32c", b64(&[0; 4])),
        (ChecksumAlgorithm::Sha1, "sha1", b64(&[0; 20])),
        (ChecksumAlgorithm::Sha256, "sha256", b64(&[0; 32])),
        (ChecksumAlgorithm::Crc64Nvme, "crc64nvme", b64(&[0; 8])),
    ]
}

async fn every_checksum_mismatch_is_bad_digest(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("digest").send().await.unwrap();
    for (algorithm, name, wrong) in wrong_checksums() {
        // PutObject, with the value in its header.
        let header = format!("x-amz-checksum-{name}");
        let (status, _, body) = raw(
            &t,
            "PUT",
            &format!("/digest/put-{name}"),
            &[(header.as_str(), wrong.as_str())],
            b"hello world".to_vec(),
        )
        .await;
        assert_eq!(
            (status, xml_code(&body)),
            (400, "BadDigest"),
            "PUT {name}: {body}"
        );
        assert_eq!(
            code(
                s3.head_object()
                    .bucket("digest")
                    .key(format!("put-{name}"))
                    .send()
                    .await
            ),
            "NotFound"
        );
        // UploadPart of an upload with that algorithm.
        let upload = s3
            .create_multipart_upload()
            .bucket("digest")
            .key(format!("mpu-{name}"))
            .checksum_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap();
        let id = upload.upload_id().unwrap();
        let (status, _, body) = raw(
            &t,
            "PUT",
            &format!("/digest/mpu-{name}?partNumber=1&uploadId={id}"),
            &[(header.as_str(), wrong.as_str())],
            b"part bytes".to_vec(),
        )
        .await;
        assert_eq!(
            (status, xml_code(&body)),
            (400, "BadDigest"),
            "UploadPart {name}: {body}"
        );
        let listed = s3
            .list_parts()
            .bucket("digest")
            .key(format!("mpu-{name}"))
            .upload_id(id)
            .send()
            .await
            .unwrap();
        assert!(listed.parts().is_empty(), "a refused part is not recorded");
        // A browser form's checksum field.
        let root = t.server.root_key();
        let mut fields = signed_policy(
            vec![
                json!({"bucket": "digest"}),
                json!(["starts-with", "$key", "post-"]),
                serde_json::Value::Object([(header.clone(), json!(wrong))].into_iter().collect()),
            ],
            time::Duration::minutes(10),
            &root.id,
            &root.secret,
        );
        fields.insert(0, ("key".into(), format!("post-{name}")));
        fields.push((header.clone(), wrong.clone()));
        let (status, body) = post_form(&t, "digest", &fields, b"form bytes").await;
        assert_eq!(
            (status, xml_code(&body)),
            (400, "BadDigest"),
            "POST {name}: {body}"
        );
        // And the right value is accepted on all three.
        let right = s3
            .put_object()
            .bucket("digest")
            .key(format!("ok-{name}"))
            .checksum_algorithm(algorithm)
            .body(ByteStream::from_static(b"hello world"))
            .send()
            .await;
        assert!(right.is_ok(), "{name}: {right:?}");
    }
    t.stop().await;
}

/// Sends a form (fields, then the file) to `POST /bucket`: (status, body).
async fn post_form(
    t: &TestServer,
    bucket: &str,
    fields: &[(String, String)],
    content: &[u8],
) -> (u16, String) {
    let boundary = "----CofferFidelityBoundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
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

async fn post_policy_errors_are_answered_as_on_aws(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    let root = t.server.root_key();
    let good = || {
        let mut fields = signed_policy(
            vec![
                json!({"bucket": "forms"}),
                json!(["starts-with", "$key", ""]),
            ],
            time::Duration::minutes(10),
            &root.id,
            &root.secret,
        );
        fields.insert(0, ("key".into(), "k".into()));
        fields
    };
    let (status, body) = post_form(&t, "forms", &good(), b"ok").await;
    assert_eq!(status, 204, "{body}");
    // A signed form without its signature: 400 InvalidArgument naming the field.
    let unsigned: Vec<(String, String)> = good()
        .into_iter()
        .filter(|(n, _)| n != "x-amz-signature")
        .collect();
    let (status, body) = post_form(&t, "forms", &unsigned, b"x").await;
    assert_eq!(
        (status, xml_code(&body)),
        (400, "InvalidArgument"),
        "{body}"
    );
    assert!(body.contains("X-Amz-Signature"), "{body}");
    // An expiration that is not an ISO 8601 date: 400 InvalidPolicyDocument.
    let bad_date = json!({
        "expiration": "2030-01-01 00:00:00",
        "conditions": [{"bucket": "forms"}]
    });
    let policy = b64(bad_date.to_string().as_bytes());
    let fields: Vec<(String, String)> = good()
        .into_iter()
        .map(|(n, v)| {
            if n == "policy" {
                (n, policy.clone())
            } else {
                (n, v)
            }
        })
        .collect();
    let (status, body) = post_form(&t, "forms", &fields, b"x").await;
    assert_eq!(status, 400, "{body}");
    // Neither form stored anything.
    let listed = s3.list_objects_v2().bucket("forms").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(1));
    t.stop().await;
}

async fn lifecycle_validation_and_rules_returned_as_put(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("life").send().await.unwrap();
    let put_rules = |rules: Vec<LifecycleRule>| {
        s3.put_bucket_lifecycle_configuration()
            .bucket("life")
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .unwrap(),
            )
            .send()
    };
    let rule = |id: &str| {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
            .expiration(LifecycleExpiration::builder().days(30).build())
    };
    let long = "i".repeat(256);
    assert_eq!(
        code(put_rules(vec![rule(&long).build().unwrap()]).await),
        "InvalidArgument"
    );
    put_rules(vec![rule(&"i".repeat(255)).build().unwrap()])
        .await
        .unwrap();
    assert_eq!(
        code(
            put_rules(vec![
                rule("same").build().unwrap(),
                rule("same").build().unwrap()
            ])
            .await
        ),
        "InvalidArgument"
    );
    let noon = aws_smithy_types::DateTime::from_secs(1_893_456_000 + 12 * 3600);
    let at_noon = LifecycleRule::builder()
        .id("noon")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .expiration(LifecycleExpiration::builder().date(noon).build())
        .build()
        .unwrap();
    assert_eq!(code(put_rules(vec![at_noon]).await), "InvalidArgument");
    let early_ia = rule("ia")
        .transitions(
            Transition::builder()
                .days(10)
                .storage_class(TransitionStorageClass::StandardIa)
                .build(),
        )
        .build()
        .unwrap();
    assert_eq!(code(put_rules(vec![early_ia]).await), "InvalidArgument");
    let expire_before_move = rule("order")
        .transitions(
            Transition::builder()
                .days(60)
                .storage_class(TransitionStorageClass::Glacier)
                .build(),
        )
        .build()
        .unwrap();
    assert_eq!(
        code(put_rules(vec![expire_before_move]).await),
        "InvalidArgument"
    );
    // Accepted: rules in each filter form, a transition, a midnight date.
    #[allow(deprecated)]
    let legacy = LifecycleRule::builder()
        .id("legacy")
        .status(ExpirationStatus::Enabled)
        .prefix("old/")
        .expiration(LifecycleExpiration::builder().days(5).build())
        .build()
        .unwrap();
    let empty = LifecycleRule::builder()
        .id("empty")
        .status(ExpirationStatus::Disabled)
        .filter(LifecycleRuleFilter::builder().build())
        .expiration(LifecycleExpiration::builder().days(400).build())
        .build()
        .unwrap();
    let and_one = LifecycleRule::builder()
        .id("and-one")
        .status(ExpirationStatus::Enabled)
        .filter(
            LifecycleRuleFilter::builder()
                .and(LifecycleRuleAndOperator::builder().prefix("logs/").build())
                .build(),
        )
        .expiration(
            LifecycleExpiration::builder()
                .date(aws_smithy_types::DateTime::from_secs(1_893_456_000))
                .build(),
        )
        .build()
        .unwrap();
    let moving = rule("moving")
        .transitions(
            Transition::builder()
                .days(7)
                .storage_class(TransitionStorageClass::Glacier)
                .build(),
        )
        .build()
        .unwrap();
    let put = vec![legacy, empty, and_one, moving];
    put_rules(put.clone()).await.unwrap();
    let got = s3
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.rules(),
        put.as_slice(),
        "rules come back as they were put"
    );
    t.stop().await;
}

async fn object_lock_validation_errors_match_aws(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("worm")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let configure = |mode: ObjectLockRetentionMode, days: Option<i32>, years: Option<i32>| {
        s3.put_object_lock_configuration()
            .bucket("worm")
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(
                        ObjectLockRule::builder()
                            .default_retention(
                                DefaultRetention::builder()
                                    .mode(mode)
                                    .set_days(days)
                                    .set_years(years)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    let governance = ObjectLockRetentionMode::Governance;
    assert_eq!(
        code(configure(governance.clone(), Some(0), None).await),
        "InvalidRetentionPeriod"
    );
    assert_eq!(
        code(configure(governance.clone(), None, Some(-1)).await),
        "InvalidRetentionPeriod"
    );
    assert_eq!(
        code(configure(ObjectLockRetentionMode::from("governance"), Some(1), None).await),
        "MalformedXML"
    );
    assert_eq!(
        code(configure(governance.clone(), Some(1), Some(1)).await),
        "MalformedXML"
    );
    let disabled = s3
        .put_object_lock_configuration()
        .bucket("worm")
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::from("Disabled"))
                .build(),
        )
        .send()
        .await;
    assert_eq!(code(disabled), "MalformedXML");
    put(&s3, "worm", "k", b"locked").await;
    let retain = |mode: ObjectLockRetentionMode, secs: i64, bypass: bool| {
        s3.put_object_retention()
            .bucket("worm")
            .key("k")
            .bypass_governance_retention(bypass)
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(aws_smithy_types::DateTime::from_secs(
                        time::OffsetDateTime::now_utc().unix_timestamp() + secs,
                    ))
                    .build(),
            )
            .send()
    };
    assert_eq!(
        code(retain(ObjectLockRetentionMode::from("abc"), 3600, false).await),
        "MalformedXML"
    );
    retain(governance.clone(), 7200, false).await.unwrap();
    // Shortening a GOVERNANCE retention needs the bypass; extending does not.
    // (The root key holds s3:BypassGovernanceRetention, but must ask for it.)
    assert_eq!(
        code(retain(governance.clone(), 3600, false).await),
        "AccessDenied"
    );
    retain(governance.clone(), 10_800, false).await.unwrap();
    retain(governance.clone(), 3600, true).await.unwrap();
    let hold = s3
        .put_object_legal_hold()
        .bucket("worm")
        .key("k")
        .legal_hold(
            ObjectLockLegalHold::builder()
                .status(ObjectLockLegalHoldStatus::from("abc"))
                .build(),
        )
        .send()
        .await;
    assert_eq!(code(hold), "MalformedXML");
    // Clean up the retention so the server can drop the bucket's data.
    retain(governance, 1, true).await.unwrap();
    t.stop().await;
}

/// A SigV2 header-signed GET with a wrong signature and the given `Date`.
async fn sigv2_get(t: &TestServer, date: Option<&str>) -> (u16, String) {
    let root = t.server.root_key();
    let mut request = reqwest::Client::new()
        .get(format!("{}/sig-v2/k", t.endpoint()))
        .header(
            "authorization",
            format!("AWS {}:bm90LWEtc2lnbmF0dXJl", root.id),
        );
    if let Some(date) = date {
        request = request.header("date", date);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn sigv2_header_auth_judges_the_date_before_the_signature(backend: Backend) {
    let t = TestServer::start(backend).await;
    t.root_client()
        .create_bucket()
        .bucket("sig-v2")
        .send()
        .await
        .unwrap();
    let (status, body) = sigv2_get(&t, None).await;
    assert_eq!((status, xml_code(&body)), (403, "AccessDenied"), "{body}");
    let (status, body) = sigv2_get(&t, Some("yesterday-ish")).await;
    assert_eq!((status, xml_code(&body)), (403, "AccessDenied"), "{body}");
    let skewed = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    let (status, body) = sigv2_get(&t, Some(&skewed)).await;
    assert_eq!(
        (status, xml_code(&body)),
        (403, "RequestTimeTooSkewed"),
        "{body}"
    );
    let now = httpdate::fmt_http_date(SystemTime::now());
    let (status, body) = sigv2_get(&t, Some(&now)).await;
    assert_eq!(
        (status, xml_code(&body)),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    t.stop().await;
}

async fn head_carries_what_get_carries(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("heads").send().await.unwrap();
    s3.put_object()
        .bucket("heads")
        .key("tagged")
        .tagging("a=1&b=2")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("heads")
        .key("tagged")
        .send()
        .await
        .unwrap();
    assert_eq!(got.tag_count(), Some(2));
    let (status, headers, _) = raw(&t, "HEAD", "/heads/tagged", &[], Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers
            .get("x-amz-tagging-count")
            .map(|v| v.to_str().unwrap()),
        Some("2")
    );
    put(&s3, "heads", "plain", b"y").await;
    let (_, headers, _) = raw(&t, "HEAD", "/heads/plain", &[], Vec::new()).await;
    assert!(headers.get("x-amz-tagging-count").is_none());
    // Delete markers: HEAD says so, as GET does.
    s3.put_bucket_versioning()
        .bucket("heads")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let marker = s3
        .delete_object()
        .bucket("heads")
        .key("plain")
        .send()
        .await
        .unwrap();
    let marker_id = marker.version_id().unwrap().to_owned();
    for (method, path, expected) in [
        ("HEAD", "/heads/plain".to_owned(), 404),
        ("GET", "/heads/plain".to_owned(), 404),
        ("HEAD", format!("/heads/plain?versionId={marker_id}"), 405),
        ("GET", format!("/heads/plain?versionId={marker_id}"), 405),
    ] {
        let (status, headers, _) = raw(&t, method, &path, &[], Vec::new()).await;
        assert_eq!(status, expected, "{method} {path}");
        assert_eq!(
            headers
                .get("x-amz-delete-marker")
                .map(|v| v.to_str().unwrap()),
            Some("true"),
            "{method} {path}"
        );
        assert_eq!(
            headers.get("x-amz-version-id").map(|v| v.to_str().unwrap()),
            Some(marker_id.as_str()),
            "{method} {path}"
        );
    }
    t.stop().await;
}

async fn content_encoding_never_keeps_aws_chunked(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("enc").send().await.unwrap();
    for (sent, kept) in [
        ("aws-chunked", None),
        ("aws-chunked,gzip", Some("gzip")),
        ("gzip, aws-chunked", Some("gzip")),
        ("br", Some("br")),
    ] {
        let (status, _, body) = raw(
            &t,
            "PUT",
            "/enc/k",
            &[("content-encoding", sent)],
            b"bytes".to_vec(),
        )
        .await;
        assert_eq!(status, 200, "{sent}: {body}");
        let head = s3
            .head_object()
            .bucket("enc")
            .key("k")
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_encoding(), kept, "{sent}");
        let got = s3.get_object().bucket("enc").key("k").send().await.unwrap();
        assert_eq!(got.content_encoding(), kept, "{sent}");
    }
    // A real aws-chunked upload from the SDK (a streaming body with a trailing
    // checksum) stores no encoding either.
    let path = t.data_dir.join("upload.bin");
    std::fs::write(&path, vec![7u8; 100_000]).unwrap();
    s3.put_object()
        .bucket("enc")
        .key("streamed")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("enc")
        .key("streamed")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_encoding(), None);
    assert_eq!(head.content_length(), Some(100_000));
    t.stop().await;
}

/// Sends `body` as a stream: `Transfer-Encoding: chunked`, no `Content-Length`.
async fn send_chunked(request: http::Request<Vec<u8>>) -> (u16, String) {
    let (parts, body) = request.into_parts();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let mut builder = reqwest::Client::new()
        .request(parts.method, parts.uri.to_string())
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    let response = builder.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn chunked_transfer_encoding_without_content_length(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("chunked").send().await.unwrap();
    let root = t.server.root_key();
    // aws-chunked with x-amz-decoded-content-length: accepted, as on AWS.
    let pieces: [&[u8]; 2] = [&[b'z'; 70_000], b"end"];
    let decoded_len = pieces.iter().map(|p| p.len()).sum::<usize>();
    let when = SystemTime::now();
    let mut request = http::Request::put(format!("{}/chunked/streamed", t.endpoint()))
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", decoded_len.to_string())
        .body(Vec::new())
        .unwrap();
    let seed = sign_at(
        &mut request,
        &root.id,
        &root.secret,
        Payload::Declared("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        when,
    );
    *request.body_mut() = crate::bad_input::chunked_body(&pieces, &seed, &root.secret, when);
    let (status, body) = send_chunked(request).await;
    assert_eq!(status, 200, "{body}");
    let stored = body_of(&s3, "chunked", "streamed").await;
    assert_eq!(stored.len(), decoded_len);
    assert!(stored.ends_with(b"end"));
    let head = s3
        .head_object()
        .bucket("chunked")
        .key("streamed")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_encoding(), None);
    // A plain body of unknown length: 411 MissingContentLength, as on AWS;
    // nothing is stored.
    let mut request = http::Request::put(format!("{}/chunked/plain", t.endpoint()))
        .body(b"no length given".to_vec())
        .unwrap();
    sign(&mut request, &root.id, &root.secret, true);
    let (status, body) = send_chunked(request).await;
    assert_eq!(
        (status, xml_code(&body)),
        (411, "MissingContentLength"),
        "{body}"
    );
    assert_eq!(
        code(s3.head_object().bucket("chunked").key("plain").send().await),
        "NotFound"
    );
    t.stop().await;
}

on_both_backends!(
    dot_segments_are_ordinary_key_characters,
    completion_retried_after_success_returns_the_same_success,
    a_part_uploaded_twice_keeps_the_one_that_finished_last,
    part_number_beyond_the_parts_is_invalid_part,
    creating_a_bucket_you_own_answers_as_aws_per_region,
    list_buckets_pages_with_max_buckets_and_continuation_token,
    max_keys_zero_is_an_empty_page_that_is_not_truncated,
    every_checksum_mismatch_is_bad_digest,
    post_policy_errors_are_answered_as_on_aws,
    lifecycle_validation_and_rules_returned_as_put,
    object_lock_validation_errors_match_aws,
    sigv2_header_auth_judges_the_date_before_the_signature,
    head_carries_what_get_carries,
    content_encoding_never_keeps_aws_chunked,
    chunked_transfer_encoding_without_content_length,
);
