//! DeleteObject and DeleteObjects (batch, quiet mode, per-key authorization):
//! a version by id, or the current version, which versioning turns into a new
//! delete marker. A version under Object Lock is refused by the store
//! (`AccessDenied`); GOVERNANCE retention yields to a caller that asks for the
//! bypass and holds `s3:BypassGovernanceRetention`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::object_lock::may_bypass_governance;
use super::{Coffer, meta_error};
use crate::auth::Authorizer;
use crate::meta::Deleted;

pub async fn delete_object(
    s3: &Coffer,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let caller = Authorizer::caller_of(&req.extensions);
    let input = req.input;
    s3.meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    if let Some(ETagCondition::ETag(etag)) = &input.if_match {
        match s3
            .meta
            .get_object(&input.bucket, &input.key)
            .await
            .map_err(meta_error)?
        {
            Some(current) if current.etag == etag.value() => {}
            Some(_) => {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
            None => return Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
        }
    }
    // Deleting a key or version that does not exist succeeds, as on S3.
    let bypass = match input.version_id {
        Some(_) => {
            may_bypass_governance(
                s3,
                &caller,
                input.bypass_governance_retention,
                &input.bucket,
                &input.key,
            )
            .await?
        }
        None => false,
    };
    let deleted = delete_one(
        s3,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
        bypass,
    )
    .await?;
    let mut response = S3Response::new(DeleteObjectOutput {
        delete_marker: deleted.delete_marker.then_some(true),
        version_id: deleted.version_id,
        request_charged: None,
    });
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}

/// Deletes one version, or (without a version id) the current one, which in a
/// versioned bucket means adding a delete marker.
async fn delete_one(
    s3: &Coffer,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    bypass_governance: bool,
) -> S3Result<Deleted> {
    match version_id {
        Some(v) => {
            s3.meta
                .delete_object_version_with(bucket, key, v, bypass_governance)
                .await
        }
        None => s3.meta.delete_object(bucket, key).await,
    }
    .map_err(meta_error)
}

/// S3 caps a batch delete at 1000 keys.
const MAX_BATCH: usize = 1000;

pub async fn delete_objects(
    s3: &Coffer,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let caller = Authorizer::caller_of(&req.extensions);
    let input = req.input;
    let objects = input.delete.objects;
    if objects.len() > MAX_BATCH {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided may list at most {MAX_BATCH} keys"
        ));
    }
    if objects.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided did not list any keys"
        ));
    }
    s3.meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in objects {
        let key = object.key;
        let version_id = object.version_id;
        let refused = |code: &str, message: &str| Error {
            code: Some(code.to_owned()),
            key: Some(key.clone()),
            message: Some(message.to_owned()),
            version_id: version_id.clone(),
        };
        let action = match version_id {
            Some(_) => "s3:DeleteObjectVersion",
            None => "s3:DeleteObject",
        };
        if let Err(e) = s3
            .authorizer
            .authorize(&caller, action, Some(&input.bucket), Some(&key))
            .await
        {
            errors.push(refused(e.code().as_str(), "Access Denied"));
            continue;
        }
        let bypass = match version_id {
            Some(_) => {
                may_bypass_governance(
                    s3,
                    &caller,
                    input.bypass_governance_retention,
                    &input.bucket,
                    &key,
                )
                .await?
            }
            None => false,
        };
        match delete_one(s3, &input.bucket, &key, version_id.as_deref(), bypass).await {
            Ok(outcome) => {
                if !quiet {
                    // A version deleted by id is reported under VersionId; a
                    // marker created by the delete under DeleteMarkerVersionId.
                    let (version, marker_version) = match &version_id {
                        Some(_) => (outcome.version_id.or(version_id.clone()), None),
                        None => (None, outcome.version_id),
                    };
                    let marker_version = if outcome.delete_marker && version_id.is_some() {
                        version.clone()
                    } else {
                        marker_version
                    };
                    deleted.push(DeletedObject {
                        key: Some(key),
                        version_id: version,
                        delete_marker: outcome.delete_marker.then_some(true),
                        delete_marker_version_id: marker_version,
                    });
                }
            }
            Err(err) => {
                errors.push(refused(
                    err.code().as_str(),
                    err.message().unwrap_or("Internal error"),
                ));
            }
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        request_charged: None,
    }))
}
