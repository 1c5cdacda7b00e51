//! Background workers of a node: heartbeats; the healer, which makes this node
//! hold exactly the blobs placement gives it (pulling copies it lacks from peers,
//! dropping copies it no longer should hold once their homes have them); the
//! inventory, which reconciles the volume with the replica records; and the
//! scrubber, which re-reads and verifies every local replica. Each node only ever
//! changes its own volume, so the workers of different nodes never conflict.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::membership::{LEASE_RENEWAL, heartbeat, renew_cache_lease};
use super::{DataPlane, Liveness, placement};
use crate::meta::{BlobReplicas, now_millis};
use crate::storage::shard_files;

/// Blob ids per metadata page the healer reads.
const PAGE: usize = 500;
/// Copies planned per pass at most (the rest wait for the next pass).
const MAX_PLAN: usize = 20_000;
/// Heal passes between inventories of the volume.
const INVENTORY_EVERY: u64 = 10;

/// Keeps a worker's byte rate at or under `rate` per second.
pub(super) struct Pacer {
    rate: u64,
    started: Instant,
    bytes: u64,
}

impl Pacer {
    pub(super) fn new(rate: u64) -> Self {
        Self {
            rate: rate.max(1),
            started: Instant::now(),
            bytes: 0,
        }
    }

    pub(super) async fn spend(&mut self, bytes: u64) {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// Starts heartbeats, the healer and the scrubber; abort the handles to stop.
pub fn spawn_workers(plane: DataPlane) -> Vec<JoinHandle<()>> {
    let beat = {
        let plane = plane.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(plane.config().heartbeat_interval());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = heartbeat(&plane).await {
                    tracing::warn!(error = %e, "heartbeat failed; will retry");
                }
            }
        })
    };
    let lease = {
        let plane = plane.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(LEASE_RENEWAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = renew_cache_lease(plane.meta(), plane.node_id()).await {
                    tracing::debug!(error = %e, "object cache lease not renewed");
                }
            }
        })
    };
    let heal = {
        let plane = plane.clone();
        tokio::spawn(async move {
            let mut pass = 0u64;
            loop {
                if pass.is_multiple_of(INVENTORY_EVERY)
                    && let Err(e) = inventory(&plane).await
                {
                    tracing::warn!(error = %e, "inventory failed; will retry");
                }
                pass += 1;
                if let Err(e) = heal_pass(&plane).await {
                    tracing::warn!(error = %e, "heal pass failed; will retry");
                }
                if let Err(e) = super::ec_heal::heal_pass(&plane).await {
                    tracing::warn!(error = %e, "erasure heal pass failed; will retry");
                }
                tokio::select! {
                    _ = tokio::time::sleep(plane.config().heal_interval) => {}
                    _ = plane.inner.heal_now.notified() => {}
                }
            }
        })
    };
    let scrub = tokio::spawn(async move {
        loop {
            tokio::time::sleep(plane.config().scrub_interval).await;
            if let Err(e) = scrub_pass(&plane).await {
                tracing::warn!(error = %e, "scrub pass failed; will retry");
            }
        }
    });
    vec![beat, lease, heal, scrub]
}

/// What one pass decided this node must do.
#[derive(Default)]
struct Plan {
    fetch: Vec<BlobReplicas>,
    drop: Vec<(String, Vec<String>)>,
    under_replicated: u64,
}

fn plan_pass(plane: &DataPlane, page: Vec<BlobReplicas>, plan: &mut Plan) {
    let view = plane.view();
    let dead_after = plane.config().dead_after;
    let candidates = view.candidates(dead_after);
    let counted = view.counted(dead_after);
    let replicas = plane.effective_replicas(&view);
    let me = plane.node_id();
    // Erasure-coded blobs have shards, not replicas: `ec_heal` looks after them.
    for blob in page.into_iter().filter(|b| !crate::meta::is_erasure(&b.id)) {
        let home = placement::home(&blob.id, &candidates, replicas);
        let copies = blob.nodes.iter().filter(|n| counted.contains(n)).count();
        if copies < replicas {
            plan.under_replicated += 1;
        }
        let held = blob.nodes.iter().any(|n| n == me);
        if home.contains(&me) && !held {
            if plan.fetch.len() < MAX_PLAN {
                plan.fetch.push(blob);
            }
        } else if held && !home.contains(&me) {
            let homes: Vec<String> = home
                .iter()
                .filter(|n| {
                    view.node(n)
                        .is_some_and(|node| view.liveness(node, dead_after) == Liveness::Alive)
                })
                .map(|n| (*n).to_owned())
                .collect();
            if homes.len() >= replicas && plan.drop.len() < MAX_PLAN {
                plan.drop.push((blob.id, homes));
            }
        }
    }
}

/// One pass over all live blobs: fetch what belongs here and is missing, drop
/// what no longer belongs here once its homes hold it.
async fn heal_pass(plane: &DataPlane) -> anyhow::Result<()> {
    let mut plan = Plan::default();
    let mut after = String::new();
    loop {
        let page = plane.meta().blob_replica_page(&after, PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id.clone();
        plan_pass(plane, page, &mut plan);
    }
    let counters = plane.counters();
    counters
        .under_replicated
        .store(plan.under_replicated, Ordering::Relaxed);
    let to_move: u64 = plan.fetch.iter().map(|b| b.size).sum();
    counters.bytes_to_move.store(to_move, Ordering::Relaxed);
    let mut pacer = Pacer::new(plane.config().heal_rate);
    for blob in plan.fetch {
        match fetch(plane, &blob).await {
            Ok(()) => {
                counters.healed_blobs.fetch_add(1, Ordering::Relaxed);
                counters
                    .healed_bytes
                    .fetch_add(blob.size, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(blob = blob.id, error = %e, "cannot copy a replica here yet"),
        }
        counters.bytes_to_move.fetch_sub(
            blob.size
                .min(counters.bytes_to_move.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        pacer.spend(blob.size).await;
    }
    let replicas = plane.effective_replicas(&plane.view());
    for (id, homes) in plan.drop {
        if plane
            .meta()
            .remove_surplus_replica(&id, plane.node_id(), &homes, replicas)
            .await?
        {
            let local = plane.local().clone();
            let blob = id.clone();
            tokio::task::spawn_blocking(move || local.delete(&blob)).await??;
            counters.dropped_replicas.fetch_add(1, Ordering::Relaxed);
        }
    }
    counters
        .last_heal_pass
        .store(now_millis() as u64, Ordering::Relaxed);
    plane.counters().heal_passes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Copies `blob` here from a peer that holds it, then records the copy.
async fn fetch(plane: &DataPlane, blob: &BlobReplicas) -> anyhow::Result<()> {
    if plane.local().contains(&blob.id) {
        // Already here (an unrecorded straggler of a write): verify and record.
        let local = plane.local().clone();
        let id = blob.id.clone();
        tokio::task::spawn_blocking(move || local.open_blob(&id)?.verify_all()).await??;
        plane.meta().add_replica(&blob.id, plane.node_id()).await?;
        return Ok(());
    }
    let view = plane.view_knowing(&blob.nodes).await;
    let dead_after = plane.config().dead_after;
    let mut sources: Vec<(Liveness, String)> = blob
        .nodes
        .iter()
        .filter(|n| *n != plane.node_id())
        .filter_map(|n| {
            view.node(n)
                .map(|node| (view.liveness(node, dead_after), node.url.clone()))
        })
        .collect();
    sources.sort_by_key(|(liveness, _)| *liveness as u8);
    let mut last_error = anyhow::anyhow!("no peer holds blob {}", blob.id);
    for (_, url) in sources {
        match copy_from(plane, &url, blob).await {
            Ok(()) => {
                plane.meta().add_replica(&blob.id, plane.node_id()).await?;
                return Ok(());
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// Copies one blob from the peer at `url`, checked end to end against the
/// source's block checksums.
pub(super) async fn copy_from(
    plane: &DataPlane,
    url: &str,
    blob: &BlobReplicas,
) -> anyhow::Result<()> {
    let expected = plane.inner.peers.block_crcs(url, &blob.id).await?;
    let stream = Box::pin(
        plane
            .inner
            .peers
            .get_blob(url, &blob.id, 0..blob.size)
            .await?,
    );
    let local = plane.local().clone();
    let id = blob.id.clone();
    let writer = tokio::task::spawn_blocking(move || local.create_with_id(&id)).await??;
    let (writer, _) = super::append_stream(writer, stream).await?;
    if writer.len() != blob.size {
        anyhow::bail!("peer sent {} of {} bytes", writer.len(), blob.size);
    }
    tokio::task::spawn_blocking(move || writer.finish_matching(&expected)).await??;
    Ok(())
}

/// Reconciles the volume with the records: files of live blobs not recorded
/// here are recorded (a write's late copy, or data from before clustering);
/// records of files that are gone (a wiped volume) are forgotten.
pub(crate) async fn inventory(plane: &DataPlane) -> anyhow::Result<()> {
    let local = plane.local().clone();
    let files = tokio::task::spawn_blocking(move || local.list()).await??;
    let me = plane.node_id();
    let (mut count, mut bytes) = (0u64, 0u64);
    for batch in files.chunks(500) {
        // A shard file is known by its erasure-coded blob.
        let ids: Vec<String> = batch
            .iter()
            .map(|(id, _)| shard_files::blob_of_file(id).to_owned())
            .collect();
        let states = plane.meta().blob_states(me, &ids).await?;
        for ((file, size), (live, recorded)) in batch.iter().zip(states) {
            if live == Some(true) {
                count += 1;
                bytes += size;
                if !recorded {
                    match shard_files::parse_shard_file(file) {
                        Some((blob, shard)) => plane.meta().add_shard(blob, shard, me).await?,
                        None => plane.meta().add_replica(file, me).await?,
                    }
                }
            }
        }
    }
    plane.counters().local_blobs.store(count, Ordering::Relaxed);
    plane.counters().local_bytes.store(bytes, Ordering::Relaxed);
    let mut after = String::new();
    loop {
        let page = plane.meta().replicas_on_node(me, &after, PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.clone();
        let missing: Vec<String> = page
            .into_iter()
            .filter(|id| match crate::meta::is_erasure(id) {
                true => plane.local().shard_held(id).is_none(),
                false => !plane.local().contains(id),
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        let states = plane.meta().blob_states(me, &missing).await?;
        for (id, (live, _)) in missing.iter().zip(states) {
            // A garbage blob's file may be gone before its record (collection
            // interrupted by a crash): that is bookkeeping, not lost data.
            if live == Some(true) {
                let objects = plane.objects_using(id).await;
                tracing::warn!(
                    blob = id,
                    objects = %objects,
                    "a recorded replica is missing from this volume"
                );
                plane.inner.heal_now.notify_one();
            } else {
                tracing::debug!(blob = id, "forgetting the record of a collected replica");
            }
            plane.meta().remove_replica(id, me).await?;
        }
    }
    Ok(())
}

/// Reads and verifies every local replica, at the scrub rate.
async fn scrub_pass(plane: &DataPlane) -> anyhow::Result<()> {
    let local = plane.local().clone();
    let files = tokio::task::spawn_blocking(move || local.list()).await??;
    let mut pacer = Pacer::new(plane.config().scrub_rate);
    for (id, size) in files {
        let local = plane.local().clone();
        let blob = id.clone();
        let verified =
            tokio::task::spawn_blocking(move || local.open_blob(&blob)?.verify_all()).await?;
        plane
            .counters()
            .scrubbed_blobs
            .fetch_add(1, Ordering::Relaxed);
        match verified {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(blob = id, error = %e, "scrub found a bad replica");
                plane.quarantine(&id).await;
            }
        }
        pacer.spend(size).await;
    }
    Ok(())
}
