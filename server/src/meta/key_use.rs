//! When each access key last signed a request (the console's "last used").
//! The request path only notes it in memory — no write per request; a server
//! writes what it noted to `access_keys.last_used_at` every
//! [`KEY_USE_FLUSH_INTERVAL`] and when it stops. A `kill -9` forgets at most
//! that interval's notes, and each node keeps the latest time any node wrote.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{MetaResult, now_millis};

/// How often noted uses are written to the store.
pub const KEY_USE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// Uses noted since the last flush: key id → milliseconds since the epoch.
#[derive(Debug, Default)]
pub(super) struct KeyUse {
    pending: Mutex<HashMap<String, i64>>,
}

impl KeyUse {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // The map holds plain values: one a panicking thread left is still valid.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note(&self, id: &str, at: i64) {
        let mut pending = self.pending();
        match pending.get_mut(id) {
            Some(last) => *last = (*last).max(at),
            None => {
                pending.insert(id.to_owned(), at);
            }
        }
    }
}

impl super::MetaStore {
    /// Notes that access key `id` signed a request now (cheap: memory only).
    pub fn note_key_used(&self, id: &str) {
        self.key_use.note(id, now_millis());
    }

    /// Writes the uses noted so far. What cannot be written (the store is
    /// down) is kept for the next flush.
    pub async fn flush_key_use(&self) -> MetaResult<()> {
        let taken = std::mem::take(&mut *self.key_use.pending());
        if taken.is_empty() {
            return Ok(());
        }
        let written = async {
            let mut tx = self.begin_write().await?;
            for (id, at) in &taken {
                sqlx::query(
                    "UPDATE access_keys SET last_used_at = $2
                     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                )
                .bind(id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
            tx.commit().await
        }
        .await;
        if written.is_err() {
            for (id, at) in &taken {
                self.key_use.note(id, *at);
            }
        }
        written
    }

    /// The last use of every key that has one: what the store holds, or what
    /// this server noted since, whichever is later.
    pub async fn keys_last_used(&self) -> MetaResult<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, last_used_at FROM access_keys WHERE last_used_at IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut last: HashMap<String, i64> = rows.into_iter().collect();
        for (id, at) in self.key_use.pending().iter() {
            let entry = last.entry(id.clone()).or_insert(*at);
            *entry = (*entry).max(*at);
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyUse;

    #[test]
    fn a_note_keeps_the_latest_time() {
        let uses = KeyUse::default();
        uses.note("k", 20);
        uses.note("k", 10);
        uses.note("j", 5);
        let pending = uses.pending();
        assert_eq!(pending.get("k"), Some(&20));
        assert_eq!(pending.get("j"), Some(&5));
    }
}
