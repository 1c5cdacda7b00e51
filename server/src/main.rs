//! `coffer-server`: run the S3 server, or manage access keys in its metadata store.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use coffer_server::iam::PolicyDocument;
use coffer_server::meta::NewAccessKey;
use coffer_server::serve::{self, ServeConfig};

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
    Serve(ServeArgs),
    /// Manage access keys.
    Key {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: KeyCommand,
    },
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
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
                .unwrap_or_else(|_| "info,s3s=warn,s3s::ops=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => run_serve(args).await,
        Command::Key { store, command } => run_key(store, command).await,
    }
}

fn config_of(store: &StoreArgs) -> ServeConfig {
    let mut config = ServeConfig::new(store.data_dir.clone());
    config.database_url = store.database_url.clone();
    config
}

async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = config_of(&args.store);
    config.listen = args.listen;
    config.region = args.region;
    config.domain = args.domain;
    config.max_in_flight = args.max_in_flight.max(1);
    config.root_credentials = args.root_access_key.zip(args.root_secret_key);
    let mut server = serve::start(config).await?;
    if server.root_generated() {
        let root = server.root_key();
        println!("Generated root credentials (shown once; stored in the metadata store):");
        println!("  AWS_ACCESS_KEY_ID={}", root.id);
        println!("  AWS_SECRET_ACCESS_KEY={}", root.secret);
    }
    println!("Coffer S3 endpoint: {}", server.endpoint());
    tokio::select! {
        _ = server.wait() => {}
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            server.shutdown().await;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run_key(store: StoreArgs, command: KeyCommand) -> anyhow::Result<()> {
    let meta = serve::open_meta(&config_of(&store)).await?;
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
