//! The metadata store: buckets, access keys, objects, multipart uploads and blob
//! bookkeeping, behind one interface with a SQLite and a Postgres backend.
//! It knows nothing of HTTP; the S3 layer and the operator both write through it.

mod acl;
mod blobs;
mod buckets;
mod cache;
mod data_protection;
mod group;
mod key_use;
mod keys;
mod kms;
mod list;
mod lock;
mod master_key;
mod multipart;
mod nodes;
mod objects;
mod roles;
mod schema;
mod shards;
mod usage;
mod versions;

pub use self::acl::{
    Acl, AclGrant, AclPermission, BucketAcl, CannedAcl, Grantee, Group, ObjectOwnership,
    PublicAccessBlock,
};
pub use self::buckets::{Bucket, BucketUsage, BucketWithConfigs, ENCRYPTION, NewBucket};
pub use self::cache::{CacheStats, OBJECT_CACHE_LEASE, ObjectCache};
pub use self::data_protection::{DATA_PROTECTION, DataProtection};
pub use self::key_use::KEY_USE_FLUSH_INTERVAL;
pub use self::keys::{AccessKey, NewAccessKey};
pub use self::kms::{KmsKey, KmsKeyState};
pub use self::list::{ListPage, ListQuery};
pub use self::lock::{
    BucketObjectLock, DefaultRetention, OBJECT_LOCK, ObjectLock, Retention, RetentionMode,
};
pub use self::multipart::{MultipartUpload, Part, UploadsPage};
pub use self::nodes::{BlobReplicas, Node, NodeProgress, NodeState};
pub use self::objects::{
    CustomerKeyCheck, Deleted, Encryption, NULL_VERSION, ObjectChecksum, ObjectHeaders, ObjectMeta,
    Segment, WriteCondition,
};
pub use self::roles::{NewRole, NewSession, Role, SESSION_KEY_PREFIX, StsSession, token_hash};
pub use self::shards::{BlobShards, is_erasure};
pub use self::usage::{QUOTA, Quota};
pub use self::versions::{ObjectVersion, VERSIONING, Versioning};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{AnyPool, Executor};
use tokio::sync::Mutex;

/// Errors of the metadata store. Variants named after the S3 error they become.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("bucket {0} does not exist")]
    NoSuchBucket(String),
    #[error("bucket {0} already exists")]
    BucketAlreadyExists(String),
    #[error("bucket {0} is not empty")]
    BucketNotEmpty(String),
    #[error("object does not exist")]
    NoSuchKey,
    #[error("object version does not exist")]
    NoSuchVersion,
    #[error("multipart upload does not exist")]
    NoSuchUpload,
    #[error("access key {0} does not exist")]
    NoSuchAccessKey(String),
    #[error("access key {0} already exists")]
    AccessKeyAlreadyExists(String),
    #[error("role {0} does not exist")]
    NoSuchRole(String),
    #[error("role {0} already exists")]
    RoleAlreadyExists(String),
    #[error("KMS key {0} does not exist")]
    NoSuchKmsKey(String),
    #[error("node {0} is not a member of the cluster")]
    NoSuchNode(String),
    #[error("the write would exceed the bucket's quota")]
    QuotaExceeded,
    #[error("a write precondition did not hold")]
    PreconditionFailed,
    #[error("the object version is protected by Object Lock")]
    ObjectLocked,
    #[error("the bucket does not have Object Lock enabled")]
    ObjectLockNotEnabled,
    #[error("the bucket's state does not allow this: {0}")]
    InvalidBucketState(String),
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database url {0:?} (use sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    #[error(
        "the master key does not match the one this store is encrypted with \
         (check COFFER_MASTER_KEY / --master-key-file / <data-dir>/master.key)"
    )]
    WrongMasterKey,
    #[error("the store holds encrypted access-key secrets; a master key is required to read them")]
    MasterKeyRequired,
    #[error("the database is a standby in recovery and takes no writes")]
    ReadOnly,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub type MetaResult<T> = Result<T, MetaError>;

impl MetaError {
    /// Whether the store could not be reached or cannot take writes right now
    /// (a restart, a failover in progress, a standby not yet promoted): a retry
    /// may succeed, and nothing about the request itself was wrong.
    pub fn is_unavailable(&self) -> bool {
        let e = match self {
            MetaError::ReadOnly => return true,
            MetaError::Database(e) => e,
            _ => return false,
        };
        match e {
            // A connection cut while it is being set up can also show as a
            // protocol error (a half-read SSLRequest answer during a failover).
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_sqlstate(&code)),
            _ => false,
        }
    }
}

impl MetaError {
    /// Whether the database refused a write for lack of disk space: SQLite's
    /// `SQLITE_FULL` (13), Postgres's `disk_full` (53100).
    pub fn is_storage_full(&self) -> bool {
        match self {
            MetaError::Database(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| code == "13" || code == "53100"),
            MetaError::Database(sqlx::Error::Io(e)) => {
                matches!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            }
            _ => false,
        }
    }
}

/// Postgres SQLSTATEs of a server that is going away or not (yet) a primary:
/// class 08 (connection exception), 57P01..57P03 (shut down by an
/// administrator or a crash, cannot connect now), 25006 (read-only transaction:
/// connected to a standby), 53300 (too many connections).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "25006" | "53300")
}

/// Which SQL engine backs the store; DDL differs a little between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the metadata store. Cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    pool: AnyPool,
    backend: Backend,
    // SQLite allows one writer at a time; queueing writers here instead of in
    // SQLite's busy handler keeps write transactions from failing with SQLITE_BUSY.
    write_lock: Option<Arc<Mutex<()>>>,
    /// Object writes are committed in groups (see `group.rs`).
    group: Option<group::GroupCommit>,
    /// Seals access-key secrets at rest (see `master_key.rs`); `None` reads and
    /// writes them in plaintext (stores from before encryption at rest).
    master: Option<Arc<crate::crypto::Key>>,
    /// Current object versions for GET and HEAD (see `cache.rs`); only a
    /// server has one, and it serves entries only under its lease.
    cache: Option<Arc<ObjectCache>>,
    /// Access keys' uses not yet written (see `key_use.rs`); shared by clones.
    key_use: Arc<key_use::KeyUse>,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("backend", &self.backend)
            .finish()
    }
}

impl MetaStore {
    /// Connects to `sqlite://PATH` (the file is created when missing) or
    /// `postgres://...`, and brings the schema up to date.
    pub async fn connect(url: &str) -> MetaResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(MetaError::UnsupportedUrl(url.to_owned()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            });
        let pool = match backend {
            Backend::Sqlite => {
                pool_options
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // FULL: a commit is on disk before it is acknowledged.
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                                 PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => pool_options.connect_with(options).await?,
        };
        let mut store = Self {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            group: None,
            master: None,
            cache: None,
            key_use: Arc::default(),
        };
        schema::migrate(&store).await?;
        store.group = Some(group::GroupCommit::start(store.clone()));
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Gives the store a cache of current object versions of about `budget`
    /// bytes. Call before cloning the store: clones share the cache. It serves
    /// nothing until [`ObjectCache::renew_lease`] is called.
    pub fn with_object_cache(mut self, budget: usize) -> Self {
        self.cache = Some(Arc::new(ObjectCache::new(budget)));
        if self.group.is_some() {
            // The committer works on a store of its own: give it one that knows
            // the cache (the old committer ends with its queue).
            let mut inner = self.clone();
            inner.group = None;
            self.group = Some(group::GroupCommit::start(inner));
        }
        self
    }

    pub fn object_cache(&self) -> Option<&Arc<ObjectCache>> {
        self.cache.as_ref()
    }

    /// Cheap liveness probe of the database, for `/health/ready`.
    /// Whether the store takes writes: reachable, and on Postgres a primary
    /// (a standby not yet promoted answers queries but refuses every write).
    pub async fn ping(&self) -> MetaResult<()> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
            }
            Backend::Postgres => {
                let (in_recovery,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
                    .fetch_one(&self.pool)
                    .await?;
                if in_recovery {
                    return Err(MetaError::ReadOnly);
                }
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction; on SQLite writers queue on a mutex first.
    async fn begin_write(&self) -> MetaResult<WriteTx<'_>> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN").execute(&mut *conn).await?;
        Ok(WriteTx {
            tx: Some(conn),
            backend: self.backend,
            deferred_usage: Vec::new(),
            cache: self.cache.clone(),
            touched: Vec::new(),
            guard,
            _store: std::marker::PhantomData,
        })
    }
}

/// A write transaction. One that is dropped without `commit` (a failed write)
/// is rolled back at once, and on SQLite the next writer waits for that: sqlx
/// alone would roll it back only when its connection is next used, and until
/// then SQLite's write lock stays taken and other writers fail with
/// "database is locked".
struct WriteTx<'a> {
    /// The connection, inside its `BEGIN`; `None` only once committed or
    /// rolled back. Not an `sqlx::Transaction`: when its COMMIT fails, sqlx
    /// keeps the connection and its idea of the nesting depth, while SQLite
    /// may have rolled back or may still hold the transaction open — the
    /// next BEGIN then became a SAVEPOINT inside the dead transaction and its
    /// "commit" a RELEASE that committed nothing (found by
    /// `tests/fsync_failure.rs`: a write acknowledged with no fsync). A
    /// connection whose COMMIT or ROLLBACK fails is closed instead.
    tx: Option<PoolConnection<sqlx::Any>>,
    backend: Backend,
    /// Usage changes of quota-free buckets, written once at commit.
    deferred_usage: Vec<(String, usage::UsageDelta)>,
    /// Keys whose current row this transaction may change: their cache
    /// entries are dropped when it ends, committed or not.
    cache: Option<Arc<ObjectCache>>,
    touched: Vec<(String, String)>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    _store: std::marker::PhantomData<&'a MetaStore>,
}

impl WriteTx<'_> {
    /// Notes that the current row of `bucket`/`key` may change.
    fn touch(&mut self, bucket: &str, key: &str) {
        if self.cache.is_some() {
            self.touched.push((bucket.to_owned(), key.to_owned()));
        }
    }

    async fn commit(mut self) -> MetaResult<()> {
        usage::flush_deferred_usage_tx(&mut self).await?;
        if let Some(conn) = self.tx.take() {
            end_transaction(conn, "COMMIT").await?;
        }
        Ok(())
    }

    /// Rolls back now, before the next writer may start.
    async fn rollback(mut self) -> MetaResult<()> {
        if let Some(conn) = self.tx.take() {
            end_transaction(conn, "ROLLBACK").await?;
        }
        Ok(())
    }
}

/// Ends a write transaction with `COMMIT` or `ROLLBACK`. A connection on which
/// that fails is in an unknown state (the transaction rolled back, or still
/// open): it is closed, never handed to another writer.
async fn end_transaction(mut conn: PoolConnection<sqlx::Any>, sql: &str) -> MetaResult<()> {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = conn.close().await;
            Err(e.into())
        }
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        // After the commit (or its failure: it may have landed all the same).
        if let Some(cache) = &self.cache {
            for (bucket, key) in self.touched.drain(..) {
                cache.invalidate(&bucket, &key);
            }
        }
        let Some(conn) = self.tx.take() else {
            return;
        };
        let guard = self.guard.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = end_transaction(conn, "ROLLBACK").await {
                    tracing::warn!(error = %e, "rolling back a failed write");
                }
                drop(guard);
            });
        } else {
            // No runtime to roll back on: close, which ends the transaction.
            drop(conn.detach());
        }
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = PoolConnection<sqlx::Any>;
    fn deref(&self) -> &Self::Target {
        // Only `commit`, `rollback` and `drop` take the transaction, and each
        // consumes the `WriteTx`.
        self.tx.as_ref().expect("an open write transaction")
    }
}

impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.tx.as_mut().expect("an open write transaction")
    }
}

/// Ids of blobs kept in the metadata store start with this; they never name a file.
const INLINE_PREFIX: &str = "i-";

/// A fresh id for a blob kept in the metadata store: the time in milliseconds
/// (12 hex digits), then 80 random bits. Ids in time order make the inserts of
/// a busy server land on the last pages of the `blobs` and `inline_blobs`
/// indexes instead of on random ones: a few pages written per commit rather
/// than several per object (SQLite's WAL, Postgres's full-page writes).
pub fn new_inline_id() -> String {
    let millis = now_millis().max(0) as u64 & 0xffff_ffff_ffff;
    let random = rand::random::<u128>() & ((1u128 << 80) - 1);
    format!("{INLINE_PREFIX}{millis:012x}{random:020x}")
}

/// Whether a blob id names bytes kept in the metadata store (not on volumes).
pub fn is_inline(blob: &str) -> bool {
    blob.starts_with(INLINE_PREFIX)
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_millis() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn millis_to_datetime(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serializing our own plain structs cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> MetaResult<T> {
    serde_json::from_str(text).map_err(|e| MetaError::Corrupt(e.to_string()))
}
