//! A cache of current object versions, so that GET and HEAD of a hot key need not
//! reach the database (a network round trip on Postgres).
//!
//! It may serve an entry only while this process is the only writer of objects,
//! which a lease proves: the server renews it while the store's `nodes` table
//! names no node but this one (`cluster::membership`), and a node that joins waits
//! out [`OBJECT_CACHE_LEASE`] before it serves, so every lease that could have
//! missed it has ended. Within the process, each write transaction drops the
//! entries of the keys it touched once it has committed (or failed), and a read
//! fills an entry only if no write to its shard ended while it was reading.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::ObjectMeta;

/// How long one renewal of the lease lasts. A joining node waits this (plus a
/// margin) after registering before it serves anything.
pub const OBJECT_CACHE_LEASE: Duration = Duration::from_secs(1);

/// Shards keep readers on different keys off each other's lock, and bound how
/// many fills one write turns away.
const SHARDS: usize = 64;

/// What one entry is charged beyond its strings and bytes (maps, vectors, the
/// LRU node).
const ENTRY_OVERHEAD: usize = 512;

/// Current object versions by bucket and key, bounded in bytes.
pub struct ObjectCache {
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
    hasher: std::collections::hash_map::RandomState,
    /// Nanoseconds after `epoch` until which entries may be served; 0: no lease.
    lease_until: AtomicU64,
    epoch: Instant,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct Shard {
    entries: LruCache<String, Arc<ObjectMeta>>,
    bytes: usize,
    /// Bumped by every invalidation: a read that began before one must not fill.
    generation: u64,
}

/// Taken before a read of the database; lets the read's result fill the cache
/// only if nothing in its shard changed meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct FillTicket {
    shard: usize,
    generation: u64,
}

/// Hit and miss counts since start, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    pub bytes: u64,
    pub leased: bool,
}

fn entry_key(bucket: &str, key: &str) -> String {
    // Bucket names never contain '/', so the first one separates the two.
    let mut k = String::with_capacity(bucket.len() + 1 + key.len());
    k.push_str(bucket);
    k.push('/');
    k.push_str(key);
    k
}

fn weight(object: &ObjectMeta) -> usize {
    let inline: usize = object
        .segments
        .iter()
        .map(|s| s.blob.len() + s.inline.as_ref().map_or(0, Vec::len))
        .sum();
    let headers = object
        .headers
        .user_metadata
        .iter()
        .map(|(k, v)| k.len() + v.len());
    let tags = object.tags.iter().map(|(k, v)| k.len() + v.len());
    ENTRY_OVERHEAD
        + 2 * (object.bucket.len() + object.key.len())
        + object.etag.len()
        + inline
        + headers.chain(tags).sum::<usize>()
}

impl ObjectCache {
    /// A cache holding at most about `budget` bytes. It serves nothing until
    /// its lease is first renewed.
    pub fn new(budget: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    entries: LruCache::unbounded(),
                    bytes: 0,
                    generation: 0,
                })
            })
            .collect();
        Self {
            shards,
            shard_budget: budget / SHARDS,
            hasher: Default::default(),
            lease_until: AtomicU64::new(0),
            epoch: Instant::now(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard_of(&self, entry: &str) -> usize {
        (self.hasher.hash_one(entry) % SHARDS as u64) as usize
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding a shard leaves nothing half-done worth refusing.
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn leased(&self) -> bool {
        self.nanos(Instant::now()) < self.lease_until.load(Ordering::Acquire)
    }

    /// The cached current version of a key, or a ticket for filling it from a
    /// read of the database (`None` while there is no lease).
    pub fn get(&self, bucket: &str, key: &str) -> Result<ObjectMeta, Option<FillTicket>> {
        if !self.leased() {
            return Err(None);
        }
        let entry = entry_key(bucket, key);
        let shard = self.shard_of(&entry);
        let mut guard = self.lock(shard);
        if let Some(object) = guard.entries.get(&entry) {
            let object = ObjectMeta::clone(object);
            drop(guard);
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(object);
        }
        let ticket = FillTicket {
            shard,
            generation: guard.generation,
        };
        drop(guard);
        self.misses.fetch_add(1, Ordering::Relaxed);
        Err(Some(ticket))
    }

    /// Caches what a read that took `ticket` found, unless a write in its
    /// shard ended since, or the lease did.
    pub fn fill(&self, ticket: FillTicket, object: &ObjectMeta) {
        let cost = weight(object);
        if cost > self.shard_budget {
            return;
        }
        let entry = entry_key(&object.bucket, &object.key);
        let mut shard = self.lock(ticket.shard);
        if shard.generation != ticket.generation || !self.leased() {
            return;
        }
        if let Some(old) = shard.entries.put(entry, Arc::new(object.clone())) {
            shard.bytes -= weight(&old);
        }
        shard.bytes += cost;
        while shard.bytes > self.shard_budget {
            match shard.entries.pop_lru() {
                Some((_, old)) => shard.bytes -= weight(&old),
                None => break,
            }
        }
    }

    /// Drops a key's entry and turns away fills of reads already under way.
    pub fn invalidate(&self, bucket: &str, key: &str) {
        let entry = entry_key(bucket, key);
        let mut shard = self.lock(self.shard_of(&entry));
        shard.generation += 1;
        if let Some(old) = shard.entries.pop(&entry) {
            shard.bytes -= weight(&old);
        }
    }

    fn clear(&self) {
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            shard.generation += 1;
            shard.entries.clear();
            shard.bytes = 0;
        }
    }

    /// Extends the lease to `started + OBJECT_CACHE_LEASE`, where `started` is
    /// when the check that this process is the only writer began. After a gap
    /// (another writer may have come and gone) the cache starts empty.
    pub fn renew_lease(&self, started: Instant) {
        if !self.leased() {
            self.clear();
        }
        let until = self.nanos(started + OBJECT_CACHE_LEASE);
        self.lease_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Stops serving at once (another writer appeared) and forgets everything.
    pub fn end_lease(&self) {
        self.lease_until.store(0, Ordering::Release);
        self.clear();
    }

    pub fn stats(&self) -> CacheStats {
        let (mut entries, mut bytes) = (0, 0);
        for i in 0..SHARDS {
            let shard = self.lock(i);
            entries += shard.entries.len() as u64;
            bytes += shard.bytes as u64;
        }
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
            bytes,
            leased: self.leased(),
        }
    }
}

impl std::fmt::Debug for ObjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCache")
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Segment;

    fn object(bucket: &str, key: &str, etag: &str, bytes: usize) -> ObjectMeta {
        ObjectMeta {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag.to_owned(),
            segments: vec![Segment {
                blob: "i-1".to_owned(),
                size: bytes as u64,
                checksum: None,
                replicas: Vec::new(),
                inline: Some(vec![7; bytes]),
                stored_size: None,
            }],
            ..ObjectMeta::default()
        }
    }

    fn fill(cache: &ObjectCache, o: &ObjectMeta) {
        let ticket = cache
            .get(&o.bucket, &o.key)
            .expect_err("a miss")
            .expect("a ticket");
        cache.fill(ticket, o);
    }

    #[test]
    fn nothing_is_served_or_filled_without_a_lease() {
        let cache = ObjectCache::new(1 << 20);
        assert!(matches!(cache.get("b", "k"), Err(None)));
        cache.renew_lease(Instant::now());
        fill(&cache, &object("b", "k", "e1", 10));
        assert_eq!(
            cache.get("b", "k").ok().map(|o| o.etag).as_deref(),
            Some("e1")
        );
        cache.end_lease();
        assert!(matches!(cache.get("b", "k"), Err(None)));
        // A new lease starts empty: writes by others may have happened between.
        cache.renew_lease(Instant::now());
        assert!(matches!(cache.get("b", "k"), Err(Some(_))));
    }

    #[test]
    fn an_expired_lease_serves_nothing_and_restarts_empty() {
        let cache = ObjectCache::new(1 << 20);
        cache.renew_lease(Instant::now());
        fill(&cache, &object("b", "k", "e1", 10));
        cache.renew_lease(Instant::now() - OBJECT_CACHE_LEASE * 2);
        // fetch_max keeps the later deadline: an old renewal cannot shorten it.
        assert!(cache.get("b", "k").is_ok());
        let cache = ObjectCache::new(1 << 20);
        cache.renew_lease(Instant::now() - OBJECT_CACHE_LEASE * 2);
        assert!(matches!(cache.get("b", "k"), Err(None)));
    }

    #[test]
    fn a_write_during_a_read_keeps_the_read_from_filling() {
        let cache = ObjectCache::new(1 << 20);
        cache.renew_lease(Instant::now());
        let ticket = cache.get("b", "k").expect_err("miss").expect("ticket");
        // The read saw the old row; a write commits and invalidates meanwhile.
        cache.invalidate("b", "k");
        cache.fill(ticket, &object("b", "k", "old", 10));
        assert!(matches!(cache.get("b", "k"), Err(Some(_))));
        fill(&cache, &object("b", "k", "new", 10));
        assert_eq!(
            cache.get("b", "k").ok().map(|o| o.etag).as_deref(),
            Some("new")
        );
        cache.invalidate("b", "k");
        assert!(matches!(cache.get("b", "k"), Err(Some(_))));
    }

    #[test]
    fn the_byte_budget_evicts_least_recently_used_entries() {
        let cache = ObjectCache::new(SHARDS * 8 * 1024);
        cache.renew_lease(Instant::now());
        for i in 0..2000 {
            fill(&cache, &object("b", &format!("k{i}"), "e", 4096));
        }
        let stats = cache.stats();
        assert!(stats.bytes <= (SHARDS * 8 * 1024) as u64, "{stats:?}");
        assert!(stats.entries > 0 && stats.entries < 2000, "{stats:?}");
        // Too large for a shard: never cached.
        let big = object("b", "big", "e", 64 * 1024);
        let ticket = cache.get("b", "big").expect_err("miss").expect("ticket");
        cache.fill(ticket, &big);
        assert!(cache.get("b", "big").is_err());
    }

    #[test]
    fn keys_that_differ_only_across_the_separator_are_different_entries() {
        let cache = ObjectCache::new(1 << 20);
        cache.renew_lease(Instant::now());
        fill(&cache, &object("ab", "c/d", "one", 1));
        assert!(cache.get("ab", "c/d").is_ok());
        assert!(cache.get("ab", "c").is_err());
        assert!(cache.get("abc", "/d").is_err());
    }
}
