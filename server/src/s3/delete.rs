//! DeleteObject and DeleteObjects (batch, quiet mode, per-key authorization).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Coffer, meta_error};
use crate::auth::Authorizer;

pub async fn delete_object(
    s3: &Coffer,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
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
    // Deleting a key that does not exist succeeds, as on S3.
    s3.meta
        .delete_object(&input.bucket, &input.key)
        .await
        .map_err(meta_error)?;
    let mut response = S3Response::new(DeleteObjectOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
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
        let refused = |code: &str, message: &str| Error {
            code: Some(code.to_owned()),
            key: Some(key.clone()),
            message: Some(message.to_owned()),
            version_id: None,
        };
        if let Err(e) = s3
            .authorizer
            .authorize(&caller, "s3:DeleteObject", Some(&input.bucket), Some(&key))
            .await
        {
            errors.push(refused(e.code().as_str(), "Access Denied"));
            continue;
        }
        match s3.meta.delete_object(&input.bucket, &key).await {
            Ok(_) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        key: Some(key),
                        ..Default::default()
                    });
                }
            }
            Err(e) => {
                let err = meta_error(e);
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
