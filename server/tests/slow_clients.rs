//! Clients that misbehave, against the real server in-process: hundreds of
//! connections dribbling header bytes or stalling upload bodies, silent
//! connections over the limit, TLS handshakes that never finish. An honest
//! aws-sdk-s3 client keeps being served, memory stays bounded, and a stalled
//! upload leaves neither a temp file nor an object behind.

#[path = "support/pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use coffer_server::limits::ConnectionLimits;
use coffer_server::serve::{RunningServer, ServeConfig, start};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const ROOT: (&str, &str) = ("ROOTKEYFORTESTS", "root-secret-for-tests");
/// Liveness bound for anything the server must do "promptly" (not a benchmark).
const PROMPTLY: Duration = Duration::from_secs(20);

fn short_limits() -> ConnectionLimits {
    ConnectionLimits {
        max_connections: 2000,
        handshake_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
        stall_timeout: Duration::from_secs(2),
    }
}

async fn start_with(data_dir: &Path, limits: ConnectionLimits) -> RunningServer {
    let mut config = ServeConfig::new(data_dir);
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.root_credentials = Some((ROOT.0.to_owned(), ROOT.1.to_owned()));
    config.connection_limits = limits;
    start(config).await.expect("server starts")
}

fn client(endpoint: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ROOT.0, ROOT.1, None, None, "slow-tests"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Whether the server closed `stream` (EOF or reset) within `within`; whatever
/// it answered first is read and ignored.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// Sends a request head one header line at a time, forever; returns once the
/// server has closed the connection (a write or read fails).
async fn dribble_head(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    if stream
        .write_all(b"PUT /honest/slowloris HTTP/1.1\r\nHost: x\r\n")
        .await
        .is_err()
    {
        return true;
    }
    let dribble = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if stream
                .write_all(format!("x-dribble-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let mut probe = [0u8; 1];
            // A closed connection reads as EOF at once; an open one would block.
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), stream.peek(&mut probe)).await
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), dribble)
        .await
        .is_ok()
}

/// Starts a presigned PUT of 1 MiB, sends 64 KiB of it, and stalls.
async fn stall_upload(addr: SocketAddr, path: String) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let head = format!("PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1048576\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return true;
    }
    let _ = stream.write_all(&vec![b'z'; 64 * 1024]).await;
    closed_by_server(&mut stream, Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_clients_do_not_starve_an_honest_one() {
    let dir = coffer_testkit::temp_dir("slow-clients");
    let server = start_with(&dir, short_limits()).await;
    let addr = server.local_addr();
    let endpoint = server.endpoint();
    let s3 = client(&endpoint);
    s3.create_bucket()
        .bucket("honest")
        .send()
        .await
        .expect("bucket");
    let presign = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(600))
        .expect("presign config");
    let mut stalled_paths = Vec::new();
    for i in 0..100 {
        let request = s3
            .put_object()
            .bucket("honest")
            .key(format!("stalled/{i}"))
            .presigned(presign.clone())
            .await
            .expect("presign");
        let url = request.uri().to_owned();
        let path = url.strip_prefix(&endpoint).expect("path").to_owned();
        stalled_paths.push(path);
    }
    let baseline = rss_bytes();

    let mut attackers = Vec::new();
    for _ in 0..300 {
        attackers.push(tokio::spawn(dribble_head(addr)));
    }
    for path in stalled_paths {
        attackers.push(tokio::spawn(stall_upload(addr, path)));
    }
    // The stalled uploads got past authentication and are being written: their
    // temp files exist (so "nothing left behind" below means they were removed).
    // Each lives about `stall_timeout`, so collect every name seen while the
    // uploads arrive (a loaded machine may spread their arrival over seconds).
    let tmp = dir.join("tmp");
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 100 && tokio::time::Instant::now() < deadline {
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            seen.extend(entries.filter_map(|e| e.ok()).map(|e| e.file_name()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        seen.len() >= 90,
        "only {} stalled uploads reached the blob store",
        seen.len()
    );

    // The honest client, meanwhile: every request completes promptly.
    let payload = vec![42u8; 64 * 1024];
    let mut peak = baseline;
    for i in 0..40 {
        let key = format!("honest/{i}");
        tokio::time::timeout(
            PROMPTLY,
            s3.put_object()
                .bucket("honest")
                .key(&key)
                .body(ByteStream::from(payload.clone()))
                .send(),
        )
        .await
        .expect("an honest PUT was starved")
        .expect("honest PUT");
        let got = tokio::time::timeout(PROMPTLY, s3.get_object().bucket("honest").key(&key).send())
            .await
            .expect("an honest GET was starved")
            .expect("honest GET")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        assert_eq!(got.len(), payload.len());
        peak = peak.max(rss_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut closed = 0;
    for attacker in attackers {
        if attacker.await.expect("attacker task") {
            closed += 1;
        }
    }
    assert_eq!(closed, 400, "every slow connection is closed by the server");
    // Hundreds of held connections cost little: no per-connection buffers of
    // the size of the bodies they announced (100 x 1 MiB).
    assert!(
        peak.saturating_sub(baseline) < 256 << 20,
        "memory grew by {} MiB",
        peak.saturating_sub(baseline) >> 20
    );

    // Nothing of the stalled uploads remains: no temp file, no object.
    let mut leftovers = usize::MAX;
    for _ in 0..100 {
        leftovers = std::fs::read_dir(&tmp).map_or(0, |d| d.count());
        if leftovers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(leftovers, 0, "temp files left in {}", tmp.display());
    let listed = s3
        .list_objects_v2()
        .bucket("honest")
        .send()
        .await
        .expect("list");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 40, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("honest/")), "{keys:?}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let dir = coffer_testkit::temp_dir("slow-idle");
    let server = start_with(&dir, short_limits()).await;
    let mut stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let (status, body) = pki::get(&mut stream, "/health/live").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, "ok");
    assert!(
        closed_by_server(&mut stream, PROMPTLY).await,
        "an idle keep-alive connection stayed open"
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let dir = coffer_testkit::temp_dir("slow-max");
    let limits = ConnectionLimits {
        max_connections: 20,
        header_timeout: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(120),
        ..ConnectionLimits::default()
    };
    let server = start_with(&dir, limits).await;
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Let the server accept them all before the one too many.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closed_by_server(&mut extra, PROMPTLY).await,
        "the connection over the limit was left waiting"
    );
    // The held ones are still open: their slots are theirs.
    let mut probe = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), held[0].peek(&mut probe))
            .await
            .is_err()
    );
    drop(held);
    // Freed slots serve an honest client again.
    let s3 = client(&server.endpoint());
    let mut served = false;
    for _ in 0..50 {
        if s3.list_buckets().send().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "no request served after the held connections closed"
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tls_handshakes_that_never_finish_are_closed() {
    let dir = coffer_testkit::temp_dir("slow-tls");
    let ca = pki::TestCa::new("Coffer test CA");
    let volume = pki::SecretVolume::new(&dir.join("secret"), &ca, &ca.leaf(&[]));
    let mut config = ServeConfig::new(dir.join("data"));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.root_credentials = Some((ROOT.0.to_owned(), ROOT.1.to_owned()));
    config.connection_limits = ConnectionLimits {
        max_connections: 60,
        ..short_limits()
    };
    config.tls = Some(coffer_server::tls::TlsFiles::new(
        volume.cert(),
        volume.key(),
    ));
    let server = start(config).await.expect("TLS server");
    let addr = server.local_addr();
    // 50 of 60 slots taken by handshakes that start (a TLS record header) and stop.
    let mut stuck = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
        stuck.push(stream);
    }
    let (mut honest, _) = pki::connect(addr, ca.client_config(&[])).await;
    let (status, _) = pki::get(&mut honest, "/health/ready").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    for stream in &mut stuck {
        assert!(
            closed_by_server(stream, PROMPTLY).await,
            "a stuck TLS handshake was left open"
        );
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
