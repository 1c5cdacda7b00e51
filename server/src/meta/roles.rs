//! IAM roles (a permission policy plus a trust policy saying who may assume it)
//! and the STS sessions issued for them. A session's secret is sealed with the
//! master key like an access key's; its token is stored only as a SHA-256 hash.
//! Deleting a role deletes its sessions in the same transaction.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{MetaError, MetaResult, MetaStore, now_millis};

/// Session access key ids start with this, like AWS's temporary credentials.
pub const SESSION_KEY_PREFIX: &str = "ASIA";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    /// IAM permission policy (JSON) of every session of the role.
    pub policy: String,
    /// IAM trust policy (JSON): who may assume the role.
    pub trust: String,
    /// Longest session (`DurationSeconds`) the role allows.
    pub max_session_seconds: i64,
    /// `cli`, or `k8s:<namespace>/<name>` for operator-managed roles.
    pub owner: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewRole {
    pub name: String,
    pub policy: String,
    pub trust: String,
    pub max_session_seconds: i64,
    pub owner: String,
}

/// Temporary credentials issued by STS.
#[derive(Clone, PartialEq, Eq)]
pub struct StsSession {
    /// The access key id (`ASIA...`).
    pub id: String,
    pub secret: String,
    /// SHA-256 (hex) of the session token.
    pub token_hash: String,
    pub role: String,
    /// Who the session acts for: the token's `sub`, or the access key that
    /// called AssumeRole.
    pub subject: String,
    /// The identity provider (issuer URL), or `access-key` for AssumeRole.
    pub source: String,
    pub session_name: String,
    /// Optional session policy: the session may do only what both allow.
    pub session_policy: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for StsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsSession")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl StsSession {
    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        self.expires_at <= now_ms
    }

    /// Whether `token` is this session's token.
    pub fn token_matches(&self, token: &str) -> bool {
        let hash = token_hash(token);
        // Both sides are hashes of fixed length: comparing them leaks nothing
        // useful about the token itself.
        hash.len() == self.token_hash.len()
            && hash
                .bytes()
                .zip(self.token_hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// What STS records when it issues credentials; the store makes the id,
/// secret and token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub role: String,
    pub subject: String,
    pub source: String,
    pub session_name: String,
    pub session_policy: Option<String>,
    pub expires_at: i64,
}

/// The hex SHA-256 of a session token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn session_key_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rng();
    let tail: String = (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{SESSION_KEY_PREFIX}{tail}")
}

fn session_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!(
        "CFST{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

const ROLE_COLUMNS: &str = "name, policy, trust, max_session_seconds, owner, created_at";
const SESSION_COLUMNS: &str = "id, secret, token_hash, role, subject, source, session_name, \
     session_policy, created_at, expires_at";

fn role_from_row(row: &sqlx::any::AnyRow) -> MetaResult<Role> {
    Ok(Role {
        name: row.try_get("name")?,
        policy: row.try_get("policy")?,
        trust: row.try_get("trust")?,
        max_session_seconds: row.try_get("max_session_seconds")?,
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
    })
}

impl MetaStore {
    /// Creates a role, or replaces the documents of one with the same name and
    /// owner (the operator re-applies what it owns). A role of another owner
    /// is not touched: `RoleAlreadyExists`.
    pub async fn put_role(&self, role: &NewRole, replace: bool) -> MetaResult<Role> {
        let created_at = now_millis();
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(&format!("SELECT {ROLE_COLUMNS} FROM roles WHERE name = $1"))
            .bind(&role.name)
            .fetch_optional(&mut **tx)
            .await?;
        let created_at = match existing {
            Some(row) => {
                let existing = role_from_row(&row)?;
                if !replace || existing.owner != role.owner {
                    return Err(MetaError::RoleAlreadyExists(role.name.clone()));
                }
                sqlx::query(
                    "UPDATE roles SET policy = $1, trust = $2, max_session_seconds = $3 WHERE name = $4",
                )
                .bind(&role.policy)
                .bind(&role.trust)
                .bind(role.max_session_seconds)
                .bind(&role.name)
                .execute(&mut **tx)
                .await?;
                existing.created_at
            }
            None => {
                sqlx::query(
                    "INSERT INTO roles (name, policy, trust, max_session_seconds, owner, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&role.name)
                .bind(&role.policy)
                .bind(&role.trust)
                .bind(role.max_session_seconds)
                .bind(&role.owner)
                .bind(created_at)
                .execute(&mut **tx)
                .await?;
                created_at
            }
        };
        tx.commit().await?;
        Ok(Role {
            name: role.name.clone(),
            policy: role.policy.clone(),
            trust: role.trust.clone(),
            max_session_seconds: role.max_session_seconds,
            owner: role.owner.clone(),
            created_at,
        })
    }

    pub async fn get_role(&self, name: &str) -> MetaResult<Option<Role>> {
        let row = sqlx::query(&format!("SELECT {ROLE_COLUMNS} FROM roles WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(role_from_row).transpose()
    }

    pub async fn list_roles(&self) -> MetaResult<Vec<Role>> {
        let rows = sqlx::query(&format!("SELECT {ROLE_COLUMNS} FROM roles ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(role_from_row).collect()
    }

    /// Deletes a role and every session issued for it.
    pub async fn delete_role(&self, name: &str) -> MetaResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sts_sessions WHERE role = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(MetaError::NoSuchRole(name.to_owned()));
        }
        tx.commit().await
    }

    /// Issues a session for an existing role; returns it with its token
    /// (which is not stored). Sessions that expired a day ago are removed.
    pub async fn create_session(&self, new: &NewSession) -> MetaResult<(StsSession, String)> {
        let id = session_key_id();
        let secret = super::keys::generate_secret_key();
        let token = session_token();
        let created_at = now_millis();
        let mut tx = self.begin_write().await?;
        let role_exists = sqlx::query("SELECT name FROM roles WHERE name = $1")
            .bind(&new.role)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        if !role_exists {
            return Err(MetaError::NoSuchRole(new.role.clone()));
        }
        sqlx::query("DELETE FROM sts_sessions WHERE expires_at < $1")
            .bind(created_at - 86_400_000)
            .execute(&mut **tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO sts_sessions ({SESSION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&id)
        .bind(self.stored_secret(&id, &secret))
        .bind(token_hash(&token))
        .bind(&new.role)
        .bind(&new.subject)
        .bind(&new.source)
        .bind(&new.session_name)
        .bind(new.session_policy.as_deref())
        .bind(created_at)
        .bind(new.expires_at)
        .execute(&mut **tx)
        .await?;
        tx.commit().await?;
        let session = StsSession {
            token_hash: token_hash(&token),
            id,
            secret,
            role: new.role.clone(),
            subject: new.subject.clone(),
            source: new.source.clone(),
            session_name: new.session_name.clone(),
            session_policy: new.session_policy.clone(),
            created_at,
            expires_at: new.expires_at,
        };
        Ok((session, token))
    }

    pub async fn get_session(&self, id: &str) -> MetaResult<Option<StsSession>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sts_sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: String = row.try_get("id")?;
        Ok(Some(StsSession {
            secret: self.read_secret(&id, row.try_get("secret")?)?,
            id,
            token_hash: row.try_get("token_hash")?,
            role: row.try_get("role")?,
            subject: row.try_get("subject")?,
            source: row.try_get("source")?,
            session_name: row.try_get("session_name")?,
            session_policy: row.try_get("session_policy")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }
}
