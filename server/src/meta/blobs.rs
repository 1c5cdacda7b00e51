//! Blob bookkeeping for garbage collection. A blob row is live while a committed
//! object or part refers to it; rows marked garbage are deleted from disk by the
//! collector, and files with no row at all are crash leftovers.

use std::collections::HashSet;

use super::{MetaResult, MetaStore};

impl MetaStore {
    /// Up to `limit` blobs no longer referenced by anything whose copy `node`
    /// should delete: those recorded on it, and those recorded nowhere.
    pub async fn garbage_blobs(&self, node: &str, limit: usize) -> MetaResult<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT b.id FROM blobs b WHERE b.garbage = 1 AND (
               EXISTS (SELECT 1 FROM blob_replicas r WHERE r.blob_id = b.id AND r.node_id = $1)
               OR NOT EXISTS (SELECT 1 FROM blob_replicas r WHERE r.blob_id = b.id))
             ORDER BY b.id LIMIT $2",
        )
        .bind(node)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// `node` removed its copies of these garbage blobs; a blob's row goes once
    /// no node holds it. Rows that became live again in the meantime are kept.
    pub async fn forget_garbage_blobs(&self, node: &str, ids: &[String]) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        for id in ids {
            sqlx::query(
                "DELETE FROM blob_replicas WHERE blob_id = $1 AND node_id = $2
                 AND EXISTS (SELECT 1 FROM blobs WHERE id = $1 AND garbage = 1)",
            )
            .bind(id)
            .bind(node)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "DELETE FROM blobs WHERE id = $1 AND garbage = 1
                 AND NOT EXISTS (SELECT 1 FROM blob_replicas WHERE blob_id = $1)",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "DELETE FROM inline_blobs WHERE id = $1
                 AND NOT EXISTS (SELECT 1 FROM blobs WHERE id = $1)",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        tx.commit().await
    }

    /// The bytes of a blob kept in the metadata store.
    pub async fn inline_blob(&self, id: &str) -> MetaResult<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT data FROM inline_blobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(data,)| data))
    }

    /// Which of `ids` the store knows (live or garbage).
    pub async fn known_blobs(&self, ids: &[String]) -> MetaResult<HashSet<String>> {
        let mut known = HashSet::new();
        for id in ids {
            let row: Option<(String,)> = sqlx::query_as("SELECT id FROM blobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            known.extend(row.map(|(id,)| id));
        }
        Ok(known)
    }

    /// Up to `limit` objects whose bytes are in `blob`, as `bucket/key` (with
    /// `?versionId=` for a noncurrent version, `(upload ...)` for a part of an
    /// upload in progress): for naming what a bad or missing replica affects.
    /// Scans the tables, so it is for the rare event, never the request path.
    pub async fn objects_using_blob(&self, blob: &str, limit: usize) -> MetaResult<Vec<String>> {
        let pattern = format!("%\"{blob}\"%");
        let current: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT bucket, key FROM objects WHERE segments LIKE $1 ORDER BY bucket, key LIMIT $2",
        )
        .bind(&pattern)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let old: Vec<(String, Vec<u8>, String)> = sqlx::query_as(
            "SELECT bucket, key, version_id FROM object_versions WHERE segments LIKE $1
             ORDER BY bucket, key, seq LIMIT $2",
        )
        .bind(&pattern)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let parts: Vec<(String,)> =
            sqlx::query_as("SELECT upload_id FROM parts WHERE blob_id = $1 LIMIT $2")
                .bind(blob)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
        let key = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
        Ok(current
            .iter()
            .map(|(bucket, k)| format!("{bucket}/{}", key(k)))
            .chain(
                old.iter()
                    .map(|(bucket, k, v)| format!("{bucket}/{}?versionId={v}", key(k))),
            )
            .chain(parts.iter().map(|(upload,)| format!("(upload {upload})")))
            .take(limit)
            .collect())
    }
}
