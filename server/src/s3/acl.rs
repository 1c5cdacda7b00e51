//! ACLs, the compatible minimum: canned ACLs (`private`, `public-read`,
//! `public-read-write`, `authenticated-read`, `bucket-owner-read`,
//! `bucket-owner-full-control`) on buckets and object versions, and Object
//! Ownership. New buckets are `BucketOwnerEnforced` (ACLs disabled, AWS's default
//! since 2023): then only private ACLs are accepted (`AccessControlListNotSupported`
//! otherwise) and stored ACLs grant nothing. `ObjectWriter`/`BucketOwnerPreferred`
//! enable them; `auth.rs` consults them when no policy allows a request.
//! Per-grantee ACLs (`x-amz-grant-*`, grants to users) are refused with
//! `NotImplemented` rather than half-honoured.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::get::find_object;
use super::{Coffer, meta_error};
use crate::meta::{BucketAcl, CannedAcl, ObjectOwnership as Ownership};

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

fn owner(id: &str) -> Owner {
    Owner {
        display_name: Some(id.to_owned()),
        id: Some(id.to_owned()),
    }
}

fn user_grant(id: &str, permission: &'static str) -> Grant {
    Grant {
        grantee: Some(Grantee {
            display_name: Some(id.to_owned()),
            email_address: None,
            id: Some(id.to_owned()),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(permission)),
    }
}

fn group_grant(uri: &str, permission: &'static str) -> Grant {
    Grant {
        grantee: Some(Grantee {
            display_name: None,
            email_address: None,
            id: None,
            type_: Type::from_static(Type::GROUP),
            uri: Some(uri.to_owned()),
        }),
        permission: Some(Permission::from_static(permission)),
    }
}

/// The grants a canned ACL stands for. Coffer's objects are owned by the bucket
/// owner, so the `bucket-owner-*` ACLs add nothing to the owner's FULL_CONTROL.
fn grants(acl: CannedAcl, owner_id: &str) -> Vec<Grant> {
    let mut grants = vec![user_grant(owner_id, Permission::FULL_CONTROL)];
    match acl {
        CannedAcl::PublicRead => grants.push(group_grant(ALL_USERS, Permission::READ)),
        CannedAcl::PublicReadWrite => {
            grants.push(group_grant(ALL_USERS, Permission::READ));
            grants.push(group_grant(ALL_USERS, Permission::WRITE));
        }
        CannedAcl::AuthenticatedRead => {
            grants.push(group_grant(AUTHENTICATED_USERS, Permission::READ));
        }
        CannedAcl::Private | CannedAcl::BucketOwnerRead | CannedAcl::BucketOwnerFullControl => {}
    }
    grants
}

fn acl_not_supported() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessControlListNotSupported,
        "The bucket does not allow ACLs",
    )
}

fn grants_not_supported() -> S3Error {
    s3_error!(
        NotImplemented,
        "Only canned ACLs are supported: x-amz-grant-* headers and grants to individual users are not"
    )
}

/// Parses an `x-amz-acl` value.
pub(super) fn parse_canned(name: &str) -> S3Result<CannedAcl> {
    match name {
        "aws-exec-read" | "log-delivery-write" => Err(s3_error!(
            NotImplemented,
            "The canned ACL {name} is not supported"
        )),
        _ => CannedAcl::parse(name)
            .ok_or_else(|| s3_error!(InvalidArgument, "Unknown canned ACL {name}")),
    }
}

/// The ACL a new object version gets from `x-amz-acl` (PutObject, PostObject,
/// CopyObject, CreateMultipartUpload), checked against the bucket's Object
/// Ownership. The bucket's settings are read only when the ACL would share.
pub(super) async fn acl_for_new_object(
    s3: &Coffer,
    bucket: &str,
    requested: Option<&str>,
) -> S3Result<Option<CannedAcl>> {
    let Some(acl) = requested.map(parse_canned).transpose()? else {
        return Ok(None);
    };
    if !acl.shares() {
        return Ok(None);
    }
    let settings = s3.meta.bucket_acl(bucket).await.map_err(meta_error)?;
    if !settings.ownership.acls_enabled() {
        return Err(acl_not_supported());
    }
    Ok(Some(acl))
}

/// The canned ACL an `AccessControlPolicy` body expresses: the owner's grants
/// plus the group grants of one canned ACL. Anything else cannot be kept.
fn canned_from_policy(policy: &AccessControlPolicy, owner_id: &str) -> S3Result<CannedAcl> {
    let mut all_read = false;
    let mut all_write = false;
    let mut authenticated_read = false;
    for grant in policy.grants.as_deref().unwrap_or_default() {
        let grantee = grant.grantee.as_ref().ok_or_else(grants_not_supported)?;
        let permission = grant
            .permission
            .as_ref()
            .map(Permission::as_str)
            .unwrap_or_default();
        if grantee.id.as_deref() == Some(owner_id) {
            continue;
        }
        match (grantee.uri.as_deref(), permission) {
            (Some(ALL_USERS), Permission::READ) => all_read = true,
            (Some(ALL_USERS), Permission::WRITE) => all_write = true,
            (Some(AUTHENTICATED_USERS), Permission::READ) => authenticated_read = true,
            _ => return Err(grants_not_supported()),
        }
    }
    match (all_read, all_write, authenticated_read) {
        (false, false, false) => Ok(CannedAcl::Private),
        (true, false, false) => Ok(CannedAcl::PublicRead),
        (true, true, false) => Ok(CannedAcl::PublicReadWrite),
        (false, false, true) => Ok(CannedAcl::AuthenticatedRead),
        _ => Err(grants_not_supported()),
    }
}

/// The ACL a Put*Acl request asks for: the `x-amz-acl` header or the body.
fn requested_acl(
    canned: Option<&str>,
    policy: Option<&AccessControlPolicy>,
    grant_headers: bool,
    owner_id: &str,
) -> S3Result<CannedAcl> {
    if grant_headers {
        return Err(grants_not_supported());
    }
    match (canned, policy) {
        (Some(_), Some(_)) => Err(s3_error!(
            UnexpectedContent,
            "This request does not support content when x-amz-acl is given"
        )),
        (Some(name), None) => parse_canned(name),
        (None, Some(policy)) => canned_from_policy(policy, owner_id),
        (None, None) => Err(s3_error!(
            MissingSecurityHeader,
            "Your request was missing a required header: x-amz-acl or an AccessControlPolicy body"
        )),
    }
}

/// An ACL that shares needs ACLs enabled on the bucket.
fn check_allowed(acl: CannedAcl, settings: BucketAcl) -> S3Result<()> {
    if acl.shares() && !settings.ownership.acls_enabled() {
        return Err(acl_not_supported());
    }
    Ok(())
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
    let settings = s3.keyring.bucket_acl(&bucket.name).await?;
    let acl = if settings.ownership.acls_enabled() {
        settings.acl
    } else {
        CannedAcl::Private
    };
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(grants(acl, &bucket.owner)),
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
    let acl = requested_acl(
        input.acl.as_ref().map(BucketCannedACL::as_str),
        input.access_control_policy.as_ref(),
        grant_headers,
        &bucket.owner,
    )?;
    let settings = s3.meta.bucket_acl(&bucket.name).await.map_err(meta_error)?;
    check_allowed(acl, settings)?;
    s3.meta
        .set_bucket_canned_acl(&bucket.name, acl)
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_acl(&bucket.name);
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub async fn get_object_acl(
    s3: &Coffer,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let input = req.input;
    let object = find_object(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let bucket = s3
        .meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    let settings = s3.keyring.bucket_acl(&bucket.name).await?;
    let acl = match object.headers.acl {
        Some(acl) if settings.ownership.acls_enabled() => acl,
        _ => CannedAcl::Private,
    };
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(grants(acl, &bucket.owner)),
        owner: Some(owner(&bucket.owner)),
        request_charged: None,
    }))
}

pub async fn put_object_acl(
    s3: &Coffer,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
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
    let acl = requested_acl(
        input.acl.as_ref().map(ObjectCannedACL::as_str),
        input.access_control_policy.as_ref(),
        grant_headers,
        &bucket.owner,
    )?;
    let settings = s3.meta.bucket_acl(&bucket.name).await.map_err(meta_error)?;
    check_allowed(acl, settings)?;
    s3.meta
        .set_object_acl(&input.bucket, &input.key, input.version_id.as_deref(), acl)
        .await
        .map_err(meta_error)?;
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
    let settings = s3
        .meta
        .bucket_acl(&req.input.bucket)
        .await
        .map_err(meta_error)?;
    let Some(name) = settings.ownership.as_str() else {
        return Err(S3Error::with_message(
            S3ErrorCode::OwnershipControlsNotFoundError,
            "The bucket ownership controls were not found",
        ));
    };
    Ok(S3Response::new(GetBucketOwnershipControlsOutput {
        ownership_controls: Some(OwnershipControls {
            rules: vec![OwnershipControlsRule {
                object_ownership: ObjectOwnership::from_static(name),
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
    let [rule] = input.ownership_controls.rules.as_slice() else {
        return Err(s3_error!(
            MalformedXML,
            "OwnershipControls must hold exactly one rule"
        ));
    };
    let ownership = Ownership::parse(rule.object_ownership.as_str()).ok_or_else(|| {
        s3_error!(
            MalformedXML,
            "ObjectOwnership must be BucketOwnerEnforced, BucketOwnerPreferred or ObjectWriter"
        )
    })?;
    let settings = s3
        .meta
        .bucket_acl(&input.bucket)
        .await
        .map_err(meta_error)?;
    // As on AWS: disabling ACLs while the bucket's own ACL shares would silently
    // revoke that access, so it must be made private first. Object ACLs simply
    // stop counting.
    if !ownership.acls_enabled() && settings.acl.shares() {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidBucketAclWithObjectOwnership,
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
        ));
    }
    s3.meta
        .set_object_ownership(&input.bucket, ownership)
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_acl(&input.bucket);
    Ok(S3Response::new(PutBucketOwnershipControlsOutput::default()))
}

/// Removes the setting: ACLs count again, as on buckets from before Object
/// Ownership existed.
pub async fn delete_bucket_ownership_controls(
    s3: &Coffer,
    req: S3Request<DeleteBucketOwnershipControlsInput>,
) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
    let bucket = req.input.bucket;
    s3.meta
        .set_object_ownership(&bucket, Ownership::Unset)
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_acl(&bucket);
    let mut response = S3Response::new(DeleteBucketOwnershipControlsOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}

/// CreateBucket's `x-amz-acl` and `x-amz-object-ownership`: a sharing ACL needs
/// an ownership that enables ACLs, as on AWS since 2023.
pub(super) fn bucket_settings_for_create(
    acl: Option<&BucketCannedACL>,
    ownership: Option<&ObjectOwnership>,
    grant_headers: bool,
) -> S3Result<BucketAcl> {
    if grant_headers {
        return Err(grants_not_supported());
    }
    let ownership = match ownership {
        None => Ownership::BucketOwnerEnforced,
        Some(o) => Ownership::parse(o.as_str()).ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "x-amz-object-ownership must be BucketOwnerEnforced, BucketOwnerPreferred or ObjectWriter"
            )
        })?,
    };
    let acl = acl
        .map(|a| parse_canned(a.as_str()))
        .transpose()?
        .unwrap_or_default();
    if acl.shares() && !ownership.acls_enabled() {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidBucketAclWithObjectOwnership,
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
        ));
    }
    Ok(BucketAcl { ownership, acl })
}
