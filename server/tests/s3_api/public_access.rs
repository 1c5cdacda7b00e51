//! Block Public Access (per bucket and server-wide) and GetBucketPolicyStatus.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketCannedAcl, ObjectCannedAcl, ObjectOwnership, PublicAccessBlockConfiguration,
};
use coffer_server::meta::ObjectOwnership as Ownership;

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

const PUBLIC_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
    "Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::pab/*"}]}"#;

async fn anonymous_status(url: String) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

fn block(acls: bool, ignore: bool, policy: bool, restrict: bool) -> PublicAccessBlockConfiguration {
    PublicAccessBlockConfiguration::builder()
        .block_public_acls(acls)
        .ignore_public_acls(ignore)
        .block_public_policy(policy)
        .restrict_public_buckets(restrict)
        .build()
}

async fn set_block(s3: &aws_sdk_s3::Client, config: PublicAccessBlockConfiguration) {
    s3.put_public_access_block()
        .bucket("pab")
        .public_access_block_configuration(config)
        .send()
        .await
        .unwrap();
}

async fn put_public(s3: &aws_sdk_s3::Client, key: &str) -> Result<(), String> {
    s3.put_object()
        .bucket("pab")
        .key(key)
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"public bytes"))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| code(Err::<(), _>(e)))
}

async fn writer_bucket(s3: &aws_sdk_s3::Client) {
    s3.create_bucket()
        .bucket("pab")
        .object_ownership(ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
}

async fn public_access_block_is_kept_returned_and_deleted(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    writer_bucket(&s3).await;
    assert_eq!(
        code(s3.get_public_access_block().bucket("pab").send().await),
        "NoSuchPublicAccessBlockConfiguration"
    );
    set_block(&s3, block(true, false, true, false)).await;
    let got = s3
        .get_public_access_block()
        .bucket("pab")
        .send()
        .await
        .unwrap();
    let config = got.public_access_block_configuration().unwrap();
    assert_eq!(config.block_public_acls(), Some(true));
    assert_eq!(config.ignore_public_acls(), Some(false));
    assert_eq!(config.block_public_policy(), Some(true));
    assert_eq!(config.restrict_public_buckets(), Some(false));
    s3.delete_public_access_block()
        .bucket("pab")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(s3.get_public_access_block().bucket("pab").send().await),
        "NoSuchPublicAccessBlockConfiguration"
    );
    assert_eq!(
        code(s3.get_public_access_block().bucket("missing").send().await),
        "NoSuchBucket"
    );
    t.stop().await;
}

async fn block_public_acls_refuses_public_acls(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    writer_bucket(&s3).await;
    set_block(&s3, block(true, false, false, false)).await;
    assert_eq!(put_public(&s3, "x").await, Err("AccessDenied".to_owned()));
    assert_eq!(
        code(s3.head_object().bucket("pab").key("x").send().await),
        "NotFound",
        "a refused PUT stores nothing"
    );
    s3.put_object()
        .bucket("pab")
        .key("private")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.put_object_acl()
                .bucket("pab")
                .key("private")
                .acl(ObjectCannedAcl::AuthenticatedRead)
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        code(
            s3.put_bucket_acl()
                .bucket("pab")
                .acl(BucketCannedAcl::PublicRead)
                .send()
                .await
        ),
        "AccessDenied"
    );
    // Private ACLs and non-public grants are still fine.
    s3.put_object_acl()
        .bucket("pab")
        .key("private")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .send()
        .await
        .unwrap();
    s3.delete_public_access_block()
        .bucket("pab")
        .send()
        .await
        .unwrap();
    put_public(&s3, "x").await.unwrap();
    t.stop().await;
}

async fn ignore_public_acls_hides_public_acls_while_set(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    writer_bucket(&s3).await;
    put_public(&s3, "page").await.unwrap();
    let url = format!("{}/pab/page", t.endpoint());
    assert_eq!(anonymous_status(url.clone()).await, 200);
    set_block(&s3, block(false, true, false, false)).await;
    assert_eq!(anonymous_status(url.clone()).await, 403);
    // Setting a public ACL is not blocked, it just does not count.
    put_public(&s3, "other").await.unwrap();
    assert_eq!(
        anonymous_status(format!("{}/pab/other", t.endpoint())).await,
        403
    );
    s3.delete_public_access_block()
        .bucket("pab")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_status(url).await, 200);
    t.stop().await;
}

async fn policy_status_and_block_public_policy(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    writer_bucket(&s3).await;
    assert_eq!(
        code(s3.get_bucket_policy_status().bucket("pab").send().await),
        "NoSuchBucketPolicy"
    );
    let is_public = |s3: aws_sdk_s3::Client| async move {
        s3.get_bucket_policy_status()
            .bucket("pab")
            .send()
            .await
            .unwrap()
            .policy_status()
            .and_then(|s| s.is_public())
    };
    s3.put_bucket_policy()
        .bucket("pab")
        .policy(PUBLIC_POLICY)
        .send()
        .await
        .unwrap();
    assert_eq!(is_public(s3.clone()).await, Some(true));
    let pinned = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::pab/*",
        "Condition":{"IpAddress":{"aws:SourceIp":"10.1.0.0/16"}}}]}"#;
    s3.put_bucket_policy()
        .bucket("pab")
        .policy(pinned)
        .send()
        .await
        .unwrap();
    assert_eq!(is_public(s3.clone()).await, Some(false));
    set_block(&s3, block(false, false, true, false)).await;
    assert_eq!(
        code(
            s3.put_bucket_policy()
                .bucket("pab")
                .policy(PUBLIC_POLICY)
                .send()
                .await
        ),
        "AccessDenied"
    );
    let named = t.key_with_policy("named", None).await;
    s3.put_bucket_policy()
        .bucket("pab")
        .policy(format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":["{}"]}},
                "Action":"s3:GetObject","Resource":"arn:aws:s3:::pab/*"}}]}}"#,
            named.id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(is_public(s3.clone()).await, Some(false));
    t.stop().await;
}

async fn restrict_public_buckets_keeps_public_policies_to_own_keys(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("pab").send().await.unwrap();
    s3.put_object()
        .bucket("pab")
        .key("doc")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    s3.put_bucket_policy()
        .bucket("pab")
        .policy(PUBLIC_POLICY)
        .send()
        .await
        .unwrap();
    let url = format!("{}/pab/doc", t.endpoint());
    assert_eq!(anonymous_status(url.clone()).await, 200);
    set_block(&s3, block(false, false, false, true)).await;
    assert_eq!(anonymous_status(url.clone()).await, 403);
    let key = t.key_with_policy("in-house", None).await;
    t.client_for(&key)
        .get_object()
        .bucket("pab")
        .key("doc")
        .send()
        .await
        .unwrap();
    s3.delete_public_access_block()
        .bucket("pab")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_status(url).await, 200);
    t.stop().await;
}

async fn server_wide_block_overrides_every_bucket(backend: Backend) {
    let t = TestServer::start_with(backend, |c| {
        c.access.object_ownership = Ownership::ObjectWriter;
        c.access.block_public_access = true;
    })
    .await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("pab").send().await.unwrap();
    assert_eq!(put_public(&s3, "x").await, Err("AccessDenied".to_owned()));
    assert_eq!(
        code(
            s3.create_bucket()
                .bucket("public")
                .acl(BucketCannedAcl::PublicRead)
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        code(
            s3.put_bucket_policy()
                .bucket("pab")
                .policy(PUBLIC_POLICY)
                .send()
                .await
        ),
        "AccessDenied"
    );
    // A bucket's own settings cannot loosen it.
    set_block(&s3, block(false, false, false, false)).await;
    assert_eq!(put_public(&s3, "x").await, Err("AccessDenied".to_owned()));
    t.stop().await;
}

on_both_backends!(
    public_access_block_is_kept_returned_and_deleted,
    block_public_acls_refuses_public_acls,
    ignore_public_acls_hides_public_acls_while_set,
    policy_status_and_block_public_policy,
    restrict_public_buckets_keeps_public_policies_to_own_keys,
    server_wide_block_overrides_every_bucket,
);
