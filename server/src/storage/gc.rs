//! Garbage collection of blobs: files the metadata store marked as garbage
//! (replaced or deleted objects, aborted uploads) and crash leftovers — temp files
//! and blob files the store has never heard of — once they are older than a grace
//! period that no in-flight request can outlast between rename and commit.

use std::path::Path;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use super::BlobStore;
use crate::meta::MetaStore;

/// What one collection pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub garbage_removed: usize,
    pub orphans_removed: usize,
    pub temp_removed: usize,
}

/// Runs one pass: garbage rows first, then (when `walk`) a walk of the blob
/// directories for orphans older than `grace`.
pub async fn collect_garbage(
    meta: &MetaStore,
    blobs: &BlobStore,
    node: &str,
    grace: Duration,
    walk: bool,
) -> anyhow::Result<GcReport> {
    let mut report = GcReport::default();
    loop {
        let ids = meta.garbage_blobs(node, 500).await?;
        if ids.is_empty() {
            break;
        }
        let store = blobs.clone();
        // Blobs kept in the metadata store have no file; forgetting them is enough.
        let doomed: Vec<String> = ids
            .iter()
            .filter(|id| !crate::meta::is_inline(id))
            .cloned()
            .collect();
        tokio::task::spawn_blocking(move || {
            doomed.iter().try_for_each(|id| {
                if super::shard_files::parse_erasure_id(id).is_some() {
                    store.delete_shards(id)
                } else {
                    store.delete(id)
                }
            })
        })
        .await??;
        meta.forget_garbage_blobs(node, &ids).await?;
        report.garbage_removed += ids.len();
    }
    if !walk {
        return Ok(report);
    }
    let cutoff = SystemTime::now() - grace;
    let store = blobs.clone();
    let (temp_removed, candidates) =
        tokio::task::spawn_blocking(move || -> std::io::Result<(usize, Vec<String>)> {
            let temp_removed = remove_old_files(store.tmp_dir(), cutoff)?;
            let mut candidates = Vec::new();
            for shard in std::fs::read_dir(store.blobs_dir())? {
                let shard = shard?;
                if shard.file_type()?.is_dir() {
                    candidates.extend(old_file_names(&shard.path(), cutoff)?);
                }
            }
            Ok((temp_removed, candidates))
        })
        .await??;
    report.temp_removed = temp_removed;
    for batch in candidates.chunks(500) {
        // Unknown to the store, or garbage whose copy here was never recorded
        // (a write's late replica): nothing will ever read it.
        // A shard file is known by the erasure-coded blob it belongs to.
        let blobs_of: Vec<String> = batch
            .iter()
            .map(|name| super::shard_files::blob_of_file(name).to_owned())
            .collect();
        let states = meta.blob_states(node, &blobs_of).await?;
        let orphans: Vec<String> = batch
            .iter()
            .zip(states)
            .filter(|(_, (live, recorded))| live.is_none() || (*live == Some(false) && !*recorded))
            .map(|(id, _)| id.clone())
            .collect();
        report.orphans_removed += orphans.len();
        let store = blobs.clone();
        tokio::task::spawn_blocking(move || orphans.iter().try_for_each(|id| store.delete(id)))
            .await??;
    }
    Ok(report)
}

fn is_older(entry: &std::fs::DirEntry, cutoff: SystemTime) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified < cutoff)
}

fn old_file_names(dir: &Path, cutoff: SystemTime) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if is_older(&entry, cutoff) {
            names.extend(entry.file_name().to_str().map(str::to_owned));
        }
    }
    Ok(names)
}

fn remove_old_files(dir: &Path, cutoff: SystemTime) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if is_older(&entry, cutoff) {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Collects garbage every `interval`, and walks for orphans every `walk_every`
/// passes (the first pass included), until the task is aborted.
pub fn spawn_collector(
    meta: MetaStore,
    blobs: BlobStore,
    node: String,
    interval: Duration,
    grace: Duration,
    walk_every: u32,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        let mut pass = 0u32;
        loop {
            ticker.tick().await;
            let walk = pass.is_multiple_of(walk_every.max(1));
            pass = pass.wrapping_add(1);
            match collect_garbage(&meta, &blobs, &node, grace, walk).await {
                Ok(report) if report != GcReport::default() => {
                    tracing::info!(?report, "garbage collected")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "garbage collection failed; will retry"),
            }
        }
    })
}
