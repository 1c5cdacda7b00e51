//! Metadata failover under load: a Coffer server on a Postgres primary with a
//! synchronous standby, reached through a Service-like address (as CloudNativePG's
//! `-rw`). Clients PUT, overwrite and DELETE while the primary is killed with
//! SIGKILL, the address moves to the standby and the standby is promoted. Every write that
//! was acknowledged must be there, byte for byte; a write that failed may or may
//! not have happened but is never half-visible; errors during the outage are
//! retryable 503s; `/health/ready` is false while no primary takes writes; the
//! server recovers by itself. The client never retries, so no failure is hidden.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use coffer_server::serve::{ServeConfig, start};
use coffer_testkit::replicated::{ReplicatedPostgres, RwService};
use tokio::sync::Mutex;

/// What is known of one key: the last acknowledged state (`None`: never
/// acknowledged; `Some(None)`: deleted), and the writes attempted after it that
/// failed, each of which may or may not have happened.
#[derive(Default)]
struct KeyHistory {
    acknowledged: Option<Option<Vec<u8>>>,
    uncertain: Vec<Option<Vec<u8>>>,
}

#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    /// Failures that were not a retryable 503, with what they were.
    not_retryable: Vec<String>,
    slowest_failure: Duration,
    ok_after_failover: usize,
}

fn client(endpoint: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "ROOTKEYFORTESTS",
            "root-secret-for-tests",
            None,
            None,
            "failover",
        ))
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

/// A body unique to (writer, step), of one of the sizes that land inline in the
/// metadata store or in blob files.
fn body(writer: usize, step: usize) -> Vec<u8> {
    let size = [0, 300, 40_000, 700_000][step % 4];
    let stamp = format!("w{writer}s{step};");
    stamp.bytes().cycle().take(size.max(stamp.len())).collect()
}

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

async fn writer(
    s3: Client,
    id: usize,
    stop: Arc<AtomicBool>,
    failed_over: Arc<AtomicBool>,
    history: Arc<Mutex<BTreeMap<String, KeyHistory>>>,
    tally: Arc<Mutex<Tally>>,
) {
    let mut step = 0;
    while !stop.load(Ordering::SeqCst) {
        step += 1;
        let key = format!("w{id}/k{}", step % 5);
        let delete = step % 7 == 0;
        let content = (!delete).then(|| body(id, step));
        let started = Instant::now();
        let outcome = if delete {
            s3.delete_object()
                .bucket("failover")
                .key(&key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe(&e))
        } else {
            s3.put_object()
                .bucket("failover")
                .key(&key)
                .body(content.clone().unwrap_or_default().into())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe(&e))
        };
        let mut history = history.lock().await;
        let entry = history.entry(key).or_default();
        let mut tally = tally.lock().await;
        match outcome {
            Ok(()) => {
                entry.acknowledged = Some(content);
                entry.uncertain.clear();
                tally.ok += 1;
                if failed_over.load(Ordering::SeqCst) {
                    tally.ok_after_failover += 1;
                }
            }
            Err((retryable, what)) => {
                entry.uncertain.push(content);
                tally.failed += 1;
                tally.slowest_failure = tally.slowest_failure.max(started.elapsed());
                if !retryable {
                    tally.not_retryable.push(what);
                }
                drop(tally);
                drop(history);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn ready_status(endpoint: &str) -> u16 {
    match reqwest::Client::new()
        .get(format!("{endpoint}/health/ready"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls `/health/ready` until it answers `want`; returns how long that took.
async fn wait_ready(endpoint: &str, want: u16, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if ready_status(endpoint).await == want {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/health/ready did not answer {want} within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_metadata_failover_loses_no_acknowledged_write() {
    let pg = tokio::task::spawn_blocking(ReplicatedPostgres::start)
        .await
        .expect("replicated postgres");
    let rw = RwService::start(pg.primary_port()).await;
    let data_dir = coffer_testkit::temp_dir("failover");
    let mut config = ServeConfig::new(&data_dir);
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.database_url = Some(format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        rw.port()
    ));
    config.root_credentials = Some((
        "ROOTKEYFORTESTS".to_owned(),
        "root-secret-for-tests".to_owned(),
    ));
    let server = start(config).await.expect("server starts");
    let endpoint = server.endpoint();
    let s3 = client(&endpoint);
    s3.create_bucket()
        .bucket("failover")
        .send()
        .await
        .expect("bucket");

    let stop = Arc::new(AtomicBool::new(false));
    let failed_over = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(BTreeMap::new()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let writers: Vec<_> = (0..6)
        .map(|id| {
            tokio::spawn(writer(
                s3.clone(),
                id,
                stop.clone(),
                failed_over.clone(),
                history.clone(),
                tally.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = tally.lock().await.ok;
    assert!(before > 0, "writes succeed before the failover");

    // The primary dies; no address takes writes until the standby is promoted.
    let killed_at = Instant::now();
    let pg = Arc::new(pg);
    let primary = pg.clone();
    tokio::task::spawn_blocking(move || primary.kill_primary())
        .await
        .expect("kill");
    let not_ready_after = wait_ready(&endpoint, 503, Duration::from_secs(20)).await;
    // The address reaches the standby before it is promoted (a Service whose
    // endpoints moved early): it answers queries but refuses writes, so the
    // server must stay not ready and answer writes with 503, not 500.
    rw.retarget(pg.standby_port());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ready_status(&endpoint).await,
        503,
        "a standby in recovery is not ready"
    );
    let standby = pg.clone();
    tokio::task::spawn_blocking(move || standby.promote_standby())
        .await
        .expect("promote");
    failed_over.store(true, Ordering::SeqCst);
    let ready_again_after = wait_ready(&endpoint, 200, Duration::from_secs(60)).await;
    // Keep writing on the new primary for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally.lock().await.ok_after_failover < 30 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    let outage = killed_at.elapsed();

    let tally = tally.lock().await;
    eprintln!(
        "failover: {} writes acknowledged, {} failed (slowest failure {:?}), \
         not ready {not_ready_after:?} after the kill, ready {ready_again_after:?} after promotion",
        tally.ok, tally.failed, tally.slowest_failure
    );
    assert!(
        tally.ok_after_failover >= 30,
        "the server writes again on the new primary without a restart ({} since)",
        tally.ok_after_failover
    );
    assert!(
        tally.not_retryable.is_empty(),
        "every failure is a retryable 503: {:?}",
        tally.not_retryable
    );
    assert!(
        tally.slowest_failure < Duration::from_secs(15),
        "failures are fast: {:?}",
        tally.slowest_failure
    );

    // Every acknowledged write is there, byte for byte; a failed one may have
    // happened, whole, or not at all.
    let history = history.lock().await;
    let mut checked = 0;
    let mut present = Vec::new();
    for (key, known) in history.iter() {
        let got = match s3.get_object().bucket("failover").key(key).send().await {
            Ok(o) => {
                present.push(key.clone());
                Some(o.body.collect().await.expect("body").into_bytes().to_vec())
            }
            Err(e) => {
                let (_, what) = describe(&e);
                assert!(what.starts_with("404"), "GET {key}: {what}");
                None
            }
        };
        let allowed: Vec<&Option<Vec<u8>>> = known
            .acknowledged
            .iter()
            .chain(known.uncertain.iter())
            .collect();
        let never_acknowledged = known.acknowledged.is_none();
        let fits = allowed.iter().any(|a| **a == got) || (never_acknowledged && got.is_none());
        assert!(
            fits,
            "{key}: holds {:?} bytes, acknowledged {:?}",
            got.as_ref().map(Vec::len),
            known
                .acknowledged
                .as_ref()
                .map(|a| a.as_ref().map(Vec::len))
        );
        checked += 1;
    }
    // Listing agrees with GETs.
    let listed = s3
        .list_objects_v2()
        .bucket("failover")
        .send()
        .await
        .expect("list");
    let listed: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(
        listed, present,
        "the listing shows exactly the keys GET finds"
    );
    eprintln!("failover: {checked} keys checked, outage window {outage:?}");
    server.shutdown().await;
    drop(rw);
    let _ = std::fs::remove_dir_all(&data_dir);
}
