//! GetObjectAttributes: ETag, checksum, parts (paged), storage class and size,
//! of the current object or a version; SSE-C objects need their key.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart,
    ObjectAttributes, StorageClass, VersioningConfiguration,
};
use base64::Engine as _;

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

fn all() -> Vec<ObjectAttributes> {
    vec![
        ObjectAttributes::Etag,
        ObjectAttributes::Checksum,
        ObjectAttributes::ObjectParts,
        ObjectAttributes::StorageClass,
        ObjectAttributes::ObjectSize,
    ]
}

async fn attributes_of_a_single_put_object(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("attrs").send().await.unwrap();
    let put = s3
        .put_object()
        .bucket("attrs")
        .key("one")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .storage_class(StorageClass::StandardIa)
        .body(ByteStream::from_static(b"hello attributes"))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object_attributes()
        .bucket("attrs")
        .key("one")
        .set_object_attributes(Some(all()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.e_tag().map(|e| e.trim_matches('"')),
        put.e_tag().map(|e| e.trim_matches('"'))
    );
    assert_eq!(got.object_size(), Some(16));
    assert_eq!(got.storage_class(), Some(&StorageClass::StandardIa));
    assert_eq!(
        got.checksum().and_then(|c| c.checksum_sha256()),
        put.checksum_sha256()
    );
    assert!(got.object_parts().is_none(), "a single PUT has no parts");
    assert!(got.last_modified().is_some());
    // Only what was asked for.
    let some = s3
        .get_object_attributes()
        .bucket("attrs")
        .key("one")
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await
        .unwrap();
    assert_eq!(some.object_size(), Some(16));
    assert!(some.e_tag().is_none() && some.checksum().is_none());
    assert_eq!(
        code(
            s3.get_object_attributes()
                .bucket("attrs")
                .key("missing")
                .object_attributes(ObjectAttributes::Etag)
                .send()
                .await
        ),
        "NoSuchKey"
    );
    t.stop().await;
}

async fn object_parts_are_paged(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("attrs").send().await.unwrap();
    let upload = s3
        .create_multipart_upload()
        .bucket("attrs")
        .key("multi")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let sizes = [5 << 20, 5 << 20, 1234];
    let mut completed = Vec::new();
    let mut part_sums = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let n = i as i32 + 1;
        let part = s3
            .upload_part()
            .bucket("attrs")
            .key("multi")
            .upload_id(id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(vec![n as u8; size]))
            .send()
            .await
            .unwrap();
        part_sums.push(part.checksum_crc32().unwrap().to_owned());
        completed.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(part.e_tag().unwrap())
                .checksum_crc32(part.checksum_crc32().unwrap())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket("attrs")
        .key("multi")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let page = |marker: Option<i32>| {
        s3.get_object_attributes()
            .bucket("attrs")
            .key("multi")
            .set_object_attributes(Some(all()))
            .max_parts(2)
            .set_part_number_marker(marker.map(|m| m.to_string()))
            .send()
    };
    let first = page(None).await.unwrap();
    assert_eq!(first.object_size(), Some((10 << 20) + 1234));
    assert!(first.e_tag().unwrap().ends_with("-3") || first.e_tag().unwrap().ends_with("-3\""));
    let parts = first.object_parts().unwrap();
    assert_eq!(parts.total_parts_count(), Some(3));
    assert_eq!(parts.is_truncated(), Some(true));
    assert_eq!(parts.max_parts(), Some(2));
    let numbers: Vec<Option<i32>> = parts.parts().iter().map(|p| p.part_number()).collect();
    assert_eq!(numbers, [Some(1), Some(2)]);
    assert_eq!(parts.parts()[0].size(), Some(5 << 20));
    assert_eq!(
        parts.parts()[1].checksum_crc32(),
        Some(part_sums[1].as_str())
    );
    let marker: i32 = parts.next_part_number_marker().unwrap().parse().unwrap();
    assert_eq!(marker, 2);
    let second = page(Some(marker)).await.unwrap();
    let parts = second.object_parts().unwrap();
    assert_eq!(parts.is_truncated(), Some(false));
    assert_eq!(parts.parts().len(), 1);
    assert_eq!(parts.parts()[0].part_number(), Some(3));
    assert_eq!(parts.parts()[0].size(), Some(1234));
    // The whole object's checksum is the composite one, without the "-3".
    let composite = first.checksum().and_then(|c| c.checksum_crc32()).unwrap();
    assert!(!composite.contains('-'), "{composite}");
    t.stop().await;
}

async fn a_version_and_an_sse_c_object(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("attrs").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("attrs")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let old = s3
        .put_object()
        .bucket("attrs")
        .key("v")
        .body(ByteStream::from_static(b"short"))
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("attrs")
        .key("v")
        .body(ByteStream::from_static(b"much longer now"))
        .send()
        .await
        .unwrap();
    let old_id = old.version_id().unwrap();
    let got = s3
        .get_object_attributes()
        .bucket("attrs")
        .key("v")
        .version_id(old_id)
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await
        .unwrap();
    assert_eq!(got.object_size(), Some(5));
    assert_eq!(got.version_id(), Some(old_id));
    let current = s3
        .get_object_attributes()
        .bucket("attrs")
        .key("v")
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await
        .unwrap();
    assert_eq!(current.object_size(), Some(15));
    assert!(current.version_id().is_some());
    // SSE-C: the key is needed, and must be the right one.
    let key = [7u8; 32];
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let md5 = b64(&md5_of(&key));
    s3.put_object()
        .bucket("attrs")
        .key("secret")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(b64(&key))
        .sse_customer_key_md5(&md5)
        .body(ByteStream::from_static(b"customer keyed"))
        .send()
        .await
        .unwrap();
    let without = s3
        .get_object_attributes()
        .bucket("attrs")
        .key("secret")
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await;
    assert_eq!(code(without), "InvalidRequest");
    let with = s3
        .get_object_attributes()
        .bucket("attrs")
        .key("secret")
        .object_attributes(ObjectAttributes::ObjectSize)
        .sse_customer_algorithm("AES256")
        .sse_customer_key(b64(&key))
        .sse_customer_key_md5(&md5)
        .send()
        .await
        .unwrap();
    assert_eq!(with.object_size(), Some(14));
    t.stop().await;
}

fn md5_of(data: &[u8]) -> Vec<u8> {
    use md5::Digest as _;
    md5::Md5::digest(data).to_vec()
}

on_both_backends!(
    attributes_of_a_single_put_object,
    object_parts_are_paged,
    a_version_and_an_sse_c_object,
);
