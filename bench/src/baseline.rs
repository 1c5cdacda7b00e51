//! What this machine physically allows, measured by the same tool in the same run:
//! hashing speed on one core, durable sequential disk bandwidth, and the request
//! rate of a minimal HTTP server driven by the very same S3 client code.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use sha2::Digest as _;

#[derive(Debug, Clone, Serialize)]
pub struct HashBaseline {
    pub md5_mib_per_sec: f64,
    pub sha256_mib_per_sec: f64,
    pub crc32c_mib_per_sec: f64,
}

fn mib_per_sec(bytes: usize, started: Instant) -> f64 {
    bytes as f64 / started.elapsed().as_secs_f64().max(1e-9) / (1024.0 * 1024.0)
}

/// MD5, SHA-256 and CRC32C throughput on one core over `total` bytes.
pub fn hash(total: usize) -> HashBaseline {
    let buffer: Vec<u8> = (0..16 << 20)
        .map(|i: usize| (i * 131 % 251) as u8)
        .collect();
    let rounds = total.div_ceil(buffer.len()).max(1);
    let bytes = rounds * buffer.len();
    let t = Instant::now();
    let mut md5 = <md5::Md5 as md5::Digest>::new();
    for _ in 0..rounds {
        md5::Digest::update(&mut md5, &buffer);
    }
    std::hint::black_box(md5::Digest::finalize(md5));
    let md5_rate = mib_per_sec(bytes, t);
    let t = Instant::now();
    let mut sha = sha2::Sha256::new();
    for _ in 0..rounds {
        sha.update(&buffer);
    }
    std::hint::black_box(sha.finalize());
    let sha_rate = mib_per_sec(bytes, t);
    let t = Instant::now();
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    for _ in 0..rounds {
        crc.update(&buffer);
    }
    std::hint::black_box(crc.finalize());
    HashBaseline {
        md5_mib_per_sec: md5_rate,
        sha256_mib_per_sec: sha_rate,
        crc32c_mib_per_sec: mib_per_sec(bytes, t),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ErasureBaseline {
    pub k: usize,
    pub m: usize,
    /// Data bytes encoded per second (parity computed for them).
    pub encode_mib_per_sec: f64,
    /// Data bytes restored per second with `m` data chunks of every stripe lost.
    pub reconstruct_mib_per_sec: f64,
}

/// Reed–Solomon K+M over stripes of K 1 MiB chunks, `total` data bytes, one core:
/// encoding, and decoding with the first `m` data chunks missing (the worst case
/// a read with m nodes down meets).
pub fn erasure(k: usize, m: usize, total: usize) -> anyhow::Result<ErasureBaseline> {
    const CHUNK: usize = 1 << 20;
    let data: Vec<Vec<u8>> = (0..k)
        .map(|c| (0..CHUNK).map(|i| ((i + c) * 131 % 251) as u8).collect())
        .collect();
    let stripes = total.div_ceil(k * CHUNK).max(1);
    let bytes = stripes * k * CHUNK;
    let t = Instant::now();
    let mut parity = Vec::new();
    for _ in 0..stripes {
        parity = reed_solomon_simd::encode(k, m, &data)?;
    }
    let encode = mib_per_sec(bytes, t);
    let lost = m.min(k);
    let t = Instant::now();
    for _ in 0..stripes {
        let originals = data.iter().enumerate().skip(lost);
        let recovery = parity.iter().enumerate();
        let restored = reed_solomon_simd::decode(k, m, originals, recovery)?;
        std::hint::black_box(restored);
    }
    Ok(ErasureBaseline {
        k,
        m,
        encode_mib_per_sec: encode,
        reconstruct_mib_per_sec: mib_per_sec(bytes, t),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskBaseline {
    pub files: usize,
    pub file_size: usize,
    /// Sequential write, fsync per file (as a durable PUT does).
    pub write_mib_per_sec: f64,
    pub write_files_per_sec: f64,
    pub read_mib_per_sec: f64,
}

/// Writes `files` files of `file_size` bytes with an fsync each, then reads them.
pub fn disk(dir: &Path, files: usize, file_size: usize) -> std::io::Result<DiskBaseline> {
    let dir = dir.join(format!("coffer-bench-disk-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir)?;
    let block: Vec<u8> = (0..1 << 20).map(|_| rand::random::<u8>()).collect();
    let t = Instant::now();
    for i in 0..files {
        let mut f = std::fs::File::create(dir.join(format!("f{i}")))?;
        let mut left = file_size;
        while left > 0 {
            let n = left.min(block.len());
            f.write_all(&block[..n])?;
            left -= n;
        }
        f.sync_all()?;
    }
    std::fs::File::open(&dir)?.sync_all()?;
    let elapsed = t.elapsed().as_secs_f64().max(1e-9);
    let write_mib = (files * file_size) as f64 / elapsed / (1024.0 * 1024.0);
    let t = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..files {
        let mut f = std::fs::File::open(dir.join(format!("f{i}")))?;
        while f.read(&mut buf)? > 0 {}
    }
    let read_mib = mib_per_sec(files * file_size, t);
    std::fs::remove_dir_all(&dir)?;
    Ok(DiskBaseline {
        files,
        file_size,
        write_mib_per_sec: write_mib,
        write_files_per_sec: files as f64 / elapsed,
        read_mib_per_sec: read_mib,
    })
}

/// A minimal HTTP server that answers like S3 just enough for the benchmark's
/// client: GET returns `object_size` bytes, PUT drains the body, HEAD and DELETE
/// succeed. Runs until the returned handle is aborted.
pub async fn start_http_baseline(
    object_size: usize,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let payload = Bytes::from(vec![b'x'; object_size]);
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let payload = payload.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        let payload = payload.clone();
                        async move { Ok::<_, Infallible>(answer(request, payload).await) }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, handle))
}

async fn answer(request: http::Request<Incoming>, payload: Bytes) -> http::Response<Full<Bytes>> {
    let method = request.method().clone();
    // Drain the body as a real server must.
    let _ = request.into_body().collect().await;
    let builder = http::Response::builder().header("etag", "\"d41d8cd98f00b204e9800998ecf8427e\"");
    let response = match method {
        http::Method::GET => builder
            .header("content-length", payload.len())
            .header("content-type", "binary/octet-stream")
            .body(Full::new(payload)),
        http::Method::HEAD => builder
            .header("content-length", payload.len())
            .body(Full::new(Bytes::new())),
        http::Method::DELETE => builder.status(204).body(Full::new(Bytes::new())),
        _ => builder.body(Full::new(Bytes::new())),
    };
    response.unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_baseline_reports_positive_rates() {
        let h = hash(16 << 20);
        assert!(
            h.md5_mib_per_sec > 0.0 && h.sha256_mib_per_sec > 0.0 && h.crc32c_mib_per_sec > 0.0
        );
    }

    #[test]
    fn disk_baseline_writes_and_cleans_up() {
        let dir = std::env::temp_dir();
        let d = disk(&dir, 3, 100_000).unwrap();
        assert_eq!(d.files, 3);
        assert!(d.write_mib_per_sec > 0.0 && d.read_mib_per_sec > 0.0);
    }
}
