//! Block Public Access per bucket (Put/Get/DeletePublicAccessBlock) and
//! GetBucketPolicyStatus. The settings take effect where access is decided:
//! BlockPublicAcls in `acl.rs`, IgnorePublicAcls and RestrictPublicBuckets in
//! `auth.rs`, BlockPublicPolicy here for PutBucketPolicy. `--block-public-access`
//! turns all four on for every bucket.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::{Coffer, meta_error};
use crate::iam::PolicyDocument;
use crate::meta::PublicAccessBlock;

fn no_configuration() -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
        "The public access block configuration was not found",
    );
    err.set_status_code(http::StatusCode::NOT_FOUND);
    err
}

/// PutBucketPolicy under BlockPublicPolicy refuses a public policy.
pub(super) async fn check_policy_allowed(
    s3: &Coffer,
    bucket: &str,
    policy: &PolicyDocument,
) -> S3Result<()> {
    if !policy.is_public() {
        return Ok(());
    }
    let settings = s3.meta.bucket_acl(bucket).await.map_err(meta_error)?;
    if s3
        .keyring
        .public_access_block(&settings)
        .block_public_policy
    {
        return Err(s3_error!(
            AccessDenied,
            "Access Denied: Block Public Access (BlockPublicPolicy) refuses public bucket policies"
        ));
    }
    Ok(())
}

pub async fn put_public_access_block(
    s3: &Coffer,
    req: S3Request<PutPublicAccessBlockInput>,
) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
    let input = req.input;
    let given = input.public_access_block_configuration;
    let settings = PublicAccessBlock {
        block_public_acls: given.block_public_acls.unwrap_or(false),
        ignore_public_acls: given.ignore_public_acls.unwrap_or(false),
        block_public_policy: given.block_public_policy.unwrap_or(false),
        restrict_public_buckets: given.restrict_public_buckets.unwrap_or(false),
    };
    s3.meta
        .set_public_access_block(&input.bucket, Some(settings))
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_acl(&input.bucket);
    Ok(S3Response::new(PutPublicAccessBlockOutput::default()))
}

pub async fn get_public_access_block(
    s3: &Coffer,
    req: S3Request<GetPublicAccessBlockInput>,
) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
    let bucket = &req.input.bucket;
    s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    let settings = s3.meta.bucket_acl(bucket).await.map_err(meta_error)?;
    let stored = settings.public_access_block.ok_or_else(no_configuration)?;
    Ok(S3Response::new(GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(PublicAccessBlockConfiguration {
            block_public_acls: Some(stored.block_public_acls),
            ignore_public_acls: Some(stored.ignore_public_acls),
            block_public_policy: Some(stored.block_public_policy),
            restrict_public_buckets: Some(stored.restrict_public_buckets),
        }),
    }))
}

pub async fn delete_public_access_block(
    s3: &Coffer,
    req: S3Request<DeletePublicAccessBlockInput>,
) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
    let bucket = &req.input.bucket;
    s3.meta
        .set_public_access_block(bucket, None)
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_acl(bucket);
    let mut response = S3Response::new(DeletePublicAccessBlockOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}

/// `IsPublic` of the bucket's policy as S3 defines it (`iam/public.rs`).
pub async fn get_bucket_policy_status(
    s3: &Coffer,
    req: S3Request<GetBucketPolicyStatusInput>,
) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
    let bucket = &req.input.bucket;
    s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    let text = s3
        .meta
        .get_bucket_policy(bucket)
        .await
        .map_err(meta_error)?
        .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
    // Stored policies were validated on the way in; one that no longer parses
    // grants nothing (as `auth.rs` treats it), so it is not public.
    let is_public = PolicyDocument::parse(&text).is_ok_and(|p| p.is_public());
    Ok(S3Response::new(GetBucketPolicyStatusOutput {
        policy_status: Some(PolicyStatus {
            is_public: Some(is_public),
        }),
    }))
}
