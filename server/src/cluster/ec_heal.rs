//! Healing erasure-coded blobs. A blob's home is the top k+m nodes of its
//! placement order; each home node that holds no shard takes one shard index no
//! home node holds (the i-th such node the i-th missing index), copying it from
//! a node that still has it (a draining one) or rebuilding it from any k others.
//! A node outside the home drops its shard once a home node holds that index.
//! Counts blobs with fewer than k+m healthy shards, and fewer than k+1.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::ec_read::StripeReader;
use super::erasure::{Layout, parity_of};
use super::healer::Pacer;
use super::{DataPlane, Liveness, placement};
use crate::meta::{BlobReplicas, BlobShards};
use crate::storage::shard_files::{parse_erasure_id, shard_file};

const PAGE: usize = 500;

/// What this node must do for one blob.
enum Task {
    Rebuild(BlobShards, usize),
    Drop(String, usize),
}

/// One pass over every live erasure-coded blob.
pub(super) async fn heal_pass(plane: &DataPlane) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    let (mut shards_at_risk, mut data_at_risk) = (0u64, 0u64);
    let mut after = String::new();
    loop {
        let page = plane.meta().blob_shard_page(&after, PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id.clone();
        for blob in page {
            let Some((geometry, _)) = parse_erasure_id(&blob.id) else {
                continue;
            };
            let view = plane.view();
            let dead_after = plane.config().dead_after;
            let counted = view.counted(dead_after);
            let healthy: BTreeSet<usize> = blob
                .shards
                .iter()
                .filter(|(_, node)| counted.contains(node))
                .map(|(shard, _)| *shard)
                .collect();
            if healthy.len() < geometry.shards() {
                shards_at_risk += 1;
            }
            if healthy.len() < geometry.k + 1 {
                data_at_risk += 1;
            }
            let home = placement::home(&blob.id, &view.candidates(dead_after), geometry.shards());
            let held_by = |node: &str| blob.shards.iter().find(|(_, n)| n == node).map(|(s, _)| *s);
            let covered: BTreeSet<usize> = home.iter().filter_map(|n| held_by(n)).collect();
            let missing = (0..geometry.shards()).filter(|i| !covered.contains(i));
            let lacking = home.iter().filter(|n| {
                held_by(n).is_none()
                    && view
                        .node(n)
                        .is_some_and(|node| view.liveness(node, dead_after) == Liveness::Alive)
            });
            let me = plane.node_id();
            let mine = lacking
                .zip(missing)
                .find(|(n, _)| **n == me)
                .map(|(_, i)| i);
            match (held_by(me), mine) {
                (None, Some(index)) => tasks.push(Task::Rebuild(blob, index)),
                (Some(index), _) if !home.contains(&me) && covered.contains(&index) => {
                    tasks.push(Task::Drop(blob.id, index))
                }
                _ => {}
            }
        }
    }
    let counters = plane.counters();
    counters
        .shards_at_risk
        .store(shards_at_risk, Ordering::Relaxed);
    counters.data_at_risk.store(data_at_risk, Ordering::Relaxed);
    let mut pacer = Pacer::new(plane.config().heal_rate);
    for task in tasks {
        match task {
            Task::Rebuild(blob, index) => match rebuild(plane, &blob, index).await {
                Ok(bytes) => {
                    counters.healed_blobs.fetch_add(1, Ordering::Relaxed);
                    counters.healed_bytes.fetch_add(bytes, Ordering::Relaxed);
                    pacer.spend(bytes).await;
                }
                Err(e) => {
                    tracing::warn!(blob = blob.id, shard = index, error = %e, "cannot rebuild a shard here yet")
                }
            },
            Task::Drop(id, index) => {
                let counted = plane.view().counted(plane.config().dead_after);
                if plane
                    .meta()
                    .remove_surplus_shard(&id, index, plane.node_id(), &counted)
                    .await?
                {
                    let local = plane.local().clone();
                    let file = shard_file(&id, index);
                    tokio::task::spawn_blocking(move || local.delete(&file)).await??;
                    counters.dropped_replicas.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    Ok(())
}

/// Makes shard `index` of `blob` on this node and records it; returns its size.
async fn rebuild(plane: &DataPlane, blob: &BlobShards, index: usize) -> anyhow::Result<u64> {
    let me = plane.node_id().to_owned();
    // A write's straggler may already be here: record what it is.
    let local = plane.local().clone();
    let id = blob.id.clone();
    if let Some(held) = tokio::task::spawn_blocking(move || local.shard_held(&id)).await? {
        let local = plane.local().clone();
        let file = shard_file(&blob.id, held);
        tokio::task::spawn_blocking(move || local.open_blob(&file)?.verify_all()).await??;
        plane.meta().add_shard(&blob.id, held, &me).await?;
        return Ok(0);
    }
    let reader = StripeReader::new(plane, blob).await?;
    let layout = reader.layout;
    let file = shard_file(&blob.id, index);
    // A node that still holds this index (one draining): copy, checked end to end.
    for source in reader.sources.iter().filter(|s| s.shard == index) {
        let Some(url) = &source.url else { continue };
        let copy = BlobReplicas {
            id: file.clone(),
            size: layout.shard_len(),
            nodes: vec![source.node.clone()],
        };
        match super::healer::copy_from(plane, url, &copy).await {
            Ok(()) => {
                plane.meta().add_shard(&blob.id, index, &me).await?;
                return Ok(layout.shard_len());
            }
            Err(e) => {
                tracing::debug!(blob = blob.id, shard = index, error = %e, "copy failed; rebuilding instead")
            }
        }
    }
    let local = plane.local().clone();
    let name = file.clone();
    let mut writer = tokio::task::spawn_blocking(move || local.create_with_id(&name)).await??;
    for s in 0..layout.stripes() {
        let chunk = rebuilt_chunk(&reader, layout, s, index).await?;
        writer =
            tokio::task::spawn_blocking(move || writer.append(&chunk).map(|()| writer)).await??;
    }
    tokio::task::spawn_blocking(move || writer.finish()).await??;
    plane.meta().add_shard(&blob.id, index, &me).await?;
    Ok(layout.shard_len())
}

/// Shard `index`'s chunk of stripe `s`, from any k shards of it.
async fn rebuilt_chunk(
    reader: &StripeReader,
    layout: Layout,
    s: u64,
    index: usize,
) -> anyhow::Result<bytes::Bytes> {
    let data = reader.data_chunks(s).await?;
    if index < layout.k {
        return data
            .get(index)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("data shard {index} missing after decoding"));
    }
    let (k, m) = (layout.k, layout.m);
    let parity = tokio::task::spawn_blocking(move || parity_of(k, m, &data)).await??;
    parity
        .get(index - k)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("parity shard {index} not encoded"))
}
