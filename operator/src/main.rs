//! `coffer-operator`: `run` reconciles Bucket and AccessKey resources; `crdgen`
//! prints the CRD YAML that `crds/` holds.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coffer_operator::Settings;
use coffer_operator::run::{RunConfig, run};
use coffer_operator::tenancy::{NameClaim, NamespacePattern, RetainedAdoption, Tenancy};
use coffer_server::crypto::Key;

#[derive(Parser)]
#[command(
    name = "coffer-operator",
    version,
    about = "Coffer Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crdgen,
    /// Create the key Secrets that do not exist yet (random values); never
    /// change one that exists. The chart runs it as a pre-install hook.
    EnsureSecrets(EnsureSecretsArgs),
}

#[derive(clap::Args)]
struct EnsureSecretsArgs {
    /// Namespace of the Secrets.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: String,
    /// Secret for the master key (key `masterKey`).
    #[arg(long)]
    master_key_secret: Option<String>,
    /// Secret for the storage cluster's secret (key `secret`).
    #[arg(long)]
    cluster_secret: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Metadata store: postgres://... (or sqlite://PATH for a single-node setup).
    #[arg(long, env = "COFFER_DATABASE_URL")]
    database_url: String,
    /// S3 endpoint URL written into Secrets, as pods reach it.
    #[arg(long, env = "COFFER_S3_ENDPOINT")]
    s3_endpoint: String,
    /// Region written into Secrets and given to new buckets.
    #[arg(long, env = "COFFER_REGION", default_value = "us-east-1")]
    region: String,
    /// PEM file of the CA that signed the endpoint's certificate (private CA);
    /// copied into Secrets as `ca.crt`.
    #[arg(long, env = "COFFER_S3_CA_FILE")]
    s3_ca_file: Option<std::path::PathBuf>,
    /// Address of the health and metrics endpoints.
    #[arg(long, env = "COFFER_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Seconds between periodic reconciliations (usage refresh, drift repair).
    #[arg(long, env = "COFFER_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,
    /// Namespace of the leader-election Lease; leader election is off without it.
    #[arg(long, env = "COFFER_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, env = "COFFER_LEASE_NAME", default_value = "coffer-operator")]
    lease_name: String,
    /// This replica's identity in the Lease (defaults to the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// File holding the servers' master key (base64 of 32 bytes), which seals
    /// access-key secrets in the metadata store.
    #[arg(long, env = "COFFER_MASTER_KEY_FILE")]
    master_key_file: Option<std::path::PathBuf>,
    /// Namespaces whose Buckets may adopt (`adopt: true`) a bucket of unknown origin
    /// — one no Kubernetes resource ever owned, made with the CLI or through the S3
    /// API; comma-separated, `*` for every namespace. Default: none.
    #[arg(long, env = "COFFER_ADOPT_UNOWNED", value_delimiter = ',')]
    adopt_unowned: Vec<NamespacePattern>,
    /// `TO=FROM` pairs, comma-separated: Buckets in namespace TO may adopt buckets
    /// retained from namespace FROM (`*` for any). Default: only from their own.
    #[arg(long, env = "COFFER_ADOPT_RETAINED", value_delimiter = ',')]
    adopt_retained: Vec<RetainedAdoption>,
    /// `NAMESPACE=GLOB` pairs, comma-separated: Buckets in NAMESPACE (`*` for any)
    /// may also create buckets whose names match GLOB (`*`, `?`). Default: only
    /// `<namespace>` and `<namespace>.*`.
    #[arg(long, env = "COFFER_BUCKET_NAMES", value_delimiter = ',')]
    bucket_names: Vec<NameClaim>,
    /// The ServiceAccount token issuer the servers trust (their --oidc-issuer);
    /// enables `AccessKey.spec.workloadIdentity`.
    #[arg(long, env = "COFFER_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// The audience pods request for the projected token they exchange.
    #[arg(long, env = "COFFER_STS_AUDIENCE", default_value = "sts.coffer.dev")]
    sts_audience: String,
    /// The master key itself, base64 (prefer the environment variable).
    #[arg(
        long,
        env = "COFFER_MASTER_KEY",
        hide_env_values = true,
        conflicts_with = "master_key_file"
    )]
    master_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen => {
            print!("{}", coffer_operator::crd::crd_yaml()?);
            Ok(())
        }
        Command::EnsureSecrets(args) => ensure_secrets(args).await,
        Command::Run(args) => {
            let args = *args;
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let mut settings = Settings::new(args.s3_endpoint, args.region);
            settings.resync = Duration::from_secs(args.resync_seconds.max(1));
            settings.oidc_issuer = args.oidc_issuer;
            settings.sts_audience = args.sts_audience;
            settings.tenancy = Tenancy {
                adopt_unowned: args.adopt_unowned,
                adopt_retained: args.adopt_retained,
                bucket_names: args.bucket_names,
            };
            tracing::info!(tenancy = ?settings.tenancy, "tenancy rules beyond the defaults");
            if let Some(path) = &args.s3_ca_file {
                settings.ca_bundle = Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading CA bundle {}", path.display()))?,
                );
            }
            let identity = args
                .identity
                .unwrap_or_else(|| format!("coffer-operator-{}", std::process::id()));
            let master_key = match (&args.master_key, &args.master_key_file) {
                (Some(text), _) => {
                    Some(Key::from_base64(text).context("invalid COFFER_MASTER_KEY")?)
                }
                (None, Some(path)) => Some(
                    Key::from_base64(
                        &std::fs::read_to_string(path)
                            .with_context(|| format!("reading master key {}", path.display()))?,
                    )
                    .with_context(|| format!("invalid master key in {}", path.display()))?,
                ),
                (None, None) => None,
            };
            run(RunConfig {
                database_url: args.database_url,
                settings,
                listen: args.listen,
                lease: args.lease_namespace.map(|ns| (ns, args.lease_name)),
                identity,
                master_key,
            })
            .await
        }
    }
}

async fn ensure_secrets(args: EnsureSecretsArgs) -> anyhow::Result<()> {
    use coffer_operator::secrets::{GeneratedSecret, ensure};
    let wanted: Vec<GeneratedSecret> = [
        (args.master_key_secret, "masterKey"),
        (args.cluster_secret, "secret"),
    ]
    .into_iter()
    .filter_map(|(name, key)| {
        name.map(|name| GeneratedSecret {
            name,
            key: key.to_owned(),
        })
    })
    .collect();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    for (name, outcome) in ensure(client, &args.namespace, &wanted).await? {
        // Names only: the values never reach a log.
        println!("{name}: {outcome:?}");
    }
    Ok(())
}
