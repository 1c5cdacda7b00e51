use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, Delete, MetadataDirective, ObjectIdentifier,
};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

async fn body_of(output: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    output.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn put_then_get_returns_bytes_headers_and_metadata(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("objects").send().await.unwrap();
    let data = pattern(3 * 1024 * 1024 + 17);
    let put = s3
        .put_object()
        .bucket("objects")
        .key("dir/file.bin")
        .content_type("application/x-test")
        .content_disposition("attachment; filename=\"f.bin\"")
        .cache_control("max-age=60")
        .content_language("en")
        .metadata("color", "blue")
        .metadata("Owner", "team-a")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let expected_etag = format!("\"{:x}\"", md5_of(&data));
    assert_eq!(put.e_tag(), Some(expected_etag.as_str()));
    let got = s3
        .get_object()
        .bucket("objects")
        .key("dir/file.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/x-test"));
    assert_eq!(
        got.content_disposition(),
        Some("attachment; filename=\"f.bin\"")
    );
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(got.content_language(), Some("en"));
    assert_eq!(got.e_tag(), Some(expected_etag.as_str()));
    assert_eq!(got.content_length(), Some(data.len() as i64));
    let metadata = got.metadata().unwrap();
    assert_eq!(metadata.get("color").map(String::as_str), Some("blue"));
    assert_eq!(metadata.get("owner").map(String::as_str), Some("team-a"));
    assert_eq!(body_of(got).await, data);
    let head = s3
        .head_object()
        .bucket("objects")
        .key("dir/file.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(
        code(
            s3.get_object()
                .bucket("objects")
                .key("missing")
                .send()
                .await
        ),
        "NoSuchKey"
    );
    assert_eq!(
        code(s3.get_object().bucket("nobucket").key("k").send().await),
        "NoSuchBucket"
    );
    t.stop().await;
}

fn md5_of(data: &[u8]) -> u128 {
    use md5::Digest;
    u128::from_be_bytes(md5::Md5::digest(data).into())
}

async fn ranges_and_part_numbers_select_bytes(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("ranges").send().await.unwrap();
    let data = pattern(2 * 1024 * 1024 + 100);
    s3.put_object()
        .bucket("ranges")
        .key("r")
        .body(data.clone().into())
        .send()
        .await
        .unwrap();
    let len = data.len();
    for (range, expected) in [
        ("bytes=0-9".to_owned(), &data[0..10]),
        (
            "bytes=1048570-1048590".to_owned(),
            &data[1_048_570..1_048_591],
        ),
        (format!("bytes={}-", len - 5), &data[len - 5..]),
        ("bytes=-7".to_owned(), &data[len - 7..]),
        (format!("bytes=10-{}", len + 1000), &data[10..]),
    ] {
        let got = s3
            .get_object()
            .bucket("ranges")
            .key("r")
            .range(&range)
            .send()
            .await
            .unwrap();
        assert!(got.content_range().is_some(), "{range}");
        assert_eq!(body_of(got).await, expected, "{range}");
    }
    assert_eq!(
        code(
            s3.get_object()
                .bucket("ranges")
                .key("r")
                .range(format!("bytes={len}-"))
                .send()
                .await
        ),
        "InvalidRange"
    );
    let part = s3
        .get_object()
        .bucket("ranges")
        .key("r")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(part).await, data);
    assert_eq!(
        code(
            s3.get_object()
                .bucket("ranges")
                .key("r")
                .part_number(2)
                .send()
                .await
        ),
        "InvalidPart",
        "a part the object does not have: 400 InvalidPart, as on AWS"
    );
    t.stop().await;
}

async fn conditional_reads_answer_304_and_412(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("cond").send().await.unwrap();
    let etag = s3
        .put_object()
        .bucket("cond")
        .key("k")
        .body(b"v1".to_vec().into())
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    s3.get_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.get_object()
                .bucket("cond")
                .key("k")
                .if_match("\"nope\"")
                .send()
                .await
        ),
        "PreconditionFailed"
    );
    assert_eq!(
        code(
            s3.get_object()
                .bucket("cond")
                .key("k")
                .if_none_match(&etag)
                .send()
                .await
        ),
        "HTTP 304"
    );
    let future = DateTime::from_secs(4_000_000_000);
    let past = DateTime::from_secs(1_000_000_000);
    assert_eq!(
        code(
            s3.get_object()
                .bucket("cond")
                .key("k")
                .if_modified_since(future)
                .send()
                .await
        ),
        "HTTP 304"
    );
    s3.get_object()
        .bucket("cond")
        .key("k")
        .if_modified_since(past)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.get_object()
                .bucket("cond")
                .key("k")
                .if_unmodified_since(past)
                .send()
                .await
        ),
        "PreconditionFailed"
    );
    let overridden = s3
        .get_object()
        .bucket("cond")
        .key("k")
        .response_content_type("text/x-override")
        .response_content_disposition("inline")
        .send()
        .await
        .unwrap();
    assert_eq!(overridden.content_type(), Some("text/x-override"));
    assert_eq!(overridden.content_disposition(), Some("inline"));
    t.stop().await;
}

async fn conditional_writes_are_atomic_preconditions(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("cond-write")
        .send()
        .await
        .unwrap();
    let first = s3
        .put_object()
        .bucket("cond-write")
        .key("k")
        .if_none_match("*")
        .body(b"first".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.put_object()
                .bucket("cond-write")
                .key("k")
                .if_none_match("*")
                .body(b"second".to_vec().into())
                .send()
                .await
        ),
        "PreconditionFailed"
    );
    assert_eq!(
        code(
            s3.put_object()
                .bucket("cond-write")
                .key("k")
                .if_match("\"0000\"")
                .body(b"third".to_vec().into())
                .send()
                .await
        ),
        "PreconditionFailed"
    );
    s3.put_object()
        .bucket("cond-write")
        .key("k")
        .if_match(first.e_tag().unwrap())
        .body(b"fourth".to_vec().into())
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("cond-write")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(got).await, b"fourth");
    t.stop().await;
}

async fn additional_checksums_are_verified_stored_and_returned(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("sums").send().await.unwrap();
    for algorithm in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Crc64Nvme,
    ] {
        let key = format!("obj-{}", algorithm.as_str());
        let put = s3
            .put_object()
            .bucket("sums")
            .key(&key)
            .checksum_algorithm(algorithm.clone())
            .body(b"hello world".to_vec().into())
            .send()
            .await
            .unwrap();
        let got = s3
            .get_object()
            .bucket("sums")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let (sent, returned) = match algorithm {
            ChecksumAlgorithm::Crc32 => (put.checksum_crc32(), got.checksum_crc32()),
            ChecksumAlgorithm::Crc32C => (put.checksum_crc32_c(), got.checksum_crc32_c()),
            ChecksumAlgorithm::Sha1 => (put.checksum_sha1(), got.checksum_sha1()),
            ChecksumAlgorithm::Sha256 => (put.checksum_sha256(), got.checksum_sha256()),
            _ => (put.checksum_crc64_nvme(), got.checksum_crc64_nvme()),
        };
        assert!(sent.is_some(), "{key}: no checksum in PUT response");
        assert_eq!(
            sent.map(str::to_owned),
            returned.map(str::to_owned),
            "{key}"
        );
    }
    // CRC32("hello world") is DUoRhQ==; a wrong value must be refused and leave nothing.
    let wrong = s3
        .put_object()
        .bucket("sums")
        .key("bad")
        .checksum_crc32("AAAAAA==")
        .body(b"hello world".to_vec().into())
        .send()
        .await;
    assert_eq!(code(wrong), "BadDigest");
    assert_eq!(
        code(s3.head_object().bucket("sums").key("bad").send().await),
        "NotFound"
    );
    let bad_md5 = s3
        .put_object()
        .bucket("sums")
        .key("bad")
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(b"not empty".to_vec().into())
        .send()
        .await;
    assert_eq!(code(bad_md5), "BadDigest");
    t.stop().await;
}

async fn delete_objects_in_batch_and_quiet_mode(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("batch").send().await.unwrap();
    for i in 0..5 {
        s3.put_object()
            .bucket("batch")
            .key(format!("k{i}"))
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let ids = |keys: &[&str]| {
        Delete::builder()
            .set_objects(Some(
                keys.iter()
                    .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                    .collect(),
            ))
            .build()
            .unwrap()
    };
    let out = s3
        .delete_objects()
        .bucket("batch")
        .delete(ids(&["k0", "k1", "absent"]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 3);
    assert!(out.errors().is_empty());
    let mut quiet = ids(&["k2", "k3"]);
    quiet.quiet = Some(true);
    let out = s3
        .delete_objects()
        .bucket("batch")
        .delete(quiet)
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty());
    let left: Vec<String> = s3
        .list_objects_v2()
        .bucket("batch")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(left, ["k4"]);
    t.stop().await;
}

async fn copy_object_with_directives_and_conditions(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("src").send().await.unwrap();
    s3.create_bucket().bucket("dst").send().await.unwrap();
    let key = "dir/with space/ünïcode+plus.txt";
    let data = pattern(1_500_000);
    let etag = s3
        .put_object()
        .bucket("src")
        .key(key)
        .content_type("text/plain")
        .metadata("a", "1")
        .body(data.clone().into())
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    let source = format!("src/{}", urlencoding::encode(key));
    let copied = s3
        .copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source(&source)
        .send()
        .await
        .unwrap();
    assert_eq!(
        copied.copy_object_result().unwrap().e_tag(),
        Some(etag.as_str())
    );
    let got = s3
        .get_object()
        .bucket("dst")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(
        got.metadata().unwrap().get("a").map(String::as_str),
        Some("1")
    );
    assert_eq!(body_of(got).await, data);
    s3.copy_object()
        .bucket("dst")
        .key("replaced")
        .copy_source(&source)
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/json")
        .metadata("b", "2")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("dst")
        .key("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    assert!(head.metadata().unwrap().get("a").is_none());
    assert_eq!(
        code(
            s3.copy_object()
                .bucket("dst")
                .key("x")
                .copy_source(&source)
                .copy_source_if_match("\"zzz\"")
                .send()
                .await
        ),
        "PreconditionFailed"
    );
    assert_eq!(
        code(
            s3.copy_object()
                .bucket("src")
                .key(key)
                .copy_source(&source)
                .send()
                .await
        ),
        "InvalidRequest"
    );
    s3.copy_object()
        .bucket("src")
        .key(key)
        .copy_source(&source)
        .metadata_directive(MetadataDirective::Replace)
        .metadata("c", "3")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("src")
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().unwrap().get("c").map(String::as_str),
        Some("3")
    );
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    let got = s3.get_object().bucket("src").key(key).send().await.unwrap();
    assert_eq!(body_of(got).await, data);
    assert_eq!(
        code(
            s3.copy_object()
                .bucket("dst")
                .key("y")
                .copy_source("src/nothing-here")
                .send()
                .await
        ),
        "NoSuchKey"
    );
    t.stop().await;
}

async fn user_metadata_over_two_kilobytes_is_refused(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("meta").send().await.unwrap();
    let big = "v".repeat(2100);
    let result = s3
        .put_object()
        .bucket("meta")
        .key("k")
        .metadata("big", big)
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_eq!(code(result), "MetadataTooLarge");
    assert_eq!(
        code(s3.head_object().bucket("meta").key("k").send().await),
        "NotFound"
    );
    t.stop().await;
}

async fn overwritten_blobs_are_garbage_collected(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("garbage").send().await.unwrap();
    for round in 0..3 {
        s3.put_object()
            .bucket("garbage")
            .key("k")
            // Above the inline limit: each version is a blob file.
            .body(pattern(20_000 + round).into())
            .send()
            .await
            .unwrap();
    }
    s3.put_object()
        .bucket("garbage")
        .key("gone")
        .body(pattern(30_000).into())
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("garbage")
        .key("gone")
        .send()
        .await
        .unwrap();
    // A crash between writing a blob and committing its row leaves an orphan.
    let mut orphan = t.server.blobs().create().unwrap();
    orphan.append(b"never committed").unwrap();
    orphan.finish().unwrap();
    let collect = |grace| {
        coffer_server::storage::collect_garbage(
            t.server.meta(),
            t.server.blobs(),
            t.server.data_plane().node_id(),
            grace,
            true,
        )
    };
    let report = collect(std::time::Duration::from_secs(3600)).await.unwrap();
    assert_eq!(
        report.garbage_removed, 3,
        "two overwritten versions and one deleted object"
    );
    assert_eq!(
        report.orphans_removed, 0,
        "a fresh orphan may still be committed: kept"
    );
    assert_eq!(count_blob_files(&t.data_dir), 2);
    let report = collect(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(report.orphans_removed, 1);
    let files = count_blob_files(&t.data_dir);
    assert_eq!(files, 1, "only the current blob remains");
    let got = s3
        .get_object()
        .bucket("garbage")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(got).await, pattern(20_002));
    t.stop().await;
}

async fn small_objects_live_in_the_metadata_store(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    let meta = t.server.meta();
    s3.create_bucket().bucket("tiny").send().await.unwrap();
    let files_before = count_blob_files(&t.data_dir);
    for body in [&b"first"[..], b"", &pattern(16 * 1024)] {
        s3.put_object()
            .bucket("tiny")
            .key("k")
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
        let got = s3
            .get_object()
            .bucket("tiny")
            .key("k")
            .send()
            .await
            .unwrap();
        assert_eq!(body_of(got).await, body);
        let ranged = s3
            .get_object()
            .bucket("tiny")
            .key("k")
            .range("bytes=1-3")
            .send()
            .await;
        if body.len() > 3 {
            assert_eq!(body_of(ranged.unwrap()).await, &body[1..=3]);
        }
    }
    assert_eq!(
        count_blob_files(&t.data_dir),
        files_before,
        "no blob file for small objects"
    );
    let blob = meta
        .get_object("tiny", "k")
        .await
        .unwrap()
        .unwrap()
        .segments[0]
        .blob
        .clone();
    assert!(coffer_server::meta::is_inline(&blob));
    assert_eq!(
        meta.inline_blob(&blob).await.unwrap(),
        Some(pattern(16 * 1024))
    );
    // One byte over the limit is a blob file again.
    s3.put_object()
        .bucket("tiny")
        .key("k")
        .body(pattern(16 * 1024 + 1).into())
        .send()
        .await
        .unwrap();
    assert_eq!(count_blob_files(&t.data_dir), files_before + 1);
    // The replaced inline bytes go with garbage collection.
    coffer_server::storage::collect_garbage(
        meta,
        t.server.blobs(),
        t.server.data_plane().node_id(),
        std::time::Duration::from_secs(3600),
        false,
    )
    .await
    .unwrap();
    assert_eq!(meta.inline_blob(&blob).await.unwrap(), None);
    // A copy of a small object is small too.
    s3.put_object()
        .bucket("tiny")
        .key("s")
        .body(b"copy me".to_vec().into())
        .send()
        .await
        .unwrap();
    s3.copy_object()
        .bucket("tiny")
        .key("c")
        .copy_source("tiny/s")
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("tiny")
        .key("c")
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(got).await, b"copy me");
    assert_eq!(count_blob_files(&t.data_dir), files_before + 1);
    t.stop().await;
}

pub fn count_blob_files(data_dir: &std::path::Path) -> usize {
    std::fs::read_dir(data_dir.join("blobs"))
        .unwrap()
        .map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap().count())
        .sum()
}

async fn uploads_over_the_size_limit_are_refused(backend: Backend) {
    let t = TestServer::start_with(backend, |c| c.limits.max_object_size = 1000).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("limits").send().await.unwrap();
    s3.put_object()
        .bucket("limits")
        .key("ok")
        .body(pattern(1000).into())
        .send()
        .await
        .unwrap();
    let result = s3
        .put_object()
        .bucket("limits")
        .key("big")
        .body(pattern(1001).into())
        .send()
        .await;
    assert_eq!(code(result), "EntityTooLarge");
    assert_eq!(
        code(s3.head_object().bucket("limits").key("big").send().await),
        "NotFound"
    );
    assert_eq!(
        std::fs::read_dir(t.data_dir.join("tmp")).unwrap().count(),
        0
    );
    t.stop().await;
}

async fn virtual_hosted_style_requests_name_the_bucket_in_the_host(backend: Backend) {
    let t = TestServer::start_with(backend, |c| c.domain = Some("s3.coffer.test".to_owned())).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("vhost").send().await.unwrap();
    s3.put_object()
        .bucket("vhost")
        .key("hello.txt")
        .body(b"virtual".to_vec().into())
        .send()
        .await
        .unwrap();
    let root = t.server.root_key();
    let mut request = http::Request::get(format!("{}/hello.txt", t.endpoint()))
        .header("host", "vhost.s3.coffer.test")
        .body(Vec::new())
        .unwrap();
    crate::common::sign(&mut request, &root.id, &root.secret, false);
    let (status, _, body) = crate::common::send(request).await;
    assert_eq!((status, body.as_str()), (200, "virtual"));
    t.stop().await;
}

on_both_backends!(
    uploads_over_the_size_limit_are_refused,
    virtual_hosted_style_requests_name_the_bucket_in_the_host,
    put_then_get_returns_bytes_headers_and_metadata,
    ranges_and_part_numbers_select_bytes,
    conditional_reads_answer_304_and_412,
    conditional_writes_are_atomic_preconditions,
    additional_checksums_are_verified_stored_and_returned,
    delete_objects_in_batch_and_quiet_mode,
    copy_object_with_directives_and_conditions,
    user_metadata_over_two_kilobytes_is_refused,
    overwritten_blobs_are_garbage_collected,
    small_objects_live_in_the_metadata_store,
);
