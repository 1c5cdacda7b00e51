//! Test harness: a real Coffer server in-process on 127.0.0.1:0 over SQLite or a
//! throwaway Postgres, and real clients for it (aws-sdk-s3, and raw HTTP signed
//! with aws-sigv4 for requests the SDK refuses to send).
#![allow(dead_code)]

use std::time::SystemTime;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use coffer_server::meta::{AccessKey, NewAccessKey};
use coffer_server::serve::{RunningServer, ServeConfig, start};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub server: RunningServer,
    pub data_dir: std::path::PathBuf,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        let data_dir = coffer_testkit::temp_dir("server");
        let mut config = ServeConfig::new(&data_dir);
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(coffer_testkit::postgres_url().await),
        };
        config.root_credentials = Some((
            "ROOTKEYFORTESTS".to_owned(),
            "root-secret-for-tests".to_owned(),
        ));
        tweak(&mut config);
        let server = start(config).await.expect("server starts");
        Self { server, data_dir }
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    pub fn root_client(&self) -> Client {
        let root = self.server.root_key();
        client(&self.endpoint(), &root.id, &root.secret)
    }

    pub fn client_for(&self, key: &AccessKey) -> Client {
        client(&self.endpoint(), &key.id, &key.secret)
    }

    /// A non-root key with an identity policy (or none).
    pub async fn key_with_policy(&self, name: &str, policy: Option<&str>) -> AccessKey {
        self.server
            .meta()
            .create_access_key(&NewAccessKey {
                name: name.to_owned(),
                owner: "test".to_owned(),
                policy: policy.map(str::to_owned),
                is_root: false,
                credentials: None,
            })
            .await
            .expect("create key")
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub fn client(endpoint: &str, id: &str, secret: &str) -> Client {
    let credentials = Credentials::new(id, secret, None, None, "coffer-tests");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

/// The S3 error code of a failed SDK call.
pub fn code<E, R>(
    result: Result<R, aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match result {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => e
            .as_service_error()
            .and_then(|s| s.code().map(str::to_owned))
            .or_else(|| {
                e.raw_response()
                    .map(|r| format!("HTTP {}", r.status().as_u16()))
            })
            .unwrap_or_else(|| format!("{e:?}")),
    }
}

/// Signs a raw request with SigV4 (aws-sigv4), payload hashed unless `unsigned`.
pub fn sign(request: &mut http::Request<Vec<u8>>, id: &str, secret: &str, unsigned: bool) {
    let payload = if unsigned {
        Payload::Unsigned
    } else {
        Payload::Hashed
    };
    sign_at(request, id, secret, payload, SystemTime::now());
}

pub enum Payload {
    Hashed,
    Unsigned,
    /// A precomputed `x-amz-content-sha256` value such as STREAMING-AWS4-HMAC-SHA256-PAYLOAD.
    Declared(&'static str),
}

/// Signs at a given time; returns the signature (the seed of chunk signatures).
pub fn sign_at(
    request: &mut http::Request<Vec<u8>>,
    id: &str,
    secret: &str,
    payload: Payload,
    time: SystemTime,
) -> String {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let identity = Credentials::new(id, secret, None, None, "raw").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let body = match payload {
        Payload::Unsigned => SignableBody::UnsignedPayload,
        Payload::Hashed => SignableBody::Bytes(request.body()),
        Payload::Declared(value) => SignableBody::Precomputed(value.to_owned()),
    };
    let uri = request.uri().to_string();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().expect("ascii header").to_owned(),
            )
        })
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body,
    )
    .expect("signable");
    let (instructions, signature) = sign(signable, &params).expect("sign").into_parts();
    instructions.apply_to_request_http1x(request);
    signature
}

/// Sends a raw request and returns (status, headers, body).
pub async fn send(request: http::Request<Vec<u8>>) -> (u16, http::HeaderMap, String) {
    let (parts, body) = request.into_parts();
    let client = reqwest::Client::new();
    let mut builder = client
        .request(parts.method, parts.uri.to_string())
        .body(body);
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    let response = builder.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    (status, headers, text)
}

/// Extracts `<Code>` from an S3 XML error body.
pub fn xml_code(body: &str) -> &str {
    body.split("<Code>")
        .nth(1)
        .and_then(|r| r.split("</Code>").next())
        .unwrap_or("")
}

/// Runs a test body against both metadata backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A presigned GET URL made with aws-sigv4 directly (the SDK refuses > 7 days).
pub fn presign_get(url: &str, id: &str, secret: &str, expires: std::time::Duration) -> String {
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    let identity = Credentials::new(id, secret, None, None, "raw").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        "GET",
        url,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let mut request = http::Request::get(url).body(()).expect("request");
    instructions.apply_to_request_http1x(&mut request);
    request.uri().to_string()
}

/// The signed fields of a POST policy: `policy`, `x-amz-*`. Conditions for the
/// `x-amz-*` fields are added here, as every signer must.
pub fn signed_policy(
    conditions: Vec<serde_json::Value>,
    expires_in: time::Duration,
    id: &str,
    secret: &str,
) -> Vec<(String, String)> {
    let now = time::OffsetDateTime::now_utc();
    let date = format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let amz_date = format!(
        "{date}T{:02}{:02}{:02}Z",
        now.hour(),
        now.minute(),
        now.second()
    );
    let credential = format!("{id}/{date}/us-east-1/s3/aws4_request");
    let expiration = (now + expires_in)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut conditions = conditions;
    conditions.push(serde_json::json!({"x-amz-algorithm": "AWS4-HMAC-SHA256"}));
    conditions.push(serde_json::json!({"x-amz-credential": credential}));
    conditions.push(serde_json::json!({"x-amz-date": amz_date}));
    let policy = serde_json::json!({"expiration": expiration, "conditions": conditions});
    let policy = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        policy.to_string(),
    );
    let mac = |key: &[u8], data: &str| {
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key).unwrap();
        hmac::Mac::update(&mut mac, data.as_bytes());
        hmac::Mac::finalize(mac).into_bytes().to_vec()
    };
    let key = mac(format!("AWS4{secret}").as_bytes(), &date);
    let key = mac(&key, "us-east-1");
    let key = mac(&key, "s3");
    let key = mac(&key, "aws4_request");
    let signature = hex::encode(mac(&key, &policy));
    vec![
        ("policy".into(), policy),
        ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
        ("x-amz-credential".into(), credential),
        ("x-amz-date".into(), amz_date),
        ("x-amz-signature".into(), signature),
    ]
}

/// A CompleteMultipartUpload body naming one part, number 1.
pub fn one_part(etag: &str) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
        .build()
}
