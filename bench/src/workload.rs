//! Workloads: concurrent clients issuing S3 operations against any endpoint, with a
//! live progress line. Objects are prefilled where an operation needs them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::sync::Mutex;

use crate::stats::{OpSamples, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Put,
    Get,
    Head,
    Delete,
    List,
    Multipart,
    /// warp's default mix: 45% GET, 30% HEAD, 15% PUT, 10% DELETE.
    Mixed,
}

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub workload: Workload,
    pub bucket: String,
    pub prefix: String,
    pub object_size: usize,
    pub concurrency: usize,
    /// Stop after this long...
    pub duration: Duration,
    /// ...or after this many operations, whichever comes first.
    pub max_ops: Option<u64>,
    /// Objects prefilled for GET/HEAD/DELETE/LIST/mixed.
    pub objects: usize,
    /// ListObjectsV2 with `delimiter=/` (keys are spread over 100 "directories").
    pub list_delimiter: bool,
    pub part_size: usize,
    pub progress: bool,
    /// The bucket already holds the `objects` keys (filled by other means, e.g. a
    /// bulk load for a 1,000,000-object listing): do not PUT them first.
    pub prefilled: bool,
}

fn key_of(config: &WorkloadConfig, index: usize) -> String {
    // Spread keys over 100 prefixes so delimiter listings have something to group.
    format!("{}{:02}/obj-{index:08}", config.prefix, index % 100)
}

fn error_code<E: ProvideErrorMetadata>(error: &E) -> String {
    error.code().unwrap_or("Transport").to_owned()
}

struct Shared {
    client: Client,
    config: WorkloadConfig,
    payload: Bytes,
    done: AtomicU64,
    stop: AtomicBool,
    /// The state of each prefilled key (the mixed workload deletes and re-puts
    /// them); a key is never read while it is being deleted or written.
    slots: Mutex<Vec<Slot>>,
}

/// Creates the bucket (if needed) and `count` objects, `concurrency` at a time.
pub async fn prefill(
    client: &Client,
    config: &WorkloadConfig,
    payload: &Bytes,
    count: usize,
) -> anyhow::Result<()> {
    let _ = client.create_bucket().bucket(&config.bucket).send().await;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..config.concurrency.max(1) {
        let (client, config, payload, next) = (
            client.clone(),
            config.clone(),
            payload.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                client
                    .put_object()
                    .bucket(&config.bucket)
                    .key(key_of(&config, i))
                    .body(ByteStream::from(payload.clone()))
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("prefill PUT failed: {}", error_code(&e)))?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Runs one workload and returns its report.
pub async fn run(client: Client, config: WorkloadConfig) -> anyhow::Result<Report> {
    let payload = Bytes::from(
        (0..config.object_size)
            .map(|_| rand::random::<u8>())
            .collect::<Vec<u8>>(),
    );
    let needs_objects = !matches!(config.workload, Workload::Put | Workload::Multipart);
    if needs_objects && !config.prefilled {
        prefill(&client, &config, &payload, config.objects).await?;
    } else {
        let _ = client.create_bucket().bucket(&config.bucket).send().await;
    }
    let shared = Arc::new(Shared {
        client,
        slots: Mutex::new(vec![
            Slot {
                present: needs_objects,
                readers: 0,
                busy: false
            };
            config.objects.max(1)
        ]),
        config,
        payload,
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let started = Instant::now();
    let progress = shared.config.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let n = shared.done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprint!("\r{:>6.1}s  {n} ops  {:.0} ops/s   ", secs, n as f64 / secs);
            }
        })
    });
    let mut tasks = Vec::new();
    for worker in 0..shared.config.concurrency.max(1) {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            client_loop(shared, worker, started).await
        }));
    }
    let mut samples: BTreeMap<&'static str, OpSamples> = BTreeMap::new();
    for task in tasks {
        for (name, s) in task.await? {
            samples.entry(name).or_default().merge(s);
        }
    }
    let elapsed = started.elapsed();
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    let name = format!("{:?}", shared.config.workload).to_lowercase();
    Ok(Report::from_samples(&name, elapsed, samples))
}

fn should_stop(shared: &Shared, started: Instant) -> bool {
    if shared.stop.load(Ordering::Relaxed) || started.elapsed() >= shared.config.duration {
        return true;
    }
    if let Some(max) = shared.config.max_ops
        && shared.done.fetch_add(0, Ordering::Relaxed) >= max
    {
        shared.stop.store(true, Ordering::Relaxed);
        return true;
    }
    false
}

async fn client_loop(
    shared: Arc<Shared>,
    worker: usize,
    started: Instant,
) -> BTreeMap<&'static str, OpSamples> {
    let mut samples: BTreeMap<&'static str, OpSamples> = BTreeMap::new();
    let mut counter = worker;
    while !should_stop(&shared, started) {
        let op = match shared.config.workload {
            Workload::Mixed => match rand::random::<u32>() % 100 {
                0..45 => Workload::Get,
                45..75 => Workload::Head,
                75..90 => Workload::Put,
                _ => Workload::Delete,
            },
            other => other,
        };
        counter += shared.config.concurrency.max(1);
        let (name, result) = one_operation(&shared, op, counter).await;
        let entry = samples.entry(name).or_default();
        match result {
            Ok(Some((latency, bytes))) => entry.record_ok(latency, bytes),
            Ok(None) => {
                // Every key is claimed right now: let the others finish.
                tokio::task::yield_now().await;
                continue;
            }
            Err(code) => entry.record_error(&code),
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    samples
}

type OpResult = Result<Option<(Duration, u64)>, String>;

#[derive(Debug, Clone, Copy)]
struct Slot {
    present: bool,
    readers: u32,
    /// Being deleted or written.
    busy: bool,
}

/// What an operation needs from a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Read a present key (others may read it too).
    Read,
    /// Delete a present key nobody is reading.
    Delete,
    /// Write a key that is absent.
    Write,
}

/// Claims a prefilled key for an operation; `None` when none qualifies right now.
async fn claim(shared: &Shared, claim: Claim) -> Option<usize> {
    let mut slots = shared.slots.lock().await;
    let n = slots.len();
    let start = rand::random::<u32>() as usize % n;
    let index = (0..n).map(|i| (start + i) % n).find(|&i| {
        let s = slots[i];
        !s.busy
            && match claim {
                Claim::Read => s.present,
                Claim::Delete => s.present && s.readers == 0,
                Claim::Write => !s.present,
            }
    })?;
    match claim {
        Claim::Read => slots[index].readers += 1,
        Claim::Delete | Claim::Write => slots[index].busy = true,
    }
    Some(index)
}

/// Releases a claim; `present` is the key's state after the operation.
async fn release(shared: &Shared, index: usize, claim: Claim, present: bool) {
    let mut slots = shared.slots.lock().await;
    let slot = &mut slots[index];
    match claim {
        Claim::Read => slot.readers = slot.readers.saturating_sub(1),
        Claim::Delete | Claim::Write => {
            slot.busy = false;
            slot.present = present;
        }
    }
}

async fn one_operation(shared: &Shared, op: Workload, counter: usize) -> (&'static str, OpResult) {
    let c = &shared.config;
    let client = &shared.client;
    let size = shared.payload.len() as u64;
    match op {
        Workload::Put => {
            let claimed = if c.workload == Workload::Mixed {
                claim(shared, Claim::Write).await
            } else {
                None
            };
            let index = claimed.unwrap_or(c.objects + counter);
            let t = Instant::now();
            let r = client
                .put_object()
                .bucket(&c.bucket)
                .key(key_of(c, index))
                .body(ByteStream::from(shared.payload.clone()))
                .send()
                .await;
            if let Some(i) = claimed {
                release(shared, i, Claim::Write, r.is_ok()).await;
            }
            (
                "PUT",
                r.map(|_| Some((t.elapsed(), size)))
                    .map_err(|e| error_code(&e)),
            )
        }
        Workload::Get => {
            let Some(index) = claim(shared, Claim::Read).await else {
                return ("GET", Ok(None));
            };
            let t = Instant::now();
            let r = client
                .get_object()
                .bucket(&c.bucket)
                .key(key_of(c, index))
                .send()
                .await;
            let result = match r {
                Ok(out) => match out.body.collect().await {
                    Ok(body) => Ok(Some((t.elapsed(), body.into_bytes().len() as u64))),
                    Err(_) => Err("BodyError".to_owned()),
                },
                Err(e) => Err(error_code(&e)),
            };
            release(shared, index, Claim::Read, true).await;
            ("GET", result)
        }
        Workload::Head => {
            let Some(index) = claim(shared, Claim::Read).await else {
                return ("HEAD", Ok(None));
            };
            let t = Instant::now();
            let r = client
                .head_object()
                .bucket(&c.bucket)
                .key(key_of(c, index))
                .send()
                .await;
            release(shared, index, Claim::Read, true).await;
            (
                "HEAD",
                r.map(|_| Some((t.elapsed(), 0)))
                    .map_err(|e| error_code(&e)),
            )
        }
        Workload::Delete => {
            let Some(index) = claim(shared, Claim::Delete).await else {
                return ("DELETE", Ok(None));
            };
            let t = Instant::now();
            let r = client
                .delete_object()
                .bucket(&c.bucket)
                .key(key_of(c, index))
                .send()
                .await;
            release(shared, index, Claim::Delete, r.is_err()).await;
            (
                "DELETE",
                r.map(|_| Some((t.elapsed(), 0)))
                    .map_err(|e| error_code(&e)),
            )
        }
        Workload::List => {
            let t = Instant::now();
            let mut request = client
                .list_objects_v2()
                .bucket(&c.bucket)
                .prefix(&c.prefix)
                .max_keys(1000);
            if c.list_delimiter {
                request = request.delimiter("/");
            }
            let r = request.send().await;
            (
                "LIST",
                r.map(|_| Some((t.elapsed(), 0)))
                    .map_err(|e| error_code(&e)),
            )
        }
        Workload::Multipart => ("MULTIPART", multipart(shared, counter).await),
        Workload::Mixed => ("MIXED", Err("unreachable".to_owned())),
    }
}

async fn multipart(shared: &Shared, counter: usize) -> OpResult {
    let c = &shared.config;
    let client = &shared.client;
    let key = key_of(c, c.objects + counter);
    let t = Instant::now();
    let upload = client
        .create_multipart_upload()
        .bucket(&c.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| error_code(&e))?;
    let upload_id = upload.upload_id().unwrap_or_default().to_owned();
    let part_size = c.part_size.max(1);
    let mut parts = Vec::new();
    for (i, chunk) in shared.payload.chunks(part_size).enumerate() {
        let number = i as i32 + 1;
        let out = client
            .upload_part()
            .bucket(&c.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(shared.payload.slice_ref(chunk)))
            .send()
            .await
            .map_err(|e| error_code(&e))?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(&c.bucket)
        .key(&key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| error_code(&e))?;
    Ok(Some((t.elapsed(), shared.payload.len() as u64)))
}
