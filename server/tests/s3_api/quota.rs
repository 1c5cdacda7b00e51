use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

type Client = aws_sdk_s3::Client;

async fn set_quota(t: &TestServer, bucket: &str, quota: &str) {
    t.server
        .meta()
        .set_bucket_config(bucket, "quota", Some(quota))
        .await
        .unwrap();
}

async fn put(s3: &Client, bucket: &str, key: &str, len: usize) -> Result<(), String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(vec![b'x'; len]))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| code(Err::<(), _>(e)))
}

async fn usage(t: &TestServer, bucket: &str) -> (u64, u64) {
    let u = t.server.meta().bucket_usage(bucket).await.unwrap();
    (u.objects, u.bytes)
}

async fn quota_refuses_objects_beyond_max_objects(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("quota").send().await.unwrap();
    set_quota(&t, "quota", r#"{"MaxObjects":2}"#).await;
    put(&s3, "quota", "a", 1).await.unwrap();
    put(&s3, "quota", "b", 1).await.unwrap();
    let err = s3
        .put_object()
        .bucket("quota")
        .key("c")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(code(Err::<(), _>(err)), "QuotaExceeded");
    // Overwriting does not add an object; deleting makes room.
    put(&s3, "quota", "a", 3).await.unwrap();
    assert_eq!(usage(&t, "quota").await, (2, 4));
    let copy = s3
        .copy_object()
        .bucket("quota")
        .key("c")
        .copy_source("quota/a")
        .send()
        .await;
    assert_eq!(code(copy), "QuotaExceeded");
    s3.delete_object()
        .bucket("quota")
        .key("b")
        .send()
        .await
        .unwrap();
    put(&s3, "quota", "c", 1).await.unwrap();
    assert_eq!(usage(&t, "quota").await, (2, 4));
    let listed = s3.list_objects_v2().bucket("quota").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(2));
    t.stop().await;
}

async fn quota_refuses_bytes_beyond_max_size(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("quota").send().await.unwrap();
    set_quota(&t, "quota", r#"{"MaxSizeBytes":100}"#).await;
    put(&s3, "quota", "a", 60).await.unwrap();
    assert_eq!(
        put(&s3, "quota", "b", 41).await,
        Err("QuotaExceeded".to_owned())
    );
    // A body larger than the whole quota is refused before it is read.
    assert_eq!(
        put(&s3, "quota", "b", 101).await,
        Err("QuotaExceeded".to_owned())
    );
    // Replacing an object counts only the difference.
    put(&s3, "quota", "a", 100).await.unwrap();
    assert_eq!(usage(&t, "quota").await, (1, 100));
    put(&s3, "quota", "a", 10).await.unwrap();
    // A multipart upload is checked when it completes; the upload survives a refusal.
    let upload = s3
        .create_multipart_upload()
        .bucket("quota")
        .key("mp")
        .send()
        .await
        .unwrap();
    let part = s3
        .upload_part()
        .bucket("quota")
        .key("mp")
        .upload_id(upload.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from(vec![b'y'; 91]))
        .send()
        .await
        .unwrap();
    let complete = s3
        .complete_multipart_upload()
        .bucket("quota")
        .key("mp")
        .upload_id(upload.upload_id().unwrap())
        .multipart_upload(crate::common::one_part(part.e_tag().unwrap()))
        .send()
        .await;
    assert_eq!(code(complete), "QuotaExceeded");
    let parts = s3
        .list_parts()
        .bucket("quota")
        .key("mp")
        .upload_id(upload.upload_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(parts.parts().len(), 1);
    assert_eq!(usage(&t, "quota").await, (1, 10));
    t.stop().await;
}

async fn quota_counts_noncurrent_versions(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("quota").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("quota")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    set_quota(&t, "quota", r#"{"MaxObjects":2}"#).await;
    put(&s3, "quota", "k", 5).await.unwrap();
    put(&s3, "quota", "k", 5).await.unwrap();
    assert_eq!(usage(&t, "quota").await, (2, 10));
    assert_eq!(
        put(&s3, "quota", "k", 5).await,
        Err("QuotaExceeded".to_owned())
    );
    // A delete marker takes no room; deleting a version by id frees it.
    let marker = s3
        .delete_object()
        .bucket("quota")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(marker.delete_marker(), Some(true));
    assert_eq!(usage(&t, "quota").await, (2, 10));
    let versions = s3
        .list_object_versions()
        .bucket("quota")
        .send()
        .await
        .unwrap();
    let oldest = versions.versions().last().unwrap().version_id().unwrap();
    s3.delete_object()
        .bucket("quota")
        .key("k")
        .version_id(oldest)
        .send()
        .await
        .unwrap();
    assert_eq!(usage(&t, "quota").await, (1, 5));
    put(&s3, "quota", "k", 5).await.unwrap();
    t.stop().await;
}

async fn concurrent_writes_never_exceed_the_quota(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("quota").send().await.unwrap();
    set_quota(&t, "quota", r#"{"MaxObjects":5,"MaxSizeBytes":1000000}"#).await;
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let s3 = s3.clone();
            tokio::spawn(async move { put(&s3, "quota", &format!("key-{i}"), 100).await })
        })
        .collect();
    let mut accepted = 0;
    for writer in writers {
        match writer.await.unwrap() {
            Ok(()) => accepted += 1,
            Err(code) => assert_eq!(code, "QuotaExceeded"),
        }
    }
    assert_eq!(accepted, 5);
    assert_eq!(usage(&t, "quota").await, (5, 500));
    let listed = s3.list_objects_v2().bucket("quota").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(5));
    t.stop().await;
}

on_both_backends!(
    quota_refuses_objects_beyond_max_objects,
    quota_refuses_bytes_beyond_max_size,
    quota_counts_noncurrent_versions,
    concurrent_writes_never_exceed_the_quota,
);
