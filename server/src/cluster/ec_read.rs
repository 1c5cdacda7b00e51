//! Reading an erasure-coded blob stripe by stripe (two in flight). For each
//! stripe the data shards holding the requested bytes are fetched in parallel
//! — no decoding when they all answer; a shard that is missing, corrupt or slow
//! (no answer within `HEDGE_AFTER`) brings in others until any k are there, and
//! the stripe is reconstructed. Sources verify block checksums; a bad local
//! shard is quarantined by `local_stream` and rebuilt by the healer.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt, TryStreamExt};

use super::erasure::{CHUNK, Layout, decode_stripe};
use super::{DataPlane, unreachable};
use crate::meta::BlobShards;
use crate::storage::shard_files::{parse_erasure_id, shard_file};

/// A shard that has not answered in this long gets a stand-in: one more shard
/// is read, so a slow node does not set the latency.
const HEDGE_AFTER: Duration = Duration::from_secs(1);
/// A shard read that takes longer than this has failed.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node that failed or lagged on a read is asked last by later reads.
const LAGGING_FOR: Duration = Duration::from_secs(10);
/// Stripes fetched ahead of the one being sent.
const STRIPES_IN_FLIGHT: usize = 2;

/// A node recorded as holding one shard.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub shard: usize,
    pub node: String,
    /// `None`: this node.
    pub url: Option<String>,
}

/// What reading the stripes of one blob needs.
pub(super) struct StripeReader {
    pub plane: DataPlane,
    pub id: String,
    pub layout: Layout,
    /// Alive holders first.
    pub sources: Vec<Source>,
    /// Sources (by position in `sources`) that failed or were slow on an
    /// earlier stripe: later stripes ask the others first, so one slow or dead
    /// node costs one hedge per read, not one per stripe.
    lagging: std::sync::Mutex<BTreeSet<usize>>,
}

impl DataPlane {
    /// Streams bytes `range` of erasure-coded blob `id`.
    pub(crate) fn erasure_stream(
        &self,
        id: &str,
        range: Range<u64>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static + use<> {
        let plane = self.clone();
        let id = id.to_owned();
        futures::stream::once(async move {
            let blob = plane
                .meta()
                .shards_of(&id)
                .await
                .map_err(|e| unreachable(format!("metadata store: {e}")))?
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("blob {id} is gone"))
                })?;
            let reader = Arc::new(StripeReader::new(&plane, &blob).await?);
            Ok::<_, io::Error>(reader.stream(range))
        })
        .try_flatten()
    }

    /// Peers that failed or lagged on an erasure-coded read in the last
    /// `LAGGING_FOR`.
    fn lagging_nodes(&self) -> BTreeSet<String> {
        let mut nodes = self
            .inner
            .lagging_nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        nodes.retain(|_, since| since.elapsed() < LAGGING_FOR);
        nodes.keys().cloned().collect()
    }

    fn note_lagging(&self, node: &str) {
        if node == self.node_id() {
            return;
        }
        self.inner
            .lagging_nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(node.to_owned(), std::time::Instant::now());
    }

    /// Where the shards of `blob` are, as sources to read from (alive first).
    pub(super) async fn shard_sources(&self, blob: &BlobShards) -> Vec<Source> {
        let nodes: Vec<String> = blob.shards.iter().map(|(_, n)| n.clone()).collect();
        let view = self.view_knowing(&nodes).await;
        let dead_after = self.config().dead_after;
        let mut sources: Vec<(u8, Source)> = blob
            .shards
            .iter()
            .filter_map(|(shard, node)| {
                if node == self.node_id() {
                    return Some((
                        0,
                        Source {
                            shard: *shard,
                            node: node.clone(),
                            url: None,
                        },
                    ));
                }
                let member = view.node(node)?;
                let rank = view.liveness(member, dead_after) as u8;
                Some((
                    rank,
                    Source {
                        shard: *shard,
                        node: node.clone(),
                        url: Some(member.url.clone()),
                    },
                ))
            })
            .collect();
        sources.sort_by_key(|(rank, _)| *rank);
        sources.into_iter().map(|(_, s)| s).collect()
    }
}

impl StripeReader {
    pub async fn new(plane: &DataPlane, blob: &BlobShards) -> io::Result<Self> {
        let (geometry, _) = parse_erasure_id(&blob.id).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad erasure-coded blob id {}", blob.id),
            )
        })?;
        let sources = plane.shard_sources(blob).await;
        let slow = plane.lagging_nodes();
        let lagging = sources
            .iter()
            .enumerate()
            .filter(|(_, src)| slow.contains(&src.node))
            .map(|(pos, _)| pos)
            .collect();
        Ok(Self {
            plane: plane.clone(),
            id: blob.id.clone(),
            layout: Layout {
                k: geometry.k,
                m: geometry.m,
                size: blob.size,
            },
            sources,
            lagging: std::sync::Mutex::new(lagging),
        })
    }

    fn stream(
        self: Arc<Self>,
        range: Range<u64>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static + use<> {
        let end = range.end.min(self.layout.size);
        let start = range.start.min(end);
        let per_stripe = self.layout.stripe_bytes();
        let stripes = match start < end {
            true => start / per_stripe..(end - 1) / per_stripe + 1,
            false => 0..0,
        };
        futures::stream::iter(stripes)
            .map(move |s| {
                let reader = self.clone();
                let base = s * per_stripe;
                let want = start.max(base) - base..end.min(base + per_stripe) - base;
                async move { reader.read(s, want).await }
            })
            .buffered(STRIPES_IN_FLIGHT)
    }

    /// Bytes `want` (offsets within the stripe's data) of stripe `s`.
    async fn read(&self, s: u64, want: Range<u64>) -> io::Result<Bytes> {
        let chunk = self.layout.chunk_len(s) as u64;
        let first = (want.start / chunk) as usize;
        let last = ((want.end - 1) / chunk) as usize;
        let needed: Vec<usize> = (first..=last).collect();
        let chunks = self.gather(s, &needed).await?;
        let data = if needed.iter().all(|i| chunks.contains_key(i)) {
            needed
                .iter()
                .filter_map(|i| chunks.get(i).cloned())
                .collect()
        } else {
            let (k, m) = (self.layout.k, self.layout.m);
            let restored = tokio::task::spawn_blocking(move || decode_stripe(k, m, &chunks))
                .await
                .map_err(io::Error::other)??;
            restored[first..=last].to_vec()
        };
        let mut out = BytesMut::with_capacity((want.end - want.start) as usize);
        let offset = first as u64 * chunk;
        for (i, piece) in data.iter().enumerate() {
            let piece_start = offset + i as u64 * chunk;
            let from = want.start.max(piece_start) - piece_start;
            let to = want.end.min(piece_start + chunk) - piece_start;
            if from < to {
                out.extend_from_slice(&piece[from as usize..to as usize]);
            }
        }
        Ok(out.freeze())
    }

    /// The k data chunks of stripe `s` (fetched, or reconstructed).
    pub async fn data_chunks(&self, s: u64) -> io::Result<Vec<Bytes>> {
        let needed: Vec<usize> = (0..self.layout.k).collect();
        let chunks = self.gather(s, &needed).await?;
        let (k, m) = (self.layout.k, self.layout.m);
        tokio::task::spawn_blocking(move || decode_stripe(k, m, &chunks))
            .await
            .map_err(io::Error::other)?
    }

    /// Chunks of stripe `s`: either every shard in `needed`, or any k.
    async fn gather(&self, s: u64, needed: &[usize]) -> io::Result<BTreeMap<usize, Bytes>> {
        let k = self.layout.k;
        let len = self.layout.chunk_len(s);
        let lagging = self.lagging();
        // Sources that have kept up first; among them needed data shards, then
        // the other data shards, then parity.
        let mut order: Vec<(usize, &Source)> = self.sources.iter().enumerate().collect();
        order.sort_by_key(|(pos, src)| {
            let group = match (needed.contains(&src.shard), src.shard < k) {
                (true, _) => 0,
                (false, true) => 1,
                (false, false) => 2,
            };
            (lagging.contains(pos), group)
        });
        // A needed shard only a lagging source holds: reconstruct from the start.
        let mut want = match needed.iter().all(|i| {
            order
                .iter()
                .any(|(pos, src)| src.shard == *i && !lagging.contains(pos))
        }) {
            true => needed.len(),
            false => k,
        };
        let mut next = 0;
        let mut got: BTreeMap<usize, Bytes> = BTreeMap::new();
        let mut busy: BTreeSet<usize> = BTreeSet::new();
        let mut asked: BTreeSet<usize> = BTreeSet::new();
        let mut in_flight = FuturesUnordered::new();
        let mut last_error = None;
        loop {
            if needed.iter().all(|i| got.contains_key(i)) || got.len() >= k {
                return Ok(got);
            }
            while got.len() + in_flight.len() < want && next < order.len() {
                let (pos, source) = order[next];
                next += 1;
                if got.contains_key(&source.shard) || busy.contains(&source.shard) {
                    continue;
                }
                busy.insert(source.shard);
                asked.insert(pos);
                let fetch = self.fetch(source, s, len);
                in_flight.push(async move { (pos, source, fetch.await) });
            }
            if in_flight.is_empty() {
                let err = last_error.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "too few shards recorded")
                });
                tracing::error!(blob = self.id, stripe = s, error = %err, "fewer than k shards of a stripe are readable");
                return Err(err);
            }
            match tokio::time::timeout(HEDGE_AFTER, in_flight.next()).await {
                Ok(Some((pos, source, Ok(bytes)))) => {
                    busy.remove(&source.shard);
                    asked.remove(&pos);
                    got.insert(source.shard, bytes);
                }
                Ok(Some((pos, source, Err(e)))) => {
                    if !lagging.contains(&pos) {
                        tracing::warn!(blob = self.id, shard = source.shard, node = source.node, error = %e, "shard unreadable; reconstructing around it");
                    }
                    busy.remove(&source.shard);
                    asked.remove(&pos);
                    self.mark_lagging([pos]);
                    last_error = Some(e);
                    want = want.max(k);
                }
                Ok(None) => {}
                Err(_) => {
                    // Hedge: one more shard than is now outstanding; the ones
                    // still out are asked last for the next stripes.
                    self.mark_lagging(asked.iter().copied());
                    want = (got.len() + in_flight.len() + 1).max(k);
                }
            }
        }
    }

    fn lagging(&self) -> BTreeSet<usize> {
        self.lagging
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn mark_lagging(&self, positions: impl IntoIterator<Item = usize>) {
        let positions: Vec<usize> = positions.into_iter().collect();
        for pos in &positions {
            if let Some(source) = self.sources.get(*pos) {
                self.plane.note_lagging(&source.node);
            }
        }
        self.lagging
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(positions);
    }

    /// Shard `source.shard`'s chunk of stripe `s` (`len` bytes), verified by its holder.
    fn fetch(
        &self,
        source: &Source,
        s: u64,
        len: usize,
    ) -> impl Future<Output = io::Result<Bytes>> + Send + 'static + use<> {
        let plane = self.plane.clone();
        let file = shard_file(&self.id, source.shard);
        let start = s * CHUNK as u64;
        let range = start..start + len as u64;
        let url = source.url.clone();
        async move {
            let read = async {
                let stream: std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>> =
                    match url {
                        None => Box::pin(plane.local_stream(&file, range)),
                        Some(url) => Box::pin(
                            plane
                                .inner
                                .peers
                                .get_blob(&url, &file, range)
                                .await
                                .map_err(|e| io::Error::other(e.to_string()))?,
                        ),
                    };
                let bytes = stream
                    .try_fold(BytesMut::with_capacity(len), |mut acc, chunk| async move {
                        acc.extend_from_slice(&chunk);
                        Ok(acc)
                    })
                    .await?;
                if bytes.len() != len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("shard {file} gave {} of {len} bytes", bytes.len()),
                    ));
                }
                Ok(bytes.freeze())
            };
            tokio::time::timeout(FETCH_TIMEOUT, read)
                .await
                .map_err(|_| unreachable("a shard read timed out"))?
        }
    }
}
