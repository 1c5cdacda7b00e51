//! SSE-KMS key service. A [`KeyProvider`] makes and opens objects' data keys
//! under named KMS keys; [`BuiltinKms`] keeps those keys in the metadata store,
//! sealed with the master key. An external KMS (Vault Transit, KMIP) plugs in
//! by implementing the same trait.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine as _;

use crate::crypto::Key;
use crate::meta::{KmsKey, KmsKeyState, MetaError, MetaStore};

/// What can go wrong using a KMS key; the S3 layer answers each as AWS does.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// No key has this id, ARN or alias (`KMS.NotFoundException`).
    #[error("KMS key {0} does not exist")]
    NotFound(String),
    /// The key is disabled (`KMS.DisabledException`).
    #[error("KMS key {0} is disabled")]
    Disabled(String),
    /// The key is pending deletion (`KMS.KMSInvalidStateException`).
    #[error("KMS key {0} is pending deletion")]
    PendingDeletion(String),
    /// A wrapped data key that does not open under its key and context.
    #[error("a wrapped data key does not open (wrong key or encryption context)")]
    Unauthentic,
    /// The server has no master key to open key material with.
    #[error("the key service needs a master key")]
    NoMasterKey,
    #[error(transparent)]
    Store(#[from] MetaError),
}

/// A KMS key chosen for a new encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub id: String,
    pub arn: String,
}

/// The encryption context a data key is bound to: string pairs, in the
/// base64 JSON form S3 takes in `x-amz-server-side-encryption-context`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// Parses the header's value: base64 of a JSON object of strings.
    pub fn from_header(value: &str) -> Option<Self> {
        let json = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        let map: BTreeMap<String, String> = serde_json::from_slice(&json).ok()?;
        Some(Self(map))
    }

    /// The base64 JSON form (keys sorted), as stored and returned.
    pub fn to_header(&self) -> String {
        let json = serde_json::to_string(&self.0).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    fn canonical(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }
}

/// Makes and opens data keys under KMS keys.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// The key a new encryption uses: the one named (id, ARN or alias), or
    /// the default key when none is named. Refused unless it is enabled.
    async fn key_for_encryption(&self, named: Option<&str>) -> Result<KeyRef, KmsError>;

    /// A fresh data key, and its wrapped form bound to `key` and `context`.
    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<(Key, String), KmsError>;

    /// Opens a wrapped data key; refused while its KMS key is not enabled.
    async fn decrypt_data_key(
        &self,
        key_id: &str,
        wrapped: &str,
        context: &EncryptionContext,
    ) -> Result<Key, KmsError>;

    /// The ARN of a key id.
    fn arn(&self, key_id: &str) -> String;
}

/// The account id in Coffer's ARNs: one store, one account.
pub const ACCOUNT: &str = "000000000000";

/// The alias of the key used for `aws:kms` without a key id (AWS's managed
/// `aws/s3` key); created on first use.
pub const DEFAULT_KEY_NAME: &str = "aws/s3";

/// The key service built into Coffer: KMS keys in the metadata store.
pub struct BuiltinKms {
    meta: MetaStore,
    region: String,
}

impl BuiltinKms {
    pub fn new(meta: MetaStore, region: String) -> Self {
        Self { meta, region }
    }

    fn master(&self) -> Result<&Key, KmsError> {
        self.meta.master_key().ok_or(KmsError::NoMasterKey)
    }

    /// Creates an enabled key named `name`.
    pub async fn create_key(&self, name: &str) -> Result<KmsKey, KmsError> {
        let id = new_key_id();
        let key = KmsKey::generate(id, name.to_owned(), self.master()?);
        self.meta.create_kms_key(&key).await?;
        Ok(key)
    }

    /// The key named by an id, an ARN (`arn:aws:kms:...:key/<id>`), an alias
    /// ARN or `alias/<name>`, or a bare name.
    async fn lookup(&self, named: &str) -> Result<KmsKey, KmsError> {
        let bare = named
            .rsplit_once(":key/")
            .map(|(_, id)| id)
            .or_else(|| named.rsplit_once(":alias/").map(|(_, a)| a))
            .unwrap_or(named);
        let bare = bare.strip_prefix("alias/").unwrap_or(bare);
        self.meta
            .get_kms_key(bare)
            .await?
            .ok_or_else(|| KmsError::NotFound(named.to_owned()))
    }

    fn usable(&self, key: &KmsKey) -> Result<(), KmsError> {
        match key.state {
            KmsKeyState::Enabled => Ok(()),
            KmsKeyState::Disabled => Err(KmsError::Disabled(self.arn(&key.id))),
            KmsKeyState::PendingDeletion => Err(KmsError::PendingDeletion(self.arn(&key.id))),
        }
    }

    fn aad(key_id: &str, context: &EncryptionContext) -> String {
        format!("coffer kms data key v1:{key_id}:{}", context.canonical())
    }
}

/// A fresh key id in the form AWS KMS uses (a UUID).
fn new_key_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex = hex::encode(b);
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[async_trait]
impl KeyProvider for BuiltinKms {
    async fn key_for_encryption(&self, named: Option<&str>) -> Result<KeyRef, KmsError> {
        let key = match named {
            Some(named) => self.lookup(named).await?,
            None => match self.meta.get_kms_key(DEFAULT_KEY_NAME).await? {
                Some(key) => key,
                None => self.create_key(DEFAULT_KEY_NAME).await?,
            },
        };
        self.usable(&key)?;
        Ok(KeyRef {
            arn: self.arn(&key.id),
            id: key.id,
        })
    }

    async fn generate_data_key(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<(Key, String), KmsError> {
        let kms_key = self.lookup(&key.id).await?;
        self.usable(&kms_key)?;
        let material = kms_key.material(self.master()?)?;
        let data_key = Key::random();
        let wrapped = material.seal(
            data_key.as_bytes(),
            Self::aad(&kms_key.id, context).as_bytes(),
        );
        Ok((data_key, wrapped))
    }

    async fn decrypt_data_key(
        &self,
        key_id: &str,
        wrapped: &str,
        context: &EncryptionContext,
    ) -> Result<Key, KmsError> {
        let kms_key = self.lookup(key_id).await?;
        self.usable(&kms_key)?;
        let material = kms_key.material(self.master()?)?;
        material
            .open(wrapped, Self::aad(&kms_key.id, context).as_bytes())
            .ok()
            .and_then(|bytes| Key::from_bytes(&bytes))
            .ok_or(KmsError::Unauthentic)
    }

    fn arn(&self, key_id: &str) -> String {
        format!("arn:aws:kms:{}:{ACCOUNT}:key/{key_id}", self.region)
    }
}
