//! Damaged replicas on a lone node (one copy of each blob): a flipped byte, a
//! truncated file and a removed file. A GET of a damaged object fails cleanly
//! and promptly — never a hang, never wrong bytes —, other objects stay
//! readable, and the scrubber and inventory report the damage by object name
//! in the log and in `/metrics`. (A cluster reads around such replicas and
//! repairs them: `server/tests/cluster.rs`.)

#[path = "support/process.rs"]
mod process;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use process::{ROOT_KEY, ROOT_SECRET, Server};

const SIZE: usize = 3_000_000;

fn content(seed: u8) -> Vec<u8> {
    (0..SIZE as u32).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Every blob file on the volume.
fn blob_files(server: &Server) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for shard in server.files_in("blobs") {
        if let Ok(entries) = std::fs::read_dir(shard) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
    }
    files
}

/// The whole object, or why it could not be read; bounded in time.
async fn get(s3: &Client, key: &str) -> Result<Vec<u8>, String> {
    let read = async {
        let object = s3
            .get_object()
            .bucket("damage")
            .key(key)
            .send()
            .await
            .map_err(|e| format!("{:?}", e.into_service_error()))?;
        let body = object.body.collect().await.map_err(|e| e.to_string())?;
        Ok(body.into_bytes().to_vec())
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("GET {key} of a damaged object hung"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_replica_on_a_lone_node_fails_its_get_cleanly_and_is_reported() {
    let mut server = Server::new("corruption", None);
    server.env = vec![
        ("COFFER_SCRUB_INTERVAL".into(), "1".into()),
        ("COFFER_HEAL_INTERVAL".into(), "1".into()),
    ];
    server.start().await;
    let s3 = workload::client(&server.endpoint(), ROOT_KEY, ROOT_SECRET);
    s3.create_bucket()
        .bucket("damage")
        .send()
        .await
        .expect("bucket");
    // One blob per object; remember which file each one wrote.
    let mut files = std::collections::BTreeMap::new();
    for (seed, key) in ["flipped", "truncated", "removed", "intact"]
        .into_iter()
        .enumerate()
    {
        let before = blob_files(&server);
        s3.put_object()
            .bucket("damage")
            .key(key)
            .body(ByteStream::from(content(seed as u8)))
            .send()
            .await
            .expect("put");
        let new: Vec<PathBuf> = blob_files(&server)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        assert_eq!(new.len(), 1, "{key}: one blob file expected, got {new:?}");
        files.insert(key, new[0].clone());
    }

    // A flipped byte in the second 1 MiB block, a file cut in the middle of its
    // first block, a file gone.
    let mut bytes = std::fs::read(&files["flipped"]).expect("read blob");
    bytes[1_500_000] ^= 0x20;
    std::fs::write(&files["flipped"], &bytes).expect("flip");
    let cut = std::fs::OpenOptions::new()
        .write(true)
        .open(&files["truncated"])
        .expect("open blob");
    cut.set_len(500_000).expect("truncate");
    drop(cut);
    std::fs::remove_file(&files["removed"]).expect("remove");

    for key in ["flipped", "truncated", "removed"] {
        let started = Instant::now();
        let read = get(&s3, key).await;
        assert!(
            read.is_err(),
            "{key}: a damaged single copy was served as a whole object"
        );
        eprintln!("{key}: failed in {:?}: {:?}", started.elapsed(), read.err());
    }
    assert_eq!(get(&s3, "intact").await.expect("intact"), content(3));

    // The damage is reported, by object name, without anyone reading it again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(server.log()).unwrap_or_default();
        let named = ["damage/flipped", "damage/truncated", "damage/removed"]
            .iter()
            .all(|object| {
                log.lines()
                    .any(|l| l.contains("WARN") && l.contains(object))
            });
        let counted =
            coffer_testkit::metric(&server.endpoint(), "coffer_corrupt_replicas_total").await;
        if named && counted >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "damage not reported (corrupt replicas counted: {counted}):\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Nothing else was alarmed about: the intact object is never named.
    let log = std::fs::read_to_string(server.log()).unwrap_or_default();
    assert!(!log.contains("damage/intact"), "{log}");
    assert_eq!(get(&s3, "intact").await.expect("intact"), content(3));
    server.remove();
}
