//! Object Lock (WORM): Get/PutObjectLockConfiguration, Get/PutObjectRetention,
//! Get/PutObjectLegalHold, and the `x-amz-object-lock-*` headers that writes
//! (PutObject, CopyObject, CreateMultipartUpload) carry. The store enforces the
//! lock atomically with every delete; this file parses, checks permissions
//! (`s3:BypassGovernanceRetention`) and shapes the S3 answers.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{Coffer, meta_error, timestamp};
use crate::auth::{Authorizer, Caller};
use crate::iam::Decision;
use crate::meta::{
    BucketObjectLock, DefaultRetention, ObjectLock, ObjectMeta, Retention, RetentionMode,
    now_millis,
};

fn millis(ts: &Timestamp) -> i64 {
    let t = time::OffsetDateTime::from(ts.clone());
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn parse_mode(text: &str) -> S3Result<RetentionMode> {
    RetentionMode::parse(text).ok_or_else(|| {
        s3_error!(
            InvalidArgument,
            "Unknown Object Lock retention mode {text:?} (GOVERNANCE or COMPLIANCE)"
        )
    })
}

/// A mode or status in an XML body that is not one of the names S3 defines:
/// the document itself is wrong (`MalformedXML`, as AWS answers), unlike a bad
/// `x-amz-object-lock-*` header (`InvalidArgument`).
fn malformed(what: &str, text: &str) -> s3s::S3Error {
    s3_error!(MalformedXML, "{what} {text:?} is not valid")
}

/// A retention a request asks for: both a mode and a date in the future, or
/// neither.
fn parse_retention(mode: Option<&str>, until: Option<&Timestamp>) -> S3Result<Option<Retention>> {
    match (mode, until) {
        (None, None) => Ok(None),
        (Some(mode), Some(until)) => {
            let mode = parse_mode(mode)?;
            let until = millis(until);
            if until <= now_millis() {
                return Err(s3_error!(
                    InvalidArgument,
                    "The retain until date must be in the future!"
                ));
            }
            Ok(Some(Retention { mode, until }))
        }
        _ => Err(s3_error!(
            InvalidArgument,
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
        )),
    }
}

fn parse_legal_hold(status: Option<&str>) -> S3Result<bool> {
    match status {
        None | Some("OFF") => Ok(false),
        Some("ON") => Ok(true),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "Unknown legal hold status {other:?} (ON or OFF)"
        )),
    }
}

/// The lock a write asks for with `x-amz-object-lock-mode`,
/// `-retain-until-date` and `-legal-hold`.
pub(super) fn requested_lock(
    mode: Option<&ObjectLockMode>,
    until: Option<&Timestamp>,
    legal_hold: Option<&ObjectLockLegalHoldStatus>,
) -> S3Result<ObjectLock> {
    Ok(ObjectLock {
        retention: parse_retention(mode.map(ObjectLockMode::as_str), until)?,
        legal_hold: parse_legal_hold(legal_hold.map(ObjectLockLegalHoldStatus::as_str))?,
    })
}

fn missing_lock_configuration() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "Bucket is missing Object Lock Configuration"
    )
}

/// Refuses, before any byte is read, a write that asks for a lock the bucket
/// cannot give (the commit checks again atomically).
pub(super) async fn check_requested_lock(
    s3: &Coffer,
    bucket: &str,
    lock: &ObjectLock,
) -> S3Result<()> {
    if lock.is_empty() {
        return Ok(());
    }
    if s3
        .meta
        .bucket_object_lock(bucket)
        .await
        .map_err(meta_error)?
        .is_none()
    {
        return Err(missing_lock_configuration());
    }
    Ok(())
}

/// Whether a request may bypass GOVERNANCE retention: it must ask for it
/// (`x-amz-bypass-governance-retention: true`) and its caller must hold
/// `s3:BypassGovernanceRetention` on the object (the root key holds everything).
pub(super) async fn may_bypass_governance(
    s3: &Coffer,
    caller: &Caller,
    asked: Option<bool>,
    bucket: &str,
    key: &str,
) -> S3Result<bool> {
    if asked != Some(true) {
        return Ok(false);
    }
    let decision = s3
        .authorizer
        .decide(
            caller,
            "s3:BypassGovernanceRetention",
            Some(bucket),
            Some(key),
        )
        .await?;
    Ok(decision == Decision::Allow)
}

/// The lock headers GET/HEAD return, each only to a caller allowed to read it
/// (`s3:GetObjectRetention`, `s3:GetObjectLegalHold`), as on S3.
pub(super) struct LockHeaders {
    pub mode: Option<ObjectLockMode>,
    pub until: Option<Timestamp>,
    pub legal_hold: Option<ObjectLockLegalHoldStatus>,
}

pub(super) async fn lock_headers(
    s3: &Coffer,
    caller: &Caller,
    object: &ObjectMeta,
) -> S3Result<LockHeaders> {
    let mut headers = LockHeaders {
        mode: None,
        until: None,
        legal_hold: None,
    };
    if object.lock.is_empty() {
        return Ok(headers);
    }
    let allowed = |action: &'static str| async move {
        s3.authorizer
            .decide(caller, action, Some(&object.bucket), Some(&object.key))
            .await
            .map(|d| d == Decision::Allow)
    };
    if let Some(retention) = object.lock.retention
        && allowed("s3:GetObjectRetention").await?
    {
        headers.mode = Some(ObjectLockMode::from(retention.mode.as_str().to_owned()));
        headers.until = Some(timestamp(retention.until));
    }
    if object.lock.legal_hold && allowed("s3:GetObjectLegalHold").await? {
        headers.legal_hold = Some(ObjectLockLegalHoldStatus::from_static(
            ObjectLockLegalHoldStatus::ON,
        ));
    }
    Ok(headers)
}

pub async fn get_object_lock_configuration(
    s3: &Coffer,
    req: S3Request<GetObjectLockConfigurationInput>,
) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
    let bucket = &req.input.bucket;
    s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    let Some(config) = s3
        .meta
        .bucket_object_lock(bucket)
        .await
        .map_err(meta_error)?
    else {
        return Err(s3_error!(
            ObjectLockConfigurationNotFoundError,
            "Object Lock configuration does not exist for this bucket"
        ));
    };
    let rule = config.default_retention.map(|d| ObjectLockRule {
        default_retention: Some(s3s::dto::DefaultRetention {
            mode: Some(ObjectLockRetentionMode::from(d.mode.as_str().to_owned())),
            days: d.days.and_then(|n| i32::try_from(n).ok()),
            years: d.years.and_then(|n| i32::try_from(n).ok()),
        }),
    });
    Ok(S3Response::new(GetObjectLockConfigurationOutput {
        object_lock_configuration: Some(ObjectLockConfiguration {
            object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
            rule,
        }),
    }))
}

/// A positive period in days or years.
fn period(value: Option<i32>) -> S3Result<Option<u32>> {
    match value {
        None => Ok(None),
        Some(n) if n > 0 => Ok(u32::try_from(n).ok()),
        Some(_) => {
            let mut err = s3s::S3Error::with_message(
                s3s::S3ErrorCode::Custom("InvalidRetentionPeriod".into()),
                "Default retention period must be a positive integer value.",
            );
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            Err(err)
        }
    }
}

fn default_retention(rule: Option<&ObjectLockRule>) -> S3Result<Option<DefaultRetention>> {
    let Some(rule) = rule else {
        return Ok(None);
    };
    let Some(retention) = &rule.default_retention else {
        return Err(s3_error!(
            MalformedXML,
            "The Object Lock Rule must contain a DefaultRetention"
        ));
    };
    let mode = match &retention.mode {
        Some(mode) => {
            RetentionMode::parse(mode.as_str()).ok_or_else(|| malformed("Mode", mode.as_str()))?
        }
        None => {
            return Err(s3_error!(
                MalformedXML,
                "The DefaultRetention must contain a Mode"
            ));
        }
    };
    let days = period(retention.days)?;
    let years = period(retention.years)?;
    if days.is_some() == years.is_some() {
        return Err(s3_error!(
            MalformedXML,
            "The DefaultRetention must contain exactly one of Days or Years"
        ));
    }
    Ok(Some(DefaultRetention { mode, days, years }))
}

/// Sets the bucket's default retention. Enabling lock on a bucket that does
/// not have it needs versioning `Enabled` (`InvalidBucketState` otherwise).
pub async fn put_object_lock_configuration(
    s3: &Coffer,
    req: S3Request<PutObjectLockConfigurationInput>,
) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
    let input = req.input;
    let Some(config) = input.object_lock_configuration else {
        return Err(s3_error!(
            MalformedXML,
            "The request must contain an ObjectLockConfiguration"
        ));
    };
    if config
        .object_lock_enabled
        .as_ref()
        .map(ObjectLockEnabled::as_str)
        != Some(ObjectLockEnabled::ENABLED)
    {
        return Err(s3_error!(MalformedXML, "ObjectLockEnabled must be Enabled"));
    }
    let lock = BucketObjectLock {
        default_retention: default_retention(config.rule.as_ref())?,
    };
    s3.meta
        .set_bucket_object_lock(&input.bucket, &lock)
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
}

/// The version a retention or legal hold request is about, for reading.
async fn lock_target(
    s3: &Coffer,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> S3Result<ObjectMeta> {
    s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    if s3
        .meta
        .bucket_object_lock(bucket)
        .await
        .map_err(meta_error)?
        .is_none()
    {
        return Err(missing_lock_configuration());
    }
    super::get::find_object(s3, bucket, key, version_id).await
}

fn no_lock_on_object() -> s3s::S3Error {
    s3_error!(
        NoSuchObjectLockConfiguration,
        "The specified object does not have a ObjectLock configuration"
    )
}

pub async fn get_object_retention(
    s3: &Coffer,
    req: S3Request<GetObjectRetentionInput>,
) -> S3Result<S3Response<GetObjectRetentionOutput>> {
    let input = req.input;
    let object = lock_target(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let Some(retention) = object.lock.retention else {
        return Err(no_lock_on_object());
    };
    Ok(S3Response::new(GetObjectRetentionOutput {
        retention: Some(ObjectLockRetention {
            mode: Some(ObjectLockRetentionMode::from(
                retention.mode.as_str().to_owned(),
            )),
            retain_until_date: Some(timestamp(retention.until)),
        }),
    }))
}

/// Sets, extends, shortens or removes a version's retention. Weakening a
/// GOVERNANCE retention needs the bypass; a COMPLIANCE one can only be
/// extended (`AccessDenied` otherwise, as on S3).
pub async fn put_object_retention(
    s3: &Coffer,
    req: S3Request<PutObjectRetentionInput>,
) -> S3Result<S3Response<PutObjectRetentionOutput>> {
    let caller = Authorizer::caller_of(&req.extensions);
    let input = req.input;
    if let Some(mode) = input.retention.as_ref().and_then(|r| r.mode.as_ref())
        && RetentionMode::parse(mode.as_str()).is_none()
    {
        return Err(malformed("Mode", mode.as_str()));
    }
    let retention = match &input.retention {
        Some(r) => parse_retention(
            r.mode.as_ref().map(ObjectLockRetentionMode::as_str),
            r.retain_until_date.as_ref(),
        )?,
        None => None,
    };
    let bypass = may_bypass_governance(
        s3,
        &caller,
        input.bypass_governance_retention,
        &input.bucket,
        &input.key,
    )
    .await?;
    s3.meta
        .set_object_retention(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            retention,
            bypass,
        )
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(PutObjectRetentionOutput::default()))
}

pub async fn get_object_legal_hold(
    s3: &Coffer,
    req: S3Request<GetObjectLegalHoldInput>,
) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
    let input = req.input;
    let object = lock_target(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let status = if object.lock.legal_hold {
        ObjectLockLegalHoldStatus::ON
    } else {
        ObjectLockLegalHoldStatus::OFF
    };
    Ok(S3Response::new(GetObjectLegalHoldOutput {
        legal_hold: Some(ObjectLockLegalHold {
            status: Some(ObjectLockLegalHoldStatus::from_static(status)),
        }),
    }))
}

pub async fn put_object_legal_hold(
    s3: &Coffer,
    req: S3Request<PutObjectLegalHoldInput>,
) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
    let input = req.input;
    let status = input
        .legal_hold
        .as_ref()
        .and_then(|h| h.status.as_ref())
        .map(ObjectLockLegalHoldStatus::as_str);
    if status.is_none() {
        return Err(s3_error!(
            MalformedXML,
            "The LegalHold must contain a Status of ON or OFF"
        ));
    }
    let on =
        parse_legal_hold(status).map_err(|_| malformed("Status", status.unwrap_or_default()))?;
    s3.meta
        .set_object_legal_hold(&input.bucket, &input.key, input.version_id.as_deref(), on)
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
}
