//! A storage cluster of real `coffer-server` processes for tests: nodes on
//! 127.0.0.x with their own data dirs and one throwaway Postgres, started,
//! killed, restarted and inspected; shared by `cluster.rs` and `erasure.rs`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use coffer_server::meta::MetaStore;

pub const ROOT_KEY: &str = "CLUSTERROOTKEY";
pub const ROOT_SECRET: &str = "cluster-root-secret";
/// Every node of a cluster shares one master key (each would otherwise generate
/// its own, and all but the first would refuse to start).
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const SECRET: &str = "cluster-secret-for-tests";

/// Cluster tests start many processes; one at a time keeps heartbeats honest on
/// a small machine.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    pub secret: Option<&'static str>,
    pub child: Option<Child>,
}

impl Node {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spawn(&mut self, database_url: &str) {
        let log = std::fs::File::create(self.data_dir.with_extension("log")).expect("log file");
        std::fs::create_dir_all(&self.data_dir).expect("data dir");
        let child = Command::new(env!("CARGO_BIN_EXE_coffer-server"))
            .arg("serve")
            .args(["--listen", &self.addr.to_string()])
            .args(["--advertise-url", &self.endpoint()])
            .args(["--node-id", &self.id])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--database-url", database_url])
            .args(["--heal-interval", "1"])
            // Every node would try the console's default 127.0.0.1:9001 (and
            // warn when another holds it); these tests do not use it.
            .args(["--console-listen", "off"])
            .args(&self.args)
            .env("COFFER_CLUSTER_SECRET", self.secret.unwrap_or_default())
            .env("COFFER_ROOT_ACCESS_KEY", ROOT_KEY)
            .env("COFFER_ROOT_SECRET_KEY", ROOT_SECRET)
            .env("COFFER_MASTER_KEY", MASTER_KEY)
            .env("COFFER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start coffer-server");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn client(&self) -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(ROOT_KEY, ROOT_SECRET, None, None, "test"))
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Client::from_conf(config)
    }

    /// Coffer's own `?coffer-data-protection` sub-resource of `bucket`, signed
    /// with the root key: `PUT` with `body`, `GET` or `DELETE`. Returns the
    /// status and the response body.
    pub async fn data_protection(
        &self,
        method: &str,
        bucket: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        use aws_sigv4::sign::v4;
        let url = format!("{}/{bucket}?coffer-data-protection", self.endpoint());
        let body = body.unwrap_or_default().as_bytes().to_vec();
        let identity = Credentials::new(ROOT_KEY, ROOT_SECRET, None, None, "raw").into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(std::time::SystemTime::now())
            .settings(settings)
            .build()
            .expect("signing params")
            .into();
        let host = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("host")
            .to_owned();
        let headers = [("host", host.as_str())];
        let signable = SignableRequest::new(
            method,
            &url,
            headers.into_iter(),
            SignableBody::Bytes(&body),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        let mut request = reqwest::Client::new().request(method.parse().expect("method"), &url);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    pub fn blob_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Ok(shards) = std::fs::read_dir(self.data_dir.join("blobs")) {
            for shard in shards.flatten() {
                if let Ok(entries) = std::fs::read_dir(shard.path()) {
                    files.extend(entries.flatten().map(|e| e.path()));
                }
            }
        }
        files
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct TestCluster {
    pub database_url: String,
    pub nodes: Vec<Node>,
    pub root: PathBuf,
    pub _serial: tokio::sync::MutexGuard<'static, ()>,
}

pub fn free_addr(host: u8) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.".to_owned() + &host.to_string(), 0)).expect("bind");
    listener.local_addr().expect("addr")
}

impl TestCluster {
    /// Starts `count` nodes, each with `args`, one after another.
    pub async fn start(count: usize, args: &[&str]) -> Self {
        let serial = SERIAL.lock().await;
        let database_url = coffer_testkit::postgres_url().await;
        let root = coffer_testkit::temp_dir("cluster");
        let mut cluster = Self {
            database_url,
            nodes: Vec::new(),
            root,
            _serial: serial,
        };
        for _ in 0..count {
            cluster.add_node(args).await;
        }
        cluster
    }

    pub async fn add_node(&mut self, args: &[&str]) -> usize {
        let index = self.nodes.len();
        let mut node = Node {
            id: format!("n{index}"),
            addr: free_addr(10 + index as u8),
            data_dir: self.root.join(format!("n{index}")),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            secret: Some(SECRET),
            child: None,
        };
        node.spawn(&self.database_url);
        self.nodes.push(node);
        self.wait_ready(index).await;
        self.wait_until_all_see(self.nodes.len()).await;
        index
    }

    /// Waits until every running node sees `count` live members (membership is
    /// refreshed with each heartbeat; writes are placed on the members a node sees).
    pub async fn wait_until_all_see(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            loop {
                let metrics = reqwest::get(format!("{}/metrics", node.endpoint()))
                    .await
                    .expect("metrics")
                    .text()
                    .await
                    .unwrap_or_default();
                let alive = metrics
                    .lines()
                    .find(|l| l.starts_with("coffer_cluster_nodes{liveness=\"alive\"}"))
                    .and_then(|l| l.split_whitespace().last())
                    .and_then(|v| v.parse::<usize>().ok());
                if alive == Some(count) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} sees {alive:?} of {count} nodes",
                    node.id
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    pub async fn restart(&mut self, index: usize) {
        let url = self.database_url.clone();
        self.nodes[index].spawn(&url);
        self.wait_ready(index).await;
    }

    pub async fn wait_ready(&mut self, index: usize) {
        let url = format!("{}/health/ready", self.nodes[index].endpoint());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            if let Some(child) = self.nodes[index].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(self.nodes[index].data_dir.with_extension("log"))
                    .unwrap_or_default();
                panic!("node {index} exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "node {index} not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn meta(&self) -> MetaStore {
        MetaStore::connect(&self.database_url)
            .await
            .expect("metadata store")
    }

    /// Runs the CLI against the cluster's store.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_coffer-server"))
            .args(args)
            .args(["--database-url", &self.database_url])
            .env("COFFER_MASTER_KEY", MASTER_KEY)
            .output()
            .expect("run coffer-server");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Replicas recorded per live blob, as (blob -> nodes).
    pub async fn replicas(&self) -> BTreeMap<String, Vec<String>> {
        let meta = self.meta().await;
        let mut all = BTreeMap::new();
        let mut after = String::new();
        loop {
            let page = meta.blob_replica_page(&after, 1000).await.expect("page");
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for blob in page {
                all.insert(blob.id, blob.nodes);
            }
        }
        meta.close().await;
        all
    }

    /// Waits until `done` holds for the recorded replicas, or fails after `limit`.
    pub async fn wait_for_replicas(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&BTreeMap<String, Vec<String>>) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let replicas = self.replicas().await;
            if done(&replicas) {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; replicas: {replicas:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill9();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Deterministic bytes for a key, of a size derived from it.
pub fn content(key: &str, max: usize) -> Vec<u8> {
    let seed = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    // Above the inline limit (16 KiB), so every object is a replicated blob.
    let len = 20_000 + (seed % max as u64) as usize;
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub async fn put(client: &Client, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

pub async fn get(client: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let bytes = out.body.collect().await.map_err(|e| format!("{e:?}"))?;
    Ok(bytes.into_bytes().to_vec())
}

pub async fn assert_all_readable(node: &Node, bucket: &str, keys: &[String], max: usize) {
    let client = node.client();
    for key in keys {
        let body = get(&client, bucket, key)
            .await
            .unwrap_or_else(|e| panic!("{key} through {}: {e}", node.id));
        assert!(
            body == content(key, max),
            "{key} through {} differs",
            node.id
        );
    }
}
