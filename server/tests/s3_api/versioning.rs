use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, MetadataDirective, ObjectIdentifier, VersioningConfiguration,
};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

type Client = aws_sdk_s3::Client;

async fn set_versioning(s3: &Client, bucket: &str, status: BucketVersioningStatus) {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .unwrap();
}

async fn put(s3: &Client, bucket: &str, key: &str, body: &str) -> Option<String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap()
        .version_id
}

async fn read(s3: &Client, bucket: &str, key: &str, version: Option<&str>) -> String {
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .unwrap();
    let bytes = got.body.collect().await.unwrap().into_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// (key, version id, is latest, is delete marker) of every entry, in listing order
/// (versions and markers merged by key, newest first).
async fn all_versions(s3: &Client, bucket: &str) -> Vec<(String, String, bool, bool)> {
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut entries: Vec<(String, String, bool, bool, i64)> = Vec::new();
    for v in out.versions() {
        entries.push((
            v.key().unwrap().to_owned(),
            v.version_id().unwrap().to_owned(),
            v.is_latest().unwrap(),
            false,
            v.last_modified().unwrap().as_nanos() as i64,
        ));
    }
    for m in out.delete_markers() {
        entries.push((
            m.key().unwrap().to_owned(),
            m.version_id().unwrap().to_owned(),
            m.is_latest().unwrap(),
            true,
            m.last_modified().unwrap().as_nanos() as i64,
        ));
    }
    // The XML separates versions from markers; order within a key is newest first.
    entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(b.4.cmp(&a.4)));
    entries
        .into_iter()
        .map(|(k, v, latest, marker, _)| (k, v, latest, marker))
        .collect()
}

async fn enabled_versioning_keeps_every_write_readable_by_version_id(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    let before = s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), None);
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let after = s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), Some(&BucketVersioningStatus::Enabled));

    let v1 = put(&s3, "ver", "doc", "first").await.expect("version id");
    let v2 = put(&s3, "ver", "doc", "second").await.expect("version id");
    assert_ne!(v1, v2);
    assert_ne!(v1, "null");
    assert_eq!(read(&s3, "ver", "doc", None).await, "second");
    assert_eq!(read(&s3, "ver", "doc", Some(&v1)).await, "first");
    assert_eq!(read(&s3, "ver", "doc", Some(&v2)).await, "second");
    let head = s3
        .head_object()
        .bucket("ver")
        .key("doc")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.version_id(), Some(v1.as_str()));
    assert_eq!(head.content_length(), Some(5));
    let latest = s3
        .head_object()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(latest.version_id(), Some(v2.as_str()));
    assert_eq!(
        code(
            s3.get_object()
                .bucket("ver")
                .key("doc")
                .version_id("0123456789abcdef0123456789abcdef")
                .send()
                .await
        ),
        "NoSuchVersion"
    );

    // Current listings show one object; the version listing shows both, newest first.
    let current = s3.list_objects_v2().bucket("ver").send().await.unwrap();
    assert_eq!(current.key_count(), Some(1));
    let listed = s3
        .list_object_versions()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    let ids: Vec<(&str, bool)> = listed
        .versions()
        .iter()
        .map(|v| (v.version_id().unwrap(), v.is_latest().unwrap()))
        .collect();
    assert_eq!(ids, [(v2.as_str(), true), (v1.as_str(), false)]);
    assert_eq!(listed.versions()[1].size(), Some(5));

    // Multipart uploads and copies create versions too.
    let upload = s3
        .create_multipart_upload()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap();
    let part = s3
        .upload_part()
        .bucket("ver")
        .key("doc")
        .upload_id(upload.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from(b"third".to_vec()))
        .send()
        .await
        .unwrap();
    let completed = s3
        .complete_multipart_upload()
        .bucket("ver")
        .key("doc")
        .upload_id(upload.upload_id().unwrap())
        .multipart_upload(crate::common::one_part(part.e_tag().unwrap()))
        .send()
        .await
        .unwrap();
    let v3 = completed
        .version_id()
        .expect("multipart version id")
        .to_owned();
    assert_eq!(read(&s3, "ver", "doc", Some(&v2)).await, "second");
    assert_eq!(read(&s3, "ver", "doc", None).await, "third");
    assert_eq!(all_versions(&s3, "ver").await.len(), 3);
    assert_ne!(v3, v2);
    t.stop().await;
}

async fn delete_in_versioned_bucket_adds_a_marker_that_hides_the_key(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "ver", "doc", "kept").await.unwrap();
    let deleted = s3
        .delete_object()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.delete_marker(), Some(true));
    let marker = deleted.version_id().expect("marker version").to_owned();
    assert_ne!(marker, v1);

    // The key is hidden: 404 with x-amz-delete-marker, and gone from listings.
    let err = s3
        .get_object()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap_err();
    let raw = err.raw_response().expect("raw response");
    assert_eq!(raw.status().as_u16(), 404);
    assert_eq!(raw.headers().get("x-amz-delete-marker"), Some("true"));
    assert_eq!(raw.headers().get("x-amz-version-id"), Some(marker.as_str()));
    let head = s3.head_object().bucket("ver").key("doc").send().await;
    assert_eq!(code(head), "NotFound");
    let current = s3.list_objects_v2().bucket("ver").send().await.unwrap();
    assert_eq!(current.key_count(), Some(0));
    assert_eq!(
        all_versions(&s3, "ver").await,
        [
            ("doc".to_owned(), marker.clone(), true, true),
            ("doc".to_owned(), v1.clone(), false, false),
        ]
    );
    // The old version is still readable by id; the marker itself is not an object.
    assert_eq!(read(&s3, "ver", "doc", Some(&v1)).await, "kept");
    let err = s3
        .get_object()
        .bucket("ver")
        .key("doc")
        .version_id(&marker)
        .send()
        .await
        .unwrap_err();
    let raw = err.raw_response().expect("raw response");
    assert_eq!(raw.status().as_u16(), 405);
    assert_eq!(raw.headers().get("x-amz-delete-marker"), Some("true"));

    // A versioned bucket is not empty while versions remain.
    assert_eq!(
        code(s3.delete_bucket().bucket("ver").send().await),
        "BucketNotEmpty"
    );
    // Deleting the marker by id brings the object back.
    let undeleted = s3
        .delete_object()
        .bucket("ver")
        .key("doc")
        .version_id(&marker)
        .send()
        .await
        .unwrap();
    assert_eq!(undeleted.delete_marker(), Some(true));
    assert_eq!(undeleted.version_id(), Some(marker.as_str()));
    assert_eq!(read(&s3, "ver", "doc", None).await, "kept");
    // Deleting a version by id removes it for good.
    s3.delete_object()
        .bucket("ver")
        .key("doc")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert!(all_versions(&s3, "ver").await.is_empty());
    assert_eq!(
        code(s3.get_object().bucket("ver").key("doc").send().await),
        "NoSuchKey"
    );
    s3.delete_bucket().bucket("ver").send().await.unwrap();
    t.stop().await;
}

async fn deleting_the_current_version_by_id_promotes_the_previous_one(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "ver", "doc", "one").await.unwrap();
    let v2 = put(&s3, "ver", "doc", "two").await.unwrap();
    s3.delete_object()
        .bucket("ver")
        .key("doc")
        .version_id(&v2)
        .send()
        .await
        .unwrap();
    assert_eq!(read(&s3, "ver", "doc", None).await, "one");
    assert_eq!(
        all_versions(&s3, "ver").await,
        [("doc".to_owned(), v1, true, false)]
    );
    t.stop().await;
}

async fn suspended_versioning_writes_and_replaces_the_null_version(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    // Written before versioning: the null version, no version id header.
    assert_eq!(put(&s3, "ver", "doc", "original").await, None);
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "ver", "doc", "versioned").await.unwrap();
    assert_eq!(read(&s3, "ver", "doc", Some("null")).await, "original");
    set_versioning(&s3, "ver", BucketVersioningStatus::Suspended).await;
    let state = s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), Some(&BucketVersioningStatus::Suspended));
    // A suspended write replaces the null version and keeps v1.
    assert_eq!(put(&s3, "ver", "doc", "suspended").await, None);
    assert_eq!(read(&s3, "ver", "doc", Some("null")).await, "suspended");
    assert_eq!(read(&s3, "ver", "doc", Some(&v1)).await, "versioned");
    assert_eq!(
        all_versions(&s3, "ver").await,
        [
            ("doc".to_owned(), "null".to_owned(), true, false),
            ("doc".to_owned(), v1.clone(), false, false),
        ]
    );
    // A suspended delete replaces the null version with a null delete marker.
    let deleted = s3
        .delete_object()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.delete_marker(), Some(true));
    assert_eq!(deleted.version_id(), Some("null"));
    assert_eq!(
        all_versions(&s3, "ver").await,
        [
            ("doc".to_owned(), "null".to_owned(), true, true),
            ("doc".to_owned(), v1, false, false),
        ]
    );
    // There is no way back to unversioned.
    let err = s3
        .put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(VersioningConfiguration::builder().build())
        .send()
        .await;
    assert_eq!(code(err), "MalformedXML");
    t.stop().await;
}

async fn copy_source_version_id_restores_an_old_version(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "ver", "doc", "good").await.unwrap();
    let v2 = put(&s3, "ver", "doc", "bad").await.unwrap();
    let copied = s3
        .copy_object()
        .bucket("ver")
        .key("doc")
        .copy_source(format!("ver/doc?versionId={v1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(copied.copy_source_version_id(), Some(v1.as_str()));
    let v3 = copied.version_id().expect("new version").to_owned();
    assert_eq!(read(&s3, "ver", "doc", None).await, "good");
    assert_eq!(read(&s3, "ver", "doc", Some(&v2)).await, "bad");
    // A metadata rewrite onto itself makes a new version; the old one keeps its bytes.
    let rewritten = s3
        .copy_object()
        .bucket("ver")
        .key("doc")
        .copy_source("ver/doc")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/plain")
        .send()
        .await
        .unwrap();
    let v4 = rewritten.version_id().unwrap().to_owned();
    assert_ne!(v4, v3);
    s3.delete_object()
        .bucket("ver")
        .key("doc")
        .version_id(&v4)
        .send()
        .await
        .unwrap();
    assert_eq!(read(&s3, "ver", "doc", None).await, "good");
    assert_eq!(read(&s3, "ver", "doc", Some(&v3)).await, "good");
    // A delete marker cannot be a copy source.
    let marker = s3
        .delete_object()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();
    let err = s3
        .copy_object()
        .bucket("ver")
        .key("other")
        .copy_source(format!("ver/doc?versionId={marker}"))
        .send()
        .await;
    assert_eq!(code(err), "InvalidRequest");
    let err = s3
        .copy_object()
        .bucket("ver")
        .key("other")
        .copy_source("ver/doc")
        .send()
        .await;
    assert_eq!(code(err), "NoSuchKey");
    t.stop().await;
}

async fn list_object_versions_pages_with_key_and_version_markers(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let mut expected = Vec::new();
    for key in ["a", "b/1", "b/2", "c"] {
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(put(&s3, "ver", key, &format!("{key}{n}")).await.unwrap());
        }
        ids.reverse();
        expected.extend(ids.into_iter().map(|id| (key.to_owned(), id)));
    }
    let mut seen = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    let mut pages = 0;
    loop {
        let page = s3
            .list_object_versions()
            .bucket("ver")
            .max_keys(2)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(page.versions().len() <= 2);
        for v in page.versions() {
            seen.push((
                v.key().unwrap().to_owned(),
                v.version_id().unwrap().to_owned(),
            ));
        }
        if !page.is_truncated().unwrap() {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 6);
    // Only the first version of each key is the latest, also across page breaks.
    let page = s3
        .list_object_versions()
        .bucket("ver")
        .key_marker("a")
        .version_id_marker(&expected[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.versions()[0].is_latest(), Some(false));
    assert_eq!(page.versions()[2].key(), Some("b/1"));
    assert_eq!(page.versions()[2].is_latest(), Some(true));
    // Delimiter and prefix group keys as in ListObjects.
    let grouped = s3
        .list_object_versions()
        .bucket("ver")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = grouped
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["b/"]);
    assert_eq!(grouped.versions().len(), 6);
    let under = s3
        .list_object_versions()
        .bucket("ver")
        .prefix("b/")
        .send()
        .await
        .unwrap();
    assert_eq!(under.versions().len(), 6);
    t.stop().await;
}

async fn delete_objects_with_version_ids_removes_versions(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "ver", "x", "1").await.unwrap();
    let v2 = put(&s3, "ver", "x", "2").await.unwrap();
    let out = s3
        .delete_objects()
        .bucket("ver")
        .delete(
            Delete::builder()
                .objects(
                    ObjectIdentifier::builder()
                        .key("x")
                        .version_id(&v1)
                        .build()
                        .unwrap(),
                )
                .objects(ObjectIdentifier::builder().key("y").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(out.errors().is_empty());
    let by_key = |k: &str| out.deleted().iter().find(|d| d.key() == Some(k)).unwrap();
    assert_eq!(by_key("x").version_id(), Some(v1.as_str()));
    assert_eq!(by_key("y").delete_marker(), Some(true));
    assert!(by_key("y").delete_marker_version_id().is_some());
    let left = all_versions(&s3, "ver").await;
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].1, v2);
    assert!(left[1].3, "y has a delete marker");
    t.stop().await;
}

async fn version_reads_need_the_version_permission(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "ver", "doc", "1").await.unwrap();
    let key = t
        .key_with_policy(
            "reader",
            Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
                "Action":["s3:GetObject","s3:DeleteObject"],"Resource":"arn:aws:s3:::ver/*"}]}"#,
            ),
        )
        .await;
    let reader = t.client_for(&key);
    assert_eq!(read(&reader, "ver", "doc", None).await, "1");
    let err = reader
        .get_object()
        .bucket("ver")
        .key("doc")
        .version_id(&v1)
        .send()
        .await;
    assert_eq!(code(err), "AccessDenied");
    let err = reader
        .delete_object()
        .bucket("ver")
        .key("doc")
        .version_id(&v1)
        .send()
        .await;
    assert_eq!(code(err), "AccessDenied");
    // Without a version id the delete only adds a marker: allowed.
    reader
        .delete_object()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(read(&s3, "ver", "doc", Some(&v1)).await, "1");
    t.stop().await;
}

on_both_backends!(
    enabled_versioning_keeps_every_write_readable_by_version_id,
    delete_in_versioned_bucket_adds_a_marker_that_hides_the_key,
    deleting_the_current_version_by_id_promotes_the_previous_one,
    suspended_versioning_writes_and_replaces_the_null_version,
    copy_source_version_id_restores_an_old_version,
    list_object_versions_pages_with_key_and_version_markers,
    delete_objects_with_version_ids_removes_versions,
    version_reads_need_the_version_permission,
);
