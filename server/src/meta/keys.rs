//! Access keys: id, secret, and the IAM identity policy that scopes what they may do.
//! Secrets are stored sealed with the master key when the store has one
//! (`master_key.rs`); callers always see them in plaintext.

use sqlx::Row;

use super::{MetaError, MetaResult, MetaStore, now_millis};

#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    /// Human-readable name (`key create NAME`, or the AccessKey resource).
    pub name: String,
    /// `root`, `cli`, or `k8s:<namespace>/<name>` for operator-managed keys.
    pub owner: String,
    /// IAM identity policy (JSON). `None` grants nothing unless the key is root.
    pub policy: Option<String>,
    pub is_root: bool,
    pub created_at: i64,
    /// After this instant (ms since epoch) the key no longer authenticates;
    /// rotation uses it to let an old key overlap with its successor.
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("is_root", &self.is_root)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl AccessKey {
    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now_ms)
    }
}

#[derive(Clone, Debug)]
pub struct NewAccessKey {
    pub name: String,
    pub owner: String,
    pub policy: Option<String>,
    pub is_root: bool,
    /// `None` generates a fresh id and secret.
    pub credentials: Option<(String, String)>,
}

const COLUMNS: &str = "id, secret, name, owner, policy, is_root, created_at, expires_at";

fn key_from_row(store: &MetaStore, row: &sqlx::any::AnyRow) -> MetaResult<AccessKey> {
    let id: String = row.try_get("id")?;
    Ok(AccessKey {
        secret: store.read_secret(&id, row.try_get("secret")?)?,
        id,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        policy: row.try_get("policy")?,
        is_root: row.try_get::<i64, _>("is_root")? != 0,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// A new access key id: 20 characters, upper-case letters and digits, like AWS's.
pub fn generate_access_key_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rng();
    let tail: String = (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("CFKA{tail}")
}

/// A new secret: 40 characters of base64 alphabet, 240 bits of entropy.
pub fn generate_secret_key() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl MetaStore {
    pub async fn create_access_key(&self, key: &NewAccessKey) -> MetaResult<AccessKey> {
        let (id, secret) = key
            .credentials
            .clone()
            .unwrap_or_else(|| (generate_access_key_id(), generate_secret_key()));
        let created_at = now_millis();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO access_keys (id, secret, name, owner, policy, is_root, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(self.stored_secret(&id, &secret))
        .bind(&key.name)
        .bind(&key.owner)
        .bind(key.policy.as_deref())
        .bind(i64::from(key.is_root))
        .bind(created_at)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(MetaError::AccessKeyAlreadyExists(id));
        }
        tx.commit().await?;
        Ok(AccessKey {
            id,
            secret,
            name: key.name.clone(),
            owner: key.owner.clone(),
            policy: key.policy.clone(),
            is_root: key.is_root,
            created_at,
            expires_at: None,
        })
    }

    pub async fn get_access_key(&self, id: &str) -> MetaResult<Option<AccessKey>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM access_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| key_from_row(self, r)).transpose()
    }

    pub async fn list_access_keys(&self) -> MetaResult<Vec<AccessKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| key_from_row(self, r)).collect()
    }

    /// Keys created by one owner (e.g. every key of one AccessKey resource).
    pub async fn list_access_keys_by_owner(&self, owner: &str) -> MetaResult<Vec<AccessKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_keys WHERE owner = $1 ORDER BY created_at, id"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| key_from_row(self, r)).collect()
    }

    /// The root key, when one has been stored.
    pub async fn root_access_key(&self) -> MetaResult<Option<AccessKey>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_keys WHERE is_root = 1 ORDER BY created_at LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| key_from_row(self, r)).transpose()
    }

    pub async fn delete_access_key(&self, id: &str) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM access_keys WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(MetaError::NoSuchAccessKey(id.to_owned()));
        }
        tx.commit().await
    }

    pub async fn set_access_key_policy(&self, id: &str, policy: Option<&str>) -> MetaResult<()> {
        self.update_key(
            id,
            "UPDATE access_keys SET policy = $1 WHERE id = $2",
            policy,
        )
        .await
    }

    /// Sets when the key stops authenticating (`None`: never).
    pub async fn set_access_key_expiry(&self, id: &str, expires_at: Option<i64>) -> MetaResult<()> {
        self.update_key(
            id,
            "UPDATE access_keys SET expires_at = $1 WHERE id = $2",
            expires_at,
        )
        .await
    }

    async fn update_key<'q, T>(&self, id: &'q str, sql: &'q str, value: T) -> MetaResult<()>
    where
        T: 'q + Send + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(sql)
            .bind(value)
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(MetaError::NoSuchAccessKey(id.to_owned()));
        }
        tx.commit().await
    }
}
