//! HTTPS on the S3 listener, end to end: a CA made by the test, the real server
//! in-process, real rustls handshakes and the official aws-sdk-s3 over TLS;
//! certificate rotation through a Secret-volume symlink swap, broken files,
//! `aws:SecureTransport`, and plain HTTP sent to the TLS port.

#[path = "support/pki.rs"]
mod pki;

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use coffer_server::meta::NewAccessKey;
use coffer_server::serve::{RunningServer, ServeConfig, start};
use coffer_server::tls::TlsFiles;
use pki::{SecretVolume, TestCa};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ROOT: (&str, &str) = ("ROOTKEYFORTESTS", "root-secret-for-tests");

fn config(data_dir: &Path, tls: Option<&SecretVolume>) -> ServeConfig {
    let mut config = ServeConfig::new(data_dir);
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.root_credentials = Some((ROOT.0.to_owned(), ROOT.1.to_owned()));
    config.tls = tls.map(|v| {
        let mut files = TlsFiles::new(v.cert(), v.key());
        files.reload_interval = Duration::from_millis(200);
        files
    });
    config
}

/// aws-sdk-s3 over its rustls (ring) connector, trusting only `ca_pem`.
fn tls_client(endpoint: &str, ca_pem: &str, id: &str, secret: &str) -> Client {
    use aws_smithy_http_client::tls;
    let trust = tls::TrustStore::empty().with_pem_certificate(ca_pem.as_bytes());
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("tls context");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(id, secret, None, None, "tls-tests"))
        .force_path_style(true)
        .http_client(http)
        .build();
    Client::from_conf(config)
}

fn plain_client(endpoint: &str, id: &str, secret: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(id, secret, None, None, "tls-tests"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

async fn start_tls(data_dir: &Path, volume: &SecretVolume) -> RunningServer {
    start(config(data_dir, Some(volume)))
        .await
        .expect("TLS server starts")
}

#[tokio::test]
async fn sdk_client_works_over_tls_with_a_private_ca() {
    let dir = coffer_testkit::temp_dir("tls-sdk");
    let ca = TestCa::new("Coffer test CA");
    let volume = SecretVolume::new(&dir.join("secret"), &ca, &ca.leaf(&[]));
    let server = start_tls(&dir.join("data"), &volume).await;
    let endpoint = server.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");

    let s3 = tls_client(&endpoint, &ca.pem, ROOT.0, ROOT.1);
    s3.create_bucket()
        .bucket("secure")
        .send()
        .await
        .expect("create");
    let body = vec![7u8; 3 << 20];
    s3.put_object()
        .bucket("secure")
        .key("big")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put over TLS");
    let got = s3
        .get_object()
        .bucket("secure")
        .key("big")
        .send()
        .await
        .expect("get over TLS")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(got.as_ref(), body.as_slice());

    // A presigned URL carries https and works with any TLS client.
    let presigned = s3
        .get_object()
        .bucket("secure")
        .key("big")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300))
                .expect("presign config"),
        )
        .await
        .expect("presign");
    let url = presigned.uri().to_owned();
    assert!(url.starts_with("https://"), "{url}");
    let path = url
        .strip_prefix(&endpoint)
        .expect("the presigned URL is on the endpoint");
    let (mut stream, _) = pki::connect(server.local_addr(), ca.client_config(&[])).await;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.local_addr()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.expect("read");
    assert_eq!(&head, b"HTTP/1.1 200", "presigned https GET");

    // Probes and Prometheus stay reachable under TLS.
    let (mut stream, _) = pki::connect(server.local_addr(), ca.client_config(&[])).await;
    let (status, body) = pki::get(&mut stream, "/health/ready").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, "ready");
    let (status, body) = pki::get(&mut stream, "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.contains("# TYPE"), "metrics text");

    // A client that does not trust the CA is refused by its own verifier.
    let stranger = TestCa::new("Another CA");
    let untrusting = tls_client(&endpoint, &stranger.pem, ROOT.0, ROOT.1);
    assert!(untrusting.list_buckets().send().await.is_err());

    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn alpn_offers_h2_and_http_1_1() {
    let dir = coffer_testkit::temp_dir("tls-alpn");
    let ca = TestCa::new("Coffer test CA");
    let volume = SecretVolume::new(&dir.join("secret"), &ca, &ca.leaf(&[]));
    let server = start_tls(&dir.join("data"), &volume).await;
    for (offer, expected) in [
        (&[b"h2".as_slice(), b"http/1.1"][..], b"h2".as_slice()),
        (&[b"http/1.1".as_slice()][..], b"http/1.1".as_slice()),
    ] {
        let (stream, _) = pki::connect(server.local_addr(), ca.client_config(offer)).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(expected));
    }
    // TLS 1.2 alone is accepted too (older clients).
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("tls12")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let (mut stream, _) = pki::connect(server.local_addr(), std::sync::Arc::new(tls12)).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (status, _) = pki::get(&mut stream, "/health/live").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A HEAD answer over HTTP/2 is its headers alone, errors included: DATA on a
/// HEAD is a protocol error to HTTP/2 clients (curl resets the stream, Go's
/// http2 in rclone logs it), so a HEAD that fails would not even be a 403.
#[tokio::test]
async fn head_over_http2_is_headers_only_even_for_errors() {
    let dir = coffer_testkit::temp_dir("tls-h2-head");
    let ca = TestCa::new("Coffer test CA");
    let volume = SecretVolume::new(&dir.join("secret"), &ca, &ca.leaf(&[]));
    let server = start_tls(&dir.join("data"), &volume).await;
    let (stream, _) = pki::connect(server.local_addr(), ca.client_config(&[b"h2"])).await;
    let (client, connection) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(connection);
    let authority = format!("https://{}", server.local_addr());
    // An anonymous request for an object: an S3 error with an XML body on GET.
    for (path, status) in [("/health/live", 200), ("/no-such-bucket/key", 403)] {
        for method in [http::Method::GET, http::Method::HEAD] {
            let request = http::Request::builder()
                .method(method.clone())
                .uri(format!("{authority}{path}"))
                .body(())
                .expect("request");
            let mut ready = client.clone().ready().await.expect("h2 ready");
            let (response, _) = ready.send_request(request, true).expect("send");
            let response = response.await.expect("response headers");
            assert_eq!(response.status().as_u16(), status, "{method} {path}");
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            if method == http::Method::HEAD {
                assert!(bytes.is_empty(), "{method} {path} sent a body");
            } else {
                assert!(!bytes.is_empty(), "{method} {path} has a body to leave out");
            }
        }
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rotated_certificate_reaches_new_connections_while_old_ones_keep_working() {
    let dir = coffer_testkit::temp_dir("tls-rotate");
    let ca = TestCa::new("Coffer test CA");
    let first = ca.leaf(&[]);
    let mut volume = SecretVolume::new(&dir.join("secret"), &ca, &first);
    let server = start_tls(&dir.join("data"), &volume).await;
    let addr = server.local_addr();

    let (mut kept, presented) = pki::connect(addr, ca.client_config(&[])).await;
    assert_eq!(presented, first.der);
    let (status, _) = pki::get(&mut kept, "/health/live").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // cert-manager renews: the kubelet swaps `..data` to the new pair.
    let second = ca.leaf(&[]);
    volume.install(&ca, &second);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, presented) = pki::connect(addr, ca.client_config(&[])).await;
        if presented == second.der {
            break;
        }
        assert_eq!(
            presented, first.der,
            "neither the old nor the new certificate"
        );
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection made before the renewal still serves requests.
    let (status, body) = pki::get(&mut kept, "/health/live").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, "ok");

    // A broken renewal (a key that is not the certificate's, then a truncated
    // certificate) keeps the last good certificate.
    let third = ca.leaf(&[]);
    volume.install_raw(&third.cert_pem, &second.key_pem, &ca.pem);
    let half = &third.cert_pem[..third.cert_pem.len() / 2];
    tokio::time::sleep(Duration::from_millis(600)).await;
    volume.install_raw(half, &third.key_pem, &ca.pem);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (mut fresh, presented) = pki::connect(addr, ca.client_config(&[])).await;
    assert_eq!(presented, second.der, "a broken pair replaced a good one");
    let (status, _) = pki::get(&mut fresh, "/health/live").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_certificate_file_stops_the_start_with_a_clear_error() {
    let dir = coffer_testkit::temp_dir("tls-bad");
    let ca = TestCa::new("Coffer test CA");
    let leaf = ca.leaf(&[]);
    let other = ca.leaf(&[]);
    let cases: [(&str, String, String, &str); 3] = [
        (
            "garbage",
            "not a certificate\n".to_owned(),
            leaf.key_pem.clone(),
            "no PEM certificate",
        ),
        (
            "mismatch",
            leaf.cert_pem.clone(),
            other.key_pem.clone(),
            "does not belong",
        ),
        (
            "nokey",
            leaf.cert_pem.clone(),
            String::new(),
            "no usable PEM private key",
        ),
    ];
    for (name, cert, key, expected) in cases {
        let mut volume = SecretVolume::new(&dir.join(name), &ca, &leaf);
        volume.install_raw(&cert, &key, &ca.pem);
        let error = match start(config(&dir.join(format!("{name}-data")), Some(&volume))).await {
            Ok(_) => panic!("{name}: started with a bad certificate"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains(expected), "{name}: {error}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails_fast() {
    let dir = coffer_testkit::temp_dir("tls-plain");
    let ca = TestCa::new("Coffer test CA");
    let volume = SecretVolume::new(&dir.join("secret"), &ca, &ca.leaf(&[]));
    let server = start_tls(&dir.join("data"), &volume).await;
    let addr = server.local_addr();

    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("answered and closed, not left hanging")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("https://"), "{answer}");

    // An SDK pointed at http:// gets an error, not a hang.
    let http_endpoint = format!("http://{addr}");
    let s3 = plain_client(&http_endpoint, ROOT.0, ROOT.1);
    let result = tokio::time::timeout(Duration::from_secs(30), s3.list_buckets().send())
        .await
        .expect("the SDK call over http:// failed fast");
    assert!(result.is_err());
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn secure_transport_policy_allows_tls_and_denies_plain_http() {
    let dir = coffer_testkit::temp_dir("tls-policy");
    let data = dir.join("data");
    let ca = TestCa::new("Coffer test CA");
    let volume = SecretVolume::new(&dir.join("secret"), &ca, &ca.leaf(&[]));
    // Both servers below are one node, on one address, seen by its store.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let same_node = |mut config: ServeConfig| {
        config.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        config.cluster.advertise_url = format!("http://127.0.0.1:{port}");
        config
    };
    let server = start(same_node(config(&data, Some(&volume))))
        .await
        .expect("TLS server");
    let key = server
        .meta()
        .create_access_key(&NewAccessKey {
            name: "app".to_owned(),
            owner: "test".to_owned(),
            policy: Some(
                r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#.to_owned(),
            ),
            is_root: false,
            credentials: None,
        })
        .await
        .expect("key");
    let root = tls_client(&server.endpoint(), &ca.pem, ROOT.0, ROOT.1);
    root.create_bucket()
        .bucket("tls-only")
        .send()
        .await
        .expect("create");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::tls-only","arn:aws:s3:::tls-only/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
    root.put_bucket_policy()
        .bucket("tls-only")
        .policy(policy)
        .send()
        .await
        .expect("policy");
    let app = tls_client(&server.endpoint(), &ca.pem, &key.id, &key.secret);
    app.put_object()
        .bucket("tls-only")
        .key("k")
        .body(ByteStream::from_static(b"over tls"))
        .send()
        .await
        .expect("a TLS request passes the SecureTransport condition");
    server.shutdown().await;

    // The same store served over plain HTTP: the policy now denies.
    let server = start(same_node(config(&data, None)))
        .await
        .expect("plain server");
    let app = plain_client(&server.endpoint(), &key.id, &key.secret);
    let denied = app
        .get_object()
        .bucket("tls-only")
        .key("k")
        .send()
        .await
        .expect_err("plain HTTP must be denied");
    assert_eq!(
        denied
            .as_service_error()
            .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e)),
        Some("AccessDenied")
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
