//! Where a request enters: an axum router serving health and metrics, with the
//! s3s service (SigV4 → IAM → S3 handlers) mounted as the fallback. A front-door
//! layer gives every response an `x-amz-request-id`, sheds load with 503 SlowDown,
//! refuses oversized header sections, and completes S3 error bodies with
//! `Resource` and `RequestId`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::meta::MetaStore;
use crate::metrics::Metrics;

/// Total size of request header names and values we accept (AWS allows 8 KB of
/// PUT headers; SigV4 and SDK headers need some room beyond that).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct FrontDoor {
    pub meta: MetaStore,
    pub plane: crate::cluster::DataPlane,
    pub metrics: Arc<Metrics>,
    pub in_flight: Arc<Semaphore>,
    /// `--domain`: how s3s reads the bucket from a virtual-hosted `Host`; CORS
    /// reads it the same way.
    pub host: Option<Arc<s3s::host::SingleDomain>>,
    /// Set when the server is shutting down: readiness turns false first, so a
    /// load balancer stops sending requests before the listener closes.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// Builds the router: health, metrics, and S3 for everything else. Node-to-node
/// requests (`peers`) are diverted before the front door: they are not client
/// traffic and must not be shed by it.
pub fn router(front: FrontDoor, s3: s3s::service::S3Service, peers: Router) -> Router {
    let s3 = HandleError::new(s3, |err: s3s::HttpError| async move {
        tracing::error!(?err, "s3 service failed");
        s3_error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    });
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback_service(s3)
        .layer(axum::middleware::from_fn(sigv2_time_first))
        .layer(axum::middleware::from_fn(browser_form))
        .layer(axum::middleware::from_fn_with_state(front.clone(), cors))
        .layer(axum::middleware::from_fn_with_state(
            front.clone(),
            front_door,
        ))
        .layer(axum::middleware::from_fn_with_state(peers, divert_peers))
        .with_state(front)
}

async fn divert_peers(State(peers): State<Router>, request: Request, next: Next) -> Response {
    if crate::cluster::is_peer_request(&request) {
        match peers.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    } else {
        next.run(request).await
    }
}

async fn ready(State(front): State<FrontDoor>) -> Response {
    if front.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    match front.meta.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("metadata store unavailable: {e}"),
        )
            .into_response(),
    }
}

async fn metrics(State(front): State<FrontDoor>) -> Response {
    front.plane.export_metrics(&front.metrics);
    if let Some(cache) = front.meta.object_cache() {
        front.metrics.set_object_cache(&cache.stats());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        front.metrics.render(),
    )
        .into_response()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn s3_error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{}</Message></Error>",
        xml_escape(message)
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

fn new_request_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}

/// Errors from the S3 layer are small XML documents; add what clients log.
async fn complete_error_body(response: Response, resource: &str, request_id: &str) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let text = String::from_utf8_lossy(&bytes);
    let completed = if text.contains("</Error>") && !text.contains("<RequestId>") {
        // Errors raised inside s3s may lack a Message; clients print "Unknown" then.
        let message = if text.contains("<Message>") {
            String::new()
        } else {
            let code = text
                .split("<Code>")
                .nth(1)
                .and_then(|r| r.split("</Code>").next())
                .unwrap_or("Error");
            format!(
                "<Message>The request failed with {}.</Message>",
                xml_escape(code)
            )
        };
        text.replace(
            "</Error>",
            &format!(
                "{message}<Resource>{}</Resource><RequestId>{request_id}</RequestId></Error>",
                xml_escape(resource)
            ),
        )
    } else {
        text.into_owned()
    };
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(completed))
}

async fn front_door(State(front): State<FrontDoor>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = new_request_id();
    let method = request.method().clone();
    let resource = request.uri().path().to_owned();
    let empty_expect_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        && request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
        && !request.headers().contains_key(header::TRANSFER_ENCODING);
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut response = if header_bytes > MAX_HEADER_BYTES {
        s3_error_response(
            StatusCode::BAD_REQUEST,
            "RequestHeaderSectionTooLarge",
            &format!(
                "Your request header section exceeds the maximum allowed size of {MAX_HEADER_BYTES} bytes."
            ),
        )
    } else {
        match front.in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                front.metrics.in_flight.inc();
                let response = next.run(request).await;
                front.metrics.in_flight.dec();
                drop(permit);
                response
            }
            Err(_) => s3_error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
            ),
        }
    };
    // botocore sends `Expect: 100-continue` even for empty bodies; answered without
    // an interim 100 (RFC 9110 allows it), it then misreads the next response on that
    // keep-alive connection (boto/botocore#3755). Closing the connection avoids it.
    if empty_expect_continue {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED {
        let (parts, _) = response.into_parts();
        response = Response::from_parts(parts, Body::empty());
    } else if (status.is_client_error() || status.is_server_error()) && method != http::Method::HEAD
    {
        response = complete_error_body(response, &resource, &request_id).await;
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert("x-amz-request-id", value.clone());
        response.headers_mut().insert("x-amz-id-2", value);
    }
    response
        .headers_mut()
        .entry(header::SERVER)
        .or_insert(HeaderValue::from_static("Coffer"));
    front.metrics.observe(&method, status, started.elapsed());
    response
}

/// The bucket of a path-style request (`/bucket/...`), if any.
fn path_bucket(path: &str) -> Option<&str> {
    let bucket = path.trim_start_matches('/').split('/').next()?;
    (!bucket.is_empty() && bucket != "health" && bucket != "metrics").then_some(bucket)
}

/// The bucket a request addresses, decided as s3s routes it: with `--domain`, a
/// `Host` that is not an IP address is parsed as `bucket.<domain>` (the domain
/// itself means path-style); otherwise the first path segment.
fn request_bucket(host: Option<&s3s::host::SingleDomain>, request: &Request) -> Option<String> {
    use s3s::host::S3Host as _;
    let host_header = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host());
    if let (Some(parser), Some(host_header)) = (host, host_header)
        && host_header.parse::<SocketAddr>().is_err()
        && host_header.parse::<std::net::IpAddr>().is_err()
    {
        let virtual_host = parser.parse_host_header(host_header).ok()?;
        if let Some(bucket) = virtual_host.bucket() {
            return Some(bucket.to_owned());
        }
    }
    path_bucket(request.uri().path()).map(str::to_owned)
}

/// Browser CORS: preflights (`OPTIONS` with an `Origin`) are answered here from
/// the bucket's rules without authentication, as on S3; actual requests with an
/// `Origin` get the matching rule's `Access-Control-*` headers.
async fn cors(State(front): State<FrontDoor>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bucket = request_bucket(front.host.as_deref(), &request);
    let (Some(origin), Some(bucket)) = (origin, bucket) else {
        return next.run(request).await;
    };
    if request.method() == http::Method::OPTIONS {
        let answer = crate::s3::cors::preflight(&front.meta, &bucket, request.headers()).await;
        let mut response = match answer.error {
            Some((code, message)) => s3_error_response(answer.status, code, message),
            None => {
                let mut ok = Response::new(Body::empty());
                *ok.status_mut() = answer.status;
                ok
            }
        };
        response.headers_mut().extend(answer.headers);
        return response;
    }
    let method = request.method().clone();
    let mut response = next.run(request).await;
    let headers =
        crate::s3::cors::actual_request_headers(&front.meta, &bucket, &origin, &method).await;
    response.headers_mut().extend(headers);
    response
}

/// Browser form uploads (`POST` of `multipart/form-data` to a bucket): the form
/// head is rewritten on its way to s3s (`${filename}`), and policy violations
/// get AWS's `403 AccessDenied` (see `s3::post`).
async fn browser_form(request: Request, next: Next) -> Response {
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::s3::post::form_boundary);
    // `POST /bucket` path-style, `POST /` virtual-hosted: never a key.
    let is_form = request.method() == http::Method::POST
        && !request.uri().path().trim_matches('/').contains('/');
    let (Some(boundary), true) = (boundary, is_form) else {
        return next.run(request).await;
    };
    let form = crate::s3::post::BrowserForm::default();
    let (mut parts, body) = request.into_parts();
    // The rewritten head may differ in length; the form parser needs none.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.insert(form.clone());
    let body = crate::s3::post::watch_form(body, boundary, form.clone());
    let response = next.run(Request::from_parts(parts, body)).await;
    if !response.status().is_client_error() {
        return response;
    }
    if let Some(message) = crate::s3::post::missing_signature_field(&form) {
        return s3_error_response(StatusCode::BAD_REQUEST, "InvalidArgument", &message);
    }
    let (parts, body) = response.into_parts();
    let Ok(collected) = http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
    else {
        return Response::from_parts(parts, Body::empty());
    };
    let bytes = collected.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let field = |name: &str| {
        text.split(&format!("<{name}>"))
            .nth(1)
            .and_then(|r| r.split(&format!("</{name}>")).next())
            .unwrap_or("")
            .replace("&apos;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    match crate::s3::post::policy_error(&field("Code"), &field("Message")) {
        Some((status, message)) => s3_error_response(status, "AccessDenied", &message),
        None => {
            let mut parts = parts;
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}

/// SigV2 header authentication: the request's date is judged before its
/// signature, in AWS's order (see `auth::sigv2::check_time_first`).
async fn sigv2_time_first(request: Request, next: Next) -> Response {
    match crate::auth::sigv2::check_time_first(request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(err) => s3_error_response(
            err.status_code().unwrap_or(StatusCode::FORBIDDEN),
            err.code().as_str(),
            err.message().unwrap_or(""),
        ),
    }
}

/// Inserts the peer address so IAM conditions can use `aws:SourceIp`.
pub fn with_peer<B>(mut request: http::Request<B>, peer: SocketAddr) -> http::Request<B> {
    request.extensions_mut().insert(peer);
    request
}
