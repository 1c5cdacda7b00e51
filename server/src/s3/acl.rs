//! ACLs, the private minimum: every bucket has Object Ownership
//! `BucketOwnerEnforced` (ACLs disabled, AWS's default since 2023), so the ACL of
//! any bucket or object is "the bucket owner has FULL_CONTROL". Get*Acl report
//! that; Put*Acl accept only what leaves it unchanged (`private`,
//! `bucket-owner-full-control`, or that very grant) and refuse anything else with
//! `NotImplemented` instead of pretending to share.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::get::find_object;
use super::{Coffer, meta_error};

const ENFORCED: &str = "BucketOwnerEnforced";

fn owner(id: &str) -> Owner {
    Owner {
        display_name: Some(id.to_owned()),
        id: Some(id.to_owned()),
    }
}

/// The only ACL Coffer has: the owner with FULL_CONTROL.
fn owner_full_control(id: &str) -> Vec<Grant> {
    vec![Grant {
        grantee: Some(Grantee {
            display_name: Some(id.to_owned()),
            email_address: None,
            id: Some(id.to_owned()),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }]
}

fn not_supported() -> s3s::S3Error {
    s3_error!(
        NotImplemented,
        "Only private ACLs are supported: buckets use Object Ownership BucketOwnerEnforced"
    )
}

/// Whether a Put*Acl request leaves the ACL as it is (owner FULL_CONTROL only).
fn keeps_private(
    canned: Option<&str>,
    policy: Option<&AccessControlPolicy>,
    grant_headers: bool,
    owner_id: &str,
) -> bool {
    let canned_ok = canned.is_none_or(|c| matches!(c, "private" | "bucket-owner-full-control"));
    let policy_ok = policy.is_none_or(|p| {
        p.grants.as_deref().unwrap_or_default().iter().all(|g| {
            g.permission.as_ref().map(Permission::as_str) == Some(Permission::FULL_CONTROL)
                && g.grantee
                    .as_ref()
                    .and_then(|e| e.id.as_deref())
                    .is_some_and(|id| id == owner_id)
        })
    });
    canned_ok && policy_ok && !grant_headers
}

pub async fn get_bucket_acl(
    s3: &Coffer,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    let bucket = s3
        .meta
        .require_bucket(&req.input.bucket)
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(owner_full_control(&bucket.owner)),
        owner: Some(owner(&bucket.owner)),
    }))
}

pub async fn put_bucket_acl(
    s3: &Coffer,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let input = req.input;
    let bucket = s3
        .meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    let grant_headers = input.grant_full_control.is_some()
        || input.grant_read.is_some()
        || input.grant_read_acp.is_some()
        || input.grant_write.is_some()
        || input.grant_write_acp.is_some();
    if !keeps_private(
        input.acl.as_ref().map(BucketCannedACL::as_str),
        input.access_control_policy.as_ref(),
        grant_headers,
        &bucket.owner,
    ) {
        return Err(not_supported());
    }
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub async fn get_object_acl(
    s3: &Coffer,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let input = req.input;
    find_object(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let bucket = s3
        .meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(owner_full_control(&bucket.owner)),
        owner: Some(owner(&bucket.owner)),
        request_charged: None,
    }))
}

pub async fn put_object_acl(
    s3: &Coffer,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let input = req.input;
    find_object(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let bucket = s3
        .meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    let grant_headers = input.grant_full_control.is_some()
        || input.grant_read.is_some()
        || input.grant_read_acp.is_some()
        || input.grant_write.is_some()
        || input.grant_write_acp.is_some();
    if !keeps_private(
        input.acl.as_ref().map(ObjectCannedACL::as_str),
        input.access_control_policy.as_ref(),
        grant_headers,
        &bucket.owner,
    ) {
        return Err(not_supported());
    }
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

pub async fn get_bucket_ownership_controls(
    s3: &Coffer,
    req: S3Request<GetBucketOwnershipControlsInput>,
) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
    s3.meta
        .require_bucket(&req.input.bucket)
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(GetBucketOwnershipControlsOutput {
        ownership_controls: Some(OwnershipControls {
            rules: vec![OwnershipControlsRule {
                object_ownership: ObjectOwnership::from_static(ENFORCED),
            }],
        }),
    }))
}

pub async fn put_bucket_ownership_controls(
    s3: &Coffer,
    req: S3Request<PutBucketOwnershipControlsInput>,
) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
    let input = req.input;
    s3.meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    let rules = &input.ownership_controls.rules;
    if rules.is_empty()
        || rules
            .iter()
            .any(|r| r.object_ownership.as_str() != ENFORCED)
    {
        return Err(s3_error!(
            NotImplemented,
            "Only Object Ownership BucketOwnerEnforced (ACLs disabled) is supported"
        ));
    }
    Ok(S3Response::new(PutBucketOwnershipControlsOutput::default()))
}
