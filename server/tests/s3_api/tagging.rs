use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Tag, Tagging, TaggingDirective, VersioningConfiguration,
};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

type Client = aws_sdk_s3::Client;

fn tagging(pairs: &[(&str, &str)]) -> Tagging {
    let mut builder = Tagging::builder();
    for (k, v) in pairs {
        builder = builder.tag_set(Tag::builder().key(*k).value(*v).build().unwrap());
    }
    builder.build().unwrap()
}

async fn object_tags(
    s3: &Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Vec<(String, String)> {
    let out = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .unwrap();
    out.tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn object_tags_are_set_read_replaced_and_deleted(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("tags").send().await.unwrap();
    s3.put_object()
        .bucket("tags")
        .key("doc")
        .tagging("team=data%20eng&env=prod")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        object_tags(&s3, "tags", "doc", None).await,
        pairs(&[("env", "prod"), ("team", "data eng")])
    );
    let got = s3
        .get_object()
        .bucket("tags")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(got.tag_count(), Some(2));
    s3.put_object_tagging()
        .bucket("tags")
        .key("doc")
        .tagging(tagging(&[("tier", "gold")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        object_tags(&s3, "tags", "doc", None).await,
        pairs(&[("tier", "gold")])
    );
    s3.delete_object_tagging()
        .bucket("tags")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert!(object_tags(&s3, "tags", "doc", None).await.is_empty());
    let got = s3
        .get_object()
        .bucket("tags")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(got.tag_count(), None);
    assert_eq!(
        code(
            s3.get_object_tagging()
                .bucket("tags")
                .key("missing")
                .send()
                .await
        ),
        "NoSuchKey"
    );
    assert_eq!(
        code(
            s3.put_object_tagging()
                .bucket("tags")
                .key("missing")
                .tagging(tagging(&[("a", "b")]))
                .send()
                .await
        ),
        "NoSuchKey"
    );
    t.stop().await;
}

async fn tag_limits_are_refused_with_invalid_tag(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("tags").send().await.unwrap();
    s3.put_object()
        .bucket("tags")
        .key("doc")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = (0..11).map(|i| format!("k{i}")).collect();
    let eleven: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
    let long_key = "k".repeat(129);
    let long_value = "v".repeat(257);
    for bad in [
        tagging(&eleven),
        tagging(&[(long_key.as_str(), "v")]),
        tagging(&[("k", long_value.as_str())]),
        tagging(&[("dup", "1"), ("dup", "2")]),
        tagging(&[("aws:internal", "1")]),
    ] {
        let err = s3
            .put_object_tagging()
            .bucket("tags")
            .key("doc")
            .tagging(bad)
            .send()
            .await;
        assert_eq!(code(err), "InvalidTag");
    }
    let header: String = (0..11).map(|i| format!("k{i}=v&")).collect();
    let err = s3
        .put_object()
        .bucket("tags")
        .key("other")
        .tagging(header)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(code(err), "InvalidTag");
    // Nothing was written by the refused requests.
    assert!(object_tags(&s3, "tags", "doc", None).await.is_empty());
    assert_eq!(
        code(s3.head_object().bucket("tags").key("other").send().await),
        "NotFound"
    );
    t.stop().await;
}

async fn copy_keeps_or_replaces_tags_by_directive(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("tags").send().await.unwrap();
    s3.put_object()
        .bucket("tags")
        .key("src")
        .tagging("a=1")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    s3.copy_object()
        .bucket("tags")
        .key("copied")
        .copy_source("tags/src")
        .send()
        .await
        .unwrap();
    assert_eq!(
        object_tags(&s3, "tags", "copied", None).await,
        pairs(&[("a", "1")])
    );
    s3.copy_object()
        .bucket("tags")
        .key("replaced")
        .copy_source("tags/src")
        .tagging_directive(TaggingDirective::Replace)
        .tagging("b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        object_tags(&s3, "tags", "replaced", None).await,
        pairs(&[("b", "2")])
    );
    // Multipart uploads take their tags at creation.
    let upload = s3
        .create_multipart_upload()
        .bucket("tags")
        .key("mp")
        .tagging("c=3")
        .send()
        .await
        .unwrap();
    let part = s3
        .upload_part()
        .bucket("tags")
        .key("mp")
        .upload_id(upload.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await
        .unwrap();
    s3.complete_multipart_upload()
        .bucket("tags")
        .key("mp")
        .upload_id(upload.upload_id().unwrap())
        .multipart_upload(crate::common::one_part(part.e_tag().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        object_tags(&s3, "tags", "mp", None).await,
        pairs(&[("c", "3")])
    );
    t.stop().await;
}

async fn tags_belong_to_one_version(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("tags").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("tags")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v1 = s3
        .put_object()
        .bucket("tags")
        .key("doc")
        .tagging("gen=1")
        .body(ByteStream::from_static(b"1"))
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();
    s3.put_object()
        .bucket("tags")
        .key("doc")
        .tagging("gen=2")
        .body(ByteStream::from_static(b"2"))
        .send()
        .await
        .unwrap();
    let out = s3
        .put_object_tagging()
        .bucket("tags")
        .key("doc")
        .version_id(&v1)
        .tagging(tagging(&[("gen", "old")]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.version_id(), Some(v1.as_str()));
    assert_eq!(
        object_tags(&s3, "tags", "doc", Some(&v1)).await,
        pairs(&[("gen", "old")])
    );
    assert_eq!(
        object_tags(&s3, "tags", "doc", None).await,
        pairs(&[("gen", "2")])
    );
    // A delete marker has no tags.
    let marker = s3
        .delete_object()
        .bucket("tags")
        .key("doc")
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();
    let err = s3
        .get_object_tagging()
        .bucket("tags")
        .key("doc")
        .version_id(&marker)
        .send()
        .await;
    assert_eq!(code(err), "MethodNotAllowed");
    t.stop().await;
}

async fn bucket_tags_are_set_read_and_deleted(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("tags").send().await.unwrap();
    assert_eq!(
        code(s3.get_bucket_tagging().bucket("tags").send().await),
        "NoSuchTagSet"
    );
    s3.put_bucket_tagging()
        .bucket("tags")
        .tagging(tagging(&[("cost-center", "42"), ("owner", "team-a")]))
        .send()
        .await
        .unwrap();
    let got = s3.get_bucket_tagging().bucket("tags").send().await.unwrap();
    let listed: Vec<(String, String)> = got
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    assert_eq!(listed, pairs(&[("cost-center", "42"), ("owner", "team-a")]));
    let keys: Vec<String> = (0..51).map(|i| format!("k{i}")).collect();
    let too_many: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
    assert_eq!(
        code(
            s3.put_bucket_tagging()
                .bucket("tags")
                .tagging(tagging(&too_many))
                .send()
                .await
        ),
        "InvalidTag"
    );
    s3.delete_bucket_tagging()
        .bucket("tags")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(s3.get_bucket_tagging().bucket("tags").send().await),
        "NoSuchTagSet"
    );
    assert_eq!(
        code(s3.get_bucket_tagging().bucket("nobucket").send().await),
        "NoSuchBucket"
    );
    t.stop().await;
}

async fn request_object_tag_conditions_gate_tagged_writes(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("tags").send().await.unwrap();
    let key = t
        .key_with_policy(
            "tagger",
            Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
                "Action":["s3:PutObject","s3:PutObjectTagging","s3:GetObjectTagging"],
                "Resource":"arn:aws:s3:::tags/*",
                "Condition":{"StringEquals":{"s3:RequestObjectTag/team":"data"}}}]}"#,
            ),
        )
        .await;
    let tagger = t.client_for(&key);
    let put = |tagging: Option<&'static str>| {
        tagger
            .put_object()
            .bucket("tags")
            .key("doc")
            .set_tagging(tagging.map(str::to_owned))
            .body(ByteStream::from_static(b"x"))
            .send()
    };
    put(Some("team=data")).await.unwrap();
    assert_eq!(code(put(Some("team=web")).await), "AccessDenied");
    assert_eq!(code(put(None).await), "AccessDenied");
    // PutObjectTagging is judged by the tags in its body.
    let retag = |value: &'static str| {
        tagger
            .put_object_tagging()
            .bucket("tags")
            .key("doc")
            .tagging(tagging(&[("team", value)]))
            .send()
    };
    assert_eq!(code(retag("web").await), "AccessDenied");
    assert_eq!(
        object_tags(&s3, "tags", "doc", None).await,
        pairs(&[("team", "data")])
    );
    retag("data").await.unwrap();
    t.stop().await;
}

async fn existing_object_tag_conditions_follow_the_named_version(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("gated").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("gated")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let put = |key: &'static str, class: &'static str| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("gated")
                .key(key)
                .tagging(format!("class={class}"))
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap()
                .version_id()
                .unwrap()
                .to_owned()
        }
    };
    put("open", "public").await;
    put("closed", "secret").await;
    let old = put("mixed", "public").await;
    put("mixed", "secret").await;
    // Reads and tag changes only of objects whose current tags say public.
    let key = t
        .key_with_policy(
            "reader",
            Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
                "Action":["s3:GetObject","s3:GetObjectVersion","s3:PutObjectTagging","s3:GetObjectTagging"],
                "Resource":"arn:aws:s3:::gated/*",
                "Condition":{"StringEquals":{"s3:ExistingObjectTag/class":"public"}}}]}"#,
            ),
        )
        .await;
    let reader = t.client_for(&key);
    let get = |key: &'static str, version: Option<String>| {
        let reader = reader.clone();
        async move {
            reader
                .get_object()
                .bucket("gated")
                .key(key)
                .set_version_id(version)
                .send()
                .await
                .map(|_| ())
        }
    };
    get("open", None).await.unwrap();
    assert_eq!(code(get("closed", None).await), "AccessDenied");
    assert_eq!(code(get("missing", None).await), "AccessDenied");
    // The version named, not the current one, is what the condition sees.
    assert_eq!(code(get("mixed", None).await), "AccessDenied");
    get("mixed", Some(old)).await.unwrap();
    // Its own tag change takes it out of reach; the owner can put it back.
    reader
        .put_object_tagging()
        .bucket("gated")
        .key("open")
        .tagging(tagging(&[("class", "secret")]))
        .send()
        .await
        .unwrap();
    assert_eq!(code(get("open", None).await), "AccessDenied");
    assert_eq!(
        code(
            reader
                .get_object_tagging()
                .bucket("gated")
                .key("open")
                .send()
                .await
        ),
        "AccessDenied"
    );
    s3.put_object_tagging()
        .bucket("gated")
        .key("closed")
        .tagging(tagging(&[("class", "public")]))
        .send()
        .await
        .unwrap();
    get("closed", None).await.unwrap();
    // A bucket policy Deny on a tag beats an allow-all key.
    s3.put_bucket_policy()
        .bucket("gated")
        .policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*",
            "Action":"s3:GetObject","Resource":"arn:aws:s3:::gated/*",
            "Condition":{"StringEquals":{"s3:ExistingObjectTag/class":"secret"}}}]}"#,
        )
        .send()
        .await
        .unwrap();
    let admin = t
        .key_with_policy(
            "admin",
            Some(r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#),
        )
        .await;
    let admin = t.client_for(&admin);
    assert_eq!(
        code(admin.get_object().bucket("gated").key("open").send().await),
        "AccessDenied"
    );
    admin
        .get_object()
        .bucket("gated")
        .key("closed")
        .send()
        .await
        .unwrap();
    t.stop().await;
}

on_both_backends!(
    existing_object_tag_conditions_follow_the_named_version,
    object_tags_are_set_read_replaced_and_deleted,
    tag_limits_are_refused_with_invalid_tag,
    copy_keeps_or_replaces_tags_by_directive,
    tags_belong_to_one_version,
    bucket_tags_are_set_read_and_deleted,
    request_object_tag_conditions_gate_tagged_writes,
);
