//! KMS keys of the built-in key service (`crate::kms`): each key's 256-bit
//! material, sealed with the master key, and its state (enabled, disabled, or
//! pending deletion until a date, as AWS KMS schedules deletions).

use sqlx::Row;

use super::{MetaError, MetaResult, MetaStore, WriteTx};
use crate::crypto::Key;

/// What a KMS key may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsKeyState {
    Enabled,
    Disabled,
    /// Refuses every use until it is deleted (or the deletion is cancelled).
    PendingDeletion,
}

impl KmsKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
        }
    }

    fn parse(text: &str) -> MetaResult<Self> {
        match text {
            "Enabled" => Ok(Self::Enabled),
            "Disabled" => Ok(Self::Disabled),
            "PendingDeletion" => Ok(Self::PendingDeletion),
            other => Err(MetaError::Corrupt(format!("KMS key state {other:?}"))),
        }
    }
}

/// One KMS key. Its material never leaves the store unsealed except to the
/// key service that uses it.
#[derive(Debug, Clone)]
pub struct KmsKey {
    /// A UUID, as AWS KMS names keys.
    pub id: String,
    /// What `kms create NAME` was given (an alias, shown by `kms list`).
    pub name: String,
    pub state: KmsKeyState,
    /// The key material, sealed with the master key (bound to the key's id).
    pub sealed_material: String,
    pub created_at: i64,
    /// When a key pending deletion is deleted for good (ms since the epoch).
    pub deletion_date: Option<i64>,
}

const COLUMNS: &str = "id, name, state, material, created_at, deletion_date";

fn key_from_row(row: &sqlx::any::AnyRow) -> MetaResult<KmsKey> {
    Ok(KmsKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        state: KmsKeyState::parse(row.try_get::<&str, _>("state")?)?,
        sealed_material: row.try_get("material")?,
        created_at: row.try_get("created_at")?,
        deletion_date: row.try_get("deletion_date")?,
    })
}

/// The associated data that binds sealed material to its key id.
fn material_aad(id: &str) -> String {
    format!("coffer kms key material v1:{id}")
}

impl KmsKey {
    /// A new enabled key with random material sealed by `master`.
    pub fn generate(id: String, name: String, master: &Key) -> Self {
        let material = Key::random();
        KmsKey {
            sealed_material: master.seal(material.as_bytes(), material_aad(&id).as_bytes()),
            id,
            name,
            state: KmsKeyState::Enabled,
            created_at: super::now_millis(),
            deletion_date: None,
        }
    }

    /// The key material, opened with `master`.
    pub fn material(&self, master: &Key) -> MetaResult<Key> {
        master
            .open(&self.sealed_material, material_aad(&self.id).as_bytes())
            .ok()
            .and_then(|bytes| Key::from_bytes(&bytes))
            .ok_or_else(|| MetaError::Corrupt(format!("KMS key {} does not open", self.id)))
    }
}

impl MetaStore {
    pub async fn create_kms_key(&self, key: &KmsKey) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO kms_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&key.id)
        .bind(&key.name)
        .bind(key.state.as_str())
        .bind(&key.sealed_material)
        .bind(key.created_at)
        .bind(key.deletion_date)
        .execute(&mut **tx)
        .await?;
        tx.commit().await
    }

    /// A key by id, or by name when no id matches. A key whose scheduled
    /// deletion date has passed is gone.
    pub async fn get_kms_key(&self, id_or_name: &str) -> MetaResult<Option<KmsKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM kms_keys WHERE id = $1 OR name = $1"
        ))
        .bind(id_or_name)
        .fetch_all(&self.pool)
        .await?;
        let keys = rows
            .iter()
            .map(key_from_row)
            .collect::<MetaResult<Vec<_>>>()?;
        let now = super::now_millis();
        let found = keys
            .iter()
            .find(|k| k.id == id_or_name)
            .or_else(|| keys.iter().find(|k| k.name == id_or_name))
            .filter(|k| k.deletion_date.is_none_or(|d| d > now))
            .cloned();
        Ok(found)
    }

    /// Every key not yet deleted, oldest first.
    pub async fn list_kms_keys(&self) -> MetaResult<Vec<KmsKey>> {
        self.purge_deleted_kms_keys().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM kms_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Sets a key's state (and its deletion date, for `PendingDeletion`).
    /// `NoSuchKmsKey` when there is no such key.
    pub async fn set_kms_key_state(
        &self,
        id: &str,
        state: KmsKeyState,
        deletion_date: Option<i64>,
    ) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        let updated =
            sqlx::query("UPDATE kms_keys SET state = $2, deletion_date = $3 WHERE id = $1")
                .bind(id)
                .bind(state.as_str())
                .bind(deletion_date)
                .execute(&mut **tx)
                .await?
                .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Err(MetaError::NoSuchKmsKey(id.to_owned()));
        }
        tx.commit().await
    }

    /// Deletes keys whose pending window has ended: their objects stay
    /// unreadable for good (crypto-shredding).
    pub async fn purge_deleted_kms_keys(&self) -> MetaResult<u64> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(
            "DELETE FROM kms_keys WHERE deletion_date IS NOT NULL AND deletion_date <= $1",
        )
        .bind(super::now_millis())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }
}

/// Re-seals every KMS key's material from `old` to `new` (master key rotation).
pub(super) async fn reseal_kms_keys_tx(
    tx: &mut WriteTx<'_>,
    old: &Key,
    new: &Key,
) -> MetaResult<()> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM kms_keys"))
        .fetch_all(&mut ***tx)
        .await?;
    for row in rows {
        let key = key_from_row(&row)?;
        let material = key.material(old)?;
        sqlx::query("UPDATE kms_keys SET material = $1 WHERE id = $2")
            .bind(new.seal(material.as_bytes(), material_aad(&key.id).as_bytes()))
            .bind(&key.id)
            .execute(&mut ***tx)
            .await?;
    }
    Ok(())
}
