//! TLS to Postgres: a throwaway Postgres started with `ssl=on` and a certificate
//! from a CA made here; the metadata store (which the operator uses too)
//! connects with `sslmode=require|verify-ca|verify-full` and `sslrootcert`, a
//! whole server runs on it, and the wrong CA or host name is refused.

#[path = "support/pki.rs"]
mod pki;

use std::path::Path;

use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use coffer_server::meta::MetaStore;
use coffer_server::serve::{ServeConfig, start};
use pki::TestCa;
use sqlx::Connection as _;

fn with_tls(url: &str, mode: &str, ca: &Path) -> String {
    format!("{url}?sslmode={mode}&sslrootcert={}", ca.display())
}

/// Whether the connection at `url` is encrypted, as the server sees it.
async fn encrypted(url: &str) -> bool {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_ssl");
    conn.close().await.ok();
    ssl
}

#[tokio::test]
async fn metadata_store_connects_over_tls_and_verifies_the_server() {
    let dir = coffer_testkit::temp_dir("pg-tls");
    let ca = TestCa::new("Coffer Postgres CA");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, &ca.pem).expect("ca file");
    let leaf = ca.leaf(&[]);
    let url = coffer_testkit::postgres_with_tls(&leaf.cert_pem, &leaf.key_pem);

    for mode in ["require", "verify-ca", "verify-full"] {
        let tls_url = with_tls(&url, mode, &ca_file);
        assert!(encrypted(&tls_url).await, "sslmode={mode} is not encrypted");
        let meta = MetaStore::connect(&tls_url)
            .await
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        meta.ping().await.expect("ping");
        meta.close().await;
    }
    // Without TLS asked for, the same server also sees plain connections: the
    // encryption above came from the URL.
    assert!(!encrypted(&format!("{url}?sslmode=disable")).await);

    // A CA that did not issue the server's certificate: refused.
    let stranger = TestCa::new("Another CA");
    let stranger_file = dir.join("stranger.crt");
    std::fs::write(&stranger_file, &stranger.pem).expect("stranger");
    for mode in ["verify-ca", "verify-full"] {
        assert!(
            MetaStore::connect(&with_tls(&url, mode, &stranger_file))
                .await
                .is_err(),
            "sslmode={mode} accepted a server certificate from another CA"
        );
    }

    // A whole server with its metadata over verify-full.
    let mut config = ServeConfig::new(dir.join("data"));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.database_url = Some(with_tls(&url, "verify-full", &ca_file));
    config.root_credentials = Some(("PGTLSROOT".to_owned(), "pg-tls-root-secret".to_owned()));
    let server = start(config).await.expect("server on Postgres over TLS");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(server.endpoint())
            .credentials_provider(Credentials::new(
                "PGTLSROOT",
                "pg-tls-root-secret",
                None,
                None,
                "pg-tls",
            ))
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build(),
    );
    s3.create_bucket()
        .bucket("pg-tls")
        .send()
        .await
        .expect("bucket");
    s3.put_object()
        .bucket("pg-tls")
        .key("k")
        .body(ByteStream::from_static(b"metadata over TLS"))
        .send()
        .await
        .expect("put");
    let got = s3
        .get_object()
        .bucket("pg-tls")
        .key("k")
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(got.as_ref(), b"metadata over TLS");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host() {
    let dir = coffer_testkit::temp_dir("pg-tls-host");
    let ca = TestCa::new("Coffer Postgres CA");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, &ca.pem).expect("ca file");
    let leaf = ca.leaf_exact(&["db.elsewhere.example"]);
    let url = coffer_testkit::postgres_with_tls(&leaf.cert_pem, &leaf.key_pem);
    assert!(
        MetaStore::connect(&with_tls(&url, "verify-full", &ca_file))
            .await
            .is_err(),
        "verify-full accepted a certificate for another host"
    );
    // `require` encrypts without verifying, as libpq does.
    assert!(encrypted(&with_tls(&url, "require", &ca_file)).await);
    // sqlx 0.8.6 with rustls 0.23.24+ checks the host name under verify-ca
    // too (sqlx#3793, fixed upstream after 0.8.6), so verify-ca is not
    // asserted here; docs/security.md says to name the host in the certificate.
    let _ = std::fs::remove_dir_all(&dir);
}
