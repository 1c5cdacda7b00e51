//! Workload identity: a test identity provider (RSA and EC keys, JWKS served
//! over HTTP) signs tokens; the AWS SDK's own web-identity credentials provider
//! exchanges them at Coffer's STS endpoint, and aws-sdk-s3 uses the temporary
//! credentials. Also AssumeRole from an access key, presigned URLs, expiry,
//! key rotation and revocation by deleting the role.

#[path = "s3_api/common.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use coffer_server::meta::NewRole;
use coffer_server::sts::trust;
use coffer_server::sts::{IssuerConfig, JwksSource};
use common::{Backend, TestServer};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{Value, json};

const ISSUER: &str = "https://oidc.test.coffer";
const AUDIENCE: &str = "sts.coffer.dev";
const SUBJECT: &str = "system:serviceaccount:team-a:app";

/// A signing key of the test identity provider.
enum TestKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl TestKey {
    fn rsa(pem: &str) -> Self {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).expect("pem");
        TestKey::Rsa(RsaKeyPair::from_pkcs8(&der).expect("rsa key"))
    }

    fn ec() -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("ec key");
        TestKey::Ec(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("ec key"))
    }

    fn jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Rsa(key) => {
                let public = signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
                json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                       "n": URL_SAFE_NO_PAD.encode(&public.n),
                       "e": URL_SAFE_NO_PAD.encode(&public.e)})
            }
            TestKey::Ec(key) => {
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
                       "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                       "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
            }
        }
    }

    fn sign(&self, kid: &str, claims: &Value) -> String {
        let alg = match self {
            TestKey::Rsa(_) => "RS256",
            TestKey::Ec(_) => "ES256",
        };
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match self {
            TestKey::Rsa(key) => {
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("sign");
                sig
            }
            TestKey::Ec(key) => key
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(sub: &str, aud: &str, exp: i64) -> Value {
    json!({"iss": ISSUER, "sub": sub, "aud": [aud], "iat": now(), "nbf": now() - 5, "exp": exp})
}

/// The identity provider: keys, and the JWKS it publishes over HTTP.
struct Idp {
    rsa1: TestKey,
    rsa2: TestKey,
    ec: TestKey,
    jwks: Arc<Mutex<Value>>,
    url: String,
}

impl Idp {
    async fn start() -> Self {
        let rsa1 = TestKey::rsa(include_str!("support/sts/rsa1.pem"));
        let rsa2 = TestKey::rsa(include_str!("support/sts/rsa2.pem"));
        let ec = TestKey::ec();
        let jwks = Arc::new(Mutex::new(
            json!({"keys": [rsa1.jwk("rsa-1"), ec.jwk("ec-1")]}),
        ));
        let served = jwks.clone();
        let app = axum::Router::new().route(
            "/openid/v1/jwks",
            axum::routing::get(move || {
                let served = served.clone();
                async move { served.lock().expect("jwks").to_string() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/openid/v1/jwks",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            rsa1,
            rsa2,
            ec,
            jwks,
            url,
        }
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.jwks.lock().expect("jwks") = json!({ "keys": keys });
    }

    fn token(&self) -> String {
        self.rsa1
            .sign("rsa-1", &claims(SUBJECT, AUDIENCE, now() + 600))
    }
}

const TEAM_A_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[
    {"Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::team-a","arn:aws:s3:::team-a/*"]}]}"#;

/// A server trusting the test IdP, buckets `team-a` and `other`, and role
/// `app` for `SUBJECT` with access to `team-a` only.
async fn setup() -> (TestServer, Idp) {
    let idp = Idp::start().await;
    let jwks = idp.url.clone();
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.sts.issuers = vec![IssuerConfig {
            issuer: ISSUER.to_owned(),
            jwks: JwksSource::Url(jwks),
        }];
        config.sts.min_session_seconds = 1;
    })
    .await;
    let root = server.root_client();
    for bucket in ["team-a", "other"] {
        root.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
    }
    create_role(
        &server,
        "app",
        &trust::service_account_trust(ISSUER, &[SUBJECT.to_owned()], AUDIENCE),
    )
    .await;
    (server, idp)
}

async fn create_role(server: &TestServer, name: &str, trust: &str) {
    server
        .server
        .meta()
        .put_role(
            &NewRole {
                name: name.to_owned(),
                policy: TEAM_A_POLICY.to_owned(),
                trust: trust.to_owned(),
                max_session_seconds: 3600,
                owner: "test".to_owned(),
            },
            false,
        )
        .await
        .expect("role");
}

/// Sends every request of a client to `endpoint`, whatever URL it chose: the
/// SDK's web-identity provider builds its STS client without an endpoint override.
#[derive(Debug)]
struct Redirect {
    inner: SharedHttpConnector,
    endpoint: String,
}

impl HttpConnector for Redirect {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        let path = request
            .uri()
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
            .unwrap_or_else(|| "/".to_owned());
        let _ = request.set_uri(format!("{}{path}", self.endpoint));
        self.inner.call(request)
    }
}

fn redirecting_client(endpoint: String) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    let base = aws_smithy_http_client::Builder::new().build_http();
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Redirect {
            inner: base.http_connector(settings, components),
            endpoint: endpoint.clone(),
        })
    })
}

fn sts_client(
    server: &TestServer,
    credentials: Option<aws_credential_types::Credentials>,
) -> aws_sdk_sts::Client {
    let mut config = aws_sdk_sts::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .http_client(aws_smithy_http_client::Builder::new().build_http());
    if let Some(credentials) = credentials {
        config = config.credentials_provider(credentials);
    }
    aws_sdk_sts::Client::from_conf(config.build())
}

fn s3_with(server: &TestServer, creds: &aws_credential_types::Credentials) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .credentials_provider(creds.clone())
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// AssumeRoleWithWebIdentity through the STS client: its error code, or the credentials.
async fn exchange(
    server: &TestServer,
    token: &str,
    duration: Option<i32>,
) -> Result<aws_credential_types::Credentials, String> {
    use aws_sdk_sts::error::ProvideErrorMetadata as _;
    let out = sts_client(server, None)
        .assume_role_with_web_identity()
        .role_arn(trust::role_arn("app"))
        .role_session_name("test-session")
        .web_identity_token(token)
        .set_duration_seconds(duration)
        .send()
        .await
        .map_err(|e| e.code().unwrap_or("no code").to_owned())?;
    let c = out.credentials.expect("credentials");
    Ok(aws_credential_types::Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        None,
        "sts-test",
    ))
}

#[tokio::test]
async fn sdk_web_identity_provider_reads_and_writes_within_the_role_grants() {
    use aws_config::provider_config::ProviderConfig;
    use aws_config::web_identity_token::{
        StaticConfiguration, WebIdentityTokenCredentialsProvider,
    };
    let (server, idp) = setup().await;
    let token_file = server.data_dir.join("sa-token");
    std::fs::write(&token_file, idp.token()).expect("token file");
    let provider_config = ProviderConfig::without_region()
        .with_region(Some(aws_sdk_s3::config::Region::new("us-east-1")))
        .with_http_client(redirecting_client(server.endpoint()));
    let provider = WebIdentityTokenCredentialsProvider::builder()
        .static_configuration(StaticConfiguration {
            web_identity_token_file: token_file,
            role_arn: trust::role_arn("app"),
            session_name: "app-pod".to_owned(),
        })
        .configure(&provider_config)
        .build();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .credentials_provider(provider)
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(config);
    s3.put_object()
        .bucket("team-a")
        .key("hello.txt")
        .body(ByteStream::from_static(b"from a pod"))
        .send()
        .await
        .expect("write within the grant");
    let got = s3
        .get_object()
        .bucket("team-a")
        .key("hello.txt")
        .send()
        .await
        .expect("read within the grant");
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(&body[..], b"from a pod");
    let refused = s3
        .put_object()
        .bucket("other")
        .key("x")
        .body(ByteStream::from_static(b"no"))
        .send()
        .await;
    assert_eq!(common::code(refused), "AccessDenied");
    let refused = s3.list_objects_v2().bucket("other").send().await;
    assert_eq!(common::code(refused), "AccessDenied");
    server.stop().await;
}

#[tokio::test]
async fn tokens_outside_the_trust_or_the_issuer_keys_are_refused() {
    let (server, idp) = setup().await;
    let future = now() + 600;
    let wrong_aud = idp
        .rsa1
        .sign("rsa-1", &claims(SUBJECT, "someone-else", future));
    assert_eq!(
        exchange(&server, &wrong_aud, None).await.err().as_deref(),
        Some("AccessDenied")
    );
    let wrong_sub = idp.rsa1.sign(
        "rsa-1",
        &claims("system:serviceaccount:team-a:other", AUDIENCE, future),
    );
    assert_eq!(
        exchange(&server, &wrong_sub, None).await.err().as_deref(),
        Some("AccessDenied")
    );
    let expired = idp
        .rsa1
        .sign("rsa-1", &claims(SUBJECT, AUDIENCE, now() - 3600));
    assert_eq!(
        exchange(&server, &expired, None).await.err().as_deref(),
        Some("ExpiredTokenException")
    );
    // The payload changed after signing: the signature no longer covers it.
    let good = idp.token();
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD
        .encode(claims("system:serviceaccount:team-a:admin", AUDIENCE, future).to_string());
    parts[1] = &forged;
    let tampered = parts.join(".");
    assert_eq!(
        exchange(&server, &tampered, None).await.err().as_deref(),
        Some("InvalidIdentityToken")
    );
    // Signed by a key the issuer never published.
    let stranger = idp
        .rsa2
        .sign("rsa-unknown", &claims(SUBJECT, AUDIENCE, future));
    assert_eq!(
        exchange(&server, &stranger, None).await.err().as_deref(),
        Some("InvalidIdentityToken")
    );
    let mut other_issuer = claims(SUBJECT, AUDIENCE, future);
    other_issuer["iss"] = json!("https://evil.example");
    let other_issuer = idp.rsa1.sign("rsa-1", &other_issuer);
    assert_eq!(
        exchange(&server, &other_issuer, None)
            .await
            .err()
            .as_deref(),
        Some("InvalidIdentityToken")
    );
    // ES256 tokens verify too, and the right RS256 token does after all that.
    let ec = idp.ec.sign("ec-1", &claims(SUBJECT, AUDIENCE, future));
    exchange(&server, &ec, None).await.expect("ES256 token");
    exchange(&server, &idp.token(), None)
        .await
        .expect("RS256 token");
    server.stop().await;
}

#[tokio::test]
async fn a_rotated_jwks_key_is_picked_up_and_the_retired_one_refused() {
    let (server, idp) = setup().await;
    exchange(&server, &idp.token(), None)
        .await
        .expect("first key");
    idp.publish(vec![idp.rsa2.jwk("rsa-2")]);
    // Unknown kids refresh the keys at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = idp
        .rsa2
        .sign("rsa-2", &claims(SUBJECT, AUDIENCE, now() + 600));
    exchange(&server, &rotated, None)
        .await
        .expect("rotated key");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        exchange(&server, &idp.token(), None).await.err().as_deref(),
        Some("InvalidIdentityToken")
    );
    server.stop().await;
}

#[tokio::test]
async fn temporary_credentials_expire_and_get_caller_identity_names_the_subject() {
    use aws_sdk_sts::error::ProvideErrorMetadata as _;
    let (server, idp) = setup().await;
    let creds = exchange(&server, &idp.token(), Some(2))
        .await
        .expect("creds");
    let who = sts_client(&server, Some(creds.clone()))
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert!(who.user_id().unwrap_or("").contains(SUBJECT), "{who:?}");
    assert!(
        who.arn().unwrap_or("").contains(":assumed-role/app/"),
        "{who:?}"
    );
    let s3 = s3_with(&server, &creds);
    s3.list_objects_v2()
        .bucket("team-a")
        .send()
        .await
        .expect("fresh");
    // Out of range for the role: more than its maximum.
    let too_long = exchange(&server, &idp.token(), Some(7200)).await;
    assert_eq!(too_long.err().as_deref(), Some("ValidationError"));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        common::code(s3.list_objects_v2().bucket("team-a").send().await),
        "ExpiredToken"
    );
    let expired = sts_client(&server, Some(creds))
        .get_caller_identity()
        .send()
        .await;
    assert_eq!(
        expired
            .err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("ExpiredToken")
    );
    server.stop().await;
}

#[tokio::test]
async fn an_access_key_assumes_a_role_it_is_allowed_to_and_a_session_policy_narrows_it() {
    use aws_sdk_sts::error::ProvideErrorMetadata as _;
    let (server, _idp) = setup().await;
    let allowed = server
        .key_with_policy(
            "deployer",
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::coffer:role/ops"}]}"#),
        )
        .await;
    let not_allowed = server.key_with_policy("bystander", None).await;
    let trust_doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::coffer:root"}, "Action": "sts:AssumeRole"}]});
    create_role(&server, "ops", &trust_doc.to_string()).await;
    let key_creds = |k: &coffer_server::meta::AccessKey| {
        aws_credential_types::Credentials::new(&k.id, &k.secret, None, None, "key")
    };
    let out = sts_client(&server, Some(key_creds(&allowed)))
        .assume_role()
        .role_arn(trust::role_arn("ops"))
        .role_session_name("deploy")
        .policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#)
        .send()
        .await
        .expect("AssumeRole");
    let c = out.credentials.expect("credentials");
    let creds = aws_credential_types::Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        None,
        "assumed",
    );
    let s3 = s3_with(&server, &creds);
    server
        .root_client()
        .put_object()
        .bucket("team-a")
        .key("doc")
        .body(ByteStream::from_static(b"doc"))
        .send()
        .await
        .expect("seed");
    s3.get_object()
        .bucket("team-a")
        .key("doc")
        .send()
        .await
        .expect("role ∩ session allows GetObject");
    let put = s3
        .put_object()
        .bucket("team-a")
        .key("new")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(
        common::code(put),
        "AccessDenied",
        "the session policy allows reads only"
    );
    let refused = sts_client(&server, Some(key_creds(&not_allowed)))
        .assume_role()
        .role_arn(trust::role_arn("ops"))
        .role_session_name("deploy")
        .send()
        .await;
    assert_eq!(
        refused
            .err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("AccessDenied")
    );
    let malformed = sts_client(&server, Some(key_creds(&allowed)))
        .assume_role()
        .role_arn(trust::role_arn("ops"))
        .role_session_name("deploy")
        .policy("{not json")
        .send()
        .await;
    assert_eq!(
        malformed
            .err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("MalformedPolicyDocument")
    );
    server.stop().await;
}

#[tokio::test]
async fn presigned_urls_carry_the_session_token() {
    let (server, idp) = setup().await;
    let creds = exchange(&server, &idp.token(), None).await.expect("creds");
    let s3 = s3_with(&server, &creds);
    s3.put_object()
        .bucket("team-a")
        .key("shared")
        .body(ByteStream::from_static(b"presigned"))
        .send()
        .await
        .expect("put");
    let presigned = s3
        .get_object()
        .bucket("team-a")
        .key("shared")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300))
                .expect("config"),
        )
        .await
        .expect("presign");
    let url = presigned.uri().to_owned();
    assert!(url.contains("X-Amz-Security-Token="), "{url}");
    let http = reqwest::Client::new();
    let ok = http.get(&url).send().await.expect("GET");
    assert_eq!(ok.status(), 200);
    assert_eq!(&ok.bytes().await.expect("body")[..], b"presigned");
    // Another session's token with these keys is refused.
    let other = exchange(&server, &idp.token(), None)
        .await
        .expect("other creds");
    let swapped = url.replace(
        &urlencoding::encode(creds.session_token().unwrap_or("")).into_owned(),
        &urlencoding::encode(other.session_token().unwrap_or("")).into_owned(),
    );
    assert_ne!(swapped, url);
    let refused = http.get(&swapped).send().await.expect("GET");
    assert!(refused.status().is_client_error(), "{}", refused.status());
    server.stop().await;
}

#[tokio::test]
async fn deleting_the_role_revokes_its_sessions_within_seconds() {
    let (server, idp) = setup().await;
    let creds = exchange(&server, &idp.token(), None).await.expect("creds");
    let s3 = s3_with(&server, &creds);
    s3.list_objects_v2()
        .bucket("team-a")
        .send()
        .await
        .expect("before");
    server
        .server
        .meta()
        .delete_role("app")
        .await
        .expect("delete role");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = common::code(s3.list_objects_v2().bucket("team-a").send().await);
    assert_eq!(after, "InvalidAccessKeyId");
    assert_eq!(
        exchange(&server, &idp.token(), None).await.err().as_deref(),
        Some("AccessDenied")
    );
    server.stop().await;
}
