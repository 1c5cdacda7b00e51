//! Object rows: the current version of each key, with its headers, checksums and
//! the blob segments that hold its bytes. Committing a row is what makes an
//! object visible; blobs it replaces are handed to garbage collection in the same
//! transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// The ETag without quotes.
    pub etag: String,
    pub last_modified: i64,
    pub headers: ObjectHeaders,
    pub checksum: ObjectChecksum,
    pub segments: Vec<Segment>,
}

impl ObjectMeta {
    /// Number of multipart parts, `None` for single-PUT objects.
    pub fn parts_count(&self) -> Option<usize> {
        self.etag.contains('-').then_some(self.segments.len())
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
}

pub(super) const OBJECT_COLUMNS: &str =
    "bucket, key, size, etag, last_modified, headers, checksum, segments";

pub(super) fn object_from_row(row: &sqlx::any::AnyRow) -> MetaResult<ObjectMeta> {
    let key: Vec<u8> = row.try_get("key")?;
    let size: i64 = row.try_get("size")?;
    Ok(ObjectMeta {
        bucket: row.try_get("bucket")?,
        key: String::from_utf8(key).map_err(|e| MetaError::Corrupt(e.to_string()))?,
        size: size.max(0) as u64,
        etag: row.try_get("etag")?,
        last_modified: row.try_get("last_modified")?,
        headers: from_json(row.try_get::<&str, _>("headers")?)?,
        checksum: from_json(row.try_get::<&str, _>("checksum")?)?,
        segments: from_json(row.try_get::<&str, _>("segments")?)?,
    })
}

impl MetaStore {
    pub async fn get_object(&self, bucket: &str, key: &str) -> MetaResult<Option<ObjectMeta>> {
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND key = $2"
        ))
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(object_from_row).transpose()
    }

    /// Makes `object` the current version of its key. Its blobs must already be
    /// durable. Fails with `NoSuchBucket`, or `PreconditionFailed`/`NoSuchKey`
    /// when `condition` does not hold.
    pub async fn put_object(
        &self,
        object: &ObjectMeta,
        condition: &WriteCondition,
    ) -> MetaResult<()> {
        if let Some(group) = &self.group {
            return group.put_object(object, condition).await;
        }
        let mut tx = self.begin_write().await?;
        self.bucket_exists_tx(&mut tx, &object.bucket).await?;
        self.upsert_object_tx(&mut tx, object, condition).await?;
        tx.commit().await
    }

    /// Removes the current version of a key; returns whether one existed.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> MetaResult<bool> {
        let mut tx = self.begin_write().await?;
        let existing = self.lock_object_tx(&mut tx, bucket, key).await?;
        let Some(existing) = existing else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key.as_bytes().to_vec())
            .execute(&mut **tx)
            .await?;
        let blobs: Vec<String> = existing.segments.into_iter().map(|s| s.blob).collect();
        mark_garbage_tx(&mut tx, &blobs).await?;
        tx.commit().await?;
        Ok(true)
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
    async fn lock_object_tx(
        &self,
        tx: &mut WriteTx<'_>,
        bucket: &str,
        key: &str,
    ) -> MetaResult<Option<ObjectMeta>> {
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

    pub(super) async fn upsert_object_tx(
        &self,
        tx: &mut WriteTx<'_>,
        object: &ObjectMeta,
        condition: &WriteCondition,
    ) -> MetaResult<()> {
        // Two attempts: a concurrent insert of the same new key (Postgres) makes
        // the first INSERT a no-op; the second attempt then locks that row.
        for _ in 0..2 {
            let existing = self.lock_object_tx(tx, &object.bucket, &object.key).await?;
            match (&existing, condition) {
                (Some(_), WriteCondition::IfNoneMatchAny) => {
                    return Err(MetaError::PreconditionFailed);
                }
                (None, WriteCondition::IfMatch(_)) => return Err(MetaError::NoSuchKey),
                (Some(current), WriteCondition::IfMatch(etag)) if current.etag != *etag => {
                    return Err(MetaError::PreconditionFailed);
                }
                _ => {}
            }
            let written = match &existing {
                Some(_) => update_object_row(tx, object).await?,
                None => insert_object_row(tx, object).await?,
            };
            if written == 0 {
                continue;
            }
            register_blobs_tx(tx, &object.segments).await?;
            if let Some(old) = existing {
                let replaced: Vec<String> = old
                    .segments
                    .into_iter()
                    .map(|s| s.blob)
                    .filter(|b| !object.segments.iter().any(|s| &s.blob == b))
                    .collect();
                mark_garbage_tx(tx, &replaced).await?;
            }
            return Ok(());
        }
        Err(MetaError::PreconditionFailed)
    }
}

async fn insert_object_row(tx: &mut WriteTx<'_>, object: &ObjectMeta) -> MetaResult<u64> {
    let result = sqlx::query(&format!(
        "INSERT INTO objects ({OBJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (bucket, key) DO NOTHING"
    ))
    .bind(&object.bucket)
    .bind(object.key.as_bytes().to_vec())
    .bind(object.size as i64)
    .bind(&object.etag)
    .bind(object.last_modified)
    .bind(to_json(&object.headers))
    .bind(to_json(&object.checksum))
    .bind(to_json(&object.segments))
    .execute(&mut ***tx)
    .await?;
    Ok(result.rows_affected())
}

async fn update_object_row(tx: &mut WriteTx<'_>, object: &ObjectMeta) -> MetaResult<u64> {
    let result = sqlx::query(
        "UPDATE objects SET size = $3, etag = $4, last_modified = $5, headers = $6, checksum = $7, segments = $8
         WHERE bucket = $1 AND key = $2",
    )
    .bind(&object.bucket)
    .bind(object.key.as_bytes().to_vec())
    .bind(object.size as i64)
    .bind(&object.etag)
    .bind(object.last_modified)
    .bind(to_json(&object.headers))
    .bind(to_json(&object.checksum))
    .bind(to_json(&object.segments))
    .execute(&mut ***tx)
    .await?;
    Ok(result.rows_affected())
}

/// Records blobs as live (referenced by a committed row).
pub(super) async fn register_blobs_tx(
    tx: &mut WriteTx<'_>,
    segments: &[Segment],
) -> MetaResult<()> {
    for segment in segments {
        sqlx::query(
            "INSERT INTO blobs (id, size, created_at, garbage) VALUES ($1, $2, $3, 0)
             ON CONFLICT (id) DO UPDATE SET garbage = 0",
        )
        .bind(&segment.blob)
        .bind(segment.size as i64)
        .bind(super::now_millis())
        .execute(&mut ***tx)
        .await?;
        super::nodes::add_replicas_tx(tx, &segment.blob, &segment.replicas).await?;
        if let Some(data) = &segment.inline {
            sqlx::query(
                "INSERT INTO inline_blobs (id, data) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&segment.blob)
            .bind(data.clone())
            .execute(&mut ***tx)
            .await?;
        }
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
