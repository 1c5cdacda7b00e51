//! Streams a request body into a new durable blob, computing the ETag (MD5) and the
//! additional checksum on the way. Bytes go out in blocks of about 1 MiB — hashed
//! on a blocking thread while the data plane writes them to their replicas — so
//! memory stays flat whatever the object size, and the async threads never hash.
//! Encrypted objects' blocks are sealed on that thread too, before they are stored.

use std::sync::Arc;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use md5::{Digest as _, Md5};
use s3s::checksum::ChecksumHasher;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use super::checksum::Algorithm;
use super::{io_error, join_error};
use crate::cluster::{BlobWrite, DataPlane};
use crate::crypto::{CHUNK, Key, SegmentCipher};
use crate::meta::DataProtection;
use crate::storage::{BLOCK_SIZE, BlobInfo};

/// A body that is now a durable blob.
#[derive(Debug)]
pub struct Ingested {
    /// The stored blob; its size is the stored size (larger when encrypted).
    pub blob: BlobInfo,
    /// Bytes of the body (plaintext).
    pub size: u64,
    /// Hex MD5 of the bytes: the ETag of a single-part object.
    pub md5_hex: String,
    /// Base64 additional checksum, when an algorithm was requested.
    pub checksum: Option<String>,
    /// A body no larger than `BodyRules::inline_max`: its bytes, to be kept in the
    /// metadata store by the commit (`blob.id` is then an inline id).
    pub inline: Option<Vec<u8>>,
}

impl Ingested {
    /// The blob's size when it differs from the body's (encrypted).
    pub fn stored_size(&self) -> Option<u64> {
        (self.blob.size != self.size).then_some(self.blob.size)
    }
}

struct Hashes {
    md5: Md5,
    hasher: Option<ChecksumHasher>,
}

impl Hashes {
    fn update(mut self, block: &[u8]) -> Self {
        self.md5.update(block);
        if let Some(h) = &mut self.hasher {
            h.update(block);
        }
        self
    }
}

/// How a block is sealed before it is stored (encrypted objects).
struct Seal {
    cipher: Arc<SegmentCipher>,
    /// Index of the block's first chunk.
    first: u64,
    last: bool,
}

/// Hashes `block` on a blocking thread while the data plane stores it; an
/// encrypted block is hashed and sealed there first, then stored.
async fn write_block(
    writer: &mut BlobWrite,
    hashes: Hashes,
    block: Bytes,
    seal: Option<Seal>,
) -> S3Result<Hashes> {
    if let Some(seal) = seal {
        let (hashes, sealed) = tokio::task::spawn_blocking(move || {
            let sealed = seal.cipher.seal_block(seal.first, &block, seal.last);
            (hashes.update(&block), sealed)
        })
        .await
        .map_err(join_error)?;
        writer.append(Bytes::from(sealed)).await.map_err(io_error)?;
        return Ok(hashes);
    }
    let hashing = {
        let block = block.clone();
        tokio::task::spawn_blocking(move || hashes.update(&block))
    };
    let (hashed, written) = tokio::join!(hashing, writer.append(block));
    written.map_err(io_error)?;
    hashed.map_err(join_error)
}

/// Maps a failure while reading a body to the S3 error clients expect. s3s keeps
/// its stream error types private, so their (stable) names are matched here.
fn body_error(message: &str) -> S3Error {
    tracing::debug!(error = message, "request body failed");
    if message.contains("Sha256Mismatch") {
        let mut err = S3Error::with_message(
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
        err.set_status_code(http::StatusCode::BAD_REQUEST);
        err
    } else if message.contains("SignatureMismatch") {
        s3_error!(
            SignatureDoesNotMatch,
            "The chunk signature we calculated does not match the signature you provided."
        )
    } else if message.contains("FormatError")
        || message.contains("TooLarge")
        || message.contains("TooMany")
    {
        s3_error!(InvalidRequest, "The aws-chunked body is malformed.")
    } else if message.contains("LengthMismatch") {
        s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        )
    } else {
        s3_error!(IncompleteBody, "The request body terminated unexpectedly.")
    }
}

/// What the body must look like.
pub struct BodyRules<'a> {
    /// Refuse bodies longer than this (EntityTooLarge).
    pub max_size: u64,
    /// The declared length, when known: a shorter body is IncompleteBody.
    pub declared_len: Option<u64>,
    /// `Content-MD5` (base64), checked against the computed MD5 (BadDigest).
    pub content_md5: Option<&'a str>,
    pub algorithm: Option<Algorithm>,
    /// Bodies up to this size are kept in the metadata store, not as blob files:
    /// no file, no fsync, committed with the row (0: never).
    pub inline_max: u64,
    /// The object's data key when it is encrypted: the bytes are stored sealed
    /// (`crate::crypto`), hashes and sizes still describe the plaintext.
    pub encryption: Option<&'a Key>,
    /// The bucket's data protection (`None`: the cluster default).
    pub protection: Option<DataProtection>,
}

/// Writes `body` to a new blob. On any error the partial blob is removed.
pub async fn ingest<S, E>(blobs: &DataPlane, body: S, rules: BodyRules<'_>) -> S3Result<Ingested>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let expected_md5 = match rules.content_md5 {
        Some(text) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok()
                .filter(|d| d.len() == 16)
                .ok_or_else(|| {
                    s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
                })?,
        ),
        None => None,
    };
    if rules.declared_len.is_some_and(|n| n > rules.max_size) {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size"
        ));
    }
    let mut writer: Option<BlobWrite> = None;
    let mut cipher: Option<Arc<SegmentCipher>> = None;
    let mut next_chunk = 0u64;
    let mut hashes = Some(Hashes {
        md5: Md5::new(),
        hasher: rules.algorithm.map(Algorithm::hasher),
    });
    let mut body = body;
    let mut buffer = BytesMut::new();
    let mut received: u64 = 0;
    loop {
        let chunk = body.next().await;
        let done = chunk.is_none();
        if let Some(chunk) = chunk {
            let chunk = chunk.map_err(|e| body_error(&e.to_string()))?;
            received += chunk.len() as u64;
            if received > rules.max_size {
                return Err(s3_error!(
                    EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed size"
                ));
            }
            buffer.extend_from_slice(&chunk);
        }
        if writer.is_none() && buffer.len() as u64 <= rules.inline_max {
            // Still small enough to keep inline.
            if done {
                break;
            }
            continue;
        }
        let target = match &mut writer {
            Some(w) => w,
            None => {
                let w = blobs
                    .create_sized(rules.declared_len, rules.protection)
                    .await
                    .map_err(io_error)?;
                cipher = rules.encryption.map(|key| Arc::new(key.segment(w.id())));
                writer.insert(w)
            }
        };
        // Whole blocks go out while more bytes follow; the rest waits for the
        // end of the body, so the block written last is known to be the last
        // (sealed chunks carry that flag).
        while buffer.len() > BLOCK_SIZE || (done && (!buffer.is_empty() || cipher.is_some())) {
            let take = buffer.len().min(BLOCK_SIZE);
            let last = done && take == buffer.len();
            let block = buffer.split_to(take).freeze();
            let seal = cipher.as_ref().map(|c| Seal {
                cipher: c.clone(),
                first: next_chunk,
                last,
            });
            next_chunk += (take / CHUNK) as u64;
            let h = hashes.take().ok_or_else(|| s3_error!(InternalError))?;
            hashes = Some(write_block(target, h, block, seal).await?);
            if last {
                break;
            }
        }
        if done {
            break;
        }
    }
    if rules.declared_len.is_some_and(|n| n != received) {
        return Err(s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        ));
    }
    let mut hashes = hashes.ok_or_else(|| s3_error!(InternalError))?;
    let mut inline_id = None;
    let inline = match writer {
        None => {
            let bytes = buffer.split().freeze();
            hashes = hashes.update(&bytes);
            let id = crate::meta::new_inline_id();
            let stored = match rules.encryption {
                Some(key) => key.segment(&id).seal_block(0, &bytes, true),
                None => bytes.to_vec(),
            };
            inline_id = Some(id);
            Some(stored)
        }
        Some(_) => None,
    };
    let md5 = hashes.md5.finalize();
    if let Some(expected) = expected_md5
        && expected.as_slice() != md5.as_slice()
    {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ));
    }
    let checksum = match (rules.algorithm, hashes.hasher) {
        (Some(a), Some(h)) => a.pick(&h.finalize()),
        _ => None,
    };
    let blob = match (writer, inline_id) {
        (Some(writer), _) => writer.finish().await.map_err(io_error)?,
        (None, id) => BlobInfo {
            id: id.unwrap_or_else(crate::meta::new_inline_id),
            size: inline.as_ref().map_or(0, |b| b.len() as u64),
            replicas: Vec::new(),
        },
    };
    Ok(Ingested {
        blob,
        size: received,
        md5_hex: hex::encode(md5),
        checksum,
        inline,
    })
}
