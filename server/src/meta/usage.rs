//! Exact per-bucket usage and quotas. Every transaction that adds or removes a
//! version adjusts its bucket's counters in `bucket_usage_shards` (see
//! `apply_usage_tx`): exact sums, and exact quota checks however many writers race,
//! without making all writers of a quota-free bucket queue on one row.

use serde::{Deserialize, Serialize};

use super::objects::ObjectMeta;
use super::{Backend, MetaError, MetaResult, WriteTx, from_json};

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

/// Shards of a bucket's counters that quota-free writers spread over.
const SHARDS: i64 = 16;

/// Applies `delta` to the bucket's counters; a write that grows the usage beyond
/// the bucket's quota fails with `QuotaExceeded` (and its transaction with it).
/// Without a quota (or for a shrinking write) the delta goes to a random shard,
/// so concurrent writers rarely wait on one another. With a quota, a growing
/// writer locks every shard of the bucket, in order, sums them and checks: such
/// writers are serialized per bucket, which is what makes the check exact.
pub(super) async fn apply_usage_tx(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    delta: UsageDelta,
) -> MetaResult<()> {
    let quota = match delta.grows() {
        true => bucket_quota_tx(tx, bucket).await?,
        false => None,
    };
    apply_usage_under_quota_tx(tx, bucket, delta, quota.as_ref()).await
}

/// `apply_usage_tx` for a writer that already read the bucket's quota.
pub(super) async fn apply_usage_under_quota_tx(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    delta: UsageDelta,
    quota: Option<&Quota>,
) -> MetaResult<()> {
    if delta == UsageDelta::default() {
        return Ok(());
    }
    let Some(quota) = quota.filter(|_| delta.grows()) else {
        defer(tx, bucket, delta);
        return Ok(());
    };
    // Shard 0 always exists for a checked bucket, so there is a row to lock even
    // for its first write.
    add_to_shard(tx, bucket, 0, UsageDelta::default()).await?;
    let lock = match tx.backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let shards: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT objects, bytes FROM bucket_usage_shards WHERE bucket = $1 ORDER BY shard{lock}"
    ))
    .bind(bucket)
    .fetch_all(&mut ***tx)
    .await?;
    let pending = deferred(tx, bucket);
    let objects = shards.iter().map(|(o, _)| o).sum::<i64>() + pending.objects + delta.objects;
    let bytes = shards.iter().map(|(_, b)| b).sum::<i64>() + pending.bytes + delta.bytes;
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
    add_to_shard(tx, bucket, 0, delta).await
}

/// Quota-free changes are summed per bucket in the transaction and written once,
/// at commit: one statement per transaction (per group-commit batch on SQLite)
/// instead of one per write.
fn defer(tx: &mut WriteTx<'_>, bucket: &str, delta: UsageDelta) {
    match tx.deferred_usage.iter_mut().find(|(b, _)| b == bucket) {
        Some((_, pending)) => *pending += delta,
        None => tx.deferred_usage.push((bucket.to_owned(), delta)),
    }
}

fn deferred(tx: &WriteTx<'_>, bucket: &str) -> UsageDelta {
    tx.deferred_usage
        .iter()
        .find(|(b, _)| b == bucket)
        .map(|(_, d)| *d)
        .unwrap_or_default()
}

/// Writes the deferred changes, each to a random shard. Called by commit, in
/// bucket order: concurrent transactions that meet on a shard row wait for each
/// other in one order, never in a cycle.
pub(super) async fn flush_deferred_usage_tx(tx: &mut WriteTx<'_>) -> MetaResult<()> {
    let mut pending = std::mem::take(&mut tx.deferred_usage);
    pending.sort_by(|a, b| a.0.cmp(&b.0));
    for (bucket, delta) in pending {
        if delta != UsageDelta::default() {
            add_to_shard(tx, &bucket, rand::random_range(0..SHARDS), delta).await?;
        }
    }
    Ok(())
}

async fn bucket_quota_tx(tx: &mut WriteTx<'_>, bucket: &str) -> MetaResult<Option<Quota>> {
    let quota: Option<(String,)> =
        sqlx::query_as("SELECT value FROM bucket_configs WHERE bucket = $1 AND kind = $2")
            .bind(bucket)
            .bind(QUOTA)
            .fetch_optional(&mut ***tx)
            .await?;
    quota.map(|(text,)| from_json(&text)).transpose()
}

async fn add_to_shard(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    shard: i64,
    delta: UsageDelta,
) -> MetaResult<()> {
    sqlx::query(
        "INSERT INTO bucket_usage_shards (bucket, shard, objects, bytes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (bucket, shard) DO UPDATE
         SET objects = bucket_usage_shards.objects + excluded.objects,
             bytes = bucket_usage_shards.bytes + excluded.bytes",
    )
    .bind(bucket)
    .bind(shard)
    .bind(delta.objects)
    .bind(delta.bytes)
    .execute(&mut ***tx)
    .await?;
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
