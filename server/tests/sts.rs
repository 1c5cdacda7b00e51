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
        self.sign_with_header(&json!({"alg": alg, "kid": kid, "typ": "JWT"}), claims)
    }

    /// Signs with this key whatever the header says (to lie about `alg`/`kid`).
    fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
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

/// Every log line the servers of this test binary write (all levels of
/// `coffer_server` and `s3s`, through the server's own filter), to check
/// that no secret is in one.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            // The server's own filter, asked for everything it logs.
            .with_env_filter(coffer_server::logging::filter(Some(
                "coffer_server=trace,s3s=trace",
            )))
            .with_ansi(false)
            .with_writer(|| LogSink)
            .try_init();
    });
}

fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().expect("logs")).into_owned()
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
    setup_on(Backend::Sqlite).await
}

/// A server trusting the test IdP's JWKS at `jwks`, on `database_url` (or
/// the backend's default).
async fn server_trusting(
    backend: Backend,
    jwks: String,
    database_url: Option<String>,
    master_key: Option<coffer_server::crypto::Key>,
) -> TestServer {
    capture_logs();
    TestServer::start_with(backend, |config| {
        config.sts.issuers = vec![IssuerConfig {
            issuer: ISSUER.to_owned(),
            jwks: JwksSource::Url(jwks),
        }];
        config.sts.min_session_seconds = 1;
        if database_url.is_some() {
            config.database_url = database_url;
        }
        if let Some(key) = master_key {
            // Nodes of one cluster: one master key and cluster secret, each
            // its own node id.
            config.master_key = Some(key);
            config.cluster.node_id = format!("node-{:08x}", rand::random::<u32>());
            config.cluster.secret = Some("sts-test-cluster-secret".to_owned());
        }
    })
    .await
}

async fn setup_on(backend: Backend) -> (TestServer, Idp) {
    let idp = Idp::start().await;
    let server = server_trusting(backend, idp.url.clone(), None, None).await;
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
    sdk_web_identity_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn sdk_web_identity_provider_reads_and_writes_within_the_role_grants_on_postgres() {
    sdk_web_identity_flow(Backend::Postgres).await;
}

async fn sdk_web_identity_flow(backend: Backend) {
    use aws_config::provider_config::ProviderConfig;
    use aws_config::web_identity_token::{
        StaticConfiguration, WebIdentityTokenCredentialsProvider,
    };
    let (server, idp) = setup_on(backend).await;
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
    // A URL presigned for longer than the session lives dies with it.
    s3.put_object()
        .bucket("team-a")
        .key("early")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("put");
    let presigned = s3
        .get_object()
        .bucket("team-a")
        .key("early")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(600))
                .expect("config"),
        )
        .await
        .expect("presign")
        .uri()
        .to_owned();
    // Out of range for the role: more than its maximum.
    let too_long = exchange(&server, &idp.token(), Some(7200)).await;
    assert_eq!(too_long.err().as_deref(), Some("ValidationError"));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        common::code(s3.list_objects_v2().bucket("team-a").send().await),
        "ExpiredToken"
    );
    let late = reqwest::get(&presigned).await.expect("GET");
    assert_eq!(late.status(), 400);
    assert_eq!(
        common::xml_code(&late.text().await.expect("body")),
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
    // A session policy wider than the role grants nothing beyond the role.
    let wide = sts_client(&server, Some(key_creds(&allowed)))
        .assume_role()
        .role_arn(trust::role_arn("ops"))
        .role_session_name("wide")
        .policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
        .send()
        .await
        .expect("AssumeRole with a wide session policy");
    let c = wide.credentials.expect("credentials");
    let wide = s3_with(
        &server,
        &aws_credential_types::Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            None,
            "wide",
        ),
    );
    wide.put_object()
        .bucket("team-a")
        .key("wide")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("role ∩ session allows writes to team-a");
    assert_eq!(
        common::code(wide.list_objects_v2().bucket("other").send().await),
        "AccessDenied",
        "the session policy cannot widen the role"
    );
    assert_eq!(
        common::code(wide.create_bucket().bucket("new-bucket").send().await),
        "AccessDenied"
    );
    // A session policy that denies wins over the role's allow.
    let deny = sts_client(&server, Some(key_creds(&allowed)))
        .assume_role()
        .role_arn(trust::role_arn("ops"))
        .role_session_name("deny")
        .policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Effect":"Deny","Action":"s3:GetObject","Resource":"*"}]}"#)
        .send()
        .await
        .expect("AssumeRole with a denying session policy");
    let c = deny.credentials.expect("credentials");
    let deny = s3_with(
        &server,
        &aws_credential_types::Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            None,
            "deny",
        ),
    );
    assert_eq!(
        common::code(deny.get_object().bucket("team-a").key("doc").send().await),
        "AccessDenied"
    );
    deny.list_objects_v2()
        .bucket("team-a")
        .send()
        .await
        .expect("what the session policy does not deny");
    // Temporary credentials cannot assume a role in turn.
    let chained = sts_client(
        &server,
        Some(aws_credential_types::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            creds.session_token().map(str::to_owned),
            None,
            "chain",
        )),
    )
    .assume_role()
    .role_arn(trust::role_arn("ops"))
    .role_session_name("chain")
    .send()
    .await;
    assert_eq!(
        chained
            .err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("AccessDenied")
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
        &urlencoding::encode(other.session_token().unwrap_or("")),
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

/// A JWT with any header and signature bytes (for tokens no honest IdP makes).
fn forge(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[tokio::test]
async fn jwt_time_claims_algorithms_and_key_ids_are_checked() {
    let (server, idp) = setup().await;
    let future = now() + 600;
    let refused = |token: String| {
        let server = &server;
        async move { exchange(server, &token, None).await.err() }
    };
    // Time claims, with a minute of tolerated skew.
    let mut not_yet = claims(SUBJECT, AUDIENCE, future);
    not_yet["nbf"] = json!(now() + 300);
    assert_eq!(
        refused(idp.rsa1.sign("rsa-1", &not_yet)).await.as_deref(),
        Some("InvalidIdentityToken"),
        "nbf in the future"
    );
    let mut issued_later = claims(SUBJECT, AUDIENCE, future);
    issued_later["iat"] = json!(now() + 300);
    assert_eq!(
        refused(idp.rsa1.sign("rsa-1", &issued_later))
            .await
            .as_deref(),
        Some("InvalidIdentityToken"),
        "iat in the future"
    );
    let mut slightly_fast = claims(SUBJECT, AUDIENCE, future);
    slightly_fast["iat"] = json!(now() + 20);
    slightly_fast["nbf"] = json!(now() + 20);
    assert_eq!(
        refused(idp.rsa1.sign("rsa-1", &slightly_fast)).await,
        None,
        "an IdP clock 20 s ahead is tolerated"
    );
    assert_eq!(
        refused(
            idp.rsa1
                .sign("rsa-1", &claims(SUBJECT, AUDIENCE, now() - 120))
        )
        .await
        .as_deref(),
        Some("ExpiredTokenException"),
        "expired beyond the skew"
    );
    let mut no_exp = claims(SUBJECT, AUDIENCE, future);
    no_exp.as_object_mut().expect("claims").remove("exp");
    assert_eq!(
        refused(idp.rsa1.sign("rsa-1", &no_exp)).await.as_deref(),
        Some("IDPRejectedClaim")
    );
    let mut no_aud = claims(SUBJECT, AUDIENCE, future);
    no_aud.as_object_mut().expect("claims").remove("aud");
    assert_eq!(
        refused(idp.rsa1.sign("rsa-1", &no_aud)).await.as_deref(),
        Some("IDPRejectedClaim")
    );
    let mut no_sub = claims(SUBJECT, AUDIENCE, future);
    no_sub.as_object_mut().expect("claims").remove("sub");
    assert_eq!(
        refused(idp.rsa1.sign("rsa-1", &no_sub)).await.as_deref(),
        Some("IDPRejectedClaim")
    );
    // A string `aud` is one audience; the role's is not among others.
    let mut aud_string = claims(SUBJECT, AUDIENCE, future);
    aud_string["aud"] = json!(AUDIENCE);
    assert_eq!(refused(idp.rsa1.sign("rsa-1", &aud_string)).await, None);
    let mut aud_others = claims(SUBJECT, AUDIENCE, future);
    aud_others["aud"] = json!(["https://kubernetes.default.svc", "vault"]);
    assert_eq!(
        refused(idp.rsa1.sign("rsa-1", &aud_others))
            .await
            .as_deref(),
        Some("AccessDenied")
    );
    // Algorithm confusion: unsigned, HMAC keyed with the public RSA key, an
    // RSA signature presented as the EC key's, an RS384 label.
    let good = claims(SUBJECT, AUDIENCE, future);
    let unsigned = forge(&json!({"alg": "none", "kid": "rsa-1"}), &good, |_| {
        Vec::new()
    });
    assert_eq!(
        refused(unsigned).await.as_deref(),
        Some("InvalidIdentityToken"),
        "alg none"
    );
    let unsigned = forge(&json!({"alg": "none"}), &good, |_| Vec::new());
    assert_eq!(
        refused(unsigned).await.as_deref(),
        Some("InvalidIdentityToken")
    );
    let TestKey::Rsa(rsa1) = &idp.rsa1 else {
        unreachable!("rsa1 is an RSA key")
    };
    let public_der = rsa1.public().as_ref().to_vec();
    let jwk_text = idp.rsa1.jwk("rsa-1").to_string();
    for secret in [public_der, jwk_text.into_bytes()] {
        let hs = forge(&json!({"alg": "HS256", "kid": "rsa-1"}), &good, |input| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
            ring::hmac::sign(&key, input).as_ref().to_vec()
        });
        assert_eq!(
            refused(hs).await.as_deref(),
            Some("InvalidIdentityToken"),
            "HS256 keyed with the RSA public key"
        );
    }
    let rsa_as_ec = idp
        .rsa1
        .sign_with_header(&json!({"alg": "ES256", "kid": "rsa-1"}), &good);
    assert_eq!(
        refused(rsa_as_ec).await.as_deref(),
        Some("InvalidIdentityToken")
    );
    let rsa_under_ec_kid = idp
        .rsa1
        .sign_with_header(&json!({"alg": "RS256", "kid": "ec-1"}), &good);
    assert_eq!(
        refused(rsa_under_ec_kid).await.as_deref(),
        Some("InvalidIdentityToken")
    );
    let rs384 = idp
        .rsa1
        .sign_with_header(&json!({"alg": "RS384", "kid": "rsa-1"}), &good);
    assert_eq!(
        refused(rs384).await.as_deref(),
        Some("InvalidIdentityToken")
    );
    // Key ids: a published key under an unknown kid, and garbage.
    let wrong_kid = idp.rsa1.sign("no-such-kid", &good);
    assert_eq!(
        refused(wrong_kid).await.as_deref(),
        Some("InvalidIdentityToken")
    );
    for garbage in ["x", "a.b.c", "a.b.c.d", "..."] {
        assert_eq!(
            refused(garbage.to_owned()).await.as_deref(),
            Some("InvalidIdentityToken"),
            "{garbage}"
        );
    }
    // Without a kid every published key is tried: the honest token passes.
    let no_kid = idp
        .rsa1
        .sign_with_header(&json!({"alg": "RS256", "typ": "JWT"}), &good);
    assert_eq!(refused(no_kid).await, None);
    server.stop().await;
}

#[tokio::test]
async fn a_trust_policy_that_does_not_pin_the_audience_is_refused() {
    let (server, idp) = setup().await;
    let loose = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": ISSUER}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"oidc.test.coffer:sub": SUBJECT}}}]});
    assert!(trust::parse(&loose.to_string()).is_err());
    // Even stored directly (not through `role create`), it admits nobody.
    create_role(&server, "loose", &loose.to_string()).await;
    use aws_sdk_sts::error::ProvideErrorMetadata as _;
    let out = sts_client(&server, None)
        .assume_role_with_web_identity()
        .role_arn(trust::role_arn("loose"))
        .role_session_name("loose-session")
        .web_identity_token(idp.token())
        .send()
        .await;
    assert_eq!(
        out.err()
            .and_then(|e| e.code().map(str::to_owned))
            .as_deref(),
        Some("AccessDenied")
    );
    server.stop().await;
}

#[tokio::test]
async fn credentials_issued_by_one_server_work_on_another_and_outlive_it() {
    // Three nodes of one cluster on one metadata store: sessions are rows
    // there, so every node (or the issuer after a restart) accepts them, and
    // they outlive the node that issued them.
    let idp = Idp::start().await;
    let url = coffer_testkit::postgres_url().await;
    let master = coffer_server::crypto::Key::from_bytes(&[7; 32]).expect("key");
    let first = server_trusting(
        Backend::Postgres,
        idp.url.clone(),
        Some(url.clone()),
        Some(master.clone()),
    )
    .await;
    first
        .root_client()
        .create_bucket()
        .bucket("team-a")
        .send()
        .await
        .expect("bucket");
    create_role(
        &first,
        "app",
        &trust::service_account_trust(ISSUER, &[SUBJECT.to_owned()], AUDIENCE),
    )
    .await;
    let creds = exchange(&first, &idp.token(), None).await.expect("creds");
    let second = server_trusting(
        Backend::Postgres,
        idp.url.clone(),
        Some(url.clone()),
        Some(master.clone()),
    )
    .await;
    let third = server_trusting(Backend::Postgres, idp.url.clone(), Some(url), Some(master)).await;
    // A session issued by the third node works on the first: any node issues,
    // every node accepts.
    let from_third = exchange(&third, &idp.token(), None).await.expect("creds");
    s3_with(&first, &from_third)
        .list_objects_v2()
        .bucket("team-a")
        .send()
        .await
        .expect("a session from the third node on the first");
    first.stop().await;
    for node in [&second, &third] {
        let who = sts_client(node, Some(creds.clone()))
            .get_caller_identity()
            .send()
            .await
            .expect("GetCallerIdentity on another node");
        assert!(who.user_id().unwrap_or("").contains(SUBJECT), "{who:?}");
        s3_with(node, &creds)
            .list_objects_v2()
            .bucket("team-a")
            .send()
            .await
            .expect("S3 on another node");
    }
    second.stop().await;
    third.stop().await;
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_and_the_subject_does() {
    let (server, idp) = setup().await;
    let token = idp.token();
    let creds = exchange(&server, &token, None).await.expect("creds");
    let s3 = s3_with(&server, &creds);
    s3.put_object()
        .bucket("team-a")
        .key("audited")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("put");
    let _ = s3.list_objects_v2().bucket("other").send().await;
    let presigned = s3
        .get_object()
        .bucket("team-a")
        .key("audited")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60))
                .expect("config"),
        )
        .await
        .expect("presign");
    let _ = reqwest::get(presigned.uri()).await.expect("GET");
    let _ = sts_client(&server, Some(creds.clone()))
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    // Refused attempts log too; their tokens must not appear either.
    let mut wrong_sub = claims(
        "system:serviceaccount:team-b:intruder",
        AUDIENCE,
        now() + 600,
    );
    wrong_sub["jti"] = json!("refused-token");
    let refused_token = idp.rsa1.sign("rsa-1", &wrong_sub);
    assert!(exchange(&server, &refused_token, None).await.is_err());
    let bad_token = aws_credential_types::Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some("CFSTnot-the-token".to_owned()),
        None,
        "bad",
    );
    let _ = s3_with(&server, &bad_token)
        .list_objects_v2()
        .bucket("team-a")
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = captured_logs();
    let secrets = [
        ("web identity token", token.as_str()),
        ("its signature", token.rsplit('.').next().unwrap_or("")),
        ("refused token", refused_token.as_str()),
        ("session secret", creds.secret_access_key()),
        ("session token", creds.session_token().unwrap_or("")),
    ];
    for (what, secret) in secrets {
        assert!(secret.len() > 10, "{what} is empty");
        let leak = logs
            .lines()
            .find(|l| l.contains(secret))
            .map(|l| l.replace(secret, "<SECRET>"));
        assert_eq!(leak, None, "the {what} is in a log line");
    }
    // The audit trail: the subject with the session's key id on a request line.
    let audited = logs.lines().any(|line| {
        line.contains("request with temporary credentials")
            && line.contains(SUBJECT)
            && line.contains(creds.access_key_id())
    });
    assert!(audited, "no log line names the session's subject");
    server.stop().await;
}

/// `coffer-server role ...` against the data directory of a running server.
fn role_cli(server: &TestServer, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_coffer-server"))
        .arg("role")
        .args(args)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .env_remove("COFFER_DATABASE_URL")
        .env_remove("COFFER_MASTER_KEY")
        .env_remove("COFFER_MASTER_KEY_FILE")
        .output()
        .expect("run coffer-server role");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_cli_creates_lists_and_deletes_roles_and_refuses_loose_trust() {
    let (server, idp) = setup().await;
    let dir = coffer_testkit::temp_dir("role-cli");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, TEAM_A_POLICY).expect("policy");
    let trust_file = dir.join("trust.json");
    std::fs::write(
        &trust_file,
        trust::service_account_trust(ISSUER, &[SUBJECT.to_owned()], AUDIENCE),
    )
    .expect("trust");
    let loose_file = dir.join("loose.json");
    std::fs::write(
        &loose_file,
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": ISSUER}, "Action": "sts:AssumeRoleWithWebIdentity"}]})
        .to_string(),
    )
    .expect("loose trust");
    let path = |p: &std::path::Path| p.display().to_string();

    let (ok, out) = role_cli(
        &server,
        &[
            "create",
            "ci-role",
            "--policy",
            &path(&policy),
            "--trust",
            &path(&trust_file),
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "arn:aws:iam::coffer:role/ci-role");
    let (ok, out) = role_cli(
        &server,
        &[
            "create",
            "loose",
            "--policy",
            &path(&policy),
            "--trust",
            &path(&loose_file),
        ],
    );
    assert!(!ok && out.contains("audience"), "{out}");
    let (ok, out) = role_cli(
        &server,
        &[
            "create",
            "ci-role",
            "--policy",
            &path(&policy),
            "--trust",
            &path(&trust_file),
        ],
    );
    assert!(!ok, "a second role of that name: {out}");
    let (ok, out) = role_cli(&server, &["list"]);
    assert!(
        ok && out.contains("ci-role") && !out.contains("loose"),
        "{out}"
    );

    // The running server sees the role the CLI made.
    let out = sts_client(&server, None)
        .assume_role_with_web_identity()
        .role_arn("arn:aws:iam::coffer:role/ci-role")
        .role_session_name("cli-made")
        .web_identity_token(idp.token())
        .send()
        .await
        .expect("AssumeRoleWithWebIdentity on a CLI-made role");
    assert!(out.credentials.is_some());

    let (ok, out) = role_cli(&server, &["delete", "ci-role"]);
    assert!(ok, "{out}");
    let (ok, out) = role_cli(&server, &["list"]);
    assert!(ok && !out.contains("ci-role"), "{out}");
    let (ok, _) = role_cli(&server, &["delete", "ci-role"]);
    assert!(!ok, "deleting a missing role fails");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
