//! The master key as the metadata store sees it: a check value that recognises
//! it (so a wrong key refuses to start rather than failing reads later), access
//! key secrets sealed with it, and re-wrapping everything under a new key.

use std::sync::Arc;

use sqlx::Row;

use super::{MetaError, MetaResult, MetaStore, from_json, to_json};
use crate::crypto::{Key, SEALED_SECRET_PREFIX};

const CHECK: &str = "master_key_check";

impl MetaStore {
    /// Uses `key` as the master key from now on: checks it against the one the
    /// store was first opened with (recording it when this is the first), and
    /// seals any access-key secret still stored in plaintext.
    pub async fn unlock(&mut self, key: Key) -> MetaResult<()> {
        let check = key.check_value();
        let mut tx = self.begin_write().await?;
        let stored: Option<(String,)> =
            sqlx::query_as("SELECT value FROM store_settings WHERE name = $1")
                .bind(CHECK)
                .fetch_optional(&mut **tx)
                .await?;
        let stored = match stored {
            Some((value,)) => value,
            None => {
                sqlx::query(
                    "INSERT INTO store_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(CHECK)
                .bind(&check)
                .execute(&mut **tx)
                .await?;
                // Another process may have recorded its key first.
                let (value,): (String,) =
                    sqlx::query_as("SELECT value FROM store_settings WHERE name = $1")
                        .bind(CHECK)
                        .fetch_one(&mut **tx)
                        .await?;
                value
            }
        };
        if stored != check {
            // Roll back now rather than when the connection is next used: on
            // SQLite a pending write would hold the database lock until then.
            tx.rollback().await?;
            return Err(MetaError::WrongMasterKey);
        }
        seal_plaintext_secrets_tx(&mut tx, &key).await?;
        tx.commit().await?;
        self.master = Some(Arc::new(key));
        Ok(())
    }

    /// The master key this store was unlocked with.
    pub fn master_key(&self) -> Option<&Key> {
        self.master.as_deref()
    }

    /// The form a secret is stored in: sealed when the store has a master key.
    pub(super) fn stored_secret(&self, id: &str, secret: &str) -> String {
        match &self.master {
            Some(key) => key.seal_secret(id, secret),
            None => secret.to_owned(),
        }
    }

    /// A secret as read from its row: opened when sealed.
    pub(super) fn read_secret(&self, id: &str, stored: String) -> MetaResult<String> {
        if !stored.starts_with(SEALED_SECRET_PREFIX) {
            return Ok(stored);
        }
        let key = self.master.as_ref().ok_or(MetaError::MasterKeyRequired)?;
        key.open_secret(id, &stored)
            .map_err(|_| MetaError::Corrupt(format!("secret of access key {id} does not open")))
    }

    /// Re-wraps every SSE-S3 data key and re-seals every secret under `new`, and
    /// records `new` as the master key, in one transaction: either the whole
    /// store moves to the new key or none of it does. Returns the number of
    /// object versions and uploads re-wrapped.
    pub async fn rotate_master_key(&mut self, new: Key) -> MetaResult<u64> {
        let old = self.master.clone().ok_or(MetaError::MasterKeyRequired)?;
        let mut tx = self.begin_write().await?;
        let mut rewrapped = 0;
        for (table, id_columns) in [
            ("objects", "bucket, key"),
            ("object_versions", "bucket, key, version_id"),
            ("multipart_uploads", "upload_id"),
        ] {
            let rows = sqlx::query(&format!(
                "SELECT {id_columns}, headers FROM {table} WHERE headers LIKE '%\"encryption\"%'"
            ))
            .fetch_all(&mut **tx)
            .await?;
            for row in rows {
                let mut headers: super::ObjectHeaders =
                    from_json(row.try_get::<&str, _>("headers")?)?;
                let Some(encryption) = headers.encryption.as_mut() else {
                    continue;
                };
                if encryption.customer_key.is_some() || encryption.kms_key_id.is_some() {
                    // SSE-C keys are wrapped by the customer's key, SSE-KMS
                    // keys by a KMS key (whose material is re-sealed below).
                    continue;
                }
                let data_key = old.unwrap_key(&encryption.wrapped_key).map_err(|_| {
                    MetaError::Corrupt(format!("a data key in {table} does not unwrap"))
                })?;
                encryption.wrapped_key = new.wrap(&data_key);
                let headers = to_json(&headers);
                let query = match table {
                    "objects" => sqlx::query(
                        "UPDATE objects SET headers = $1 WHERE bucket = $2 AND key = $3",
                    )
                    .bind(headers)
                    .bind(row.try_get::<String, _>("bucket")?)
                    .bind(row.try_get::<Vec<u8>, _>("key")?),
                    "object_versions" => sqlx::query(
                        "UPDATE object_versions SET headers = $1
                         WHERE bucket = $2 AND key = $3 AND version_id = $4",
                    )
                    .bind(headers)
                    .bind(row.try_get::<String, _>("bucket")?)
                    .bind(row.try_get::<Vec<u8>, _>("key")?)
                    .bind(row.try_get::<String, _>("version_id")?),
                    _ => sqlx::query(
                        "UPDATE multipart_uploads SET headers = $1 WHERE upload_id = $2",
                    )
                    .bind(headers)
                    .bind(row.try_get::<String, _>("upload_id")?),
                };
                query.execute(&mut **tx).await?;
                rewrapped += 1;
            }
        }
        super::kms::reseal_kms_keys_tx(&mut tx, &old, &new).await?;
        let secrets: Vec<(String, String)> = sqlx::query_as("SELECT id, secret FROM access_keys")
            .fetch_all(&mut **tx)
            .await?;
        for (id, stored) in secrets {
            let secret = self.read_secret(&id, stored)?;
            sqlx::query("UPDATE access_keys SET secret = $1 WHERE id = $2")
                .bind(new.seal_secret(&id, &secret))
                .bind(&id)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("UPDATE store_settings SET value = $1 WHERE name = $2")
            .bind(new.check_value())
            .bind(CHECK)
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        self.master = Some(Arc::new(new));
        Ok(rewrapped)
    }
}

/// Seals secrets written before the store had a master key.
async fn seal_plaintext_secrets_tx(tx: &mut super::WriteTx<'_>, key: &Key) -> MetaResult<()> {
    let plain: Vec<(String, String)> =
        sqlx::query_as("SELECT id, secret FROM access_keys WHERE secret NOT LIKE $1")
            .bind(format!("{SEALED_SECRET_PREFIX}%"))
            .fetch_all(&mut ***tx)
            .await?;
    for (id, secret) in plain {
        sqlx::query("UPDATE access_keys SET secret = $1 WHERE id = $2")
            .bind(key.seal_secret(&id, &secret))
            .bind(&id)
            .execute(&mut ***tx)
            .await?;
    }
    Ok(())
}
