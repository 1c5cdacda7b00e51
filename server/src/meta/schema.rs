//! Schema migrations for both backends. Each migration is applied once, in order,
//! inside a transaction, and recorded in `coffer_migrations`.
//! Object keys are stored as bytes so both engines order them by UTF-8 bytes,
//! which is S3's listing order, independent of any collation.

use super::{Backend, MetaResult, MetaStore};

/// One migration. Statements are shared by both engines; `{bytes}` stands for the
/// byte-string type (`BLOB` on SQLite, `BYTEA` on Postgres).
struct Migration {
    version: i64,
    statements: &'static [&'static str],
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        statements: &[
            "CREATE TABLE buckets (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            region TEXT NOT NULL,
            created_at BIGINT NOT NULL)",
            "CREATE TABLE bucket_configs (
            bucket TEXT NOT NULL REFERENCES buckets(name) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (bucket, kind))",
            "CREATE TABLE access_keys (
            id TEXT PRIMARY KEY,
            secret TEXT NOT NULL,
            name TEXT NOT NULL,
            owner TEXT NOT NULL,
            policy TEXT,
            is_root BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT)",
            "CREATE TABLE objects (
            bucket TEXT NOT NULL REFERENCES buckets(name),
            key {bytes} NOT NULL,
            size BIGINT NOT NULL,
            etag TEXT NOT NULL,
            last_modified BIGINT NOT NULL,
            headers TEXT NOT NULL,
            checksum TEXT NOT NULL,
            segments TEXT NOT NULL,
            PRIMARY KEY (bucket, key))",
            "CREATE TABLE multipart_uploads (
            upload_id TEXT PRIMARY KEY,
            bucket TEXT NOT NULL REFERENCES buckets(name),
            key {bytes} NOT NULL,
            initiated BIGINT NOT NULL,
            owner TEXT NOT NULL,
            headers TEXT NOT NULL,
            checksum_algorithm TEXT)",
            "CREATE INDEX multipart_uploads_by_key ON multipart_uploads (bucket, key, upload_id)",
            "CREATE TABLE parts (
            upload_id TEXT NOT NULL REFERENCES multipart_uploads(upload_id) ON DELETE CASCADE,
            part_number BIGINT NOT NULL,
            size BIGINT NOT NULL,
            etag TEXT NOT NULL,
            blob_id TEXT NOT NULL,
            checksum TEXT NOT NULL,
            last_modified BIGINT NOT NULL,
            PRIMARY KEY (upload_id, part_number))",
            "CREATE TABLE blobs (
            id TEXT PRIMARY KEY,
            size BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            garbage BIGINT NOT NULL)",
            "CREATE INDEX blobs_garbage ON blobs (garbage, id)",
        ],
    },
    Migration {
        version: 2,
        // COMPOSITE or FULL_OBJECT, for uploads with a checksum algorithm.
        statements: &["ALTER TABLE multipart_uploads ADD COLUMN checksum_type TEXT"],
    },
    Migration {
        version: 3,
        // The storage cluster: member nodes, and which nodes hold each blob.
        statements: &[
            "CREATE TABLE nodes (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            zone TEXT NOT NULL,
            state TEXT NOT NULL,
            secret_check TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            heartbeat_at BIGINT NOT NULL,
            progress TEXT NOT NULL)",
            "CREATE TABLE blob_replicas (
            blob_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            PRIMARY KEY (blob_id, node_id))",
            "CREATE INDEX blob_replicas_by_node ON blob_replicas (node_id, blob_id)",
        ],
    },
    Migration {
        version: 4,
        // Small objects' bytes, kept in the metadata store instead of blob files.
        statements: &["CREATE TABLE inline_blobs (
            id TEXT PRIMARY KEY,
            data {bytes} NOT NULL)"],
    },
    Migration {
        version: 5,
        // Versioning and tagging. `objects` keeps only the current version of each
        // key, so listing current objects never walks old versions; noncurrent
        // versions and delete markers live in `object_versions`. `seq` orders the
        // versions of one key (newest highest) across both tables.
        statements: &[
            "ALTER TABLE objects ADD COLUMN version_id TEXT NOT NULL DEFAULT 'null'",
            "ALTER TABLE objects ADD COLUMN seq BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE objects ADD COLUMN tags TEXT NOT NULL DEFAULT '{}'",
            "CREATE TABLE object_versions (
            bucket TEXT NOT NULL REFERENCES buckets(name),
            key {bytes} NOT NULL,
            version_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            delete_marker BIGINT NOT NULL,
            size BIGINT NOT NULL,
            etag TEXT NOT NULL,
            last_modified BIGINT NOT NULL,
            headers TEXT NOT NULL,
            checksum TEXT NOT NULL,
            segments TEXT NOT NULL,
            tags TEXT NOT NULL,
            noncurrent_since BIGINT NOT NULL,
            PRIMARY KEY (bucket, key, version_id))",
            "CREATE INDEX object_versions_by_seq ON object_versions (bucket, key, seq)",
            "ALTER TABLE multipart_uploads ADD COLUMN tags TEXT NOT NULL DEFAULT '{}'",
        ],
    },
    Migration {
        version: 6,
        // Exact usage per bucket for quotas and the operator's status: every
        // write adjusts the counters in its own transaction.
        statements: &[
            "CREATE TABLE bucket_stats (
            bucket TEXT PRIMARY KEY REFERENCES buckets(name) ON DELETE CASCADE,
            objects BIGINT NOT NULL,
            bytes BIGINT NOT NULL)",
            "INSERT INTO bucket_stats (bucket, objects, bytes)
            SELECT b.name,
              (SELECT COUNT(*) FROM objects o WHERE o.bucket = b.name)
                + (SELECT COUNT(*) FROM object_versions v WHERE v.bucket = b.name AND v.delete_marker = 0),
              CAST((SELECT COALESCE(SUM(o.size), 0) FROM objects o WHERE o.bucket = b.name)
                + (SELECT COALESCE(SUM(v.size), 0) FROM object_versions v WHERE v.bucket = b.name) AS BIGINT)
            FROM buckets b",
        ],
    },
    Migration {
        version: 7,
        // Usage counters split into shards: writers to a bucket without a quota
        // update a random shard instead of all queueing on one row (on Postgres
        // the row lock is held through the commit's fsync).
        statements: &[
            "CREATE TABLE bucket_usage_shards (
            bucket TEXT NOT NULL REFERENCES buckets(name) ON DELETE CASCADE,
            shard BIGINT NOT NULL,
            objects BIGINT NOT NULL,
            bytes BIGINT NOT NULL,
            PRIMARY KEY (bucket, shard))",
            "INSERT INTO bucket_usage_shards (bucket, shard, objects, bytes)
            SELECT bucket, 0, objects, bytes FROM bucket_stats",
            "DROP TABLE bucket_stats",
        ],
    },
    Migration {
        version: 8,
        // Object Lock: each version's retention and legal hold (JSON, `{}` for
        // none), and what a multipart upload asked for, applied at completion.
        // The bucket's lock configuration is a `bucket_configs` document.
        statements: &[
            "ALTER TABLE objects ADD COLUMN object_lock TEXT NOT NULL DEFAULT '{}'",
            "ALTER TABLE object_versions ADD COLUMN object_lock TEXT NOT NULL DEFAULT '{}'",
            "ALTER TABLE multipart_uploads ADD COLUMN object_lock TEXT NOT NULL DEFAULT '{}'",
        ],
    },
    Migration {
        version: 9,
        // Store-wide settings; first the master key's check value, which makes a
        // server started with the wrong master key refuse to start.
        statements: &["CREATE TABLE store_settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL)"],
    },
    Migration {
        version: 11,
        // KMS keys of the built-in key service: material sealed with the master
        // key, state, and the date a scheduled deletion takes effect.
        statements: &["CREATE TABLE kms_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            state TEXT NOT NULL,
            material TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            deletion_date BIGINT)"],
    },
    Migration {
        version: 12,
        // Workload identity (STS): roles, and the temporary credentials issued
        // for them (secret sealed like access keys', token kept as a hash).
        statements: &[
            "CREATE TABLE roles (
            name TEXT PRIMARY KEY,
            policy TEXT NOT NULL,
            trust TEXT NOT NULL,
            max_session_seconds BIGINT NOT NULL,
            owner TEXT NOT NULL,
            created_at BIGINT NOT NULL)",
            "CREATE TABLE sts_sessions (
            id TEXT PRIMARY KEY,
            secret TEXT NOT NULL,
            token_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            subject TEXT NOT NULL,
            source TEXT NOT NULL,
            session_name TEXT NOT NULL,
            session_policy TEXT,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL)",
            "CREATE INDEX sts_sessions_by_role ON sts_sessions (role)",
            "CREATE INDEX sts_sessions_by_expiry ON sts_sessions (expires_at)",
        ],
    },
    Migration {
        version: 13,
        // Erasure coding: a row of an erasure-coded blob names the shard its
        // node holds (NULL: a whole replica).
        statements: &["ALTER TABLE blob_replicas ADD COLUMN shard INTEGER"],
    },
    Migration {
        version: 14,
        // When each access key last signed a request (`key_use.rs`).
        statements: &["ALTER TABLE access_keys ADD COLUMN last_used_at BIGINT"],
    },
];

/// Applies every migration the database has not seen yet.
pub(super) async fn migrate(store: &MetaStore) -> MetaResult<()> {
    let mut tx = store.begin_write().await?;
    if store.backend == Backend::Postgres {
        // Several servers may start at once against one database; one migrates.
        sqlx::query("SELECT pg_advisory_xact_lock(7316001)")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("CREATE TABLE IF NOT EXISTS coffer_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(&mut **tx)
        .await?;
    let applied: Vec<(i64,)> = sqlx::query_as("SELECT version FROM coffer_migrations")
        .fetch_all(&mut **tx)
        .await?;
    for migration in MIGRATIONS {
        if applied.iter().any(|(v,)| *v == migration.version) {
            continue;
        }
        let bytes = match store.backend {
            Backend::Sqlite => "BLOB",
            Backend::Postgres => "BYTEA",
        };
        for statement in migration.statements {
            sqlx::query(&statement.replace("{bytes}", bytes))
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("INSERT INTO coffer_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(super::now_millis())
            .execute(&mut **tx)
            .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// The last migration that removed something (`bucket_stats`, replaced by
    /// shards). Every later one must only expand the schema, so that servers of
    /// the previous version keep working on it during a rolling upgrade.
    const LAST_CONTRACTING: i64 = 7;

    #[test]
    fn migrations_after_the_last_contracting_one_only_expand() {
        for migration in MIGRATIONS.iter().filter(|m| m.version > LAST_CONTRACTING) {
            for statement in migration.statements {
                let text = statement.to_ascii_uppercase();
                for word in ["DROP ", "RENAME ", " TYPE ", "DELETE FROM", "TRUNCATE"] {
                    assert!(
                        !text.contains(word),
                        "migration {} contracts the schema ({word:?}): {statement}",
                        migration.version
                    );
                }
                // An old server's INSERT omits a new column: it needs a default.
                if text.contains("ADD COLUMN") && text.contains("NOT NULL") {
                    assert!(
                        text.contains("DEFAULT"),
                        "migration {}: a NOT NULL column needs a DEFAULT: {statement}",
                        migration.version
                    );
                }
            }
        }
    }
}
