//! What the fuzz targets share: one in-process Coffer per fuzzing process
//! (SQLite and a blob store in a temp dir, the whole request path of a real
//! server), requests written as text so that seeds are real requests a person
//! can read, and SigV4 signing with the server's root key.
//!
//! A request is sent to the server's router as the accept loop would hand it
//! over: no socket, so thousands of inputs a second, but every layer a client
//! reaches after hyper (front door, s3s routing, SigV4/SigV2, aws-chunked,
//! XML bodies, Coffer's handlers, the metadata and blob stores).
//!
//! The oracle, beyond "no panic": no request may hang, and none may get a
//! 500 — bad input is the client's error and deserves a 4xx naming it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use coffer_server::serve::{RunningServer, ServeConfig, Transport, start};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub const ROOT_ID: &str = "FUZZROOTKEY";
pub const ROOT_SECRET: &str = "fuzz-root-secret-fuzz-root-secret";
/// The Host every request carries (and is signed for).
pub const HOST: &str = "127.0.0.1:9000";
/// Longer than any request to an in-process server can honestly take.
const HANG: Duration = Duration::from_secs(20);

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    _server: RunningServer,
    pub data_dir: PathBuf,
}

/// The process's server, started on first use with a bucket `fuzz` holding
/// an object `fuzz/object` (3000 bytes) for the seeds to read.
pub fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let data_dir = std::env::temp_dir().join(format!("coffer-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut config = ServeConfig::new(&data_dir);
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.root_credentials = Some((ROOT_ID.to_owned(), ROOT_SECRET.to_owned()));
        let server = runtime.block_on(start(config)).expect("server starts");
        let harness = Harness {
            app: server.app(),
            runtime,
            _server: server,
            data_dir,
        };
        for setup in [
            "PUT /fuzz\n\n".as_bytes().to_vec(),
            [b"PUT /fuzz/object\n\n".as_slice(), &[7u8; 3000]].concat(),
        ] {
            let text = TextRequest::parse(&setup).expect("setup request");
            let status = harness.send(text.signed(Payload::Hash).expect("signable"));
            assert!(status.is_success(), "setup failed: {status}");
        }
        harness
    })
}

impl Harness {
    /// Sends one request and reads its whole response; panics on a hang or a
    /// server error (a finding).
    pub fn send(&self, request: Request<Bytes>) -> StatusCode {
        let mut request = coffer_server::http::with_peer(
            request.map(axum::body::Body::from),
            SocketAddr::from(([127, 0, 0, 1], 40000)),
        );
        request.extensions_mut().insert(Transport { secure: false });
        let describe = format!("{} {}", request.method(), request.uri());
        let app = self.app.clone();
        self.runtime.block_on(async move {
            let exchange = async {
                let response = app.oneshot(request).await.expect("infallible");
                let status = response.status();
                // Errors mid-body are how a server ends a response it cannot
                // finish (a corrupt blob); only a hang or a panic is a finding.
                let _ = response.into_body().collect().await;
                status
            };
            let status = tokio::time::timeout(HANG, exchange)
                .await
                .unwrap_or_else(|_| panic!("{describe} hung for {HANG:?}"));
            assert!(
                !status.is_server_error()
                    || status == StatusCode::SERVICE_UNAVAILABLE
                    || status == StatusCode::NOT_IMPLEMENTED,
                "{describe} got {status}: a server error for client input"
            );
            status
        })
    }
}

/// A request written as text:
///
/// ```text
/// PUT /bucket/key?tagging
/// Content-Type: application/xml
///
/// <Tagging>...</Tagging>
/// ```
///
/// The first line is the method and the request target; header lines follow
/// (bytes, not necessarily UTF-8); an empty line ends them and the rest is the
/// body, byte for byte.
#[derive(Debug, Clone)]
pub struct TextRequest {
    pub method: Method,
    pub target: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// How a signed request declares its payload.
pub enum Payload {
    /// `x-amz-content-sha256` is the body's hash.
    Hash,
    /// The request's own `x-amz-content-sha256` (e.g. a STREAMING-... value),
    /// or UNSIGNED-PAYLOAD when it has none.
    AsDeclared,
}

impl TextRequest {
    /// `None` when the text is not a request (no request line, a method or
    /// target `http` cannot hold): nothing a server would ever see.
    pub fn parse(data: &[u8]) -> Option<TextRequest> {
        let (head, body) = split_head(data);
        let mut lines = head.split(|b| *b == b'\n').map(trim_cr);
        let request_line = lines.next()?;
        let mut words = request_line.split(|b| *b == b' ').filter(|w| !w.is_empty());
        let method = Method::from_bytes(words.next()?).ok()?;
        let target = Uri::try_from(words.next()?).ok()?;
        target.path_and_query()?;
        if target.scheme().is_some() {
            return None;
        }
        let mut headers = Vec::new();
        for line in lines {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let name = HeaderName::from_bytes(&line[..colon]);
            let value = HeaderValue::from_bytes(trim_start(&line[colon + 1..]));
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.push((name, value));
            }
        }
        Some(TextRequest {
            method,
            target,
            headers,
            body: Bytes::copy_from_slice(body),
        })
    }

    /// The request as the client wrote it (Host added when missing).
    pub fn unsigned(&self) -> Request<Bytes> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(self.target.clone());
        if !self.has_header(&http::header::HOST) {
            request = request.header(http::header::HOST, HOST);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request.body(self.body.clone()).expect("parts already valid")
    }

    /// The request signed with SigV4 by the root key, now: what the client
    /// wrote reaches the parsers behind authentication. `None` when the
    /// signer itself refuses it (a header value that is not text).
    pub fn signed(&self, payload: Payload) -> Option<Request<Bytes>> {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
        };
        use aws_sigv4::sign::v4;
        let mut request = self.unsigned();
        let headers = request.headers_mut();
        headers.remove(http::header::AUTHORIZATION);
        headers.remove("x-amz-date");
        let declared = headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        headers.remove("x-amz-content-sha256");
        let body = match (payload, declared) {
            (Payload::Hash, _) => SignableBody::Bytes(request.body()),
            (Payload::AsDeclared, Some(value)) => SignableBody::Precomputed(value),
            (Payload::AsDeclared, None) => SignableBody::UnsignedPayload,
        };
        let identity =
            aws_credential_types::Credentials::new(ROOT_ID, ROOT_SECRET, None, None, "fuzz").into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .ok()?
            .into();
        let uri = format!("http://{HOST}{}", request.uri());
        let mut pairs = Vec::new();
        for (name, value) in request.headers() {
            pairs.push((name.as_str(), value.to_str().ok()?));
        }
        let signable = SignableRequest::new(
            request.method().as_str(),
            &uri,
            pairs.into_iter(),
            body,
        )
        .ok()?;
        let (instructions, _) = sign(signable, &params).ok()?.into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Some(request)
    }

    fn has_header(&self, name: &HeaderName) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }
}

fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    for (i, window) in data.windows(2).enumerate() {
        if window == b"\n\n" {
            return (&data[..i], &data[i + 2..]);
        }
        if window == b"\r\n" && data[i + 2..].starts_with(b"\r\n") {
            return (&data[..i], &data[i + 4..]);
        }
    }
    (data, &[])
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_start(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(value.len());
    &value[start..]
}
