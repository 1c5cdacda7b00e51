use aws_sdk_s3::Client;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn upload_parts(
    s3: &Client,
    bucket: &str,
    key: &str,
    upload: &str,
    parts: &[Vec<u8>],
) -> Vec<CompletedPart> {
    let mut completed = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let number = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload)
            .part_number(number)
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    completed
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

async fn multipart_upload_completes_without_copying(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let created = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("big")
        .content_type("video/mp4")
        .send()
        .await
        .unwrap();
    let upload = created.upload_id().unwrap();
    let parts = [pattern(5 * MIB, 1), pattern(5 * MIB, 2), pattern(123, 3)];
    let completed = upload_parts(&s3, "mpu", "big", upload, &parts).await;
    let listed = s3
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 3);
    assert_eq!(listed.parts()[2].size(), Some(123));
    let paged = s3
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(upload)
        .max_parts(2)
        .send()
        .await
        .unwrap();
    assert_eq!(paged.is_truncated(), Some(true));
    assert_eq!(paged.next_part_number_marker(), Some("2"));
    let uploads = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);
    assert_eq!(uploads.uploads()[0].upload_id(), Some(upload));
    let blobs_before = crate::objects::count_blob_files(&t.data_dir);
    let done = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(upload)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        crate::objects::count_blob_files(&t.data_dir),
        blobs_before,
        "completion copies no bytes"
    );
    let mut digests = Vec::new();
    for p in &parts {
        digests.extend(hex::decode(md5_hex(p)).unwrap());
    }
    let expected = format!("\"{}-3\"", md5_hex(&digests));
    assert_eq!(done.e_tag(), Some(expected.as_str()));
    let got = s3
        .get_object()
        .bucket("mpu")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("video/mp4"));
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(body.len(), 10 * MIB + 123);
    assert_eq!(&body[..5 * MIB], &parts[0][..]);
    assert_eq!(&body[10 * MIB..], &parts[2][..]);
    let part2 = s3
        .get_object()
        .bucket("mpu")
        .key("big")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(part2.parts_count(), Some(3));
    assert_eq!(
        part2.body.collect().await.unwrap().into_bytes().as_ref(),
        &parts[1][..]
    );
    let across = s3
        .get_object()
        .bucket("mpu")
        .key("big")
        .range(format!("bytes={}-{}", 5 * MIB - 3, 5 * MIB + 2))
        .send()
        .await
        .unwrap();
    let across = across.body.collect().await.unwrap().into_bytes();
    assert_eq!(&across[..3], &parts[0][5 * MIB - 3..]);
    assert_eq!(&across[3..], &parts[1][..3]);
    assert!(
        s3.list_multipart_uploads()
            .bucket("mpu")
            .send()
            .await
            .unwrap()
            .uploads()
            .is_empty()
    );
    t.stop().await;
}

async fn completion_errors_invalid_part_order_and_too_small(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("mpe").send().await.unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("mpe")
        .key("k")
        .send()
        .await
        .unwrap();
    let upload = upload.upload_id().unwrap();
    let parts = [pattern(1000, 1), pattern(1000, 2)];
    let completed = upload_parts(&s3, "mpe", "k", upload, &parts).await;
    let complete = |parts: Vec<CompletedPart>| {
        s3.complete_multipart_upload()
            .bucket("mpe")
            .key("k")
            .upload_id(upload)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
    };
    assert_eq!(code(complete(completed.clone()).await), "EntityTooSmall");
    let reversed = vec![completed[1].clone(), completed[0].clone()];
    assert_eq!(code(complete(reversed).await), "InvalidPartOrder");
    let wrong_etag = vec![
        CompletedPart::builder()
            .part_number(1)
            .e_tag("\"00000000000000000000000000000000\"")
            .build(),
    ];
    assert_eq!(code(complete(wrong_etag).await), "InvalidPart");
    let missing = vec![
        CompletedPart::builder()
            .part_number(7)
            .e_tag(completed[0].e_tag().unwrap())
            .build(),
    ];
    assert_eq!(code(complete(missing).await), "InvalidPart");
    // A single small part is fine: the last part may be small.
    let only_first = vec![completed[0].clone()];
    complete(only_first).await.unwrap();
    let got = s3.get_object().bucket("mpe").key("k").send().await.unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        &parts[0][..]
    );
    t.stop().await;
}

async fn abort_removes_the_upload_and_its_parts(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("abort").send().await.unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("abort")
        .key("k")
        .send()
        .await
        .unwrap();
    let upload = upload.upload_id().unwrap();
    upload_parts(&s3, "abort", "k", upload, &[pattern(100, 1)]).await;
    s3.abort_multipart_upload()
        .bucket("abort")
        .key("k")
        .upload_id(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.list_parts()
                .bucket("abort")
                .key("k")
                .upload_id(upload)
                .send()
                .await
        ),
        "NoSuchUpload"
    );
    let again = s3
        .upload_part()
        .bucket("abort")
        .key("k")
        .upload_id(upload)
        .part_number(1)
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_eq!(code(again), "NoSuchUpload");
    let report = coffer_server::storage::collect_garbage(
        t.server.meta(),
        t.server.blobs(),
        t.server.data_plane().node_id(),
        std::time::Duration::from_secs(3600),
        true,
    )
    .await
    .unwrap();
    assert_eq!(report.garbage_removed, 1);
    assert_eq!(crate::objects::count_blob_files(&t.data_dir), 0);
    t.stop().await;
}

async fn upload_part_copy_takes_a_byte_range(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("upc").send().await.unwrap();
    let source = pattern(6 * MIB, 9);
    s3.put_object()
        .bucket("upc")
        .key("src")
        .body(source.clone().into())
        .send()
        .await
        .unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("upc")
        .key("dst")
        .send()
        .await
        .unwrap();
    let upload = upload.upload_id().unwrap();
    let first = s3
        .upload_part_copy()
        .bucket("upc")
        .key("dst")
        .upload_id(upload)
        .part_number(1)
        .copy_source("upc/src")
        .copy_source_range(format!("bytes=0-{}", 5 * MIB - 1))
        .send()
        .await
        .unwrap();
    let second = s3
        .upload_part_copy()
        .bucket("upc")
        .key("dst")
        .upload_id(upload)
        .part_number(2)
        .copy_source("upc/src")
        .copy_source_range(format!("bytes={}-{}", 5 * MIB, 6 * MIB - 1))
        .send()
        .await
        .unwrap();
    let bad_range = s3
        .upload_part_copy()
        .bucket("upc")
        .key("dst")
        .upload_id(upload)
        .part_number(3)
        .copy_source("upc/src")
        .copy_source_range(format!("bytes=0-{}", 7 * MIB))
        .send()
        .await;
    assert_eq!(code(bad_range), "InvalidRange");
    let parts = vec![
        CompletedPart::builder()
            .part_number(1)
            .e_tag(first.copy_part_result().unwrap().e_tag().unwrap())
            .build(),
        CompletedPart::builder()
            .part_number(2)
            .e_tag(second.copy_part_result().unwrap().e_tag().unwrap())
            .build(),
    ];
    s3.complete_multipart_upload()
        .bucket("upc")
        .key("dst")
        .upload_id(upload)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("upc")
        .key("dst")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        &source[..]
    );
    t.stop().await;
}

async fn composite_checksum_of_parts(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("mpsum").send().await.unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("mpsum")
        .key("k")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap();
    let upload = upload.upload_id().unwrap();
    let mut completed = Vec::new();
    for (i, data) in [pattern(5 * MIB, 1), pattern(10, 2)].iter().enumerate() {
        let out = s3
            .upload_part()
            .bucket("mpsum")
            .key("k")
            .upload_id(upload)
            .part_number(i as i32 + 1)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        assert!(out.checksum_sha256().is_some());
        completed.push(
            CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(out.e_tag().unwrap())
                .checksum_sha256(out.checksum_sha256().unwrap())
                .build(),
        );
    }
    let done = s3
        .complete_multipart_upload()
        .bucket("mpsum")
        .key("k")
        .upload_id(upload)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let value = done.checksum_sha256().expect("composite checksum");
    assert!(value.ends_with("-2"), "{value}");
    t.stop().await;
}

async fn full_object_crc_checksum_is_combined_from_parts(backend: Backend) {
    use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
    use base64::Engine as _;
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("fullsum").send().await.unwrap();
    let parts_data = [pattern(5 * MIB, 4), pattern(777, 5)];
    let whole: Vec<u8> = parts_data.concat();
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, &whole) as u32;
    let expected = base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes());
    for (key, sent) in [("good", expected.clone()), ("bad", "AAAAAA==".to_owned())] {
        let upload = s3
            .create_multipart_upload()
            .bucket("fullsum")
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .unwrap();
        assert_eq!(upload.checksum_type(), Some(&ChecksumType::FullObject));
        let upload = upload.upload_id().unwrap();
        let mut completed = Vec::new();
        for (i, data) in parts_data.iter().enumerate() {
            let out = s3
                .upload_part()
                .bucket("fullsum")
                .key(key)
                .upload_id(upload)
                .part_number(i as i32 + 1)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(data.clone().into())
                .send()
                .await
                .unwrap();
            completed.push(
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(out.e_tag().unwrap())
                    .checksum_crc32(out.checksum_crc32().unwrap())
                    .build(),
            );
        }
        let done = s3
            .complete_multipart_upload()
            .bucket("fullsum")
            .key(key)
            .upload_id(upload)
            .checksum_crc32(&sent)
            .checksum_type(ChecksumType::FullObject)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        if key == "bad" {
            assert_eq!(code(done), "BadDigest");
            continue;
        }
        let done = done.unwrap();
        assert_eq!(done.checksum_crc32(), Some(expected.as_str()));
        // The SDK validates a FULL_OBJECT checksum on download: it must be the real one.
        let got = s3
            .get_object()
            .bucket("fullsum")
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(got.checksum_crc32(), Some(expected.as_str()));
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes().as_ref(),
            &whole[..]
        );
    }
    let sha_full = s3
        .create_multipart_upload()
        .bucket("fullsum")
        .key("sha")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_type(ChecksumType::FullObject)
        .send()
        .await;
    assert_eq!(code(sha_full), "InvalidRequest");
    t.stop().await;
}

on_both_backends!(
    full_object_crc_checksum_is_combined_from_parts,
    multipart_upload_completes_without_copying,
    completion_errors_invalid_part_order_and_too_small,
    abort_removes_the_upload_and_its_parts,
    upload_part_copy_takes_a_byte_range,
    composite_checksum_of_parts,
);
