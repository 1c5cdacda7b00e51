//! Buckets and their per-bucket configuration documents (policy, and the settings
//! later features give effect to: versioning, lifecycle, CORS, quota, ...).

use sqlx::Row;

use super::{MetaError, MetaResult, MetaStore, WriteTx, now_millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    /// Who owns the bucket: an access key id, or `k8s:<namespace>/<name>` for
    /// buckets the operator manages.
    pub owner: String,
    pub region: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewBucket {
    pub name: String,
    pub owner: String,
    pub region: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketUsage {
    pub objects: u64,
    pub bytes: u64,
}

/// The configuration kind under which a bucket policy is stored.
pub const POLICY: &str = "policy";

/// The configuration kind under which a bucket's default encryption is stored.
pub const ENCRYPTION: &str = "encryption";

/// A bucket and some of its configuration documents (see
/// [`MetaStore::bucket_with_configs`]).
#[derive(Debug, Clone)]
pub struct BucketWithConfigs {
    pub bucket: Bucket,
    configs: Vec<(String, String)>,
}

impl BucketWithConfigs {
    /// The document of `kind`, if the bucket has one (and it was asked for).
    pub fn config(&self, kind: &str) -> Option<&str> {
        self.configs
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
    }

    /// The bucket's data protection (when `DATA_PROTECTION` was asked for);
    /// `None`: the cluster default. An unreadable document counts as unset.
    pub fn data_protection(&self) -> Option<super::DataProtection> {
        let text = self.config(super::DATA_PROTECTION)?;
        super::DataProtection::from_document(text)
            .inspect_err(|e| tracing::warn!(bucket = self.bucket.name, error = %e, "ignoring data protection"))
            .ok()
    }

    /// The bucket's quota (when `QUOTA` was asked for).
    pub fn quota(&self) -> MetaResult<Option<super::Quota>> {
        self.config(super::QUOTA).map(super::from_json).transpose()
    }
}

fn bucket_from_row(row: &sqlx::any::AnyRow) -> MetaResult<Bucket> {
    Ok(Bucket {
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        region: row.try_get("region")?,
        created_at: row.try_get("created_at")?,
    })
}

impl MetaStore {
    /// Creates a bucket; `BucketAlreadyExists` when the name is taken (the caller
    /// compares owners to tell "already owned by you").
    pub async fn create_bucket(&self, bucket: &NewBucket) -> MetaResult<Bucket> {
        self.create_bucket_with(bucket, false).await
    }

    /// Creates a bucket with Object Lock enabled (and so versioning enabled for
    /// good), in one transaction: no moment exists where it takes unlocked writes.
    pub async fn create_bucket_with_object_lock(&self, bucket: &NewBucket) -> MetaResult<Bucket> {
        self.create_bucket_with(bucket, true).await
    }

    async fn create_bucket_with(
        &self,
        bucket: &NewBucket,
        object_lock: bool,
    ) -> MetaResult<Bucket> {
        let mut tx = self.begin_write().await?;
        let created_at = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO buckets (name, owner, region, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&bucket.name)
        .bind(&bucket.owner)
        .bind(&bucket.region)
        .bind(created_at)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(MetaError::BucketAlreadyExists(bucket.name.clone()));
        }
        if object_lock {
            let versioning = r#"{"Status":"Enabled"}"#;
            put_config_tx(&mut tx, &bucket.name, super::VERSIONING, versioning).await?;
            let lock = super::lock::enabled_document();
            put_config_tx(&mut tx, &bucket.name, super::OBJECT_LOCK, &lock).await?;
        }
        tx.commit().await?;
        Ok(Bucket {
            name: bucket.name.clone(),
            owner: bucket.owner.clone(),
            region: bucket.region.clone(),
            created_at,
        })
    }

    pub async fn get_bucket(&self, name: &str) -> MetaResult<Option<Bucket>> {
        let row =
            sqlx::query("SELECT name, owner, region, created_at FROM buckets WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(bucket_from_row).transpose()
    }

    /// The bucket with the configuration documents of the given kinds it has,
    /// or `NoSuchBucket`: one query where a request needs several settings.
    pub async fn bucket_with_configs(
        &self,
        name: &str,
        kinds: &[&str],
    ) -> MetaResult<BucketWithConfigs> {
        let placeholders: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT b.name, b.owner, b.region, b.created_at, c.kind, c.value FROM buckets b
             LEFT JOIN bucket_configs c ON c.bucket = b.name AND c.kind IN ({})
             WHERE b.name = $1",
            match placeholders.is_empty() {
                true => "NULL".to_owned(),
                false => placeholders.join(", "),
            }
        );
        let mut query = sqlx::query(&sql).bind(name);
        for kind in kinds {
            query = query.bind(*kind);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let Some(first) = rows.first() else {
            return Err(MetaError::NoSuchBucket(name.to_owned()));
        };
        let mut configs = Vec::new();
        for row in &rows {
            let kind: Option<String> = row.try_get("kind")?;
            let value: Option<String> = row.try_get("value")?;
            if let (Some(kind), Some(value)) = (kind, value) {
                configs.push((kind, value));
            }
        }
        Ok(BucketWithConfigs {
            bucket: bucket_from_row(first)?,
            configs,
        })
    }

    /// The bucket, or `NoSuchBucket`.
    pub async fn require_bucket(&self, name: &str) -> MetaResult<Bucket> {
        self.get_bucket(name)
            .await?
            .ok_or_else(|| MetaError::NoSuchBucket(name.to_owned()))
    }

    /// All buckets in name order.
    pub async fn list_buckets(&self) -> MetaResult<Vec<Bucket>> {
        let rows = sqlx::query("SELECT name, owner, region, created_at FROM buckets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(bucket_from_row).collect()
    }

    /// Hands a bucket to a new owner (the operator adopting an existing bucket).
    pub async fn set_bucket_owner(&self, name: &str, owner: &str) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query("UPDATE buckets SET owner = $1 WHERE name = $2")
            .bind(owner)
            .bind(name)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(MetaError::NoSuchBucket(name.to_owned()));
        }
        tx.commit().await
    }

    /// Deletes an empty bucket. Unfinished multipart uploads do not keep a bucket
    /// alive: they are aborted and their parts' blobs handed to garbage collection.
    pub async fn delete_bucket(&self, name: &str) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM buckets WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
        if exists.is_none() {
            return Err(MetaError::NoSuchBucket(name.to_owned()));
        }
        let any_object = sqlx::query("SELECT 1 FROM objects WHERE bucket = $1 LIMIT 1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
        let any_version = sqlx::query("SELECT 1 FROM object_versions WHERE bucket = $1 LIMIT 1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
        if any_object.is_some() || any_version.is_some() {
            return Err(MetaError::BucketNotEmpty(name.to_owned()));
        }
        sqlx::query(
            "UPDATE blobs SET garbage = 1 WHERE id IN (SELECT p.blob_id FROM parts p
             JOIN multipart_uploads u ON u.upload_id = p.upload_id WHERE u.bucket = $1)",
        )
        .bind(name)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM parts WHERE upload_id IN (SELECT upload_id FROM multipart_uploads WHERE bucket = $1)")
            .bind(name)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM multipart_uploads WHERE bucket = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM bucket_configs WHERE bucket = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM bucket_usage_shards WHERE bucket = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM buckets WHERE name = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?;
        tx.commit().await
    }

    /// Reads one configuration document of a bucket (`None` when unset).
    pub async fn get_bucket_config(&self, bucket: &str, kind: &str) -> MetaResult<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT value FROM bucket_configs WHERE bucket = $1 AND kind = $2")
                .bind(bucket)
                .bind(kind)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Sets (`Some`) or removes (`None`) one configuration document of a bucket.
    pub async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: &str,
        value: Option<&str>,
    ) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM buckets WHERE name = $1")
            .bind(bucket)
            .fetch_optional(&mut **tx)
            .await?;
        if exists.is_none() {
            return Err(MetaError::NoSuchBucket(bucket.to_owned()));
        }
        // Every path that changes these (the S3 API and the operator) keeps
        // Object Lock's invariants, checked in the transaction that writes them.
        match kind {
            super::VERSIONING => {
                let state = super::versions::Versioning::parse(value)?;
                super::lock::refuse_versioning_change_tx(self, &mut tx, bucket, state).await?;
            }
            super::OBJECT_LOCK => {
                super::lock::check_lock_document_tx(self, &mut tx, bucket, value).await?;
            }
            super::DATA_PROTECTION => super::data_protection::check_document(value)?,
            _ => {}
        }
        match value {
            Some(value) => put_config_tx(&mut tx, bucket, kind, value).await?,
            None => {
                sqlx::query("DELETE FROM bucket_configs WHERE bucket = $1 AND kind = $2")
                    .bind(bucket)
                    .bind(kind)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        tx.commit().await
    }

    /// Bucket policy document, when one is set.
    pub async fn get_bucket_policy(&self, bucket: &str) -> MetaResult<Option<String>> {
        self.get_bucket_config(bucket, POLICY).await
    }

    pub async fn set_bucket_policy(&self, bucket: &str, policy: Option<&str>) -> MetaResult<()> {
        self.set_bucket_config(bucket, POLICY, policy).await
    }

    /// Versions (current and noncurrent, not delete markers) and their bytes in a
    /// bucket: counters kept exactly by every write, read in one row.
    pub async fn bucket_usage(&self, bucket: &str) -> MetaResult<BucketUsage> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT CAST(SUM(objects) AS BIGINT), CAST(SUM(bytes) AS BIGINT)
             FROM bucket_usage_shards WHERE bucket = $1 HAVING COUNT(*) > 0",
        )
        .bind(bucket)
        .fetch_optional(&self.pool)
        .await?;
        let (objects, bytes) = row.unwrap_or((0, 0));
        Ok(BucketUsage {
            objects: objects.max(0) as u64,
            bytes: bytes.max(0) as u64,
        })
    }
}

/// Reads one configuration document inside a write transaction.
pub(super) async fn config_tx(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    kind: &str,
) -> MetaResult<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT value FROM bucket_configs WHERE bucket = $1 AND kind = $2")
            .bind(bucket)
            .bind(kind)
            .fetch_optional(&mut ***tx)
            .await?;
    Ok(row.map(|(v,)| v))
}

/// Stores one configuration document inside a write transaction.
pub(super) async fn put_config_tx(
    tx: &mut WriteTx<'_>,
    bucket: &str,
    kind: &str,
    value: &str,
) -> MetaResult<()> {
    sqlx::query(
        "INSERT INTO bucket_configs (bucket, kind, value) VALUES ($1, $2, $3)
         ON CONFLICT (bucket, kind) DO UPDATE SET value = excluded.value",
    )
    .bind(bucket)
    .bind(kind)
    .bind(value)
    .execute(&mut ***tx)
    .await?;
    Ok(())
}
