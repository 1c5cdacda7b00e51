//! The replicated data plane, proven with real server processes: several
//! `coffer-server` binaries on 127.0.0.x with separate data dirs and one
//! throwaway Postgres, killed with SIGKILL, wiped and corrupted on disk, and
//! checked with aws-sdk-s3 through every surviving node.

mod workload;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use coffer_testkit::metric;

#[path = "support/cluster.rs"]
mod harness;
use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_concurrent_puts_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start(3, &["--replicas", "3", "--dead-after", "5"]).await;
    let bucket = "crash";
    cluster.nodes[0]
        .client()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    let clients: Vec<Client> = cluster.nodes.iter().map(Node::client).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for task in 0..16 {
        let client = clients[task % 3].clone();
        let (stop, count) = (stop.clone(), count.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("t{task:02}/{n:04}");
                n += 1;
                if put(&client, bucket, &key, content(&key, 600_000))
                    .await
                    .is_ok()
                {
                    acked.push((key, Instant::now()));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            acked
        }));
    }
    // Kill once writes are flowing, and stop once some more were acknowledged
    // after the kill (by progress, not fixed sleeps: the machine may be busy).
    let wait_for = |target: usize| {
        let count = count.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while count.load(Ordering::Relaxed) < target && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for(32).await;
    cluster.nodes[2].kill9();
    let killed_at = Instant::now();
    let before_kill = count.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    wait_for(before_kill + 16).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut after_kill = 0;
    for writer in writers {
        for (key, at) in writer.await.expect("writer") {
            after_kill += usize::from(at > killed_at);
            acked.push(key);
        }
    }
    assert!(after_kill > 0, "the surviving quorum keeps taking writes");
    assert!(
        acked.len() >= 32,
        "too few writes to prove anything: {}",
        acked.len()
    );
    for node in &cluster.nodes[..2] {
        assert_all_readable(node, bucket, &acked, 600_000).await;
    }
    // Nothing is visible without its data: every listed object reads in full.
    let client = cluster.nodes[1].client();
    let mut listed = 0;
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        for object in page.contents() {
            let key = object.key().expect("key");
            let body = get(&client, bucket, key)
                .await
                .expect("listed object reads");
            assert_eq!(body, content(key, 600_000), "{key}");
            listed += 1;
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert!(listed >= acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_nodes_two_replicas_survive_two_failures_after_healing() {
    let mut cluster = TestCluster::start(4, &["--replicas", "2", "--dead-after", "5"]).await;
    let bucket = "heal";
    cluster.nodes[0]
        .client()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    let keys: Vec<String> = (0..200).map(|i| format!("obj/{i:03}")).collect();
    for (i, key) in keys.iter().enumerate() {
        put(
            &cluster.nodes[i % 4].client(),
            bucket,
            key,
            content(key, 200_000),
        )
        .await
        .expect("put");
    }
    let replicas = cluster.replicas().await;
    assert_eq!(replicas.len(), 200);
    assert!(
        replicas.values().all(|nodes| nodes.len() == 2),
        "{replicas:?}"
    );
    // Small objects live in the metadata store: no blob, nothing to heal.
    for i in 0..20 {
        put(
            &cluster.nodes[i % 4].client(),
            bucket,
            &format!("tiny/{i}"),
            format!("tiny {i}").into_bytes(),
        )
        .await
        .expect("put tiny");
    }
    assert_eq!(cluster.replicas().await.len(), 200);

    cluster.nodes[3].kill9();
    let survivors = ["n0", "n1", "n2"];
    cluster
        .wait_for_replicas(
            "two copies of every blob on the survivors",
            Duration::from_secs(90),
            |r| {
                r.values().all(|nodes| {
                    nodes
                        .iter()
                        .filter(|n| survivors.contains(&n.as_str()))
                        .count()
                        >= 2
                })
            },
        )
        .await;
    cluster.nodes[2].kill9();
    for node in &cluster.nodes[..2] {
        assert_all_readable(node, bucket, &keys, 200_000).await;
        for i in 0..20 {
            let body = get(&node.client(), bucket, &format!("tiny/{i}"))
                .await
                .expect("tiny");
            assert_eq!(body, format!("tiny {i}").into_bytes());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_replica_is_read_around_and_repaired() {
    let cluster = TestCluster::start(3, &["--replicas", "3"]).await;
    let bucket = "rot";
    let key = "big";
    let body: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put");
    cluster
        .wait_for_replicas("three copies", Duration::from_secs(30), |r| {
            r.values().all(|n| n.len() == 3)
        })
        .await;
    let victim = &cluster.nodes[1];
    let file = victim.blob_files().pop().expect("a replica on n1");
    let mut bytes = std::fs::read(&file).expect("read replica");
    bytes[1_500_000] ^= 0x40; // inside the second 1 MiB block
    std::fs::write(&file, &bytes).expect("corrupt replica");

    // The node holding the bad copy still serves the right bytes, whole and ranged.
    let through_victim = get(&victim.client(), bucket, key).await.expect("get");
    assert!(
        through_victim == body,
        "full read through the corrupt node differs"
    );
    let ranged = victim
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .range("bytes=1499990-1500010")
        .send()
        .await
        .expect("range")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(&ranged[..], &body[1_499_990..=1_500_010]);

    // ... and repairs it: the file on n1 becomes a good copy again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let repaired = std::fs::read(&file)
            .ok()
            .is_some_and(|b| b.len() == bytes.len() && b[..body.len()] == body[..]);
        if repaired {
            break;
        }
        assert!(Instant::now() < deadline, "replica on n1 not repaired");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        victim
            .data_dir
            .join("quarantine")
            .read_dir()
            .expect("quarantine")
            .count()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_volume_is_refilled_after_restart() {
    let mut cluster = TestCluster::start(3, &["--replicas", "3", "--dead-after", "30"]).await;
    let bucket = "wipe";
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    for key in &keys {
        put(&client, bucket, key, content(key, 300_000))
            .await
            .expect("put");
    }
    cluster
        .wait_for_replicas("three copies", Duration::from_secs(30), |r| {
            r.values().all(|n| n.len() == 3)
        })
        .await;
    cluster.nodes[2].kill9();
    std::fs::remove_dir_all(&cluster.nodes[2].data_dir).expect("wipe");
    cluster.restart(2).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.nodes[2].blob_files().len() < keys.len() {
        assert!(
            Instant::now() < deadline,
            "n2 refilled only {} of {}",
            cluster.nodes[2].blob_files().len(),
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster
        .wait_for_replicas("n2 recorded again", Duration::from_secs(30), |r| {
            r.values().all(|n| n.iter().any(|x| x == "n2"))
        })
        .await;
    // With the other two gone, n2 alone serves everything from its refilled volume.
    cluster.nodes[0].kill9();
    cluster.nodes[1].kill9();
    assert_all_readable(&cluster.nodes[2], bucket, &keys, 300_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_takes_its_share_and_a_drained_node_empties() {
    let args = ["--replicas", "2", "--dead-after", "30"];
    let mut cluster = TestCluster::start(4, &args).await;
    let bucket = "move";
    let keys: Vec<String> = (0..80).map(|i| format!("m{i}")).collect();
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    for key in &keys {
        put(&client, bucket, key, content(key, 100_000))
            .await
            .expect("put");
    }
    cluster.add_node(&args).await;
    cluster
        .wait_for_replicas("rebalance onto n4", Duration::from_secs(60), |r| {
            let on_new = r.values().filter(|n| n.iter().any(|x| x == "n4")).count();
            on_new >= 16 && r.values().all(|n| n.len() == 2)
        })
        .await;
    let list = cluster.cli(&["node", "list"]);
    assert!(list.contains("n4") && list.contains("alive"), "{list}");

    cluster.cli(&["node", "drain", "n1"]);
    cluster
        .wait_for_replicas("n1 drained", Duration::from_secs(60), |r| {
            r.values()
                .all(|n| n.len() == 2 && !n.iter().any(|x| x == "n1"))
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.nodes[1].blob_files().is_empty() {
        assert!(
            Instant::now() < deadline,
            "n1 still holds files after draining"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let list = cluster.cli(&["node", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("n1 ") && l.contains("draining")),
        "{list}"
    );
    // The drained node still serves reads (from peers), as does every other node.
    assert_all_readable(&cluster.nodes[1], bucket, &keys, 100_000).await;
    assert_all_readable(&cluster.nodes[4], bucket, &keys, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_without_the_cluster_secret_cannot_join_or_talk_to_peers() {
    let mut cluster = TestCluster::start(1, &[]).await;
    for (secret, complaint) in [
        (None, "set COFFER_CLUSTER_SECRET"),
        (Some("another-secret"), "different COFFER_CLUSTER_SECRET"),
    ] {
        let mut stranger = Node {
            id: "stranger".to_owned(),
            addr: free_addr(30),
            data_dir: cluster.root.join("stranger"),
            args: Vec::new(),
            secret,
            child: None,
        };
        stranger.spawn(&cluster.database_url);
        let mut child = stranger.child.take().expect("child");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(
            !status.success(),
            "a node with secret {secret:?} must refuse to join"
        );
        let log =
            std::fs::read_to_string(stranger.data_dir.with_extension("log")).unwrap_or_default();
        assert!(log.contains(complaint), "{log}");
    }
    // Peer endpoints refuse a request with a forged signature.
    let url = format!(
        "{}/_coffer/v1/blobs/{:032x}",
        cluster.nodes[0].endpoint(),
        7
    );
    let forged = reqwest::Client::new()
        .get(&url)
        .header("x-coffer-node", "mallory")
        .header("x-coffer-time", time_now().to_string())
        .header("x-coffer-nonce", "1")
        .header("x-coffer-signature", "00".repeat(32))
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);
    // Without peer headers the path is just an (unauthenticated) S3 request.
    let anonymous = reqwest::get(&url).await.expect("request");
    assert!(anonymous.status().is_client_error());
    assert!(
        anonymous
            .text()
            .await
            .unwrap_or_default()
            .contains("<Error>")
    );
    cluster.nodes.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_nodes_object_cache_stops_serving_before_a_joining_node_serves() {
    let mut cluster = TestCluster::start(1, &[]).await;
    let n0 = cluster.nodes[0].client();
    n0.create_bucket()
        .bucket("lease")
        .send()
        .await
        .expect("bucket");
    put(&n0, "lease", "k", b"one".to_vec()).await.expect("put");
    for _ in 0..3 {
        assert_eq!(get(&n0, "lease", "k").await.expect("get"), b"one");
    }
    assert_eq!(
        metric(&cluster.nodes[0].endpoint(), "coffer_object_cache_leased").await,
        1
    );
    assert!(
        metric(
            &cluster.nodes[0].endpoint(),
            "coffer_object_cache_hits_total"
        )
        .await
            >= 2
    );

    // A second node joins. It must not serve before n0's lease has run out:
    // from its first answer on, n0 reads the store, not its cache.
    let mut n1 = Node {
        id: "n1".to_owned(),
        addr: free_addr(11),
        data_dir: cluster.root.join("n1"),
        args: Vec::new(),
        secret: Some(SECRET),
        child: None,
    };
    let spawned = Instant::now();
    n1.spawn(&cluster.database_url);
    cluster.nodes.push(n1);
    cluster.wait_ready(1).await;
    assert!(
        spawned.elapsed() >= coffer_server::meta::OBJECT_CACHE_LEASE,
        "n1 served {:?} after it started, before any lease of n0 could have ended",
        spawned.elapsed()
    );
    let n1 = cluster.nodes[1].client();
    put(&n1, "lease", "k", b"two".to_vec())
        .await
        .expect("put through n1");
    assert_eq!(get(&n0, "lease", "k").await.expect("get"), b"two");
    assert_eq!(
        metric(&cluster.nodes[0].endpoint(), "coffer_object_cache_leased").await,
        0
    );
    put(&n1, "lease", "k", b"three".to_vec())
        .await
        .expect("put through n1");
    assert_eq!(get(&n0, "lease", "k").await.expect("get"), b"three");

    // A running node cannot be removed: it would go on writing unseen.
    let output = Command::new(env!("CARGO_BIN_EXE_coffer-server"))
        .args([
            "node",
            "remove",
            "n1",
            "--database-url",
            &cluster.database_url,
        ])
        .env("COFFER_MASTER_KEY", MASTER_KEY)
        .output()
        .expect("run coffer-server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stop it before removing it"), "{stderr}");
}

fn time_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multipart_parts_and_copies_written_through_different_nodes_read_anywhere() {
    let cluster = TestCluster::start(3, &["--replicas", "2"]).await;
    let bucket = "parts";
    let clients: Vec<Client> = cluster.nodes.iter().map(Node::client).collect();
    clients[0]
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    let upload = clients[0]
        .create_multipart_upload()
        .bucket(bucket)
        .key("joined")
        .send()
        .await
        .expect("create upload");
    let upload_id = upload.upload_id().expect("upload id");
    let first: Vec<u8> = (0..5 * 1024 * 1024 + 17).map(|i| (i % 249) as u8).collect();
    let second: Vec<u8> = (0..1_234_567u32).map(|i| (i % 241) as u8).collect();
    let mut completed = Vec::new();
    for (number, (client, body)) in [(&clients[1], &first), (&clients[2], &second)]
        .into_iter()
        .enumerate()
    {
        let part = client
            .upload_part()
            .bucket(bucket)
            .key("joined")
            .upload_id(upload_id)
            .part_number(number as i32 + 1)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .expect("upload part");
        completed.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number as i32 + 1)
                .e_tag(part.e_tag().expect("etag"))
                .build(),
        );
    }
    clients[0]
        .complete_multipart_upload()
        .bucket(bucket)
        .key("joined")
        .upload_id(upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    clients[2]
        .copy_object()
        .bucket(bucket)
        .key("copied")
        .copy_source(format!("{bucket}/joined"))
        .send()
        .await
        .expect("copy");
    let whole = [first, second].concat();
    for client in &clients {
        assert!(get(client, bucket, "joined").await.expect("get") == whole);
        assert!(get(client, bucket, "copied").await.expect("get copy") == whole);
    }
    // Every blob (two parts, one copy) has its two copies.
    cluster
        .wait_for_replicas(
            "two copies of each of three blobs",
            Duration::from_secs(30),
            |r| r.len() == 3 && r.values().all(|n| n.len() == 2),
        )
        .await;
}

/// Encrypted objects are sealed once, on the node that takes the write, and
/// replicated as ciphertext: every node (sharing the master key) serves them,
/// ranges included, and nodes started with another master key are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_objects_replicate_and_read_through_any_node() {
    let cluster = TestCluster::start(3, &["--replicas", "2"]).await;
    let bucket = "sealed";
    let clients: Vec<Client> = cluster.nodes.iter().map(Node::client).collect();
    clients[0]
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 77u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    clients[1]
        .put_object()
        .bucket(bucket)
        .key("k")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .expect("encrypted put");
    cluster
        .wait_for_replicas("two copies of the blob", Duration::from_secs(30), |r| {
            r.len() == 1 && r.values().all(|n| n.len() == 2)
        })
        .await;
    for client in &clients {
        assert!(get(client, bucket, "k").await.expect("get") == data);
        let ranged = client
            .get_object()
            .bucket(bucket)
            .key("k")
            .range("bytes=1048570-2097200")
            .send()
            .await
            .expect("ranged get");
        let body = ranged.body.collect().await.expect("body").into_bytes();
        assert!(body.as_ref() == &data[1_048_570..=2_097_200]);
    }
    // The replicas hold ciphertext only.
    let needle = &data[2_000_000..2_000_064];
    for node in &cluster.nodes {
        for entry in walk(&node.data_dir.join("blobs")) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext in {}",
                entry.display()
            );
        }
    }
    // A node with another master key is refused by the store.
    let output = Command::new(env!("CARGO_BIN_EXE_coffer-server"))
        .args(["key", "list", "--database-url", &cluster.database_url])
        .arg("--data-dir")
        .arg(&cluster.nodes[0].data_dir)
        .env(
            "COFFER_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .output()
        .expect("run coffer-server");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("master key"));
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_of_collected_replicas_are_dropped_quietly_and_only_a_lost_live_one_warns() {
    let mut cluster = TestCluster::start(1, &["--replicas", "1"]).await;
    let bucket = "collected";
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    let keys: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    for key in &keys {
        put(&client, bucket, key, content(key, 50_000))
            .await
            .expect("put");
    }
    for key in &keys[1..] {
        client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("delete");
    }
    // A crash in the middle of garbage collection: the files of collected blobs
    // are gone, their replica records not yet. One live blob's file is lost too.
    cluster.nodes[0].kill9();
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.database_url)
        .await
        .expect("connect");
    let garbage: Vec<(String,)> = sqlx::query_as("SELECT id FROM blobs WHERE garbage = 1")
        .fetch_all(&mut db)
        .await
        .expect("garbage blobs");
    let live: Vec<(String,)> = sqlx::query_as("SELECT id FROM blobs WHERE garbage = 0")
        .fetch_all(&mut db)
        .await
        .expect("live blobs");
    assert_eq!((garbage.len(), live.len()), (5, 1));
    for (id,) in garbage.iter().chain(&live) {
        let file = cluster.nodes[0]
            .data_dir
            .join("blobs")
            .join(&id[..2])
            .join(id);
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    cluster.restart(0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM blob_replicas")
            .fetch_one(&mut db)
            .await
            .expect("count replicas");
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} stale replica records remain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(cluster.nodes[0].data_dir.with_extension("log"))
        .unwrap_or_default();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a recorded replica is missing"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains(&live[0].0), "{log}");
}

impl Node {
    /// SIGTERM, as Kubernetes stops a pod; waits for the process to exit.
    fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running node");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().expect("wait for the node")
    }
}

/// What a Kubernetes Service does for clients: probes each node's readiness
/// every 500 ms and routes each request to a node that was ready at its last probe.
struct Service {
    clients: Vec<Client>,
    ready: Arc<Vec<AtomicBool>>,
    next: std::sync::atomic::AtomicUsize,
    probes: tokio::task::JoinHandle<()>,
}

impl Service {
    fn over(nodes: &[Node]) -> Arc<Self> {
        let endpoints: Vec<String> = nodes.iter().map(Node::endpoint).collect();
        let ready = Arc::new(
            endpoints
                .iter()
                .map(|_| AtomicBool::new(true))
                .collect::<Vec<_>>(),
        );
        let probed = ready.clone();
        let probes = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_millis(400))
                .build()
                .expect("probe client");
            loop {
                for (i, endpoint) in endpoints.iter().enumerate() {
                    let ok = http
                        .get(format!("{endpoint}/health/ready"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    probed[i].store(ok, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let clients = nodes
            .iter()
            .map(|n| {
                let config = aws_sdk_s3::Config::builder()
                    .behavior_version_latest()
                    .endpoint_url(n.endpoint())
                    .region(Region::new("us-east-1"))
                    .credentials_provider(Credentials::new(ROOT_KEY, ROOT_SECRET, None, None, "t"))
                    .force_path_style(true)
                    // Retries would hide failed requests.
                    .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
                    .http_client(aws_smithy_http_client::Builder::new().build_http())
                    .build();
                Client::from_conf(config)
            })
            .collect();
        Arc::new(Self {
            clients,
            ready,
            next: std::sync::atomic::AtomicUsize::new(0),
            probes,
        })
    }

    /// A client for a ready node (round robin).
    fn pick(&self) -> Option<&Client> {
        for _ in 0..self.clients.len() {
            let i = self.next.fetch_add(1, Ordering::SeqCst) % self.clients.len();
            if self.ready[i].load(Ordering::SeqCst) {
                return Some(&self.clients[i]);
            }
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.probes.abort();
    }
}

/// One client's steady mix of PUT, GET, LIST and multipart through the
/// Service; returns (requests, failures, acknowledged keys).
async fn steady_load(
    service: Arc<Service>,
    bucket: &'static str,
    worker: usize,
    stop: Arc<AtomicBool>,
) -> (usize, Vec<String>, Vec<String>) {
    let (mut requests, mut failures, mut acked) = (0, Vec::new(), Vec::new());
    let mut step = 0;
    while !stop.load(Ordering::SeqCst) {
        step += 1;
        let Some(s3) = service.pick() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let key = format!("w{worker}/k{step}");
        requests += 1;
        let outcome = match step % 4 {
            0 => s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(format!("w{worker}/"))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("LIST: {e:?}")),
            1 if !acked.is_empty() => {
                let key: &String = &acked[step % acked.len()];
                get(s3, bucket, key).await.map(|body| {
                    assert_eq!(body, content(key, 100_000), "{key}");
                })
            }
            2 => {
                let upload = s3
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await;
                match upload {
                    Ok(upload) => {
                        let id = upload.upload_id().unwrap_or_default().to_owned();
                        let part = s3
                            .upload_part()
                            .bucket(bucket)
                            .key(&key)
                            .upload_id(&id)
                            .part_number(1)
                            .body(ByteStream::from(content(&key, 100_000)))
                            .send()
                            .await;
                        match part {
                            Ok(part) => s3
                                .complete_multipart_upload()
                                .bucket(bucket)
                                .key(&key)
                                .upload_id(&id)
                                .multipart_upload(
                                    aws_sdk_s3::types::CompletedMultipartUpload::builder()
                                        .parts(
                                            aws_sdk_s3::types::CompletedPart::builder()
                                                .part_number(1)
                                                .e_tag(part.e_tag().unwrap_or_default())
                                                .build(),
                                        )
                                        .build(),
                                )
                                .send()
                                .await
                                .map(|_| acked.push(key.clone()))
                                .map_err(|e| format!("complete: {e:?}")),
                            Err(e) => Err(format!("part: {e:?}")),
                        }
                    }
                    Err(e) => Err(format!("create upload: {e:?}")),
                }
            }
            _ => put(s3, bucket, &key, content(&key, 100_000))
                .await
                .map(|()| acked.push(key.clone())),
        };
        if let Err(e) = outcome {
            failures.push(e);
        }
    }
    (requests, failures, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_with_sigterm_fails_no_request() {
    // The pods' drain delay outlasts the Service's probe period, as the chart's
    // shutdownDelaySeconds outlasts its readiness probe period.
    let args = [
        "--replicas",
        "3",
        "--shutdown-delay",
        "3",
        "--dead-after",
        "60",
    ];
    let mut cluster = TestCluster::start(3, &args).await;
    let bucket = "rolling";
    cluster.nodes[0]
        .client()
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    let service = Service::over(&cluster.nodes);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(steady_load(service.clone(), bucket, w, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for index in 0..cluster.nodes.len() {
        let started = Instant::now();
        let status = cluster.nodes[index].sigterm();
        assert!(status.success(), "n{index} exited with {status}");
        let stopped = started.elapsed();
        cluster.restart(index).await;
        cluster.wait_until_all_see(cluster.nodes.len()).await;
        eprintln!(
            "rolling restart: n{index} stopped in {stopped:?}, back in {:?}",
            started.elapsed()
        );
        // Let the Service see it ready again before the next node goes.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (mut requests, mut failures, mut acked) = (0, Vec::new(), Vec::new());
    for worker in workers {
        let (r, f, a) = worker.await.expect("worker");
        requests += r;
        failures.extend(f);
        acked.extend(a);
    }
    eprintln!(
        "rolling restart: {requests} requests, {} failed, {} objects written",
        failures.len(),
        acked.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    assert!(acked.len() > 20, "the load kept writing ({})", acked.len());
    for node in &cluster.nodes {
        assert_all_readable(node, bucket, &acked, 100_000).await;
    }
}

/// Crash consistency on a storage cluster: the mixed workload of `crash.rs`
/// (inline, file-backed and encrypted PUTs, overwrites, copies, multipart,
/// DELETE, versioned and not) runs through all three nodes while one node at
/// a time is killed with SIGKILL at a random moment and restarted. After each
/// round every key is checked through another node, and the restarted node
/// logged no warning: it lost nothing, so nothing may alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_one_node_at_a_time_under_the_mixed_workload_loses_nothing() {
    const SIZES: &[usize] = &[0, 300, 40_000, 700_000, 3_000_000];
    let mut cluster = TestCluster::start(3, &[]).await;
    let clients: Vec<Client> = cluster
        .nodes
        .iter()
        .map(|n| workload::client(&n.endpoint(), ROOT_KEY, ROOT_SECRET))
        .collect();
    workload::create_buckets(&clients[0]).await;
    let history = workload::History::default();
    let rounds = std::env::var("COFFER_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut checked = 0;
    for round in 0..rounds {
        let victim = round % cluster.nodes.len();
        let writers = history.start_on(&clients, 6, SIZES);
        let at = Duration::from_millis(500 + rand::random::<u64>() % 2500);
        tokio::time::sleep(at).await;
        cluster.nodes[victim].kill9();
        // The survivors keep taking writes with one node down.
        tokio::time::sleep(Duration::from_secs(1)).await;
        writers.stop().await;
        cluster.restart(victim).await;
        cluster.wait_until_all_see(3).await;
        checked = history.verify(&clients[(victim + 1) % 3]).await;
        let temp = std::fs::read_dir(cluster.nodes[victim].data_dir.join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(
            temp, 0,
            "round {round}: temp files left on the restarted node"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let log = std::fs::read_to_string(cluster.nodes[victim].data_dir.with_extension("log"))
            .unwrap_or_default();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        assert!(
            warnings.is_empty(),
            "round {round}: node {victim} restarted after a crash that lost nothing and logged:\n{}",
            warnings.join("\n")
        );
        let tally = history.tally().await;
        eprintln!(
            "cluster crash round {round}: n{victim} killed after {at:?}; {} acknowledged, {} failed so far",
            tally.ok, tally.failed
        );
    }
    let tally = history.tally().await;
    assert!(tally.ok > 0, "writes were acknowledged");
    eprintln!(
        "cluster crash: {rounds} rounds, {} writes acknowledged, {} failed, {checked} keys checked, lost 0",
        tally.ok, tally.failed
    );
}
