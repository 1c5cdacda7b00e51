//! Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
//! GetBucketLocation, Get/PutBucketVersioning.

use base64::Engine as _;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Coffer, meta_error, timestamp};
use crate::auth::Authorizer;
use crate::iam::Decision;
use crate::meta::{MetaError, NewBucket, ObjectOwnership, Versioning};

/// Names Coffer serves its own endpoints under (`/health/...`, `/metrics`).
const RESERVED: &[&str] = &["health", "metrics"];

/// S3's bucket naming rules (general purpose buckets).
pub fn validate_bucket_name(name: &str) -> S3Result<()> {
    let invalid = |why: &str| {
        Err(s3_error!(
            InvalidBucketName,
            "The specified bucket is not valid: {why}"
        ))
    };
    if !(3..=63).contains(&name.len()) {
        return invalid("length must be between 3 and 63");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return invalid("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()) {
        return invalid("must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return invalid("adjacent periods or period-hyphen pairs are not allowed");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return invalid("must not be formatted as an IP address");
    }
    if name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
    {
        return invalid("reserved prefix or suffix");
    }
    if RESERVED.contains(&name) {
        return invalid("the name is reserved by Coffer");
    }
    Ok(())
}

pub async fn list_buckets(
    s3: &Coffer,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let caller = Authorizer::caller_of(&req.extensions);
    let all = s3.meta.list_buckets().await.map_err(meta_error)?;
    let sees_all = s3
        .authorizer
        .decide(&caller, "s3:ListAllMyBuckets", None, None)
        .await?
        == Decision::Allow;
    let prefix = req.input.prefix.as_deref().unwrap_or("");
    let page = ListBucketsPage::of(&req.input)?;
    let mut all = all;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let mut buckets = Vec::new();
    let mut more = false;
    for bucket in all {
        if !bucket.name.starts_with(prefix)
            || page
                .after
                .as_deref()
                .is_some_and(|after| bucket.name.as_str() <= after)
        {
            continue;
        }
        // Without ListAllMyBuckets a key still sees the buckets it can list,
        // so `aws s3 ls` is useful for scoped keys.
        let visible = sees_all
            || s3
                .authorizer
                .decide(&caller, "s3:ListBucket", Some(&bucket.name), None)
                .await?
                == Decision::Allow;
        if visible && page.max.is_some_and(|max| buckets.len() >= max) {
            more = true;
            break;
        }
        if visible {
            buckets.push(Bucket {
                name: Some(bucket.name),
                creation_date: Some(timestamp(bucket.created_at)),
                bucket_region: Some(bucket.region),
            });
        }
    }
    let owner_id = caller.owner_id();
    let next_token = more
        .then(|| {
            buckets
                .last()
                .and_then(|b| b.name.as_deref())
                .map(continuation_token)
        })
        .flatten();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(Owner {
            display_name: Some(owner_id.clone()),
            id: Some(owner_id),
        }),
        prefix: req.input.prefix,
        continuation_token: next_token,
    }))
}

/// `max-buckets` and `continuation-token` of a ListBuckets request.
struct ListBucketsPage {
    /// At most this many buckets (1..=10000); all of them when absent.
    max: Option<usize>,
    /// Only buckets named after this one (decoded from the token).
    after: Option<String>,
}

impl ListBucketsPage {
    fn of(input: &ListBucketsInput) -> S3Result<Self> {
        let max = match input.max_buckets {
            None => None,
            Some(n) if (1..=10_000).contains(&n) => Some(n as usize),
            Some(_) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-buckets must be an integer between 1 and 10000"
                ));
            }
        };
        let after = match input.continuation_token.as_deref() {
            None | Some("") => None,
            Some(token) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidArgument,
                            "The continuation token provided is incorrect"
                        )
                    })?,
            ),
        };
        Ok(Self { max, after })
    }
}

/// The opaque token of the page after the bucket named `last`.
fn continuation_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

pub async fn create_bucket(
    s3: &Coffer,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    super::put::refuse_unsupported(&req.headers)?;
    let input = req.input;
    validate_bucket_name(&input.bucket)?;
    if let Some(constraint) = input
        .create_bucket_configuration
        .as_ref()
        .and_then(|c| c.location_constraint.as_ref())
        && constraint.as_str() != s3.region
        && !(constraint.as_str().is_empty() && s3.region == "us-east-1")
    {
        return Err(s3_error!(
            IllegalLocationConstraintException,
            "The {} location constraint is incompatible for the region specific endpoint this request was sent to.",
            constraint.as_str()
        ));
    }
    let settings = super::acl::bucket_settings_for_create(
        input.acl.as_ref(),
        input.object_ownership.as_ref(),
        input.grant_full_control.is_some()
            || input.grant_read.is_some()
            || input.grant_read_acp.is_some()
            || input.grant_write.is_some()
            || input.grant_write_acp.is_some(),
    )?;
    let caller = Authorizer::caller_of(&req.extensions);
    let owner = caller.owner_id();
    let new = NewBucket {
        name: input.bucket.clone(),
        owner: owner.clone(),
        region: s3.region.clone(),
    };
    // Object Lock turns versioning on for good, in the same transaction.
    let created = if input.object_lock_enabled_for_bucket == Some(true) {
        s3.meta.create_bucket_with_object_lock(&new).await
    } else {
        s3.meta.create_bucket(&new).await
    };
    match created {
        Ok(_) => {}
        Err(MetaError::BucketAlreadyExists(_)) => {
            let existing = s3
                .meta
                .get_bucket(&input.bucket)
                .await
                .map_err(meta_error)?;
            if existing.is_some_and(|b| b.owner == owner) {
                // AWS keeps its legacy answer in us-east-1: the bucket is there
                // and yours, so the create "succeeds" (and changes nothing).
                if s3.region == "us-east-1" {
                    return Ok(S3Response::new(CreateBucketOutput {
                        location: Some(format!("/{}", input.bucket)),
                    }));
                }
                return Err(s3_error!(
                    BucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it."
                ));
            }
            return Err(meta_error(MetaError::BucketAlreadyExists(input.bucket)));
        }
        Err(e) => return Err(meta_error(e)),
    }
    // Written after the bucket exists: a crash in between leaves it private
    // with ACLs disabled, the safe default.
    if settings.ownership != ObjectOwnership::BucketOwnerEnforced {
        s3.meta
            .set_object_ownership(&input.bucket, settings.ownership)
            .await
            .map_err(meta_error)?;
    }
    if settings.acl.shares() {
        s3.meta
            .set_bucket_canned_acl(&input.bucket, settings.acl)
            .await
            .map_err(meta_error)?;
    }
    s3.keyring.forget_bucket_acl(&input.bucket);
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{}", input.bucket)),
    }))
}

pub async fn head_bucket(
    s3: &Coffer,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    let bucket = s3
        .meta
        .require_bucket(&req.input.bucket)
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(bucket.region),
        ..Default::default()
    }))
}

/// A bucket that never had versioning answers an empty configuration, as on S3.
pub async fn get_bucket_versioning(
    s3: &Coffer,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    s3.meta
        .require_bucket(&req.input.bucket)
        .await
        .map_err(meta_error)?;
    let state = s3
        .meta
        .bucket_versioning(&req.input.bucket)
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(GetBucketVersioningOutput {
        status: state.status().map(BucketVersioningStatus::from_static),
        mfa_delete: None,
    }))
}

/// Enables or suspends versioning. There is no way back to "never enabled";
/// a bucket with Object Lock cannot be suspended (`InvalidBucketState`, checked
/// by the store); MFA delete is not supported.
pub async fn put_bucket_versioning(
    s3: &Coffer,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    let config = input.versioning_configuration;
    if config
        .mfa_delete
        .as_ref()
        .is_some_and(|m| m.as_str() == "Enabled")
        || input.mfa.is_some()
    {
        return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
    }
    let state = match config.status.as_ref().map(BucketVersioningStatus::as_str) {
        Some("Enabled") => Versioning::Enabled,
        Some("Suspended") => Versioning::Suspended,
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "The versioning Status must be Enabled or Suspended"
            ));
        }
    };
    s3.meta
        .set_bucket_versioning(&input.bucket, state)
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(PutBucketVersioningOutput::default()))
}

pub async fn delete_bucket(
    s3: &Coffer,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    s3.meta
        .delete_bucket(&req.input.bucket)
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket(&req.input.bucket);
    let mut response = S3Response::new(DeleteBucketOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}

pub async fn get_bucket_location(
    s3: &Coffer,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    let bucket = s3
        .meta
        .require_bucket(&req.input.bucket)
        .await
        .map_err(meta_error)?;
    // us-east-1 is reported as an empty constraint, as AWS does.
    let constraint =
        (bucket.region != "us-east-1").then(|| BucketLocationConstraint::from(bucket.region));
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint: constraint,
    }))
}

#[cfg(test)]
mod tests {
    use super::validate_bucket_name;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.logs", "a1b2c3", "123"] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "My-Bucket",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "a_b",
            "health",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
