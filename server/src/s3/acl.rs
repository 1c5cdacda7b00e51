//! ACLs and Object Ownership: canned ACLs (`x-amz-acl`), grant headers
//! (`x-amz-grant-*` with `id=`, `uri=`, `emailAddress=`) and
//! `AccessControlPolicy` bodies on buckets and object versions. New buckets get
//! the server's default ownership (`--default-object-ownership`, AWS's
//! `BucketOwnerEnforced` unless set): then only ACLs that give the bucket owner
//! full control are accepted (`AccessControlListNotSupported` otherwise) and
//! stored ACLs grant nothing. `ObjectWriter`/`BucketOwnerPreferred` enable them,
//! and objects belong to their writer. `auth/grants.rs` says what grants allow;
//! Block Public Access (`public_access.rs`) refuses public ACLs where set.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::get::find_object;
use super::{Coffer, meta_error};
use crate::auth::Caller;
use crate::meta::{
    Acl, AclGrant, AclPermission, BucketAcl, CannedAcl, Grantee as AclGrantee, Group,
    ObjectOwnership as Ownership,
};

/// What a request asks an ACL to be: `x-amz-acl` and the `x-amz-grant-*`
/// headers (or form fields).
#[derive(Debug, Default)]
pub(super) struct AclHeaders<'a> {
    pub canned: Option<&'a str>,
    pub full_control: Option<&'a str>,
    pub read: Option<&'a str>,
    pub read_acp: Option<&'a str>,
    pub write: Option<&'a str>,
    pub write_acp: Option<&'a str>,
}

/// The [`AclHeaders`] of an object write's input (PutObject, CopyObject,
/// CreateMultipartUpload): objects have no `x-amz-grant-write`.
macro_rules! object_acl_headers {
    ($input:expr) => {
        $crate::s3::acl::AclHeaders {
            canned: $input.acl.as_ref().map(|a| a.as_str()),
            full_control: $input.grant_full_control.as_deref(),
            read: $input.grant_read.as_deref(),
            read_acp: $input.grant_read_acp.as_deref(),
            write: None,
            write_acp: $input.grant_write_acp.as_deref(),
        }
    };
}
pub(super) use object_acl_headers;

impl AclHeaders<'_> {
    fn grant_headers(&self) -> [(AclPermission, Option<&str>); 5] {
        [
            (AclPermission::FullControl, self.full_control),
            (AclPermission::Read, self.read),
            (AclPermission::ReadAcp, self.read_acp),
            (AclPermission::Write, self.write),
            (AclPermission::WriteAcp, self.write_acp),
        ]
    }

    fn has_grants(&self) -> bool {
        self.grant_headers().iter().any(|(_, v)| v.is_some())
    }
}

/// The most grants one ACL holds, as on AWS: an ACL travels with every
/// version's metadata row, so its size stays bounded.
const MAX_GRANTS: usize = 100;

/// An ACL as asked for, before it is resolved against its owners.
#[derive(Debug)]
enum Requested {
    Canned(CannedAcl),
    Grants(Vec<AclGrant>),
}

fn acl_not_supported() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessControlListNotSupported,
        "The bucket does not allow ACLs",
    )
}

fn acl_with_enforced_ownership() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidBucketAclWithObjectOwnership,
        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
    )
}

fn public_acl_blocked() -> S3Error {
    s3_error!(
        AccessDenied,
        "Access Denied: Block Public Access (BlockPublicAcls) refuses public ACLs on this bucket"
    )
}

fn unresolvable_email() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::UnresolvableGrantByEmailAddress,
        "The e-mail address you provided does not match any account on record.",
    )
}

/// Parses an `x-amz-acl` value.
fn parse_canned(name: &str) -> S3Result<CannedAcl> {
    match name {
        "aws-exec-read" => Err(s3_error!(
            NotImplemented,
            "The canned ACL {name} is not supported"
        )),
        _ => CannedAcl::parse(name)
            .ok_or_else(|| s3_error!(InvalidArgument, "Unknown canned ACL {name}")),
    }
}

/// One grantee of an `x-amz-grant-*` value: `id="..."`, `uri="..."` or
/// `emailAddress="..."` (quotes optional).
fn parse_grantee(item: &str) -> S3Result<AclGrantee> {
    let (kind, value) = item.split_once('=').ok_or_else(|| {
        s3_error!(
            InvalidArgument,
            "Invalid grant {item:?}: expected type=value"
        )
    })?;
    let value = value.trim().trim_matches('"');
    match kind.trim().to_ascii_lowercase().as_str() {
        "id" if !value.is_empty() => Ok(AclGrantee::User(value.to_owned())),
        "uri" => Group::from_uri(value)
            .map(AclGrantee::Group)
            .ok_or_else(|| s3_error!(InvalidArgument, "Invalid group uri {value}")),
        "emailaddress" => Err(unresolvable_email()),
        _ => Err(s3_error!(InvalidArgument, "Invalid grant {item:?}")),
    }
}

fn grants_from_headers(headers: &AclHeaders<'_>) -> S3Result<Vec<AclGrant>> {
    let mut grants = Vec::new();
    for (permission, value) in headers.grant_headers() {
        let Some(value) = value else { continue };
        for item in value.split(',').filter(|i| !i.trim().is_empty()) {
            grants.push(AclGrant {
                grantee: parse_grantee(item)?,
                permission,
            });
        }
    }
    Ok(grants)
}

fn grants_from_policy(policy: &AccessControlPolicy) -> S3Result<Vec<AclGrant>> {
    let malformed = || {
        s3_error!(
            MalformedACLError,
            "The XML you provided was not well-formed or did not validate against our published schema"
        )
    };
    let mut grants = Vec::new();
    for grant in policy.grants.as_deref().unwrap_or_default() {
        let grantee = grant.grantee.as_ref().ok_or_else(malformed)?;
        let permission = grant
            .permission
            .as_ref()
            .and_then(|p| AclPermission::parse(p.as_str()))
            .ok_or_else(malformed)?;
        let grantee = match grantee.type_.as_str() {
            Type::CANONICAL_USER => match grantee.id.as_deref() {
                Some(id) if !id.is_empty() => AclGrantee::User(id.to_owned()),
                _ => return Err(malformed()),
            },
            Type::GROUP => {
                let uri = grantee.uri.as_deref().ok_or_else(malformed)?;
                AclGrantee::Group(
                    Group::from_uri(uri)
                        .ok_or_else(|| s3_error!(InvalidArgument, "Invalid group uri {uri}"))?,
                )
            }
            Type::AMAZON_CUSTOMER_BY_EMAIL => return Err(unresolvable_email()),
            _ => return Err(malformed()),
        };
        grants.push(AclGrant {
            grantee,
            permission,
        });
    }
    Ok(grants)
}

/// The ACL a write asks for with headers, if any: a canned ACL or grants, not both.
fn requested_by_headers(headers: &AclHeaders<'_>) -> S3Result<Option<Requested>> {
    match (headers.canned, headers.has_grants()) {
        (Some(_), true) => Err(s3_error!(
            InvalidRequest,
            "Specifying both Canned ACLs and Header Grants is not allowed"
        )),
        (Some(name), false) => Ok(Some(Requested::Canned(parse_canned(name)?))),
        (None, true) => Ok(Some(Requested::Grants(grants_from_headers(headers)?))),
        (None, false) => Ok(None),
    }
}

/// The ACL a Put*Acl request asks for: headers or the body, exactly one.
fn requested_for_put(
    headers: &AclHeaders<'_>,
    policy: Option<&AccessControlPolicy>,
) -> S3Result<Requested> {
    match (requested_by_headers(headers)?, policy) {
        (Some(_), Some(_)) => Err(s3_error!(
            UnexpectedContent,
            "This request does not support content when x-amz-acl or x-amz-grant-* is given"
        )),
        (Some(requested), None) => Ok(requested),
        (None, Some(policy)) => Ok(Requested::Grants(grants_from_policy(policy)?)),
        (None, None) => Err(s3_error!(
            MissingSecurityHeader,
            "Your request was missing a required header: x-amz-acl, x-amz-grant-* or an AccessControlPolicy body"
        )),
    }
}

/// The grants of a requested ACL on a resource owned by `owner` in a bucket
/// owned by `bucket_owner`. Users named must be keys this server knows (or
/// the bucket's owner), as AWS requires of canonical ids.
async fn resolve(
    s3: &Coffer,
    requested: Requested,
    owner: &str,
    bucket_owner: &str,
) -> S3Result<Vec<AclGrant>> {
    let grants = match requested {
        Requested::Canned(canned) => {
            return Ok(canned.grants(
                &AclGrantee::User(owner.to_owned()),
                &AclGrantee::User(bucket_owner.to_owned()),
            ));
        }
        Requested::Grants(grants) => grants,
    };
    if grants.len() > MAX_GRANTS {
        return Err(s3_error!(
            MalformedACLError,
            "An ACL can have up to {MAX_GRANTS} grants; this one has {}",
            grants.len()
        ));
    }
    for grant in &grants {
        if let AclGrantee::User(id) = &grant.grantee
            && id != owner
            && id != bucket_owner
            && s3.keyring.access_key(id).await?.is_none()
        {
            return Err(s3_error!(InvalidArgument, "Invalid id {id}"));
        }
    }
    Ok(grants)
}

/// Whether the bucket's settings let it hold `acl`: only owner-full-control
/// ACLs without ACLs enabled, no public ACL under BlockPublicAcls.
fn check_allowed(s3: &Coffer, settings: &BucketAcl, acl: &Acl) -> S3Result<()> {
    if !settings.ownership.acls_enabled() && acl.shares(&settings.owner) {
        return Err(acl_not_supported());
    }
    if acl.is_public() && s3.keyring.public_access_block(settings).block_public_acls {
        return Err(public_acl_blocked());
    }
    Ok(())
}

/// The ACL a resource of the bucket owner has when nothing shares it.
fn is_plain_private(acl: &Acl, bucket_owner: &str) -> bool {
    acl.owner.is_none() && !acl.shares(bucket_owner)
}

/// The ACL (and owner) a new object version gets from its request (PutObject,
/// PostObject, CopyObject, CreateMultipartUpload), checked against the bucket's
/// Object Ownership and Block Public Access. `None`: private, owned by the
/// bucket owner.
pub(super) async fn acl_for_new_object(
    s3: &Coffer,
    caller: &Caller,
    bucket: &str,
    headers: AclHeaders<'_>,
) -> S3Result<Option<Acl>> {
    let requested = requested_by_headers(&headers)?;
    let settings = s3.keyring.bucket_acl(bucket).await?;
    let writer = caller.owner_id();
    let owner = match settings.ownership {
        Ownership::BucketOwnerEnforced => settings.owner.clone(),
        Ownership::BucketOwnerPreferred
            if matches!(
                requested,
                Some(Requested::Canned(CannedAcl::BucketOwnerFullControl))
            ) =>
        {
            settings.owner.clone()
        }
        _ => writer,
    };
    let grants = match requested {
        Some(requested) => resolve(s3, requested, &owner, &settings.owner).await?,
        None => CannedAcl::Private.grants(&AclGrantee::User(owner.clone()), &AclGrantee::Owner),
    };
    let acl = Acl {
        owner: (owner != settings.owner).then_some(owner),
        grants,
    };
    check_allowed(s3, &settings, &acl)?;
    Ok((!is_plain_private(&acl, &settings.owner)).then_some(acl))
}

/// CreateBucket's ACL and ownership: the request's `x-amz-object-ownership`
/// or the server's default; an ACL that shares needs ACLs enabled.
pub(super) async fn bucket_settings_for_create(
    s3: &Coffer,
    caller: &Caller,
    input: &CreateBucketInput,
) -> S3Result<(Ownership, Option<Acl>)> {
    let ownership = match &input.object_ownership {
        None => s3.keyring.default_object_ownership(),
        Some(o) => Ownership::parse(o.as_str()).ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "x-amz-object-ownership must be BucketOwnerEnforced, BucketOwnerPreferred or ObjectWriter"
            )
        })?,
    };
    let headers = AclHeaders {
        canned: input.acl.as_ref().map(BucketCannedACL::as_str),
        full_control: input.grant_full_control.as_deref(),
        read: input.grant_read.as_deref(),
        read_acp: input.grant_read_acp.as_deref(),
        write: input.grant_write.as_deref(),
        write_acp: input.grant_write_acp.as_deref(),
    };
    let Some(requested) = requested_by_headers(&headers)? else {
        return Ok((ownership, None));
    };
    let owner = caller.owner_id();
    let acl = Acl {
        owner: None,
        grants: resolve(s3, requested, &owner, &owner).await?,
    };
    if acl.shares(&owner) && !ownership.acls_enabled() {
        return Err(acl_with_enforced_ownership());
    }
    // A new bucket has no settings of its own yet: only the server's apply.
    let settings = BucketAcl {
        owner,
        ownership,
        ..BucketAcl::default()
    };
    if acl.is_public() && s3.keyring.public_access_block(&settings).block_public_acls {
        return Err(public_acl_blocked());
    }
    Ok((
        ownership,
        (!is_plain_private(&acl, &settings.owner)).then_some(acl),
    ))
}

/// Stores what [`bucket_settings_for_create`] decided, once the bucket exists.
/// A crash in between leaves it private with ACLs disabled, the safe default.
pub(super) async fn apply_bucket_settings(
    s3: &Coffer,
    bucket: &str,
    (ownership, acl): (Ownership, Option<Acl>),
) -> S3Result<()> {
    if ownership != Ownership::BucketOwnerEnforced {
        s3.meta
            .set_object_ownership(bucket, ownership)
            .await
            .map_err(meta_error)?;
    }
    if let Some(acl) = acl {
        s3.meta
            .set_bucket_acl(bucket, &acl)
            .await
            .map_err(meta_error)?;
    }
    s3.keyring.forget_bucket_acl(bucket);
    Ok(())
}

/// An `Owner` as S3 shows it: the id, and the key's name as display name.
pub(super) async fn owner_of(s3: &Coffer, id: &str) -> Owner {
    let name = match s3.keyring.access_key(id).await {
        Ok(Some(key)) => key.name.clone(),
        _ => id.to_owned(),
    };
    Owner {
        display_name: Some(name),
        id: Some(id.to_owned()),
    }
}

/// The grants as S3 shows them, `Owner` resolved to `owner`.
async fn show_grants(s3: &Coffer, grants: &[AclGrant], owner: &str) -> Vec<Grant> {
    let mut shown = Vec::with_capacity(grants.len());
    for grant in grants {
        let grantee = match &grant.grantee {
            AclGrantee::Owner | AclGrantee::User(_) => {
                let id = match &grant.grantee {
                    AclGrantee::User(id) => id.as_str(),
                    _ => owner,
                };
                let user = owner_of(s3, id).await;
                Grantee {
                    display_name: user.display_name,
                    email_address: None,
                    id: user.id,
                    type_: Type::from_static(Type::CANONICAL_USER),
                    uri: None,
                }
            }
            AclGrantee::Group(group) => Grantee {
                display_name: None,
                email_address: None,
                id: None,
                type_: Type::from_static(Type::GROUP),
                uri: Some(group.uri().to_owned()),
            },
        };
        shown.push(Grant {
            grantee: Some(grantee),
            permission: Some(Permission::from_static(grant.permission.as_str())),
        });
    }
    shown
}

/// The bucket's ACL settings, or `NoSuchBucket`.
async fn require_settings(s3: &Coffer, bucket: &str) -> S3Result<BucketAcl> {
    let settings = s3.meta.bucket_acl(bucket).await.map_err(meta_error)?;
    if settings.owner.is_empty() {
        s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    }
    Ok(settings)
}

pub async fn get_bucket_acl(
    s3: &Coffer,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    let settings = require_settings(s3, &req.input.bucket).await?;
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(show_grants(s3, &settings.acl.grants, &settings.owner).await),
        owner: Some(owner_of(s3, &settings.owner).await),
    }))
}

pub async fn put_bucket_acl(
    s3: &Coffer,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let input = req.input;
    let settings = require_settings(s3, &input.bucket).await?;
    let headers = AclHeaders {
        canned: input.acl.as_ref().map(BucketCannedACL::as_str),
        full_control: input.grant_full_control.as_deref(),
        read: input.grant_read.as_deref(),
        read_acp: input.grant_read_acp.as_deref(),
        write: input.grant_write.as_deref(),
        write_acp: input.grant_write_acp.as_deref(),
    };
    let requested = requested_for_put(&headers, input.access_control_policy.as_ref())?;
    let acl = Acl {
        owner: None,
        grants: resolve(s3, requested, &settings.owner, &settings.owner).await?,
    };
    check_allowed(s3, &settings, &acl)?;
    s3.meta
        .set_bucket_acl(&input.bucket, &acl)
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_acl(&input.bucket);
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

/// Who owns an object version: its writer where ownership lets writers own,
/// else the bucket owner.
fn object_owner(stored: Option<&Acl>, settings: &BucketAcl) -> String {
    match (settings.ownership, stored.and_then(|a| a.owner.as_deref())) {
        (Ownership::BucketOwnerEnforced, _) | (_, None) => settings.owner.clone(),
        (_, Some(owner)) => owner.to_owned(),
    }
}

pub async fn get_object_acl(
    s3: &Coffer,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let input = req.input;
    let object = find_object(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let settings = s3.keyring.bucket_acl(&input.bucket).await?;
    let owner = object_owner(object.headers.acl.as_ref(), &settings);
    // With ACLs disabled the bucket owner has full control and no one else counts.
    let grants = match object.headers.acl {
        Some(acl) if settings.ownership.acls_enabled() => acl.grants,
        _ => Acl::default().grants,
    };
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(show_grants(s3, &grants, &owner).await),
        owner: Some(owner_of(s3, &owner).await),
        request_charged: None,
    }))
}

pub async fn put_object_acl(
    s3: &Coffer,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let input = req.input;
    let settings = require_settings(s3, &input.bucket).await?;
    let headers = AclHeaders {
        canned: input.acl.as_ref().map(ObjectCannedACL::as_str),
        full_control: input.grant_full_control.as_deref(),
        read: input.grant_read.as_deref(),
        read_acp: input.grant_read_acp.as_deref(),
        write: input.grant_write.as_deref(),
        write_acp: input.grant_write_acp.as_deref(),
    };
    let requested = requested_for_put(&headers, input.access_control_policy.as_ref())?;
    let object = find_object(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let owner = object_owner(object.headers.acl.as_ref(), &settings);
    let acl = Acl {
        owner: (owner != settings.owner).then(|| owner.clone()),
        grants: resolve(s3, requested, &owner, &settings.owner).await?,
    };
    check_allowed(s3, &settings, &acl)?;
    // The grants replace the version's in the transaction that locks its row:
    // concurrent updates of the version (ACL, tags) each apply whole.
    s3.meta
        .set_object_acl(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            acl.grants,
        )
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

pub async fn get_bucket_ownership_controls(
    s3: &Coffer,
    req: S3Request<GetBucketOwnershipControlsInput>,
) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
    let settings = require_settings(s3, &req.input.bucket).await?;
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
    let settings = require_settings(s3, &input.bucket).await?;
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
    // As on AWS: disabling ACLs while the bucket's own ACL shares would silently
    // revoke that access, so it must be made private first. Object ACLs simply
    // stop counting.
    if !ownership.acls_enabled() && settings.acl.shares(&settings.owner) {
        return Err(acl_with_enforced_ownership());
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
