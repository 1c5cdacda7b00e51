//! The pod's view of workload identity: nothing but the environment a
//! workload-identity Secret provides (`AWS_ROLE_ARN`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ENDPOINT_URL`, `AWS_REGION`) and
//! `aws_config::defaults()`: the SDK's default chain finds the token file,
//! exchanges it at Coffer's STS and signs S3 requests with the result. The
//! issuer's JWKS is a file here. Its own test binary, because it sets the
//! process environment.

#[path = "s3_api/common.rs"]
mod common;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials as _;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_server::meta::NewRole;
use coffer_server::sts::{IssuerConfig, JwksSource, trust};
use common::{Backend, TestServer};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::json;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const AUDIENCE: &str = "sts.coffer.dev";
const SUBJECT: &str = "system:serviceaccount:team-a:app";

fn es256(key: &EcdsaKeyPair, claims: &serde_json::Value) -> String {
    let header = json!({"alg": "ES256", "kid": "sa-1", "typ": "JWT"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

#[tokio::test]
async fn a_pod_configured_only_by_environment_gets_s3_access_from_its_service_account_token() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let point = key.public_key().as_ref();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "sa-1", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]});
    let pod_dir = coffer_testkit::temp_dir("pod");
    let jwks_file = pod_dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).expect("jwks file");

    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.sts.issuers = vec![IssuerConfig {
            issuer: ISSUER.to_owned(),
            jwks: JwksSource::File(jwks_file.clone()),
        }];
    })
    .await;
    for bucket in ["team-a", "other"] {
        server
            .root_client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
    }
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*",
        "Resource":["arn:aws:s3:::team-a","arn:aws:s3:::team-a/*"]}]}"#;
    server
        .server
        .meta()
        .put_role(
            &NewRole {
                name: "team-a-app".to_owned(),
                policy: policy.to_owned(),
                trust: trust::service_account_trust(ISSUER, &[SUBJECT.to_owned()], AUDIENCE),
                max_session_seconds: 3600,
                owner: "test".to_owned(),
            },
            false,
        )
        .await
        .expect("role");

    // What the kubelet projects into the pod.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token_file = pod_dir.join("token");
    let claims = json!({"iss": ISSUER, "sub": SUBJECT, "aud": [AUDIENCE],
        "iat": now, "nbf": now, "exp": now + 3600,
        "kubernetes.io": {"namespace": "team-a", "serviceaccount": {"name": "app"}}});
    std::fs::write(&token_file, es256(&key, &claims)).expect("token file");

    // What the Secret's envFrom provides; no static key, no profile files.
    let set = [
        ("AWS_ROLE_ARN", trust::role_arn("team-a-app")),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_REGION", "us-east-1".to_owned()),
        (
            "AWS_CONFIG_FILE",
            pod_dir.join("no-config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            pod_dir.join("no-credentials").display().to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    // SAFETY: this binary holds this one test, and nothing else in the process
    // reads or writes the environment while it is changed.
    unsafe {
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_STS",
        ] {
            std::env::remove_var(name);
        }
        for (name, value) in &set {
            std::env::set_var(name, value);
        }
    }

    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .load()
        .await;
    let credentials = sdk
        .credentials_provider()
        .expect("a credentials chain")
        .provide_credentials()
        .await
        .expect("the default chain exchanges the token");
    assert!(
        credentials.access_key_id().starts_with("ASIA"),
        "temporary credentials, not a static key"
    );
    assert!(credentials.session_token().is_some());
    assert!(credentials.expiry().is_some());

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.put_object()
        .bucket("team-a")
        .key("from-pod")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .expect("write within the grant");
    let body = s3
        .get_object()
        .bucket("team-a")
        .key("from-pod")
        .send()
        .await
        .expect("read within the grant")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(&body[..], b"hello");
    assert_eq!(
        common::code(s3.list_objects_v2().bucket("other").send().await),
        "AccessDenied"
    );

    // Another ServiceAccount's token (same issuer, same audience) gets nothing.
    let mut intruder = claims.clone();
    intruder["sub"] = json!("system:serviceaccount:team-a:other");
    std::fs::write(&token_file, es256(&key, &intruder)).expect("token file");
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .load()
        .await;
    let refused = sdk
        .credentials_provider()
        .expect("a credentials chain")
        .provide_credentials()
        .await;
    assert!(refused.is_err(), "another ServiceAccount is refused");

    server.stop().await;
    let _ = std::fs::remove_dir_all(&pod_dir);
}
