//! The web console: a second listener (`--console-listen`) serving a small
//! hand-written UI and a JSON API. It acts as the logged-in key by signing
//! S3 requests with that key and sending them through this server's own S3
//! router, so every action passes the same SigV4 → IAM path as any client.

mod admin;
pub mod api;
mod pages;
pub mod session;
pub mod sign;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::cluster::DataPlane;
use crate::meta::MetaStore;
use crate::serve::Transport;

use self::session::{LoginLimiter, SessionStore};

/// Where and how the console is served.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// `None`: no console.
    pub listen: Option<SocketAddr>,
    /// When false (the built-in default address), a port already taken only
    /// logs a warning: a second server on this machine still starts.
    pub required: bool,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Failed logins per client address allowed within `login_window`.
    pub max_login_failures: usize,
    pub login_window: Duration,
    /// How browsers reach the S3 endpoint, for shared (presigned) links; by
    /// default the console's host name with the S3 port.
    pub s3_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: None,
            required: true,
            session_ttl: Duration::from_secs(8 * 3600),
            max_login_failures: 5,
            login_window: Duration::from_secs(60),
            s3_url: None,
        }
    }
}

/// What the console's handlers share.
pub struct Console {
    /// This server's S3 router (front door, SigV4, IAM, handlers).
    pub(crate) s3: axum::Router,
    pub(crate) meta: MetaStore,
    pub(crate) plane: DataPlane,
    pub(crate) region: String,
    /// The S3 listener's address and scheme.
    pub(crate) s3_addr: SocketAddr,
    pub(crate) s3_tls: bool,
    pub(crate) s3_url: Option<String>,
    pub(crate) sessions: SessionStore,
    pub(crate) logins: LoginLimiter,
    pub(crate) secure_cookies: bool,
}

/// The S3 side the console drives.
pub struct S3Side {
    pub router: axum::Router,
    pub meta: MetaStore,
    pub plane: DataPlane,
    pub region: String,
    pub addr: SocketAddr,
}

/// Binds the console's listener and serves it until the returned task is
/// aborted. `Ok(None)` when it is off, or when the default address is taken.
pub async fn start(
    config: &ConsoleConfig,
    s3: S3Side,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<Option<(SocketAddr, JoinHandle<()>)>> {
    let Some(addr) = config.listen else {
        return Ok(None);
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) if !config.required => {
            tracing::warn!(%addr, error = %e, "console not started: its default address is taken (set --console-listen)");
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr} (console)")),
    };
    let local = listener.local_addr()?;
    let console = Arc::new(Console {
        s3: s3.router,
        meta: s3.meta,
        plane: s3.plane,
        region: s3.region,
        s3_addr: s3.addr,
        s3_tls: tls.is_some(),
        s3_url: config.s3_url.clone(),
        sessions: SessionStore::new(config.session_ttl),
        logins: LoginLimiter::new(config.max_login_failures, config.login_window),
        secure_cookies: tls.is_some(),
    });
    let app = api::router(console);
    tracing::info!(addr = %local, tls = tls.is_some(), "coffer console serving");
    Ok(Some((local, tokio::spawn(accept_loop(listener, app, tls)))))
}

async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let http = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "console accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, http, tls) = (app.clone(), http.clone(), tls.clone());
        tokio::spawn(async move {
            let secure = tls.is_some();
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let mut request =
                        crate::http::with_peer(request.map(axum::body::Body::new), peer);
                    request.extensions_mut().insert(Transport { secure });
                    app.clone().oneshot(request)
                });
            let result = match tls {
                None => {
                    http.serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(io)) => {
                            http.serve_connection_with_upgrades(TokioIo::new(io), service)
                                .await
                        }
                        _ => return,
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "console connection ended with an error");
            }
        });
    }
}
