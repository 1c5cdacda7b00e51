//! Object Lock (WORM): a bucket's lock configuration and default retention, and
//! each version's retention and legal hold. Whether a version may be deleted is
//! decided inside the transaction that deletes it (see `versions.rs`), so a
//! version that was locked an instant earlier is never lost to a race.

use serde::{Deserialize, Serialize};

use super::objects::{OBJECT_COLUMNS, ObjectMeta, object_from_row};
use super::versions::Versioning;
use super::{Backend, MetaError, MetaResult, MetaStore, WriteTx, from_json, now_millis, to_json};

/// The configuration kind under which a bucket's lock configuration is stored, in
/// the JSON shape of the S3 API (`{"ObjectLockEnabled": "Enabled", "Rule": ...}`),
/// which the operator writes too.
pub const OBJECT_LOCK: &str = "object-lock";

/// `GOVERNANCE`: holders of `s3:BypassGovernanceRetention` may shorten or remove
/// the retention and delete the version. `COMPLIANCE`: nobody may, until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RetentionMode {
    Governance,
    Compliance,
}

impl RetentionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "GOVERNANCE" => Some(Self::Governance),
            "COMPLIANCE" => Some(Self::Compliance),
            _ => None,
        }
    }
}

/// A version's retention: protected until `until` (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    #[serde(rename = "Mode")]
    pub mode: RetentionMode,
    #[serde(rename = "RetainUntil")]
    pub until: i64,
}

/// The lock state of one version, stored with it (`object_lock` column).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    #[serde(rename = "Retention", default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    #[serde(rename = "LegalHold", default, skip_serializing_if = "is_false")]
    pub legal_hold: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ObjectLock {
    pub fn is_empty(&self) -> bool {
        self.retention.is_none() && !self.legal_hold
    }

    /// The retention still in force at `now`.
    pub fn active_retention(&self, now: i64) -> Option<Retention> {
        self.retention.filter(|r| r.until > now)
    }

    /// Whether the version must not be deleted at `now`. A legal hold and
    /// COMPLIANCE retention stop everyone; GOVERNANCE stops all but a caller
    /// allowed (and asking) to bypass it.
    pub fn forbids_delete(&self, now: i64, bypass_governance: bool) -> bool {
        if self.legal_hold {
            return true;
        }
        match self.active_retention(now) {
            Some(Retention {
                mode: RetentionMode::Compliance,
                ..
            }) => true,
            Some(Retention {
                mode: RetentionMode::Governance,
                ..
            }) => !bypass_governance,
            None => false,
        }
    }

    /// Whether the retention may change from what it is to `new` at `now`:
    /// COMPLIANCE may only be extended; GOVERNANCE may be extended or turned into
    /// COMPLIANCE, and shortened or removed only with the bypass.
    pub fn allows_retention_change(
        &self,
        new: Option<Retention>,
        now: i64,
        bypass_governance: bool,
    ) -> bool {
        let Some(current) = self.active_retention(now) else {
            return true;
        };
        let extends = new.is_some_and(|n| n.until >= current.until);
        match current.mode {
            RetentionMode::Compliance => {
                extends && new.is_some_and(|n| n.mode == RetentionMode::Compliance)
            }
            RetentionMode::Governance => extends || bypass_governance,
        }
    }
}

/// A bucket's default retention: a mode and a period of days or years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    #[serde(rename = "Mode")]
    pub mode: RetentionMode,
    #[serde(rename = "Days", default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(rename = "Years", default, skip_serializing_if = "Option::is_none")]
    pub years: Option<u32>,
}

const DAY_MS: i64 = 86_400_000;

impl DefaultRetention {
    /// The retention a version written at `now` gets. A year is 365 days.
    pub fn retention_from(&self, now: i64) -> Retention {
        let days = i64::from(self.days.unwrap_or(0))
            .saturating_add(i64::from(self.years.unwrap_or(0)).saturating_mul(365));
        Retention {
            mode: self.mode,
            until: now.saturating_add(days.saturating_mul(DAY_MS)),
        }
    }
}

/// A bucket's Object Lock configuration, when it is enabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketObjectLock {
    pub default_retention: Option<DefaultRetention>,
}

#[derive(Serialize, Deserialize)]
struct ObjectLockDocument {
    #[serde(rename = "ObjectLockEnabled", default)]
    enabled: Option<String>,
    #[serde(rename = "Rule", default, skip_serializing_if = "Option::is_none")]
    rule: Option<RuleDocument>,
}

#[derive(Serialize, Deserialize)]
struct RuleDocument {
    #[serde(rename = "DefaultRetention")]
    default_retention: DefaultRetention,
}

impl BucketObjectLock {
    /// `None` unless the document says `Enabled` (the operator may store a
    /// `Disabled` one).
    pub(super) fn parse(document: Option<&str>) -> MetaResult<Option<Self>> {
        let Some(text) = document else {
            return Ok(None);
        };
        let doc: ObjectLockDocument = from_json(text)?;
        if doc.enabled.as_deref() != Some("Enabled") {
            return Ok(None);
        }
        Ok(Some(Self {
            default_retention: doc.rule.map(|r| r.default_retention),
        }))
    }

    fn to_document(self) -> String {
        to_json(&ObjectLockDocument {
            enabled: Some("Enabled".to_owned()),
            rule: self
                .default_retention
                .map(|default_retention| RuleDocument { default_retention }),
        })
    }
}

/// Where a version lives: the current row or a noncurrent one.
enum Place {
    Current,
    Noncurrent,
}

impl MetaStore {
    /// The bucket's Object Lock configuration; `None` when lock is not enabled.
    pub async fn bucket_object_lock(&self, bucket: &str) -> MetaResult<Option<BucketObjectLock>> {
        let text = self.get_bucket_config(bucket, OBJECT_LOCK).await?;
        BucketObjectLock::parse(text.as_deref())
    }

    pub(super) async fn object_lock_tx(
        &self,
        tx: &mut WriteTx<'_>,
        bucket: &str,
    ) -> MetaResult<Option<BucketObjectLock>> {
        let text = super::buckets::config_tx(tx, bucket, OBJECT_LOCK).await?;
        BucketObjectLock::parse(text.as_deref())
    }

    /// Replaces the lock configuration (enabling lock if it was not). Lock needs
    /// versioning `Enabled` (`InvalidBucketState` otherwise, as on S3), and once
    /// enabled it stays enabled.
    pub async fn set_bucket_object_lock(
        &self,
        bucket: &str,
        config: &BucketObjectLock,
    ) -> MetaResult<()> {
        self.set_bucket_config(bucket, OBJECT_LOCK, Some(&config.to_document()))
            .await
    }

    /// Sets or removes a version's retention (`version_id` `None`: the current
    /// version); returns the version id. `ObjectLocked` when the change would
    /// weaken a retention in force (see [`ObjectLock::allows_retention_change`]).
    pub async fn set_object_retention(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        retention: Option<Retention>,
        bypass_governance: bool,
    ) -> MetaResult<String> {
        self.update_object_lock(bucket, key, version_id, |lock| {
            if !lock.allows_retention_change(retention, now_millis(), bypass_governance) {
                return Err(MetaError::ObjectLocked);
            }
            lock.retention = retention;
            Ok(())
        })
        .await
    }

    /// Places or lifts a version's legal hold; returns the version id.
    pub async fn set_object_legal_hold(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        on: bool,
    ) -> MetaResult<String> {
        self.update_object_lock(bucket, key, version_id, |lock| {
            lock.legal_hold = on;
            Ok(())
        })
        .await
    }

    /// Reads a version's lock under a row lock, lets `change` edit it, writes it
    /// back. Delete markers have no lock: `NoSuchKey`/`NoSuchVersion`.
    async fn update_object_lock(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        change: impl FnOnce(&mut ObjectLock) -> MetaResult<()>,
    ) -> MetaResult<String> {
        let mut tx = self.begin_write().await?;
        self.bucket_exists_tx(&mut tx, bucket).await?;
        if self.object_lock_tx(&mut tx, bucket).await?.is_none() {
            return Err(MetaError::ObjectLockNotEnabled);
        }
        let current = self.lock_object_tx(&mut tx, bucket, key).await?;
        let (mut version, place) = match (current, version_id) {
            (Some(c), None) => (c, Place::Current),
            (Some(c), Some(v)) if c.version_id == v => (c, Place::Current),
            (None, None) => return Err(MetaError::NoSuchKey),
            (_, Some(v)) => {
                let version = self
                    .lock_version_tx(&mut tx, bucket, key, v)
                    .await?
                    .filter(|v| !v.delete_marker)
                    .ok_or(MetaError::NoSuchVersion)?;
                (version, Place::Noncurrent)
            }
        };
        change(&mut version.lock)?;
        tx.touch(bucket, key);
        let table = match place {
            Place::Current => "objects",
            Place::Noncurrent => "object_versions",
        };
        sqlx::query(&format!(
            "UPDATE {table} SET object_lock = $4
             WHERE bucket = $1 AND key = $2 AND version_id = $3"
        ))
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .bind(&version.version_id)
        .bind(to_json(&version.lock))
        .execute(&mut **tx)
        .await?;
        tx.commit().await?;
        Ok(version.version_id)
    }

    /// Reads a noncurrent version (or delete marker) and, on Postgres, locks its
    /// row until commit, so a concurrent lock change and delete serialize.
    pub(super) async fn lock_version_tx(
        &self,
        tx: &mut WriteTx<'_>,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> MetaResult<Option<ObjectMeta>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS}, delete_marker FROM object_versions
             WHERE bucket = $1 AND key = $2 AND version_id = $3{lock}"
        ))
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .bind(version_id)
        .fetch_optional(&mut ***tx)
        .await?;
        row.as_ref().map(object_from_row).transpose()
    }
}

/// Refuses suspending (or dropping) versioning on a lock bucket, inside the
/// transaction that would store it.
pub(super) async fn refuse_versioning_change_tx(
    store: &MetaStore,
    tx: &mut WriteTx<'_>,
    bucket: &str,
    state: Versioning,
) -> MetaResult<()> {
    if state != Versioning::Enabled && store.object_lock_tx(tx, bucket).await?.is_some() {
        return Err(MetaError::InvalidBucketState(
            "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed."
                .to_owned(),
        ));
    }
    Ok(())
}

/// A new lock document may enable lock only with versioning enabled, and never
/// disable it once enabled.
pub(super) async fn check_lock_document_tx(
    store: &MetaStore,
    tx: &mut WriteTx<'_>,
    bucket: &str,
    document: Option<&str>,
) -> MetaResult<()> {
    let new = BucketObjectLock::parse(document)?;
    let current = store.object_lock_tx(tx, bucket).await?;
    match (current, new) {
        (Some(_), None) => Err(MetaError::InvalidBucketState(
            "Object Lock cannot be disabled once it is enabled".to_owned(),
        )),
        (_, Some(_)) if store.versioning_tx(tx, bucket).await? != Versioning::Enabled => {
            Err(MetaError::InvalidBucketState(
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
                    .to_owned(),
            ))
        }
        _ => Ok(()),
    }
}

/// The lock configuration document a bucket created with Object Lock starts with.
pub(super) fn enabled_document() -> String {
    BucketObjectLock::default().to_document()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(mode: RetentionMode, until: i64) -> ObjectLock {
        ObjectLock {
            retention: Some(Retention { mode, until }),
            legal_hold: false,
        }
    }

    #[test]
    fn compliance_is_never_bypassed_and_only_extended() {
        let l = lock(RetentionMode::Compliance, 1000);
        assert!(l.forbids_delete(10, true));
        assert!(!l.forbids_delete(1000, false));
        let longer = Some(Retention {
            mode: RetentionMode::Compliance,
            until: 2000,
        });
        let shorter = Some(Retention {
            mode: RetentionMode::Compliance,
            until: 500,
        });
        assert!(l.allows_retention_change(longer, 10, false));
        assert!(!l.allows_retention_change(shorter, 10, true));
        assert!(!l.allows_retention_change(None, 10, true));
    }

    #[test]
    fn governance_needs_the_bypass_to_weaken() {
        let l = lock(RetentionMode::Governance, 1000);
        assert!(l.forbids_delete(10, false));
        assert!(!l.forbids_delete(10, true));
        assert!(!l.allows_retention_change(None, 10, false));
        assert!(l.allows_retention_change(None, 10, true));
        let held = ObjectLock {
            retention: None,
            legal_hold: true,
        };
        assert!(held.forbids_delete(10, true));
    }
}
