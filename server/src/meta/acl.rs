//! Canned ACLs and Object Ownership as the store keeps them: a bucket's in
//! `bucket_configs` (kinds `acl` and `ownership`), an object version's with its
//! headers, so it follows the version through versioning and multipart uploads.

use serde::{Deserialize, Serialize};

use super::objects::ObjectHeaders;
use super::{MetaError, MetaResult, MetaStore, from_json, to_json};

/// The configuration kind of a bucket's canned ACL (absent: `private`).
pub const BUCKET_ACL: &str = "acl";
/// The configuration kind of a bucket's Object Ownership (absent: enforced).
pub const OWNERSHIP: &str = "ownership";

/// The canned ACLs Coffer keeps. Each one is a fixed set of grants; arbitrary
/// per-grantee ACLs are not modelled.
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
        }
    }

    /// Whether it grants anything beyond the owners (who in Coffer are one: the
    /// bucket owner owns every object).
    pub fn shares(self) -> bool {
        matches!(
            self,
            Self::PublicRead | Self::PublicReadWrite | Self::AuthenticatedRead
        )
    }

    /// Whether everyone (signed or not) may read.
    pub fn everyone_reads(self) -> bool {
        matches!(self, Self::PublicRead | Self::PublicReadWrite)
    }

    /// Whether every signed caller may read.
    pub fn authenticated_reads(self) -> bool {
        self.everyone_reads() || self == Self::AuthenticatedRead
    }

    /// Whether everyone may write (bucket ACL `WRITE`: create, overwrite, delete).
    pub fn everyone_writes(self) -> bool {
        self == Self::PublicReadWrite
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

/// What a bucket says about ACLs: its ownership setting and its own canned ACL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketAcl {
    pub ownership: ObjectOwnership,
    pub acl: CannedAcl,
}

/// How `Unset` is stored: a row, since no row means the default (enforced).
const UNSET: &str = "Unset";

impl MetaStore {
    pub async fn bucket_acl(&self, bucket: &str) -> MetaResult<BucketAcl> {
        let ownership = match self.get_bucket_config(bucket, OWNERSHIP).await? {
            None => ObjectOwnership::BucketOwnerEnforced,
            Some(text) if text == UNSET => ObjectOwnership::Unset,
            Some(text) => ObjectOwnership::parse(&text)
                .ok_or_else(|| MetaError::Corrupt(format!("object ownership {text:?}")))?,
        };
        let acl = match self.get_bucket_config(bucket, BUCKET_ACL).await? {
            None => CannedAcl::Private,
            Some(text) => from_json(&text)?,
        };
        Ok(BucketAcl { ownership, acl })
    }

    pub async fn set_bucket_canned_acl(&self, bucket: &str, acl: CannedAcl) -> MetaResult<()> {
        let value = (acl != CannedAcl::Private).then(|| to_json(&acl));
        self.set_bucket_config(bucket, BUCKET_ACL, value.as_deref())
            .await
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

    /// Replaces the canned ACL of a version (`None`: the current one); returns
    /// the version id. Delete markers have no ACL: `NoSuchKey`/`NoSuchVersion`.
    pub async fn set_object_acl(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        acl: CannedAcl,
    ) -> MetaResult<String> {
        self.update_object_headers(bucket, key, version_id, |headers: &mut ObjectHeaders| {
            headers.acl = (acl != CannedAcl::Private).then_some(acl);
        })
        .await
    }
}
