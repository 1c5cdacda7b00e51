//! Bucket policies: PutBucketPolicy (validated before it is stored),
//! GetBucketPolicy, DeleteBucketPolicy.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Coffer, meta_error};
use crate::iam::PolicyDocument;

/// S3 limits a bucket policy to 20 KB.
const MAX_POLICY_SIZE: usize = 20 * 1024;

pub async fn get_bucket_policy(
    s3: &Coffer,
    req: S3Request<GetBucketPolicyInput>,
) -> S3Result<S3Response<GetBucketPolicyOutput>> {
    s3.meta
        .require_bucket(&req.input.bucket)
        .await
        .map_err(meta_error)?;
    match s3
        .meta
        .get_bucket_policy(&req.input.bucket)
        .await
        .map_err(meta_error)?
    {
        Some(policy) => Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy),
        })),
        None => Err(s3_error!(
            NoSuchBucketPolicy,
            "The bucket policy does not exist"
        )),
    }
}

pub async fn put_bucket_policy(
    s3: &Coffer,
    req: S3Request<PutBucketPolicyInput>,
) -> S3Result<S3Response<PutBucketPolicyOutput>> {
    let input = req.input;
    if input.policy.len() > MAX_POLICY_SIZE {
        return Err(s3_error!(
            InvalidPolicyDocument,
            "Policies must be at most {MAX_POLICY_SIZE} bytes"
        ));
    }
    let policy = PolicyDocument::parse_bucket_policy(&input.policy)
        .map_err(|e| s3_error!(MalformedPolicy, "{e}"))?;
    super::public_access::check_policy_allowed(s3, &input.bucket, &policy).await?;
    s3.meta
        .set_bucket_policy(&input.bucket, Some(&input.policy))
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_policy(&input.bucket);
    let mut response = S3Response::new(PutBucketPolicyOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}

pub async fn delete_bucket_policy(
    s3: &Coffer,
    req: S3Request<DeleteBucketPolicyInput>,
) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
    s3.meta
        .set_bucket_policy(&req.input.bucket, None)
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_policy(&req.input.bucket);
    let mut response = S3Response::new(DeleteBucketPolicyOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}
