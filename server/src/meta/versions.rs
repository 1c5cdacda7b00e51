//! Versioning: the bucket's versioning state, reads and deletes of one version,
//! the delete marker that hides a key, and `ListObjectVersions`, which walks the
//! current and the noncurrent versions of each key newest first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::list::{self, Cursor, ListPage, ListQuery, Source};
use super::objects::{
    Deleted, OBJECT_COLUMNS, ObjectHeaders, ObjectMeta, delete_current_row, delete_version_row,
    insert_object_row, mark_garbage_tx, object_from_row,
};
use super::usage::{UsageDelta, apply_usage_tx};
use super::{MetaError, MetaResult, MetaStore, WriteTx, from_json, to_json};

/// The configuration kind under which the versioning state is stored, as
/// `{"Status": "Enabled" | "Suspended"}` (the shape the operator writes too).
pub const VERSIONING: &str = "versioning";

/// A bucket's versioning state. Once enabled it can be suspended, never undone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Versioning {
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

#[derive(Serialize, Deserialize)]
struct VersioningDocument {
    #[serde(rename = "Status", default)]
    status: Option<String>,
}

impl Versioning {
    pub(super) fn parse(document: Option<&str>) -> MetaResult<Self> {
        let Some(text) = document else {
            return Ok(Self::Unversioned);
        };
        let doc: VersioningDocument = from_json(text)?;
        match doc.status.as_deref() {
            Some("Enabled") => Ok(Self::Enabled),
            Some("Suspended") => Ok(Self::Suspended),
            None => Ok(Self::Unversioned),
            Some(other) => Err(MetaError::Corrupt(format!("versioning status {other:?}"))),
        }
    }

    /// The S3 status string; `None` for a bucket that never had versioning.
    pub fn status(self) -> Option<&'static str> {
        match self {
            Self::Unversioned => None,
            Self::Enabled => Some("Enabled"),
            Self::Suspended => Some("Suspended"),
        }
    }
}

/// One entry of `ListObjectVersions`: a version or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub object: ObjectMeta,
    pub is_latest: bool,
}

impl MetaStore {
    pub async fn bucket_versioning(&self, bucket: &str) -> MetaResult<Versioning> {
        let text = self.get_bucket_config(bucket, VERSIONING).await?;
        Versioning::parse(text.as_deref())
    }

    /// Enables or suspends versioning (`Unversioned` is refused: there is no way
    /// back once versions may exist).
    pub async fn set_bucket_versioning(&self, bucket: &str, state: Versioning) -> MetaResult<()> {
        let Some(status) = state.status() else {
            return Err(MetaError::Corrupt(
                "versioning cannot be turned off, only suspended".to_owned(),
            ));
        };
        let doc = to_json(&VersioningDocument {
            status: Some(status.to_owned()),
        });
        self.set_bucket_config(bucket, VERSIONING, Some(&doc)).await
    }

    pub(super) async fn versioning_tx(
        &self,
        tx: &mut WriteTx<'_>,
        bucket: &str,
    ) -> MetaResult<Versioning> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT value FROM bucket_configs WHERE bucket = $1 AND kind = $2")
                .bind(bucket)
                .bind(VERSIONING)
                .fetch_optional(&mut ***tx)
                .await?;
        Versioning::parse(row.as_ref().map(|(v,)| v.as_str()))
    }

    /// One version of a key (current or not, delete markers included).
    pub async fn get_object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> MetaResult<Option<ObjectMeta>> {
        let current = self.get_object(bucket, key).await?;
        if let Some(current) = current.filter(|c| c.version_id == version_id) {
            return Ok(Some(current));
        }
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS}, delete_marker FROM object_versions
             WHERE bucket = $1 AND key = $2 AND version_id = $3"
        ))
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .bind(version_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(object_from_row).transpose()
    }

    /// The delete marker that hides a key, when its latest version is one.
    pub async fn latest_delete_marker(
        &self,
        bucket: &str,
        key: &str,
    ) -> MetaResult<Option<ObjectMeta>> {
        if self.get_object(bucket, key).await?.is_some() {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS}, delete_marker FROM object_versions
             WHERE bucket = $1 AND key = $2 ORDER BY seq DESC LIMIT 1"
        ))
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let newest = row.as_ref().map(object_from_row).transpose()?;
        Ok(newest.filter(|v| v.delete_marker))
    }

    /// Permanently removes one version (or delete marker). When it was the
    /// current version, the newest remaining one becomes current. A version
    /// under Object Lock is `ObjectLocked`.
    pub async fn delete_object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> MetaResult<Deleted> {
        self.delete_object_version_with(bucket, key, version_id, false)
            .await
    }

    /// As [`delete_object_version`](Self::delete_object_version); with
    /// `bypass_governance` (the caller holds `s3:BypassGovernanceRetention` and
    /// asked for it) GOVERNANCE retention does not stop the delete. The lock is
    /// checked on the row this transaction holds, so it cannot change between
    /// the check and the delete.
    pub async fn delete_object_version_with(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        bypass_governance: bool,
    ) -> MetaResult<Deleted> {
        let mut tx = self.begin_write().await?;
        self.bucket_exists_tx(&mut tx, bucket).await?;
        let current = self.lock_object_tx(&mut tx, bucket, key).await?;
        let removed = match current.filter(|c| c.version_id == version_id) {
            Some(current) => {
                delete_current_row(&mut tx, bucket, key).await?;
                Some(current)
            }
            None => {
                let version = self
                    .lock_version_tx(&mut tx, bucket, key, version_id)
                    .await?;
                if version.is_some() {
                    delete_version_row(&mut tx, bucket, key, version_id).await?;
                }
                version
            }
        };
        let Some(removed) = removed else {
            return Ok(Deleted::default());
        };
        if removed
            .lock
            .forbids_delete(super::now_millis(), bypass_governance)
        {
            // Dropping the transaction rolls the row deletion back.
            return Err(MetaError::ObjectLocked);
        }
        let blobs: Vec<String> = removed.segments.iter().map(|s| s.blob.clone()).collect();
        mark_garbage_tx(&mut tx, &blobs).await?;
        apply_usage_tx(&mut tx, bucket, UsageDelta::removing(&removed)).await?;
        promote_newest_tx(&mut tx, bucket, key).await?;
        tx.commit().await?;
        Ok(Deleted {
            existed: true,
            version_id: Some(removed.version_id),
            delete_marker: removed.delete_marker,
        })
    }

    /// Replaces the tags of a version (`None`: the current one); returns the
    /// version id. Delete markers have no tags: `NoSuchKey`/`NoSuchVersion`.
    pub async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> MetaResult<String> {
        let mut tx = self.begin_write().await?;
        self.bucket_exists_tx(&mut tx, bucket).await?;
        let current = self.lock_object_tx(&mut tx, bucket, key).await?;
        let target = match (current, version_id) {
            (Some(c), None) => c.version_id,
            (Some(c), Some(v)) if c.version_id == v => c.version_id,
            (None, None) => return Err(MetaError::NoSuchKey),
            (_, Some(v)) => {
                let updated = sqlx::query(
                    "UPDATE object_versions SET tags = $4
                     WHERE bucket = $1 AND key = $2 AND version_id = $3 AND delete_marker = 0",
                )
                .bind(bucket)
                .bind(key.as_bytes().to_vec())
                .bind(v)
                .bind(to_json(tags))
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    return Err(MetaError::NoSuchVersion);
                }
                tx.commit().await?;
                return Ok(v.to_owned());
            }
        };
        tx.touch(bucket, key);
        sqlx::query("UPDATE objects SET tags = $3 WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key.as_bytes().to_vec())
            .bind(to_json(tags))
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        Ok(target)
    }

    /// Rewrites the stored headers of a version (`None`: the current one) in
    /// place; returns the version id. Delete markers have none:
    /// `NoSuchKey`/`NoSuchVersion`.
    pub(super) async fn update_object_headers(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        change: impl FnOnce(&mut ObjectHeaders),
    ) -> MetaResult<String> {
        let mut tx = self.begin_write().await?;
        self.bucket_exists_tx(&mut tx, bucket).await?;
        let current = self.lock_object_tx(&mut tx, bucket, key).await?;
        let (mut headers, target, current_row) = match (current, version_id) {
            (Some(c), None) => (c.headers, c.version_id, true),
            (Some(c), Some(v)) if c.version_id == v => (c.headers, c.version_id, true),
            (None, None) => return Err(MetaError::NoSuchKey),
            (_, Some(v)) => {
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT headers FROM object_versions
                     WHERE bucket = $1 AND key = $2 AND version_id = $3 AND delete_marker = 0",
                )
                .bind(bucket)
                .bind(key.as_bytes().to_vec())
                .bind(v)
                .fetch_optional(&mut **tx)
                .await?;
                let Some((text,)) = row else {
                    return Err(MetaError::NoSuchVersion);
                };
                (from_json(&text)?, v.to_owned(), false)
            }
        };
        change(&mut headers);
        tx.touch(bucket, key);
        let statement = if current_row {
            "UPDATE objects SET headers = $3 WHERE bucket = $1 AND key = $2"
        } else {
            "UPDATE object_versions SET headers = $3 WHERE bucket = $1 AND key = $2 AND version_id = $4"
        };
        let mut query = sqlx::query(statement)
            .bind(bucket)
            .bind(key.as_bytes().to_vec())
            .bind(to_json(&headers));
        if !current_row {
            query = query.bind(target.clone());
        }
        query.execute(&mut **tx).await?;
        tx.commit().await?;
        Ok(target)
    }

    /// One page of `ListObjectVersions`: keys in S3 order, each key's versions
    /// newest first. `version_marker` continues after that version of
    /// `query.start_after`'s key; an unknown marker is `NoSuchVersion`.
    pub async fn list_object_versions(
        &self,
        bucket: &str,
        query: &ListQuery,
        version_marker: Option<&str>,
    ) -> MetaResult<ListPage<ObjectVersion>> {
        let start = match (&query.start_after, version_marker) {
            (Some(key), Some(version)) => {
                let key_text = String::from_utf8_lossy(key).into_owned();
                let marker = self
                    .get_object_version(bucket, &key_text, version)
                    .await?
                    .ok_or(MetaError::NoSuchVersion)?;
                Some(Cursor::After(key.clone(), Some(marker.seq.to_string())))
            }
            (Some(key), None) => Some(Cursor::After(key.clone(), None)),
            (None, _) => None,
        };
        let source = VersionSource {
            store: self,
            bucket,
        };
        // The walk's start-after skips common prefixes already returned; a
        // version marker inside a key must not skip the rest of that key.
        let query = ListQuery {
            start_after: match &start {
                Some(Cursor::After(key, None)) => Some(key.clone()),
                _ => None,
            },
            ..query.clone()
        };
        list::walk(&source, &query, start).await
    }
}

/// After the current version went away, the newest remaining version becomes
/// current unless it is a delete marker (which then hides the key).
async fn promote_newest_tx(tx: &mut WriteTx<'_>, bucket: &str, key: &str) -> MetaResult<()> {
    let exists = sqlx::query("SELECT 1 FROM objects WHERE bucket = $1 AND key = $2")
        .bind(bucket)
        .bind(key.as_bytes().to_vec())
        .fetch_optional(&mut ***tx)
        .await?;
    if exists.is_some() {
        return Ok(());
    }
    // Locked (Postgres) so a retention or legal hold set on it concurrently is
    // carried over, never lost in the move.
    let lock = match tx.backend {
        super::Backend::Postgres => " FOR UPDATE",
        super::Backend::Sqlite => "",
    };
    let row = sqlx::query(&format!(
        "SELECT {OBJECT_COLUMNS}, delete_marker FROM object_versions
         WHERE bucket = $1 AND key = $2 ORDER BY seq DESC LIMIT 1{lock}"
    ))
    .bind(bucket)
    .bind(key.as_bytes().to_vec())
    .fetch_optional(&mut ***tx)
    .await?;
    let Some(newest) = row.as_ref().map(object_from_row).transpose()? else {
        return Ok(());
    };
    if newest.delete_marker {
        return Ok(());
    }
    delete_version_row(tx, bucket, key, &newest.version_id).await?;
    insert_object_row(tx, &newest).await?;
    Ok(())
}

struct VersionSource<'a> {
    store: &'a MetaStore,
    bucket: &'a str,
}

#[async_trait::async_trait]
impl Source for VersionSource<'_> {
    type Item = ObjectVersion;

    fn key(item: &ObjectVersion) -> &[u8] {
        item.object.key.as_bytes()
    }

    fn cursor_after(item: &ObjectVersion) -> Cursor {
        Cursor::After(
            item.object.key.as_bytes().to_vec(),
            Some(item.object.seq.to_string()),
        )
    }

    async fn fetch(
        &self,
        from: &Cursor,
        upper: Option<&[u8]>,
        limit: usize,
    ) -> MetaResult<Vec<ObjectVersion>> {
        let mut args = vec![list::Arg::Text(self.bucket.to_owned())];
        let mut clause = String::from("bucket = $1");
        // Rows of the cursor's own key that come after it are not its latest.
        let mut inside_key: Option<Vec<u8>> = None;
        match from {
            Cursor::From(key) => {
                args.push(list::Arg::Bytes(key.clone()));
                clause.push_str(" AND key >= $2");
            }
            Cursor::After(key, None) => {
                args.push(list::Arg::Bytes(key.clone()));
                clause.push_str(" AND key > $2");
            }
            Cursor::After(key, Some(seq)) => {
                let seq: i64 = seq
                    .parse()
                    .map_err(|_| MetaError::Corrupt(format!("version cursor {seq:?}")))?;
                args.push(list::Arg::Bytes(key.clone()));
                args.push(list::Arg::Int(seq));
                clause.push_str(" AND (key > $2 OR (key = $2 AND seq < $3))");
                inside_key = Some(key.clone());
            }
        }
        if let Some(upper) = upper {
            args.push(list::Arg::Bytes(upper.to_vec()));
            clause.push_str(&format!(" AND key < ${}", args.len()));
        }
        args.push(list::Arg::Int(limit as i64));
        let sql = format!(
            "SELECT * FROM (
               SELECT {OBJECT_COLUMNS}, 0 AS delete_marker FROM objects WHERE {clause}
               UNION ALL
               SELECT {OBJECT_COLUMNS}, delete_marker FROM object_versions WHERE {clause}
             ) AS v ORDER BY key, seq DESC LIMIT ${}",
            args.len()
        );
        let rows = list::bind_all(sqlx::query(&sql), args)
            .fetch_all(&self.store.pool)
            .await?;
        let mut previous: Option<Vec<u8>> = inside_key;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let object = object_from_row(row)?;
            let key = object.key.as_bytes().to_vec();
            let is_latest = previous.as_ref() != Some(&key);
            previous = Some(key);
            items.push(ObjectVersion { object, is_latest });
        }
        Ok(items)
    }
}
