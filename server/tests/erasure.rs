//! Erasure coding proven with real server processes: six `coffer-server`
//! nodes with `--erasure 4+2` on 127.0.0.x and one throwaway Postgres; objects
//! are read back byte-identical (whole and ranged) with two nodes killed, with a
//! corrupt shard file, and after healing; replicated objects live beside them,
//! and buckets choose erasure coding or replicas on a cluster without a default.

#[path = "support/cluster.rs"]
mod harness;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use harness::*;

const MIB: usize = 1 << 20;
const EC_ARGS: &[&str] = &[
    "--erasure",
    "4+2",
    "--erasure-min-size",
    "1048576",
    "--dead-after",
    "5",
    "--replicas",
    "3",
];
const MULTIPART_PART: usize = 5 * MIB;

/// Deterministic bytes of exactly `len`.
fn bytes_of(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Objects of every shape the data plane stores differently.
fn sizes() -> Vec<(String, usize)> {
    [
        ("tiny", 5),
        ("small-replicated", 200_000),
        ("just-below-min-size", MIB - 1),
        ("at-min-size", MIB),
        ("one-stripe-less-one", 4 * MIB - 1),
        ("one-stripe", 4 * MIB),
        ("uneven", 9 * MIB + 12_345),
        ("large", 21 * MIB + 3),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect()
}

async fn get_range(client: &Client, bucket: &str, key: &str, range: &str) -> Vec<u8> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(range)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key} {range}: {e:?}"));
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// Every object whole, a few ranges of it, and the multipart one by part.
async fn assert_objects_intact(client: &Client, bucket: &str, objects: &[(String, Vec<u8>)]) {
    for (key, data) in objects {
        let body = get(client, bucket, key)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(
            body == *data,
            "{key}: {} bytes back of {}",
            body.len(),
            data.len()
        );
        let len = data.len();
        for (a, b) in [
            (0, 0),
            (len / 3, len / 3 + 100),
            (len.saturating_sub(7), len - 1),
        ] {
            if len == 0 || b >= len {
                continue;
            }
            let got = get_range(client, bucket, key, &format!("bytes={a}-{b}")).await;
            assert!(got == data[a..=b], "{key} bytes {a}-{b}");
        }
        // Across a shard boundary inside the first stripe (chunk 0 | chunk 1),
        // across a stripe boundary, and over several whole stripes.
        for (a, b) in [
            (MIB - 3, MIB + 3),
            (3 * MIB - 1, 3 * MIB),
            (4 * MIB - 5, 4 * MIB + 5),
            (3 * MIB + 17, 9 * MIB + 5),
        ] {
            if b >= len {
                continue;
            }
            let got = get_range(client, bucket, key, &format!("bytes={a}-{b}")).await;
            assert!(got == data[a..=b], "{key} bytes {a}-{b}");
        }
    }
    if let Some((_, data)) = objects.iter().find(|(k, _)| k == "multipart") {
        let out = client
            .get_object()
            .bucket(bucket)
            .key("multipart")
            .part_number(2)
            .send()
            .await
            .expect("partNumber 2");
        let body = out.body.collect().await.expect("body").into_bytes();
        assert!(
            body[..] == data[MULTIPART_PART..2 * MULTIPART_PART],
            "part 2"
        );
    }
}

async fn put_multipart(client: &Client, bucket: &str, key: &str, data: &[u8], part: usize) {
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("create upload");
    let id = upload.upload_id().expect("upload id");
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(part).enumerate() {
        let number = i as i32 + 1;
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .expect("upload part");
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("complete upload");
}

/// Writes the test objects through node 0: plain ones of every size, a
/// multipart one and an SSE-S3 one.
async fn write_objects(cluster: &TestCluster, bucket: &str) -> Vec<(String, Vec<u8>)> {
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    let mut objects = Vec::new();
    for (i, (key, len)) in sizes().into_iter().enumerate() {
        let data = bytes_of(i as u64 + 1, len);
        put(&client, bucket, &key, data.clone())
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        objects.push((key, data));
    }
    let multipart = bytes_of(99, 13 * MIB + 777);
    put_multipart(&client, bucket, "multipart", &multipart, MULTIPART_PART).await;
    objects.push(("multipart".to_owned(), multipart));
    let secret = bytes_of(7, 6 * MIB + 1);
    client
        .put_object()
        .bucket(bucket)
        .key("encrypted")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(secret.clone()))
        .send()
        .await
        .expect("encrypted put");
    objects.push(("encrypted".to_owned(), secret));
    let kms_key = cluster.cli(&["kms", "create", "erasure-test"]);
    let kms_key = kms_key
        .lines()
        .find_map(|l| l.strip_prefix("KeyId: "))
        .expect("kms key id")
        .trim()
        .to_owned();
    let sealed = bytes_of(8, 5 * MIB + 333);
    client
        .put_object()
        .bucket(bucket)
        .key("encrypted-kms")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&kms_key)
        .body(ByteStream::from(sealed.clone()))
        .send()
        .await
        .expect("SSE-KMS put");
    objects.push(("encrypted-kms".to_owned(), sealed));
    client
        .put_object()
        .bucket(bucket)
        .key(SSE_C_KEY)
        .sse_customer_algorithm("AES256")
        .sse_customer_key(customer_key().0)
        .sse_customer_key_md5(customer_key().1)
        .body(ByteStream::from(sse_c_data()))
        .send()
        .await
        .expect("SSE-C put");
    objects
}

const SSE_C_KEY: &str = "encrypted-customer-key";

fn sse_c_data() -> Vec<u8> {
    bytes_of(9, 7 * MIB + 21)
}

/// The SSE-C key (base64) and its MD5 (base64).
fn customer_key() -> (String, String) {
    use base64::Engine as _;
    use md5::Digest as _;
    let raw = [7u8; 32];
    let b64 = base64::engine::general_purpose::STANDARD;
    (b64.encode(raw), b64.encode(md5::Md5::digest(raw)))
}

/// The SSE-C object, whole and across a stripe boundary, with its key.
async fn assert_sse_c_intact(client: &Client, bucket: &str) {
    let data = sse_c_data();
    for range in [None, Some((4 * MIB - 9, 5 * MIB + 9))] {
        let (key, md5) = customer_key();
        let out = client
            .get_object()
            .bucket(bucket)
            .key(SSE_C_KEY)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(key)
            .sse_customer_key_md5(md5)
            .set_range(range.map(|(a, b)| format!("bytes={a}-{b}")))
            .send()
            .await
            .expect("SSE-C get");
        let body = out.body.collect().await.expect("body").into_bytes();
        let want = match range {
            None => &data[..],
            Some((a, b)) => &data[a..=b],
        };
        assert!(body[..] == *want, "SSE-C object, range {range:?}");
    }
}

/// Shard files (`e-4-2-….i`) on each node.
fn shard_files(cluster: &TestCluster) -> Vec<Vec<PathBuf>> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            n.blob_files()
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with("e-"))
                })
                .collect()
        })
        .collect()
}

async fn metric_sum(cluster: &TestCluster, name: &str) -> Option<u64> {
    let mut total = 0;
    for node in cluster.nodes.iter().filter(|n| n.child.is_some()) {
        let text = reqwest::get(format!("{}/metrics", node.endpoint()))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        total += text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())?;
    }
    Some(total)
}

/// Erasure-coded blobs and their recorded shard counts.
async fn shard_counts(cluster: &TestCluster) -> Vec<(String, usize)> {
    let meta = cluster.meta().await;
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page = meta.blob_shard_page(&after, 500).await.expect("page");
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        all.extend(page.into_iter().map(|b| (b.id, b.shards.len())));
    }
    meta.close().await;
    all
}

/// The blob ids holding `key`'s bytes.
async fn blobs_of(cluster: &TestCluster, bucket: &str, key: &str) -> Vec<String> {
    let meta = cluster.meta().await;
    let object = meta
        .get_object(bucket, key)
        .await
        .expect("metadata")
        .unwrap_or_else(|| panic!("{key} has no row"));
    meta.close().await;
    object.segments.into_iter().map(|s| s.blob).collect()
}

/// PUTs `data` until a node takes it: right after a node dies, writes that
/// need it fail until the cluster has declared it dead (`--dead-after`).
async fn put_until_taken(client: &Client, bucket: &str, key: &str, data: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match put(client, bucket, key, data.to_vec()).await {
            Ok(()) => return,
            Err(e) => assert!(Instant::now() < deadline, "{key} never taken: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_nodes_four_plus_two_survive_two_failures_and_heal() {
    let mut cluster = TestCluster::start(6, EC_ARGS).await;
    let objects = write_objects(&cluster, "erasure").await;
    // Large objects are erasure-coded: 6 shard files per blob, one per node.
    let counts = shard_counts(&cluster).await;
    // at-min-size, one-stripe-less-one, one-stripe, uneven, large, 3 parts,
    // SSE-S3, SSE-KMS and SSE-C.
    assert_eq!(counts.len(), 11, "erasure-coded blobs: {counts:?}");
    let files = shard_files(&cluster);
    assert!(
        files.iter().all(|f| !f.is_empty()),
        "every node holds shards"
    );
    let total: usize = files.iter().map(Vec::len).sum();
    assert_eq!(total, counts.len() * 6, "{counts:?}");
    // Objects below --erasure-min-size stayed replicated (or inline); the
    // rest, every part of the multipart one included, are erasure-coded.
    for (key, data) in &objects {
        let blobs = blobs_of(&cluster, "erasure", key).await;
        let coded = blobs.iter().all(|b| b.starts_with("e-4-2-"));
        let replicated = blobs.iter().all(|b| !b.starts_with("e-"));
        match data.len() < MIB {
            true => assert!(
                replicated,
                "{key} ({} bytes) is not replicated: {blobs:?}",
                data.len()
            ),
            false => assert!(
                coded,
                "{key} ({} bytes) is not erasure-coded: {blobs:?}",
                data.len()
            ),
        }
    }
    assert_eq!(blobs_of(&cluster, "erasure", "multipart").await.len(), 3);
    let blobs = blobs_of(&cluster, "erasure", SSE_C_KEY).await;
    assert!(
        blobs.iter().all(|b| b.starts_with("e-4-2-")),
        "SSE-C: {blobs:?}"
    );

    // Any two nodes down: everything reads back through the others, and new
    // writes are taken (replicated while fewer than k+m nodes take data).
    let mut objects = objects;
    for (a, b) in [(1, 2), (4, 5)] {
        cluster.nodes[a].kill9();
        cluster.nodes[b].kill9();
        for reader in [0, 3] {
            assert_objects_intact(&cluster.nodes[reader].client(), "erasure", &objects).await;
            assert_sse_c_intact(&cluster.nodes[reader].client(), "erasure").await;
        }
        let key = format!("written-while-{a}-and-{b}-were-down");
        let data = bytes_of(a as u64 * 10 + b as u64, 6 * MIB + 5);
        put_until_taken(&cluster.nodes[3].client(), "erasure", &key, &data).await;
        // The survivors report every erasure-coded blob at risk meanwhile.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let risk = metric_sum(&cluster, "coffer_shards_at_risk")
                .await
                .unwrap_or(0);
            let data = metric_sum(&cluster, "coffer_data_at_risk")
                .await
                .unwrap_or(0);
            if risk > 0 && data > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "two nodes down, nothing reported at risk"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        objects.push((key, data));
        let written = &objects[objects.len() - 1..];
        assert_objects_intact(&cluster.nodes[0].client(), "erasure", written).await;
        cluster.restart(a).await;
        cluster.restart(b).await;
    }
    let counts = shard_counts(&cluster).await;

    // A corrupt shard file is read around, quarantined and rebuilt.
    let (holder, victim) = shard_files(&cluster)
        .into_iter()
        .enumerate()
        .flat_map(|(node, files)| files.into_iter().map(move |f| (node, f)))
        .find(|(_, p)| {
            // A data shard (0..4): every whole read touches it.
            let data_shard = p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["0", "1", "2", "3"].contains(&e));
            data_shard && std::fs::metadata(p).is_ok_and(|m| m.len() > 2 * MIB as u64)
        })
        .expect("a large data shard");
    let mut bytes = std::fs::read(&victim).expect("shard");
    bytes[100] ^= 0xff;
    std::fs::write(&victim, &bytes).expect("corrupt");
    let client = cluster.nodes[holder].client();
    assert_objects_intact(&client, "erasure", &objects).await;
    let quarantined = cluster.nodes[holder]
        .data_dir
        .join("quarantine")
        .join(victim.file_name().expect("name"));
    assert!(quarantined.exists(), "the bad shard is set aside");
    let log = std::fs::read_to_string(cluster.nodes[holder].data_dir.with_extension("log"))
        .unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("quarantined") && l.contains("erasure/")),
        "the warning names the object whose shard went bad:\n{log}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let good = std::fs::read(&victim).ok().is_some_and(|b| b != bytes);
        if good {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the corrupt shard was not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Two nodes gone for good (wiped): healing rebuilds their shards and the
    // at-risk gauges return to zero.
    for index in [1, 4] {
        cluster.nodes[index].kill9();
        let _ = std::fs::remove_dir_all(&cluster.nodes[index].data_dir);
        cluster.restart(index).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let files = shard_files(&cluster);
        let total: usize = files.iter().map(Vec::len).sum();
        let risk = metric_sum(&cluster, "coffer_shards_at_risk").await;
        let data = metric_sum(&cluster, "coffer_data_at_risk").await;
        if total == counts.len() * 6
            && files.iter().all(|f| !f.is_empty())
            && risk == Some(0)
            && data == Some(0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healed: {total} shard files, at risk {risk:?}/{data:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // And the healed shards are good: lose two other nodes, read everything.
    cluster.nodes[0].kill9();
    cluster.nodes[2].kill9();
    assert_objects_intact(&cluster.nodes[5].client(), "erasure", &objects).await;
    assert_sse_c_intact(&cluster.nodes[5].client(), "erasure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicated_and_erasure_coded_objects_share_one_cluster() {
    // Nodes with and without --erasure: each writes with its own default, and
    // every node reads both kinds.
    let mut cluster = TestCluster::start(6, &["--dead-after", "5"]).await;
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket("mixed")
        .send()
        .await
        .expect("bucket");
    let replicated = bytes_of(1, 5 * MIB + 1);
    put(&client, "mixed", "replicated", replicated.clone())
        .await
        .expect("put");
    cluster.nodes[5].kill9();
    cluster.nodes[5].args = EC_ARGS.iter().map(|a| (*a).to_owned()).collect();
    cluster.restart(5).await;
    cluster.wait_until_all_see(6).await;
    let coded = bytes_of(2, 5 * MIB + 1);
    put(&cluster.nodes[5].client(), "mixed", "coded", coded.clone())
        .await
        .expect("put");
    let counts = shard_counts(&cluster).await;
    assert_eq!(counts.len(), 1, "{counts:?}");
    let objects = vec![
        ("replicated".to_owned(), replicated),
        ("coded".to_owned(), coded),
    ];
    for node in 0..6 {
        assert_objects_intact(&cluster.nodes[node].client(), "mixed", &objects).await;
    }
}

/// A cluster without `--erasure`: buckets choose their own protection.
const NO_DEFAULT_ARGS: &[&str] = &[
    "--erasure-min-size",
    "1048576",
    "--dead-after",
    "5",
    "--replicas",
    "3",
];
const ERASURE_4_2: &str = "<DataProtection><Scheme>erasure</Scheme><DataShards>4</DataShards><ParityShards>2</ParityShards></DataProtection>";

async fn create_bucket(client: &Client, bucket: &str) {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("bucket {bucket}: {e:?}"));
}

/// Writes plain objects of three sizes and a multipart one into `bucket`.
async fn write_mixed(client: &Client, bucket: &str, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut objects = Vec::new();
    for (i, (key, len)) in [
        ("small", 200_000),
        ("large", 5 * MIB + 1),
        ("uneven", 9 * MIB + 12_345),
    ]
    .into_iter()
    .enumerate()
    {
        let data = bytes_of(seed + i as u64, len);
        put(client, bucket, key, data.clone()).await.expect("put");
        objects.push((key.to_owned(), data));
    }
    // Every part at or above --erasure-min-size: each is coded on its own.
    let data = bytes_of(seed + 10, 2 * MULTIPART_PART + 2 * MIB + 7);
    put_multipart(client, bucket, "multipart", &data, MULTIPART_PART).await;
    objects.push(("multipart".to_owned(), data));
    objects
}

fn is_coded(blob: &str) -> bool {
    blob.starts_with("e-4-2-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buckets_choose_erasure_or_replicas_in_one_cluster() {
    let mut cluster = TestCluster::start(6, NO_DEFAULT_ARGS).await;
    let node = &cluster.nodes[0];
    let client = node.client();
    create_bucket(&client, "coded").await;
    create_bucket(&client, "copies").await;
    let (status, body) = node.data_protection("GET", "coded", None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NoSuchDataProtectionConfiguration"), "{body}");
    let (status, body) = node
        .data_protection("PUT", "coded", Some(ERASURE_4_2))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = node.data_protection("GET", "coded", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Scheme>erasure</Scheme>"), "{body}");
    assert!(body.contains("<DataShards>4</DataShards>"), "{body}");

    let coded = write_mixed(&client, "coded", 100).await;
    let copies = write_mixed(&client, "copies", 200).await;
    for (key, data) in &coded {
        let blobs = blobs_of(&cluster, "coded", key).await;
        let expect_coded = data.len() >= MIB;
        assert!(
            blobs.iter().all(|b| is_coded(b) == expect_coded),
            "coded/{key} ({} bytes): {blobs:?}",
            data.len()
        );
    }
    for (key, _) in &copies {
        let blobs = blobs_of(&cluster, "copies", key).await;
        assert!(
            !blobs.iter().any(|b| is_coded(b)),
            "copies/{key}: {blobs:?}"
        );
    }
    // large, uneven and the multipart's 3 parts: one 6-shard blob each.
    let counts = shard_counts(&cluster).await;
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.iter().all(|(_, n)| *n == 6), "{counts:?}");

    // Removing the setting: new writes follow the cluster default again
    // (replicas here); what was written keeps its shards.
    let (status, body) = node.data_protection("DELETE", "coded", None).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = node.data_protection("GET", "coded", None).await;
    assert_eq!(status, 404);
    let later = bytes_of(300, 5 * MIB + 1);
    put(&client, "coded", "after-reset", later.clone())
        .await
        .expect("put");
    let blobs = blobs_of(&cluster, "coded", "after-reset").await;
    assert!(!blobs.iter().any(|b| is_coded(b)), "{blobs:?}");
    assert!(
        blobs_of(&cluster, "coded", "large")
            .await
            .iter()
            .all(|b| is_coded(b))
    );
    let mut coded = coded;
    coded.push(("after-reset".to_owned(), later));

    // Two nodes lost: both buckets read back byte-identical, ranges too.
    cluster.nodes[1].kill9();
    cluster.nodes[2].kill9();
    for reader in [0, 3] {
        let client = cluster.nodes[reader].client();
        assert_objects_intact(&client, "coded", &coded).await;
        assert_objects_intact(&client, "copies", &copies).await;
    }
}

/// The server's own `--dead-after` (300 s): nodes that stop heartbeating are
/// suspect after a few seconds but not dead for minutes.
const EC_DEFAULT_DEAD_AFTER: &[&str] = &["--erasure", "4+2", "--replicas", "3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_of_six_nodes_silent_writes_go_on_long_before_they_are_dead() {
    // 4+2 acknowledges at five shards, so two silent nodes make coding over
    // them impossible; writes must not fail for the minutes until --dead-after
    // but be replicated over the four that answer, and coded again once the
    // two are back.
    let mut cluster = TestCluster::start(6, EC_DEFAULT_DEAD_AFTER).await;
    let client = cluster.nodes[0].client();
    create_bucket(&client, "silent").await;
    cluster.nodes[2].kill9();
    cluster.nodes[5].kill9();
    let killed = Instant::now();
    let data = bytes_of(500, 3 * MIB + 7);
    put_until_taken(&client, "silent", "while-two-are-down", &data).await;
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_secs(30),
        "a write waited {waited:?} with two of six nodes down (dead after 300 s)"
    );
    let blobs = blobs_of(&cluster, "silent", "while-two-are-down").await;
    assert!(!blobs.iter().any(|b| is_coded(b)), "{blobs:?}");
    let mut objects = vec![("while-two-are-down".to_owned(), data)];
    for reader in [0, 1, 3, 4] {
        assert_objects_intact(&cluster.nodes[reader].client(), "silent", &objects).await;
    }
    cluster.restart(2).await;
    cluster.restart(5).await;
    // Coded again as soon as the writer's view has them alive (its next
    // refresh, a heartbeat interval at most).
    let data = bytes_of(501, 3 * MIB + 9);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        put_until_taken(&client, "silent", "after-they-returned", &data).await;
        let blobs = blobs_of(&cluster, "silent", "after-they-returned").await;
        if blobs.iter().all(|b| is_coded(b)) {
            break;
        }
        assert!(Instant::now() < deadline, "never coded again: {blobs:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    objects.push(("after-they-returned".to_owned(), data));
    for reader in 0..6 {
        assert_objects_intact(&cluster.nodes[reader].client(), "silent", &objects).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erasure_setting_wider_than_the_cluster_falls_back_to_replicas() {
    // 4+2 needs six nodes; on three the setting is kept, and large objects are
    // replicated as under a cluster-wide --erasure, until nodes join.
    let cluster = TestCluster::start(3, NO_DEFAULT_ARGS).await;
    let node = &cluster.nodes[0];
    let client = node.client();
    create_bucket(&client, "wide").await;
    let (status, body) = node.data_protection("PUT", "wide", Some(ERASURE_4_2)).await;
    assert_eq!(status, 200, "{body}");
    let data = bytes_of(400, 5 * MIB + 1);
    put(&client, "wide", "large", data.clone())
        .await
        .expect("put");
    let blobs = blobs_of(&cluster, "wide", "large").await;
    assert!(!blobs.iter().any(|b| is_coded(b)), "{blobs:?}");
    assert_eq!(shard_counts(&cluster).await.len(), 0);
    let objects = vec![("large".to_owned(), data)];
    for reader in 0..3 {
        assert_objects_intact(&cluster.nodes[reader].client(), "wide", &objects).await;
    }
    // The CLI shows and changes the same setting.
    let shown = cluster.cli(&["bucket", "data-protection", "wide"]);
    assert_eq!(shown.trim(), "erasure:4+2");
    cluster.cli(&["bucket", "data-protection", "wide", "replicas"]);
    let (_, body) = node.data_protection("GET", "wide", None).await;
    assert!(body.contains("<Scheme>replicas</Scheme>"), "{body}");
    cluster.cli(&["bucket", "data-protection", "wide", "default"]);
    assert_eq!(
        cluster.cli(&["bucket", "data-protection", "wide"]).trim(),
        "default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_takes_shards_and_a_drained_node_hands_its_shards_over() {
    let mut cluster = TestCluster::start(6, EC_ARGS).await;
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket("moving")
        .send()
        .await
        .expect("bucket");
    let mut objects = Vec::new();
    for i in 0..12 {
        let key = format!("object-{i}");
        let data = bytes_of(100 + i, 2 * MIB + 1000 * i as usize);
        put(&client, "moving", &key, data.clone())
            .await
            .expect("put");
        objects.push((key, data));
    }
    let placed = |counts: &[(String, Vec<(usize, String)>)], node: &str| {
        counts
            .iter()
            .filter(|(_, shards)| shards.iter().any(|(_, n)| n == node))
            .count()
    };
    let complete = |shards: &[(usize, String)]| {
        let indices: std::collections::BTreeSet<usize> = shards.iter().map(|(i, _)| *i).collect();
        let nodes: std::collections::BTreeSet<&String> = shards.iter().map(|(_, n)| n).collect();
        indices.len() == 6 && nodes.len() == shards.len()
    };
    cluster.add_node(EC_ARGS).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = shard_placement(&cluster).await;
        if placed(&counts, "n6") > 0 && counts.iter().all(|(_, s)| complete(s) && s.len() == 6) {
            break;
        }
        assert!(Instant::now() < deadline, "n6 took no shards: {counts:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    cluster.cli(&["node", "drain", "n1"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = shard_placement(&cluster).await;
        let files = shard_files(&cluster);
        if placed(&counts, "n1") == 0
            && files[1].is_empty()
            && counts.iter().all(|(_, s)| complete(s) && s.len() == 6)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n1 still holds shards: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let list = cluster.cli(&["node", "list"]);
    assert!(list.contains("SHARDS-AT-RISK"), "{list}");
    assert!(
        list.contains("VOLUME-FREE/SIZE") && list.contains("G/"),
        "{list}"
    );
    // With n1 drained, any two other nodes may go: n1's shards really moved.
    cluster.nodes[2].kill9();
    cluster.nodes[3].kill9();
    assert_objects_intact(&cluster.nodes[6].client(), "moving", &objects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_node_is_read_around() {
    // SIGSTOP: the node's sockets accept but nothing answers — a slow node,
    // not a dead one. Reads hedge after a second and reconstruct.
    let cluster = TestCluster::start(6, EC_ARGS).await;
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket("frozen")
        .send()
        .await
        .expect("bucket");
    let objects: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("object-{i}"),
                bytes_of(200 + i, 9 * MIB + 77 * i as usize),
            )
        })
        .collect();
    for (key, data) in &objects {
        put(&client, "frozen", key, data.clone())
            .await
            .expect("put");
    }
    let pid = cluster.nodes[2]
        .child
        .as_ref()
        .expect("running")
        .id()
        .to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    let started = Instant::now();
    assert_objects_intact(&cluster.nodes[0].client(), "frozen", &objects).await;
    eprintln!("read around a frozen node in {:?}", started.elapsed());
    signal("-CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scrubber_finds_a_corrupt_parity_shard_and_it_is_rebuilt() {
    // Parity shards are never read while the data shards answer: only the
    // scrubber can notice one went bad.
    let args: Vec<&str> = EC_ARGS
        .iter()
        .copied()
        .chain(["--scrub-interval", "2"])
        .collect();
    let cluster = TestCluster::start(6, &args).await;
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket("scrubbed")
        .send()
        .await
        .expect("bucket");
    let data = bytes_of(300, 9 * MIB + 5);
    put(&client, "scrubbed", "object", data.clone())
        .await
        .expect("put");
    let (holder, victim) = shard_files(&cluster)
        .into_iter()
        .enumerate()
        .flat_map(|(node, files)| files.into_iter().map(move |f| (node, f)))
        .find(|(_, p)| p.extension().and_then(|e| e.to_str()) == Some("5"))
        .expect("parity shard 5");
    let good = std::fs::read(&victim).expect("shard");
    let mut bad = good.clone();
    bad[MIB + 3] ^= 0x55;
    std::fs::write(&victim, &bad).expect("corrupt");
    let quarantined = cluster.nodes[holder]
        .data_dir
        .join("quarantine")
        .join(victim.file_name().expect("name"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rebuilt = std::fs::read(&victim).ok();
        if quarantined.exists() && rebuilt.as_deref() == Some(&good[..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the corrupt parity shard was not found and rebuilt byte-identical"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The rebuilt parity really is parity: lose two data shards' nodes.
    let mut cluster = cluster;
    let data_holders: Vec<usize> = shard_files(&cluster)
        .into_iter()
        .enumerate()
        .filter(|(_, files)| {
            files
                .iter()
                .any(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("0" | "1")))
        })
        .map(|(node, _)| node)
        .collect();
    assert_eq!(data_holders.len(), 2, "{data_holders:?}");
    for node in &data_holders {
        cluster.nodes[*node].kill9();
    }
    let reader = (0..6)
        .find(|n| !data_holders.contains(n))
        .expect("a reader");
    let objects = vec![("object".to_owned(), data)];
    assert_objects_intact(&cluster.nodes[reader].client(), "scrubbed", &objects).await;
}

/// Every erasure-coded blob with its recorded (shard, node) pairs.
async fn shard_placement(cluster: &TestCluster) -> Vec<(String, Vec<(usize, String)>)> {
    let meta = cluster.meta().await;
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page = meta.blob_shard_page(&after, 500).await.expect("page");
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        all.extend(page.into_iter().map(|b| (b.id, b.shards)));
    }
    meta.close().await;
    all
}

/// Peak resident memory (VmHWM) of a running node's process, in bytes.
fn peak_rss(node: &Node) -> u64 {
    let pid = node.child.as_ref().expect("node running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_per_request_does_not_grow_with_object_size() {
    // PUT and GET an object of 32 MiB, then one eight times larger, through one
    // node: if any node buffered whole objects (or whole shards), its peak
    // resident memory would grow by about the difference.
    let cluster = TestCluster::start(6, EC_ARGS).await;
    let client = cluster.nodes[0].client();
    client
        .create_bucket()
        .bucket("streaming")
        .send()
        .await
        .expect("bucket");
    let mut peaks = Vec::new();
    for (i, len) in [32 * MIB, 256 * MIB].into_iter().enumerate() {
        let key = format!("object-{len}");
        let data = bytes_of(i as u64 + 40, len);
        put(&client, "streaming", &key, data.clone())
            .await
            .expect("put");
        let out = client
            .get_object()
            .bucket("streaming")
            .key(&key)
            .send()
            .await
            .expect("get");
        let mut body = out.body.into_async_read();
        let mut back = Vec::with_capacity(len);
        tokio::io::AsyncReadExt::read_to_end(&mut body, &mut back)
            .await
            .expect("body");
        assert!(back == data, "{key} read back");
        let blobs = blobs_of(&cluster, "streaming", &key).await;
        assert!(blobs.iter().all(|b| b.starts_with("e-4-2-")), "{blobs:?}");
        peaks.push(cluster.nodes.iter().map(peak_rss).collect::<Vec<_>>());
    }
    eprintln!(
        "peak RSS per node (MiB) after 32 MiB: {:?}",
        peaks[0].iter().map(|p| p >> 20).collect::<Vec<_>>()
    );
    eprintln!(
        "peak RSS per node (MiB) after 256 MiB: {:?}",
        peaks[1].iter().map(|p| p >> 20).collect::<Vec<_>>()
    );
    for (node, (small, large)) in peaks[0].iter().zip(&peaks[1]).enumerate() {
        let growth = large.saturating_sub(*small);
        assert!(
            growth < 64 * MIB as u64,
            "node {node}: peak memory grew by {} MiB for an object 224 MiB larger",
            growth >> 20
        );
    }
}
