//! Object rows: the current version of each key, with its headers, checksums and
//! the blob segments that hold its bytes. Committing a row is what makes an
//! object visible; the version it replaces is kept as a noncurrent version
//! (versioned buckets) or its blobs are handed to garbage collection, in the same
//! transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::lock::{BucketObjectLock, OBJECT_LOCK, ObjectLock};
use super::usage::{QUOTA, Quota, UsageDelta, apply_usage_tx, apply_usage_under_quota_tx};
use super::versions::{VERSIONING, Versioning};
use super::{Backend, MetaError, MetaResult, MetaStore, WriteTx, from_json, to_json};

/// Standard and user headers stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// `x-amz-meta-*` without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
    /// The version's ACL and owner (`None`: private, the bucket owner's). Not a
    /// header on reads; kept here because it travels with the version exactly
    /// as the headers do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<super::Acl>,
    /// Server-side encryption of the object's bytes (SSE-S3, SSE-KMS or SSE-C).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// The multipart upload this version was completed from: a retried
    /// CompleteMultipartUpload finds it and answers the same success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart_upload: Option<String>,
}

/// How an object's bytes are encrypted at rest: every segment is stored in the
/// chunked AES-256-GCM format of `crate::crypto`, under a key derived from one
/// random data key per object (or upload), which is kept here wrapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// The data key, wrapped (sealed) with the master key (SSE-S3) or with the
    /// customer's key (SSE-C).
    pub wrapped_key: String,
    /// SSE-C: how to recognise the customer's key without storing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_key: Option<CustomerKeyCheck>,
    /// SSE-KMS: the id of the KMS key that wraps the data key (instead of
    /// the master key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// SSE-KMS: the encryption context the data key is bound to, as the
    /// base64 JSON of `x-amz-server-side-encryption-context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_context: Option<String>,
    /// SSE-KMS: `x-amz-server-side-encryption-bucket-key-enabled` (accepted,
    /// reported; every object still has its own data key).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bucket_key: bool,
}

/// A salted HMAC-SHA256 of an SSE-C key (base64 salt and digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerKeyCheck {
    pub salt: String,
    pub fingerprint: String,
}

/// The additional checksum of an object (`x-amz-checksum-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChecksum {
    /// `CRC32`, `CRC32C`, `SHA1`, `SHA256` or `CRC64NVME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Base64 digest; for multipart uploads `<digest of part digests>-N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `FULL_OBJECT` or `COMPOSITE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A run of an object's bytes held in one blob (one per multipart part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub blob: String,
    pub size: u64,
    /// The part's additional checksum, returned for `partNumber` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Nodes that hold the blob when it is committed. Recorded in `blob_replicas`
    /// by the commit, not kept in the row: the healer moves replicas later.
    #[serde(skip)]
    pub replicas: Vec<String>,
    /// The bytes of a small blob kept in the metadata store (an id made by
    /// [`new_inline_id`](super::new_inline_id)); written by the commit, not kept in
    /// the row.
    #[serde(skip)]
    pub inline: Option<Vec<u8>>,
    /// Bytes the blob holds when that differs from `size` (encrypted segments
    /// carry a tag per chunk); recorded in `blobs` for the healer and scrubber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
}

/// One version of an object: the current one (in `objects`) or a noncurrent
/// version or delete marker (in `object_versions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub bucket: String,
    pub key: String,
    /// `null` in buckets that never had versioning and for writes while it is
    /// suspended; assigned by the store on commit.
    pub version_id: String,
    /// A delete marker: no bytes, hides the older versions of its key.
    pub delete_marker: bool,
    pub size: u64,
    /// The ETag without quotes.
    pub etag: String,
    pub last_modified: i64,
    pub headers: ObjectHeaders,
    pub checksum: ObjectChecksum,
    pub segments: Vec<Segment>,
    /// Object tags (`x-amz-tagging`, PutObjectTagging), per version.
    pub tags: BTreeMap<String, String>,
    /// Orders the versions of one key, newest highest; assigned by the store.
    pub seq: i64,
    /// Object Lock retention and legal hold of this version.
    pub lock: ObjectLock,
}

impl ObjectMeta {
    /// Number of multipart parts, `None` for single-PUT objects.
    pub fn parts_count(&self) -> Option<usize> {
        self.etag.contains('-').then_some(self.segments.len())
    }

    fn blob_ids(&self) -> Vec<String> {
        self.segments.iter().map(|s| s.blob.clone()).collect()
    }
}

/// A condition checked atomically with the write (`If-None-Match: *`, `If-Match`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WriteCondition {
    #[default]
    None,
    /// Write only when no object has the key.
    IfNoneMatchAny,
    /// Write only when the current object has this ETag (unquoted).
    IfMatch(String),
    /// Write only when the key has a current object (`If-Match: *`).
    IfMatchAny,
}

/// What a delete did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Whether a version (or marker) was removed or hidden.
    pub existed: bool,
    /// The version removed, or the delete marker created (`None` in unversioned
    /// buckets).
    pub version_id: Option<String>,
    /// The version removed or created is a delete marker.
    pub delete_marker: bool,
}

/// The version id S3 uses for objects written without versioning.
pub const NULL_VERSION: &str = "null";

pub(super) const OBJECT_COLUMNS: &str = "bucket, key, version_id, seq, size, etag, last_modified, headers, checksum, segments, tags, object_lock";

pub(super) fn object_from_row(row: &sqlx::any::AnyRow) -> MetaResult<ObjectMeta> {
    let key: Vec<u8> = row.try_get("key")?;
    let size: i64 = row.try_get("size")?;
    // Only `object_versions` rows carry the column; current rows are never markers.
    let delete_marker: i64 = row.try_get("delete_marker").unwrap_or(0);
    let mut object = ObjectMeta {
        bucket: row.try_get("bucket")?,
        key: String::from_utf8(key).map_err(|e| MetaError::Corrupt(e.to_string()))?,
        version_id: row.try_get("version_id")?,
        delete_marker: delete_marker != 0,
        size: size.max(0) as u64,
        etag: row.try_get("etag")?,
        last_modified: row.try_get("last_modified")?,
        headers: from_json(row.try_get::<&str, _>("headers")?)?,
        checksum: from_json(row.try_get::<&str, _>("checksum")?)?,
        segments: from_json(row.try_get::<&str, _>("segments")?)?,
        tags: from_json(row.try_get::<&str, _>("tags")?)?,
        seq: row.try_get("seq")?,
        lock: from_json(row.try_get::<&str, _>("object_lock")?)?,
    };
    // Only `get_object` selects it: the bytes of a small single-blob object.
    if let Ok(Some(data)) = row.try_get::<Option<Vec<u8>>, _>("inline_data")
        && let [segment] = object.segments.as_mut_slice()
        && super::is_inline(&segment.blob)
    {
        segment.inline = Some(data);
    }
    Ok(object)
}

/// A fresh version id: 32 hex digits, never `null`.
fn new_version_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl MetaStore {
    /// The current version of a key (never a delete marker).
    /// A small object's bytes come with it (in the same query), so reading it
    /// takes one round trip to the store.
    /// Served from the object cache when this process holds its lease.
    pub async fn get_object(&self, bucket: &str, key: &str) -> MetaResult<Option<ObjectMeta>> {
        let ticket = match self.cache.as_ref().map(|c| c.get(bucket, key)) {
            Some(Ok(object)) => return Ok(Some(object)),
            Some(Err(ticket)) => ticket,
            None => None,
        };
        let object = self.read_object(bucket, key).await?;
        if let (Some(cache), Some(ticket), Some(object)) = (&self.cache, ticket, &object) {
            cache.fill(ticket, object);
        }
        Ok(object)
    }

    async fn read_object(&self, bucket: &str, key: &str) -> MetaResult<Option<ObjectMeta>> {
        let first_blob = match self.backend {
            Backend::Postgres => "(segments::jsonb -> 0 ->> 'blob')",
            Backend::Sqlite => "json_extract(segments, '$[0].blob')",
        };
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS},
               (SELECT data FROM inline_blobs WHERE id = {first_blob}) AS inline_data
             FROM objects WHERE bucket = $1 AND key = $2"
        ))
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(object_from_row).transpose()
    }

    /// Makes `object` the current version of its key and returns the version id
    /// it got. Its blobs must already be durable. What happens to the version it
    /// replaces depends on the bucket's versioning. Fails with `NoSuchBucket`, or
    /// `PreconditionFailed`/`NoSuchKey` when `condition` does not hold.
    pub async fn put_object(
        &self,
        object: &ObjectMeta,
        condition: &WriteCondition,
    ) -> MetaResult<String> {
        if let Some(group) = &self.group {
            return group.put_object(object, condition).await;
        }
        let mut tx = self.begin_write().await?;
        let version_id = self.upsert_object_tx(&mut tx, object, condition).await?;
        tx.commit().await?;
        Ok(version_id)
    }

    /// DeleteObject without a version id: removes the current version in an
    /// unversioned bucket, otherwise hides it behind a new delete marker.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> MetaResult<Deleted> {
        let mut tx = self.begin_write().await?;
        let versioning = self.versioning_tx(&mut tx, bucket).await?;
        let existing = self.lock_object_tx(&mut tx, bucket, key).await?;
        if versioning == Versioning::Unversioned {
            let Some(existing) = existing else {
                return Ok(Deleted::default());
            };
            delete_current_row(&mut tx, bucket, key).await?;
            mark_garbage_tx(&mut tx, &existing.blob_ids()).await?;
            apply_usage_tx(&mut tx, bucket, UsageDelta::removing(&existing)).await?;
            tx.commit().await?;
            return Ok(Deleted {
                existed: true,
                ..Deleted::default()
            });
        }
        let seq = next_seq_tx(&mut tx, bucket, key, versioning, existing.as_ref()).await?;
        let mut delta = UsageDelta::default();
        if let Some(existing) = existing {
            delete_current_row(&mut tx, bucket, key).await?;
            delta += retire_tx(&mut tx, existing, versioning).await?;
        }
        let version_id = match versioning {
            Versioning::Enabled => new_version_id(),
            _ => NULL_VERSION.to_owned(),
        };
        if versioning == Versioning::Suspended {
            delta += drop_null_version_tx(&mut tx, bucket, key).await?;
        }
        apply_usage_tx(&mut tx, bucket, delta).await?;
        let marker = ObjectMeta {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version_id.clone(),
            delete_marker: true,
            last_modified: super::now_millis(),
            seq,
            ..ObjectMeta::default()
        };
        insert_version_row(&mut tx, &marker, 0).await?;
        tx.commit().await?;
        Ok(Deleted {
            existed: true,
            version_id: Some(version_id),
            delete_marker: true,
        })
    }

    pub(super) async fn bucket_exists_tx(
        &self,
        tx: &mut WriteTx<'_>,
        bucket: &str,
    ) -> MetaResult<()> {
        let row = sqlx::query("SELECT 1 FROM buckets WHERE name = $1")
            .bind(bucket)
            .fetch_optional(&mut ***tx)
            .await?;
        match row {
            Some(_) => Ok(()),
            None => Err(MetaError::NoSuchBucket(bucket.to_owned())),
        }
    }

    /// Reads a key's current row and, on Postgres, locks it until commit.
    pub(super) async fn lock_object_tx(
        &self,
        tx: &mut WriteTx<'_>,
        bucket: &str,
        key: &str,
    ) -> MetaResult<Option<ObjectMeta>> {
        tx.touch(bucket, key);
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND key = $2{lock}"
        ))
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .fetch_optional(&mut ***tx)
        .await?;
        row.as_ref().map(object_from_row).transpose()
    }

    /// Writes `object` as the current version of its key, retiring the version
    /// it replaces. Fails with `NoSuchBucket` when the bucket is gone.
    pub(super) async fn upsert_object_tx(
        &self,
        tx: &mut WriteTx<'_>,
        object: &ObjectMeta,
        condition: &WriteCondition,
    ) -> MetaResult<String> {
        let config = write_config_tx(tx, &object.bucket).await?;
        let versioning = config.versioning;
        let lock = lock_for_new_version(&config, object)?;
        // Most writes create a key: try a plain insert first, which needs neither
        // a read nor a row lock; only when the key exists (or the write is
        // conditional on its current version) read and lock the current row.
        if !matches!(
            condition,
            WriteCondition::IfMatch(_) | WriteCondition::IfMatchAny
        ) {
            let mut new = as_new_version(object, versioning, lock);
            new.seq = next_seq_tx(tx, &object.bucket, &object.key, versioning, None).await?;
            if insert_object_row(tx, &new).await? == 1 {
                register_blobs_tx(tx, &new.segments).await?;
                let mut delta = UsageDelta::adding(&new);
                if versioning == Versioning::Suspended {
                    delta += drop_null_version_tx(tx, &object.bucket, &object.key).await?;
                }
                apply_usage_under_quota_tx(tx, &object.bucket, delta, config.quota.as_ref())
                    .await?;
                return Ok(new.version_id);
            }
            if matches!(condition, WriteCondition::IfNoneMatchAny) {
                return Err(MetaError::PreconditionFailed);
            }
        }
        // Two attempts: a concurrent delete of the key between our failed insert
        // and the lock makes the key new again; the second attempt inserts it.
        for _ in 0..2 {
            let existing = self.lock_object_tx(tx, &object.bucket, &object.key).await?;
            match (&existing, condition) {
                (Some(_), WriteCondition::IfNoneMatchAny) => {
                    return Err(MetaError::PreconditionFailed);
                }
                (None, WriteCondition::IfMatch(_) | WriteCondition::IfMatchAny) => {
                    return Err(MetaError::NoSuchKey);
                }
                (Some(current), WriteCondition::IfMatch(etag)) if current.etag != *etag => {
                    return Err(MetaError::PreconditionFailed);
                }
                _ => {}
            }
            let mut new = as_new_version(object, versioning, lock);
            new.seq = next_seq_tx(
                tx,
                &object.bucket,
                &object.key,
                versioning,
                existing.as_ref(),
            )
            .await?;
            let written = match &existing {
                Some(_) => update_object_row(tx, &new).await?,
                None => insert_object_row(tx, &new).await?,
            };
            if written == 0 {
                continue;
            }
            register_blobs_tx(tx, &new.segments).await?;
            let mut delta = UsageDelta::adding(&new);
            if let Some(old) = existing {
                let kept = versioning == Versioning::Enabled
                    || (versioning == Versioning::Suspended && old.version_id != NULL_VERSION);
                // A rewrite in place (copy onto itself) shares blobs; that is only
                // safe when the old version goes away.
                if kept
                    && old
                        .segments
                        .iter()
                        .any(|s| new.segments.iter().any(|n| n.blob == s.blob))
                {
                    return Err(MetaError::PreconditionFailed);
                }
                let shared: Vec<String> = new.blob_ids();
                let mut old = old;
                old.segments.retain(|s| !shared.contains(&s.blob));
                delta += retire_tx(tx, old, versioning).await?;
            }
            if versioning == Versioning::Suspended {
                delta += drop_null_version_tx(tx, &object.bucket, &object.key).await?;
            }
            apply_usage_under_quota_tx(tx, &object.bucket, delta, config.quota.as_ref()).await?;
            return Ok(new.version_id);
        }
        Err(MetaError::PreconditionFailed)
    }
}

/// What a write needs to know of its bucket, read in one query.
pub(super) struct WriteConfig {
    pub versioning: Versioning,
    pub quota: Option<Quota>,
    /// `None` unless Object Lock is enabled.
    pub object_lock: Option<BucketObjectLock>,
}

/// The bucket's write configuration; `NoSuchBucket` when it does not exist.
/// One round trip instead of one per setting: on Postgres every statement of a
/// small PUT is a network round trip, and they dominate its cost.
pub(super) async fn write_config_tx(tx: &mut WriteTx<'_>, bucket: &str) -> MetaResult<WriteConfig> {
    let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT c.kind, c.value FROM buckets b
         LEFT JOIN bucket_configs c ON c.bucket = b.name AND c.kind IN ($2, $3, $4)
         WHERE b.name = $1",
    )
    .bind(bucket)
    .bind(VERSIONING)
    .bind(QUOTA)
    .bind(OBJECT_LOCK)
    .fetch_all(&mut ***tx)
    .await?;
    if rows.is_empty() {
        return Err(MetaError::NoSuchBucket(bucket.to_owned()));
    }
    let value_of = |kind: &str| {
        rows.iter()
            .find(|(k, _)| k.as_deref() == Some(kind))
            .and_then(|(_, v)| v.as_deref())
    };
    Ok(WriteConfig {
        versioning: Versioning::parse(value_of(VERSIONING))?,
        quota: value_of(QUOTA).map(from_json).transpose()?,
        object_lock: BucketObjectLock::parse(value_of(OBJECT_LOCK))?,
    })
}

/// `object` as the version a write makes of it.
fn as_new_version(object: &ObjectMeta, versioning: Versioning, lock: ObjectLock) -> ObjectMeta {
    let mut new = object.clone();
    new.delete_marker = false;
    new.lock = lock;
    new.version_id = match versioning {
        Versioning::Enabled => new_version_id(),
        _ => NULL_VERSION.to_owned(),
    };
    new
}

/// The lock a new version gets: what the write asked for, else the bucket's
/// default retention. Asking for a lock on a bucket without Object Lock is
/// `ObjectLockNotEnabled`.
fn lock_for_new_version(config: &WriteConfig, object: &ObjectMeta) -> MetaResult<ObjectLock> {
    let Some(bucket_lock) = config.object_lock else {
        if !object.lock.is_empty() {
            return Err(MetaError::ObjectLockNotEnabled);
        }
        return Ok(ObjectLock::default());
    };
    let mut lock = object.lock;
    if lock.retention.is_none() {
        lock.retention = bucket_lock
            .default_retention
            .map(|d| d.retention_from(super::now_millis()));
    }
    Ok(lock)
}

impl MetaStore {
    /// Group commit's shortcut for many writes that create new keys in one
    /// bucket: one statement per table for all of them instead of several per
    /// write. Returns each object's version id, or `None` for one the shortcut
    /// did not write — its key exists, it repeats a key of the batch, or the
    /// bucket's settings (versioning, quota, Object Lock) need the full path —
    /// which the caller then writes with `upsert_object_tx` in the same
    /// transaction.
    pub(super) async fn create_objects_tx(
        &self,
        tx: &mut WriteTx<'_>,
        bucket: &str,
        objects: &[&ObjectMeta],
    ) -> MetaResult<Vec<Option<String>>> {
        let mut created = vec![None; objects.len()];
        let config = match write_config_tx(tx, bucket).await {
            Ok(config) => config,
            Err(MetaError::NoSuchBucket(_)) => return Ok(created),
            Err(e) => return Err(e),
        };
        if config.versioning != Versioning::Unversioned
            || config.quota.is_some()
            || config.object_lock.is_some()
        {
            return Ok(created);
        }
        let mut keys = std::collections::HashSet::new();
        let mut rows = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            if object.bucket != bucket || !object.lock.is_empty() || !keys.insert(&object.key) {
                continue;
            }
            let mut new = as_new_version(object, Versioning::Unversioned, ObjectLock::default());
            // What `next_seq_tx` gives a new key of a never-versioned bucket.
            new.seq = next_seq_tx(tx, bucket, &new.key, Versioning::Unversioned, None).await?;
            tx.touch(bucket, &new.key);
            rows.push((i, new));
        }
        let inserted = insert_rows(
            tx,
            &format!("INSERT INTO objects ({OBJECT_COLUMNS})"),
            "ON CONFLICT (bucket, key) DO NOTHING RETURNING key",
            rows.iter().map(|(_, new)| object_row(new)),
        )
        .await?;
        let inserted: std::collections::HashSet<Vec<u8>> = inserted
            .iter()
            .map(|row| row.try_get::<Vec<u8>, _>("key"))
            .collect::<Result<_, _>>()?;
        let mut segments = Vec::new();
        let mut delta = UsageDelta::default();
        for (i, new) in rows {
            if inserted.contains(new.key.as_bytes()) {
                delta += UsageDelta::adding(&new);
                segments.extend(new.segments.iter().cloned());
                created[i] = Some(new.version_id);
            }
        }
        register_blobs_tx(tx, &segments).await?;
        apply_usage_under_quota_tx(tx, bucket, delta, None).await?;
        Ok(created)
    }
}

/// What happens to a version that stops being current: kept as a noncurrent
/// version when versioning keeps it, otherwise its blobs become garbage.
/// Returns the change to the bucket's usage.
pub(super) async fn retire_tx(
    tx: &mut WriteTx<'_>,
    old: ObjectMeta,
    versioning: Versioning,
) -> MetaResult<UsageDelta> {
    let kept = match versioning {
        Versioning::Enabled => true,
        Versioning::Suspended => old.version_id != NULL_VERSION,
        Versioning::Unversioned => false,
    };
    if kept {
        insert_version_row(tx, &old, super::now_millis()).await?;
        Ok(UsageDelta::default())
    } else {
        mark_garbage_tx(tx, &old.blob_ids()).await?;
        Ok(UsageDelta::removing(&old))
    }
}

/// While versioning is suspended a write replaces the key's `null` version
/// wherever it is.
async fn drop_null_version_tx(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    key: &str,
) -> MetaResult<UsageDelta> {
    let row = sqlx::query(&format!(
        "SELECT {OBJECT_COLUMNS}, delete_marker FROM object_versions
         WHERE bucket = $1 AND key = $2 AND version_id = $3"
    ))
    .bind(bucket)
    .bind(key.as_bytes().to_vec())
    .bind(NULL_VERSION)
    .fetch_optional(&mut ***tx)
    .await?;
    if let Some(row) = row {
        let old = object_from_row(&row)?;
        delete_version_row(tx, bucket, key, NULL_VERSION).await?;
        mark_garbage_tx(tx, &old.blob_ids()).await?;
        return Ok(UsageDelta::removing(&old));
    }
    Ok(UsageDelta::default())
}

/// The next `seq` of a key: above every version it has, and normally the
/// current time in microseconds.
async fn next_seq_tx(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    key: &str,
    versioning: Versioning,
    current: Option<&ObjectMeta>,
) -> MetaResult<i64> {
    // A bucket that never had versioning has no noncurrent versions to be above
    // (versioning cannot be turned off once on), so it needs no query.
    let newest = match versioning {
        Versioning::Unversioned => None,
        _ => {
            let (newest,): (Option<i64>,) = sqlx::query_as(
                "SELECT MAX(seq) FROM object_versions WHERE bucket = $1 AND key = $2",
            )
            .bind(bucket)
            .bind(key.as_bytes().to_vec())
            .fetch_one(&mut ***tx)
            .await?;
            newest
        }
    };
    let floor = newest
        .into_iter()
        .chain(current.map(|c| c.seq))
        .max()
        .unwrap_or(0);
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
    Ok(now.max(floor + 1))
}

pub(super) async fn delete_current_row(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    key: &str,
) -> MetaResult<()> {
    tx.touch(bucket, key);
    sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .execute(&mut ***tx)
        .await?;
    Ok(())
}

pub(super) async fn delete_version_row(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> MetaResult<()> {
    sqlx::query("DELETE FROM object_versions WHERE bucket = $1 AND key = $2 AND version_id = $3")
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .bind(version_id)
        .execute(&mut ***tx)
        .await?;
    Ok(())
}

/// Stores a noncurrent version or a delete marker.
pub(super) async fn insert_version_row(
    tx: &mut WriteTx<'_>,
    version: &ObjectMeta,
    noncurrent_since: i64,
) -> MetaResult<()> {
    sqlx::query(&format!(
        "INSERT INTO object_versions ({OBJECT_COLUMNS}, delete_marker, noncurrent_since)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&version.bucket)
    .bind(version.key.as_bytes().to_vec())
    .bind(&version.version_id)
    .bind(version.seq)
    .bind(version.size as i64)
    .bind(&version.etag)
    .bind(version.last_modified)
    .bind(to_json(&version.headers))
    .bind(to_json(&version.checksum))
    .bind(to_json(&version.segments))
    .bind(to_json(&version.tags))
    .bind(to_json(&version.lock))
    .bind(i64::from(version.delete_marker))
    .bind(noncurrent_since)
    .execute(&mut ***tx)
    .await?;
    Ok(())
}

pub(super) async fn insert_object_row(
    tx: &mut WriteTx<'_>,
    object: &ObjectMeta,
) -> MetaResult<u64> {
    tx.touch(&object.bucket, &object.key);
    let inserted = insert_rows(
        tx,
        &format!("INSERT INTO objects ({OBJECT_COLUMNS})"),
        "ON CONFLICT (bucket, key) DO NOTHING RETURNING version_id",
        [object_row(object)],
    )
    .await?;
    Ok(inserted.len() as u64)
}

/// The values of an `objects` row, in `OBJECT_COLUMNS` order.
fn object_row(object: &ObjectMeta) -> Vec<Value> {
    vec![
        Value::Text(object.bucket.clone()),
        Value::Bytes(object.key.as_bytes().to_vec()),
        Value::Text(object.version_id.clone()),
        Value::Int(object.seq),
        Value::Int(object.size as i64),
        Value::Text(object.etag.clone()),
        Value::Int(object.last_modified),
        Value::Text(to_json(&object.headers)),
        Value::Text(to_json(&object.checksum)),
        Value::Text(to_json(&object.segments)),
        Value::Text(to_json(&object.tags)),
        Value::Text(to_json(&object.lock)),
    ]
}

/// One value of a row written by [`insert_rows`].
pub(super) enum Value {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

/// Rows written per statement: well under both engines' parameter limits.
const ROWS_PER_INSERT: usize = 64;

/// `{head} VALUES (..), (..) {tail}` for `rows` (each of the same width), in as
/// few statements as the parameter limits allow; returns what `tail`'s
/// `RETURNING` returns. Many rows per statement instead of a statement per row:
/// each statement is a round trip (to Postgres, or to SQLite's worker thread).
pub(super) async fn insert_rows(
    tx: &mut WriteTx<'_>,
    head: &str,
    tail: &str,
    rows: impl IntoIterator<Item = Vec<Value>>,
) -> MetaResult<Vec<sqlx::any::AnyRow>> {
    let rows: Vec<Vec<Value>> = rows.into_iter().collect();
    let mut returned = Vec::new();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("{head} VALUES ");
        let mut n = 0;
        for (i, row) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for j in 0..row.len() {
                n += 1;
                sql.push_str(&format!("{}${n}", if j == 0 { "" } else { ", " }));
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(tail);
        let mut query = sqlx::query(&sql);
        for value in chunk.iter().flatten() {
            query = match value {
                Value::Text(v) => query.bind(v.clone()),
                Value::Int(v) => query.bind(*v),
                Value::Bytes(v) => query.bind(v.clone()),
            };
        }
        returned.extend(query.fetch_all(&mut ***tx).await?);
    }
    Ok(returned)
}

async fn update_object_row(tx: &mut WriteTx<'_>, object: &ObjectMeta) -> MetaResult<u64> {
    tx.touch(&object.bucket, &object.key);
    let result = sqlx::query(
        "UPDATE objects SET version_id = $3, seq = $4, size = $5, etag = $6, last_modified = $7,
         headers = $8, checksum = $9, segments = $10, tags = $11, object_lock = $12
         WHERE bucket = $1 AND key = $2",
    )
    .bind(&object.bucket)
    .bind(object.key.as_bytes().to_vec())
    .bind(&object.version_id)
    .bind(object.seq)
    .bind(object.size as i64)
    .bind(&object.etag)
    .bind(object.last_modified)
    .bind(to_json(&object.headers))
    .bind(to_json(&object.checksum))
    .bind(to_json(&object.segments))
    .bind(to_json(&object.tags))
    .bind(to_json(&object.lock))
    .execute(&mut ***tx)
    .await?;
    Ok(result.rows_affected())
}

/// Records blobs as live (referenced by a committed row), with their replicas
/// and the bytes of small ones: one statement per table for all of them.
pub(super) async fn register_blobs_tx(
    tx: &mut WriteTx<'_>,
    segments: &[Segment],
) -> MetaResult<()> {
    // A blob named twice (parts copied from one source) is one row; Postgres
    // refuses to upsert a row twice in one statement.
    let mut seen = std::collections::HashSet::new();
    let segments: Vec<&Segment> = segments.iter().filter(|s| seen.insert(&s.blob)).collect();
    if segments.is_empty() {
        return Ok(());
    }
    let now = super::now_millis();
    if let ([segment], Backend::Postgres) = (segments.as_slice(), tx.backend)
        && let Some(data) = &segment.inline
        && segment.replicas.is_empty()
    {
        // Both rows in one statement: one round trip fewer per small PUT.
        sqlx::query(
            "WITH blob AS (
               INSERT INTO blobs (id, size, created_at, garbage) VALUES ($1, $2, $3, 0)
               ON CONFLICT (id) DO UPDATE SET garbage = 0)
             INSERT INTO inline_blobs (id, data) VALUES ($1, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&segment.blob)
        .bind(segment.stored_size.unwrap_or(segment.size) as i64)
        .bind(now)
        .bind(data.clone())
        .execute(&mut ***tx)
        .await?;
        return Ok(());
    }
    insert_rows(
        tx,
        "INSERT INTO blobs (id, size, created_at, garbage)",
        "ON CONFLICT (id) DO UPDATE SET garbage = 0",
        segments.iter().map(|s| {
            vec![
                Value::Text(s.blob.clone()),
                Value::Int(s.stored_size.unwrap_or(s.size) as i64),
                Value::Int(now),
                Value::Int(0),
            ]
        }),
    )
    .await?;
    let (erasure, replicated): (Vec<&&Segment>, Vec<&&Segment>) =
        segments.iter().partition(|s| super::is_erasure(&s.blob));
    // An erasure-coded blob's `replicas[i]` holds shard i (empty: not written).
    let shards: Vec<Vec<Value>> = erasure
        .iter()
        .flat_map(|s| {
            s.replicas
                .iter()
                .enumerate()
                .filter(|(_, node)| !node.is_empty())
                .map(|(i, node)| {
                    vec![
                        Value::Text(s.blob.clone()),
                        Value::Text(node.clone()),
                        Value::Int(i as i64),
                    ]
                })
        })
        .collect();
    if !shards.is_empty() {
        insert_rows(
            tx,
            "INSERT INTO blob_replicas (blob_id, node_id, shard)",
            "ON CONFLICT (blob_id, node_id) DO NOTHING",
            shards,
        )
        .await?;
    }
    let replicas: Vec<Vec<Value>> = replicated
        .iter()
        .flat_map(|s| {
            s.replicas
                .iter()
                .map(|node| vec![Value::Text(s.blob.clone()), Value::Text(node.clone())])
        })
        .collect();
    if !replicas.is_empty() {
        insert_rows(
            tx,
            "INSERT INTO blob_replicas (blob_id, node_id)",
            "ON CONFLICT (blob_id, node_id) DO NOTHING",
            replicas,
        )
        .await?;
    }
    let inline: Vec<Vec<Value>> = segments
        .iter()
        .filter_map(|s| {
            let data = s.inline.as_ref()?;
            Some(vec![
                Value::Text(s.blob.clone()),
                Value::Bytes(data.clone()),
            ])
        })
        .collect();
    if !inline.is_empty() {
        insert_rows(
            tx,
            "INSERT INTO inline_blobs (id, data)",
            "ON CONFLICT (id) DO NOTHING",
            inline,
        )
        .await?;
    }
    Ok(())
}

/// Hands blobs no longer referenced to the garbage collector.
pub(super) async fn mark_garbage_tx(tx: &mut WriteTx<'_>, blobs: &[String]) -> MetaResult<()> {
    for blob in blobs {
        sqlx::query("UPDATE blobs SET garbage = 1 WHERE id = $1")
            .bind(blob)
            .execute(&mut ***tx)
            .await?;
    }
    Ok(())
}
