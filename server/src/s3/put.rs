//! PutObject: stream the body into a durable blob, verify digests, then commit the
//! metadata row that makes it visible (atomically with `If-None-Match`/`If-Match`).

use std::collections::BTreeMap;

use http::HeaderMap;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksum::{self, set_checksum};
use super::encryption::{self, WriteEncryption, customer_key_of, kms_fields_of, set_sse};
use super::ingest::{BodyRules, ingest};
use super::object_lock;
use super::tagging;
use super::{Coffer, meta_error, quoted_etag, validate_key, version_header};
use crate::cluster::DataPlane;
use crate::meta::{
    MetaError, ObjectChecksum, ObjectHeaders, ObjectMeta, Quota, Segment, WriteCondition,
    now_millis,
};

/// The standard headers a PUT, copy with REPLACE, or multipart create stores.
pub(super) struct HeaderInput<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub content_disposition: Option<&'a str>,
    pub content_language: Option<&'a str>,
    pub cache_control: Option<&'a str>,
    pub expires: Option<&'a Timestamp>,
    pub storage_class: Option<&'a StorageClass>,
    pub metadata: Option<&'a Metadata>,
}

/// The standard headers of any input that has them (PutObject, CopyObject and
/// CreateMultipartUpload inputs share the field names).
macro_rules! header_input {
    ($input:expr) => {
        $crate::s3::put::HeaderInput {
            content_type: $input.content_type.as_deref(),
            content_encoding: $input.content_encoding.as_deref(),
            content_disposition: $input.content_disposition.as_deref(),
            content_language: $input.content_language.as_deref(),
            cache_control: $input.cache_control.as_deref(),
            expires: $input.expires.as_ref(),
            storage_class: $input.storage_class.as_ref(),
            metadata: $input.metadata.as_ref(),
        }
    };
}
pub(super) use header_input;

pub(super) fn object_headers(
    input: HeaderInput<'_>,
    max_user_metadata: usize,
) -> S3Result<ObjectHeaders> {
    let user_metadata: BTreeMap<String, String> = input
        .metadata
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let metadata_size: usize = user_metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if metadata_size > max_user_metadata {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size ({max_user_metadata} bytes)"
        ));
    }
    let expires = match input.expires {
        Some(ts) => {
            let mut buf = Vec::new();
            ts.format(TimestampFormat::HttpDate, &mut buf)
                .map_err(|_| s3_error!(InvalidArgument, "Invalid Expires header"))?;
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
        None => None,
    };
    if let Some(class) = input.storage_class
        && !matches!(
            class.as_str(),
            "STANDARD"
                | "REDUCED_REDUNDANCY"
                | "STANDARD_IA"
                | "ONEZONE_IA"
                | "INTELLIGENT_TIERING"
        )
    {
        return Err(s3_error!(
            InvalidStorageClass,
            "The storage class you specified is not valid"
        ));
    }
    Ok(ObjectHeaders {
        content_type: input.content_type.map(str::to_owned),
        content_encoding: input.content_encoding.and_then(stored_content_encoding),
        content_disposition: input.content_disposition.map(str::to_owned),
        content_language: input.content_language.map(str::to_owned),
        cache_control: input.cache_control.map(str::to_owned),
        expires,
        storage_class: input.storage_class.map(|c| c.as_str().to_owned()),
        user_metadata,
        // Set by each write from `x-amz-acl` (`acl::acl_for_new_object`).
        acl: None,
        // Set by the write from its SSE headers and the bucket default.
        encryption: None,
        multipart_upload: None,
    })
}

/// The `Content-Encoding` an object keeps: without `aws-chunked`, which only
/// describes how this request's body was framed (AWS drops it too); none when
/// nothing else is left.
fn stored_content_encoding(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// The real length of a body: aws-chunked bodies declare it separately.
pub(super) fn declared_length(headers: &HeaderMap, content_length: Option<i64>) -> Option<u64> {
    let chunked = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    if chunked {
        headers
            .get("x-amz-decoded-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    } else {
        content_length.and_then(|n| u64::try_from(n).ok())
    }
}

/// A PUT body must say how long it is: `Content-Length`, or
/// `x-amz-decoded-content-length` for an aws-chunked body (which may itself
/// arrive with `Transfer-Encoding: chunked`). AWS answers others `411
/// MissingContentLength`.
pub(super) fn require_length(declared: Option<u64>) -> S3Result<()> {
    match declared {
        Some(_) => Ok(()),
        None => Err(s3_error!(
            MissingContentLength,
            "You must provide the Content-Length HTTP header."
        )),
    }
}

/// `If-None-Match: *` or `If-Match: "etag"` on a write.
pub(super) fn write_condition(
    if_match: Option<&IfMatch>,
    if_none_match: Option<&IfNoneMatch>,
) -> S3Result<WriteCondition> {
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match together are not supported on writes"
        )),
        (None, Some(ETagCondition::Any)) => Ok(WriteCondition::IfNoneMatchAny),
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on writes supports only the value *"
        )),
        (Some(ETagCondition::ETag(etag)), None) => {
            Ok(WriteCondition::IfMatch(etag.value().to_owned()))
        }
        // RFC 9110: `*` matches any current representation.
        (Some(ETagCondition::Any), None) => Ok(WriteCondition::IfMatchAny),
        (None, None) => Ok(WriteCondition::None),
    }
}

/// Request headers that ask for something Coffer does not do yet. Accepting them
/// silently would lie about encryption or visibility, so they are
/// refused. (`x-amz-acl` is checked by each write against the bucket's ownership.)
pub(super) fn refuse_unsupported(headers: &HeaderMap) -> S3Result<()> {
    // SSE-S3, SSE-KMS and SSE-C are served (`encryption.rs`).
    const REFUSED_PREFIXES: &[&str] = &["x-amz-grant-"];
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with("x-amz-grant-") {
            continue; // ACL grants: `acl.rs`.
        }
        if let Some(prefix) = REFUSED_PREFIXES.iter().find(|p| name.starts_with(**p)) {
            return Err(s3_error!(
                NotImplemented,
                "{prefix}* headers are not supported yet"
            ));
        }
        if name == "x-amz-website-redirect-location" {
            return Err(s3_error!(
                NotImplemented,
                "Website redirects are not supported"
            ));
        }
    }
    Ok(())
}

/// Removes a blob that will never be committed from the nodes that hold it
/// (best effort; garbage collection catches the rest).
pub(super) async fn discard(blobs: &DataPlane, id: &str, replicas: &[String]) {
    blobs.discard(id, replicas).await;
}

/// Whether a failed commit certainly did not happen. A database error may hide a
/// commit that did apply (the connection dropped after COMMIT), so its blobs
/// are left for garbage collection rather than deleted.
pub(super) fn surely_not_committed(err: &MetaError) -> bool {
    !matches!(err, MetaError::Database(_))
}

/// Refuses a body that could never fit the bucket's quota before reading it; the
/// exact check happens atomically with the commit.
fn refuse_beyond_quota(quota: Option<Quota>, declared: Option<u64>) -> S3Result<()> {
    let Some(len) = declared else {
        return Ok(());
    };
    if quota
        .and_then(|q| q.max_size_bytes)
        .is_some_and(|max| len > max)
    {
        return Err(super::quota_exceeded());
    }
    Ok(())
}

pub async fn put_object(
    s3: &Coffer,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    refuse_unsupported(&req.headers)?;
    let mut input = req.input;
    // A browser form upload arrives here too (s3s's default PostObject).
    super::post::apply_form_fields(&mut input, &req.extensions, s3.authorizer.sigv2_allowed())?;
    validate_key(&input.key)?;
    // Everything this write needs to know of its bucket, in one query.
    let bucket = s3.keyring.bucket_for_write(&input.bucket).await?;
    let mut headers = object_headers(header_input!(input), s3.limits.max_user_metadata)?;
    let caller = crate::auth::Authorizer::caller_of(&req.extensions);
    let acl = super::acl::object_acl_headers!(input);
    headers.acl = super::acl::acl_for_new_object(s3, &caller, &input.bucket, acl).await?;
    let requested = encryption::requested(
        input.server_side_encryption.as_ref(),
        customer_key_of!(input)?,
        kms_fields_of!(input),
    )?;
    let encryption =
        WriteEncryption::choose_given(s3, bucket.config(encryption::ENCRYPTION), requested).await?;
    WriteEncryption::apply(encryption.as_ref(), &mut headers);
    let tags = tagging::parse_header(input.tagging.as_deref())?;
    let lock = object_lock::requested_lock(
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
    )?;
    object_lock::check_requested_lock(s3, &input.bucket, &lock).await?;
    let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    if condition == WriteCondition::IfNoneMatchAny
        && s3
            .meta
            .get_object(&input.bucket, &input.key)
            .await
            .map_err(meta_error)?
            .is_some()
    {
        // Fail before reading the body; the commit checks again atomically.
        return Err(meta_error(crate::meta::MetaError::PreconditionFailed));
    }
    let declared_len = declared_length(&req.headers, input.content_length);
    if req.method == http::Method::PUT {
        require_length(declared_len)?;
    }
    refuse_beyond_quota(bucket.quota().map_err(meta_error)?, declared_len)?;
    let expected = checksum::expected(&req.headers, input.checksum_algorithm.as_ref())?
        .or_form_fields([
            input.checksum_crc32.as_deref(),
            input.checksum_crc32c.as_deref(),
            input.checksum_sha1.as_deref(),
            input.checksum_sha256.as_deref(),
            input.checksum_crc64nvme.as_deref(),
        ])?;
    // S3 wants proof of integrity for a PUT that locks what it writes (a form
    // POST has no way to send it).
    if !lock.is_empty()
        && req.method == http::Method::PUT
        && input.content_md5.is_none()
        && expected.algorithm.is_none()
    {
        return Err(s3_error!(
            InvalidRequest,
            "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters"
        ));
    }
    let body = input.body.unwrap_or_else(|| {
        StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
    });
    let ingested = ingest(
        &s3.blobs,
        body,
        BodyRules {
            max_size: s3.limits.max_object_size,
            declared_len,
            content_md5: input.content_md5.as_deref(),
            algorithm: expected.algorithm,
            inline_max: s3.limits.inline_max,
            encryption: encryption.as_ref().map(|e| &*e.data_key),
            protection: bucket.data_protection(),
        },
    )
    .await?;
    if let Err(e) = expected.verify(ingested.checksum.as_deref(), req.trailing_headers.as_ref()) {
        discard(&s3.blobs, &ingested.blob.id, &ingested.blob.replicas).await;
        return Err(e);
    }
    let object = ObjectMeta {
        bucket: input.bucket,
        key: input.key,
        size: ingested.size,
        etag: ingested.md5_hex.clone(),
        last_modified: now_millis(),
        headers,
        checksum: ObjectChecksum {
            algorithm: expected.algorithm.map(|a| a.name().to_owned()),
            value: ingested.checksum.clone(),
            kind: expected.algorithm.map(|_| "FULL_OBJECT".to_owned()),
        },
        segments: vec![Segment {
            blob: ingested.blob.id.clone(),
            size: ingested.size,
            checksum: None,
            replicas: ingested.blob.replicas.clone(),
            inline: ingested.inline.clone(),
            stored_size: ingested.stored_size(),
        }],
        tags,
        lock,
        ..ObjectMeta::default()
    };
    let version_id = match s3.meta.put_object(&object, &condition).await {
        Ok(version_id) => version_id,
        Err(e) => {
            if surely_not_committed(&e) {
                discard(&s3.blobs, &ingested.blob.id, &ingested.blob.replicas).await;
            }
            return Err(meta_error(e));
        }
    };
    let mut output = PutObjectOutput {
        e_tag: Some(quoted_etag(&object.etag)),
        size: Some(object.size as i64),
        version_id: version_header(&version_id),
        ..Default::default()
    };
    set_sse!(
        output,
        object.headers.encryption.as_ref(),
        encryption.as_ref().and_then(|e| e.customer_md5.as_deref())
    );
    output.ssekms_encryption_context = object
        .headers
        .encryption
        .as_ref()
        .and_then(|e| e.kms_context.clone());
    if let Some(algorithm) = expected.algorithm {
        set_checksum!(output, algorithm, ingested.checksum);
        output.checksum_type = Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT));
    }
    Ok(S3Response::new(output))
}
