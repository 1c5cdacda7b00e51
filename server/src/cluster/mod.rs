//! The replicated data plane. Servers sharing one metadata store form a cluster:
//! each registers and heartbeats in the store (`membership`), places every blob
//! on R nodes by rendezvous hashing (`placement`), writes it to them at once and
//! acknowledges after W have fsync'd (`write`), reads from a local replica or a
//! peer with failover (`read`), and repairs, rebalances and scrubs in the
//! background (`healer`). Node-to-node traffic is HMAC-authenticated HTTP (`peer`).
//! A lone server is a cluster of one: same code, R = 1, no peer traffic.

mod ec_heal;
mod ec_read;
pub mod erasure;
mod healer;
mod membership;
mod peer;
pub mod placement;
mod read;
mod write;

pub use self::erasure::{BlobWrite, Erasure, ErasureWriter};
pub use self::healer::spawn_workers;
pub use self::membership::{Liveness, View, join};
pub use self::peer::{PEER_PATH_PREFIX, is_peer_request, peer_router};
pub use self::write::ReplicatedWriter;
pub(crate) use self::write::is_out_of_space;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::meta::{MetaStore, NodeProgress};
use crate::storage::BlobStore;

/// How this node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: String,
    /// How peers reach this node, e.g. `http://coffer-1.coffer-peers:9000`.
    pub advertise_url: String,
    /// Failure domain; replicas spread over zones first.
    pub zone: String,
    /// Copies of each blob (capped at the number of live nodes).
    pub replicas: usize,
    /// Copies fsync'd before a write is acknowledged; `None`: a majority.
    pub write_quorum: Option<usize>,
    /// Missing heartbeats for this long declares a node dead: its replicas stop
    /// counting and are re-created elsewhere.
    pub dead_after: Duration,
    /// Authenticates node-to-node requests. Without it the node serves alone.
    pub secret: Option<String>,
    /// Pause between heal passes (repair and rebalance).
    pub heal_interval: Duration,
    /// Pause between scrub passes (read and verify every local replica).
    pub scrub_interval: Duration,
    /// Bytes per second the healer copies in, and the scrubber reads.
    pub heal_rate: u64,
    pub scrub_rate: u64,
    /// TLS for requests to peers (`--peer-ca`): set when nodes serve HTTPS.
    pub peer_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Erasure coding for new blobs (`--erasure K+M`); `None`: replication.
    pub erasure: Option<Erasure>,
    /// Blobs smaller than this stay replicated (or inline) under erasure coding.
    pub erasure_min_size: u64,
}

impl ClusterConfig {
    /// A lone node: R = 1, no secret.
    pub fn single(node_id: impl Into<String>, advertise_url: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            advertise_url: advertise_url.into(),
            zone: "default".to_owned(),
            replicas: 3,
            write_quorum: None,
            dead_after: Duration::from_secs(300),
            secret: None,
            heal_interval: Duration::from_secs(30),
            scrub_interval: Duration::from_secs(24 * 3600),
            heal_rate: 128 << 20,
            scrub_rate: 32 << 20,
            peer_tls: None,
            erasure: None,
            erasure_min_size: erasure::DEFAULT_MIN_SIZE,
        }
    }

    /// How often this node heartbeats: often enough that a few misses stay far
    /// below `dead_after`.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.dead_after / 5).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }

    /// Heartbeats older than this make a node suspect: no new writes go to it,
    /// but its replicas still count until it is dead.
    pub fn suspect_after(&self) -> Duration {
        (self.heartbeat_interval() * 3).min(self.dead_after)
    }
}

/// This node's default id: the host name (a StatefulSet pod's stable name).
pub fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "coffer".to_owned())
}

/// Counters the workers keep and report in heartbeats and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub under_replicated: AtomicU64,
    pub bytes_to_move: AtomicU64,
    pub local_blobs: AtomicU64,
    pub local_bytes: AtomicU64,
    pub healed_blobs: AtomicU64,
    pub healed_bytes: AtomicU64,
    pub dropped_replicas: AtomicU64,
    pub scrubbed_blobs: AtomicU64,
    pub corrupt_found: AtomicU64,
    pub last_heal_pass: AtomicU64,
    pub shards_at_risk: AtomicU64,
    pub data_at_risk: AtomicU64,
    pub heal_passes: AtomicU64,
    pub peer_failures: AtomicU64,
    pub volume_bytes: AtomicU64,
    pub volume_available_bytes: AtomicU64,
    /// A `statvfs` of the volume is running (see `membership::measure_volume`).
    pub volume_measuring: std::sync::atomic::AtomicBool,
}

impl Counters {
    pub fn progress(&self) -> NodeProgress {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeProgress {
            under_replicated: get(&self.under_replicated),
            bytes_to_move: get(&self.bytes_to_move),
            local_blobs: get(&self.local_blobs),
            local_bytes: get(&self.local_bytes),
            healed_blobs: get(&self.healed_blobs),
            healed_bytes: get(&self.healed_bytes),
            dropped_replicas: get(&self.dropped_replicas),
            scrubbed_blobs: get(&self.scrubbed_blobs),
            corrupt_found: get(&self.corrupt_found),
            last_heal_pass: get(&self.last_heal_pass) as i64,
            shards_at_risk: get(&self.shards_at_risk),
            data_at_risk: get(&self.data_at_risk),
            volume_bytes: get(&self.volume_bytes),
            volume_available_bytes: get(&self.volume_available_bytes),
        }
    }
}

/// The data plane handed to the S3 handlers: where blobs are written and read.
/// Cheap to clone.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    meta: MetaStore,
    local: BlobStore,
    view: RwLock<Arc<View>>,
    peers: peer::PeerClient,
    replay: peer::ReplayGuard,
    /// Wakes the healer early (a replica was found bad or missing).
    heal_now: Notify,
    counters: Counters,
    quarantine: PathBuf,
    /// Nodes whose shards failed or lagged on a recent erasure-coded read, and
    /// when: later reads ask them last for a while (`ec_read`).
    lagging_nodes: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("node", &self.inner.config.node_id)
            .finish_non_exhaustive()
    }
}

impl DataPlane {
    /// A data plane for a node that has joined (see [`join`]) with `view`.
    pub fn new(
        config: ClusterConfig,
        meta: MetaStore,
        local: BlobStore,
        data_dir: &std::path::Path,
        view: View,
    ) -> std::io::Result<Self> {
        let quarantine = data_dir.join("quarantine");
        std::fs::create_dir_all(&quarantine)?;
        Ok(Self {
            inner: Arc::new(Inner {
                peers: peer::PeerClient::new(&config)?,
                replay: peer::ReplayGuard::default(),
                config,
                meta,
                local,
                view: RwLock::new(Arc::new(view)),
                heal_now: Notify::new(),
                counters: Counters::default(),
                lagging_nodes: std::sync::Mutex::default(),
                quarantine,
            }),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    pub fn local(&self) -> &BlobStore {
        &self.inner.local
    }

    pub fn meta(&self) -> &MetaStore {
        &self.inner.meta
    }

    /// The latest membership this node has seen.
    pub fn view(&self) -> Arc<View> {
        match self.inner.view.read() {
            Ok(view) => view.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The view, re-read from the store first when it does not know every node
    /// in `nodes` (one that joined since the last heartbeat).
    pub(crate) async fn view_knowing(&self, nodes: &[String]) -> Arc<View> {
        let view = self.view();
        if nodes.iter().all(|n| view.node(n).is_some()) {
            return view;
        }
        match self.inner.meta.list_nodes().await {
            Ok(list) => {
                let config = &self.inner.config;
                self.set_view(View::new(&config.node_id, list, config.suspect_after()));
                self.view()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the member list");
                view
            }
        }
    }

    fn set_view(&self, view: View) {
        let view = Arc::new(view);
        match self.inner.view.write() {
            Ok(mut slot) => *slot = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
    }

    /// What the background workers report (heartbeats, metrics, `node list`).
    pub fn progress(&self) -> NodeProgress {
        self.inner.counters.progress()
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Whether this node runs the cluster's singleton tasks (the lifecycle
    /// worker): the live member with the smallest id, as this node sees it. While
    /// views differ (a node just joined or died) two nodes may both think so for
    /// a heartbeat or two; those tasks re-check what they change.
    pub fn is_coordinator(&self) -> bool {
        let view = self.view();
        let dead_after = self.inner.config.dead_after;
        view.nodes
            .iter()
            .filter(|n| view.liveness(n, dead_after) != Liveness::Dead)
            .map(|n| n.id.as_str())
            .min()
            .is_none_or(|first| first == self.node_id())
    }

    /// Publishes membership and worker progress as Prometheus metrics.
    pub fn export_metrics(&self, metrics: &crate::metrics::Metrics) {
        let view = self.view();
        let dead_after = self.inner.config.dead_after;
        let mut counts = [("alive", 0i64), ("suspect", 0), ("dead", 0)];
        for node in &view.nodes {
            let index = view.liveness(node, dead_after) as usize;
            counts[index].1 += 1;
        }
        let counters = &self.inner.counters;
        metrics.set_cluster(
            &counts,
            &self.progress(),
            counters.heal_passes.load(Ordering::Relaxed),
            counters.peer_failures.load(Ordering::Relaxed),
        );
    }

    /// The replica count wanted now: R, capped at the nodes that take data.
    pub fn effective_replicas(&self, view: &View) -> usize {
        let members = view.placeable(self.inner.config.dead_after).len();
        self.inner.config.replicas.clamp(1, members.max(1))
    }

    /// Copies that must be fsync'd before a write of `replicas` copies is acknowledged.
    pub fn write_quorum(&self, replicas: usize) -> usize {
        let majority = replicas / 2 + 1;
        self.inner
            .config
            .write_quorum
            .unwrap_or(majority)
            .clamp(1, replicas.max(1))
    }

    /// A local replica failed verification: set it aside, forget it in the store,
    /// and let the healer fetch a good copy.
    pub(crate) async fn quarantine(&self, blob: &str) {
        // A shard file (`<id>.i`) is named in objects by its erasure-coded blob.
        let objects = self
            .objects_using(crate::storage::shard_files::blob_of_file(blob))
            .await;
        tracing::warn!(
            blob,
            node = self.node_id(),
            objects = %objects,
            "replica failed verification; quarantined"
        );
        self.inner
            .counters
            .corrupt_found
            .fetch_add(1, Ordering::Relaxed);
        let plane = self.clone();
        let id = blob.to_owned();
        let moved = tokio::task::spawn_blocking(move || {
            plane
                .inner
                .local
                .move_out(&id, &plane.inner.quarantine.join(&id))
        })
        .await;
        if let Ok(Err(e)) | Err(e) = moved.map_err(std::io::Error::other) {
            tracing::warn!(blob, error = %e, "cannot move a bad replica aside");
        }
        // A bad shard file is forgotten as its erasure-coded blob's record here.
        let blob = crate::storage::shard_files::blob_of_file(blob);
        if let Err(e) = self.inner.meta.remove_replica(blob, self.node_id()).await {
            tracing::warn!(blob, error = %e, "cannot forget a bad replica; the inventory will");
        }
        self.inner.heal_now.notify_one();
    }

    /// The objects whose bytes are in `blob`, for a warning about it (at most
    /// five; `"?"` when the store cannot say).
    pub(crate) async fn objects_using(&self, blob: &str) -> String {
        match self.inner.meta.objects_using_blob(blob, 5).await {
            Ok(objects) if objects.is_empty() => "none".to_owned(),
            Ok(objects) => objects.join(", "),
            Err(_) => "?".to_owned(),
        }
    }

    /// Removes a blob written for a request that then failed to commit, from
    /// every node that took a copy. Best effort: leftovers are orphans that
    /// garbage collection removes after its grace period.
    pub async fn discard(&self, blob: &str, replicas: &[String]) {
        let erasure = crate::meta::is_erasure(blob);
        for (index, node) in replicas.iter().enumerate() {
            // An erasure-coded blob's `replicas[i]` holds its shard i.
            let file = match erasure {
                true => crate::storage::shard_files::shard_file(blob, index),
                false => blob.to_owned(),
            };
            if node.is_empty() {
                continue;
            } else if node == self.node_id() {
                let local = self.inner.local.clone();
                let _ = tokio::task::spawn_blocking(move || local.delete(&file)).await;
            } else if let Some(url) = self.view().url_of(node)
                && let Err(e) = self.inner.peers.delete_blob(&url, &file).await
            {
                tracing::debug!(blob, node, error = %e, "cannot discard a peer's copy");
            }
        }
    }
}

/// Why streaming bytes into a local copy failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    /// The incoming stream broke (the sender gave up or its node died).
    #[error("incoming bytes: {0}")]
    Source(String),
    /// Writing to this node's volume failed.
    #[error("local volume: {0}")]
    Volume(std::io::Error),
}

/// Appends a byte stream to a local blob in blocks of about 1 MiB, writing on
/// blocking threads. Returns the writer (to finish) and the stream's CRC32C.
pub(crate) async fn append_stream<S, E>(
    mut writer: crate::storage::BlobWriter,
    mut stream: S,
) -> Result<(crate::storage::BlobWriter, u32), AppendError>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures::StreamExt as _;
    let mut buffer = bytes::BytesMut::new();
    let mut crc = 0u32;
    loop {
        let chunk = stream.next().await;
        let done = chunk.is_none();
        if let Some(chunk) = chunk {
            let chunk = chunk.map_err(|e| AppendError::Source(e.to_string()))?;
            crc = crate::storage::crc32c_append(crc, &chunk);
            buffer.extend_from_slice(&chunk);
        }
        if buffer.len() >= crate::storage::BLOCK_SIZE || (done && !buffer.is_empty()) {
            let block = buffer.split().freeze();
            writer = tokio::task::spawn_blocking(move || writer.append(&block).map(|()| writer))
                .await
                .map_err(|e| AppendError::Volume(std::io::Error::other(e)))?
                .map_err(AppendError::Volume)?;
        }
        if done {
            return Ok((writer, crc));
        }
    }
}

/// Nodes that could not be reached in time for a write or read.
pub(crate) fn unreachable(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::HostUnreachable, message.into())
}
