//! A full disk, for real: the server's data directory (blob files and the SQLite
//! metadata file) on a small tmpfs. Writes that do not fit fail with `507
//! StorageFull` and leave nothing visible; reads, listings and deletes keep
//! working; once deletes free space (garbage collection), writes resume without
//! a restart. Needs root for `mount` (CI runs as root); without it the test
//! fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use coffer_server::serve::{ServeConfig, start};

const MIB: usize = 1 << 20;

/// A tmpfs mounted for the test, unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(size_mib: usize) -> Self {
        let dir = coffer_testkit::temp_dir("disk-full");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (this test needs root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
            "disk-full",
        ))
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

fn object(i: usize) -> Vec<u8> {
    let stamp = format!("object {i};");
    stamp.bytes().cycle().take(MIB).collect()
}

async fn put(s3: &Client, key: &str, body: Vec<u8>) -> Result<(), (u16, String)> {
    s3.put_object()
        .bucket("full")
        .key(key)
        .body(body.into())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            let status = e.raw_response().map_or(0, |r| r.status().as_u16());
            let code = e
                .as_service_error()
                .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s))
                .unwrap_or_default()
                .to_owned();
            (status, code)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_cleanly_and_recovers_when_space_is_freed() {
    let disk = SmallDisk::mount(24);
    let mut config = ServeConfig::new(disk.path());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.root_credentials = Some((
        "ROOTKEYFORTESTS".to_owned(),
        "root-secret-for-tests".to_owned(),
    ));
    config.gc_interval = Duration::from_millis(500);
    let server = start(config).await.expect("server starts");
    let s3 = client(&server.endpoint());
    s3.create_bucket()
        .bucket("full")
        .send()
        .await
        .expect("bucket");

    // Fill the disk with 1 MiB objects until a write is refused.
    let mut stored = Vec::new();
    let refusal = loop {
        let i = stored.len();
        assert!(i < 64, "a 24 MiB disk took {i} MiB of objects");
        match put(&s3, &format!("o{i}"), object(i)).await {
            Ok(()) => stored.push(i),
            Err(refused) => break refused,
        }
    };
    assert_eq!(refusal, (507, "StorageFull".to_owned()));
    assert!(stored.len() >= 10, "only {} objects fit", stored.len());
    // /metrics (and the heartbeat behind `node list` and the console) shows
    // the volume's size and that it is nearly full.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let endpoint = server.endpoint();
        let size = coffer_testkit::metric(&endpoint, "coffer_volume_size_bytes").await;
        let available = coffer_testkit::metric(&endpoint, "coffer_volume_available_bytes").await;
        if size == 24 << 20 && (0..2 << 20).contains(&available) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "volume gauges: size {size}, available {available}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The refused write is not visible, and nothing of it was left behind.
    let refused_key = format!("o{}", stored.len());
    let head = s3
        .head_object()
        .bucket("full")
        .key(&refused_key)
        .send()
        .await;
    assert!(head.is_err(), "{refused_key} must not exist");
    let temp = std::fs::read_dir(disk.path().join("tmp"))
        .expect("tmp")
        .count();
    assert_eq!(temp, 0, "no temp file of the refused write remains");
    // More refusals do not change that; reads and listings still work.
    assert_eq!(
        put(&s3, "again", object(99)).await,
        Err((507, "StorageFull".to_owned()))
    );
    let got = s3
        .get_object()
        .bucket("full")
        .key("o0")
        .send()
        .await
        .expect("read on a full disk");
    assert_eq!(
        got.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec(),
        object(0)
    );
    let listed = s3
        .list_objects_v2()
        .bucket("full")
        .send()
        .await
        .expect("list on a full disk");
    assert_eq!(listed.key_count(), Some(stored.len() as i32));

    // Deletes work on a full disk, and the space comes back without a restart.
    for i in stored.iter().take(6) {
        s3.delete_object()
            .bucket("full")
            .key(format!("o{i}"))
            .send()
            .await
            .expect("delete on a full disk");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match put(&s3, "after", object(100)).await {
            Ok(()) => break,
            Err(e) => {
                assert_eq!(e, (507, "StorageFull".to_owned()));
                assert!(Instant::now() < deadline, "writes never resumed");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    let got = s3
        .get_object()
        .bucket("full")
        .key("after")
        .send()
        .await
        .expect("the new object");
    assert_eq!(
        got.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec(),
        object(100)
    );
    server.shutdown().await;
}
