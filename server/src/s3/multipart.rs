//! Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort,
//! ListParts, ListMultipartUploads. Each part is its own durable blob; completing
//! an upload commits a row that points at the parts' blobs, copying nothing.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use sync_wrapper::SyncStream;

use super::checksum::{self, Algorithm, set_checksum};
use super::copy::copy_source_object;
use super::encryption::{
    self, WriteEncryption, copy_source_customer_key_of, customer_key_of, kms_fields_of, set_sse,
};
use super::get::{copy_source_conditions, object_stream};
use super::ingest::{BodyRules, Ingested, ingest};
use super::put::{
    declared_length, discard, header_input, object_headers, surely_not_committed, write_condition,
};
use super::{Coffer, meta_error, quoted_etag, timestamp, validate_key};
use crate::auth::Authorizer;
use crate::meta::{
    self, ListQuery, MultipartUpload, ObjectChecksum, ObjectMeta, Segment, now_millis,
};

/// S3 allows part numbers 1 to 10,000.
const MAX_PARTS: i32 = 10_000;

fn part_number(n: i32) -> S3Result<u32> {
    if (1..=MAX_PARTS).contains(&n) {
        Ok(n as u32)
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and {MAX_PARTS}, inclusive"
        ))
    }
}

fn upload_algorithm(upload: &MultipartUpload) -> Option<Algorithm> {
    upload
        .checksum_algorithm
        .as_deref()
        .and_then(|a| Algorithm::parse(a).ok())
}

pub async fn create_multipart_upload(
    s3: &Coffer,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    super::put::refuse_unsupported(&req.headers)?;
    let caller = Authorizer::caller_of(&req.extensions);
    let input = req.input;
    validate_key(&input.key)?;
    let mut headers = object_headers(header_input!(input), s3.limits.max_user_metadata)?;
    let acl = super::acl::object_acl_headers!(input);
    headers.acl = super::acl::acl_for_new_object(s3, &caller, &input.bucket, acl).await?;
    let requested = encryption::requested(
        input.server_side_encryption.as_ref(),
        customer_key_of!(input)?,
        kms_fields_of!(input),
    )?;
    // One data key for the whole upload; each part's blob gets its own key
    // derived from it (see `crate::crypto`).
    let encryption = WriteEncryption::choose(s3, &input.bucket, requested).await?;
    WriteEncryption::apply(encryption.as_ref(), &mut headers);
    let tags = super::tagging::parse_header(input.tagging.as_deref())?;
    // Kept with the upload and given to the object when it is completed.
    let lock = super::object_lock::requested_lock(
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
    )?;
    super::object_lock::check_requested_lock(s3, &input.bucket, &lock).await?;
    let algorithm = input
        .checksum_algorithm
        .as_ref()
        .map(Algorithm::from_dto)
        .transpose()?;
    let checksum_type = upload_checksum_type(algorithm, input.checksum_type.as_ref())?;
    let upload = MultipartUpload {
        upload_id: format!("{:032x}", rand::random::<u128>()),
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        initiated: now_millis(),
        owner: caller.owner_id(),
        headers,
        tags,
        checksum_algorithm: algorithm.map(|a| a.name().to_owned()),
        checksum_type: checksum_type.map(str::to_owned),
        lock,
    };
    s3.meta
        .create_multipart_upload(&upload)
        .await
        .map_err(meta_error)?;
    let mut output = CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload.upload_id),
        checksum_algorithm: input.checksum_algorithm,
        checksum_type: checksum_type.map(ChecksumType::from_static),
        ..Default::default()
    };
    set_sse!(
        output,
        upload.headers.encryption.as_ref(),
        encryption.as_ref().and_then(|e| e.customer_md5.as_deref())
    );
    Ok(S3Response::new(output))
}

/// The checksum type of a new upload: COMPOSITE (a digest of part digests) or
/// FULL_OBJECT (CRCs only, combined from the parts), as S3 allows them.
fn upload_checksum_type(
    algorithm: Option<Algorithm>,
    requested: Option<&ChecksumType>,
) -> S3Result<Option<&'static str>> {
    match (algorithm, requested.map(ChecksumType::as_str)) {
        (None, Some(_)) => Err(s3_error!(
            InvalidRequest,
            "x-amz-checksum-type requires x-amz-checksum-algorithm"
        )),
        (None, None) => Ok(None),
        (Some(a), Some(ChecksumType::FULL_OBJECT)) if !a.supports_full_object() => Err(s3_error!(
            InvalidRequest,
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
            a.name()
        )),
        (Some(Algorithm::Crc64Nvme), Some(ChecksumType::COMPOSITE)) => Err(s3_error!(
            InvalidRequest,
            "The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm."
        )),
        (Some(_), Some(ChecksumType::FULL_OBJECT)) | (Some(Algorithm::Crc64Nvme), None) => {
            Ok(Some(ChecksumType::FULL_OBJECT))
        }
        (Some(_), Some(ChecksumType::COMPOSITE) | None) => Ok(Some(ChecksumType::COMPOSITE)),
        (Some(_), Some(other)) => Err(s3_error!(InvalidRequest, "Unknown checksum type {other}")),
    }
}

fn full_object_checksum_sent(
    input: &CompleteMultipartUploadInput,
    algorithm: Algorithm,
) -> Option<&str> {
    match algorithm {
        Algorithm::Crc32 => input.checksum_crc32.as_deref(),
        Algorithm::Crc32c => input.checksum_crc32c.as_deref(),
        Algorithm::Sha1 => input.checksum_sha1.as_deref(),
        Algorithm::Sha256 => input.checksum_sha256.as_deref(),
        Algorithm::Crc64Nvme => input.checksum_crc64nvme.as_deref(),
    }
}

/// Records an ingested part, discarding its blob if the upload is gone.
async fn record_part(
    s3: &Coffer,
    upload_id: &str,
    number: u32,
    ingested: &Ingested,
) -> S3Result<()> {
    let part = meta::Part {
        part_number: number,
        size: ingested.size,
        etag: ingested.md5_hex.clone(),
        blob_id: ingested.blob.id.clone(),
        checksum: ingested.checksum.clone(),
        last_modified: now_millis(),
        replicas: ingested.blob.replicas.clone(),
        stored_size: ingested.stored_size(),
    };
    if let Err(e) = s3.meta.put_part(upload_id, &part).await {
        if surely_not_committed(&e) {
            discard(&s3.blobs, &ingested.blob.id, &ingested.blob.replicas).await;
        }
        return Err(meta_error(e));
    }
    Ok(())
}

pub async fn upload_part(
    s3: &Coffer,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let input = req.input;
    let number = part_number(input.part_number)?;
    let upload = s3
        .meta
        .get_multipart_upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(meta_error)?;
    let expected = checksum::expected(&req.headers, input.checksum_algorithm.as_ref())?;
    let stored_algorithm = upload_algorithm(&upload);
    if let (Some(sent), Some(stored)) = (expected.algorithm, stored_algorithm)
        && sent != stored
    {
        return Err(s3_error!(
            InvalidRequest,
            "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
            stored.name(),
            sent.name()
        ));
    }
    let algorithm = expected.algorithm.or(stored_algorithm);
    let customer = customer_key_of!(input)?;
    let data_key =
        encryption::for_read(s3, upload.headers.encryption.as_ref(), customer.as_ref()).await?;
    let body = input.body.unwrap_or_else(|| {
        StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
    });
    let declared_len = declared_length(&req.headers, input.content_length);
    super::put::require_length(declared_len)?;
    let ingested = ingest(
        &s3.blobs,
        body,
        BodyRules {
            max_size: s3.limits.max_part_size,
            declared_len,
            content_md5: input.content_md5.as_deref(),
            algorithm,
            // Parts stay blob files: they become segments of a large object.
            inline_max: 0,
            encryption: data_key.as_deref(),
            protection: s3
                .keyring
                .bucket_for_write(&input.bucket)
                .await?
                .data_protection(),
        },
    )
    .await?;
    if let Err(e) = expected.verify(ingested.checksum.as_deref(), req.trailing_headers.as_ref()) {
        discard(&s3.blobs, &ingested.blob.id, &ingested.blob.replicas).await;
        return Err(e);
    }
    record_part(s3, &input.upload_id, number, &ingested).await?;
    let mut output = UploadPartOutput {
        e_tag: Some(quoted_etag(&ingested.md5_hex)),
        ..Default::default()
    };
    set_sse!(
        output,
        upload.headers.encryption.as_ref(),
        customer.as_ref().map(|c| c.md5.as_str())
    );
    if let Some(a) = algorithm {
        set_checksum!(output, a, ingested.checksum);
    }
    Ok(S3Response::new(output))
}

/// Parses `bytes=first-last` of `x-amz-copy-source-range` against the source size.
fn copy_range(range: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(text) = range else {
        return Ok(0..size);
    };
    let invalid = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let (first, last) = text
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(invalid)?;
    let first: u64 = first.trim().parse().map_err(|_| invalid())?;
    let last: u64 = last.trim().parse().map_err(|_| invalid())?;
    if first > last {
        return Err(invalid());
    }
    if last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable"
        ));
    }
    Ok(first..last + 1)
}

pub async fn upload_part_copy(
    s3: &Coffer,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let number = part_number(input.part_number)?;
    let upload = s3
        .meta
        .get_multipart_upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(meta_error)?;
    let source = copy_source_object(s3, &input.copy_source, copy_source_conditions!(input)).await?;
    let range = copy_range(input.copy_source_range.as_deref(), source.size)?;
    let source_key = encryption::for_read(
        s3,
        source.headers.encryption.as_ref(),
        copy_source_customer_key_of!(input)?.as_ref(),
    )
    .await?;
    let customer = customer_key_of!(input)?;
    let data_key =
        encryption::for_read(s3, upload.headers.encryption.as_ref(), customer.as_ref()).await?;
    let algorithm = upload_algorithm(&upload);
    let len = range.end - range.start;
    let stream = Box::pin(SyncStream::new(object_stream(
        s3.blobs.clone(),
        &source.segments,
        range,
        source_key,
    )));
    let ingested = ingest(
        &s3.blobs,
        stream,
        BodyRules {
            max_size: s3.limits.max_part_size,
            declared_len: Some(len),
            content_md5: None,
            algorithm,
            // Parts stay blob files: they become segments of a large object.
            inline_max: 0,
            encryption: data_key.as_deref(),
            protection: s3
                .keyring
                .bucket_for_write(&input.bucket)
                .await?
                .data_protection(),
        },
    )
    .await?;
    record_part(s3, &input.upload_id, number, &ingested).await?;
    let mut result = CopyPartResult {
        e_tag: Some(quoted_etag(&ingested.md5_hex)),
        last_modified: Some(timestamp(now_millis())),
        ..Default::default()
    };
    if let Some(a) = algorithm {
        set_checksum!(result, a, ingested.checksum);
    }
    let mut output = UploadPartCopyOutput {
        copy_part_result: Some(result),
        ..Default::default()
    };
    set_sse!(
        output,
        upload.headers.encryption.as_ref(),
        customer.as_ref().map(|c| c.md5.as_str())
    );
    Ok(S3Response::new(output))
}

fn requested_part_checksum(part: &CompletedPart, algorithm: Algorithm) -> Option<&str> {
    match algorithm {
        Algorithm::Crc32 => part.checksum_crc32.as_deref(),
        Algorithm::Crc32c => part.checksum_crc32c.as_deref(),
        Algorithm::Sha1 => part.checksum_sha1.as_deref(),
        Algorithm::Sha256 => part.checksum_sha256.as_deref(),
        Algorithm::Crc64Nvme => part.checksum_crc64nvme.as_deref(),
    }
}

/// The composite checksum: the digest of the parts' raw digests, suffixed `-N`.
fn composite_checksum(algorithm: Algorithm, part_checksums: &[Option<String>]) -> Option<String> {
    let mut raw = Vec::new();
    for value in part_checksums {
        raw.extend(
            base64::engine::general_purpose::STANDARD
                .decode(value.as_deref()?)
                .ok()?,
        );
    }
    Some(format!(
        "{}-{}",
        algorithm.digest_base64(&raw)?,
        part_checksums.len()
    ))
}

pub async fn complete_multipart_upload(
    s3: &Coffer,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let mut input = req.input;
    let upload = match s3
        .meta
        .get_multipart_upload(&input.bucket, &input.key, &input.upload_id)
        .await
    {
        Ok(upload) => upload,
        Err(meta::MetaError::NoSuchUpload) => {
            return already_completed(s3, &input).await;
        }
        Err(e) => return Err(meta_error(e)),
    };
    let requested = input
        .multipart_upload
        .take()
        .and_then(|m| m.parts)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| s3_error!(MalformedXML, "The XML you provided did not list any parts"))?;
    if requested.len() > MAX_PARTS as usize {
        return Err(s3_error!(
            MalformedXML,
            "At most {MAX_PARTS} parts may be listed"
        ));
    }
    let stored = s3
        .meta
        .list_parts(&upload.upload_id, 0, MAX_PARTS as usize + 1)
        .await
        .map_err(meta_error)?;
    let algorithm = upload_algorithm(&upload);
    let mut previous = 0u32;
    let mut chosen = Vec::with_capacity(requested.len());
    for part in &requested {
        let number = part_number(part.part_number.unwrap_or(0))?;
        if number <= previous {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. The parts list must be specified in order by part number."
            ));
        }
        previous = number;
        let invalid_part = || {
            s3_error!(
                InvalidPart,
                "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
            )
        };
        let found = stored
            .iter()
            .find(|p| p.part_number == number)
            .ok_or_else(invalid_part)?;
        if part.e_tag.as_ref().is_some_and(|e| e.value() != found.etag) {
            return Err(invalid_part());
        }
        if let Some(a) = algorithm
            && let Some(sent) = requested_part_checksum(part, a)
            && found.checksum.as_deref() != Some(sent)
        {
            return Err(invalid_part());
        }
        chosen.push(found.clone());
    }
    if let Some(small) = chosen[..chosen.len() - 1]
        .iter()
        .find(|p| p.size < s3.limits.min_part_size)
    {
        return Err(s3_error!(
            EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size (part {} has {} bytes).",
            small.part_number,
            small.size
        ));
    }
    let mut md5 = Md5::new();
    for part in &chosen {
        let digest = hex::decode(&part.etag)
            .map_err(|_| s3_error!(InternalError, "stored part ETag is corrupt"))?;
        md5.update(&digest);
    }
    let etag = format!("{}-{}", hex::encode(md5.finalize()), chosen.len());
    let full_object = upload.checksum_type.as_deref() == Some(ChecksumType::FULL_OBJECT);
    let checksum_value = match algorithm {
        Some(a) if full_object => {
            let parts: Vec<(Option<&str>, u64)> = chosen
                .iter()
                .map(|p| (p.checksum.as_deref(), p.size))
                .collect();
            let combined = a.combine(&parts);
            if let Some(sent) = full_object_checksum_sent(&input, a)
                && combined.as_deref() != Some(sent)
            {
                return Err(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    a.name()
                ));
            }
            combined
        }
        Some(a) => {
            let part_checksums: Vec<Option<String>> =
                chosen.iter().map(|p| p.checksum.clone()).collect();
            composite_checksum(a, &part_checksums)
        }
        None => None,
    };
    let checksum_kind = if full_object {
        ChecksumType::FULL_OBJECT
    } else {
        ChecksumType::COMPOSITE
    };
    let encrypted = upload.headers.encryption.is_some();
    let mut headers = upload.headers.clone();
    headers.multipart_upload = Some(upload.upload_id.clone());
    let object = ObjectMeta {
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        size: chosen.iter().map(|p| p.size).sum(),
        etag: etag.clone(),
        last_modified: now_millis(),
        headers,
        checksum: ObjectChecksum {
            algorithm: algorithm
                .filter(|_| checksum_value.is_some())
                .map(|a| a.name().to_owned()),
            value: checksum_value.clone(),
            kind: checksum_value.as_ref().map(|_| checksum_kind.to_owned()),
        },
        segments: chosen
            .iter()
            .map(|p| Segment {
                blob: p.blob_id.clone(),
                size: p.size,
                checksum: p.checksum.clone(),
                replicas: Vec::new(),
                inline: None,
                stored_size: encrypted.then(|| crate::crypto::stored_size(p.size)),
            })
            .collect(),
        tags: upload.tags.clone(),
        lock: upload.lock,
        ..ObjectMeta::default()
    };
    let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let version_id = s3
        .meta
        .complete_multipart_upload(&upload.upload_id, &object, &condition)
        .await
        .map_err(meta_error)?;
    let mut output = CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(quoted_etag(&etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        version_id: super::version_header(&version_id),
        server_side_encryption: encryption::response_headers(
            upload.headers.encryption.as_ref(),
            None,
        )
        .0,
        ssekms_key_id: encryption::kms_headers(upload.headers.encryption.as_ref()).0,
        bucket_key_enabled: encryption::kms_headers(upload.headers.encryption.as_ref()).1,
        ..Default::default()
    };
    if let (Some(a), Some(_)) = (algorithm, &checksum_value) {
        set_checksum!(output, a, checksum_value);
        output.checksum_type = Some(ChecksumType::from_static(checksum_kind));
    }
    Ok(S3Response::new(output))
}

/// A CompleteMultipartUpload for an upload that no longer exists: when the
/// key's current version was completed from it (the client's connection
/// dropped before the answer and it retries), the same success, as on AWS;
/// otherwise `NoSuchUpload`.
async fn already_completed(
    s3: &Coffer,
    input: &CompleteMultipartUploadInput,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let current = s3
        .meta
        .get_object(&input.bucket, &input.key)
        .await
        .map_err(meta_error)?
        .filter(|o| o.headers.multipart_upload.as_deref() == Some(input.upload_id.as_str()));
    let Some(object) = current else {
        return Err(meta_error(meta::MetaError::NoSuchUpload));
    };
    let mut output = CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(quoted_etag(&object.etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        version_id: super::version_header(&object.version_id),
        ..Default::default()
    };
    output.server_side_encryption =
        encryption::response_headers(object.headers.encryption.as_ref(), None).0;
    output.ssekms_key_id = encryption::kms_headers(object.headers.encryption.as_ref()).0;
    if let (Some(a), Some(value)) = (
        object
            .checksum
            .algorithm
            .as_deref()
            .and_then(|a| Algorithm::parse(a).ok()),
        object.checksum.value.clone(),
    ) {
        set_checksum!(output, a, Some(value));
        output.checksum_type = object.checksum.kind.clone().map(ChecksumType::from);
    }
    Ok(S3Response::new(output))
}

pub async fn abort_multipart_upload(
    s3: &Coffer,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    let upload = s3
        .meta
        .get_multipart_upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(meta_error)?;
    s3.meta
        .abort_multipart_upload(&upload.upload_id)
        .await
        .map_err(meta_error)?;
    let mut response = S3Response::new(AbortMultipartUploadOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}

fn owner(id: &str) -> (Owner, Initiator) {
    (
        Owner {
            display_name: Some(id.to_owned()),
            id: Some(id.to_owned()),
        },
        Initiator {
            display_name: Some(id.to_owned()),
            id: Some(id.to_owned()),
        },
    )
}

pub async fn list_parts(
    s3: &Coffer,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let upload = s3
        .meta
        .get_multipart_upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(meta_error)?;
    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
    let mut parts = s3
        .meta
        .list_parts(&upload.upload_id, marker, max + 1)
        .await
        .map_err(meta_error)?;
    let truncated = parts.len() > max;
    parts.truncate(max);
    let algorithm = upload_algorithm(&upload);
    let next_marker = parts.last().map(|p| p.part_number as i32);
    let entries = parts
        .into_iter()
        .map(|p| {
            let mut entry = Part {
                part_number: Some(p.part_number as i32),
                e_tag: Some(quoted_etag(&p.etag)),
                size: Some(p.size as i64),
                last_modified: Some(timestamp(p.last_modified)),
                ..Default::default()
            };
            if let Some(a) = algorithm {
                set_checksum!(entry, a, p.checksum);
            }
            entry
        })
        .collect();
    let (owner, initiator) = owner(&upload.owner);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload.upload_id),
        max_parts: Some(max as i32),
        part_number_marker: Some(marker as i32),
        next_part_number_marker: next_marker,
        is_truncated: Some(truncated),
        parts: Some(entries),
        owner: Some(owner),
        initiator: Some(initiator),
        storage_class: Some(StorageClass::from(
            upload
                .headers
                .storage_class
                .clone()
                .unwrap_or_else(|| "STANDARD".to_owned()),
        )),
        checksum_algorithm: algorithm.map(|a| ChecksumAlgorithm::from(a.name().to_owned())),
        ..Default::default()
    }))
}

pub async fn list_multipart_uploads(
    s3: &Coffer,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    s3.meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
        start_after: input
            .key_marker
            .clone()
            .filter(|k| !k.is_empty())
            .map(String::into_bytes),
        max_keys: input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize,
    };
    let id_marker = input
        .upload_id_marker
        .as_deref()
        .filter(|_| query.start_after.is_some());
    let page = s3
        .meta
        .list_multipart_uploads(&input.bucket, &query, id_marker)
        .await
        .map_err(meta_error)?;
    let last_key = page
        .last
        .as_deref()
        .map(|l| String::from_utf8_lossy(l).into_owned());
    let next_upload_id = page
        .items
        .last()
        .filter(|u| Some(&u.key) == last_key.as_ref())
        .map(|u| u.upload_id.clone());
    let uploads = page
        .items
        .into_iter()
        .map(|u| {
            let (owner, initiator) = owner(&u.owner);
            s3s::dto::MultipartUpload {
                key: Some(u.key),
                upload_id: Some(u.upload_id),
                initiated: Some(timestamp(u.initiated)),
                owner: Some(owner),
                initiator: Some(initiator),
                storage_class: Some(StorageClass::from(
                    u.headers
                        .storage_class
                        .unwrap_or_else(|| "STANDARD".to_owned()),
                )),
                checksum_algorithm: u.checksum_algorithm.map(ChecksumAlgorithm::from),
                checksum_type: None,
            }
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        delimiter: query.delimiter,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(query.max_keys as i32),
        is_truncated: Some(page.is_truncated),
        next_key_marker: page.is_truncated.then_some(last_key).flatten(),
        next_upload_id_marker: page.is_truncated.then_some(next_upload_id).flatten(),
        uploads: Some(uploads),
        common_prefixes: Some(
            page.common_prefixes
                .into_iter()
                .map(|p| CommonPrefix { prefix: Some(p) })
                .collect(),
        ),
        encoding_type: input.encoding_type,
        request_charged: None,
    }))
}
