//! CopyObject: server-side copy with COPY/REPLACE metadata directives and
//! copy-source conditions. A copy onto itself with REPLACE rewrites only metadata;
//! any other copy streams the bytes into a new blob (blobs are never shared).

use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use sync_wrapper::SyncStream;

use super::checksum::{Algorithm, set_checksum};
use super::encryption::{
    self, Requested, WriteEncryption, copy_source_customer_key_of, customer_key_of, kms_fields_of,
    set_sse,
};
use super::get::{
    Conditions, check_conditions, copy_source_conditions, find_object, object_stream,
};
use super::ingest::{BodyRules, ingest};
use super::put::{discard, header_input, object_headers, surely_not_committed};
use super::tagging;
use super::{Coffer, meta_error, quoted_etag, timestamp, validate_key, version_header};
use crate::crypto::Key;
use crate::meta::{
    NULL_VERSION, ObjectChecksum, ObjectMeta, Segment, Versioning, WriteCondition, now_millis,
};

/// Resolves `x-amz-copy-source` to an existing object, honouring the
/// `x-amz-copy-source-if-*` conditions (all of which fail with 412).
pub(super) async fn copy_source_object(
    s3: &Coffer,
    source: &CopySource,
    conditions: Conditions<'_>,
) -> S3Result<ObjectMeta> {
    let CopySource::Bucket {
        bucket,
        key,
        version_id,
    } = source
    else {
        return Err(s3_error!(
            NotImplemented,
            "Access point copy sources are not supported"
        ));
    };
    let object = find_object(s3, bucket, key, version_id.as_deref())
        .await
        .map_err(|e| {
            if *e.code() == S3ErrorCode::MethodNotAllowed {
                s3_error!(
                    InvalidRequest,
                    "The source of a copy request may not specifically refer to a delete marker by version id."
                )
            } else {
                e
            }
        })?;
    check_conditions(&object, &conditions).map_err(|_| {
        s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )
    })?;
    Ok(object)
}

pub async fn copy_object(
    s3: &Coffer,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    super::put::refuse_unsupported(&req.headers)?;
    let input = req.input;
    validate_key(&input.key)?;
    s3.meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    // The copy gets the lock the request asks for (or the bucket's default),
    // never the source's, as on S3.
    let lock = super::object_lock::requested_lock(
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
    )?;
    super::object_lock::check_requested_lock(s3, &input.bucket, &lock).await?;
    let source = copy_source_object(s3, &input.copy_source, copy_source_conditions!(input)).await?;
    let source_key = encryption::for_read(
        s3,
        source.headers.encryption.as_ref(),
        copy_source_customer_key_of!(input)?.as_ref(),
    )
    .await?;
    let requested = encryption::requested(
        input.server_side_encryption.as_ref(),
        customer_key_of!(input)?,
        kms_fields_of!(input),
    )?;
    let asks_encryption = !matches!(requested, Requested::Default);
    let target = WriteEncryption::choose(s3, &input.bucket, requested).await?;
    let replace = match input
        .metadata_directive
        .as_ref()
        .map(MetadataDirective::as_str)
    {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "Unknown metadata directive {other}"
            ));
        }
    };
    let mut headers = if replace {
        object_headers(header_input!(input), s3.limits.max_user_metadata)?
    } else {
        let mut headers = source.headers.clone();
        headers.multipart_upload = None;
        if let Some(class) = &input.storage_class {
            headers.storage_class = Some(class.as_str().to_owned());
        }
        headers
    };
    // An ACL is never copied: the copy gets the request's, as on S3.
    let acl = super::acl::object_acl_headers!(input);
    let caller = crate::auth::Authorizer::caller_of(&req.extensions);
    headers.acl = super::acl::acl_for_new_object(s3, &caller, &input.bucket, acl).await?;
    WriteEncryption::apply(target.as_ref(), &mut headers);
    let new_tags = input.tagging_directive.is_some();
    let onto_itself = source.bucket == input.bucket
        && source.key == input.key
        && s3
            .meta
            .get_object(&input.bucket, &input.key)
            .await
            .map_err(meta_error)?
            .is_some_and(|current| current.version_id == source.version_id);
    if onto_itself && !replace && !new_tags && input.storage_class.is_none() && !asks_encryption {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    // Rewriting only the metadata shares the blobs with the source version, which
    // is only right when that version goes away; versioning keeps it.
    let versioning = s3
        .meta
        .bucket_versioning(&input.bucket)
        .await
        .map_err(meta_error)?;
    // Encrypted bytes are bound to their object's data key: changing (or
    // keeping) encryption on a copy onto itself rewrites them.
    let in_place = onto_itself
        && source.headers.encryption.is_none()
        && target.is_none()
        && (versioning == Versioning::Unversioned
            || (versioning == Versioning::Suspended && source.version_id == NULL_VERSION));
    let tags = tagging::copy_tags(
        input.tagging_directive.as_ref(),
        input.tagging.as_deref(),
        &source.tags,
    )?;
    let object = if in_place {
        ObjectMeta {
            headers,
            tags,
            lock,
            last_modified: now_millis(),
            ..source.clone()
        }
    } else {
        copy_bytes(
            s3,
            &source,
            (&input.bucket, &input.key),
            headers,
            input.checksum_algorithm.as_ref(),
            (source_key, target.as_ref().map(|t| &*t.data_key)),
        )
        .await
        .map(|object| ObjectMeta {
            tags,
            lock,
            ..object
        })?
    };
    let condition = if in_place {
        WriteCondition::IfMatch(source.etag.clone())
    } else {
        WriteCondition::None
    };
    let version_id = match s3.meta.put_object(&object, &condition).await {
        Ok(version_id) => version_id,
        Err(e) => {
            if !in_place && surely_not_committed(&e) {
                for segment in &object.segments {
                    discard(&s3.blobs, &segment.blob, &segment.replicas).await;
                }
            }
            return Err(meta_error(e));
        }
    };
    let mut result = CopyObjectResult {
        e_tag: Some(quoted_etag(&object.etag)),
        last_modified: Some(timestamp(object.last_modified)),
        ..Default::default()
    };
    if let Some(algorithm) = object
        .checksum
        .algorithm
        .as_deref()
        .and_then(|a| Algorithm::parse(a).ok())
    {
        set_checksum!(result, algorithm, object.checksum.value.clone());
    }
    let mut output = CopyObjectOutput {
        copy_object_result: Some(result),
        copy_source_version_id: version_header(&source.version_id),
        version_id: version_header(&version_id),
        ..Default::default()
    };
    set_sse!(
        output,
        object.headers.encryption.as_ref(),
        target.as_ref().and_then(|t| t.customer_md5.as_deref())
    );
    Ok(S3Response::new(output))
}

/// Streams the source's bytes into a new blob for the destination object,
/// opening them with the source's data key and sealing them with the
/// destination's (`keys`).
async fn copy_bytes(
    s3: &Coffer,
    source: &ObjectMeta,
    (bucket, key): (&str, &str),
    headers: crate::meta::ObjectHeaders,
    requested: Option<&ChecksumAlgorithm>,
    keys: (Option<Arc<Key>>, Option<&Key>),
) -> S3Result<ObjectMeta> {
    let algorithm = match requested {
        Some(a) => Some(Algorithm::from_dto(a)?),
        None => source
            .checksum
            .algorithm
            .as_deref()
            .and_then(|a| Algorithm::parse(a).ok()),
    };
    let stream = Box::pin(SyncStream::new(object_stream(
        s3.blobs.clone(),
        &source.segments,
        0..source.size,
        keys.0,
    )));
    let ingested = ingest(
        &s3.blobs,
        stream,
        BodyRules {
            max_size: s3.limits.max_object_size,
            declared_len: Some(source.size),
            content_md5: None,
            algorithm,
            inline_max: s3.limits.inline_max,
            encryption: keys.1,
            protection: s3.keyring.bucket_for_write(bucket).await?.data_protection(),
        },
    )
    .await?;
    let stored_size = ingested.stored_size();
    Ok(ObjectMeta {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size: ingested.size,
        etag: ingested.md5_hex,
        last_modified: now_millis(),
        headers,
        checksum: ObjectChecksum {
            algorithm: algorithm.map(|a| a.name().to_owned()),
            value: ingested.checksum,
            kind: algorithm.map(|_| "FULL_OBJECT".to_owned()),
        },
        segments: vec![Segment {
            stored_size,
            blob: ingested.blob.id,
            size: ingested.size,
            checksum: None,
            replicas: ingested.blob.replicas,
            inline: ingested.inline,
        }],
        ..ObjectMeta::default()
    })
}
