//! Exact per-bucket usage and quotas. Every transaction that adds or removes a
//! version adjusts its bucket's counters in `bucket_stats`; the row lock that
//! update takes orders concurrent writers of one bucket, so a quota check made
//! with the updated counters is exact, however many writers race.

use serde::{Deserialize, Serialize};

use super::objects::ObjectMeta;
use super::{MetaError, MetaResult, WriteTx, from_json};

/// The configuration kind of a bucket quota, `{"MaxSizeBytes": n, "MaxObjects": n}`
/// (the shape the operator writes).
pub const QUOTA: &str = "quota";

/// A bucket quota: either limit may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    #[serde(
        rename = "MaxSizeBytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_size_bytes: Option<u64>,
    #[serde(
        rename = "MaxObjects",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_objects: Option<u64>,
}

/// What a transaction adds to (or, negative, removes from) a bucket's usage.
/// Delete markers count for nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct UsageDelta {
    objects: i64,
    bytes: i64,
}

impl UsageDelta {
    pub fn adding(version: &ObjectMeta) -> Self {
        if version.delete_marker {
            return Self::default();
        }
        Self {
            objects: 1,
            bytes: version.size as i64,
        }
    }

    pub fn removing(version: &ObjectMeta) -> Self {
        let added = Self::adding(version);
        Self {
            objects: -added.objects,
            bytes: -added.bytes,
        }
    }

    fn grows(self) -> bool {
        self.objects > 0 || self.bytes > 0
    }
}

impl std::ops::AddAssign for UsageDelta {
    fn add_assign(&mut self, other: Self) {
        self.objects += other.objects;
        self.bytes += other.bytes;
    }
}

/// Applies `delta` to the bucket's counters; a write that grows the usage beyond
/// the bucket's quota fails with `QuotaExceeded` (and its transaction with it).
pub(super) async fn apply_usage_tx(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    delta: UsageDelta,
) -> MetaResult<()> {
    if delta == UsageDelta::default() {
        return Ok(());
    }
    let (objects, bytes): (i64, i64) = sqlx::query_as(
        "INSERT INTO bucket_stats (bucket, objects, bytes) VALUES ($1, $2, $3)
         ON CONFLICT (bucket) DO UPDATE SET objects = bucket_stats.objects + excluded.objects,
           bytes = bucket_stats.bytes + excluded.bytes
         RETURNING objects, bytes",
    )
    .bind(bucket)
    .bind(delta.objects)
    .bind(delta.bytes)
    .fetch_one(&mut ***tx)
    .await?;
    if !delta.grows() {
        return Ok(());
    }
    let quota: Option<(String,)> =
        sqlx::query_as("SELECT value FROM bucket_configs WHERE bucket = $1 AND kind = $2")
            .bind(bucket)
            .bind(QUOTA)
            .fetch_optional(&mut ***tx)
            .await?;
    let Some((text,)) = quota else {
        return Ok(());
    };
    let quota: Quota = from_json(&text)?;
    let over_bytes = delta.bytes > 0
        && quota
            .max_size_bytes
            .is_some_and(|max| bytes.max(0) as u64 > max);
    let over_objects = delta.objects > 0
        && quota
            .max_objects
            .is_some_and(|max| objects.max(0) as u64 > max);
    if over_bytes || over_objects {
        return Err(MetaError::QuotaExceeded);
    }
    Ok(())
}

impl super::MetaStore {
    /// The bucket's quota, when one is set.
    pub async fn bucket_quota(&self, bucket: &str) -> MetaResult<Option<Quota>> {
        match self.get_bucket_config(bucket, QUOTA).await? {
            Some(text) => Ok(Some(from_json(&text)?)),
            None => Ok(None),
        }
    }
}
