//! Node-to-node HTTP: streaming blob PUT/GET/DELETE under `/_coffer/v1/blobs/`.
//! Every request carries an HMAC-SHA256 (under the cluster secret) over method,
//! path, time, sender and a nonce; the receiver accepts it within a time window
//! and only once. Client credentials never travel this way. A blob's body is
//! covered too: the sender appends a trailer with an HMAC of the body's SHA-256
//! bound to the request's signature, and the receiver keeps nothing that does not
//! match it. The receiver returns the CRC32C of what it stored and the sender
//! compares it with what it sent. (Responses are not signed: a man in the middle
//! can still read and delay traffic, which peer TLS closes.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper::body::Frame;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{ClusterConfig, DataPlane};

/// Node-to-node requests live under this path; bucket names cannot start with `_`.
pub const PEER_PATH_PREFIX: &str = "/_coffer/v1/";
const NODE_HEADER: &str = "x-coffer-node";
const TIME_HEADER: &str = "x-coffer-time";
const NONCE_HEADER: &str = "x-coffer-nonce";
const SIGNATURE_HEADER: &str = "x-coffer-signature";
/// The trailer that carries the body's MAC (see [`body_mac`]).
const BODY_MAC_TRAILER: &str = "x-coffer-body-mac";
/// Accepted difference between the sender's and the receiver's clocks.
const WINDOW_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac_of(
    secret: &str,
    method: &Method,
    path: &str,
    time: i64,
    node: &str,
    nonce: &str,
) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(format!("{method}\n{path}\n{time}\n{node}\n{nonce}").as_bytes());
    mac
}

fn signature(
    secret: &str,
    method: &Method,
    path: &str,
    time: i64,
    node: &str,
    nonce: &str,
) -> String {
    hex::encode(
        mac_of(secret, method, path, time, node, nonce)
            .finalize()
            .into_bytes(),
    )
}

/// The MAC of a request body: its SHA-256 under the cluster secret, bound to the
/// request's signature (lowercase hex) so it cannot be moved to another request.
fn body_mac(secret: &str, request_signature: &str, body_sha256: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(b"coffer-peer-body\n");
    mac.update(request_signature.as_bytes());
    mac.update(b"\n");
    mac.update(body_sha256);
    mac
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Whether a request is node-to-node traffic (it then bypasses the S3 path).
pub fn is_peer_request(request: &Request) -> bool {
    request.uri().path().starts_with(PEER_PATH_PREFIX)
        && request.headers().contains_key(SIGNATURE_HEADER)
}

/// Remembers signatures seen within the window, so a captured request cannot be
/// replayed.
#[derive(Default)]
pub(crate) struct ReplayGuard {
    seen: Mutex<HashMap<String, Instant>>,
}

impl ReplayGuard {
    /// `signature` in one canonical form (lowercase hex): hex decoding ignores
    /// case, so remembering it as sent would let each case variant replay.
    fn first_use(&self, signature: &str) -> bool {
        let now = Instant::now();
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        if seen.len() > 50_000 {
            seen.retain(|_, expires| *expires > now);
        }
        match seen.get(signature) {
            Some(expires) if *expires > now => false,
            _ => {
                let window = Duration::from_secs(2 * WINDOW_SECS as u64);
                seen.insert(signature.to_owned(), now + window);
                true
            }
        }
    }
}

/// Checks a peer request's HMAC, time and nonce; returns the sending node.
fn authenticate(
    plane: &DataPlane,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<String, &'static str> {
    let Some(secret) = plane.config().secret.as_deref() else {
        return Err("this node has no cluster secret and accepts no peer requests");
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(node), Some(time), Some(nonce), Some(given)) = (
        text(NODE_HEADER),
        text(TIME_HEADER),
        text(NONCE_HEADER),
        text(SIGNATURE_HEADER),
    ) else {
        return Err("missing peer authentication headers");
    };
    let time: i64 = time.parse().map_err(|_| "bad peer time")?;
    if (unix_now() - time).abs() > WINDOW_SECS {
        return Err("peer request outside the time window (check clocks)");
    }
    let given_bytes = hex::decode(given).map_err(|_| "bad peer signature")?;
    // verify_slice compares in constant time.
    mac_of(secret, method, path, time, node, nonce)
        .verify_slice(&given_bytes)
        .map_err(|_| "bad peer signature")?;
    if !plane.inner.replay.first_use(&hex::encode(&given_bytes)) {
        return Err("replayed peer request");
    }
    Ok(node.to_owned())
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// The receiving side: routes for peers, behind HMAC authentication.
pub fn peer_router(plane: DataPlane) -> Router {
    Router::new()
        .route(
            "/_coffer/v1/blobs/{id}",
            put(receive_blob).get(send_blob).delete(delete_blob),
        )
        .route("/_coffer/v1/blobs/{id}/crcs", get(send_block_crcs))
        .layer(axum::middleware::from_fn_with_state(
            plane.clone(),
            require_peer,
        ))
        .with_state(plane)
}

async fn require_peer(State(plane): State<DataPlane>, request: Request, next: Next) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    match authenticate(&plane, request.method(), &path, request.headers()) {
        Ok(_) => next.run(request).await,
        Err(reason) => {
            tracing::warn!(reason, path, "refused a peer request");
            plain(StatusCode::FORBIDDEN, reason)
        }
    }
}

/// What a node reports after storing a blob a peer sent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Receipt {
    pub size: u64,
    pub crc32c: u32,
}

/// A blob body's bytes, then a check of the sender's body MAC trailer: the
/// stream ends with an error (so nothing is kept) when the trailer is missing or
/// does not match what arrived.
fn verified_body(
    body: Body,
    secret: String,
    request_signature: String,
) -> impl futures::Stream<Item = Result<Bytes, String>> + Unpin {
    use http_body_util::BodyExt as _;
    struct State {
        body: Body,
        digest: Sha256,
        trailer: Option<Vec<u8>>,
        secret: String,
        request_signature: String,
        done: bool,
    }
    let state = State {
        body,
        digest: <Sha256 as sha2::Digest>::new(),
        trailer: None,
        secret,
        request_signature,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            match state.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        sha2::Digest::update(&mut state.digest, &data);
                        return Some((Ok(data), state));
                    }
                    Err(frame) => {
                        let given = frame.trailers_ref().and_then(|t| t.get(BODY_MAC_TRAILER));
                        state.trailer = given.and_then(|v| hex::decode(v.as_bytes()).ok());
                    }
                },
                Some(Err(e)) => {
                    state.done = true;
                    return Some((Err(e.to_string()), state));
                }
                None => {
                    state.done = true;
                    let digest = sha2::Digest::finalize(state.digest.clone());
                    let mac = body_mac(&state.secret, &state.request_signature, &digest);
                    let verdict = match &state.trailer {
                        Some(given) if mac.verify_slice(given).is_ok() => return None,
                        Some(_) => "the blob body does not match its MAC",
                        None => "the blob body has no MAC trailer",
                    };
                    return Some((Err(verdict.to_owned()), state));
                }
            }
        }
    }))
}

async fn receive_blob(
    State(plane): State<DataPlane>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // `require_peer` has checked both; a body is kept only under the same secret.
    let (Some(secret), Some(signature)) = (
        plane.config().secret.clone(),
        headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase),
    ) else {
        return plain(StatusCode::FORBIDDEN, "missing peer authentication");
    };
    let local = plane.local().clone();
    if local.contains(&id) {
        return plain(StatusCode::CONFLICT, "blob exists; blobs are immutable");
    }
    let create = {
        let local = local.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || local.create_with_id(&id)).await
    };
    let writer = match create {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // On any error the temp file goes with the writer.
    let body = verified_body(body, secret, signature);
    let (writer, crc) = match super::append_stream(writer, body).await {
        Ok(done) => done,
        Err(e @ super::AppendError::Source(_)) => {
            return plain(StatusCode::BAD_REQUEST, e.to_string());
        }
        Err(e @ super::AppendError::Volume(_)) => {
            return plain(StatusCode::INSUFFICIENT_STORAGE, e.to_string());
        }
    };
    match tokio::task::spawn_blocking(move || writer.finish()).await {
        Ok(Ok(info)) => axum::Json(Receipt {
            size: info.size,
            crc32c: crc,
        })
        .into_response(),
        Ok(Err(e)) => plain(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `start=A&end=B` (end exclusive); missing bounds mean the whole blob.
fn parse_range(query: Option<&str>) -> std::ops::Range<u64> {
    let mut range = 0..u64::MAX;
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("start", v)) => range.start = v.parse().unwrap_or(0),
            Some(("end", v)) => range.end = v.parse().unwrap_or(u64::MAX),
            _ => {}
        }
    }
    range
}

/// Streams a verified range of a local replica. A replica that fails
/// verification is quarantined here, by its holder.
async fn send_blob(
    State(plane): State<DataPlane>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut stream = Box::pin(plane.local_stream(&id, parse_range(query.as_deref())));
    // The first chunk decides the status: a missing or bad replica is an error
    // response, not a truncated 200.
    let first = match stream.next().await {
        Some(Ok(chunk)) => Some(chunk),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return plain(StatusCode::NOT_FOUND, "no such replica");
        }
        Some(Err(e)) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        None => None,
    };
    let body = futures::stream::iter(first.map(Ok)).chain(stream);
    Response::new(Body::from_stream(body))
}

/// The block checksums of a local replica (little-endian u32s), so a node
/// copying it can check its copy end to end.
async fn send_block_crcs(State(plane): State<DataPlane>, Path(id): Path<String>) -> Response {
    let local = plane.local().clone();
    match tokio::task::spawn_blocking(move || local.open_blob(&id)).await {
        Ok(Ok(reader)) => {
            let bytes: Vec<u8> = reader
                .block_crcs()
                .iter()
                .flat_map(|c| c.to_le_bytes())
                .collect();
            Response::new(Body::from(bytes))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            plain(StatusCode::NOT_FOUND, "no such replica")
        }
        Ok(Err(e)) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn delete_blob(State(plane): State<DataPlane>, Path(id): Path<String>) -> Response {
    let local = plane.local().clone();
    match tokio::task::spawn_blocking(move || local.delete(&id)).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => plain(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A blob body sent chunked, ending with the [`BODY_MAC_TRAILER`] trailer.
fn with_body_mac<S>(
    body: S,
    secret: String,
    request_signature: String,
) -> http_body_util::StreamBody<impl Stream<Item = std::io::Result<Frame<Bytes>>>>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
{
    struct State<S> {
        body: std::pin::Pin<Box<S>>,
        /// `None` once the trailer is sent.
        digest: Option<Sha256>,
        secret: String,
        request_signature: String,
    }
    let state = State {
        body: Box::pin(body),
        digest: Some(<Sha256 as sha2::Digest>::new()),
        secret,
        request_signature,
    };
    let frames = futures::stream::unfold(state, |mut state| async move {
        let digest = state.digest.as_mut()?;
        match state.body.next().await {
            Some(Ok(chunk)) => {
                sha2::Digest::update(digest, &chunk);
                Some((Ok(Frame::data(chunk)), state))
            }
            Some(Err(e)) => {
                state.digest = None;
                Some((Err(e), state))
            }
            None => {
                let digest = sha2::Digest::finalize(state.digest.take()?);
                let mac = body_mac(&state.secret, &state.request_signature, &digest);
                let mut trailers = HeaderMap::new();
                let value = hex::encode(mac.finalize().into_bytes());
                if let Ok(value) = HeaderValue::from_str(&value) {
                    trailers.insert(BODY_MAC_TRAILER, value);
                }
                Some((Ok(Frame::trailers(trailers)), state))
            }
        }
    });
    http_body_util::StreamBody::new(frames)
}

/// The sending side.
pub(crate) struct PeerClient {
    http: reqwest::Client,
    node: String,
    secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("peer request: {0}")]
    Http(#[from] reqwest::Error),
    #[error("peer answered {0}: {1}")]
    Status(StatusCode, String),
    #[error("this node has no cluster secret")]
    NoSecret,
}

impl PeerClient {
    pub fn new(config: &ClusterConfig) -> std::io::Result<Self> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(tls) = &config.peer_tls {
            http = http.use_preconfigured_tls(tls.as_ref().clone());
        }
        let http = http.build().map_err(std::io::Error::other)?;
        Ok(Self {
            http,
            node: config.node_id.clone(),
            secret: config.secret.clone(),
        })
    }

    fn request(
        &self,
        method: Method,
        base: &str,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, PeerError> {
        self.signed_request(method, base, path)
            .map(|(request, _)| request)
    }

    /// A request with the peer authentication headers, and its signature.
    fn signed_request(
        &self,
        method: Method,
        base: &str,
        path: &str,
    ) -> Result<(reqwest::RequestBuilder, String), PeerError> {
        let secret = self.secret.as_deref().ok_or(PeerError::NoSecret)?;
        let time = unix_now();
        let nonce = format!("{:016x}", rand::random::<u64>());
        let sig = signature(secret, &method, path, time, &self.node, &nonce);
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (NODE_HEADER, self.node.clone()),
            (TIME_HEADER, time.to_string()),
            (NONCE_HEADER, nonce),
            (SIGNATURE_HEADER, sig.clone()),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        Ok((self.http.request(method, url).headers(headers), sig))
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, PeerError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(PeerError::Status(status, text))
    }

    /// Sends a blob's bytes; returns what the peer stored once it is durable there.
    pub async fn put_blob<S>(&self, base: &str, id: &str, body: S) -> Result<Receipt, PeerError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    {
        let path = format!("{PEER_PATH_PREFIX}blobs/{id}");
        let (request, sig) = self.signed_request(Method::PUT, base, &path)?;
        let secret = self.secret.clone().ok_or(PeerError::NoSecret)?;
        let response = request
            .header(http::header::TRAILER, BODY_MAC_TRAILER)
            .body(reqwest::Body::wrap(with_body_mac(body, secret, sig)))
            .send()
            .await?;
        let bytes = Self::check(response).await?.bytes().await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| PeerError::Status(StatusCode::BAD_GATEWAY, format!("bad receipt: {e}")))
    }

    /// Streams bytes `range` of a peer's replica (verified by the peer).
    pub async fn get_blob(
        &self,
        base: &str,
        id: &str,
        range: std::ops::Range<u64>,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static + use<>, PeerError>
    {
        let path = format!(
            "{PEER_PATH_PREFIX}blobs/{id}?start={}&end={}",
            range.start, range.end
        );
        let response = self.request(Method::GET, base, &path)?.send().await?;
        let response = Self::check(response).await?;
        Ok(response.bytes_stream().map_err(std::io::Error::other))
    }

    /// The block checksums of a peer's replica.
    pub async fn block_crcs(&self, base: &str, id: &str) -> Result<Vec<u32>, PeerError> {
        let response = self
            .request(
                Method::GET,
                base,
                &format!("{PEER_PATH_PREFIX}blobs/{id}/crcs"),
            )?
            .send()
            .await?;
        let bytes = Self::check(response).await?.bytes().await?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub async fn delete_blob(&self, base: &str, id: &str) -> Result<(), PeerError> {
        let response = self
            .request(
                Method::DELETE,
                base,
                &format!("{PEER_PATH_PREFIX}blobs/{id}"),
            )?
            .send()
            .await?;
        Self::check(response).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_signed_field() {
        let base = signature("s", &Method::GET, "/_coffer/v1/blobs/a", 100, "n1", "x");
        assert_eq!(
            base,
            signature("s", &Method::GET, "/_coffer/v1/blobs/a", 100, "n1", "x")
        );
        for other in [
            signature("t", &Method::GET, "/_coffer/v1/blobs/a", 100, "n1", "x"),
            signature("s", &Method::PUT, "/_coffer/v1/blobs/a", 100, "n1", "x"),
            signature("s", &Method::GET, "/_coffer/v1/blobs/b", 100, "n1", "x"),
            signature("s", &Method::GET, "/_coffer/v1/blobs/a", 101, "n1", "x"),
            signature("s", &Method::GET, "/_coffer/v1/blobs/a", 100, "n2", "x"),
            signature("s", &Method::GET, "/_coffer/v1/blobs/a", 100, "n1", "y"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn a_signature_is_accepted_once() {
        let guard = ReplayGuard::default();
        assert!(guard.first_use("abc"));
        assert!(!guard.first_use("abc"));
        assert!(guard.first_use("abd"));
    }
}
