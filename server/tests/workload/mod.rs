//! A checked write workload for tests that break the server underneath it (a
//! crash, a metadata failover): writers PUT (inline, file-backed, encrypted),
//! overwrite, DELETE, CopyObject and complete multipart uploads on keys of their
//! own, in a versioned and an unversioned bucket, and remember what was
//! acknowledged. [`History::verify`] then checks that every key holds the last
//! acknowledged state or the whole result of a write that failed after it —
//! never a lost acknowledged write, never torn bytes — and that listings agree.

// Shared by several test crates, each using part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
    VersioningConfiguration,
};
use tokio::sync::Mutex;

/// The buckets the writers use: even writers the first, odd ones the second.
pub const BUCKETS: [&str; 2] = ["plain", "versioned"];

/// An SDK client that never retries, so no failure is hidden.
pub fn client(endpoint: &str, id: &str, secret: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(id, secret, None, None, "workload"))
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

/// Creates the buckets (the second with versioning on).
pub async fn create_buckets(s3: &Client) {
    for bucket in BUCKETS {
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
    }
    s3.put_bucket_versioning()
        .bucket(BUCKETS[1])
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
}

/// What is known of one key: the last acknowledged state (`None`: never
/// acknowledged; `Some(None)`: deleted), and the writes attempted after it that
/// failed, each of which may or may not have happened.
#[derive(Default, Clone)]
struct KeyHistory {
    acknowledged: Option<Option<Vec<u8>>>,
    uncertain: Vec<Option<Vec<u8>>>,
}

impl KeyHistory {
    /// The content when it is known for certain.
    fn certain(&self) -> Option<&Vec<u8>> {
        match (&self.acknowledged, self.uncertain.is_empty()) {
            (Some(Some(body)), true) => Some(body),
            _ => None,
        }
    }

    fn allows(&self, found: &Option<Vec<u8>>) -> bool {
        let never_acknowledged = self.acknowledged.is_none() && found.is_none();
        never_acknowledged
            || self.acknowledged.as_ref() == Some(found)
            || self.uncertain.iter().any(|u| u == found)
    }
}

/// Counts of what the writers saw.
#[derive(Default, Debug, Clone)]
pub struct Tally {
    pub ok: usize,
    pub failed: usize,
    /// Failures that were not a retryable 503, as `status: body` or the error.
    pub not_retryable: Vec<String>,
    pub slowest_failure: Duration,
}

/// The writers' shared record of every key, across rounds.
#[derive(Default, Clone)]
pub struct History {
    keys: Arc<Mutex<BTreeMap<(usize, String), KeyHistory>>>,
    tally: Arc<Mutex<Tally>>,
}

/// Running writers; [`Writers::stop`] waits for them.
pub struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("writer");
        }
    }
}

/// A body unique to (writer, step), of a size that lands inline in the
/// metadata store, in one blob block, or across several.
fn body(writer: usize, step: usize, sizes: &[usize]) -> Vec<u8> {
    let size = sizes[step % sizes.len()];
    let stamp = format!("w{writer}s{step};");
    stamp.bytes().cycle().take(size.max(stamp.len())).collect()
}

/// `(retryable 503, description)` of a failed call.
fn describe<E: std::fmt::Debug>(
    err: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> (bool, String) {
    match err.raw_response() {
        Some(raw) => {
            let status = raw.status().as_u16();
            let text = raw
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let retryable =
                status == 503 && (text.contains("ServiceUnavailable") || text.contains("SlowDown"));
            (retryable, format!("{status}: {text}"))
        }
        None => (false, format!("{err:?}")),
    }
}

enum Op {
    Put(Vec<u8>, bool),
    Delete,
    Copy(String, Vec<u8>),
    Multipart(Vec<u8>),
}

impl History {
    pub async fn tally(&self) -> Tally {
        self.tally.lock().await.clone()
    }

    /// Starts `count` writers on `s3`, with object sizes from `sizes`.
    pub fn start(&self, s3: &Client, count: usize, sizes: &'static [usize]) -> Writers {
        self.start_on(std::slice::from_ref(s3), count, sizes)
    }

    /// Starts `count` writers, writer `i` on `clients[i % len]` (one per node of
    /// a cluster, say).
    pub fn start_on(&self, clients: &[Client], count: usize, sizes: &'static [usize]) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..count)
            .map(|id| {
                let s3 = clients[id % clients.len()].clone();
                let (stop, history) = (stop.clone(), self.clone());
                tokio::spawn(async move { history.write(s3, id, stop, sizes).await })
            })
            .collect();
        Writers { stop, tasks }
    }

    async fn choose(&self, id: usize, step: usize, sizes: &[usize]) -> Op {
        match step % 9 {
            0 => Op::Delete,
            3 => {
                let source = format!("w{id}/k{}", (step + 1) % 5);
                let keys = self.keys.lock().await;
                match keys
                    .get(&(id, source.clone()))
                    .and_then(KeyHistory::certain)
                {
                    Some(content) => Op::Copy(source, content.clone()),
                    None => Op::Put(body(id, step, sizes), false),
                }
            }
            5 => Op::Multipart(body(id, step, sizes)),
            n => Op::Put(body(id, step, sizes), n % 2 == 0),
        }
    }

    async fn write(self, s3: Client, id: usize, stop: Arc<AtomicBool>, sizes: &[usize]) {
        let bucket = BUCKETS[id % 2];
        let mut step = 0;
        while !stop.load(Ordering::SeqCst) {
            step += 1;
            let key = format!("w{id}/k{}", step % 5);
            let op = self.choose(id, step, sizes).await;
            let started = Instant::now();
            let (content, outcome) = match op {
                Op::Put(content, encrypted) => {
                    let mut put = s3
                        .put_object()
                        .bucket(bucket)
                        .key(&key)
                        .body(content.clone().into());
                    if encrypted {
                        put = put.server_side_encryption(ServerSideEncryption::Aes256);
                    }
                    let result = put.send().await.map(|_| ()).map_err(|e| describe(&e));
                    (Some(content), result)
                }
                Op::Delete => {
                    let result = s3
                        .delete_object()
                        .bucket(bucket)
                        .key(&key)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe(&e));
                    (None, result)
                }
                Op::Copy(source, content) => {
                    let result = s3
                        .copy_object()
                        .bucket(bucket)
                        .key(&key)
                        .copy_source(format!("{bucket}/{source}"))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe(&e));
                    (Some(content), result)
                }
                Op::Multipart(content) => {
                    let result = multipart(&s3, bucket, &key, &content).await;
                    (Some(content), result)
                }
            };
            let mut keys = self.keys.lock().await;
            let entry = keys.entry((id, key)).or_default();
            let mut tally = self.tally.lock().await;
            match outcome {
                Ok(()) => {
                    entry.acknowledged = Some(content);
                    entry.uncertain.clear();
                    tally.ok += 1;
                }
                Err((retryable, what)) => {
                    entry.uncertain.push(content);
                    tally.failed += 1;
                    tally.slowest_failure = tally.slowest_failure.max(started.elapsed());
                    if !retryable {
                        tally.not_retryable.push(what);
                    }
                    drop(tally);
                    drop(keys);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Checks every key the writers touched; returns how many were checked.
    pub async fn verify(&self, s3: &Client) -> usize {
        let keys = self.keys.lock().await;
        let mut present: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((id, key), known) in keys.iter() {
            let bucket = BUCKETS[id % 2];
            let found = match s3.get_object().bucket(bucket).key(key).send().await {
                Ok(o) => {
                    present.entry(bucket).or_default().push(key.clone());
                    Some(o.body.collect().await.expect("body").into_bytes().to_vec())
                }
                Err(e) => {
                    let (_, what) = describe(&e);
                    assert!(what.starts_with("404"), "GET {bucket}/{key}: {what}");
                    None
                }
            };
            assert!(
                known.allows(&found),
                "{bucket}/{key} (writer {id}) holds {:?} bytes; acknowledged {:?}, uncertain {:?}",
                found.as_ref().map(Vec::len),
                known
                    .acknowledged
                    .as_ref()
                    .map(|a| a.as_ref().map(Vec::len)),
                known
                    .uncertain
                    .iter()
                    .map(|u| u.as_ref().map(Vec::len))
                    .collect::<Vec<_>>()
            );
        }
        for bucket in BUCKETS {
            let listed = s3
                .list_objects_v2()
                .bucket(bucket)
                .send()
                .await
                .expect("list");
            let mut listed: Vec<String> = listed
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect();
            let mut found = present.remove(bucket).unwrap_or_default();
            found.sort();
            listed.sort();
            assert_eq!(
                listed, found,
                "{bucket}: the listing shows exactly what GET finds"
            );
        }
        keys.len()
    }
}

/// One-part multipart upload (a last part may be of any size).
async fn multipart(
    s3: &Client,
    bucket: &str,
    key: &str,
    content: &[u8],
) -> Result<(), (bool, String)> {
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let upload_id = upload.upload_id().unwrap_or_default().to_owned();
    let part = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .part_number(1)
        .body(content.to_vec().into())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap_or_default())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| describe(&e))
}
