//! `coffer-server`: run the S3 server, or manage access keys in its metadata store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use coffer_server::cluster::{self, ClusterConfig, View};
use coffer_server::crypto::{self, Key};
use coffer_server::iam::PolicyDocument;
use coffer_server::limits::ConnectionLimits;
use coffer_server::meta::{NewAccessKey, NodeState, now_millis};

/// A node silent this long is stopped (a live one heartbeats at least every 2 s).
const NODE_REMOVE_SILENCE_MS: i64 = 10_000;
use coffer_server::serve::{self, ServeConfig};
use coffer_server::tls::TlsFiles;

mod kms_cli;

#[derive(Parser)]
#[command(
    name = "coffer-server",
    version,
    about = "S3-compatible object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the S3 API.
    Serve(Box<ServeArgs>),
    /// Manage access keys.
    Key {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Inspect and manage the storage cluster's nodes.
    Node {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Bucket settings that only Coffer has.
    Bucket {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// Manage IAM roles that STS issues temporary credentials for (see docs/sts.md).
    Role {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: RoleCommand,
    },
    /// Manage the master key (see docs/encryption.md).
    MasterKey {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: MasterKeyCommand,
    },
    /// Manage the built-in key service's SSE-KMS keys (see docs/encryption.md).
    Kms {
        #[command(flatten)]
        store: StoreArgs,
        /// The region in the keys' ARNs (as `serve --region`).
        #[arg(
            long,
            env = "COFFER_REGION",
            default_value = "us-east-1",
            global = true
        )]
        region: String,
        #[command(subcommand)]
        command: kms_cli::KmsCommand,
    },
}

#[derive(Subcommand)]
enum MasterKeyCommand {
    /// Print a new random master key (base64), for a key file or a Secret.
    Generate,
    /// Re-wrap every SSE-S3 data key and access-key secret under a new master
    /// key, in one transaction. Stop every server and the operator first.
    Rotate {
        /// File holding the new key (base64 of 32 bytes).
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Show or set how a bucket's new objects are stored: `erasure:K+M`,
    /// `replicas`, or `default` (the cluster's --erasure, else replicas).
    DataProtection {
        bucket: String,
        /// The new setting; without it, the current one is printed.
        scheme: Option<String>,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Nodes, their liveness, the replicas they hold and healing progress.
    List {
        /// Heartbeats older than this many seconds count as dead (as `--dead-after`).
        #[arg(long, env = "COFFER_DEAD_AFTER", default_value_t = 300)]
        dead_after: u64,
    },
    /// Stop placing data on a node and move its replicas away.
    Drain { id: String },
    /// Take a drained node back into placement.
    Activate { id: String },
    /// Forget a node (after it drained, or when its volume is lost for good).
    Remove { id: String },
}

/// Where the data and metadata live.
#[derive(Args, Clone)]
struct StoreArgs {
    /// Directory for object data (and the SQLite metadata file by default).
    #[arg(long, env = "COFFER_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
    /// Metadata store: sqlite://PATH or postgres://... (default sqlite://<data-dir>/meta.db).
    #[arg(long, env = "COFFER_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// File holding the master key (base64 of 32 bytes) that encrypts data keys
    /// and access-key secrets (default: <data-dir>/master.key, generated on first start).
    #[arg(long, env = "COFFER_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<PathBuf>,
    /// The master key itself, base64 (prefer the environment variable).
    #[arg(
        long,
        env = "COFFER_MASTER_KEY",
        hide_env_values = true,
        global = true,
        conflicts_with = "master_key_file"
    )]
    master_key: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "COFFER_LISTEN", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Region reported to clients and expected in signatures.
    #[arg(long, env = "COFFER_REGION", default_value = "us-east-1")]
    region: String,
    #[command(flatten)]
    oidc: OidcArgs,
    /// Base domain for virtual-hosted-style requests (bucket.DOMAIN).
    #[arg(long, env = "COFFER_DOMAIN")]
    domain: Option<String>,
    /// Root access key id (generated on first start when unset).
    #[arg(
        long,
        env = "COFFER_ROOT_ACCESS_KEY",
        hide_env_values = true,
        requires = "root_secret_key"
    )]
    root_access_key: Option<String>,
    /// Root secret key.
    #[arg(
        long,
        env = "COFFER_ROOT_SECRET_KEY",
        hide_env_values = true,
        requires = "root_access_key"
    )]
    root_secret_key: Option<String>,
    /// Requests served at once before answering 503 SlowDown.
    #[arg(long, env = "COFFER_MAX_IN_FLIGHT", default_value_t = 1024)]
    max_in_flight: usize,
    /// MiB of memory for caching current object versions (small objects with
    /// their bytes) for GET and HEAD; used only while this node is the
    /// cluster's only member. 0 turns it off.
    #[arg(long, env = "COFFER_OBJECT_CACHE_MIB", default_value_t = 32)]
    object_cache_mib: usize,
    /// Length of a lifecycle "day" in seconds. A test knob: lifecycle rules count
    /// days in these units, and the worker runs ten times per day (at most hourly).
    #[arg(long, env = "COFFER_LIFECYCLE_DAY_SECONDS", default_value_t = 86_400)]
    lifecycle_day_seconds: u64,
    /// Refuse Signature Version 2 (header-signed requests, presigned URLs and
    /// POST forms), as AWS does for buckets created since 2020. Accepted by
    /// default for legacy clients (aws CLI v1 and boto3 presign with it).
    #[arg(long, env = "COFFER_DISABLE_SIGV2")]
    disable_sigv2: bool,
    /// Seconds between SIGTERM and closing the listener: /health/ready answers
    /// 503 at once while requests are still served, so a Kubernetes Service
    /// stops routing here first (longer than the readiness probe period plus
    /// endpoint propagation). Ctrl-C (SIGINT) skips it.
    #[arg(long, env = "COFFER_SHUTDOWN_DELAY", default_value_t = 5)]
    shutdown_delay: u64,
    /// Seconds in-flight requests may take to finish once the listener is
    /// closed (keep delay + grace below the pod's terminationGracePeriodSeconds).
    #[arg(long, env = "COFFER_SHUTDOWN_GRACE", default_value_t = 25)]
    shutdown_grace: u64,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    access: AccessArgs,
    #[command(flatten)]
    console: ConsoleArgs,
}

/// HTTPS on the S3 port (see docs/security.md).
#[derive(Args)]
struct TlsArgs {
    /// PEM certificate chain (leaf first), e.g. cert-manager's tls.crt. Serves
    /// HTTPS only; the file is re-read every few seconds, so a renewed
    /// certificate is used by new connections without a restart.
    #[arg(long, env = "COFFER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC), e.g. cert-manager's tls.key.
    #[arg(long, env = "COFFER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The cluster CA (PEM): with it, peers talk to each other over TLS on
    /// their S3 ports, and every node's certificate (--tls-cert) must be issued
    /// by this CA and name the host of its --advertise-url. Required for a TLS
    /// node with a cluster secret; the HMAC stays on top.
    #[arg(long, env = "COFFER_PEER_CA", requires = "tls_cert")]
    peer_ca: Option<PathBuf>,
}

/// Bounds on what a client controls (see docs/security.md).
#[derive(Args)]
struct LimitArgs {
    /// Open client connections at most; more are closed as soon as accepted.
    #[arg(long, env = "COFFER_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Seconds a TLS handshake may take.
    #[arg(long, env = "COFFER_TLS_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    tls_handshake_timeout: u64,
    /// Seconds from a connection's first byte (or its previous response) to a
    /// complete request head; slower connections (slowloris) are closed.
    #[arg(long, env = "COFFER_HEADER_TIMEOUT", default_value_t = 15)]
    header_timeout: u64,
    /// Seconds a keep-alive connection may sit idle between requests.
    #[arg(long, env = "COFFER_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds an upload body may deliver nothing (the upload is aborted and
    /// nothing is kept), or a client may take nothing of a response.
    #[arg(long, env = "COFFER_STALL_TIMEOUT", default_value_t = 60)]
    stall_timeout: u64,
}

/// Identity providers trusted by STS AssumeRoleWithWebIdentity.
#[derive(Args)]
struct OidcArgs {
    /// Trusted OIDC issuer URL (repeatable; the Nth pairs with the Nth --oidc-jwks).
    #[arg(
        long = "oidc-issuer",
        env = "COFFER_OIDC_ISSUER",
        value_delimiter = ','
    )]
    oidc_issuer: Vec<String>,
    /// The issuer's signing keys: a JWKS file or URL (repeatable).
    #[arg(long = "oidc-jwks", env = "COFFER_OIDC_JWKS", value_delimiter = ',')]
    oidc_jwks: Vec<String>,
    /// Extra CA certificates (PEM) for JWKS URLs, e.g. the in-cluster CA.
    #[arg(
        long = "oidc-ca-file",
        env = "COFFER_OIDC_CA_FILE",
        value_delimiter = ','
    )]
    oidc_ca_file: Vec<PathBuf>,
    /// A bearer token file sent to JWKS URLs (the pod's own ServiceAccount token).
    #[arg(long = "oidc-token-file", env = "COFFER_OIDC_TOKEN_FILE")]
    oidc_token_file: Option<PathBuf>,
}

impl OidcArgs {
    fn into_config(self) -> anyhow::Result<coffer_server::sts::StsConfig> {
        use coffer_server::sts::{IssuerConfig, JwksFetch, JwksSource, StsConfig};
        if self.oidc_issuer.len() != self.oidc_jwks.len() {
            anyhow::bail!("give one --oidc-jwks for each --oidc-issuer, in the same order");
        }
        let issuers = self
            .oidc_issuer
            .into_iter()
            .zip(self.oidc_jwks)
            .map(|(issuer, jwks)| IssuerConfig {
                issuer,
                jwks: JwksSource::parse(&jwks),
            })
            .collect();
        Ok(StsConfig {
            issuers,
            jwks_fetch: JwksFetch {
                ca_files: self.oidc_ca_file,
                bearer_token_file: self.oidc_token_file,
            },
            ..StsConfig::default()
        })
    }
}

impl LimitArgs {
    fn into_limits(self) -> ConnectionLimits {
        let secs = |s: u64| Duration::from_secs(s.max(1));
        ConnectionLimits {
            max_connections: self.max_connections.max(1),
            handshake_timeout: secs(self.tls_handshake_timeout),
            header_timeout: secs(self.header_timeout),
            idle_timeout: secs(self.idle_timeout),
            stall_timeout: secs(self.stall_timeout),
        }
    }
}

/// How this server takes part in a storage cluster (servers sharing one
/// metadata store).
#[derive(Args)]
struct ClusterArgs {
    /// This node's id (default: the host name).
    #[arg(long, env = "COFFER_NODE_ID")]
    node_id: Option<String>,
    /// How peers reach this node (default: http://<listen address>).
    #[arg(long, env = "COFFER_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Failure domain; replicas spread across zones first.
    #[arg(long, env = "COFFER_ZONE", default_value = "default")]
    zone: String,
    /// Copies of every blob (capped at the number of live nodes).
    #[arg(long, env = "COFFER_REPLICAS", default_value_t = 3)]
    replicas: usize,
    /// Copies fsync'd before a write is acknowledged (default: a majority).
    #[arg(long, env = "COFFER_WRITE_QUORUM")]
    write_quorum: Option<usize>,
    /// Seconds without heartbeats before a node is dead and its data re-replicated.
    #[arg(long, env = "COFFER_DEAD_AFTER", default_value_t = 300)]
    dead_after: u64,
    /// Seconds between heal passes (repair and rebalance).
    #[arg(long, env = "COFFER_HEAL_INTERVAL", default_value_t = 30)]
    heal_interval: u64,
    /// Seconds between scrub passes over every local replica.
    #[arg(long, env = "COFFER_SCRUB_INTERVAL", default_value_t = 86400)]
    scrub_interval: u64,
    /// MiB/s the healer may copy, and the scrubber read.
    #[arg(long, env = "COFFER_HEAL_RATE", default_value_t = 128)]
    heal_rate: u64,
    #[arg(long, env = "COFFER_SCRUB_RATE", default_value_t = 32)]
    scrub_rate: u64,
    /// Authenticates node-to-node traffic; the same on every node. Without it a
    /// node refuses to join a cluster.
    #[arg(
        long = "cluster-secret",
        env = "COFFER_CLUSTER_SECRET",
        hide_env_values = true
    )]
    secret: Option<String>,
    /// Erasure-code new blobs as K data + M parity shards on K+M nodes (e.g.
    /// 4+2); unset: replicate them.
    #[arg(long, env = "COFFER_ERASURE")]
    erasure: Option<cluster::Erasure>,
    /// Bytes below which a blob stays replicated (or inline) under --erasure.
    #[arg(long, env = "COFFER_ERASURE_MIN_SIZE", default_value_t = cluster::erasure::DEFAULT_MIN_SIZE)]
    erasure_min_size: u64,
}

impl ClusterArgs {
    fn into_config(self) -> ClusterConfig {
        let mut config = ClusterConfig::single(
            self.node_id.unwrap_or_else(cluster::default_node_id),
            self.advertise_url.unwrap_or_default(),
        );
        // Empty when the chart's topology label is missing.
        config.zone = match self.zone.trim() {
            "" => "default".to_owned(),
            zone => zone.to_owned(),
        };
        config.replicas = self.replicas.max(1);
        config.write_quorum = self.write_quorum.map(|w| w.max(1));
        config.dead_after = Duration::from_secs(self.dead_after.max(1));
        config.heal_interval = Duration::from_secs(self.heal_interval.max(1));
        config.scrub_interval = Duration::from_secs(self.scrub_interval.max(1));
        config.heal_rate = self.heal_rate.max(1) << 20;
        config.scrub_rate = self.scrub_rate.max(1) << 20;
        config.secret = self.secret.filter(|s| !s.is_empty());
        config.erasure = self.erasure;
        config.erasure_min_size = self.erasure_min_size;
        config
    }
}

#[derive(Subcommand)]
enum RoleCommand {
    /// Create a role and print its ARN.
    Create {
        name: String,
        /// IAM permission policy (JSON) of the role's sessions.
        #[arg(long)]
        policy: PathBuf,
        /// IAM trust policy (JSON): who may assume the role.
        #[arg(long)]
        trust: PathBuf,
        /// Longest session the role allows, in seconds (3600..43200).
        #[arg(long, default_value_t = 3600)]
        max_session_duration: i64,
    },
    /// List roles.
    List,
    /// Delete a role; its sessions stop working within seconds.
    Delete { name: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an access key and print its id and secret.
    Create {
        name: String,
        /// IAM policy document (JSON) scoping what the key may do.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// List access keys (without secrets).
    List,
    /// Delete an access key.
    Delete { id: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(coffer_server::logging::filter(
            std::env::var("COFFER_LOG").ok().as_deref(),
        ))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => run_serve(*args).await,
        Command::Key { store, command } => run_key(store, command).await,
        Command::Node { store, command } => run_node(store, command).await,
        Command::Bucket { store, command } => run_bucket(store, command).await,
        Command::MasterKey { store, command } => run_master_key(store, command).await,
        Command::Role { store, command } => run_role(store, command).await,
        Command::Kms {
            store,
            region,
            command,
        } => {
            let meta = serve::open_meta(&config_of(&store)?).await?;
            kms_cli::run(meta, region, command).await
        }
    }
}

fn config_of(store: &StoreArgs) -> anyhow::Result<ServeConfig> {
    let mut config = ServeConfig::new(store.data_dir.clone());
    config.database_url = store.database_url.clone();
    config.master_key = store
        .master_key
        .as_deref()
        .map(Key::from_base64)
        .transpose()
        .context("invalid COFFER_MASTER_KEY")?;
    config.master_key_file = store.master_key_file.clone();
    Ok(config)
}

async fn run_master_key(store: StoreArgs, command: MasterKeyCommand) -> anyhow::Result<()> {
    match command {
        MasterKeyCommand::Generate => {
            println!("{}", Key::random().to_base64());
            Ok(())
        }
        MasterKeyCommand::Rotate { new_key_file } => {
            let config = config_of(&store)?;
            let new = Key::from_base64(
                &std::fs::read_to_string(&new_key_file)
                    .with_context(|| format!("cannot read {}", new_key_file.display()))?,
            )?;
            let mut meta = serve::open_meta(&config).await?;
            let rewrapped = meta.rotate_master_key(new.clone()).await?;
            meta.close().await;
            println!("Re-wrapped {rewrapped} data keys and every access-key secret.");
            if config.master_key.is_none() && config.master_key_file.is_none() {
                // The default key file: replace it, so the next start finds the new key.
                let path = config.data_dir.join("master.key");
                let staged = config.data_dir.join("master.key.new");
                let _ = std::fs::remove_file(&staged);
                crypto::write_key_file(&staged, &new)?;
                std::fs::rename(&staged, &path)
                    .with_context(|| format!("cannot replace {}", path.display()))?;
                println!("{} now holds the new key.", path.display());
            } else {
                println!(
                    "Now give every server and the operator the new key (COFFER_MASTER_KEY or \
                     --master-key-file) before starting them again."
                );
            }
            Ok(())
        }
    }
}

/// The web console (see docs/console.md).
#[derive(Args)]
struct ConsoleArgs {
    /// Address of the web console, or `off` (default 127.0.0.1:9001). HTTPS
    /// with the S3 port's certificate when --tls-cert is given.
    #[arg(long, env = "COFFER_CONSOLE_LISTEN")]
    console_listen: Option<String>,
    /// How browsers reach the S3 endpoint, for the console's shared links
    /// (default: the console's host name with the S3 port).
    #[arg(long, env = "COFFER_CONSOLE_S3_URL")]
    console_s3_url: Option<String>,
}

impl ConsoleArgs {
    fn into_config(self) -> anyhow::Result<coffer_server::console::ConsoleConfig> {
        let mut config = coffer_server::console::ConsoleConfig {
            s3_url: self.console_s3_url,
            ..Default::default()
        };
        match self.console_listen.as_deref().map(str::trim) {
            Some("off") => {}
            Some(addr) => {
                config.listen = Some(
                    addr.parse()
                        .with_context(|| format!("invalid --console-listen {addr:?}"))?,
                );
            }
            None => {
                config.listen = Some(SocketAddr::from(([127, 0, 0, 1], 9001)));
                config.required = false;
            }
        }
        Ok(config)
    }
}

async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = config_of(&args.store)?;
    config.listen = args.listen;
    config.region = args.region;
    config.domain = args.domain;
    config.max_in_flight = args.max_in_flight.max(1);
    config.object_cache_bytes = args.object_cache_mib << 20;
    config.lifecycle_day = Duration::from_secs(args.lifecycle_day_seconds.max(1));
    config.allow_sigv2 = !args.disable_sigv2;
    config.access = args.access.into_defaults();
    let delay = Duration::from_secs(args.shutdown_delay);
    let grace = Duration::from_secs(args.shutdown_grace.max(1));
    config.lifecycle_interval =
        (config.lifecycle_day / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    config.root_credentials = args.root_access_key.zip(args.root_secret_key);
    config.cluster = args.cluster.into_config();
    config.tls = args
        .tls
        .tls_cert
        .zip(args.tls.tls_key)
        .map(|(cert, key)| TlsFiles::new(cert, key));
    config.peer_ca = args.tls.peer_ca;
    config.connection_limits = args.limits.into_limits();
    config.sts = args.oidc.into_config()?;
    config.console = args.console.into_config()?;
    let mut server = serve::start(config).await?;
    if server.root_generated() {
        let root = server.root_key();
        println!("Generated root credentials (shown once; stored in the metadata store):");
        println!("  AWS_ACCESS_KEY_ID={}", root.id);
        println!("  AWS_SECRET_ACCESS_KEY={}", root.secret);
    }
    println!("Coffer S3 endpoint: {}", server.endpoint());
    if let Some(addr) = server.console_addr() {
        let scheme = server
            .endpoint()
            .split("://")
            .next()
            .unwrap_or("http")
            .to_owned();
        println!("Coffer console: {scheme}://{addr}");
    }
    tokio::select! {
        _ = server.wait() => {}
        signal = shutdown_signal() => {
            let delay = if signal == Signal::Terminate { delay } else { Duration::ZERO };
            tracing::info!(?signal, "shutting down");
            server.drain(delay, grace).await;
        }
    }
    Ok(())
}

/// How the server was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Ctrl-C: someone at a terminal, no load balancer to wait for.
    Interrupt,
    /// SIGTERM: Kubernetes (or systemd) stopping the process.
    Terminate,
}

async fn shutdown_signal() -> Signal {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return Signal::Interrupt;
                }
            };
        tokio::select! {
            _ = ctrl_c => Signal::Interrupt,
            _ = term.recv() => Signal::Terminate,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        Signal::Interrupt
    }
}

async fn run_key(store: StoreArgs, command: KeyCommand) -> anyhow::Result<()> {
    let meta = serve::open_meta(&config_of(&store)?).await?;
    match command {
        KeyCommand::Create { name, policy } => {
            let policy = match policy {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    PolicyDocument::parse(&text)
                        .with_context(|| format!("invalid policy in {}", path.display()))?;
                    Some(text)
                }
                None => None,
            };
            let key = meta
                .create_access_key(&NewAccessKey {
                    name,
                    owner: "cli".to_owned(),
                    policy,
                    is_root: false,
                    credentials: None,
                })
                .await?;
            println!("AccessKeyId: {}", key.id);
            println!("SecretAccessKey: {}", key.secret);
        }
        KeyCommand::List => {
            println!(
                "{:<24} {:<24} {:<6} {:<8} CREATED",
                "ACCESS KEY ID", "NAME", "ROOT", "POLICY"
            );
            for key in meta.list_access_keys().await? {
                let created = coffer_server::meta::millis_to_datetime(key.created_at)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<24} {:<6} {:<8} {}",
                    key.id,
                    key.name,
                    if key.is_root { "yes" } else { "no" },
                    if key.policy.is_some() { "yes" } else { "none" },
                    created
                );
            }
        }
        KeyCommand::Delete { id } => {
            meta.delete_access_key(&id).await?;
            println!("Deleted access key {id}");
        }
    }
    meta.close().await;
    Ok(())
}

async fn run_role(store: StoreArgs, command: RoleCommand) -> anyhow::Result<()> {
    use coffer_server::sts::{self, trust};
    let meta = serve::open_meta(&config_of(&store)?).await?;
    match command {
        RoleCommand::Create {
            name,
            policy,
            trust: trust_file,
            max_session_duration,
        } => {
            if !trust::valid_role_name(&name) {
                anyhow::bail!("invalid role name {name:?} (1-64 of A-Za-z0-9+=,.@_-)");
            }
            if !(sts::DEFAULT_MAX_SESSION_SECS..=sts::MAX_MAX_SESSION_SECS)
                .contains(&max_session_duration)
            {
                anyhow::bail!("--max-session-duration must be between 3600 and 43200");
            }
            let read = |path: &PathBuf| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            let policy_text = read(&policy)?;
            PolicyDocument::parse(&policy_text)
                .with_context(|| format!("invalid policy in {}", policy.display()))?;
            let trust_text = read(&trust_file)?;
            trust::parse(&trust_text)
                .with_context(|| format!("invalid trust policy in {}", trust_file.display()))?;
            let role = meta
                .put_role(
                    &coffer_server::meta::NewRole {
                        name,
                        policy: policy_text,
                        trust: trust_text,
                        max_session_seconds: max_session_duration,
                        owner: "cli".to_owned(),
                    },
                    false,
                )
                .await?;
            println!("{}", trust::role_arn(&role.name));
        }
        RoleCommand::List => {
            println!("{:<32} {:<10} {:<24} ARN", "NAME", "MAX-SECS", "OWNER");
            for role in meta.list_roles().await? {
                println!(
                    "{:<32} {:<10} {:<24} {}",
                    role.name,
                    role.max_session_seconds,
                    role.owner,
                    trust::role_arn(&role.name)
                );
            }
        }
        RoleCommand::Delete { name } => {
            meta.delete_role(&name).await?;
            println!("Deleted role {name}; its sessions stop working within seconds.");
        }
    }
    meta.close().await;
    Ok(())
}

async fn run_bucket(store: StoreArgs, command: BucketCommand) -> anyhow::Result<()> {
    use coffer_server::meta::{DATA_PROTECTION, DataProtection};
    let meta = serve::open_meta(&config_of(&store)?).await?;
    match command {
        BucketCommand::DataProtection { bucket, scheme } => {
            let document = match scheme.as_deref().map(str::trim) {
                None => {
                    let settings = meta
                        .bucket_with_configs(&bucket, &[DATA_PROTECTION])
                        .await?;
                    match settings.data_protection() {
                        Some(setting) => println!("{setting}"),
                        None => println!("default"),
                    }
                    return Ok(());
                }
                Some("default") => None,
                Some(text) => Some(
                    text.parse::<DataProtection>()
                        .map_err(anyhow::Error::msg)?
                        .to_document(),
                ),
            };
            meta.set_bucket_config(&bucket, DATA_PROTECTION, document.as_deref())
                .await?;
            // Servers pick the change up within seconds (their settings cache).
            println!("{bucket}: {}", scheme.unwrap_or_default().trim());
        }
    }
    Ok(())
}

/// Bytes in GiB with one decimal, for `node list`.
fn gib(bytes: u64) -> String {
    format!("{:.1}G", bytes as f64 / f64::from(1u32 << 30))
}

async fn run_node(store: StoreArgs, command: NodeCommand) -> anyhow::Result<()> {
    let meta = serve::open_meta(&config_of(&store)?).await?;
    match command {
        NodeCommand::List { dead_after } => {
            let dead_after = Duration::from_secs(dead_after.max(1));
            let nodes = meta.list_nodes().await?;
            let counts = meta.replica_counts().await?;
            let mut config = ClusterConfig::single("", "");
            config.dead_after = dead_after;
            // Seen from outside the cluster: no node is "me".
            let view = View::new("", nodes, config.suspect_after());
            println!(
                "{:<16} {:<9} {:<8} {:<10} {:>9} {:>12} {:>8} {:>12} {:>14} {:>12} {:>17}  URL",
                "NODE",
                "STATE",
                "LIVENESS",
                "ZONE",
                "BLOBS",
                "BYTES",
                "UNDER",
                "TO-MOVE",
                "SHARDS-AT-RISK",
                "DATA-AT-RISK",
                "VOLUME-FREE/SIZE"
            );
            for node in &view.nodes {
                let (blobs, bytes) = counts
                    .iter()
                    .find(|(id, _, _)| *id == node.id)
                    .map(|(_, b, s)| (*b, *s))
                    .unwrap_or((0, 0));
                let liveness = view.liveness(node, dead_after);
                let volume = match node.progress.volume_bytes {
                    0 => "-".to_owned(),
                    size => format!(
                        "{}/{}",
                        gib(node.progress.volume_available_bytes),
                        gib(size)
                    ),
                };
                println!(
                    "{:<16} {:<9} {:<8} {:<10} {:>9} {:>12} {:>8} {:>12} {:>14} {:>12} {:>17}  {}",
                    node.id,
                    node.state.as_str(),
                    liveness.as_str(),
                    node.zone,
                    blobs,
                    bytes,
                    node.progress.under_replicated,
                    node.progress.bytes_to_move,
                    node.progress.shards_at_risk,
                    node.progress.data_at_risk,
                    volume,
                    node.url
                );
            }
        }
        NodeCommand::Drain { id } => {
            meta.set_node_state(&id, NodeState::Draining).await?;
            println!("Node {id} is draining: its replicas move to other nodes; watch `node list`.");
        }
        NodeCommand::Activate { id } => {
            meta.set_node_state(&id, NodeState::Active).await?;
            println!("Node {id} takes new data again.");
        }
        NodeCommand::Remove { id } => {
            // A running node must be stopped first: until it sees that it was
            // removed it would still write, unseen by a node that believes it
            // is alone and serves reads from its cache.
            if let Some(node) = meta.list_nodes().await?.into_iter().find(|n| n.id == id) {
                let silent = now_millis() - node.heartbeat_at;
                if silent < NODE_REMOVE_SILENCE_MS {
                    anyhow::bail!(
                        "node {id} heartbeated {:.1} s ago: stop it before removing it \
                         (drain it first to move its replicas away)",
                        silent as f64 / 1000.0
                    );
                }
            }
            let held = meta
                .replica_counts()
                .await?
                .into_iter()
                .find(|(node, _, _)| *node == id)
                .map_or(0, |(_, blobs, _)| blobs);
            meta.remove_node(&id).await?;
            println!(
                "Removed node {id} ({held} replicas it held are re-created elsewhere if needed)."
            );
        }
    }
    meta.close().await;
    Ok(())
}

/// Who may see what, server-wide (see docs/s3-compatibility.md, ACLs).
#[derive(Args)]
struct AccessArgs {
    /// Object Ownership of buckets created without `x-amz-object-ownership`:
    /// BucketOwnerEnforced (ACLs off, AWS's default), BucketOwnerPreferred or
    /// ObjectWriter (ACLs on, for applications that send `x-amz-acl`).
    #[arg(
        long,
        env = "COFFER_DEFAULT_OBJECT_OWNERSHIP",
        default_value = "BucketOwnerEnforced",
        value_parser = parse_object_ownership
    )]
    default_object_ownership: coffer_server::meta::ObjectOwnership,
    /// Block Public Access on every bucket, whatever its own settings: no
    /// public ACL or bucket policy can be set or take effect.
    #[arg(long, env = "COFFER_BLOCK_PUBLIC_ACCESS")]
    block_public_access: bool,
}

impl AccessArgs {
    fn into_defaults(self) -> coffer_server::auth::grants::AccessDefaults {
        coffer_server::auth::grants::AccessDefaults {
            object_ownership: self.default_object_ownership,
            block_public_access: self.block_public_access,
        }
    }
}

fn parse_object_ownership(text: &str) -> Result<coffer_server::meta::ObjectOwnership, String> {
    coffer_server::meta::ObjectOwnership::parse(text).ok_or_else(|| {
        "expected BucketOwnerEnforced, BucketOwnerPreferred or ObjectWriter".to_owned()
    })
}
