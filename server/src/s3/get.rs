//! GetObject and HeadObject: conditional requests, single ranges, `partNumber`,
//! `response-*` overrides, and a body streamed from the blobs with every block
//! verified on the way out.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use sync_wrapper::SyncStream;

use super::checksum::{Algorithm, set_checksum};
use super::encryption::{self, customer_key_of, set_sse};
use super::object_lock::lock_headers;
use super::{Coffer, io_error, meta_error, quoted_etag, timestamp};
use crate::auth::Authorizer;
use crate::cluster::DataPlane;
use crate::crypto::{self, Key};
use crate::meta::{ObjectMeta, Segment};

/// The conditional headers of a read.
pub(super) struct Conditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// The conditional headers of a GET or HEAD input.
macro_rules! read_conditions {
    ($input:expr) => {
        $crate::s3::get::Conditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}

/// The `x-amz-copy-source-if-*` headers of a CopyObject or UploadPartCopy input.
macro_rules! copy_source_conditions {
    ($input:expr) => {
        $crate::s3::get::Conditions {
            if_match: $input.copy_source_if_match.as_ref(),
            if_none_match: $input.copy_source_if_none_match.as_ref(),
            if_modified_since: $input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
        }
    };
}
pub(super) use copy_source_conditions;

fn etag_matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

fn seconds(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

/// Which condition failed, if any: `PreconditionFailed` (412) or `NotModified` (304).
/// Precedence follows S3: If-Match beats If-Unmodified-Since, If-None-Match beats
/// If-Modified-Since.
pub(super) fn check_conditions(object: &ObjectMeta, c: &Conditions<'_>) -> Result<(), S3ErrorCode> {
    let modified = object.last_modified.div_euclid(1000);
    match c.if_match {
        Some(cond) if !etag_matches(cond, &object.etag) => {
            return Err(S3ErrorCode::PreconditionFailed);
        }
        Some(_) => {}
        None => {
            if c.if_unmodified_since.is_some_and(|t| modified > seconds(t)) {
                return Err(S3ErrorCode::PreconditionFailed);
            }
        }
    }
    match c.if_none_match {
        Some(cond) if etag_matches(cond, &object.etag) => return Err(S3ErrorCode::NotModified),
        Some(_) => {}
        None => {
            if c.if_modified_since.is_some_and(|t| modified <= seconds(t)) {
                return Err(S3ErrorCode::NotModified);
            }
        }
    }
    Ok(())
}

fn condition_error(code: S3ErrorCode, object: &ObjectMeta) -> S3Error {
    if code == S3ErrorCode::NotModified {
        let mut err = S3Error::new(S3ErrorCode::NotModified);
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = format!("\"{}\"", object.etag).parse() {
            headers.insert(http::header::ETAG, v);
        }
        err.set_headers(headers);
        err
    } else {
        s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )
    }
}

/// A `partNumber` the object does not have: `400 InvalidPart`, as AWS answers
/// (ceph's s3-tests check it against AWS); one outside 1..=10000 is
/// `InvalidArgument` before the object is even looked at.
fn invalid_part_number(n: i32) -> S3Error {
    if !(1..=10_000).contains(&n) {
        return s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        );
    }
    s3_error!(
        InvalidPart,
        "The requested partnumber is not satisfiable: the object has fewer parts."
    )
}

/// The bytes a read returns: the whole object, one part, or one range.
pub(super) struct Selection {
    pub range: Range<u64>,
    pub partial: bool,
    pub part: Option<usize>,
}

pub(super) fn select(
    object: &ObjectMeta,
    range: Option<&s3s::dto::Range>,
    part_number: Option<i32>,
) -> S3Result<Selection> {
    match (range, part_number) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        (Some(r), None) => {
            let range = r.check(object.size).map_err(|_| {
                let mut err = s3_error!(InvalidRange, "The requested range is not satisfiable");
                let mut headers = http::HeaderMap::new();
                if let Ok(v) = format!("bytes */{}", object.size).parse() {
                    headers.insert(http::header::CONTENT_RANGE, v);
                }
                err.set_headers(headers);
                err
            })?;
            Ok(Selection {
                range,
                partial: true,
                part: None,
            })
        }
        (None, Some(n)) => {
            let count = object.parts_count().unwrap_or(1);
            let index = usize::try_from(n)
                .ok()
                .filter(|n| (1..=count).contains(n))
                .ok_or_else(|| invalid_part_number(n))?
                - 1;
            if object.parts_count().is_none() {
                return Ok(Selection {
                    range: 0..object.size,
                    partial: false,
                    part: Some(0),
                });
            }
            let start: u64 = object.segments[..index].iter().map(|s| s.size).sum();
            let end = start + object.segments[index].size;
            Ok(Selection {
                range: start..end,
                partial: true,
                part: Some(index),
            })
        }
        (None, None) => Ok(Selection {
            range: 0..object.size,
            partial: false,
            part: None,
        }),
    }
}

/// Streams `range` of an object whose bytes lie in `segments`, opening the
/// sealed chunks of an encrypted object with its data key.
pub(super) fn object_stream(
    blobs: DataPlane,
    segments: &[Segment],
    range: Range<u64>,
    data_key: Option<Arc<Key>>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let mut pieces = Vec::new();
    let mut offset = 0u64;
    for segment in segments {
        let (start, end) = (offset, offset + segment.size);
        let from = range.start.max(start);
        let to = range.end.min(end);
        if from < to {
            let sub = (from - start)..(to - start);
            let piece = match &data_key {
                Some(key) => {
                    let span = crypto::chunk_span(segment.size, &sub);
                    Piece::Sealed {
                        source: Source::of(segment, span.stored.clone()),
                        cipher: Box::new(key.segment(&segment.blob)),
                        size: segment.size,
                        range: sub,
                    }
                }
                None => Piece::Plain(Source::of(segment, sub)),
            };
            pieces.push(piece);
        }
        offset = end;
    }
    futures::stream::iter(pieces).flat_map(move |piece| match piece {
        Piece::Plain(source) => futures::future::Either::Left(source.stream(&blobs)),
        Piece::Sealed {
            source,
            cipher,
            size,
            range,
        } => futures::future::Either::Right(decrypted_stream(
            source.stream(&blobs),
            *cipher,
            size,
            range,
        )),
    })
}

/// One stretch of an object's bytes: as stored, or sealed chunks to open.
enum Piece {
    Plain(Source),
    Sealed {
        source: Source,
        // Boxed: the AES key schedule is large next to the other variant.
        cipher: Box<crypto::SegmentCipher>,
        size: u64,
        range: Range<u64>,
    },
}

/// Where stored bytes come from.
enum Source {
    Bytes(Bytes),
    Blob(String, Range<u64>),
}

impl Source {
    /// Bytes `range` of a segment as stored.
    fn of(segment: &Segment, range: Range<u64>) -> Self {
        // A small object read with its metadata needs no second trip.
        match &segment.inline {
            Some(data) => {
                let end = (range.end as usize).min(data.len());
                Source::Bytes(Bytes::copy_from_slice(
                    &data[(range.start as usize).min(end)..end],
                ))
            }
            None => Source::Blob(segment.blob.clone(), range),
        }
    }

    fn stream(
        self,
        blobs: &DataPlane,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static + use<> {
        match self {
            Source::Bytes(bytes) => futures::future::Either::Left(futures::stream::once(
                futures::future::ready(Ok(bytes)),
            )),
            Source::Blob(id, range) => futures::future::Either::Right(blobs.stream(&id, range)),
        }
    }
}

/// Plaintext `range` of an encrypted segment of `size` bytes from `raw`, the
/// sealed chunks that cover it (`crypto::chunk_span`), opening each one; a
/// chunk that does not authenticate ends the stream with an error, never with
/// wrong bytes.
fn decrypted_stream(
    raw: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    cipher: crypto::SegmentCipher,
    size: u64,
    range: Range<u64>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let span = crypto::chunk_span(size, &range);
    struct State<S> {
        raw: std::pin::Pin<Box<S>>,
        cipher: crypto::SegmentCipher,
        buffer: bytes::BytesMut,
        index: u64,
        chunks: u64,
        stored: u64,
        skip: usize,
        remaining: u64,
    }
    let state = State {
        raw: Box::pin(raw),
        cipher,
        buffer: bytes::BytesMut::new(),
        index: span.first,
        chunks: crypto::chunk_count(size),
        stored: crypto::stored_size(size),
        skip: span.skip as usize,
        remaining: range.end - range.start,
    };
    let sealed_chunk = (crypto::CHUNK + crypto::TAG) as u64;
    futures::stream::unfold(state, move |mut state| async move {
        loop {
            if state.remaining == 0 {
                return None;
            }
            let last = state.index + 1 == state.chunks;
            let want = (state.stored - state.index * sealed_chunk).min(sealed_chunk) as usize;
            if state.buffer.len() >= want {
                let sealed = state.buffer.split_to(want).to_vec();
                let opened = match state.cipher.open_chunk(state.index, sealed, last) {
                    Ok(plain) => plain,
                    Err(e) => {
                        state.remaining = 0;
                        tracing::error!(
                            index = state.index,
                            "an encrypted chunk does not authenticate"
                        );
                        return Some((Err(std::io::Error::other(e)), state));
                    }
                };
                state.index += 1;
                let mut plain = Bytes::from(opened);
                let skip = state.skip.min(plain.len());
                plain = plain.slice(skip..);
                state.skip = 0;
                let take = (plain.len() as u64).min(state.remaining) as usize;
                plain.truncate(take);
                state.remaining -= take as u64;
                if plain.is_empty() {
                    continue;
                }
                return Some((Ok(plain), state));
            }
            match state.raw.next().await {
                Some(Ok(bytes)) => state.buffer.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    state.remaining = 0;
                    return Some((Err(e), state));
                }
                None => {
                    state.remaining = 0;
                    return Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "an encrypted blob is shorter than its object",
                        )),
                        state,
                    ));
                }
            }
        }
    })
}

/// A verified body: the first chunk is read before answering, so a corrupt or
/// missing blob becomes an error response instead of a truncated 200.
pub(super) async fn verified_body(
    blobs: &DataPlane,
    object: &ObjectMeta,
    range: Range<u64>,
    data_key: Option<Arc<Key>>,
) -> S3Result<StreamingBlob> {
    let mut stream = Box::pin(object_stream(
        blobs.clone(),
        &object.segments,
        range,
        data_key,
    ));
    let first = match stream.next().await {
        Some(Err(e)) => return Err(io_error(e)),
        Some(Ok(chunk)) => Some(chunk),
        None => None,
    };
    let body = futures::stream::iter(first.map(Ok)).chain(stream);
    Ok(StreamingBlob::wrap(SyncStream::new(body)))
}

fn parse_expires(text: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, text).ok()
}

/// Fields GET and HEAD share.
struct Described {
    content_length: i64,
    content_range: Option<String>,
    parts_count: Option<i32>,
    checksum: Option<(Algorithm, Option<String>, &'static str)>,
}

fn describe(
    object: &ObjectMeta,
    selection: &Selection,
    checksum_mode: Option<&ChecksumMode>,
) -> Described {
    let enabled = checksum_mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    let algorithm = object
        .checksum
        .algorithm
        .as_deref()
        .and_then(|a| Algorithm::parse(a).ok());
    let checksum = match (enabled, algorithm, selection.part) {
        (true, Some(a), Some(index)) if object.parts_count().is_some() => object
            .segments
            .get(index)
            .and_then(|s| s.checksum.clone())
            .map(|v| (a, Some(v), ChecksumType::FULL_OBJECT)),
        (true, Some(a), _) if !selection.partial => {
            let kind = match object.checksum.kind.as_deref() {
                Some("COMPOSITE") => ChecksumType::COMPOSITE,
                _ => ChecksumType::FULL_OBJECT,
            };
            Some((a, object.checksum.value.clone(), kind))
        }
        _ => None,
    };
    Described {
        content_length: (selection.range.end - selection.range.start) as i64,
        content_range: selection.partial.then(|| {
            format!(
                "bytes {}-{}/{}",
                selection.range.start,
                selection.range.end.saturating_sub(1),
                object.size
            )
        }),
        parts_count: selection.part.and(object.parts_count()).map(|n| n as i32),
        checksum,
    }
}

/// An error that tells the client a delete marker is in the way: the headers
/// S3 sends with it (`x-amz-delete-marker`, `x-amz-version-id`).
fn delete_marker_error(mut err: S3Error, marker: &ObjectMeta) -> S3Error {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static("true"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&marker.version_id) {
        headers.insert("x-amz-version-id", v);
    }
    err.set_headers(headers);
    err
}

/// Looks up the object (or one version of it) for a read. NoSuchBucket when the
/// bucket is missing; a key hidden by a delete marker is NoSuchKey, and a
/// version that is a delete marker is MethodNotAllowed, both with the marker's
/// headers.
pub(super) async fn find_object(
    s3: &Coffer,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> S3Result<ObjectMeta> {
    let found = match version_id {
        Some(v) => s3.meta.get_object_version(bucket, key, v).await,
        None => s3.meta.get_object(bucket, key).await,
    }
    .map_err(meta_error)?;
    match (found, version_id) {
        (Some(marker), Some(_)) if marker.delete_marker => Err(delete_marker_error(
            s3_error!(
                MethodNotAllowed,
                "The specified method is not allowed against this resource."
            ),
            &marker,
        )),
        (Some(object), _) => Ok(object),
        (None, Some(_)) => {
            s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
            Err(s3_error!(
                NoSuchVersion,
                "The specified version does not exist."
            ))
        }
        (None, None) => {
            s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
            let err = s3_error!(NoSuchKey, "The specified key does not exist.");
            match s3
                .meta
                .latest_delete_marker(bucket, key)
                .await
                .map_err(meta_error)?
            {
                Some(marker) => Err(delete_marker_error(err, &marker)),
                None => Err(err),
            }
        }
    }
}

macro_rules! fill_common {
    ($out:expr, $object:expr, $described:expr, $input:expr) => {{
        let h = &$object.headers;
        $out.accept_ranges = Some("bytes".to_owned());
        $out.e_tag = Some(quoted_etag(&$object.etag));
        $out.last_modified = Some(timestamp($object.last_modified));
        $out.content_length = Some($described.content_length);
        $out.content_range = $described.content_range.clone();
        $out.parts_count = $described.parts_count;
        $out.content_type = $input
            .response_content_type
            .clone()
            .or_else(|| h.content_type.clone())
            .or_else(|| Some("binary/octet-stream".to_owned()));
        $out.content_encoding = $input
            .response_content_encoding
            .clone()
            .or_else(|| h.content_encoding.clone());
        $out.content_disposition = $input
            .response_content_disposition
            .clone()
            .or_else(|| h.content_disposition.clone());
        $out.content_language = $input
            .response_content_language
            .clone()
            .or_else(|| h.content_language.clone());
        $out.cache_control = $input
            .response_cache_control
            .clone()
            .or_else(|| h.cache_control.clone());
        $out.expires = $input
            .response_expires
            .clone()
            .or_else(|| h.expires.as_deref().and_then(parse_expires));
        $out.storage_class = h.storage_class.clone().map(StorageClass::from);
        $out.version_id = match $input.version_id.as_deref() {
            Some(requested) => Some(requested.to_owned()),
            None => super::version_header(&$object.version_id),
        };
        if !h.user_metadata.is_empty() {
            $out.metadata = Some(
                h.user_metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
        }
        if let Some((algorithm, value, kind)) = $described.checksum.clone() {
            set_checksum!($out, algorithm, value);
            $out.checksum_type = Some(ChecksumType::from_static(kind));
        }
    }};
}

pub async fn get_object(
    s3: &Coffer,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = &req.input;
    let object = find_object(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let conditions = read_conditions!(input);
    check_conditions(&object, &conditions).map_err(|code| condition_error(code, &object))?;
    let customer = customer_key_of!(input)?;
    let data_key =
        encryption::for_read(s3, object.headers.encryption.as_ref(), customer.as_ref()).await?;
    let selection = select(&object, input.range.as_ref(), input.part_number)?;
    let described = describe(&object, &selection, input.checksum_mode.as_ref());
    let body = verified_body(&s3.blobs, &object, selection.range.clone(), data_key).await?;
    let mut output = GetObjectOutput {
        body: Some(body),
        tag_count: (!object.tags.is_empty()).then_some(object.tags.len() as i32),
        ..Default::default()
    };
    fill_common!(output, object, described, input);
    let lock = lock_headers(s3, &Authorizer::caller_of(&req.extensions), &object).await?;
    output.object_lock_mode = lock.mode;
    output.object_lock_retain_until_date = lock.until;
    output.object_lock_legal_hold_status = lock.legal_hold;
    set_sse!(
        output,
        object.headers.encryption.as_ref(),
        customer.as_ref().map(|c| c.md5.as_str())
    );
    let mut response = S3Response::new(output);
    if selection.partial {
        response.status = Some(http::StatusCode::PARTIAL_CONTENT);
    }
    Ok(response)
}

pub async fn head_object(
    s3: &Coffer,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = &req.input;
    let object = find_object(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let conditions = read_conditions!(input);
    check_conditions(&object, &conditions).map_err(|code| condition_error(code, &object))?;
    let customer = customer_key_of!(input)?;
    // HEAD checks an SSE-C key as GET does, without unwrapping the data key.
    encryption::check_read(object.headers.encryption.as_ref(), customer.as_ref())?;
    let selection = select(&object, input.range.as_ref(), input.part_number)?;
    let described = describe(&object, &selection, input.checksum_mode.as_ref());
    let mut output = HeadObjectOutput::default();
    fill_common!(output, object, described, input);
    let lock = lock_headers(s3, &Authorizer::caller_of(&req.extensions), &object).await?;
    output.object_lock_mode = lock.mode;
    output.object_lock_retain_until_date = lock.until;
    output.object_lock_legal_hold_status = lock.legal_hold;
    set_sse!(
        output,
        object.headers.encryption.as_ref(),
        customer.as_ref().map(|c| c.md5.as_str())
    );
    let mut response = S3Response::new(output);
    if selection.partial {
        response.status = Some(http::StatusCode::PARTIAL_CONTENT);
    }
    // AWS sends it on HEAD as on GET, though HeadObject's model has no field.
    if !object.tags.is_empty() {
        response.headers.insert(
            "x-amz-tagging-count",
            http::HeaderValue::from(object.tags.len()),
        );
    }
    Ok(response)
}
