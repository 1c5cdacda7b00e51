//! Group commit. Concurrent `put_object` calls queue here and one task commits
//! whatever has queued in a single transaction: new keys of a bucket written
//! together, a statement per table; if any write fails, the batch is redone with
//! a savepoint per write, so a failed precondition undoes only that write. One
//! commit makes the whole batch durable before any of it is acknowledged.
//! SQLite has one writer and an fsync per commit, so this lifts its PUT rate
//! from the disk's fsync rate; on Postgres, where concurrent commits already
//! share WAL flushes, it saves the round trips (BEGIN, a statement per table,
//! COMMIT) that dominate a small PUT, and a few batches run at once. Writes run
//! in (bucket, key) order, so concurrent batches (of this server or another)
//! take row locks in one order.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Backend, MetaError, MetaResult, MetaStore, ObjectMeta, WriteCondition};

/// Writes committed together at most.
const MAX_BATCH: usize = 256;

/// Batches committed at once on Postgres, so that one batch's round trips and
/// WAL flush overlap another's work. SQLite has one writer: one batch at a time.
const POSTGRES_BATCHES_IN_FLIGHT: usize = 3;

struct Pending {
    object: ObjectMeta,
    condition: WriteCondition,
    reply: oneshot::Sender<MetaResult<String>>,
}

/// Handle to the committer task; cheap to clone.
#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the committer for `store` (whose own `group` must be `None`).
    pub fn start(store: MetaStore) -> Self {
        let (queue, mut incoming) = mpsc::channel::<Pending>(4 * MAX_BATCH);
        let in_flight = Arc::new(Semaphore::new(match store.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_BATCHES_IN_FLIGHT,
        }));
        tokio::spawn(async move {
            loop {
                // Wait for a free committer first: what queues meanwhile joins
                // the next batch.
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = incoming.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let store = store.clone();
                tokio::spawn(async move {
                    commit_batch(&store, batch).await;
                    drop(permit);
                });
            }
        });
        Self { queue }
    }

    /// Queues a write and waits until it is committed (or refused).
    pub async fn put_object(
        &self,
        object: &ObjectMeta,
        condition: &WriteCondition,
    ) -> MetaResult<String> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            object: object.clone(),
            condition: condition.clone(),
            reply,
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| closed("the metadata committer has stopped"))?;
        answer
            .await
            .map_err(|_| closed("the metadata committer dropped a write"))?
    }
}

fn closed(message: &str) -> MetaError {
    MetaError::Database(sqlx::Error::Io(std::io::Error::other(message.to_owned())))
}

async fn commit_batch(store: &MetaStore, mut batch: Vec<Pending>) {
    batch.sort_by(|a, b| (&a.object.bucket, &a.object.key).cmp(&(&b.object.bucket, &b.object.key)));
    // Almost every write of a batch succeeds, so first try them all in one plain
    // transaction (no savepoint statements: on SQLite each statement is a round
    // trip to its worker thread). If any write fails, that attempt is rolled back
    // and the batch is redone with one savepoint per write, so the failure
    // undoes only its own write.
    let done = match run_batch(store, &batch, false).await {
        Ok((tx, outcomes)) if outcomes.iter().all(Result::is_ok) => Ok((tx, outcomes)),
        Ok((tx, _)) => {
            // Undo the first run before the second one takes the writer lock.
            let _ = tx.rollback().await;
            run_batch(store, &batch, true).await
        }
        Err(_) => run_batch(store, &batch, true).await,
    };
    let (tx, outcomes) = match done {
        Ok(done) => done,
        Err(e) => {
            let message = e.to_string();
            for pending in batch {
                let _ = pending.reply.send(Err(closed(&message)));
            }
            return;
        }
    };
    match tx.commit().await {
        Ok(()) => {
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                let _ = pending.reply.send(outcome);
            }
        }
        Err(e) => {
            // Nothing of the batch is durable: every write fails.
            let message = format!("group commit failed: {e}");
            for pending in batch {
                let _ = pending.reply.send(Err(closed(&message)));
            }
        }
    }
}

/// Runs every write of `batch` in one transaction, not yet committed. With
/// `savepoints`, a failed write is undone alone and the rest go on; without,
/// the first failure stops the run (the caller then rolls it back).
async fn run_batch<'a>(
    store: &'a MetaStore,
    batch: &[Pending],
    savepoints: bool,
) -> MetaResult<(super::WriteTx<'a>, Vec<MetaResult<String>>)> {
    let mut tx = store.begin_write().await?;
    let mut created = vec![None; batch.len()];
    if !savepoints && batch.len() > 1 {
        match create_in_bulk(store, &mut tx, batch).await {
            Ok(done) => created = done,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for (pending, created) in batch.iter().zip(created) {
        if let Some(version_id) = created {
            outcomes.push(Ok(version_id));
            continue;
        }
        if !savepoints {
            let outcome = store
                .upsert_object_tx(&mut tx, &pending.object, &pending.condition)
                .await;
            let failed = outcome.is_err();
            outcomes.push(outcome);
            if failed {
                break;
            }
            continue;
        }
        sqlx::query("SAVEPOINT one_write")
            .execute(&mut **tx)
            .await?;
        let usage_before = tx.deferred_usage.clone();
        let outcome = store
            .upsert_object_tx(&mut tx, &pending.object, &pending.condition)
            .await;
        if outcome.is_err() {
            sqlx::query("ROLLBACK TO SAVEPOINT one_write")
                .execute(&mut **tx)
                .await?;
            tx.deferred_usage = usage_before;
        }
        sqlx::query("RELEASE SAVEPOINT one_write")
            .execute(&mut **tx)
            .await?;
        outcomes.push(outcome);
    }
    Ok((tx, outcomes))
}

/// Writes the batch's creations of new keys together, bucket by bucket (see
/// `create_objects_tx`); returns the version id of each write it did.
async fn create_in_bulk(
    store: &MetaStore,
    tx: &mut super::WriteTx<'_>,
    batch: &[Pending],
) -> MetaResult<Vec<Option<String>>> {
    let mut created = vec![None; batch.len()];
    let mut buckets: Vec<&str> = batch.iter().map(|p| p.object.bucket.as_str()).collect();
    buckets.sort_unstable();
    buckets.dedup();
    for bucket in buckets {
        let (indexes, objects): (Vec<usize>, Vec<&ObjectMeta>) = batch
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.object.bucket == bucket
                    && matches!(
                        p.condition,
                        WriteCondition::None | WriteCondition::IfNoneMatchAny
                    )
            })
            .map(|(i, p)| (i, &p.object))
            .unzip();
        if objects.len() < 2 {
            continue;
        }
        let versions = store.create_objects_tx(tx, bucket, &objects).await?;
        for (i, version) in indexes.into_iter().zip(versions) {
            created[i] = version;
        }
    }
    Ok(created)
}
