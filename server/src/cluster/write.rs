//! Writing a blob to its R homes at once. Bytes go to every target as they
//! arrive (a local file and/or streaming PUTs to peers); the write is durable
//! once W targets have fsync'd and confirmed what they stored. Targets that fail
//! are dropped on the way; fewer than W left fails the write. Copies still
//! missing afterwards are made by the healer.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http::StatusCode;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::peer::{PeerError, Receipt};
use super::placement;
use super::{DataPlane, unreachable};
use crate::storage::{BlobInfo, BlobStore, BlobWriter, crc32c_append};

/// How long one block may wait for a slow peer before that peer is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Once the quorum has confirmed, how long the remaining targets may still take.
const STRAGGLER_WAIT: Duration = Duration::from_secs(2);

struct Remote {
    node: String,
    sender: Option<mpsc::Sender<std::io::Result<Bytes>>>,
    reply: JoinHandle<Result<Receipt, PeerError>>,
}

/// One blob being written to several nodes.
pub struct ReplicatedWriter {
    plane: DataPlane,
    id: String,
    local: Option<BlobWriter>,
    remotes: Vec<Remote>,
    quorum: usize,
    len: u64,
    crc: u32,
    /// Targets that dropped out because their volume is full: when the quorum
    /// is lost to them, the write fails as "storage full", not "unreachable".
    out_of_space: usize,
    /// Whether this node's own volume failed the write (an I/O error other
    /// than a full volume: EIO from a failing disk, a failed fsync).
    disk_failed: bool,
}

impl DataPlane {
    /// Starts a new blob on its home nodes (skipping suspect ones in favour of
    /// the next in line). Fails when fewer than the write quorum are reachable.
    pub async fn create(&self) -> std::io::Result<ReplicatedWriter> {
        let id = BlobStore::new_blob_id();
        let view = self.view();
        let dead_after = self.config().dead_after;
        let replicas = self.effective_replicas(&view);
        let quorum = self.write_quorum(replicas);
        let targets: Vec<String> = placement::rank(&id, &view.candidates(dead_after))
            .into_iter()
            .filter(|c| {
                view.node(c.id)
                    .is_some_and(|n| view.liveness(n, dead_after) == super::Liveness::Alive)
            })
            .take(replicas)
            .map(|c| c.id.to_owned())
            .collect();
        if targets.len() < quorum {
            return Err(unreachable(format!(
                "only {} of the {quorum} nodes a write needs are reachable",
                targets.len()
            )));
        }
        let mut local = None;
        let mut remotes = Vec::new();
        for node in targets {
            if node == self.node_id() {
                let store = self.local().clone();
                let blob = id.clone();
                local = Some(
                    tokio::task::spawn_blocking(move || store.create_with_id(&blob))
                        .await
                        .map_err(std::io::Error::other)??,
                );
            } else if let Some(url) = view.url_of(&node) {
                let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(4);
                let body = tokio_stream_of(receiver);
                let plane = self.clone();
                let blob = id.clone();
                let reply =
                    tokio::spawn(
                        async move { plane.inner.peers.put_blob(&url, &blob, body).await },
                    );
                remotes.push(Remote {
                    node,
                    sender: Some(sender),
                    reply,
                });
            }
        }
        Ok(ReplicatedWriter {
            plane: self.clone(),
            id,
            local,
            remotes,
            quorum,
            len: 0,
            crc: 0,
            out_of_space: 0,
            disk_failed: false,
        })
    }
}

/// A body stream fed by a channel (what a streaming peer PUT sends).
pub(super) fn tokio_stream_of(
    receiver: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static {
    sync_wrapper::SyncStream::new(futures::stream::unfold(receiver, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Whether an I/O error means the volume has no room (ENOSPC, or a quota).
pub(crate) fn is_out_of_space(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl ReplicatedWriter {
    /// Notes why this node's replica dropped out of the write.
    fn local_failed(&mut self, err: &std::io::Error, what: &str) {
        if is_out_of_space(err) {
            self.out_of_space += 1;
            tracing::error!(blob = self.id, error = %err, "this node's data volume is full");
        } else {
            self.disk_failed = true;
            tracing::error!(blob = self.id, error = %err, "{what}");
        }
    }

    /// The error of a write that no longer has its quorum.
    fn quorum_lost(&self, message: String) -> std::io::Error {
        if self.out_of_space > 0 {
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("{message} ({} with a full volume)", self.out_of_space),
            )
        } else if self.disk_failed && self.quorum == 1 {
            // Only this node's copy was needed and its disk failed: that is a
            // server fault (500), not a cluster that is out of reach (503).
            std::io::Error::other(format!("{message}: this node's data volume failed"))
        } else {
            unreachable(message)
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn targets_left(&self) -> usize {
        usize::from(self.local.is_some())
            + self.remotes.iter().filter(|r| r.sender.is_some()).count()
    }

    /// Sends `block` to every target still in the write.
    pub async fn append(&mut self, block: Bytes) -> std::io::Result<()> {
        self.crc = crc32c_append(self.crc, &block);
        self.len += block.len() as u64;
        let local = self.local.take().map(|mut writer| {
            let block = block.clone();
            tokio::task::spawn_blocking(move || writer.append(&block).map(|()| writer))
        });
        for remote in &mut self.remotes {
            let Some(sender) = &remote.sender else {
                continue;
            };
            let sent = tokio::time::timeout(SEND_TIMEOUT, sender.send(Ok(block.clone()))).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::warn!(
                    node = remote.node,
                    blob = self.id,
                    "peer dropped from a write"
                );
                self.plane
                    .counters()
                    .peer_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                remote.sender = None;
            }
        }
        if let Some(task) = local {
            match task.await.map_err(std::io::Error::other)? {
                Ok(writer) => self.local = Some(writer),
                Err(e) => self.local_failed(&e, "local replica write failed"),
            }
        }
        if self.targets_left() < self.quorum {
            return Err(self.quorum_lost(format!(
                "a write lost its quorum: {} of {} targets left",
                self.targets_left(),
                self.quorum
            )));
        }
        Ok(())
    }

    /// Completes the write: returns once at least W targets hold the blob durably.
    pub async fn finish(mut self) -> std::io::Result<BlobInfo> {
        let mut pending = FuturesUnordered::new();
        for remote in std::mem::take(&mut self.remotes) {
            if let Some(sender) = remote.sender {
                // Closing the channel ends the body; the peer then fsyncs.
                drop(sender);
                let node = remote.node;
                pending.push(async move { (node, remote.reply.await) });
            } else {
                remote.reply.abort();
            }
        }
        let mut durable = Vec::new();
        if let Some(writer) = self.local.take() {
            match tokio::task::spawn_blocking(move || writer.finish()).await {
                Ok(Ok(_)) => durable.push(self.plane.node_id().to_owned()),
                Ok(Err(e)) => self.local_failed(&e, "local replica failed"),
                Err(e) => tracing::error!(blob = self.id, error = %e, "local replica task failed"),
            }
        }
        let mut deadline = None;
        loop {
            let next = match deadline {
                Some(at) => match tokio::time::timeout_at(at, pending.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => pending.next().await,
            };
            let Some((node, reply)) = next else {
                break;
            };
            match reply {
                Ok(Ok(receipt)) if receipt.size == self.len && receipt.crc32c == self.crc => {
                    durable.push(node)
                }
                Ok(Ok(receipt)) => {
                    tracing::error!(
                        node,
                        blob = self.id,
                        ?receipt,
                        "peer stored different bytes"
                    );
                    self.plane
                        .discard(&self.id, std::slice::from_ref(&node))
                        .await;
                }
                Ok(Err(PeerError::Status(StatusCode::INSUFFICIENT_STORAGE, e))) => {
                    self.out_of_space += 1;
                    tracing::warn!(node, blob = self.id, error = %e, "peer volume is full");
                }
                Ok(Err(e)) => tracing::warn!(node, blob = self.id, error = %e, "peer write failed"),
                Err(e) => {
                    tracing::warn!(node, blob = self.id, error = %e, "peer write task failed")
                }
            }
            if durable.len() >= self.quorum && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + STRAGGLER_WAIT);
            }
        }
        if durable.len() < self.quorum {
            self.plane.discard(&self.id, &durable).await;
            return Err(self.quorum_lost(format!(
                "only {} of {} copies became durable",
                durable.len(),
                self.quorum
            )));
        }
        Ok(BlobInfo {
            id: std::mem::take(&mut self.id),
            size: self.len,
            replicas: durable,
        })
    }
}

impl Drop for ReplicatedWriter {
    fn drop(&mut self) {
        // An abandoned write: peers see their body end with an error and drop
        // their temp files; the local writer removes its own.
        for remote in &mut self.remotes {
            if let Some(sender) = remote.sender.take() {
                let _ = sender.try_send(Err(std::io::Error::other("write abandoned")));
            }
            remote.reply.abort();
        }
    }
}
