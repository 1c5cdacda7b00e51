//! Server-side encryption: SSE-S3 (per request and as the bucket default), SSE-C,
//! multipart and copies, what lands on disk, the master key check at start, and
//! tampered ciphertext.

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use base64::Engine as _;
use coffer_server::crypto::Key;
use coffer_server::serve::{RunningServer, ServeConfig, start};
use md5::Digest as _;

use crate::common::{Backend, TestServer, client, code};

/// Bytes without repeats, so any window of them found on disk is a leak.
fn plaintext(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Whether any file under `dir` holds a 32-byte window of `data`.
fn on_disk(dir: &Path, data: &[u8]) -> bool {
    let windows: Vec<&[u8]> = (0..data.len().saturating_sub(32))
        .step_by(4096)
        .map(|at| &data[at..at + 32])
        .chain(std::iter::once(&data[..data.len().min(32)]))
        .collect();
    files_under(dir).iter().any(|path| {
        let bytes = std::fs::read(path).unwrap_or_default();
        windows
            .iter()
            .any(|w| bytes.windows(w.len()).any(|b| b == *w))
    })
}

fn blob_files(dir: &Path) -> Vec<PathBuf> {
    files_under(&dir.join("blobs"))
}

async fn get(client: &Client, bucket: &str, key: &str, range: Option<&str>) -> Vec<u8> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range.map(str::to_owned))
        .send()
        .await
        .expect("get");
    assert_eq!(
        out.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

async fn with_small_parts(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| c.limits.min_part_size = 100 * 1024).await
}

async fn sse_s3_round_trip_with_ranges_across_chunks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s3 = server.root_client();
    s3.create_bucket().bucket("enc").send().await.unwrap();
    // Three full 64 KiB chunks and a short fourth, plus an inline-sized object.
    let big = plaintext(3 * 65536 + 1000, 7);
    let small = plaintext(3000, 11);
    for (key, data) in [("big", &big), ("small", &small)] {
        let put = s3
            .put_object()
            .bucket("enc")
            .key(key)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            put.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256)
        );
        // The ETag is still the MD5 of the plaintext.
        assert_eq!(
            put.e_tag(),
            Some(format!("\"{}\"", hex::encode(md5::Md5::digest(data))).as_str())
        );
    }
    assert_eq!(get(&s3, "enc", "big", None).await, big);
    assert_eq!(get(&s3, "enc", "small", None).await, small);
    let head = s3
        .head_object()
        .bucket("enc")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(head.content_length(), Some(big.len() as i64));
    let len = big.len() as u64;
    for (first, last) in [
        (0, 0),
        (65530, 65545),
        (65536, 65536 * 2 - 1),
        (1000, 150_000),
        (3 * 65536 - 1, 3 * 65536 + 5),
        (len - 10, len - 1),
    ] {
        let got = get(&s3, "enc", "big", Some(&format!("bytes={first}-{last}"))).await;
        assert_eq!(
            got,
            &big[first as usize..=last as usize],
            "range {first}-{last}"
        );
    }
    assert_eq!(
        get(&s3, "enc", "big", Some("bytes=-700")).await,
        &big[big.len() - 700..]
    );
    // Neither object's bytes are on disk in the clear: blob files hold
    // ciphertext, and so do the inline rows of the SQLite store.
    assert!(!blob_files(&server.data_dir).is_empty());
    assert!(!on_disk(&server.data_dir, &big));
    if backend == Backend::Sqlite {
        assert!(!on_disk(&server.data_dir, &small));
    }
    // An unencrypted object has no SSE header and its bytes are plain on disk
    // (the check above would have seen them).
    let plain = plaintext(200_000, 13);
    s3.put_object()
        .bucket("enc")
        .key("plain")
        .body(ByteStream::from(plain.clone()))
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("enc")
        .key("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(head.server_side_encryption(), None);
    assert!(on_disk(&server.data_dir, &plain));
    server.stop().await;
}

async fn sse_s3_multipart_and_copy(backend: Backend) {
    let server = with_small_parts(backend).await;
    let s3 = server.root_client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let part1 = plaintext(150_000, 21);
    let part2 = plaintext(70_000, 22);
    let create = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("obj")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(
        create.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    let upload_id = create.upload_id().unwrap().to_owned();
    let mut parts = Vec::new();
    for (n, data) in [(1, &part1), (2, &part2)] {
        let out = s3
            .upload_part()
            .bucket("mpu")
            .key("obj")
            .upload_id(&upload_id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256)
        );
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    let done = s3
        .complete_multipart_upload()
        .bucket("mpu")
        .key("obj")
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    let whole = [part1.clone(), part2.clone()].concat();
    assert_eq!(get(&s3, "mpu", "obj", None).await, whole);
    // A range across the part boundary, starting and ending mid-chunk.
    assert_eq!(
        get(&s3, "mpu", "obj", Some("bytes=140000-160000")).await,
        &whole[140_000..=160_000]
    );
    assert!(!on_disk(&server.data_dir, &whole));

    // Copies of an encrypted object: into an unencrypted one, and into a new
    // SSE-S3 object; both read back the same bytes.
    s3.copy_object()
        .bucket("mpu")
        .key("copy-plain")
        .copy_source("mpu/obj")
        .send()
        .await
        .unwrap();
    let plain = s3
        .get_object()
        .bucket("mpu")
        .key("copy-plain")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.server_side_encryption(), None);
    assert_eq!(plain.body.collect().await.unwrap().into_bytes(), whole);
    let copy = s3
        .copy_object()
        .bucket("mpu")
        .key("copy-enc")
        .copy_source("mpu/copy-plain")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(
        copy.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(get(&s3, "mpu", "copy-enc", None).await, whole);
    server.stop().await;
}

fn default_aes256() -> ServerSideEncryptionConfiguration {
    ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::Aes256)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
        .unwrap()
}

async fn bucket_default_encryption_applies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s3 = server.root_client();
    s3.create_bucket().bucket("dflt").send().await.unwrap();
    assert_eq!(
        code(s3.get_bucket_encryption().bucket("dflt").send().await),
        "ServerSideEncryptionConfigurationNotFoundError"
    );
    s3.put_bucket_encryption()
        .bucket("dflt")
        .server_side_encryption_configuration(default_aes256())
        .send()
        .await
        .unwrap();
    let config = s3
        .get_bucket_encryption()
        .bucket("dflt")
        .send()
        .await
        .unwrap();
    let rule = &config
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm(),
        &ServerSideEncryption::Aes256
    );
    let data = plaintext(100_000, 31);
    let put = s3
        .put_object()
        .bucket("dflt")
        .key("k")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(get(&s3, "dflt", "k", None).await, data);
    assert!(!on_disk(&server.data_dir, &data));
    // Dual-layer KMS is refused, on the bucket and on objects (SSE-KMS: kms.rs).
    let kms = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::AwsKmsDsse)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
        .unwrap();
    assert_eq!(
        code(
            s3.put_bucket_encryption()
                .bucket("dflt")
                .server_side_encryption_configuration(kms)
                .send()
                .await
        ),
        "NotImplemented"
    );
    assert_eq!(
        code(
            s3.put_object()
                .bucket("dflt")
                .key("kms")
                .server_side_encryption(ServerSideEncryption::AwsKmsDsse)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
        ),
        "NotImplemented"
    );
    s3.delete_bucket_encryption()
        .bucket("dflt")
        .send()
        .await
        .unwrap();
    let put = s3
        .put_object()
        .bucket("dflt")
        .key("after")
        .body(ByteStream::from_static(b"plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.server_side_encryption(), None);
    server.stop().await;
}

struct CustomerKey {
    key: String,
    md5: String,
}

fn customer_key(seed: u8) -> CustomerKey {
    let raw = [seed; 32];
    let b64 = base64::engine::general_purpose::STANDARD;
    CustomerKey {
        key: b64.encode(raw),
        md5: b64.encode(md5::Md5::digest(raw)),
    }
}

async fn sse_c_round_trip_and_key_checks(backend: Backend) {
    let server = with_small_parts(backend).await;
    let s3 = server.root_client();
    s3.create_bucket().bucket("ssec").send().await.unwrap();
    let key = customer_key(1);
    let wrong = customer_key(2);
    let data = plaintext(140_000, 41);
    let put = s3
        .put_object()
        .bucket("ssec")
        .key("obj")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key.key)
        .sse_customer_key_md5(&key.md5)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(put.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(put.sse_customer_key_md5(), Some(key.md5.as_str()));
    assert!(!on_disk(&server.data_dir, &data));

    // No key: 400 InvalidRequest; the wrong key: 403 AccessDenied.
    assert_eq!(
        code(s3.get_object().bucket("ssec").key("obj").send().await),
        "InvalidRequest"
    );
    assert_eq!(
        code(
            s3.get_object()
                .bucket("ssec")
                .key("obj")
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&wrong.key)
                .sse_customer_key_md5(&wrong.md5)
                .send()
                .await
        ),
        "AccessDenied"
    );
    assert_eq!(
        code(s3.head_object().bucket("ssec").key("obj").send().await),
        "HTTP 400"
    );
    let got = s3
        .get_object()
        .bucket("ssec")
        .key("obj")
        .range("bytes=65000-70000")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key.key)
        .sse_customer_key_md5(&key.md5)
        .send()
        .await
        .unwrap();
    assert_eq!(got.sse_customer_key_md5(), Some(key.md5.as_str()));
    assert_eq!(got.server_side_encryption(), None);
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes(),
        &data[65_000..=70_000]
    );
    let head = s3
        .head_object()
        .bucket("ssec")
        .key("obj")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key.key)
        .sse_customer_key_md5(&key.md5)
        .send()
        .await
        .unwrap();
    assert_eq!(head.sse_customer_algorithm(), Some("AES256"));

    // Copying needs the source's key; the copy here is SSE-S3.
    assert_eq!(
        code(
            s3.copy_object()
                .bucket("ssec")
                .key("copy")
                .copy_source("ssec/obj")
                .send()
                .await
        ),
        "InvalidRequest"
    );
    s3.copy_object()
        .bucket("ssec")
        .key("copy")
        .copy_source("ssec/obj")
        .copy_source_sse_customer_algorithm("AES256")
        .copy_source_sse_customer_key(&key.key)
        .copy_source_sse_customer_key_md5(&key.md5)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(get(&s3, "ssec", "copy", None).await, data);

    // Multipart: every part needs the key given at create.
    let create = s3
        .create_multipart_upload()
        .bucket("ssec")
        .key("mp")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key.key)
        .sse_customer_key_md5(&key.md5)
        .send()
        .await
        .unwrap();
    let upload_id = create.upload_id().unwrap().to_owned();
    assert_eq!(
        code(
            s3.upload_part()
                .bucket("ssec")
                .key("mp")
                .upload_id(&upload_id)
                .part_number(1)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
        ),
        "InvalidRequest"
    );
    assert_eq!(
        code(
            s3.upload_part()
                .bucket("ssec")
                .key("mp")
                .upload_id(&upload_id)
                .part_number(1)
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&wrong.key)
                .sse_customer_key_md5(&wrong.md5)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
        ),
        "AccessDenied"
    );
    let part = s3
        .upload_part()
        .bucket("ssec")
        .key("mp")
        .upload_id(&upload_id)
        .part_number(1)
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key.key)
        .sse_customer_key_md5(&key.md5)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    s3.complete_multipart_upload()
        .bucket("ssec")
        .key("mp")
        .upload_id(&upload_id)
        .multipart_upload(crate::common::one_part(part.e_tag().unwrap()))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("ssec")
        .key("mp")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key.key)
        .sse_customer_key_md5(&key.md5)
        .send()
        .await
        .unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), data);
    // UploadPartCopy reads an SSE-C source with its key, into an SSE-S3 upload.
    let upload = s3
        .create_multipart_upload()
        .bucket("ssec")
        .key("from-copy")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap().to_owned();
    assert_eq!(
        code(
            s3.upload_part_copy()
                .bucket("ssec")
                .key("from-copy")
                .upload_id(&upload_id)
                .part_number(1)
                .copy_source("ssec/obj")
                .send()
                .await
        ),
        "InvalidRequest"
    );
    let copied = s3
        .upload_part_copy()
        .bucket("ssec")
        .key("from-copy")
        .upload_id(&upload_id)
        .part_number(1)
        .copy_source("ssec/obj")
        .copy_source_range("bytes=1000-99999")
        .copy_source_sse_customer_algorithm("AES256")
        .copy_source_sse_customer_key(&key.key)
        .copy_source_sse_customer_key_md5(&key.md5)
        .send()
        .await
        .unwrap();
    s3.complete_multipart_upload()
        .bucket("ssec")
        .key("from-copy")
        .upload_id(&upload_id)
        .multipart_upload(crate::common::one_part(
            copied.copy_part_result().unwrap().e_tag().unwrap(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        get(&s3, "ssec", "from-copy", None).await,
        &data[1000..100_000]
    );
    // A key whose MD5 does not match is refused before anything is stored.
    assert_eq!(
        code(
            s3.put_object()
                .bucket("ssec")
                .key("bad-md5")
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&key.key)
                .sse_customer_key_md5(&wrong.md5)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
        ),
        "InvalidArgument"
    );
    server.stop().await;
}

async fn start_at(
    data_dir: &Path,
    url: Option<&str>,
    listen: std::net::SocketAddr,
    master_key: Option<Key>,
) -> anyhow::Result<RunningServer> {
    let mut config = ServeConfig::new(data_dir);
    config.listen = listen;
    config.database_url = url.map(str::to_owned);
    config.root_credentials = Some(("ROOTKEYFORTESTS".to_owned(), "root-secret".to_owned()));
    config.master_key = master_key;
    start(config).await
}

/// A server on its own data dir (and, on Postgres, its own database) that a
/// test can stop and start again on the same store.
async fn restartable_server(
    backend: Backend,
    label: &str,
) -> (PathBuf, Option<String>, RunningServer) {
    let data_dir = coffer_testkit::temp_dir(label);
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(coffer_testkit::postgres_url().await),
    };
    let server = start_at(
        &data_dir,
        url.as_deref(),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    (data_dir, url, server)
}

async fn wrong_master_key_refuses_to_start(backend: Backend) {
    let (data_dir, url, server) = restartable_server(backend, "sse-restart").await;
    // A restart keeps the node's address (its id is in use at that address).
    let listen = server.local_addr();
    // Zero configuration: a key was generated into the data dir, owner-only.
    let key_file = data_dir.join("master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let root = server.root_key().clone();
    let s3 = client(&server.endpoint(), &root.id, &root.secret);
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let data = plaintext(70_000, 51);
    s3.put_object()
        .bucket("bkt")
        .key("k")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    server.shutdown().await;

    let refused = start_at(&data_dir, url.as_deref(), listen, Some(Key::random())).await;
    let message = format!(
        "{:#}",
        refused.err().expect("a wrong master key is refused")
    );
    assert!(message.contains("master key"), "{message}");

    // The right key, given explicitly, opens the store and the object.
    let key = Key::from_base64(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let server = start_at(&data_dir, url.as_deref(), listen, Some(key))
        .await
        .unwrap();
    let s3 = client(&server.endpoint(), &root.id, &root.secret);
    assert_eq!(get(&s3, "bkt", "k", None).await, data);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

async fn tampered_ciphertext_is_an_error_never_bad_bytes(backend: Backend) {
    let mut url = String::new();
    // The store is changed behind the server's back, so no object cache: the
    // reads must come from the store.
    let server = TestServer::start_with(backend, |c| {
        url = c.database_url();
        c.object_cache_bytes = 0;
    })
    .await;
    let s3 = server.root_client();
    s3.create_bucket().bucket("tamper").send().await.unwrap();
    let small = plaintext(1000, 61);
    let big = plaintext(300_000, 62);
    for (key, data) in [("small", &small), ("big", &big)] {
        s3.put_object()
            .bucket("tamper")
            .key(key)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
    }
    // The small object's ciphertext lives in the metadata store, with no block
    // checksum of its own: only the GCM tag can catch a flipped byte there.
    let meta = server.server.meta();
    let object = meta.get_object("tamper", "small").await.unwrap().unwrap();
    let blob = &object.segments[0].blob;
    let mut sealed = meta.inline_blob(blob).await.unwrap().unwrap();
    assert_ne!(sealed, small);
    sealed[10] ^= 0x01;
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE inline_blobs SET data = $1 WHERE id = $2")
        .bind(sealed)
        .bind(blob.as_str())
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(
        code(s3.get_object().bucket("tamper").key("small").send().await),
        "InternalError"
    );
    // A flipped byte in a blob file: the read fails, whichever check sees it.
    let object = meta.get_object("tamper", "big").await.unwrap().unwrap();
    let id = &object.segments[0].blob;
    let path = blob_files(&server.data_dir)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == *id))
        .expect("blob file");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[200_000] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    match s3.get_object().bucket("tamper").key("big").send().await {
        Err(_) => {}
        Ok(out) => {
            let body = out.body.collect().await;
            assert!(
                body.is_err(),
                "a tampered object must not be served in full"
            );
        }
    }
    server.stop().await;
}

/// A browser form upload (PostObject) with `x-amz-server-side-encryption` in
/// its fields takes the same path as PutObject: the object is encrypted.
async fn post_object_form_field_encrypts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let s3 = server.root_client();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    let root = server.server.root_key();
    let data = plaintext(50_000, 71);
    let conditions = vec![
        serde_json::json!({"bucket": "forms"}),
        serde_json::json!({"key": "sealed"}),
        serde_json::json!({"x-amz-server-side-encryption": "AES256"}),
    ];
    let mut fields: Vec<(String, String)> = vec![
        ("key".to_owned(), "sealed".to_owned()),
        (
            "x-amz-server-side-encryption".to_owned(),
            "AES256".to_owned(),
        ),
    ];
    fields.extend(crate::common::signed_policy(
        conditions,
        time::Duration::minutes(5),
        &root.id,
        &root.secret,
    ));
    let boundary = "----CofferSseFormBoundary";
    let mut body = Vec::new();
    for (name, value) in &fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(&data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = reqwest::Client::new()
        .post(format!("{}/forms", server.endpoint()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 204, "{}", response.text().await.unwrap_or_default());
    let head = s3
        .head_object()
        .bucket("forms")
        .key("sealed")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    assert_eq!(get(&s3, "forms", "sealed", None).await, data);
    assert!(!on_disk(&server.data_dir, &data));
    server.stop().await;
}

/// `coffer-server master-key rotate`: objects and secrets move to the new key,
/// the default key file is replaced, and the old key is refused afterwards.
async fn master_key_rotation_keeps_objects_readable(backend: Backend) {
    let (data_dir, url, server) = restartable_server(backend, "sse-rotate").await;
    let listen = server.local_addr();
    let root = server.root_key().clone();
    let s3 = client(&server.endpoint(), &root.id, &root.secret);
    s3.create_bucket().bucket("rot").send().await.unwrap();
    let data = plaintext(90_000, 81);
    s3.put_object()
        .bucket("rot")
        .key("k")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    // An SSE-KMS object: its KMS key's material is re-sealed, its data key kept.
    s3.put_object()
        .bucket("rot")
        .key("kms")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    server.shutdown().await;
    let key_file = data_dir.join("master.key");
    let old = Key::from_base64(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let new = Key::random();
    let new_file = data_dir.join("new.key");
    std::fs::write(&new_file, new.to_base64()).unwrap();
    let mut rotate = std::process::Command::new(env!("CARGO_BIN_EXE_coffer-server"));
    rotate
        .args(["master-key", "rotate", "--new-key-file"])
        .arg(&new_file)
        .arg("--data-dir")
        .arg(&data_dir)
        .env_remove("COFFER_MASTER_KEY")
        .env_remove("COFFER_MASTER_KEY_FILE");
    if let Some(url) = &url {
        rotate.args(["--database-url", url]);
    }
    let output = rotate.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The default key file now holds the new key.
    let on_file = Key::from_base64(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(on_file, new);
    let refused = start_at(&data_dir, url.as_deref(), listen, Some(old)).await;
    assert!(refused.is_err(), "the old key is refused after rotation");
    let server = start_at(&data_dir, url.as_deref(), listen, None)
        .await
        .unwrap();
    assert_eq!(server.root_key().secret, root.secret);
    let s3 = client(&server.endpoint(), &root.id, &root.secret);
    assert_eq!(get(&s3, "rot", "k", None).await, data);
    let kms = s3
        .get_object()
        .bucket("rot")
        .key("kms")
        .send()
        .await
        .unwrap();
    assert_eq!(
        kms.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(
        &kms.body.collect().await.unwrap().into_bytes()[..],
        &data[..]
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

crate::on_both_backends!(
    master_key_rotation_keeps_objects_readable,
    post_object_form_field_encrypts,
    sse_s3_round_trip_with_ranges_across_chunks,
    sse_s3_multipart_and_copy,
    bucket_default_encryption_applies,
    sse_c_round_trip_and_key_checks,
    wrong_master_key_refuses_to_start,
    tampered_ciphertext_is_an_error_never_bad_bytes,
);
