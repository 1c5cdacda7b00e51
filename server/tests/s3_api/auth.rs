use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::common::{Backend, TestServer, client, code};
use crate::on_both_backends;

async fn wrong_secret_and_unknown_key_are_refused(backend: Backend) {
    let t = TestServer::start(backend).await;
    let root = t.server.root_key();
    let bad_secret = client(&t.endpoint(), &root.id, "not-the-secret");
    assert_eq!(
        code(bad_secret.list_buckets().send().await),
        "SignatureDoesNotMatch"
    );
    let unknown = client(&t.endpoint(), "AKNOSUCHKEY", "whatever");
    assert_eq!(
        code(unknown.list_buckets().send().await),
        "InvalidAccessKeyId"
    );
    let anonymous = reqwest::get(format!("{}/", t.endpoint())).await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 403);
    t.stop().await;
}

async fn identity_policy_scopes_a_key_to_one_bucket_and_prefix(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    for b in ["team-a", "team-b"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
        s3.put_object()
            .bucket(b)
            .key("home/x")
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
        s3.put_object()
            .bucket(b)
            .key("other/y")
            .body(b"y".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject"],"Resource":"arn:aws:s3:::team-a/home/*"},
        {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::team-a","Condition":{"StringLike":{"s3:prefix":"home/*"}}}
    ]}"#;
    let key = t.key_with_policy("scoped", Some(policy)).await;
    let scoped = t.client_for(&key);
    scoped
        .put_object()
        .bucket("team-a")
        .key("home/new")
        .body(b"n".to_vec().into())
        .send()
        .await
        .unwrap();
    scoped
        .get_object()
        .bucket("team-a")
        .key("home/x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            scoped
                .get_object()
                .bucket("team-a")
                .key("other/y")
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        code(
            scoped
                .get_object()
                .bucket("team-b")
                .key("home/x")
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        code(
            scoped
                .put_object()
                .bucket("team-b")
                .key("home/z")
                .body(b"z".to_vec().into())
                .send()
                .await
        ),
        "AccessDenied"
    );
    scoped
        .list_objects_v2()
        .bucket("team-a")
        .prefix("home/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(scoped.list_objects_v2().bucket("team-a").send().await),
        "AccessDenied"
    );
    assert_eq!(
        code(scoped.create_bucket().bucket("team-c").send().await),
        "AccessDenied"
    );
    // ListBuckets shows only what the key may list; it lacks ListBucket without a prefix.
    let visible = scoped.list_buckets().send().await.unwrap();
    assert!(visible.buckets().iter().all(|b| b.name() != Some("team-b")));
    // A batch delete refuses per key.
    let delete = Delete::builder()
        .objects(ObjectIdentifier::builder().key("home/new").build().unwrap())
        .objects(ObjectIdentifier::builder().key("other/y").build().unwrap())
        .build()
        .unwrap();
    let out = scoped
        .delete_objects()
        .bucket("team-a")
        .delete(delete)
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 1);
    assert_eq!(out.errors().len(), 1);
    assert_eq!(out.errors()[0].key(), Some("other/y"));
    assert_eq!(out.errors()[0].code(), Some("AccessDenied"));
    // Copying needs GetObject on the source too.
    assert_eq!(
        code(
            scoped
                .copy_object()
                .bucket("team-a")
                .key("home/copy")
                .copy_source("team-b/home/x")
                .send()
                .await
        ),
        "AccessDenied"
    );
    t.stop().await;
}

async fn explicit_deny_in_bucket_policy_beats_identity_allow(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("guarded").send().await.unwrap();
    s3.put_object()
        .bucket("guarded")
        .key("keep/me")
        .body(b"k".to_vec().into())
        .send()
        .await
        .unwrap();
    let key = t
        .key_with_policy(
            "all",
            Some(r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#),
        )
        .await;
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":{{"AWS":["{}"]}},"Action":"s3:DeleteObject","Resource":"arn:aws:s3:::guarded/keep/*"}}]}}"#,
        key.id
    );
    s3.put_bucket_policy()
        .bucket("guarded")
        .policy(&policy)
        .send()
        .await
        .unwrap();
    let stored = s3
        .get_bucket_policy()
        .bucket("guarded")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.policy(), Some(policy.as_str()));
    let user = t.client_for(&key);
    assert_eq!(
        code(
            user.delete_object()
                .bucket("guarded")
                .key("keep/me")
                .send()
                .await
        ),
        "AccessDenied"
    );
    user.get_object()
        .bucket("guarded")
        .key("keep/me")
        .send()
        .await
        .unwrap();
    s3.delete_bucket_policy()
        .bucket("guarded")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(s3.get_bucket_policy().bucket("guarded").send().await),
        "NoSuchBucketPolicy"
    );
    user.delete_object()
        .bucket("guarded")
        .key("keep/me")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.put_bucket_policy()
                .bucket("guarded")
                .policy("{not json")
                .send()
                .await
        ),
        "MalformedPolicy"
    );
    t.stop().await;
}

async fn public_read_bucket_policy_allows_anonymous_get_only(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("public").send().await.unwrap();
    s3.put_object()
        .bucket("public")
        .key("index.html")
        .body(b"<h1>hi</h1>".to_vec().into())
        .send()
        .await
        .unwrap();
    let url = format!("{}/public/index.html", t.endpoint());
    assert_eq!(reqwest::get(&url).await.unwrap().status().as_u16(), 403);
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::public/*"}]}"#;
    s3.put_bucket_policy()
        .bucket("public")
        .policy(policy)
        .send()
        .await
        .unwrap();
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().contains_key("x-amz-request-id"));
    assert_eq!(response.text().await.unwrap(), "<h1>hi</h1>");
    let put = reqwest::Client::new()
        .put(&url)
        .body("defaced")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 403);
    let list = reqwest::get(format!("{}/public", t.endpoint()))
        .await
        .unwrap();
    assert_eq!(list.status().as_u16(), 403);
    t.stop().await;
}

async fn presigned_urls_work_until_they_expire(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("pre").send().await.unwrap();
    let put = s3
        .put_object()
        .bucket("pre")
        .key("up.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .put(put.uri())
        .body("via presigned put")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let get = s3
        .get_object()
        .bucket("pre")
        .key("up.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        reqwest::get(get.uri()).await.unwrap().text().await.unwrap(),
        "via presigned put"
    );
    let tampered = get.uri().replace("up.txt", "other.txt");
    assert_eq!(
        reqwest::get(&tampered).await.unwrap().status().as_u16(),
        403
    );
    let short = s3
        .get_object()
        .bucket("pre")
        .key("up.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(1)).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = reqwest::get(short.uri()).await.unwrap();
    assert_eq!(expired.status().as_u16(), 403);
    assert_eq!(
        crate::common::xml_code(&expired.text().await.unwrap()),
        "AccessDenied"
    );
    t.stop().await;
}

async fn deleted_key_stops_working_within_seconds(backend: Backend) {
    let t = TestServer::start(backend).await;
    let key = t
        .key_with_policy(
            "temp",
            Some(r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#),
        )
        .await;
    let user = t.client_for(&key);
    user.list_buckets().send().await.unwrap();
    t.server.meta().delete_access_key(&key.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(code(user.list_buckets().send().await), "InvalidAccessKeyId");
    t.stop().await;
}

on_both_backends!(
    wrong_secret_and_unknown_key_are_refused,
    identity_policy_scopes_a_key_to_one_bucket_and_prefix,
    explicit_deny_in_bucket_policy_beats_identity_allow,
    public_read_bucket_policy_allows_anonymous_get_only,
    presigned_urls_work_until_they_expire,
    deleted_key_stops_working_within_seconds,
);
