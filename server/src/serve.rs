//! Assembles and runs a server: opens the stores, makes sure a root key exists,
//! builds the s3s service with our auth, and serves HTTP/1.1 and HTTP/2 until
//! shut down. Used by `coffer-server serve` and, in-process, by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::auth::{Authorizer, KeyRing, SignatureKeys};
use crate::cluster::{self, ClusterConfig, DataPlane};
use crate::crypto::{self, Key};
use crate::http::{FrontDoor, router, with_peer};
use crate::limits::{Activity, ConnectionLimits, Guarded, StallTimeout, Watched};
use crate::meta::{AccessKey, MetaStore, NewAccessKey};
use crate::metrics::{Metrics, Traffic};
use crate::s3::{Coffer, Limits};
use crate::storage::{BlobStore, spawn_collector};
use crate::tls::{CertificateReloader, TlsFiles};

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: `sqlite://<data_dir>/meta.db`.
    pub database_url: Option<String>,
    pub region: String,
    /// Base domain for virtual-hosted-style requests (`bucket.<domain>`).
    pub domain: Option<String>,
    /// Root access key id and secret; generated and stored on first start when `None`.
    pub root_credentials: Option<(String, String)>,
    /// Requests served at once before answering 503 SlowDown.
    pub max_in_flight: usize,
    /// Budget of the cache of current object versions (0: none), which serves
    /// only while this node is alone in the cluster (see `meta/cache.rs`).
    pub object_cache_bytes: usize,
    pub limits: Limits,
    pub gc_interval: Duration,
    /// How old an unreferenced blob file must be before it counts as an orphan.
    pub gc_grace: Duration,
    /// The length of a lifecycle "day" (a test knob: `COFFER_LIFECYCLE_DAY_SECONDS`)
    /// and how often the lifecycle worker runs.
    pub lifecycle_day: Duration,
    pub lifecycle_interval: Duration,
    /// This node's part in the storage cluster. An empty `advertise_url` means
    /// `http://<bound address>`.
    pub cluster: ClusterConfig,
    /// The master key (`COFFER_MASTER_KEY`); when `None`, read from
    /// `master_key_file`, else from `<data_dir>/master.key`, generated there on
    /// first start.
    pub master_key: Option<Key>,
    pub master_key_file: Option<PathBuf>,
    /// Whether SigV2-signed requests are accepted (legacy clients; see
    /// `auth/sigv2.rs` for the rules they meet).
    pub allow_sigv2: bool,
    /// Serve HTTPS with this certificate and key (re-read when they change).
    pub tls: Option<TlsFiles>,
    /// The cluster CA (`--peer-ca`): peers are reached over TLS and must
    /// present a certificate it issued. Needs `tls`.
    pub peer_ca: Option<PathBuf>,
    /// Bounds on what clients control (connections, slow heads, stalls).
    pub connection_limits: ConnectionLimits,
    /// Workload identity: trusted OIDC issuers and session bounds.
    pub sts: crate::sts::StsConfig,
    /// Default Object Ownership and the server-wide Block Public Access.
    pub access: crate::auth::grants::AccessDefaults,
    /// The web console's listener (off unless `console.listen` is set).
    pub console: crate::console::ConsoleConfig,
}

impl ServeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            data_dir: data_dir.into(),
            database_url: None,
            region: "us-east-1".to_owned(),
            domain: None,
            root_credentials: None,
            max_in_flight: 1024,
            object_cache_bytes: 32 << 20,
            limits: Limits::default(),
            gc_interval: Duration::from_secs(30),
            gc_grace: Duration::from_secs(3600),
            lifecycle_day: Duration::from_secs(86_400),
            lifecycle_interval: Duration::from_secs(3600),
            cluster: ClusterConfig::single(cluster::default_node_id(), ""),
            master_key: None,
            master_key_file: None,
            allow_sigv2: true,
            tls: None,
            peer_ca: None,
            connection_limits: ConnectionLimits::default(),
            sts: crate::sts::StsConfig::default(),
            access: Default::default(),
            console: crate::console::ConsoleConfig::default(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("meta.db").display()))
    }
}

/// Opens the metadata store a config names (creating the data dir for SQLite)
/// and unlocks it with the master key, generating one on first start when none
/// is configured. A key that does not match the store's is refused.
pub async fn open_meta(config: &ServeConfig) -> anyhow::Result<MetaStore> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let url = config.database_url();
    let mut meta = MetaStore::connect(&url)
        .await
        .with_context(|| format!("cannot open metadata store {}", redact(&url)))?;
    let (key, generated) = crypto::load_master_key(
        config.master_key.as_ref(),
        config.master_key_file.as_deref(),
        &config.data_dir,
    )?;
    if let Err(e) = meta.unlock(key).await {
        if let Some(path) = &generated {
            // A key made up just now for a store that already has one is of
            // no use; leave no file that looks like the store's key.
            let _ = std::fs::remove_file(path);
        }
        return Err(e).context("cannot unlock the metadata store with the master key");
    }
    if let Some(path) = generated {
        tracing::warn!(
            path = %path.display(),
            "generated a new master key: back it up, without it encrypted objects and \
             access-key secrets cannot be read (see docs/encryption.md)"
        );
    }
    Ok(meta)
}

/// Hides a password in a database URL for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The root key: from the configured credentials (replacing any other root key),
/// or the stored one, or a new one. The flag is true when it was just generated.
pub async fn ensure_root_key(
    meta: &MetaStore,
    configured: Option<&(String, String)>,
) -> anyhow::Result<(AccessKey, bool)> {
    let existing = meta.list_access_keys().await?;
    if let Some((id, secret)) = configured {
        for key in existing.iter().filter(|k| k.is_root) {
            if key.id == *id && key.secret == *secret {
                return Ok((key.clone(), false));
            }
            meta.delete_access_key(&key.id).await?;
        }
        if existing.iter().any(|k| k.id == *id && !k.is_root) {
            anyhow::bail!("access key {id} exists and is not the root key");
        }
        return match create_root_key(meta, Some((id.clone(), secret.clone()))).await {
            Ok(key) => Ok((key, false)),
            // Another node of the cluster, starting at the same time, was first.
            Err(e) => match meta.get_access_key(id).await? {
                Some(key) if key.is_root && key.secret == *secret => Ok((key, false)),
                _ => Err(e),
            },
        };
    }
    if let Some(root) = existing.into_iter().find(|k| k.is_root) {
        return Ok((root, false));
    }
    let key = create_root_key(meta, None).await?;
    Ok((key, true))
}

async fn create_root_key(
    meta: &MetaStore,
    credentials: Option<(String, String)>,
) -> anyhow::Result<AccessKey> {
    let key = meta
        .create_access_key(&NewAccessKey {
            name: "root".to_owned(),
            owner: "root".to_owned(),
            policy: None,
            is_root: true,
            credentials,
        })
        .await?;
    Ok(key)
}

/// A server running in this process.
pub struct RunningServer {
    local_addr: SocketAddr,
    root: AccessKey,
    root_generated: bool,
    meta: MetaStore,
    plane: DataPlane,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    tls: bool,
    draining: Arc<std::sync::atomic::AtomicBool>,
    app: axum::Router,
    console_addr: Option<SocketAddr>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Where the web console listens, when it does.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_addr
    }

    pub fn root_key(&self) -> &AccessKey {
        &self.root
    }

    /// Whether the root key was generated by this start (print it once).
    pub fn root_generated(&self) -> bool {
        self.root_generated
    }

    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// This node's local blob store.
    pub fn blobs(&self) -> &BlobStore {
        self.plane.local()
    }

    pub fn data_plane(&self) -> &DataPlane {
        &self.plane
    }

    /// The whole request path (front door, S3, peers) without a socket: what
    /// the accept loop hands each request to, for callers that bring their
    /// own `http::Request` (the fuzz targets). Requests must carry the
    /// extensions the accept loop adds (`http::with_peer`, [`Transport`]).
    pub fn app(&self) -> axum::Router {
        self.app.clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to 10 s), and returns.
    pub async fn shutdown(self) {
        self.drain(Duration::ZERO, Duration::from_secs(10)).await;
    }

    /// A shutdown a load balancer does not notice: readiness turns false at
    /// once while requests are still served for `delay` (long enough for the
    /// load balancer to stop routing here), then the listener closes and
    /// in-flight requests get up to `grace` to finish. Background work stops
    /// last; what it leaves half-done (a copy being healed) is redone elsewhere.
    pub async fn drain(self, delay: Duration, grace: Duration) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if !delay.is_zero() {
            tracing::info!(?delay, "draining: not ready, still serving");
            tokio::time::sleep(delay).await;
        }
        let _ = self.shutdown.send(true);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!(
                ?grace,
                "requests still running after the grace period were cut off"
            );
        }
        for worker in &self.workers {
            worker.abort();
        }
        // Bounded: a store that is down must not hold up the exit.
        match tokio::time::timeout(Duration::from_secs(2), self.meta.flush_key_use()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "access keys' last use not written at shutdown")
            }
            Err(_) => {
                tracing::debug!("access keys' last use not written at shutdown: the store is slow")
            }
        }
        self.meta.close().await;
    }

    /// Waits until the server stops on its own (it only does on shutdown).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Starts serving; returns once the listener is bound.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    // Before anything is opened: a bad certificate is a configuration error.
    let reloader = config
        .tls
        .clone()
        .map(CertificateReloader::load)
        .transpose()
        .context("cannot load the TLS certificate")?;
    let mut meta = open_meta(&config).await?;
    if config.object_cache_bytes > 0 {
        meta = meta.with_object_cache(config.object_cache_bytes);
    }
    let blobs = BlobStore::open(&config.data_dir)
        .with_context(|| format!("cannot open blob store in {}", config.data_dir.display()))?;
    let (root, root_generated) = ensure_root_key(&meta, config.root_credentials.as_ref()).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let mut cluster_config = config.cluster.clone();
    if cluster_config.advertise_url.is_empty() {
        cluster_config.advertise_url =
            default_advertise_url(local_addr, &cluster_config.node_id, reloader.is_some());
    }
    let peer_tls = peer_tls(&config, &cluster_config)?;
    cluster_config.peer_tls = peer_tls.clone().map(Arc::new);
    // Before joining: a node refused here leaves no member row behind.
    let members = cluster::View::new(
        &cluster_config.node_id,
        meta.list_nodes().await?,
        cluster_config.suspect_after(),
    );
    crate::tls::check_peers(&members, &cluster_config, peer_tls.as_ref()).await?;
    let view = cluster::join(&meta, &cluster_config).await?;
    let plane = DataPlane::new(cluster_config, meta.clone(), blobs, &config.data_dir, view)
        .with_context(|| format!("cannot prepare {}", config.data_dir.display()))?;

    let keyring = KeyRing::with_defaults(meta.clone(), config.access);
    let coffer = Coffer::new(
        meta.clone(),
        plane.clone(),
        config.region.clone(),
        config.limits.clone(),
        keyring.clone(),
        config.allow_sigv2,
    );
    let mut builder = S3ServiceBuilder::new(coffer);
    builder.set_auth(SignatureKeys(keyring.clone()));
    let sts = crate::sts::Sts::new(meta.clone(), keyring.clone(), &config.sts);
    builder.set_access(Authorizer::new(keyring.clone(), config.allow_sigv2));
    let mut s3_config = s3s::config::S3Config::default();
    // XML bodies: a 1000-key DeleteObjects or a 10,000-part completion fit in 4 MiB.
    s3_config.xml_max_body_size = 4 << 20;
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        s3_config,
    ))));
    let mut host = None;
    if let Some(domain) = &config.domain {
        let parse = || {
            s3s::host::SingleDomain::new(domain)
                .map_err(|e| anyhow::anyhow!("invalid --domain {domain}: {e}"))
        };
        builder.set_host(parse()?);
        // The CORS layer reads virtual-hosted buckets exactly as s3s does.
        host = Some(Arc::new(parse()?));
    }
    builder.set_route(crate::s3::data_protection::DataProtectionRoute::new(
        meta.clone(),
        keyring.clone(),
        config.allow_sigv2,
        host.clone(),
    ));
    let metrics = Arc::new(Metrics::new());
    let traffic = metrics.traffic();
    let front = FrontDoor {
        meta: meta.clone(),
        plane: plane.clone(),
        metrics: metrics.clone(),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        host,
        draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        sts,
    };
    let draining = front.draining.clone();
    let app = router(front, builder.build(), cluster::peer_router(plane.clone()));
    let console_tls = reloader
        .as_ref()
        .map(|r| tokio_rustls::TlsAcceptor::from(r.server_config()));
    let console = crate::console::start(
        &config.console,
        crate::console::S3Side {
            router: app.clone(),
            meta: meta.clone(),
            plane: plane.clone(),
            region: config.region.clone(),
            addr: local_addr,
        },
        console_tls,
    )
    .await?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let tls = reloader
        .as_ref()
        .map(|r| tokio_rustls::TlsAcceptor::from(r.server_config()));
    let task = tokio::spawn(accept_loop(
        listener,
        app.clone(),
        tls.clone(),
        config.connection_limits.clone(),
        traffic,
        shutdown_rx,
    ));
    let mut workers = cluster::spawn_workers(plane.clone());
    let console_addr = console.map(|(addr, task)| {
        workers.push(task);
        addr
    });
    if let Some(reloader) = reloader {
        workers.push(reloader.spawn());
    }
    let coordinator = plane.clone();
    workers.push(crate::lifecycle::spawn_worker(
        meta.clone(),
        config.lifecycle_day,
        config.lifecycle_interval,
        move || coordinator.is_coordinator(),
    ));
    workers.push(spawn_key_use_flush(meta.clone()));
    workers.push(spawn_collector(
        meta.clone(),
        plane.local().clone(),
        plane.node_id().to_owned(),
        config.gc_interval,
        config.gc_grace,
        120,
    ));
    tracing::info!(
        %local_addr,
        node = plane.node_id(),
        advertise = plane.config().advertise_url,
        region = %config.region,
        tls = tls.is_some(),
        data_dir = %config.data_dir.display(),
        "coffer serving S3"
    );
    Ok(RunningServer {
        local_addr,
        root,
        root_generated,
        meta,
        plane,
        shutdown,
        task,
        workers,
        tls: tls.is_some(),
        draining,
        app,
        console_addr,
    })
}

/// The TLS client config for peers, when this node serves TLS in a cluster;
/// refuses combinations that would leave peers unable to verify each other.
fn peer_tls(
    config: &ServeConfig,
    cluster: &ClusterConfig,
) -> anyhow::Result<Option<rustls::ClientConfig>> {
    match (&config.tls, &config.peer_ca) {
        (Some(files), Some(ca)) => {
            let peer = crate::tls::peer_client_config(ca)?;
            crate::tls::check_own_certificate(files, ca, &cluster.advertise_url)?;
            Ok(Some(peer))
        }
        (None, Some(_)) => anyhow::bail!(
            "--peer-ca needs --tls-cert and --tls-key: peers reach this node on its S3 port"
        ),
        (Some(_), None) if cluster.secret.is_some() => anyhow::bail!(
            "this node serves TLS in a cluster (a cluster secret is set): give it --peer-ca, \
             the CA that issued every node's certificate, so peers can verify each other"
        ),
        _ => Ok(None),
    }
}

/// How peers reach this node when `--advertise-url` is not given: the bound
/// address, or the host name when bound to all interfaces.
fn default_advertise_url(local_addr: SocketAddr, node_id: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if local_addr.ip().is_unspecified() {
        format!("{scheme}://{node_id}:{}", local_addr.port())
    } else {
        format!("{scheme}://{local_addr}")
    }
}

/// Whether a request came over TLS (`aws:SecureTransport`), inserted into every
/// request's extensions by the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub secure: bool,
}

/// `aws:SecureTransport` of a request: `"true"` only when it came over a TLS
/// connection this server terminated.
pub fn secure_transport(extensions: &http::Extensions) -> &'static str {
    match extensions.get::<Transport>() {
        Some(Transport { secure: true }) => "true",
        _ => "false",
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnectionLimits,
    traffic: Traffic,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = auto::Builder::new(TokioExecutor::new());
    // Header sections beyond this are refused by hyper itself (431); the front
    // door answers smaller oversize sections with an S3 error.
    http.http1().max_buf_size(256 * 1024);
    let http = Arc::new(http);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let limits = Arc::new(limits);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Over the limit: closed at once, so the client fails fast and retries
        // rather than waiting in the backlog.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: too many open connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            http: http.clone(),
            limits: limits.clone(),
            traffic: traffic.clone(),
            peer,
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            connection.serve(stream, tls).await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One accepted connection and what it needs to be served.
struct Connection {
    app: axum::Router,
    http: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<ConnectionLimits>,
    traffic: Traffic,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Connection {
    async fn serve(
        self,
        mut stream: tokio::net::TcpStream,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) {
        let activity = Activity::new();
        let Some(acceptor) = tls else {
            let io = Watched::new(stream, activity.clone(), self.traffic.clone());
            return self.serve_http(io, activity, false).await;
        };
        let handshake = async {
            if !crate::tls::starts_with_tls(&mut stream).await? {
                return Ok(None);
            }
            acceptor
                .accept(Watched::new(stream, activity.clone(), self.traffic.clone()))
                .await
                .map(Some)
        };
        match tokio::time::timeout(self.limits.handshake_timeout, handshake).await {
            Ok(Ok(Some(io))) => self.serve_http(io, activity, true).await,
            Ok(Ok(None)) => {
                tracing::debug!(peer = %self.peer, "plain HTTP on the TLS port refused");
            }
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    async fn serve_http<IO>(self, io: IO, activity: Arc<Activity>, secure: bool)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            http,
            limits,
            peer,
            watcher,
            ..
        } = self;
        let stall = limits.stall_timeout;
        let requests = activity.clone();
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let guard = requests.request_started();
                let mut request = with_peer(
                    request.map(|body| axum::body::Body::new(StallTimeout::new(body, stall))),
                    peer,
                );
                request.extensions_mut().insert(Transport { secure });
                let app = app.clone();
                async move {
                    let response = app.oneshot(request).await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| axum::body::Body::new(Guarded::new(body, guard))),
                    )
                }
            });
        let connection = http.serve_connection_with_upgrades(TokioIo::new(io), service);
        let connection = watcher.watch(connection.into_owned());
        tokio::pin!(connection);
        let mut check = tokio::time::interval(limits.check_interval());
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                result = &mut connection => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    return;
                }
                _ = check.tick() => {
                    if let Some(reason) = activity.expired(&limits) {
                        // Dropping the connection closes it; a request still in
                        // progress on it (only for ResponseNotRead) is cancelled.
                        tracing::debug!(?reason, %peer, "connection closed by a limit");
                        return;
                    }
                }
            }
        }
    }
}

/// Writes access keys' noted uses (the console's "last used") every
/// `KEY_USE_FLUSH_INTERVAL`; `drain` writes the rest.
fn spawn_key_use_flush(meta: MetaStore) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::meta::KEY_USE_FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = meta.flush_key_use().await {
                tracing::debug!(error = %e, "access keys' last use not written; kept for the next try");
            }
        }
    })
}
