//! Coffer's `?coffer-data-protection` bucket sub-resource: stored, validated,
//! authorized like other bucket configuration, and errors in S3's shape.

use crate::common::{Backend, TestServer, send, sign, xml_code};
use crate::on_both_backends;

const ERASURE_4_2: &str = "<DataProtection><Scheme>erasure</Scheme><DataShards>4</DataShards><ParityShards>2</ParityShards></DataProtection>";

/// Sends a signed request to the sub-resource; returns (status, body).
async fn call(
    t: &TestServer,
    (id, secret): (&str, &str),
    method: &str,
    bucket: &str,
    body: &str,
) -> (u16, String) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{}/{bucket}?coffer-data-protection", t.endpoint()))
        .body(body.as_bytes().to_vec())
        .expect("request");
    sign(&mut request, id, secret, false);
    let (status, _, body) = send(request).await;
    (status, body)
}

async fn data_protection_is_stored_validated_and_reset(backend: Backend) {
    let t = TestServer::start(backend).await;
    let root = t.server.root_key();
    let root = (root.id.as_str(), root.secret.as_str());
    t.root_client()
        .create_bucket()
        .bucket("dp-bucket")
        .send()
        .await
        .expect("bucket");

    let (status, body) = call(&t, root, "GET", "dp-bucket", "").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        xml_code(&body),
        "NoSuchDataProtectionConfiguration",
        "{body}"
    );

    let (status, body) = call(&t, root, "PUT", "dp-bucket", "<DataProtection><Scheme>era").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(xml_code(&body), "MalformedXML", "{body}");
    for bad in [
        "<DataProtection><Scheme>erasure</Scheme><DataShards>0</DataShards><ParityShards>2</ParityShards></DataProtection>",
        "<DataProtection><Scheme>erasure</Scheme><DataShards>4</DataShards></DataProtection>",
        "<DataProtection><Scheme>mirror</Scheme></DataProtection>",
    ] {
        let (status, body) = call(&t, root, "PUT", "dp-bucket", bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(xml_code(&body), "InvalidArgument", "{bad}: {body}");
    }
    // Bad input changed nothing.
    let (status, _) = call(&t, root, "GET", "dp-bucket", "").await;
    assert_eq!(status, 404);

    let (status, body) = call(&t, root, "PUT", "dp-bucket", ERASURE_4_2).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&t, root, "GET", "dp-bucket", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Scheme>erasure</Scheme>"), "{body}");
    assert!(body.contains("<DataShards>4</DataShards>"), "{body}");
    assert!(body.contains("<ParityShards>2</ParityShards>"), "{body}");

    let replicas = "<DataProtection><Scheme>replicas</Scheme></DataProtection>";
    let (status, body) = call(&t, root, "PUT", "dp-bucket", replicas).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(&t, root, "GET", "dp-bucket", "").await;
    assert!(body.contains("<Scheme>replicas</Scheme>"), "{body}");
    assert!(!body.contains("DataShards"), "{body}");

    let (status, body) = call(&t, root, "DELETE", "dp-bucket", "").await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(&t, root, "GET", "dp-bucket", "").await;
    assert_eq!(status, 404);

    let (status, body) = call(&t, root, "PUT", "missing", ERASURE_4_2).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(xml_code(&body), "NoSuchBucket", "{body}");

    // The bucket's other sub-resources still reach s3s.
    let versioning = t
        .root_client()
        .get_bucket_versioning()
        .bucket("dp-bucket")
        .send()
        .await;
    assert!(versioning.is_ok(), "{versioning:?}");
    t.stop().await;
}

async fn data_protection_needs_its_iam_action(backend: Backend) {
    let t = TestServer::start(backend).await;
    t.root_client()
        .create_bucket()
        .bucket("guarded")
        .send()
        .await
        .expect("bucket");
    let writer = t
        .key_with_policy(
            "writer",
            Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:PutObject","s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::guarded","arn:aws:s3:::guarded/*"]}]}"#,
            ),
        )
        .await;
    let writer = (writer.id.as_str(), writer.secret.as_str());
    for method in ["PUT", "GET", "DELETE"] {
        let (status, body) = call(&t, writer, method, "guarded", ERASURE_4_2).await;
        assert_eq!(status, 403, "{method}: {body}");
        assert_eq!(xml_code(&body), "AccessDenied", "{method}: {body}");
    }
    let (status, body) = call(&t, ("NOSUCHKEY", "nope"), "PUT", "guarded", ERASURE_4_2).await;
    assert_eq!(status, 403, "{body}");
    let admin = t
        .key_with_policy(
            "admin",
            Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:PutBucketDataProtection","s3:GetBucketDataProtection"],"Resource":"arn:aws:s3:::guarded"}]}"#,
            ),
        )
        .await;
    let admin = (admin.id.as_str(), admin.secret.as_str());
    let (status, body) = call(&t, admin, "PUT", "guarded", ERASURE_4_2).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&t, admin, "GET", "guarded", "").await;
    assert_eq!(status, 200, "{body}");
    // A tampered signature never reaches the route.
    let mut request = http::Request::builder()
        .method("GET")
        .uri(format!("{}/guarded?coffer-data-protection", t.endpoint()))
        .body(Vec::new())
        .expect("request");
    sign(&mut request, admin.0, "wrong-secret", false);
    let (status, _, body) = send(request).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(xml_code(&body), "SignatureDoesNotMatch", "{body}");
    t.stop().await;
}

async fn an_erasure_bucket_on_a_single_node_stores_copies(backend: Backend) {
    // One node cannot hold 4+2 shards: large objects stay replicated (R=1)
    // and read back, as under a cluster-wide --erasure.
    let t = TestServer::start(backend).await;
    let root = t.server.root_key();
    let s3 = t.root_client();
    s3.create_bucket()
        .bucket("lone")
        .send()
        .await
        .expect("bucket");
    let (status, body) = call(&t, (&root.id, &root.secret), "PUT", "lone", ERASURE_4_2).await;
    assert_eq!(status, 200, "{body}");
    let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    s3.put_object()
        .bucket("lone")
        .key("big")
        .body(data.clone().into())
        .send()
        .await
        .expect("put");
    let back = s3
        .get_object()
        .bucket("lone")
        .key("big")
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert!(back[..] == data[..]);
    let object = t
        .server
        .meta()
        .get_object("lone", "big")
        .await
        .expect("meta")
        .expect("row");
    assert!(
        object.segments.iter().all(|s| !s.blob.starts_with("e-")),
        "{:?}",
        object.segments
    );
    t.stop().await;
}

on_both_backends!(
    data_protection_is_stored_validated_and_reset,
    data_protection_needs_its_iam_action,
    an_erasure_bucket_on_a_single_node_stores_copies,
);
