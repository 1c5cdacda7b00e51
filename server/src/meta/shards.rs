//! Where the shards of erasure-coded blobs are: a `blob_replicas` row of such a
//! blob names the shard its node holds. Like a replica row, a shard row is
//! written only after its node fsync'd the shard.

use super::{Backend, MetaResult, MetaStore};

/// Whether `blob` is erasure-coded (`e-K-M-…`: shards, no whole copy anywhere).
pub fn is_erasure(blob: &str) -> bool {
    blob.starts_with("e-")
}

/// A live erasure-coded blob: its size and (shard, node) of every recorded shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobShards {
    pub id: String,
    pub size: u64,
    pub shards: Vec<(usize, String)>,
}

impl MetaStore {
    /// The size of erasure-coded `blob` and the shards recorded for it; `None`
    /// when the blob is unknown.
    pub async fn shards_of(&self, blob: &str) -> MetaResult<Option<BlobShards>> {
        let size: Option<(i64,)> = sqlx::query_as("SELECT size FROM blobs WHERE id = $1")
            .bind(blob)
            .fetch_optional(&self.pool)
            .await?;
        let Some((size,)) = size else {
            return Ok(None);
        };
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT shard, node_id FROM blob_replicas WHERE blob_id = $1 AND shard IS NOT NULL
             ORDER BY shard, node_id",
        )
        .bind(blob)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(BlobShards {
            id: blob.to_owned(),
            size: size as u64,
            shards: rows
                .into_iter()
                .map(|(shard, node)| (shard as usize, node))
                .collect(),
        }))
    }

    /// Records that `node` holds shard `shard` of `blob`, durably.
    pub async fn add_shard(&self, blob: &str, shard: usize, node: &str) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO blob_replicas (blob_id, node_id, shard) VALUES ($1, $2, $3)
             ON CONFLICT (blob_id, node_id) DO UPDATE SET shard = excluded.shard",
        )
        .bind(blob)
        .bind(node)
        .bind(shard as i64)
        .execute(&mut **tx)
        .await?;
        tx.commit().await
    }

    /// One page of live erasure-coded blobs with their shards, in id order after `after`.
    pub async fn blob_shard_page(&self, after: &str, limit: usize) -> MetaResult<Vec<BlobShards>> {
        let blobs: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, size FROM blobs WHERE garbage = 0 AND id > $1 AND id LIKE 'e-%'
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut page = Vec::with_capacity(blobs.len());
        for (id, size) in blobs {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT shard, node_id FROM blob_replicas WHERE blob_id = $1
                 AND shard IS NOT NULL ORDER BY shard, node_id",
            )
            .bind(&id)
            .fetch_all(&self.pool)
            .await?;
            page.push(BlobShards {
                id,
                size: size as u64,
                shards: rows.into_iter().map(|(s, n)| (s as usize, n)).collect(),
            });
        }
        Ok(page)
    }

    /// Forgets `node`'s shard `shard` of `blob` only if another node among
    /// `counted` holds the same shard — atomically, so two nodes moving one
    /// shard can never both let it go. Returns whether it did.
    pub async fn remove_surplus_shard(
        &self,
        blob: &str,
        shard: usize,
        node: &str,
        counted: &[String],
    ) -> MetaResult<bool> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM blobs WHERE id = $1 FOR UPDATE")
                .bind(blob)
                .execute(&mut **tx)
                .await?;
        }
        let holders: Vec<(String,)> =
            sqlx::query_as("SELECT node_id FROM blob_replicas WHERE blob_id = $1 AND shard = $2")
                .bind(blob)
                .bind(shard as i64)
                .fetch_all(&mut **tx)
                .await?;
        if !holders.iter().any(|(n,)| n != node && counted.contains(n)) {
            return Ok(false);
        }
        sqlx::query("DELETE FROM blob_replicas WHERE blob_id = $1 AND node_id = $2")
            .bind(blob)
            .bind(node)
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
