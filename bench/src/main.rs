//! `coffer-bench run ...` drives an S3 endpoint; `coffer-bench baseline ...`
//! measures the machine. See docs/benchmarks.md.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coffer_bench::stats::Report;
use coffer_bench::workload::{Workload, WorkloadConfig};
use coffer_bench::{baseline, client, parse_duration, parse_size};

#[derive(Parser)]
#[command(name = "coffer-bench", version, about = "Benchmark any S3 endpoint")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workload against an endpoint.
    Run(Box<RunArgs>),
    /// Measure a machine baseline alone.
    Baseline {
        #[command(subcommand)]
        kind: BaselineKind,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Clone)]
enum BaselineKind {
    /// MD5, SHA-256, CRC32C on one core.
    Hash,
    /// Reed–Solomon encoding and reconstruction (`reed-solomon-simd`, the coder
    /// `--erasure` uses) on one core, 1 MiB chunks.
    Erasure {
        /// The scheme K+M.
        #[arg(long, default_value = "4+2")]
        scheme: String,
    },
    /// Sequential writes with fsync per file, then reads, in DIR.
    Disk {
        dir: PathBuf,
        #[arg(long, default_value = "64", value_name = "N")]
        files: usize,
        #[arg(long, default_value = "16MiB", value_parser = parse_size)]
        file_size: usize,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:9000"
    )]
    endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// PEM CA certificates to trust for an https endpoint (a private CA);
    /// without it, the system's roots.
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
    #[arg(long, default_value = "coffer-bench")]
    bucket: String,
    #[arg(long, value_enum, default_value = "mixed")]
    workload: Workload,
    /// Object size, e.g. 4KiB, 10MiB.
    #[arg(long, default_value = "10MiB", value_parser = parse_size)]
    size: usize,
    #[arg(long, default_value = "20")]
    concurrency: usize,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: std::time::Duration,
    /// Stop after this many operations (or the duration, whichever is first).
    #[arg(long)]
    ops: Option<u64>,
    /// Objects to prefill for get/head/delete/list/mixed.
    #[arg(long, default_value = "2500")]
    objects: usize,
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// List with delimiter "/".
    #[arg(long)]
    delimiter: bool,
    /// The bucket already holds the --objects keys (`<prefix><NN>/obj-<8 digits>`,
    /// NN = index % 100): skip the prefill PUTs.
    #[arg(long)]
    prefilled: bool,
    #[arg(long, default_value = "5MiB", value_parser = parse_size)]
    part_size: usize,
    /// Also run the workload against a minimal local HTTP server (the ceiling of the
    /// HTTP stack here) and report the endpoint's efficiency against it.
    #[arg(long)]
    baseline_http: bool,
    /// Also measure hashing on one core.
    #[arg(long)]
    baseline_hash: bool,
    /// Also measure durable disk bandwidth in this directory.
    #[arg(long, value_name = "DIR")]
    baseline_disk: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(*args).await,
        Command::Baseline { kind, json } => {
            let value = match kind {
                BaselineKind::Hash => serde_json::to_value(baseline::hash(512 << 20))?,
                BaselineKind::Erasure { scheme } => {
                    let (k, m) = scheme
                        .split_once('+')
                        .and_then(|(k, m)| Some((k.parse().ok()?, m.parse().ok()?)))
                        .ok_or_else(|| anyhow::anyhow!("{scheme:?} is not K+M"))?;
                    serde_json::to_value(baseline::erasure(k, m, 1 << 30)?)?
                }
                BaselineKind::Disk {
                    dir,
                    files,
                    file_size,
                } => serde_json::to_value(baseline::disk(&dir, files, file_size)?)?,
            };
            if json {
                println!("{value}");
            } else {
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            Ok(())
        }
    }
}

fn efficiency(target: &Report, base: &Report) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for op in &target.operations {
        if let Some(b) = base.operations.iter().find(|b| b.operation == op.operation)
            && b.ops_per_sec > 0.0
        {
            out.insert(
                op.operation.clone(),
                serde_json::json!(op.ops_per_sec / b.ops_per_sec),
            );
        }
    }
    serde_json::Value::Object(out)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = WorkloadConfig {
        workload: args.workload,
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        object_size: args.size,
        concurrency: args.concurrency.max(1),
        duration: args.duration,
        max_ops: args.ops,
        objects: args.objects,
        list_delimiter: args.delimiter,
        part_size: args.part_size,
        progress: !args.json,
        prefilled: args.prefilled,
    };
    let mut output = serde_json::Map::new();
    let base = if args.baseline_http {
        let (addr, server) = baseline::start_http_baseline(args.size).await?;
        let base_client = client(
            &format!("http://{addr}"),
            "baseline",
            "baseline",
            &args.region,
        );
        let report = coffer_bench::workload::run(base_client, config.clone()).await?;
        server.abort();
        if !args.json {
            println!(
                "baseline: minimal HTTP server, same client\n{}",
                report.render()
            );
        }
        output.insert("baseline_http".to_owned(), serde_json::to_value(&report)?);
        Some(report)
    } else {
        None
    };
    let target = match &args.ca_bundle {
        Some(path) => coffer_bench::client_with_ca(
            &args.endpoint,
            &args.access_key,
            &args.secret_key,
            &args.region,
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )?,
        None => client(
            &args.endpoint,
            &args.access_key,
            &args.secret_key,
            &args.region,
        ),
    };
    let report = coffer_bench::workload::run(target, config).await?;
    if !args.json {
        println!("endpoint: {}\n{}", args.endpoint, report.render());
    }
    if let Some(base) = &base {
        let eff = efficiency(&report, base);
        if !args.json {
            println!("efficiency vs HTTP baseline (ops/s ratio): {eff}");
        }
        output.insert("efficiency_vs_http".to_owned(), eff);
    }
    if args.baseline_hash {
        let hash = baseline::hash(256 << 20);
        if !args.json {
            println!(
                "hash baseline (one core): {}",
                serde_json::to_string(&hash)?
            );
        }
        output.insert("baseline_hash".to_owned(), serde_json::to_value(hash)?);
    }
    if let Some(dir) = &args.baseline_disk {
        let disk = baseline::disk(dir, 32, args.size.clamp(1 << 20, 64 << 20))?;
        if !args.json {
            println!("disk baseline: {}", serde_json::to_string(&disk)?);
        }
        output.insert("baseline_disk".to_owned(), serde_json::to_value(disk)?);
    }
    output.insert("result".to_owned(), serde_json::to_value(&report)?);
    if args.json {
        println!("{}", serde_json::Value::Object(output));
    }
    Ok(())
}
