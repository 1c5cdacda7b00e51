//! The console's routes: pages and assets, login/logout, the S3 pass-through
//! (`/api/s3/...`, signed as the session's key and sent through the S3
//! router), presigned share links, and the administration endpoints (root).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::Console;
use super::admin;
use super::pages;
use super::session::{COOKIE, Session, cookie_value, same_secret};
use super::sign::{Signer, canonical_query, uri_encode};
use crate::iam::PolicyDocument;
use crate::meta::{NewAccessKey, now_millis};

type Shared = Arc<Console>;

pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/assets/app.js", get(pages::script))
        .route("/assets/app.css", get(pages::style))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(whoami))
        .route("/api/buckets", get(buckets))
        .route("/api/presign", post(presign))
        .route("/api/s3", any(s3_pass_through))
        .route("/api/s3/", any(s3_pass_through))
        .route("/api/s3/{*path}", any(s3_pass_through))
        .route("/api/admin/keys", get(list_keys).post(create_key))
        .route("/api/admin/keys/{id}", delete(delete_key))
        .route(
            "/api/admin/buckets/{bucket}/quota",
            axum::routing::put(set_quota),
        )
        .route("/api/admin/cluster", get(cluster))
        .route("/api/admin/metrics", get(metrics))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// An error the console API answers with: an S3-style code and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "NotLoggedIn",
            "Log in (again): there is no session, or it expired.",
        )
    }

    pub(super) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "console request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The metadata store did not answer; try again.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// The live session named by the request's cookie.
fn session_of(console: &Console, headers: &HeaderMap) -> ApiResult<Session> {
    let id = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(cookie_value)
        .ok_or_else(ApiError::unauthenticated)?;
    console
        .sessions
        .get(id)
        .ok_or_else(ApiError::unauthenticated)
}

/// State-changing requests carry the session's CSRF token in `X-CSRF-Token`.
fn check_csrf(headers: &HeaderMap, session: &Session) -> ApiResult<()> {
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if same_secret(sent, &session.csrf) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidCsrfToken",
            "The request lacks this session's CSRF token.",
        ))
    }
}

/// A session allowed to change things: logged in and carrying the token.
fn writer(console: &Console, headers: &HeaderMap) -> ApiResult<Session> {
    let session = session_of(console, headers)?;
    check_csrf(headers, &session)?;
    Ok(session)
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MalformedJSON",
            format!("The request body is not what was expected: {e}"),
        )
    })
}

fn session_cookie(console: &Console, id: &str, max_age: u64) -> HeaderValue {
    let secure = if console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let value =
        format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginForm {
    access_key_id: String,
    secret_access_key: String,
}

async fn login(
    State(console): State<Shared>,
    Extension(peer): Extension<SocketAddr>,
    body: Bytes,
) -> ApiResult<Response> {
    let ip = peer.ip();
    if let Some(wait) = console.logins.blocked_for(ip) {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "SlowDown",
            format!(
                "Too many failed logins from this address; try again in {} s.",
                wait.as_secs().max(1)
            ),
        )
        .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return Ok(response);
    }
    let form: LoginForm = json_body(&body)?;
    let key = console
        .meta
        .get_access_key(form.access_key_id.trim())
        .await
        .map_err(ApiError::internal)?;
    let valid = key.filter(|k| {
        !k.is_expired_at(now_millis()) && same_secret(&k.secret, &form.secret_access_key)
    });
    let Some(key) = valid else {
        console.logins.failed(ip);
        tracing::info!(%ip, "console login refused");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The access key id or the secret is wrong.",
        ));
    };
    console.logins.succeeded(ip);
    let (id, session) = console
        .sessions
        .open(key.id.clone(), key.secret.clone(), key.is_root);
    let mut response =
        axum::Json(session_json(&console, &session, &key.name).await?).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&console, &id, console.sessions.ttl().as_secs()),
    );
    Ok(response)
}

/// The session as the page sees it, with what it may administer.
async fn session_json(console: &Console, session: &Session, name: &str) -> ApiResult<Value> {
    Ok(json!({
        "keyId": session.key_id,
        "name": name,
        "root": session.is_root,
        "admin": admin::capabilities(console, session).await?,
        "csrf": session.csrf,
        "expiresIn": session.expires_at.saturating_duration_since(std::time::Instant::now()).as_secs(),
    }))
}

async fn logout(State(console): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    writer(&console, &headers)?;
    if let Some(id) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(cookie_value)
    {
        console.sessions.close(id);
    }
    let mut response = axum::Json(json!({"ok": true})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&console, "", 0));
    Ok(response)
}

async fn whoami(State(console): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let session = session_of(&console, &headers)?;
    let name = match console.meta.get_access_key(&session.key_id).await {
        Ok(Some(key)) => key.name,
        _ => String::new(),
    };
    Ok(axum::Json(session_json(&console, &session, &name).await?).into_response())
}

/// Request headers a browser may send on to S3 (everything else is dropped,
/// above all cookies and anything that would change the signature's meaning).
fn forwarded(name: &str) -> bool {
    matches!(
        name,
        "content-type"
            | "content-length"
            | "content-md5"
            | "content-encoding"
            | "content-disposition"
            | "content-language"
            | "cache-control"
            | "expires"
            | "range"
            | "if-match"
            | "if-none-match"
            | "if-modified-since"
            | "if-unmodified-since"
    ) || (name.starts_with("x-amz-")
        && !matches!(
            name,
            "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
        ))
}

/// One S3 request the console sends: `path` decoded (`/bucket/key`), `query`
/// decoded pairs, and the browser's headers (only [`forwarded`] ones go on).
struct S3Call<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(String, String)],
    headers: &'a HeaderMap,
    body: Body,
    /// The browser's address and transport, for `aws:SourceIp` and
    /// `aws:SecureTransport`.
    peer: SocketAddr,
    secure: bool,
}

/// Sends one S3 request as the session's key through this server's S3 router.
async fn send_s3(console: &Console, session: &Session, call: S3Call<'_>) -> Response {
    let S3Call {
        method,
        path,
        query,
        headers,
        body,
        peer,
        secure,
    } = call;
    let encoded_path = uri_encode(path, true);
    let query_string = canonical_query(query);
    let uri = if query_string.is_empty() {
        encoded_path.clone()
    } else {
        format!("{encoded_path}?{query_string}")
    };
    let now = time::OffsetDateTime::now_utc();
    let mut signed: Vec<(String, String)> = vec![
        ("host".to_owned(), console.s3_addr.to_string()),
        ("x-amz-date".to_owned(), Signer::date(now)),
        (
            "x-amz-content-sha256".to_owned(),
            "UNSIGNED-PAYLOAD".to_owned(),
        ),
    ];
    for (name, value) in headers {
        if forwarded(name.as_str())
            && let Ok(value) = value.to_str()
        {
            signed.push((name.as_str().to_owned(), value.to_owned()));
        }
    }
    let signer = Signer {
        key_id: &session.key_id,
        secret: &session.secret,
        region: &console.region,
    };
    let authorization = signer.authorization(method.as_str(), &encoded_path, query, &signed, now);
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in &signed {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder = builder.header(header::AUTHORIZATION, authorization);
    let mut request = match builder.body(body) {
        Ok(request) => request,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequest", e.to_string())
                .into_response();
        }
    };
    request.extensions_mut().insert(peer);
    request
        .extensions_mut()
        .insert(crate::serve::Transport { secure });
    match console.s3.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `/api/s3/<bucket>/<key>?<query>`: the S3 request the browser means, sent as
/// the session's key. Reads need the session; writes also its CSRF token.
async fn s3_pass_through(
    State(console): State<Shared>,
    Extension(peer): Extension<SocketAddr>,
    request: Request,
) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    let session = if matches!(parts.method, Method::GET | Method::HEAD) {
        session_of(&console, &parts.headers)?
    } else {
        writer(&console, &parts.headers)?
    };
    let raw = parts.uri.path().strip_prefix("/api/s3").unwrap_or("");
    let decoded = urlencoding::decode(raw).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidURI",
            "The path is not valid UTF-8.",
        )
    })?;
    let path = if decoded.is_empty() {
        "/".to_owned()
    } else {
        decoded.into_owned()
    };
    let query: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidURI",
                "The query string cannot be decoded.",
            )
        })?;
    let secure = crate::serve::secure_transport(&parts.extensions) == "true";
    let call = S3Call {
        method: parts.method,
        path: &path,
        query: &query,
        headers: &parts.headers,
        body,
        peer,
        secure,
    };
    Ok(send_s3(&console, &session, call).await)
}

/// The S3 error code and message of an error response body.
fn s3_error(status: StatusCode, body: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(body);
    let field = |name: &str| {
        text.split(&format!("<{name}>"))
            .nth(1)
            .and_then(|r| r.split(&format!("</{name}>")).next())
            .unwrap_or("")
            .to_owned()
    };
    ApiError::new(status, &field("Code"), field("Message"))
}

/// Buckets the key can see (its ListBuckets, as on the S3 API), with their
/// usage, quota, and the Kubernetes resource that owns them.
async fn buckets(
    State(console): State<Shared>,
    Extension(peer): Extension<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let session = session_of(&console, &headers)?;
    let no_headers = HeaderMap::new();
    let call = S3Call {
        method: Method::GET,
        path: "/",
        query: &[],
        headers: &no_headers,
        body: Body::empty(),
        peer,
        secure: false,
    };
    let response = send_s3(&console, &session, call).await;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), 64 << 20)
        .collect()
        .await
        .map_err(|e| ApiError::internal(format!("ListBuckets body: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(s3_error(status, &body));
    }
    let text = String::from_utf8_lossy(&body);
    let permissions = admin::Permissions::of(&console, &session).await?;
    let mut list = Vec::new();
    for chunk in text.split("<Bucket>").skip(1) {
        let Some(name) = chunk
            .split("<Name>")
            .nth(1)
            .and_then(|r| r.split("</Name>").next())
        else {
            continue;
        };
        let Some(bucket) = console
            .meta
            .get_bucket(name)
            .await
            .map_err(ApiError::internal)?
        else {
            continue;
        };
        let usage = console
            .meta
            .bucket_usage(name)
            .await
            .map_err(ApiError::internal)?;
        let quota = console
            .meta
            .bucket_quota(name)
            .await
            .map_err(ApiError::internal)?;
        list.push(json!({
            "name": bucket.name,
            "created": bucket.created_at,
            "objects": usage.objects,
            "bytes": usage.bytes,
            "quotaBytes": quota.as_ref().and_then(|q| q.max_size_bytes),
            "quotaObjects": quota.as_ref().and_then(|q| q.max_objects),
            "managedBy": managed_by(&bucket.owner),
            "quotaEditable": permissions.allows(admin::SET_QUOTA, &crate::iam::resource_arn(name, None)),
        }));
    }
    Ok(axum::Json(json!({ "buckets": list })).into_response())
}

/// `namespace/name` of the Kubernetes resource owning a bucket or key.
fn managed_by(owner: &str) -> Option<&str> {
    owner.strip_prefix("k8s:")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PresignForm {
    bucket: String,
    key: String,
    expires_seconds: u64,
    #[serde(default)]
    version_id: Option<String>,
}

/// A presigned GET link signed by the session's key (S3 checks the key's
/// rights when the link is used, as for any presigned URL).
async fn presign(
    State(console): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let session = writer(&console, &headers)?;
    let form: PresignForm = json_body(&body)?;
    if !(1..=604_800).contains(&form.expires_seconds) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be between 1 second and 7 days.",
        ));
    }
    if form.bucket.is_empty() || form.key.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "A bucket and a key are needed.",
        ));
    }
    let base = s3_base_url(&console, &headers);
    let host = base
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(&base)
        .trim_end_matches('/')
        .to_owned();
    let path = format!(
        "/{}/{}",
        uri_encode(&form.bucket, false),
        uri_encode(&form.key, true)
    );
    let extra: Vec<(String, String)> = form
        .version_id
        .into_iter()
        .map(|v| ("versionId".to_owned(), v))
        .collect();
    let signer = Signer {
        key_id: &session.key_id,
        secret: &session.secret,
        region: &console.region,
    };
    let url = signer.presign_get(
        base.trim_end_matches('/'),
        &host,
        &path,
        &extra,
        form.expires_seconds,
        time::OffsetDateTime::now_utc(),
    );
    Ok(axum::Json(json!({ "url": url })).into_response())
}

/// How a browser reaches the S3 endpoint: `--console-s3-url`, else the S3
/// listener's address, with the console's host name when it listens on all
/// interfaces.
fn s3_base_url(console: &Console, headers: &HeaderMap) -> String {
    if let Some(url) = &console.s3_url {
        return url.clone();
    }
    let scheme = if console.s3_tls { "https" } else { "http" };
    if !console.s3_addr.ip().is_unspecified() {
        return format!("{scheme}://{}", console.s3_addr);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    format!("{scheme}://{name}:{}", console.s3_addr.port())
}

async fn list_keys(State(console): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let session = session_of(&console, &headers)?;
    admin::require_list_keys(&console, &session).await?;
    let keys = console
        .meta
        .list_access_keys()
        .await
        .map_err(ApiError::internal)?;
    let last_used = console
        .meta
        .keys_last_used()
        .await
        .map_err(ApiError::internal)?;
    let list: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "id": k.id,
                "name": k.name,
                "owner": k.owner,
                "root": k.is_root,
                "created": k.created_at,
                "lastUsed": last_used.get(&k.id),
                "expires": k.expires_at,
                "policy": k.policy,
                "managedBy": managed_by(&k.owner),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "keys": list })).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewKeyForm {
    name: String,
    /// `read-only`, `read-write`, `admin`, or `json` (then `policy`).
    template: String,
    #[serde(default)]
    buckets: Vec<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    policy: Option<String>,
}

/// The identity policy of a template on chosen buckets (and key prefix).
pub fn template_policy(template: &str, buckets: &[String], prefix: &str) -> Option<Value> {
    let bucket_arns: Vec<String> = buckets
        .iter()
        .map(|b| format!("arn:aws:s3:::{b}"))
        .collect();
    let object_arns: Vec<String> = buckets
        .iter()
        .map(|b| format!("arn:aws:s3:::{b}/{prefix}*"))
        .collect();
    let (bucket_actions, object_actions): (&[&str], &[&str]) = match template {
        "read-only" => (
            &["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucket*"],
            &["s3:GetObject*"],
        ),
        "read-write" => (
            &[
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:ListBucketMultipartUploads",
                "s3:GetBucket*",
            ],
            &[
                "s3:GetObject*",
                "s3:PutObject*",
                "s3:DeleteObject*",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
        ),
        "admin" => (&["s3:*"], &["s3:*"]),
        _ => return None,
    };
    Some(json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": bucket_actions, "Resource": bucket_arns},
            {"Effect": "Allow", "Action": object_actions, "Resource": object_arns},
        ]
    }))
}

async fn create_key(
    State(console): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let session = writer(&console, &headers)?;
    let form: NewKeyForm = json_body(&body)?;
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "MalformedPolicy", message);
    if form.name.trim().is_empty() || form.name.len() > 128 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "A key needs a name of 1 to 128 characters.",
        ));
    }
    let policy = if form.template == "json" {
        admin::require_create_key(&console, &session, true, &[]).await?;
        form.policy.unwrap_or_default()
    } else {
        let buckets: Vec<String> = form
            .buckets
            .iter()
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        if buckets.is_empty() {
            return Err(bad(
                "Choose at least one bucket for the template.".to_owned()
            ));
        }
        admin::require_create_key(&console, &session, false, &buckets).await?;
        template_policy(&form.template, &buckets, form.prefix.trim())
            .ok_or_else(|| bad(format!("Unknown template {:?}.", form.template)))?
            .to_string()
    };
    PolicyDocument::parse(&policy).map_err(|e| bad(format!("The policy is invalid: {e}")))?;
    let key = console
        .meta
        .create_access_key(&NewAccessKey {
            name: form.name.trim().to_owned(),
            owner: "console".to_owned(),
            policy: Some(policy),
            is_root: false,
            credentials: None,
        })
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(key = %key.id, by = %session.key_id, "access key created in the console");
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"id": key.id, "secret": key.secret, "name": key.name})),
    )
        .into_response())
}

async fn delete_key(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let session = writer(&console, &headers)?;
    admin::require(&console, &session, admin::DELETE_KEY, &admin::key_arn(&id)).await?;
    let Some(key) = console
        .meta
        .get_access_key(&id)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchEntity",
            "There is no such access key.",
        ));
    };
    if key.is_root {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "The root key cannot be deleted here.",
        ));
    }
    if let Some(resource) = managed_by(&key.owner) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ManagedByKubernetes",
            format!("This key belongs to the AccessKey {resource}: delete it there."),
        ));
    }
    console
        .meta
        .delete_access_key(&id)
        .await
        .map_err(ApiError::internal)?;
    console.sessions.close_key(&id);
    Ok(axum::Json(json!({"deleted": id})).into_response())
}

/// What the bucket settings page sends: each limit, or `null` for none.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QuotaForm {
    max_size_bytes: Option<u64>,
    max_objects: Option<u64>,
}

/// Sets or removes a bucket's quota (root, or a key allowed
/// `coffer:PutBucketQuota` on it). A bucket owned by a Kubernetes `Bucket`
/// resource keeps the quota its spec gives it.
async fn set_quota(
    State(console): State<Shared>,
    Path(bucket): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let session = writer(&console, &headers)?;
    let form: QuotaForm = json_body(&body)?;
    let arn = crate::iam::resource_arn(&bucket, None);
    admin::require(&console, &session, admin::SET_QUOTA, &arn).await?;
    if form.max_size_bytes == Some(0) || form.max_objects == Some(0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "A quota limit is a positive number; leave it empty for none.",
        ));
    }
    let Some(found) = console
        .meta
        .get_bucket(&bucket)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        ));
    };
    if let Some(resource) = managed_by(&found.owner) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ManagedByKubernetes",
            format!("This bucket belongs to the Bucket {resource}: set its quota there."),
        ));
    }
    let quota = crate::meta::Quota {
        max_size_bytes: form.max_size_bytes,
        max_objects: form.max_objects,
    };
    let document = (quota.max_size_bytes.is_some() || quota.max_objects.is_some())
        .then(|| serde_json::to_string(&quota))
        .transpose()
        .map_err(ApiError::internal)?;
    console
        .meta
        .set_bucket_config(&bucket, crate::meta::QUOTA, document.as_deref())
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(bucket = %bucket, by = %session.key_id, "bucket quota set in the console");
    Ok(axum::Json(json!({
        "bucket": bucket,
        "quotaBytes": quota.max_size_bytes,
        "quotaObjects": quota.max_objects,
    }))
    .into_response())
}

async fn cluster(State(console): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let session = session_of(&console, &headers)?;
    admin::require_cluster(&console, &session).await?;
    let nodes = console
        .meta
        .list_nodes()
        .await
        .map_err(ApiError::internal)?;
    let replicas = console
        .meta
        .replica_counts()
        .await
        .map_err(ApiError::internal)?;
    let now = now_millis();
    let config = console.plane.config();
    let dead_after = i64::try_from(config.dead_after.as_millis()).unwrap_or(i64::MAX);
    let list: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let age = now.saturating_sub(n.heartbeat_at).max(0);
            let (count, bytes) = replicas
                .iter()
                .find(|(id, _, _)| *id == n.id)
                .map(|(_, c, b)| (*c, *b))
                .unwrap_or((0, 0));
            json!({
                "id": n.id,
                "url": n.url,
                "zone": n.zone,
                "state": n.state.as_str(),
                "heartbeatAgeMs": age,
                "live": age < dead_after,
                "replicas": count,
                "replicaBytes": bytes,
                "progress": n.progress,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "self": console.plane.node_id(),
        "replicasWanted": config.replicas,
        "nodes": list,
    }))
    .into_response())
}

/// The server's Prometheus text (requests, latency, bytes), for the charts.
async fn metrics(State(console): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let session = session_of(&console, &headers)?;
    admin::require_cluster(&console, &session).await?;
    let request = http::Request::builder()
        .uri("/metrics")
        .header(header::HOST, console.s3_addr.to_string())
        .body(Body::empty())
        .map_err(ApiError::internal)?;
    match console.s3.clone().oneshot(request).await {
        Ok(response) => Ok(response),
        Err(never) => match never {},
    }
}
