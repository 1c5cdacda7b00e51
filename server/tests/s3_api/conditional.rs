//! Conditional writes: `If-None-Match: *` and `If-Match` (an ETag or `*`) on
//! PutObject and CompleteMultipartUpload, checked atomically with the commit.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

type Client = aws_sdk_s3::Client;

async fn body_of(s3: &Client, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket("cond")
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

fn put(
    s3: &Client,
    key: &str,
    body: &'static [u8],
) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    s3.put_object()
        .bucket("cond")
        .key(key)
        .body(ByteStream::from_static(body))
}

async fn put_object_conditions_hold_or_change_nothing(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("cond").send().await.unwrap();
    // If-None-Match: * creates only.
    let first = put(&s3, "k", b"one")
        .if_none_match("*")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(put(&s3, "k", b"two").if_none_match("*").send().await),
        "PreconditionFailed"
    );
    assert_eq!(body_of(&s3, "k").await, b"one");
    // If-Match with the current ETag replaces; a stale one does not.
    let etag = first.e_tag().unwrap().to_owned();
    let second = put(&s3, "k", b"two").if_match(&etag).send().await.unwrap();
    assert_eq!(
        code(put(&s3, "k", b"three").if_match(&etag).send().await),
        "PreconditionFailed"
    );
    assert_eq!(body_of(&s3, "k").await, b"two");
    // Unquoted ETags are the same ETag.
    let bare = second.e_tag().unwrap().trim_matches('"').to_owned();
    put(&s3, "k", b"three")
        .if_match(&bare)
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(&s3, "k").await, b"three");
    // If-Match on a key that does not exist: 404 NoSuchKey.
    assert_eq!(
        code(put(&s3, "absent", b"x").if_match(&etag).send().await),
        "NoSuchKey"
    );
    // If-Match: * needs some current object.
    assert_eq!(
        code(put(&s3, "absent", b"x").if_match("*").send().await),
        "NoSuchKey"
    );
    put(&s3, "k", b"four").if_match("*").send().await.unwrap();
    assert_eq!(body_of(&s3, "k").await, b"four");
    assert_eq!(
        code(s3.head_object().bucket("cond").key("absent").send().await),
        "NotFound"
    );
    t.stop().await;
}

async fn concurrent_creates_with_if_none_match_have_one_winner(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("cond").send().await.unwrap();
    let attempts = (0..8).map(|i| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("cond")
                .key("race")
                .if_none_match("*")
                .body(ByteStream::from(format!("writer {i}").into_bytes()))
                .send()
                .await
                .map(|_| i)
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<i32> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one create wins");
    for result in results.into_iter().filter(|r| r.is_err()) {
        assert_eq!(code(result), "PreconditionFailed");
    }
    assert_eq!(
        body_of(&s3, "race").await,
        format!("writer {}", winners[0]).into_bytes()
    );
    t.stop().await;
}

async fn start_upload(s3: &Client, key: &str) -> (String, CompletedMultipartUpload) {
    let upload = s3
        .create_multipart_upload()
        .bucket("cond")
        .key(key)
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap().to_owned();
    let part = s3
        .upload_part()
        .bucket("cond")
        .key(key)
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"multipart body"))
        .send()
        .await
        .unwrap();
    let parts = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .e_tag(part.e_tag().unwrap())
                .build(),
        )
        .build();
    (id, parts)
}

async fn complete_multipart_upload_honours_conditions(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("cond").send().await.unwrap();
    let existing = put(&s3, "taken", b"already here").send().await.unwrap();
    let complete = |key: &'static str, id: &str, parts: &CompletedMultipartUpload| {
        s3.complete_multipart_upload()
            .bucket("cond")
            .key(key)
            .upload_id(id)
            .multipart_upload(parts.clone())
    };
    // If-None-Match: * onto an existing key fails and leaves the upload to retry.
    let (id, parts) = start_upload(&s3, "taken").await;
    assert_eq!(
        code(
            complete("taken", &id, &parts)
                .if_none_match("*")
                .send()
                .await
        ),
        "PreconditionFailed"
    );
    assert_eq!(body_of(&s3, "taken").await, b"already here");
    // A stale If-Match fails too; the current one succeeds.
    assert_eq!(
        code(
            complete("taken", &id, &parts)
                .if_match("\"0123\"")
                .send()
                .await
        ),
        "PreconditionFailed"
    );
    complete("taken", &id, &parts)
        .if_match(existing.e_tag().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(&s3, "taken").await, b"multipart body");
    // If-Match on a missing key: NoSuchKey; If-None-Match: * creates it.
    let (id, parts) = start_upload(&s3, "fresh").await;
    assert_eq!(
        code(complete("fresh", &id, &parts).if_match("*").send().await),
        "NoSuchKey"
    );
    complete("fresh", &id, &parts)
        .if_none_match("*")
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(&s3, "fresh").await, b"multipart body");
    t.stop().await;
}

on_both_backends!(
    put_object_conditions_hold_or_change_nothing,
    concurrent_creates_with_if_none_match_have_one_winner,
    complete_multipart_upload_honours_conditions,
);
