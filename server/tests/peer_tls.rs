//! Peer traffic over TLS, with real `coffer-server` processes sharing one
//! throwaway Postgres: three nodes with certificates from one cluster CA
//! replicate an object written over HTTPS; a node whose certificate another CA
//! issued, a node of another CA altogether, and a plain-HTTP node are each refused
//! at start with a message that says why.

#[path = "support/pki.rs"]
mod pki;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use coffer_server::meta::MetaStore;
use pki::TestCa;

const ROOT_KEY: &str = "PEERTLSROOTKEY";
const ROOT_SECRET: &str = "peer-tls-root-secret";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SECRET: &str = "peer-tls-cluster-secret";

struct Node {
    child: Child,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Writes a certificate pair for a node into `dir` and returns (cert, key).
fn write_pair(dir: &Path, ca: &TestCa) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("dir");
    let leaf = ca.leaf(&[]);
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, leaf.cert_pem).expect("cert");
    std::fs::write(&key, leaf.key_pem).expect("key");
    (cert, key)
}

/// Starts a node; `tls` is (cert, key, peer CA file).
fn spawn(
    root: &Path,
    id: &str,
    addr: SocketAddr,
    database_url: &str,
    tls: Option<(&Path, &Path, &Path)>,
) -> Node {
    let data_dir = root.join(id);
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let log = root.join(format!("{id}.log"));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer-server"));
    command
        .arg("serve")
        .args(["--console-listen", "off"])
        .args(["--listen", &addr.to_string()])
        .args(["--advertise-url", &format!("{scheme}://{addr}")])
        .args(["--node-id", id])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--database-url", database_url])
        .args(["--heal-interval", "1"]);
    if let Some((cert, key, ca)) = tls {
        command
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .arg("--peer-ca")
            .arg(ca);
    }
    let child = command
        .env("COFFER_CLUSTER_SECRET", SECRET)
        .env("COFFER_ROOT_ACCESS_KEY", ROOT_KEY)
        .env("COFFER_ROOT_SECRET_KEY", ROOT_SECRET)
        .env("COFFER_MASTER_KEY", MASTER_KEY)
        .env("COFFER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start coffer-server");
    Node { child, log }
}

/// Waits until `/health/ready` answers over TLS trusting `ca`.
async fn wait_ready(addr: SocketAddr, ca: &TestCa, node: &mut Node) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Ok(tcp)) =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
        {
            drop(tcp);
            let (mut stream, _) = pki::connect(addr, ca.client_config(&[])).await;
            let (status, _) = pki::get(&mut stream, "/health/ready").await;
            if status.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!(
                "node exited ({status}): {}",
                std::fs::read_to_string(&node.log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "node at {addr} not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a node that must refuse to start; returns its log.
fn refused(mut node: Node) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = node.child.try_wait() {
            assert!(!status.success(), "the refused node exited successfully");
            return std::fs::read_to_string(&node.log).unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "the node was not refused: {}",
            std::fs::read_to_string(&node.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tls_client(endpoint: &str, ca: &TestCa) -> Client {
    use aws_smithy_http_client::tls;
    let context = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::empty().with_pem_certificate(ca.pem.as_bytes()))
        .build()
        .expect("tls context");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https();
    Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                ROOT_KEY,
                ROOT_SECRET,
                None,
                None,
                "peer-tls",
            ))
            .force_path_style(true)
            .http_client(http)
            .build(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_over_tls_and_strangers_are_refused() {
    let database_url = coffer_testkit::postgres_url().await;
    let root = coffer_testkit::temp_dir("peer-tls");
    let ca = TestCa::new("Coffer cluster CA");
    let ca_file = root.join("ca.crt");
    std::fs::write(&ca_file, &ca.pem).expect("ca file");

    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for i in 1..=3 {
        let id = format!("n{i}");
        let (cert, key) = write_pair(&root.join(format!("{id}-tls")), &ca);
        let addr = free_addr();
        let mut node = spawn(
            &root,
            &id,
            addr,
            &database_url,
            Some((&cert, &key, &ca_file)),
        );
        wait_ready(addr, &ca, &mut node).await;
        nodes.push(node);
        addrs.push(addr);
    }

    // A write through one node lands on all three, carried over TLS between them.
    let s3 = tls_client(&format!("https://{}", addrs[0]), &ca);
    s3.create_bucket()
        .bucket("replicated")
        .send()
        .await
        .expect("bucket");
    let body = vec![5u8; 1 << 20];
    s3.put_object()
        .bucket("replicated")
        .key("k")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put");
    let meta = MetaStore::connect(&database_url).await.expect("meta");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = meta.replica_counts().await.expect("counts");
        let holders = counts.iter().filter(|(_, blobs, _)| *blobs > 0).count();
        if holders == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not reach 3 nodes: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    meta.close().await;
    // And reads through another node fetch it back.
    let other = tls_client(&format!("https://{}", addrs[2]), &ca);
    let got = other
        .get_object()
        .bucket("replicated")
        .key("k")
        .send()
        .await
        .expect("get via n3")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(got.as_ref(), body.as_slice());

    // A certificate issued by another CA: peers would refuse it.
    let stranger_ca = TestCa::new("Some other CA");
    let (cert, key) = write_pair(&root.join("n4-tls"), &stranger_ca);
    let log = refused(spawn(
        &root,
        "n4",
        free_addr(),
        &database_url,
        Some((&cert, &key, &ca_file)),
    ));
    assert!(log.contains("would be refused by its peers"), "{log}");

    // A node of another CA altogether (its certificate and its trust): the
    // live peers' certificates fail its verification, and it says so.
    let (cert, key) = write_pair(&root.join("n5-tls"), &stranger_ca);
    let stranger_file = root.join("stranger.crt");
    std::fs::write(&stranger_file, &stranger_ca.pem).expect("stranger ca");
    let log = refused(spawn(
        &root,
        "n5",
        free_addr(),
        &database_url,
        Some((&cert, &key, &stranger_file)),
    ));
    assert!(
        log.contains("failed TLS verification against --peer-ca"),
        "{log}"
    );

    // A plain-HTTP node among TLS ones: refused, not silently downgraded.
    let log = refused(spawn(&root, "n6", free_addr(), &database_url, None));
    assert!(
        log.contains("a cluster is all TLS or all plain HTTP"),
        "{log}"
    );

    drop(nodes);
    let _ = std::fs::remove_dir_all(&root);
}
