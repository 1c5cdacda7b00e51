//! The storage cluster's bookkeeping: member nodes (registered and heartbeating
//! here), and `blob_replicas`, which records the nodes that hold each blob. A
//! replica row is written only after that node fsync'd the blob, so the rows of a
//! committed blob always name durable copies (or copies since found bad, which
//! their holder removes).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Backend, MetaError, MetaResult, MetaStore, WriteTx, from_json, now_millis, to_json};

/// A node's own statement of whether it takes new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Active,
    /// Takes no new replicas; the healer moves its blobs away.
    Draining,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
        }
    }

    fn parse(text: &str) -> MetaResult<Self> {
        match text {
            "active" => Ok(Self::Active),
            "draining" => Ok(Self::Draining),
            other => Err(MetaError::Corrupt(format!("node state {other:?}"))),
        }
    }
}

/// What a node's background workers report with each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeProgress {
    /// Blobs with fewer healthy replicas than wanted, seen in the last heal pass.
    pub under_replicated: u64,
    /// Bytes this node still has to copy in (repair and rebalance).
    pub bytes_to_move: u64,
    /// Replicas this node holds (files on its volume).
    pub local_blobs: u64,
    pub local_bytes: u64,
    /// Totals since start.
    pub healed_blobs: u64,
    pub healed_bytes: u64,
    pub dropped_replicas: u64,
    pub scrubbed_blobs: u64,
    pub corrupt_found: u64,
    /// When the last complete heal pass ended (ms since epoch; 0 = never).
    pub last_heal_pass: i64,
    /// Erasure-coded blobs with fewer than k+m healthy shards, and with fewer
    /// than k+1 (one more loss from unreadable), seen in the last heal pass.
    pub shards_at_risk: u64,
    pub data_at_risk: u64,
    /// The data directory's file system: its size and what is still available
    /// (0 and 0 until first measured).
    pub volume_bytes: u64,
    pub volume_available_bytes: u64,
}

/// One member of the cluster as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// Where peers reach it (`--advertise-url`).
    pub url: String,
    pub zone: String,
    pub state: NodeState,
    /// HMAC of a fixed text under the cluster secret: nodes with different secrets
    /// refuse to share a store. Empty for a node without a secret.
    pub secret_check: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub progress: NodeProgress,
}

/// A live blob and the nodes recorded as holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobReplicas {
    pub id: String,
    pub size: u64,
    pub nodes: Vec<String>,
}

const NODE_COLUMNS: &str = "id, url, zone, state, secret_check, started_at, heartbeat_at, progress";

fn node_from_row(row: &sqlx::any::AnyRow) -> MetaResult<Node> {
    Ok(Node {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        zone: row.try_get("zone")?,
        state: NodeState::parse(&row.try_get::<String, _>("state")?)?,
        secret_check: row.try_get("secret_check")?,
        started_at: row.try_get("started_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        progress: from_json(&row.try_get::<String, _>("progress")?)?,
    })
}

impl MetaStore {
    /// Registers a starting node, or refreshes its address. A node that was
    /// draining stays draining across restarts.
    pub async fn register_node(
        &self,
        id: &str,
        url: &str,
        zone: &str,
        secret_check: &str,
    ) -> MetaResult<Node> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, 'active', $4, $5, $5, '{{}}')
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, zone = excluded.zone,
             secret_check = excluded.secret_check, started_at = excluded.started_at,
             heartbeat_at = excluded.heartbeat_at"
        ))
        .bind(id)
        .bind(url)
        .bind(zone)
        .bind(secret_check)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
        let node = node_from_row(&row)?;
        tx.commit().await?;
        Ok(node)
    }

    /// Records that `id` is alive, with its workers' progress.
    pub async fn heartbeat_node(&self, id: &str, progress: &NodeProgress) -> MetaResult<()> {
        // Every write goes through `begin_write`: on SQLite, a write outside the
        // writer queue makes queued transactions fail with "database is locked".
        let mut tx = self.begin_write().await?;
        let result = sqlx::query("UPDATE nodes SET heartbeat_at = $2, progress = $3 WHERE id = $1")
            .bind(id)
            .bind(now_millis())
            .bind(to_json(progress))
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        match result.rows_affected() {
            0 => Err(MetaError::NoSuchNode(id.to_owned())),
            _ => Ok(()),
        }
    }

    /// The ids of all registered nodes, whatever their state or liveness.
    pub async fn node_ids(&self) -> MetaResult<Vec<String>> {
        let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM nodes ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    pub async fn list_nodes(&self) -> MetaResult<Vec<Node>> {
        let rows = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(node_from_row).collect()
    }

    pub async fn set_node_state(&self, id: &str, state: NodeState) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query("UPDATE nodes SET state = $2 WHERE id = $1")
            .bind(id)
            .bind(state.as_str())
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        match result.rows_affected() {
            0 => Err(MetaError::NoSuchNode(id.to_owned())),
            _ => Ok(()),
        }
    }

    /// Forgets a node and every replica recorded on it (the operator decided
    /// its volume is gone for good; the healer re-creates what it held).
    pub async fn remove_node(&self, id: &str) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        if result.rows_affected() == 0 {
            return Err(MetaError::NoSuchNode(id.to_owned()));
        }
        sqlx::query("DELETE FROM blob_replicas WHERE node_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        tx.commit().await
    }

    /// Replicas recorded per node: (node, blobs, bytes), live blobs only.
    pub async fn replica_counts(&self) -> MetaResult<Vec<(String, u64, u64)>> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT r.node_id, COUNT(*), CAST(SUM(b.size) AS BIGINT) FROM blob_replicas r
             JOIN blobs b ON b.id = r.blob_id WHERE b.garbage = 0 GROUP BY r.node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(node, count, bytes)| (node, count as u64, bytes.unwrap_or(0) as u64))
            .collect())
    }

    /// Nodes recorded as holding `blob`.
    pub async fn replicas_of(&self, blob: &str) -> MetaResult<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT node_id FROM blob_replicas WHERE blob_id = $1 ORDER BY node_id")
                .bind(blob)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    /// Records that `node` holds a durable copy of `blob`.
    pub async fn add_replica(&self, blob: &str, node: &str) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        add_replicas_tx(&mut tx, blob, std::slice::from_ref(&node.to_owned())).await?;
        tx.commit().await
    }

    /// Forgets `node`'s copy of `blob` (found missing or corrupt, or deleted).
    pub async fn remove_replica(&self, blob: &str, node: &str) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM blob_replicas WHERE blob_id = $1 AND node_id = $2")
            .bind(blob)
            .bind(node)
            .execute(&mut **tx)
            .await?;
        tx.commit().await
    }

    /// Forgets `node`'s copy of `blob` only if at least `keep` other copies are
    /// recorded on `counted` nodes — atomically, so concurrent removals by several
    /// nodes can never take a blob below `keep` copies. Returns whether it did.
    pub async fn remove_surplus_replica(
        &self,
        blob: &str,
        node: &str,
        counted: &[String],
        keep: usize,
    ) -> MetaResult<bool> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Serializes removals of the same blob's replicas.
            sqlx::query("SELECT id FROM blobs WHERE id = $1 FOR UPDATE")
                .bind(blob)
                .execute(&mut **tx)
                .await?;
        }
        let holders: Vec<(String,)> =
            sqlx::query_as("SELECT node_id FROM blob_replicas WHERE blob_id = $1")
                .bind(blob)
                .fetch_all(&mut **tx)
                .await?;
        let others = holders
            .iter()
            .filter(|(n,)| n != node && counted.contains(n))
            .count();
        if others < keep {
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

    /// One page of live blobs with their replicas, in id order after `after`.
    /// Blobs kept in the metadata store have no replicas and are not listed
    /// (their ids, `i-...`, sort after every hex id of a file).
    pub async fn blob_replica_page(
        &self,
        after: &str,
        limit: usize,
    ) -> MetaResult<Vec<BlobReplicas>> {
        let blobs: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, size FROM blobs WHERE garbage = 0 AND id > $1 AND id < 'i-'
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let (Some((first, _)), Some((last, _))) = (blobs.first(), blobs.last()) else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT blob_id, node_id FROM blob_replicas WHERE blob_id >= $1 AND blob_id <= $2
             ORDER BY blob_id, node_id",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        let mut page: Vec<BlobReplicas> = blobs
            .into_iter()
            .map(|(id, size)| BlobReplicas {
                id,
                size: size as u64,
                nodes: Vec::new(),
            })
            .collect();
        let mut rows = rows.into_iter().peekable();
        for blob in &mut page {
            while let Some((id, _)) = rows.peek() {
                if id.as_str() > blob.id.as_str() {
                    break;
                }
                if let Some((id, node)) = rows.next()
                    && id == blob.id
                {
                    blob.nodes.push(node);
                }
            }
        }
        Ok(page)
    }

    /// For each of `ids` (files on `node`'s volume): whether the blob is live,
    /// garbage, or unknown, and whether `node`'s copy is recorded.
    pub async fn blob_states(
        &self,
        node: &str,
        ids: &[String],
    ) -> MetaResult<Vec<(Option<bool>, bool)>> {
        let mut states = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<(i64, Option<String>)> = sqlx::query_as(
                "SELECT b.garbage, r.node_id FROM blobs b
                 LEFT JOIN blob_replicas r ON r.blob_id = b.id AND r.node_id = $2 WHERE b.id = $1",
            )
            .bind(id)
            .bind(node)
            .fetch_optional(&self.pool)
            .await?;
            states.push(match row {
                Some((garbage, recorded)) => (Some(garbage == 0), recorded.is_some()),
                None => (None, false),
            });
        }
        Ok(states)
    }

    /// Replicas recorded on `node`, in blob order after `after` (live or garbage).
    pub async fn replicas_on_node(
        &self,
        node: &str,
        after: &str,
        limit: usize,
    ) -> MetaResult<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT blob_id FROM blob_replicas WHERE node_id = $1 AND blob_id > $2
             ORDER BY blob_id LIMIT $3",
        )
        .bind(node)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(b,)| b).collect())
    }
}

/// Records that `nodes` hold durable copies of `blob` (inside a commit).
pub(super) async fn add_replicas_tx(
    tx: &mut WriteTx<'_>,
    blob: &str,
    nodes: &[String],
) -> MetaResult<()> {
    for node in nodes {
        sqlx::query(
            "INSERT INTO blob_replicas (blob_id, node_id) VALUES ($1, $2)
             ON CONFLICT (blob_id, node_id) DO NOTHING",
        )
        .bind(blob)
        .bind(node)
        .execute(&mut ***tx)
        .await?;
    }
    Ok(())
}
