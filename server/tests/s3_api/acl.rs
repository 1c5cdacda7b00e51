use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketCannedAcl, ObjectCannedAcl, ObjectOwnership, OwnershipControls, OwnershipControlsRule,
    Permission,
};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

async fn acls_report_owner_full_control_and_refuse_sharing(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("acls").send().await.unwrap();
    s3.put_object()
        .bucket("acls")
        .key("doc")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let root = t.server.root_key().id.clone();
    let bucket_acl = s3.get_bucket_acl().bucket("acls").send().await.unwrap();
    assert_eq!(bucket_acl.owner().and_then(|o| o.id()), Some(root.as_str()));
    assert_eq!(bucket_acl.grants().len(), 1);
    let grant = &bucket_acl.grants()[0];
    assert_eq!(grant.permission(), Some(&Permission::FullControl));
    assert_eq!(grant.grantee().and_then(|g| g.id()), Some(root.as_str()));
    let object_acl = s3
        .get_object_acl()
        .bucket("acls")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(object_acl.grants().len(), 1);
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
    // Private stays possible; sharing is refused, not ignored.
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
        "NotImplemented"
    );
    assert_eq!(
        code(
            s3.put_object_acl()
                .bucket("acls")
                .key("doc")
                .grant_read("uri=http://acs.amazonaws.com/groups/global/AllUsers")
                .send()
                .await
        ),
        "NotImplemented"
    );
    // Anonymous reads stay refused: nothing was shared.
    let anonymous = reqwest::get(format!("{}/acls/doc", t.endpoint()))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 403);
    t.stop().await;
}

async fn ownership_controls_are_bucket_owner_enforced(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("acls").send().await.unwrap();
    let got = s3
        .get_bucket_ownership_controls()
        .bucket("acls")
        .send()
        .await
        .unwrap();
    let rules = got.ownership_controls().unwrap().rules();
    assert_eq!(
        rules[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    let controls = |ownership| {
        OwnershipControls::builder()
            .rules(
                OwnershipControlsRule::builder()
                    .object_ownership(ownership)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    s3.put_bucket_ownership_controls()
        .bucket("acls")
        .ownership_controls(controls(ObjectOwnership::BucketOwnerEnforced))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            s3.put_bucket_ownership_controls()
                .bucket("acls")
                .ownership_controls(controls(ObjectOwnership::ObjectWriter))
                .send()
                .await
        ),
        "NotImplemented"
    );
    assert_eq!(
        code(
            s3.get_bucket_ownership_controls()
                .bucket("nobucket")
                .send()
                .await
        ),
        "NoSuchBucket"
    );
    t.stop().await;
}

on_both_backends!(
    acls_report_owner_full_control_and_refuse_sharing,
    ownership_controls_are_bucket_owner_enforced,
);
