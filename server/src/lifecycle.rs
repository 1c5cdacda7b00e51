//! The lifecycle worker: applies each bucket's lifecycle rules in the
//! background. Work is incremental: every tick handles at most one page of
//! versions and one page of multipart uploads per bucket, resuming where the
//! previous tick stopped, so a big bucket never costs a full scan per tick.
//! The length of a lifecycle "day" is configurable for tests
//! (`COFFER_LIFECYCLE_DAY_SECONDS`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::meta::{ListQuery, MetaError, MetaResult, MetaStore, ObjectVersion, now_millis};
use crate::s3::lifecycle::{LifecycleConfiguration, Rule, bucket_lifecycle};

/// Versions or uploads looked at per bucket and tick.
const PAGE: usize = 1000;

/// Where the walk of one bucket continues, and what it carries across a page
/// break inside a key.
#[derive(Debug, Clone, Default)]
struct Cursor {
    key: Option<String>,
    version: Option<String>,
    /// Noncurrent versions of `key` seen so far (newest first).
    noncurrent_seen: usize,
    /// When the newest version seen of `key` was written: the moment the next
    /// older one became noncurrent.
    successor_modified: Option<i64>,
    upload_key: Option<String>,
    upload_id: Option<String>,
}

pub struct Worker {
    meta: MetaStore,
    day_ms: i64,
    cursors: HashMap<String, Cursor>,
}

/// Starts the worker: one pass every `interval`, with `day` as the length of a
/// lifecycle day. In a cluster only one node applies the rules at a time: passes
/// run only while `in_charge()` says so (the cluster's coordinator).
pub fn spawn_worker(
    meta: MetaStore,
    day: Duration,
    interval: Duration,
    in_charge: impl Fn() -> bool + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut worker = Worker::new(meta, day);
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            if !in_charge() {
                continue;
            }
            if let Err(e) = worker.tick().await {
                tracing::warn!(error = %e, "lifecycle pass failed");
            }
        }
    })
}

impl Worker {
    pub fn new(meta: MetaStore, day: Duration) -> Self {
        Self {
            meta,
            day_ms: i64::try_from(day.as_millis()).unwrap_or(i64::MAX).max(1),
            cursors: HashMap::new(),
        }
    }

    /// One pass over every bucket that has lifecycle rules.
    pub async fn tick(&mut self) -> MetaResult<()> {
        for bucket in self.meta.list_buckets().await? {
            let Some(config) = bucket_lifecycle(&self.meta, &bucket.name).await? else {
                self.cursors.remove(&bucket.name);
                continue;
            };
            let rules: Vec<Rule> = config.rules.into_iter().filter(Rule::enabled).collect();
            if rules.is_empty() {
                continue;
            }
            let config = LifecycleConfiguration { rules };
            let mut cursor = self.cursors.remove(&bucket.name).unwrap_or_default();
            self.versions_page(&bucket.name, &config, &mut cursor)
                .await?;
            self.uploads_page(&bucket.name, &config, &mut cursor)
                .await?;
            self.cursors.insert(bucket.name, cursor);
        }
        Ok(())
    }

    fn older_than(&self, since: i64, days: i32, now: i64) -> bool {
        since.saturating_add(i64::from(days).saturating_mul(self.day_ms)) <= now
    }

    async fn versions_page(
        &self,
        bucket: &str,
        config: &LifecycleConfiguration,
        cursor: &mut Cursor,
    ) -> MetaResult<()> {
        let query = ListQuery {
            prefix: String::new(),
            delimiter: None,
            start_after: cursor.key.clone().map(String::into_bytes),
            max_keys: PAGE,
        };
        let page = match self
            .meta
            .list_object_versions(bucket, &query, cursor.version.as_deref())
            .await
        {
            Ok(page) => page,
            // The version the cursor pointed at is gone (this worker may have
            // expired it): continue after its key.
            Err(MetaError::NoSuchVersion) => {
                cursor.version = None;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let now = now_millis();
        // Versions of one key arrive together, newest first; a key with only a
        // delete marker left is known once the next key (or the end) comes.
        let mut group: Vec<ObjectVersion> = Vec::new();
        for entry in page.items {
            if group
                .last()
                .is_some_and(|last| last.object.key != entry.object.key)
            {
                self.finish_key(bucket, config, &group).await?;
                group.clear();
            }
            if cursor.key.as_deref() != Some(entry.object.key.as_str()) {
                cursor.noncurrent_seen = 0;
                cursor.successor_modified = None;
            }
            self.apply(bucket, config, &entry, cursor, now).await?;
            cursor.key = Some(entry.object.key.clone());
            cursor.version = Some(entry.object.version_id.clone());
            cursor.successor_modified = Some(entry.object.last_modified);
            group.push(entry);
        }
        if !page.is_truncated {
            self.finish_key(bucket, config, &group).await?;
            let uploads = (cursor.upload_key.take(), cursor.upload_id.take());
            *cursor = Cursor::default();
            (cursor.upload_key, cursor.upload_id) = uploads;
        }
        Ok(())
    }

    /// Expiration of the current version and of noncurrent versions.
    async fn apply(
        &self,
        bucket: &str,
        config: &LifecycleConfiguration,
        entry: &ObjectVersion,
        cursor: &mut Cursor,
        now: i64,
    ) -> MetaResult<()> {
        let object = &entry.object;
        let rules = config.rules.iter().filter(|r| r.filter.matches(object));
        if entry.is_latest {
            if object.delete_marker {
                return Ok(());
            }
            let expired = rules.clone().any(|r| {
                r.expiration.as_ref().is_some_and(|e| {
                    e.days
                        .is_some_and(|d| self.older_than(object.last_modified, d, now))
                        || e.date.is_some_and(|d| d.saturating_mul(1000) <= now)
                })
            });
            // Re-read: the key may have been written since the page was listed
            // (or another node's worker got there first).
            if expired
                && self
                    .meta
                    .get_object(bucket, &object.key)
                    .await?
                    .is_some_and(|c| c.version_id == object.version_id)
            {
                tracing::info!(bucket, key = %object.key, "lifecycle: expiring current version");
                self.meta.delete_object(bucket, &object.key).await?;
            }
            return Ok(());
        }
        // Noncurrent: newer_versions newest noncurrent versions are kept.
        let index = cursor.noncurrent_seen;
        cursor.noncurrent_seen += 1;
        let since = cursor.successor_modified.unwrap_or(object.last_modified);
        let expired = rules.clone().any(|r| {
            r.noncurrent_expiration.as_ref().is_some_and(|n| {
                let beyond_kept = n
                    .newer_versions
                    .is_none_or(|keep| index >= keep.max(0) as usize);
                beyond_kept && n.days.is_some_and(|d| self.older_than(since, d, now))
            })
        });
        if expired {
            tracing::info!(bucket, key = %object.key, version = %object.version_id, "lifecycle: expiring noncurrent version");
            match self
                .meta
                .delete_object_version(bucket, &object.key, &object.version_id)
                .await
            {
                // Object Lock outranks lifecycle, as on S3: the version stays and
                // is looked at again on a later pass.
                Ok(_) | Err(MetaError::ObjectLocked) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `ExpiredObjectDeleteMarker`: a delete marker that is all a key has left.
    async fn finish_key(
        &self,
        bucket: &str,
        config: &LifecycleConfiguration,
        group: &[ObjectVersion],
    ) -> MetaResult<()> {
        let [only] = group else {
            return Ok(());
        };
        let marker = &only.object;
        if !(only.is_latest && marker.delete_marker) {
            return Ok(());
        }
        let wanted = config.rules.iter().any(|r| {
            r.filter.matches(marker)
                && r.expiration
                    .as_ref()
                    .is_some_and(|e| e.expired_object_delete_marker == Some(true))
        });
        if wanted {
            tracing::info!(bucket, key = %marker.key, "lifecycle: removing expired delete marker");
            self.meta
                .delete_object_version(bucket, &marker.key, &marker.version_id)
                .await?;
        }
        Ok(())
    }

    async fn uploads_page(
        &self,
        bucket: &str,
        config: &LifecycleConfiguration,
        cursor: &mut Cursor,
    ) -> MetaResult<()> {
        let query = ListQuery {
            prefix: String::new(),
            delimiter: None,
            start_after: cursor.upload_key.clone().map(String::into_bytes),
            max_keys: PAGE,
        };
        let page = self
            .meta
            .list_multipart_uploads(bucket, &query, cursor.upload_id.as_deref())
            .await?;
        let now = now_millis();
        for upload in &page.items {
            let stale = config.rules.iter().any(|r| {
                upload.key.starts_with(&r.filter.prefix)
                    && r.abort_incomplete
                        .as_ref()
                        .is_some_and(|a| self.older_than(upload.initiated, a.days, now))
            });
            if stale {
                tracing::info!(bucket, key = %upload.key, "lifecycle: aborting incomplete upload");
                self.meta.abort_multipart_upload(&upload.upload_id).await?;
            }
        }
        match (page.is_truncated, page.items.last()) {
            (true, Some(last)) => {
                cursor.upload_key = Some(last.key.clone());
                cursor.upload_id = Some(last.upload_id.clone());
            }
            _ => {
                cursor.upload_key = None;
                cursor.upload_id = None;
            }
        }
        Ok(())
    }
}
