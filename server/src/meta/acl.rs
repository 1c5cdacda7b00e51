//! ACLs, Object Ownership and Block Public Access as the store keeps them: a
//! bucket's in `bucket_configs` (kinds `acl`, `ownership`,
//! `public_access_block`), an object version's ACL (and owner) with its headers,
//! so it follows the version through versioning and multipart uploads and is
//! changed in the same transaction as the rest of the row.

use serde::{Deserialize, Serialize};

use super::objects::ObjectHeaders;
use super::{MetaError, MetaResult, MetaStore, from_json, to_json};

/// The configuration kind of a bucket's ACL (absent: `private`).
pub const BUCKET_ACL: &str = "acl";
/// The configuration kind of a bucket's Object Ownership (absent: enforced).
pub const OWNERSHIP: &str = "ownership";
/// The configuration kind of a bucket's Block Public Access settings.
pub const PUBLIC_ACCESS_BLOCK: &str = "public_access_block";

/// The canned ACLs: names for fixed sets of grants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CannedAcl {
    #[default]
    #[serde(rename = "private")]
    Private,
    #[serde(rename = "public-read")]
    PublicRead,
    #[serde(rename = "public-read-write")]
    PublicReadWrite,
    #[serde(rename = "authenticated-read")]
    AuthenticatedRead,
    #[serde(rename = "bucket-owner-read")]
    BucketOwnerRead,
    #[serde(rename = "bucket-owner-full-control")]
    BucketOwnerFullControl,
    #[serde(rename = "log-delivery-write")]
    LogDeliveryWrite,
}

impl CannedAcl {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "private" => Self::Private,
            "public-read" => Self::PublicRead,
            "public-read-write" => Self::PublicReadWrite,
            "authenticated-read" => Self::AuthenticatedRead,
            "bucket-owner-read" => Self::BucketOwnerRead,
            "bucket-owner-full-control" => Self::BucketOwnerFullControl,
            "log-delivery-write" => Self::LogDeliveryWrite,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::PublicRead => "public-read",
            Self::PublicReadWrite => "public-read-write",
            Self::AuthenticatedRead => "authenticated-read",
            Self::BucketOwnerRead => "bucket-owner-read",
            Self::BucketOwnerFullControl => "bucket-owner-full-control",
            Self::LogDeliveryWrite => "log-delivery-write",
        }
    }

    /// The grants it stands for on a resource owned by `owner` in a bucket
    /// owned by `bucket_owner` (the same for a bucket's own ACL).
    pub fn grants(self, owner: &Grantee, bucket_owner: &Grantee) -> Vec<AclGrant> {
        let grant = |grantee: &Grantee, permission| AclGrant {
            grantee: grantee.clone(),
            permission,
        };
        let group = |g| Grantee::Group(g);
        let mut grants = vec![grant(owner, AclPermission::FullControl)];
        let others_bucket = bucket_owner != owner;
        match self {
            Self::Private => {}
            Self::PublicRead => grants.push(grant(&group(Group::AllUsers), AclPermission::Read)),
            Self::PublicReadWrite => {
                grants.push(grant(&group(Group::AllUsers), AclPermission::Read));
                grants.push(grant(&group(Group::AllUsers), AclPermission::Write));
            }
            Self::AuthenticatedRead => {
                grants.push(grant(
                    &group(Group::AuthenticatedUsers),
                    AclPermission::Read,
                ));
            }
            Self::BucketOwnerRead if others_bucket => {
                grants.push(grant(bucket_owner, AclPermission::Read));
            }
            Self::BucketOwnerFullControl if others_bucket => {
                grants.push(grant(bucket_owner, AclPermission::FullControl));
            }
            Self::BucketOwnerRead | Self::BucketOwnerFullControl => {}
            Self::LogDeliveryWrite => {
                grants.push(grant(&group(Group::LogDelivery), AclPermission::Write));
                grants.push(grant(&group(Group::LogDelivery), AclPermission::ReadAcp));
            }
        }
        grants
    }
}

/// The groups S3 ACLs can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Group {
    AllUsers,
    AuthenticatedUsers,
    LogDelivery,
}

impl Group {
    pub fn uri(self) -> &'static str {
        match self {
            Self::AllUsers => "http://acs.amazonaws.com/groups/global/AllUsers",
            Self::AuthenticatedUsers => "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
            Self::LogDelivery => "http://acs.amazonaws.com/groups/s3/LogDelivery",
        }
    }

    pub fn from_uri(uri: &str) -> Option<Self> {
        [Self::AllUsers, Self::AuthenticatedUsers, Self::LogDelivery]
            .into_iter()
            .find(|g| g.uri() == uri)
    }

    /// AWS's "public": a grant to everyone, or to every signed caller.
    pub fn is_public(self) -> bool {
        matches!(self, Self::AllUsers | Self::AuthenticatedUsers)
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// The owner of the resource, whoever that is (ACLs stored before owners
    /// were recorded: the bucket owner).
    Owner,
    /// An access key (or the owner id of an operator-managed bucket).
    User(String),
    Group(Group),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclPermission {
    #[serde(rename = "FULL_CONTROL")]
    FullControl,
    #[serde(rename = "READ")]
    Read,
    #[serde(rename = "WRITE")]
    Write,
    #[serde(rename = "READ_ACP")]
    ReadAcp,
    #[serde(rename = "WRITE_ACP")]
    WriteAcp,
}

impl AclPermission {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "FULL_CONTROL" => Self::FullControl,
            "READ" => Self::Read,
            "WRITE" => Self::Write,
            "READ_ACP" => Self::ReadAcp,
            "WRITE_ACP" => Self::WriteAcp,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FullControl => "FULL_CONTROL",
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::ReadAcp => "READ_ACP",
            Self::WriteAcp => "WRITE_ACP",
        }
    }

    /// Whether holding `self` gives `wanted`.
    pub fn covers(self, wanted: AclPermission) -> bool {
        self == Self::FullControl || self == wanted
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclGrant {
    pub grantee: Grantee,
    pub permission: AclPermission,
}

/// An access control list with the owner of what it protects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acl {
    /// The owner when it is not the bucket owner (an object written by another
    /// key under `ObjectWriter`/`BucketOwnerPreferred`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub grants: Vec<AclGrant>,
}

/// What the store may hold: a canned ACL name (as written before grants were
/// kept) or a full list.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredAcl {
    Canned(CannedAcl),
    Full {
        #[serde(default)]
        owner: Option<String>,
        grants: Vec<AclGrant>,
    },
}

impl<'de> Deserialize<'de> for Acl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match StoredAcl::deserialize(deserializer)? {
            StoredAcl::Canned(canned) => Acl::canned(canned),
            StoredAcl::Full { owner, grants } => Acl { owner, grants },
        })
    }
}

impl Default for Acl {
    fn default() -> Self {
        Acl::canned(CannedAcl::Private)
    }
}

impl Acl {
    /// A canned ACL on a resource of the bucket owner.
    pub fn canned(canned: CannedAcl) -> Self {
        Acl {
            owner: None,
            grants: canned.grants(&Grantee::Owner, &Grantee::Owner),
        }
    }

    /// Whether it grants anything to anyone but the bucket owner (`bucket_owner`
    /// is its id): what ACLs disabled (`BucketOwnerEnforced`) cannot keep.
    pub fn shares(&self, bucket_owner: &str) -> bool {
        let owner_is_bucket_owner = self.owner.as_deref().is_none_or(|o| o == bucket_owner);
        !owner_is_bucket_owner
            || self.grants.iter().any(|g| {
                let to_owner = match &g.grantee {
                    Grantee::Owner => true,
                    Grantee::User(id) => id == bucket_owner,
                    Grantee::Group(_) => false,
                };
                !(to_owner && g.permission == AclPermission::FullControl)
            })
    }

    /// Whether it grants anything to AllUsers or AuthenticatedUsers.
    pub fn is_public(&self) -> bool {
        self.grants
            .iter()
            .any(|g| matches!(g.grantee, Grantee::Group(group) if group.is_public()))
    }
}

/// A bucket's Object Ownership setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ObjectOwnership {
    /// ACLs disabled: only policies grant access. AWS's default since 2023.
    #[default]
    BucketOwnerEnforced,
    BucketOwnerPreferred,
    ObjectWriter,
    /// DeleteBucketOwnershipControls removed the setting: ACLs are enabled and
    /// objects belong to their writer, as on buckets from before the setting.
    Unset,
}

impl ObjectOwnership {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "BucketOwnerEnforced" => Self::BucketOwnerEnforced,
            "BucketOwnerPreferred" => Self::BucketOwnerPreferred,
            "ObjectWriter" => Self::ObjectWriter,
            _ => return None,
        })
    }

    /// The S3 name; `None` when unset.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Self::BucketOwnerEnforced => Some("BucketOwnerEnforced"),
            Self::BucketOwnerPreferred => Some("BucketOwnerPreferred"),
            Self::ObjectWriter => Some("ObjectWriter"),
            Self::Unset => None,
        }
    }

    pub fn acls_enabled(self) -> bool {
        self != Self::BucketOwnerEnforced
    }
}

/// The four Block Public Access settings (all off when none are stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublicAccessBlock {
    #[serde(default)]
    pub block_public_acls: bool,
    #[serde(default)]
    pub ignore_public_acls: bool,
    #[serde(default)]
    pub block_public_policy: bool,
    #[serde(default)]
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    pub const ALL: Self = Self {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };

    /// The stricter of the two, setting by setting (bucket and server-wide).
    pub fn or(self, other: Self) -> Self {
        Self {
            block_public_acls: self.block_public_acls || other.block_public_acls,
            ignore_public_acls: self.ignore_public_acls || other.ignore_public_acls,
            block_public_policy: self.block_public_policy || other.block_public_policy,
            restrict_public_buckets: self.restrict_public_buckets || other.restrict_public_buckets,
        }
    }
}

/// What a bucket says about access besides policies: its owner, Object
/// Ownership, its own ACL and its Block Public Access settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketAcl {
    /// The owner's id; empty for a bucket that does not exist.
    pub owner: String,
    pub ownership: ObjectOwnership,
    pub acl: Acl,
    /// As stored for the bucket (`None`: never set).
    pub public_access_block: Option<PublicAccessBlock>,
}

/// How `Unset` is stored: a row, since no row means the default (enforced).
const UNSET: &str = "Unset";

impl MetaStore {
    /// The bucket's ACL settings; defaults (nothing granted) for a missing bucket.
    pub async fn bucket_acl(&self, bucket: &str) -> MetaResult<BucketAcl> {
        let found = match self
            .bucket_with_configs(bucket, &[OWNERSHIP, BUCKET_ACL, PUBLIC_ACCESS_BLOCK])
            .await
        {
            Ok(found) => found,
            Err(MetaError::NoSuchBucket(_)) => return Ok(BucketAcl::default()),
            Err(e) => return Err(e),
        };
        let ownership = match found.config(OWNERSHIP) {
            None => ObjectOwnership::BucketOwnerEnforced,
            Some(UNSET) => ObjectOwnership::Unset,
            Some(text) => ObjectOwnership::parse(text)
                .ok_or_else(|| MetaError::Corrupt(format!("object ownership {text:?}")))?,
        };
        let acl: Acl = found
            .config(BUCKET_ACL)
            .map(from_json)
            .transpose()?
            .unwrap_or_default();
        let public_access_block: Option<PublicAccessBlock> = found
            .config(PUBLIC_ACCESS_BLOCK)
            .map(from_json)
            .transpose()?;
        Ok(BucketAcl {
            owner: found.bucket.owner,
            ownership,
            acl,
            public_access_block,
        })
    }

    /// Replaces a bucket's ACL (one write: concurrent replacements each apply whole).
    pub async fn set_bucket_acl(&self, bucket: &str, acl: &Acl) -> MetaResult<()> {
        let value = (*acl != Acl::default()).then(|| to_json(acl));
        self.set_bucket_config(bucket, BUCKET_ACL, value.as_deref())
            .await
    }

    pub async fn set_bucket_canned_acl(&self, bucket: &str, acl: CannedAcl) -> MetaResult<()> {
        self.set_bucket_acl(bucket, &Acl::canned(acl)).await
    }

    pub async fn set_object_ownership(
        &self,
        bucket: &str,
        ownership: ObjectOwnership,
    ) -> MetaResult<()> {
        let value = match ownership {
            ObjectOwnership::BucketOwnerEnforced => None,
            other => Some(other.as_str().unwrap_or(UNSET)),
        };
        self.set_bucket_config(bucket, OWNERSHIP, value).await
    }

    /// Sets (`Some`) or removes (`None`) a bucket's Block Public Access settings.
    pub async fn set_public_access_block(
        &self,
        bucket: &str,
        settings: Option<PublicAccessBlock>,
    ) -> MetaResult<()> {
        let value = settings.map(|s| to_json(&s));
        self.set_bucket_config(bucket, PUBLIC_ACCESS_BLOCK, value.as_deref())
            .await
    }

    /// Replaces the ACL of a version (`None`: the current one) in the
    /// transaction that locks its row, keeping the version's owner; returns the
    /// version id. Delete markers have no ACL: `NoSuchKey`/`NoSuchVersion`.
    pub async fn set_object_acl(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        grants: Vec<AclGrant>,
    ) -> MetaResult<String> {
        self.update_object_headers(bucket, key, version_id, |headers: &mut ObjectHeaders| {
            let owner = headers.acl.take().and_then(|acl| acl.owner);
            let acl = Acl { owner, grants };
            headers.acl = (acl != Acl::default()).then_some(acl);
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_acls_stored_before_grants_read_as_their_grants() {
        let acl: Acl = serde_json::from_str("\"public-read\"").unwrap();
        assert_eq!(acl, Acl::canned(CannedAcl::PublicRead));
        assert!(acl.is_public());
        let full = to_json(&Acl {
            owner: Some("writer".into()),
            grants: vec![AclGrant {
                grantee: Grantee::User("other".into()),
                permission: AclPermission::ReadAcp,
            }],
        });
        let back: Acl = serde_json::from_str(&full).unwrap();
        assert_eq!(back.owner.as_deref(), Some("writer"));
        assert!(back.shares("owner"));
        assert!(!Acl::canned(CannedAcl::BucketOwnerFullControl).shares("owner"));
    }
}
