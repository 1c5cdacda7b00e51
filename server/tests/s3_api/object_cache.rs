//! The object cache behind GET and HEAD: a lone server serves hot keys from it,
//! and every kind of write is seen by the very next read.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    MetadataDirective, ObjectLockLegalHold, ObjectLockLegalHoldStatus, Tag, Tagging,
};

use crate::common::{Backend, TestServer, code, one_part};
use crate::on_both_backends;

async fn metric(t: &TestServer, name: &str) -> i64 {
    coffer_testkit::metric(&t.endpoint(), name).await
}

async fn body(s3: &aws_sdk_s3::Client, key: &str) -> Vec<u8> {
    let out = s3.get_object().bucket("cached").key(key).send().await;
    let out = out.unwrap_or_else(|e| panic!("GET {key}: {e:?}"));
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, bytes: &[u8]) {
    s3.put_object()
        .bucket("cached")
        .key(key)
        .body(ByteStream::from(bytes.to_vec()))
        .send()
        .await
        .expect("put");
}

async fn legal_hold(s3: &aws_sdk_s3::Client, key: &str, status: ObjectLockLegalHoldStatus) {
    let hold = ObjectLockLegalHold::builder().status(status).build();
    s3.put_object_legal_hold()
        .bucket("cached")
        .key(key)
        .legal_hold(hold)
        .send()
        .await
        .expect("legal hold");
}

async fn a_lone_server_answers_repeated_reads_from_its_cache(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("cached").send().await.unwrap();
    put(&s3, "hot", b"hot bytes").await;
    assert_eq!(metric(&t, "coffer_object_cache_leased").await, 1);
    let hits = metric(&t, "coffer_object_cache_hits_total").await;
    for _ in 0..5 {
        assert_eq!(body(&s3, "hot").await, b"hot bytes");
    }
    let head = s3.head_object().bucket("cached").key("hot").send().await;
    assert_eq!(head.unwrap().content_length(), Some(9));
    // The first read fills the entry; the other five are answered from it.
    assert!(metric(&t, "coffer_object_cache_hits_total").await >= hits + 5);
    assert!(metric(&t, "coffer_object_cache_entries").await >= 1);
    t.stop().await;
}

async fn every_write_is_seen_by_the_next_read_through_the_cache(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("cached")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let k = "k";
    put(&s3, k, b"one").await;
    assert_eq!(body(&s3, k).await, b"one");
    assert_eq!(body(&s3, k).await, b"one");

    // Overwrite (a versioned bucket: Object Lock turns versioning on).
    put(&s3, k, b"two").await;
    assert_eq!(body(&s3, k).await, b"two");

    // Tags of the current version.
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("a").value("1").build().unwrap())
        .build()
        .unwrap();
    s3.put_object_tagging()
        .bucket("cached")
        .key(k)
        .tagging(tagging)
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("cached")
        .key(k)
        .send()
        .await
        .unwrap();
    assert_eq!(got.tag_count(), Some(1));

    // Metadata replaced by a copy onto itself.
    s3.copy_object()
        .bucket("cached")
        .key(k)
        .copy_source(format!("cached/{k}"))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("color", "green")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("cached")
        .key(k)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("color"))
            .map(String::as_str),
        Some("green")
    );

    // A legal hold on the current version.
    legal_hold(&s3, k, ObjectLockLegalHoldStatus::On).await;
    let head = s3
        .head_object()
        .bucket("cached")
        .key(k)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.object_lock_legal_hold_status(),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    legal_hold(&s3, k, ObjectLockLegalHoldStatus::Off).await;

    // A multipart upload completed over it.
    let upload = s3
        .create_multipart_upload()
        .bucket("cached")
        .key(k)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket("cached")
        .key(k)
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"three"))
        .send()
        .await
        .unwrap();
    s3.complete_multipart_upload()
        .bucket("cached")
        .key(k)
        .upload_id(upload_id)
        .multipart_upload(one_part(part.e_tag().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(body(&s3, k).await, b"three");

    // A delete marker hides it.
    s3.delete_object()
        .bucket("cached")
        .key(k)
        .send()
        .await
        .unwrap();
    let gone = s3.get_object().bucket("cached").key(k).send().await;
    assert_eq!(code(gone), "NoSuchKey");

    // Many concurrent overwrites: the last acknowledged one is what is read.
    let writers = (0..16).map(|i| {
        let s3 = s3.clone();
        tokio::spawn(async move { put(&s3, "race", format!("w{i}").as_bytes()).await })
    });
    for w in writers {
        w.await.unwrap();
    }
    let last = format!("w{}", 99);
    put(&s3, "race", last.as_bytes()).await;
    for _ in 0..3 {
        assert_eq!(body(&s3, "race").await, last.as_bytes());
    }
    t.stop().await;
}

async fn with_the_cache_off_reads_still_work_and_nothing_is_cached(backend: Backend) {
    let t = TestServer::start_with(backend, |c| c.object_cache_bytes = 0).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("cached").send().await.unwrap();
    put(&s3, "k", b"v").await;
    assert_eq!(body(&s3, "k").await, b"v");
    assert_eq!(body(&s3, "k").await, b"v");
    assert_eq!(metric(&t, "coffer_object_cache_hits_total").await, 0);
    assert_eq!(metric(&t, "coffer_object_cache_leased").await, 0);
    t.stop().await;
}

on_both_backends!(
    a_lone_server_answers_repeated_reads_from_its_cache,
    every_write_is_seen_by_the_next_read_through_the_cache,
    with_the_cache_off_reads_still_work_and_nothing_is_cached,
);
