use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AccessControlPolicy, BucketCannedAcl, Grant, Grantee, ObjectCannedAcl, ObjectOwnership, Owner,
    OwnershipControls, OwnershipControlsRule, Permission, Type,
};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

pub(crate) fn controls(ownership: ObjectOwnership) -> OwnershipControls {
    OwnershipControls::builder()
        .rules(
            OwnershipControlsRule::builder()
                .object_ownership(ownership)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Status of an unsigned request.
async fn anonymous(method: reqwest::Method, url: String) -> (u16, String) {
    let response = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn anonymous_get(url: String) -> (u16, String) {
    anonymous(reqwest::Method::GET, url).await
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, acl: Option<ObjectCannedAcl>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .set_acl(acl)
        .body(ByteStream::from_static(b"shared bytes"))
        .send()
        .await
        .unwrap();
}

async fn new_buckets_enforce_ownership_and_refuse_sharing_acls(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("acls").send().await.unwrap();
    put(&s3, "acls", "doc", None).await;
    let root = t.server.root_key().id.clone();
    let got = s3
        .get_bucket_ownership_controls()
        .bucket("acls")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    let bucket_acl = s3.get_bucket_acl().bucket("acls").send().await.unwrap();
    assert_eq!(bucket_acl.owner().and_then(|o| o.id()), Some(root.as_str()));
    assert_eq!(bucket_acl.grants().len(), 1);
    assert_eq!(
        bucket_acl.grants()[0].permission(),
        Some(&Permission::FullControl)
    );
    // Private ACLs are accepted; sharing ones fail as on AWS.
    s3.put_bucket_acl()
        .bucket("acls")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap();
    s3.put_object_acl()
        .bucket("acls")
        .key("doc")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.put_bucket_acl()
                .bucket("acls")
                .acl(BucketCannedAcl::PublicRead)
                .send()
                .await
        ),
        "AccessControlListNotSupported"
    );
    assert_eq!(
        code(
            s3.put_object()
                .bucket("acls")
                .key("shared")
                .acl(ObjectCannedAcl::PublicRead)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
        ),
        "AccessControlListNotSupported"
    );
    assert_eq!(
        code(s3.head_object().bucket("acls").key("shared").send().await),
        "NotFound",
        "a refused PUT stores nothing"
    );
    assert_eq!(
        code(
            s3.create_bucket()
                .bucket("public")
                .acl(BucketCannedAcl::PublicRead)
                .send()
                .await
        ),
        "InvalidBucketAclWithObjectOwnership"
    );
    // Grants to others are refused too, not ignored.
    assert_eq!(
        code(
            s3.put_object_acl()
                .bucket("acls")
                .key("doc")
                .grant_read(format!("uri={ALL_USERS}"))
                .send()
                .await
        ),
        "AccessControlListNotSupported"
    );
    assert_eq!(
        code(
            s3.get_object_acl()
                .bucket("acls")
                .key("missing")
                .send()
                .await
        ),
        "NoSuchKey"
    );
    let (status, _) = anonymous_get(format!("{}/acls/doc", t.endpoint())).await;
    assert_eq!(status, 403);
    t.stop().await;
}

async fn public_read_object_is_readable_without_credentials(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("site")
        .object_ownership(ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
    put(&s3, "site", "index.html", Some(ObjectCannedAcl::PublicRead)).await;
    put(&s3, "site", "secret", None).await;
    let url = |key: &str| format!("{}/site/{key}", t.endpoint());
    let (status, body) = anonymous_get(url("index.html")).await;
    assert_eq!((status, body.as_str()), (200, "shared bytes"));
    let (status, _) = anonymous(reqwest::Method::HEAD, url("index.html")).await;
    assert_eq!(status, 200);
    assert_eq!(anonymous_get(url("secret")).await.0, 403);
    // The bucket itself is private: no anonymous listing, no anonymous writes.
    assert_eq!(
        anonymous_get(format!("{}/site?list-type=2", t.endpoint()))
            .await
            .0,
        403
    );
    assert_eq!(anonymous(reqwest::Method::PUT, url("new")).await.0, 403);
    let acl = s3
        .get_object_acl()
        .bucket("site")
        .key("index.html")
        .send()
        .await
        .unwrap();
    assert!(
        acl.grants()
            .iter()
            .any(|g| g.permission() == Some(&Permission::Read)
                && g.grantee().and_then(|e| e.uri()) == Some(ALL_USERS)),
        "{acl:?}"
    );
    // PutObjectAcl takes it back, and grants it again.
    s3.put_object_acl()
        .bucket("site")
        .key("index.html")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(url("index.html")).await.0, 403);
    s3.put_object_acl()
        .bucket("site")
        .key("secret")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(url("secret")).await.0, 200);
    // Disabling ACLs makes stored object ACLs count for nothing.
    s3.put_bucket_ownership_controls()
        .bucket("site")
        .ownership_controls(controls(ObjectOwnership::BucketOwnerEnforced))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(url("secret")).await.0, 403);
    let acl = s3
        .get_object_acl()
        .bucket("site")
        .key("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.grants().len(), 1, "only the owner once ACLs are off");
    t.stop().await;
}

async fn bucket_acls_grant_listing_and_writes_and_policy_deny_wins(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("open")
        .object_ownership(ObjectOwnership::BucketOwnerPreferred)
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    put(&s3, "open", "listed", None).await;
    let list_url = format!("{}/open?list-type=2", t.endpoint());
    let (status, body) = anonymous_get(list_url.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Key>listed</Key>"), "{body}");
    // Bucket READ lists; it does not read objects or write.
    assert_eq!(
        anonymous_get(format!("{}/open/listed", t.endpoint()))
            .await
            .0,
        403
    );
    let put_url = format!("{}/open/dropped", t.endpoint());
    assert_eq!(
        anonymous(reqwest::Method::PUT, put_url.clone()).await.0,
        403
    );
    // An explicit Deny in the bucket policy wins over the ACL.
    s3.put_bucket_policy()
        .bucket("open")
        .policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*",
                "Action":"s3:ListBucket","Resource":"arn:aws:s3:::open"}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(list_url.clone()).await.0, 403);
    s3.delete_bucket_policy()
        .bucket("open")
        .send()
        .await
        .unwrap();
    // public-read-write as an AccessControlPolicy body (what s3cmd sends).
    let root = t.server.root_key().id.clone();
    let group = |permission| {
        Grant::builder()
            .grantee(
                Grantee::builder()
                    .r#type(Type::Group)
                    .uri(ALL_USERS)
                    .build()
                    .unwrap(),
            )
            .permission(permission)
            .build()
    };
    let owner_grant = Grant::builder()
        .grantee(
            Grantee::builder()
                .r#type(Type::CanonicalUser)
                .id(&root)
                .build()
                .unwrap(),
        )
        .permission(Permission::FullControl)
        .build();
    s3.put_bucket_acl()
        .bucket("open")
        .access_control_policy(
            AccessControlPolicy::builder()
                .owner(Owner::builder().id(&root).build())
                .grants(owner_grant)
                .grants(group(Permission::Read))
                .grants(group(Permission::Write))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .put(put_url)
        .body("from anyone")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let dropped = s3
        .get_object()
        .bucket("open")
        .key("dropped")
        .send()
        .await
        .unwrap();
    let bytes = dropped.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], b"from anyone");
    let acl = s3.get_bucket_acl().bucket("open").send().await.unwrap();
    assert_eq!(acl.grants().len(), 3, "{acl:?}");
    // authenticated-read: any signed key lists, anonymous callers do not.
    s3.put_bucket_acl()
        .bucket("open")
        .acl(BucketCannedAcl::AuthenticatedRead)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(list_url).await.0, 403);
    let nobody = t.key_with_policy("nobody", None).await;
    let listed = t
        .client_for(&nobody)
        .list_objects_v2()
        .bucket("open")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(2));
    assert_eq!(
        code(
            t.client_for(&nobody)
                .get_object()
                .bucket("open")
                .key("listed")
                .send()
                .await
        ),
        "AccessDenied"
    );
    // ACLs cannot be disabled while the bucket ACL shares.
    assert_eq!(
        code(
            s3.put_bucket_ownership_controls()
                .bucket("open")
                .ownership_controls(controls(ObjectOwnership::BucketOwnerEnforced))
                .send()
                .await
        ),
        "InvalidBucketAclWithObjectOwnership"
    );
    s3.delete_bucket_ownership_controls()
        .bucket("open")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.get_bucket_ownership_controls()
                .bucket("open")
                .send()
                .await
        ),
        "OwnershipControlsNotFoundError"
    );
    // Without ownership controls ACLs still count (as on pre-2023 buckets).
    assert_eq!(
        t.client_for(&nobody)
            .list_objects_v2()
            .bucket("open")
            .send()
            .await
            .unwrap()
            .key_count(),
        Some(2)
    );
    t.stop().await;
}

async fn copy_and_multipart_take_the_acl_of_the_request(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("media")
        .object_ownership(ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
    put(
        &s3,
        "media",
        "public-src",
        Some(ObjectCannedAcl::PublicRead),
    )
    .await;
    let url = |key: &str| format!("{}/media/{key}", t.endpoint());
    // An ACL is not copied: a copy without x-amz-acl is private.
    s3.copy_object()
        .bucket("media")
        .key("copy-private")
        .copy_source("media/public-src")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(url("copy-private")).await.0, 403);
    s3.copy_object()
        .bucket("media")
        .key("copy-public")
        .copy_source("media/public-src")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(url("copy-public")).await.0, 200);
    let upload = s3
        .create_multipart_upload()
        .bucket("media")
        .key("big")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket("media")
        .key("big")
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"one part"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous_get(url("big")).await.0,
        403,
        "nothing to read before completion"
    );
    s3.complete_multipart_upload()
        .bucket("media")
        .key("big")
        .upload_id(upload_id)
        .multipart_upload(crate::common::one_part(part.e_tag().unwrap()))
        .send()
        .await
        .unwrap();
    let (status, body) = anonymous_get(url("big")).await;
    assert_eq!((status, body.as_str()), (200, "one part"));
    t.stop().await;
}

async fn object_acl_is_per_version(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("vers")
        .object_ownership(ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
    s3.put_bucket_versioning()
        .bucket("vers")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let first = s3
        .put_object()
        .bucket("vers")
        .key("k")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"v1"))
        .send()
        .await
        .unwrap();
    let v1 = first.version_id().unwrap().to_owned();
    put(&s3, "vers", "k", None).await;
    let base = format!("{}/vers/k", t.endpoint());
    assert_eq!(anonymous_get(base.clone()).await.0, 403, "v2 is private");
    let (status, body) = anonymous_get(format!("{base}?versionId={v1}")).await;
    assert_eq!((status, body.as_str()), (200, "v1"));
    s3.put_object_acl()
        .bucket("vers")
        .key("k")
        .version_id(&v1)
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_get(format!("{base}?versionId={v1}")).await.0, 403);
    t.stop().await;
}

on_both_backends!(
    new_buckets_enforce_ownership_and_refuse_sharing_acls,
    public_read_object_is_readable_without_credentials,
    bucket_acls_grant_listing_and_writes_and_policy_deny_wins,
    copy_and_multipart_take_the_acl_of_the_request,
    object_acl_is_per_version,
);
