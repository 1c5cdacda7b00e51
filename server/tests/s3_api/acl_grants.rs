//! ACLs beyond canned ones: grant headers, AccessControlPolicy bodies, object
//! owners under ObjectWriter/BucketOwnerPreferred, the server's default
//! ownership, and concurrent updates.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AccessControlPolicy, BucketVersioningStatus, Grant, Grantee, ObjectCannedAcl, ObjectOwnership,
    Owner, Permission, Tag, Tagging, Type, VersioningConfiguration,
};
use coffer_server::meta::ObjectOwnership as Ownership;

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

async fn anonymous_get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(b"bytes"))
        .send()
        .await
        .unwrap()
        .version_id()
        .map(str::to_owned)
}

async fn writer_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.create_bucket()
        .bucket(bucket)
        .object_ownership(ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
}

async fn grant_headers_name_keys_groups_and_refuse_emails(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    writer_bucket(&s3, "grants").await;
    let reader = t.key_with_policy("reader", None).await;
    let other = t.key_with_policy("other", None).await;
    s3.put_object()
        .bucket("grants")
        .key("doc")
        .grant_read(format!("id=\"{}\"", reader.id))
        .body(ByteStream::from_static(b"for the reader"))
        .send()
        .await
        .unwrap();
    let got = t
        .client_for(&reader)
        .get_object()
        .bucket("grants")
        .key("doc")
        .send()
        .await
        .unwrap();
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], b"for the reader");
    assert_eq!(
        code(
            t.client_for(&other)
                .get_object()
                .bucket("grants")
                .key("doc")
                .send()
                .await
        ),
        "AccessDenied"
    );
    // READ is not READ_ACP.
    assert_eq!(
        code(
            t.client_for(&reader)
                .get_object_acl()
                .bucket("grants")
                .key("doc")
                .send()
                .await
        ),
        "AccessDenied"
    );
    let acl = s3
        .get_object_acl()
        .bucket("grants")
        .key("doc")
        .send()
        .await
        .unwrap();
    let shown = acl
        .grants()
        .iter()
        .find(|g| g.grantee().and_then(|e| e.id()) == Some(reader.id.as_str()))
        .unwrap_or_else(|| panic!("{acl:?}"));
    assert_eq!(shown.permission(), Some(&Permission::Read));
    assert_eq!(
        shown.grantee().and_then(|e| e.display_name()),
        Some("reader"),
        "a key's name is its display name"
    );
    assert_eq!(acl.grants().len(), 1, "grant headers are the whole ACL");
    // Groups by uri, several grantees in one header.
    s3.put_object_acl()
        .bucket("grants")
        .key("doc")
        .grant_read(format!(
            "uri=\"{AUTHENTICATED_USERS}\", id=\"{}\"",
            reader.id
        ))
        .send()
        .await
        .unwrap();
    t.client_for(&other)
        .get_object()
        .bucket("grants")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous_get(format!("{}/grants/doc", t.endpoint()))
            .await
            .0,
        403
    );
    // What cannot be resolved is refused, as on AWS, and changes nothing.
    assert_eq!(
        code(
            s3.put_object_acl()
                .bucket("grants")
                .key("doc")
                .grant_read("emailAddress=\"someone@example.com\"")
                .send()
                .await
        ),
        "UnresolvableGrantByEmailAddress"
    );
    assert_eq!(
        code(
            s3.put_object_acl()
                .bucket("grants")
                .key("doc")
                .grant_read("id=\"NOSUCHKEY\"")
                .send()
                .await
        ),
        "InvalidArgument"
    );
    assert_eq!(
        code(
            s3.put_object_acl()
                .bucket("grants")
                .key("doc")
                .grant_read("uri=\"http://example.com/everyone\"")
                .send()
                .await
        ),
        "InvalidArgument"
    );
    assert_eq!(
        code(
            s3.put_object()
                .bucket("grants")
                .key("both")
                .acl(ObjectCannedAcl::PublicRead)
                .grant_read(format!("id=\"{}\"", reader.id))
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
        ),
        "InvalidRequest"
    );
    t.client_for(&other)
        .get_object()
        .bucket("grants")
        .key("doc")
        .send()
        .await
        .unwrap();
    t.stop().await;
}

async fn acp_grants_read_and_change_acls(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    writer_bucket(&s3, "acp").await;
    put(&s3, "acp", "doc").await;
    let auditor = t.key_with_policy("auditor", None).await;
    let admin = t.key_with_policy("admin", None).await;
    s3.put_object_acl()
        .bucket("acp")
        .key("doc")
        .grant_read_acp(format!("id={}", auditor.id))
        .grant_write_acp(format!("id={}", admin.id))
        .send()
        .await
        .unwrap();
    let seen = t
        .client_for(&auditor)
        .get_object_acl()
        .bucket("acp")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(seen.grants().len(), 2, "{seen:?}");
    assert_eq!(
        code(
            t.client_for(&auditor)
                .put_object_acl()
                .bucket("acp")
                .key("doc")
                .acl(ObjectCannedAcl::PublicRead)
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        code(
            t.client_for(&admin)
                .get_object()
                .bucket("acp")
                .key("doc")
                .send()
                .await
        ),
        "AccessDenied"
    );
    // WRITE_ACP lets the admin give itself FULL_CONTROL, which reads.
    t.client_for(&admin)
        .put_object_acl()
        .bucket("acp")
        .key("doc")
        .grant_full_control(format!("id={}", admin.id))
        .send()
        .await
        .unwrap();
    t.client_for(&admin)
        .get_object()
        .bucket("acp")
        .key("doc")
        .send()
        .await
        .unwrap();
    // Bucket READ_ACP / WRITE_ACP likewise.
    s3.put_bucket_acl()
        .bucket("acp")
        .grant_read_acp(format!("id={}", auditor.id))
        .send()
        .await
        .unwrap();
    t.client_for(&auditor)
        .get_bucket_acl()
        .bucket("acp")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            t.client_for(&auditor)
                .list_objects_v2()
                .bucket("acp")
                .send()
                .await
        ),
        "AccessDenied"
    );
    t.stop().await;
}

async fn object_writer_owns_what_it_writes(backend: Backend) {
    let t = TestServer::start(backend).await;
    let owner = t
        .key_with_policy(
            "team-owner",
            Some(
                r#"{"Statement":[{"Effect":"Allow","Resource":"*",
                    "Action":["s3:CreateBucket","s3:PutBucketOwnershipControls"]}]}"#,
            ),
        )
        .await;
    let writer = t.key_with_policy("team-writer", None).await;
    let as_owner = t.client_for(&owner);
    let as_writer = t.client_for(&writer);
    writer_bucket(&as_owner, "shared").await;
    // The bucket owner's ACL lets it grant WRITE; nothing else allows it.
    as_owner
        .put_bucket_acl()
        .bucket("shared")
        .grant_full_control(format!("id={}", owner.id))
        .grant_write(format!("id={}", writer.id))
        .send()
        .await
        .unwrap();
    put(&as_writer, "shared", "mine").await;
    let acl = as_writer
        .get_object_acl()
        .bucket("shared")
        .key("mine")
        .send()
        .await
        .unwrap();
    let shown_owner = acl.owner().unwrap();
    assert_eq!(shown_owner.id(), Some(writer.id.as_str()));
    assert_eq!(shown_owner.display_name(), Some("team-writer"));
    assert_eq!(
        code(
            as_owner
                .get_object()
                .bucket("shared")
                .key("mine")
                .send()
                .await
        ),
        "AccessDenied",
        "a private object of another writer"
    );
    as_writer
        .put_object()
        .bucket("shared")
        .key("given")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .body(ByteStream::from_static(b"for the owner"))
        .send()
        .await
        .unwrap();
    as_owner
        .get_object()
        .bucket("shared")
        .key("given")
        .send()
        .await
        .unwrap();
    let acl = as_owner
        .get_object_acl()
        .bucket("shared")
        .key("given")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.owner().and_then(Owner::id), Some(writer.id.as_str()));
    assert_eq!(acl.grants().len(), 2, "{acl:?}");
    // BucketOwnerPreferred: bucket-owner-full-control hands the object over.
    as_owner
        .put_bucket_ownership_controls()
        .bucket("shared")
        .ownership_controls(crate::acl::controls(ObjectOwnership::BucketOwnerPreferred))
        .send()
        .await
        .unwrap();
    as_writer
        .put_object()
        .bucket("shared")
        .key("handed")
        .acl(ObjectCannedAcl::BucketOwnerFullControl)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let acl = as_owner
        .get_object_acl()
        .bucket("shared")
        .key("handed")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.owner().and_then(Owner::id), Some(owner.id.as_str()));
    put(&as_writer, "shared", "kept").await;
    let acl = as_writer
        .get_object_acl()
        .bucket("shared")
        .key("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.owner().and_then(Owner::id), Some(writer.id.as_str()));
    t.stop().await;
}

async fn access_control_policy_body_sets_a_versions_acl(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    writer_bucket(&s3, "body").await;
    s3.put_bucket_versioning()
        .bucket("body")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v1 = put(&s3, "body", "k").await.unwrap();
    put(&s3, "body", "k").await;
    let root = t.server.root_key().id.clone();
    let policy = AccessControlPolicy::builder()
        .owner(Owner::builder().id(&root).build())
        .grants(
            Grant::builder()
                .grantee(
                    Grantee::builder()
                        .r#type(Type::CanonicalUser)
                        .id(&root)
                        .build()
                        .unwrap(),
                )
                .permission(Permission::FullControl)
                .build(),
        )
        .grants(
            Grant::builder()
                .grantee(
                    Grantee::builder()
                        .r#type(Type::Group)
                        .uri(AUTHENTICATED_USERS)
                        .build()
                        .unwrap(),
                )
                .permission(Permission::Read)
                .build(),
        )
        .build();
    s3.put_object_acl()
        .bucket("body")
        .key("k")
        .version_id(&v1)
        .access_control_policy(policy)
        .send()
        .await
        .unwrap();
    let nobody = t.key_with_policy("nobody", None).await;
    t.client_for(&nobody)
        .get_object()
        .bucket("body")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            t.client_for(&nobody)
                .get_object()
                .bucket("body")
                .key("k")
                .send()
                .await
        ),
        "AccessDenied",
        "the current version stays private"
    );
    let acl = s3
        .get_object_acl()
        .bucket("body")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert!(
        acl.grants()
            .iter()
            .any(|g| g.grantee().and_then(|e| e.uri()) == Some(AUTHENTICATED_USERS)),
        "{acl:?}"
    );
    // An email grantee in a body cannot be resolved either.
    let by_email = AccessControlPolicy::builder()
        .owner(Owner::builder().id(&root).build())
        .grants(
            Grant::builder()
                .grantee(
                    Grantee::builder()
                        .r#type(Type::AmazonCustomerByEmail)
                        .email_address("someone@example.com")
                        .build()
                        .unwrap(),
                )
                .permission(Permission::Read)
                .build(),
        )
        .build();
    assert_eq!(
        code(
            s3.put_object_acl()
                .bucket("body")
                .key("k")
                .access_control_policy(by_email)
                .send()
                .await
        ),
        "UnresolvableGrantByEmailAddress"
    );
    // An ACL holds at most 100 grants, as on AWS; the version keeps its ACL.
    let mut crowded = AccessControlPolicy::builder().owner(Owner::builder().id(&root).build());
    for _ in 0..101 {
        crowded = crowded.grants(
            Grant::builder()
                .grantee(
                    Grantee::builder()
                        .r#type(Type::Group)
                        .uri(AUTHENTICATED_USERS)
                        .build()
                        .unwrap(),
                )
                .permission(Permission::Read)
                .build(),
        );
    }
    assert_eq!(
        code(
            s3.put_object_acl()
                .bucket("body")
                .key("k")
                .version_id(&v1)
                .access_control_policy(crowded.build())
                .send()
                .await
        ),
        "MalformedACLError"
    );
    let kept = s3
        .get_object_acl()
        .bucket("body")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.grants().len(), acl.grants().len());
    t.stop().await;
}

async fn enforced_ownership_accepts_only_owner_full_control(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("locked").send().await.unwrap();
    put(&s3, "locked", "doc").await;
    let root = t.server.root_key().id.clone();
    s3.put_object_acl()
        .bucket("locked")
        .key("doc")
        .grant_full_control(format!("id={root}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.put_object_acl()
                .bucket("locked")
                .key("doc")
                .grant_read(format!("uri={AUTHENTICATED_USERS}"))
                .send()
                .await
        ),
        "AccessControlListNotSupported"
    );
    let reader = t.key_with_policy("reader", None).await;
    assert_eq!(
        code(
            s3.put_object()
                .bucket("locked")
                .key("shared")
                .grant_read(format!("id={}", reader.id))
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
        ),
        "AccessControlListNotSupported"
    );
    t.stop().await;
}

async fn default_object_ownership_applies_to_new_buckets(backend: Backend) {
    let t = TestServer::start_with(backend, |c| {
        c.access.object_ownership = Ownership::ObjectWriter;
    })
    .await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("legacy").send().await.unwrap();
    let got = s3
        .get_bucket_ownership_controls()
        .bucket("legacy")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::ObjectWriter
    );
    s3.put_object()
        .bucket("legacy")
        .key("avatar.png")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"png"))
        .send()
        .await
        .unwrap();
    let (status, body) = anonymous_get(format!("{}/legacy/avatar.png", t.endpoint())).await;
    assert_eq!((status, body.as_str()), (200, "png"));
    // The request's own setting still wins.
    s3.create_bucket()
        .bucket("strict")
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.put_object()
                .bucket("strict")
                .key("x")
                .acl(ObjectCannedAcl::PublicRead)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
        ),
        "AccessControlListNotSupported"
    );
    t.stop().await;
}

async fn concurrent_acl_updates_never_lose_one(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    writer_bucket(&s3, "race").await;
    s3.put_bucket_versioning()
        .bucket("race")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut versions = Vec::new();
    for _ in 0..8 {
        versions.push(put(&s3, "race", "k").await.unwrap());
    }
    // Every version's ACL and the current version's tags, all at once: each
    // update rewrites the same row, so a lost one would show.
    let mut tasks = Vec::new();
    for version in versions.clone() {
        let s3 = s3.clone();
        tasks.push(tokio::spawn(async move {
            s3.put_object_acl()
                .bucket("race")
                .key("k")
                .version_id(version)
                .acl(ObjectCannedAcl::PublicRead)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }));
    }
    for i in 0..4 {
        let s3 = s3.clone();
        tasks.push(tokio::spawn(async move {
            s3.put_object_tagging()
                .bucket("race")
                .key("k")
                .tagging(
                    Tagging::builder()
                        .tag_set(
                            Tag::builder()
                                .key("round")
                                .value(i.to_string())
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for version in &versions {
        let (status, _) =
            anonymous_get(format!("{}/race/k?versionId={version}", t.endpoint())).await;
        assert_eq!(status, 200, "version {version} lost its ACL");
    }
    let tags = s3
        .get_object_tagging()
        .bucket("race")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set().len(), 1, "the tags survived the ACL updates");
    t.stop().await;
}

on_both_backends!(
    grant_headers_name_keys_groups_and_refuse_emails,
    acp_grants_read_and_change_acls,
    object_writer_owns_what_it_writes,
    access_control_policy_body_sets_a_versions_acl,
    enforced_ownership_accepts_only_owner_full_control,
    default_object_ownership_applies_to_new_buckets,
    concurrent_acl_updates_never_lose_one,
);
