//! Multipart uploads and their parts. Completing an upload turns the chosen
//! parts' blobs into the object's segments without copying bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::list::{self, Cursor, ListPage, ListQuery, Source};
use super::lock::ObjectLock;
use super::objects::{
    ObjectHeaders, ObjectMeta, Segment, WriteCondition, mark_garbage_tx, register_blobs_tx,
};
use super::{Backend, MetaError, MetaResult, MetaStore, WriteTx, from_json, to_json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated: i64,
    pub owner: String,
    pub headers: ObjectHeaders,
    /// Tags the object gets on completion (`x-amz-tagging`).
    pub tags: BTreeMap<String, String>,
    pub checksum_algorithm: Option<String>,
    /// `COMPOSITE` or `FULL_OBJECT` when there is an algorithm.
    pub checksum_type: Option<String>,
    /// Object Lock retention and legal hold the object gets on completion.
    pub lock: ObjectLock,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub part_number: u32,
    pub size: u64,
    /// Unquoted hex MD5 of the part.
    pub etag: String,
    pub blob_id: String,
    /// Base64 additional checksum of the part, when the upload has an algorithm.
    pub checksum: Option<String>,
    pub last_modified: i64,
    /// Nodes holding the part's blob when it is recorded (see `Segment::replicas`);
    /// empty when read back.
    pub replicas: Vec<String>,
    /// Bytes the part's blob holds, when that differs from `size` (encrypted).
    #[serde(skip)]
    pub stored_size: Option<u64>,
}

/// One page of `ListMultipartUploads`.
pub type UploadsPage = ListPage<MultipartUpload>;

const UPLOAD_COLUMNS: &str = "upload_id, bucket, key, initiated, owner, headers, checksum_algorithm, checksum_type, tags, object_lock";

fn upload_from_row(row: &sqlx::any::AnyRow) -> MetaResult<MultipartUpload> {
    let key: Vec<u8> = row.try_get("key")?;
    Ok(MultipartUpload {
        upload_id: row.try_get("upload_id")?,
        bucket: row.try_get("bucket")?,
        key: String::from_utf8(key).map_err(|e| MetaError::Corrupt(e.to_string()))?,
        initiated: row.try_get("initiated")?,
        owner: row.try_get("owner")?,
        headers: from_json(row.try_get::<&str, _>("headers")?)?,
        checksum_algorithm: row.try_get("checksum_algorithm")?,
        checksum_type: row.try_get("checksum_type")?,
        tags: from_json(row.try_get::<&str, _>("tags")?)?,
        lock: from_json(row.try_get::<&str, _>("object_lock")?)?,
    })
}

fn part_from_row(row: &sqlx::any::AnyRow) -> MetaResult<Part> {
    let number: i64 = row.try_get("part_number")?;
    let size: i64 = row.try_get("size")?;
    let checksum: String = row.try_get("checksum")?;
    Ok(Part {
        part_number: u32::try_from(number).map_err(|e| MetaError::Corrupt(e.to_string()))?,
        size: size.max(0) as u64,
        etag: row.try_get("etag")?,
        blob_id: row.try_get("blob_id")?,
        checksum: (!checksum.is_empty()).then_some(checksum),
        last_modified: row.try_get("last_modified")?,
        replicas: Vec::new(),
        stored_size: None,
    })
}

const PART_COLUMNS: &str = "part_number, size, etag, blob_id, checksum, last_modified";

impl MetaStore {
    pub async fn create_multipart_upload(&self, upload: &MultipartUpload) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        self.bucket_exists_tx(&mut tx, &upload.bucket).await?;
        sqlx::query(&format!(
            "INSERT INTO multipart_uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&upload.upload_id)
        .bind(&upload.bucket)
        .bind(upload.key.as_bytes().to_vec())
        .bind(upload.initiated)
        .bind(&upload.owner)
        .bind(to_json(&upload.headers))
        .bind(upload.checksum_algorithm.as_deref())
        .bind(upload.checksum_type.as_deref())
        .bind(to_json(&upload.tags))
        .bind(to_json(&upload.lock))
        .execute(&mut **tx)
        .await?;
        tx.commit().await
    }

    /// The upload, when it exists and belongs to `bucket`/`key`.
    pub async fn get_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> MetaResult<MultipartUpload> {
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM multipart_uploads WHERE upload_id = $1"
        ))
        .bind(upload_id)
        .fetch_optional(&self.pool)
        .await?;
        let upload = row.as_ref().map(upload_from_row).transpose()?;
        match upload {
            Some(u) if u.bucket == bucket && u.key == key => Ok(u),
            _ => Err(MetaError::NoSuchUpload),
        }
    }

    /// Records a durable part, replacing an earlier upload of the same number.
    pub async fn put_part(&self, upload_id: &str, part: &Part) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        lock_upload_tx(self.backend, &mut tx, upload_id).await?;
        let previous: Option<(String,)> =
            sqlx::query_as("SELECT blob_id FROM parts WHERE upload_id = $1 AND part_number = $2")
                .bind(upload_id)
                .bind(i64::from(part.part_number))
                .fetch_optional(&mut **tx)
                .await?;
        sqlx::query(&format!(
            "INSERT INTO parts (upload_id, {PART_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (upload_id, part_number) DO UPDATE SET size = excluded.size, etag = excluded.etag,
             blob_id = excluded.blob_id, checksum = excluded.checksum, last_modified = excluded.last_modified"
        ))
        .bind(upload_id)
        .bind(i64::from(part.part_number))
        .bind(part.size as i64)
        .bind(&part.etag)
        .bind(&part.blob_id)
        .bind(part.checksum.clone().unwrap_or_default())
        .bind(part.last_modified)
        .execute(&mut **tx)
        .await?;
        let segment = Segment {
            blob: part.blob_id.clone(),
            size: part.size,
            checksum: None,
            replicas: part.replicas.clone(),
            inline: None,
            stored_size: part.stored_size,
        };
        register_blobs_tx(&mut tx, std::slice::from_ref(&segment)).await?;
        if let Some((old,)) = previous {
            mark_garbage_tx(&mut tx, &[old]).await?;
        }
        tx.commit().await
    }

    /// Parts in number order, starting after `marker`, at most `max` (+1 to tell truncation).
    pub async fn list_parts(
        &self,
        upload_id: &str,
        marker: u32,
        max: usize,
    ) -> MetaResult<Vec<Part>> {
        let rows = sqlx::query(&format!(
            "SELECT {PART_COLUMNS} FROM parts WHERE upload_id = $1 AND part_number > $2
             ORDER BY part_number LIMIT $3"
        ))
        .bind(upload_id)
        .bind(i64::from(marker))
        .bind(max as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(part_from_row).collect()
    }

    /// Drops an upload and hands its parts' blobs to garbage collection.
    pub async fn abort_multipart_upload(&self, upload_id: &str) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        lock_upload_tx(self.backend, &mut tx, upload_id).await?;
        let blobs: Vec<(String,)> =
            sqlx::query_as("SELECT blob_id FROM parts WHERE upload_id = $1")
                .bind(upload_id)
                .fetch_all(&mut **tx)
                .await?;
        let blobs: Vec<String> = blobs.into_iter().map(|(b,)| b).collect();
        mark_garbage_tx(&mut tx, &blobs).await?;
        delete_upload_tx(&mut tx, upload_id).await?;
        tx.commit().await
    }

    /// Atomically makes `object` (whose segments are parts of the upload) the
    /// current version and ends the upload; unused parts become garbage. Returns
    /// the new version's id.
    pub async fn complete_multipart_upload(
        &self,
        upload_id: &str,
        object: &ObjectMeta,
        condition: &WriteCondition,
    ) -> MetaResult<String> {
        let mut tx = self.begin_write().await?;
        lock_upload_tx(self.backend, &mut tx, upload_id).await?;
        let version_id = self.upsert_object_tx(&mut tx, object, condition).await?;
        let blobs: Vec<(String,)> =
            sqlx::query_as("SELECT blob_id FROM parts WHERE upload_id = $1")
                .bind(upload_id)
                .fetch_all(&mut **tx)
                .await?;
        let unused: Vec<String> = blobs
            .into_iter()
            .map(|(b,)| b)
            .filter(|b| !object.segments.iter().any(|s| &s.blob == b))
            .collect();
        mark_garbage_tx(&mut tx, &unused).await?;
        delete_upload_tx(&mut tx, upload_id).await?;
        tx.commit().await?;
        Ok(version_id)
    }

    /// `ListMultipartUploads`: uploads ordered by key then upload id.
    pub async fn list_multipart_uploads(
        &self,
        bucket: &str,
        query: &ListQuery,
        upload_id_marker: Option<&str>,
    ) -> MetaResult<UploadsPage> {
        let source = UploadSource {
            store: self,
            bucket,
        };
        let start = match (&query.start_after, upload_id_marker) {
            (Some(key), Some(id)) => Some(Cursor::After(key.clone(), Some(id.to_owned()))),
            (Some(key), None) => Some(Cursor::After(key.clone(), None)),
            (None, _) => None,
        };
        list::walk(&source, query, start).await
    }
}

async fn lock_upload_tx(backend: Backend, tx: &mut WriteTx<'_>, upload_id: &str) -> MetaResult<()> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let row = sqlx::query(&format!(
        "SELECT 1 FROM multipart_uploads WHERE upload_id = $1{lock}"
    ))
    .bind(upload_id)
    .fetch_optional(&mut ***tx)
    .await?;
    row.map(|_| ()).ok_or(MetaError::NoSuchUpload)
}

async fn delete_upload_tx(tx: &mut WriteTx<'_>, upload_id: &str) -> MetaResult<()> {
    sqlx::query("DELETE FROM parts WHERE upload_id = $1")
        .bind(upload_id)
        .execute(&mut ***tx)
        .await?;
    sqlx::query("DELETE FROM multipart_uploads WHERE upload_id = $1")
        .bind(upload_id)
        .execute(&mut ***tx)
        .await?;
    Ok(())
}

struct UploadSource<'a> {
    store: &'a MetaStore,
    bucket: &'a str,
}

#[async_trait::async_trait]
impl Source for UploadSource<'_> {
    type Item = MultipartUpload;

    fn key(item: &MultipartUpload) -> &[u8] {
        item.key.as_bytes()
    }

    fn cursor_after(item: &MultipartUpload) -> Cursor {
        Cursor::After(item.key.as_bytes().to_vec(), Some(item.upload_id.clone()))
    }

    async fn fetch(
        &self,
        from: &Cursor,
        upper: Option<&[u8]>,
        limit: usize,
    ) -> MetaResult<Vec<MultipartUpload>> {
        let (clause, mut args) = list::range_clause(self.bucket, from, upper, "upload_id");
        args.push(list::Arg::Int(limit as i64));
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM multipart_uploads WHERE {clause} ORDER BY key, upload_id LIMIT ${}",
            args.len()
        );
        let rows = list::bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.store.pool)
            .await?;
        rows.iter().map(upload_from_row).collect()
    }
}
