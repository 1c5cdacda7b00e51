use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use crate::common::{Backend, TestServer, code};
use crate::on_both_backends;

async fn bucket_lifecycle_create_list_head_delete(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    s3.create_bucket().bucket("alpha").send().await.unwrap();
    s3.create_bucket().bucket("beta").send().await.unwrap();
    let names: Vec<String> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    s3.head_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(
        code(s3.head_bucket().bucket("gamma").send().await),
        "NotFound"
    );
    // us-east-1 (the default region): AWS's legacy 200 for a bucket you own;
    // other regions answer BucketAlreadyOwnedByYou (fidelity.rs).
    s3.create_bucket().bucket("alpha").send().await.unwrap();
    s3.put_object()
        .bucket("alpha")
        .key("x")
        .body(b"1".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(s3.delete_bucket().bucket("alpha").send().await),
        "BucketNotEmpty"
    );
    s3.delete_object()
        .bucket("alpha")
        .key("x")
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(
        code(s3.delete_bucket().bucket("alpha").send().await),
        "NoSuchBucket"
    );
    assert_eq!(
        code(s3.list_objects_v2().bucket("alpha").send().await),
        "NoSuchBucket"
    );
    t.stop().await;
}

async fn bucket_names_and_location_constraints_are_validated(backend: Backend) {
    let t = TestServer::start(backend).await;
    let s3 = t.root_client();
    for bad in ["ab", "Upper", "has_underscore", "10.0.0.1", "a..b"] {
        assert_eq!(
            code(s3.create_bucket().bucket(bad).send().await),
            "InvalidBucketName",
            "{bad}"
        );
    }
    let wrong_region = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::EuWest1)
        .build();
    assert_eq!(
        code(
            s3.create_bucket()
                .bucket("eu-bucket")
                .create_bucket_configuration(wrong_region)
                .send()
                .await
        ),
        "IllegalLocationConstraintException"
    );
    s3.create_bucket().bucket("home").send().await.unwrap();
    let location = s3
        .get_bucket_location()
        .bucket("home")
        .send()
        .await
        .unwrap();
    assert!(
        location
            .location_constraint()
            .is_none_or(|c| c.as_str().is_empty())
    );
    t.stop().await;
}

async fn another_owner_gets_bucket_already_exists(backend: Backend) {
    let t = TestServer::start(backend).await;
    t.root_client()
        .create_bucket()
        .bucket("taken")
        .send()
        .await
        .unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    let other = t.key_with_policy("other", Some(policy)).await;
    let s3 = t.client_for(&other);
    assert_eq!(
        code(s3.create_bucket().bucket("taken").send().await),
        "BucketAlreadyExists"
    );
    s3.create_bucket().bucket("mine").send().await.unwrap();
    t.stop().await;
}

on_both_backends!(
    bucket_lifecycle_create_list_head_delete,
    bucket_names_and_location_constraints_are_validated,
    another_owner_gets_bucket_already_exists,
);
