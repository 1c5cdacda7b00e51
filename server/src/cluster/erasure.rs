//! Erasure coding: a blob is cut into stripes of k data chunks, each stripe gets
//! m parity chunks (Reed–Solomon, `reed-solomon-simd`), and shard i of the blob —
//! chunk i of every stripe — is one checksummed blob file (`<id>.i`) on one of
//! k+m distinct nodes, ranked by the same rendezvous placement as replicas. A
//! write streams stripe by stripe and is acknowledged once k+1 shards are durable.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http::StatusCode;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::peer::{PeerError, Receipt};
use super::write::{ReplicatedWriter, is_out_of_space};
use super::{DataPlane, Liveness, placement, unreachable};
use crate::meta::DataProtection;
use crate::storage::shard_files::{new_erasure_id, shard_file};
use crate::storage::{BLOCK_SIZE, BlobInfo, BlobWriter, crc32c_append};

/// Bytes of one shard in one stripe: one checksummed block of the shard file, so
/// a range read fetches and verifies exactly the stripes it touches.
pub const CHUNK: usize = BLOCK_SIZE;
/// Blobs below this stay replicated: k+m files of a few KiB cost more than copies.
pub const DEFAULT_MIN_SIZE: u64 = 1 << 20;
/// How long one stripe may wait for a slow peer before that peer is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Once the quorum has confirmed, how long the remaining shards may still take.
const STRAGGLER_WAIT: Duration = Duration::from_secs(2);

/// An erasure-coding scheme: `k` data shards plus `m` parity shards (`K+M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    pub k: usize,
    pub m: usize,
}

impl Erasure {
    pub fn shards(self) -> usize {
        self.k + self.m
    }

    /// Shards fsync'd on distinct nodes before a write is acknowledged: k+1,
    /// so the object stays readable if any one of those nodes is lost before
    /// the healer has made the rest — what a majority of 3 replicas promises.
    pub fn write_quorum(self) -> usize {
        (self.k + 1).min(self.shards())
    }
}

impl FromStr for Erasure {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not an erasure scheme K+M (e.g. 4+2)");
        let (k, m) = text.trim().split_once('+').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let m: usize = m.trim().parse().map_err(|_| bad())?;
        if k == 0 || m == 0 || k + m > 64 {
            return Err(format!(
                "{text:?}: K and M must be at least 1 and K+M at most 64"
            ));
        }
        Ok(Self { k, m })
    }
}

impl fmt::Display for Erasure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.k, self.m)
    }
}

/// Where the bytes of an erasure-coded blob of `size` bytes lie in its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub k: usize,
    pub m: usize,
    pub size: u64,
}

impl Layout {
    /// Data bytes of a full stripe.
    pub fn stripe_bytes(&self) -> u64 {
        (self.k * CHUNK) as u64
    }

    pub fn stripes(&self) -> u64 {
        self.size.div_ceil(self.stripe_bytes())
    }

    /// Bytes of each shard in stripe `s`: a whole chunk, except in a shorter
    /// last stripe, whose data is spread evenly over the k shards.
    pub fn chunk_len(&self, s: u64) -> usize {
        let data = self.size.saturating_sub(s * self.stripe_bytes());
        chunk_for(data.min(self.stripe_bytes()) as usize, self.k)
    }

    /// Bytes of every shard file.
    pub fn shard_len(&self) -> u64 {
        match self.stripes() {
            0 => 0,
            n => (n - 1) * CHUNK as u64 + self.chunk_len(n - 1) as u64,
        }
    }
}

/// The chunk length for a stripe of `data` bytes: even (the coder works on
/// 16-bit symbols) and at least 2.
fn chunk_for(data: usize, k: usize) -> usize {
    let chunk = data.div_ceil(k).max(1);
    chunk + chunk % 2
}

/// Cuts `data` into k chunks of `chunk` bytes (the last zero-padded).
fn split_stripe(k: usize, data: &[u8], chunk: usize) -> Vec<Bytes> {
    (0..k)
        .map(|i| {
            let start = (i * chunk).min(data.len());
            let end = ((i + 1) * chunk).min(data.len());
            let mut piece = BytesMut::zeroed(chunk);
            piece[..end - start].copy_from_slice(&data[start..end]);
            piece.freeze()
        })
        .collect()
}

/// The m parity chunks of a stripe's k data chunks.
pub(crate) fn parity_of(k: usize, m: usize, data: &[Bytes]) -> std::io::Result<Vec<Bytes>> {
    let parity = reed_solomon_simd::encode(k, m, data).map_err(std::io::Error::other)?;
    Ok(parity.into_iter().map(Bytes::from).collect())
}

/// All k+m chunks of one stripe holding `data`.
pub(crate) fn encode_stripe(
    k: usize,
    m: usize,
    data: &[u8],
    chunk: usize,
) -> std::io::Result<Vec<Bytes>> {
    let mut chunks = split_stripe(k, data, chunk);
    let parity = parity_of(k, m, &chunks)?;
    chunks.extend(parity);
    Ok(chunks)
}

/// The k data chunks of a stripe from any k of its chunks `(shard, bytes)`;
/// no arithmetic when the data chunks are all there.
pub(crate) fn decode_stripe(
    k: usize,
    m: usize,
    chunks: &std::collections::BTreeMap<usize, Bytes>,
) -> std::io::Result<Vec<Bytes>> {
    if (0..k).all(|i| chunks.contains_key(&i)) {
        return Ok((0..k).filter_map(|i| chunks.get(&i).cloned()).collect());
    }
    let originals = chunks.iter().filter(|(i, _)| **i < k).map(|(i, c)| (*i, c));
    let recovery = chunks
        .iter()
        .filter(|(i, _)| **i >= k)
        .map(|(i, c)| (*i - k, c));
    let restored = reed_solomon_simd::decode(k, m, originals, recovery)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    (0..k)
        .map(|i| {
            chunks
                .get(&i)
                .cloned()
                .or_else(|| restored.get(&i).map(|c| Bytes::copy_from_slice(c)))
                .ok_or_else(|| std::io::Error::other(format!("data shard {i} not restored")))
        })
        .collect()
}

/// Where one shard of a write goes.
enum Sink {
    Local(BlobWriter),
    Remote {
        sender: mpsc::Sender<std::io::Result<Bytes>>,
        reply: JoinHandle<Result<Receipt, PeerError>>,
    },
    /// Not written (no node for it, or it dropped out): the healer makes it.
    Gone,
}

struct ShardTarget {
    node: String,
    sink: Sink,
    len: u64,
    crc: u32,
}

/// One erasure-coded blob being written to its k+m nodes.
pub struct ErasureWriter {
    plane: DataPlane,
    id: String,
    scheme: Erasure,
    shards: Vec<ShardTarget>,
    /// Bytes of the stripe being filled (less than one stripe between appends).
    buffer: BytesMut,
    len: u64,
    out_of_space: usize,
}

impl DataPlane {
    /// Starts a new blob: erasure-coded under the bucket's data protection
    /// (`protection`; `None`: the cluster's `--erasure`) when it is expected to
    /// reach `--erasure-min-size` (unknown size counts as large) and k+m nodes
    /// take data, replicated otherwise.
    pub async fn create_sized(
        &self,
        size_hint: Option<u64>,
        protection: Option<DataProtection>,
    ) -> std::io::Result<BlobWrite> {
        let config = self.config();
        let scheme = match protection {
            None => config.erasure,
            Some(DataProtection::Replicas) => None,
            Some(DataProtection::Erasure {
                data_shards,
                parity_shards,
            }) => Some(Erasure {
                k: data_shards,
                m: parity_shards,
            }),
        };
        let view = self.view();
        let placeable = view.placeable(config.dead_after);
        let alive = placeable
            .iter()
            .filter(|n| view.liveness(n, config.dead_after) == Liveness::Alive)
            .count();
        // Nodes that stopped heartbeating (suspect) are not dead yet, so the
        // blob would still be coded over them; when so many are silent that the
        // write quorum cannot be met, replicas keep writes going until they
        // return or are declared dead.
        if let Some(scheme) = scheme
            && size_hint.is_none_or(|n| n >= config.erasure_min_size)
            && placeable.len() >= scheme.shards()
            && alive >= scheme.write_quorum()
        {
            return Ok(BlobWrite::Erasure(self.create_erasure(scheme).await?));
        }
        Ok(BlobWrite::Replicated(self.create().await?))
    }

    /// Starts an erasure-coded blob: shard i on the i-th alive node of its
    /// placement order. Fails when fewer than the write quorum are reachable.
    pub async fn create_erasure(&self, scheme: Erasure) -> std::io::Result<ErasureWriter> {
        let id = new_erasure_id(scheme.k, scheme.m);
        let view = self.view();
        let dead_after = self.config().dead_after;
        let targets: Vec<String> = placement::rank(&id, &view.candidates(dead_after))
            .into_iter()
            .filter(|c| {
                view.node(c.id)
                    .is_some_and(|n| view.liveness(n, dead_after) == Liveness::Alive)
            })
            .take(scheme.shards())
            .map(|c| c.id.to_owned())
            .collect();
        if targets.len() < scheme.write_quorum() {
            return Err(unreachable(format!(
                "only {} of the {} nodes an erasure-coded write needs are reachable",
                targets.len(),
                scheme.write_quorum()
            )));
        }
        let mut shards = Vec::with_capacity(scheme.shards());
        for index in 0..scheme.shards() {
            let file = shard_file(&id, index);
            let node = targets.get(index).cloned().unwrap_or_default();
            let sink = if node.is_empty() {
                Sink::Gone
            } else if node == self.node_id() {
                let store = self.local().clone();
                Sink::Local(
                    tokio::task::spawn_blocking(move || store.create_with_id(&file))
                        .await
                        .map_err(std::io::Error::other)??,
                )
            } else if let Some(url) = view.url_of(&node) {
                let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(4);
                let body = super::write::tokio_stream_of(receiver);
                let plane = self.clone();
                let reply =
                    tokio::spawn(
                        async move { plane.inner.peers.put_blob(&url, &file, body).await },
                    );
                Sink::Remote { sender, reply }
            } else {
                Sink::Gone
            };
            shards.push(ShardTarget {
                node,
                sink,
                len: 0,
                crc: 0,
            });
        }
        Ok(ErasureWriter {
            plane: self.clone(),
            id,
            scheme,
            shards,
            buffer: BytesMut::new(),
            len: 0,
            out_of_space: 0,
        })
    }
}

impl ErasureWriter {
    pub fn id(&self) -> &str {
        &self.id
    }

    fn targets_left(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| !matches!(s.sink, Sink::Gone))
            .count()
    }

    fn quorum_lost(&self, message: String) -> std::io::Error {
        if self.out_of_space > 0 {
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("{message} ({} with a full volume)", self.out_of_space),
            )
        } else {
            unreachable(message)
        }
    }

    /// Takes `block`; every full stripe is encoded and sent at once.
    pub async fn append(&mut self, block: Bytes) -> std::io::Result<()> {
        self.len += block.len() as u64;
        self.buffer.extend_from_slice(&block);
        let stripe = self.scheme.k * CHUNK;
        while self.buffer.len() >= stripe {
            let data = self.buffer.split_to(stripe).freeze();
            self.write_stripe(data).await?;
        }
        Ok(())
    }

    /// Encodes one stripe and hands chunk i to shard i's node.
    async fn write_stripe(&mut self, data: Bytes) -> std::io::Result<()> {
        let Erasure { k, m } = self.scheme;
        let chunk = chunk_for(data.len(), k);
        let chunks = tokio::task::spawn_blocking(move || encode_stripe(k, m, &data, chunk))
            .await
            .map_err(std::io::Error::other)??;
        let mut local = None;
        for (index, (target, chunk)) in self.shards.iter_mut().zip(chunks).enumerate() {
            target.len += chunk.len() as u64;
            target.crc = crc32c_append(target.crc, &chunk);
            match std::mem::replace(&mut target.sink, Sink::Gone) {
                Sink::Local(mut writer) => {
                    local = Some((
                        index,
                        tokio::task::spawn_blocking(move || writer.append(&chunk).map(|()| writer)),
                    ));
                }
                Sink::Remote { sender, reply } => {
                    let sent = tokio::time::timeout(SEND_TIMEOUT, sender.send(Ok(chunk))).await;
                    if matches!(sent, Ok(Ok(()))) {
                        target.sink = Sink::Remote { sender, reply };
                    } else {
                        tracing::warn!(
                            node = target.node,
                            blob = self.id,
                            shard = index,
                            "peer dropped from an erasure-coded write"
                        );
                        self.plane
                            .counters()
                            .peer_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        reply.abort();
                    }
                }
                Sink::Gone => {}
            }
        }
        if let Some((index, task)) = local {
            match task.await.map_err(std::io::Error::other)? {
                Ok(writer) => self.shards[index].sink = Sink::Local(writer),
                Err(e) => self.local_failed(&e),
            }
        }
        if self.targets_left() < self.scheme.write_quorum() {
            return Err(self.quorum_lost(format!(
                "an erasure-coded write lost its quorum: {} of {} shards left",
                self.targets_left(),
                self.scheme.write_quorum()
            )));
        }
        Ok(())
    }

    fn local_failed(&mut self, err: &std::io::Error) {
        if is_out_of_space(err) {
            self.out_of_space += 1;
            tracing::error!(blob = self.id, error = %err, "this node's data volume is full");
        } else {
            tracing::error!(blob = self.id, error = %err, "local shard write failed");
        }
    }

    /// Completes the write: returns once at least k+1 shards are durable on
    /// distinct nodes. `replicas[i]` of the result names shard i's node.
    pub async fn finish(mut self) -> std::io::Result<BlobInfo> {
        if !self.buffer.is_empty() {
            let data = self.buffer.split().freeze();
            self.write_stripe(data).await?;
        }
        let mut pending = FuturesUnordered::new();
        let mut local = None;
        for (index, target) in self.shards.iter_mut().enumerate() {
            match std::mem::replace(&mut target.sink, Sink::Gone) {
                Sink::Remote { sender, reply } => {
                    // Closing the channel ends the body; the peer then fsyncs.
                    drop(sender);
                    pending.push(async move { (index, reply.await) });
                }
                Sink::Local(writer) => local = Some((index, writer)),
                Sink::Gone => {}
            }
        }
        let mut durable = vec![String::new(); self.scheme.shards()];
        let mut count = 0;
        if let Some((index, writer)) = local {
            match tokio::task::spawn_blocking(move || writer.finish()).await {
                Ok(Ok(_)) => {
                    durable[index] = self.plane.node_id().to_owned();
                    count += 1;
                }
                Ok(Err(e)) => self.local_failed(&e),
                Err(e) => tracing::error!(blob = self.id, error = %e, "local shard task failed"),
            }
        }
        let quorum = self.scheme.write_quorum();
        let mut deadline = (count >= quorum).then(|| tokio::time::Instant::now() + STRAGGLER_WAIT);
        loop {
            let next = match deadline {
                Some(at) => match tokio::time::timeout_at(at, pending.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => pending.next().await,
            };
            let Some((index, reply)) = next else {
                break;
            };
            let target = &self.shards[index];
            match reply {
                Ok(Ok(receipt)) if receipt.size == target.len && receipt.crc32c == target.crc => {
                    durable[index] = target.node.clone();
                    count += 1;
                }
                Ok(Ok(receipt)) => {
                    tracing::error!(
                        node = target.node,
                        blob = self.id,
                        shard = index,
                        ?receipt,
                        "peer stored a different shard"
                    );
                    let mut only = vec![String::new(); index + 1];
                    only[index] = target.node.clone();
                    self.plane.discard(&self.id, &only).await;
                }
                Ok(Err(PeerError::Status(StatusCode::INSUFFICIENT_STORAGE, e))) => {
                    self.out_of_space += 1;
                    tracing::warn!(node = target.node, blob = self.id, error = %e, "peer volume is full");
                }
                Ok(Err(e)) => {
                    tracing::warn!(node = target.node, blob = self.id, error = %e, "peer shard write failed")
                }
                Err(e) => {
                    tracing::warn!(node = target.node, blob = self.id, error = %e, "peer shard write task failed")
                }
            }
            if count >= quorum && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + STRAGGLER_WAIT);
            }
        }
        if count < quorum {
            self.plane.discard(&self.id, &durable).await;
            return Err(self.quorum_lost(format!("only {count} of {quorum} shards became durable")));
        }
        Ok(BlobInfo {
            id: std::mem::take(&mut self.id),
            size: self.len,
            replicas: durable,
        })
    }
}

impl Drop for ErasureWriter {
    fn drop(&mut self) {
        // An abandoned write: peers see their body end with an error and drop
        // their temp files; the local writer removes its own.
        for target in &mut self.shards {
            if let Sink::Remote { sender, reply } = std::mem::replace(&mut target.sink, Sink::Gone)
            {
                let _ = sender.try_send(Err(std::io::Error::other("write abandoned")));
                reply.abort();
            }
        }
    }
}

/// A blob being written, replicated or erasure-coded.
pub enum BlobWrite {
    Replicated(ReplicatedWriter),
    Erasure(ErasureWriter),
}

impl BlobWrite {
    pub fn id(&self) -> &str {
        match self {
            Self::Replicated(w) => w.id(),
            Self::Erasure(w) => w.id(),
        }
    }

    pub async fn append(&mut self, block: Bytes) -> std::io::Result<()> {
        match self {
            Self::Replicated(w) => w.append(block).await,
            Self::Erasure(w) => w.append(block).await,
        }
    }

    pub async fn finish(self) -> std::io::Result<BlobInfo> {
        match self {
            Self::Replicated(w) => w.finish().await,
            Self::Erasure(w) => w.finish().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 % 251) as u8).collect()
    }

    #[test]
    fn schemes_parse_and_bad_ones_are_refused() {
        assert_eq!("4+2".parse::<Erasure>(), Ok(Erasure { k: 4, m: 2 }));
        assert_eq!(Erasure { k: 4, m: 2 }.write_quorum(), 5);
        for bad in ["4", "0+2", "4+0", "a+b", "60+10"] {
            assert!(bad.parse::<Erasure>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_last_stripe_is_spread_evenly_and_shards_add_up() {
        let layout = Layout {
            k: 4,
            m: 2,
            size: 4 * CHUNK as u64 * 2 + 10,
        };
        assert_eq!(layout.stripes(), 3);
        assert_eq!(layout.chunk_len(0), CHUNK);
        assert_eq!(layout.chunk_len(2), 4);
        assert_eq!(layout.shard_len(), 2 * CHUNK as u64 + 4);
        let exact = Layout {
            k: 4,
            m: 2,
            size: 4 * CHUNK as u64,
        };
        assert_eq!((exact.stripes(), exact.chunk_len(0)), (1, CHUNK));
    }

    #[test]
    fn any_k_chunks_of_a_stripe_give_back_its_data() {
        let (k, m) = (4, 2);
        let data = pattern(3 * 1000 + 7);
        let chunk = chunk_for(data.len(), k);
        let chunks = encode_stripe(k, m, &data, chunk).unwrap();
        assert_eq!(chunks.len(), 6);
        for lost in [[0, 1], [2, 5], [4, 5], [0, 3]] {
            let kept: BTreeMap<usize, Bytes> = chunks
                .iter()
                .enumerate()
                .filter(|(i, _)| !lost.contains(i))
                .map(|(i, c)| (i, c.clone()))
                .collect();
            let restored = decode_stripe(k, m, &kept).unwrap().concat();
            assert_eq!(&restored[..data.len()], &data[..], "lost {lost:?}");
        }
        let three: BTreeMap<usize, Bytes> = chunks.iter().take(3).cloned().enumerate().collect();
        assert!(
            decode_stripe(k, m, &three).is_err(),
            "three of four is not enough"
        );
    }
}
