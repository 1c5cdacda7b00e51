//! What ACL grants allow, as AWS maps ACL permissions to actions, and the
//! server-wide access defaults (`--default-object-ownership`,
//! `--block-public-access`). Policies are evaluated first (`auth.rs`); ACLs
//! count only where a bucket's Object Ownership enables them.

use crate::meta::{Acl, AclPermission, Grantee, Group, ObjectOwnership};

/// Server-wide settings of who may see what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessDefaults {
    /// Object Ownership of buckets created without `x-amz-object-ownership`.
    pub object_ownership: ObjectOwnership,
    /// All four Block Public Access settings on for every bucket.
    pub block_public_access: bool,
}

/// Whether an ACL permission is checked on the bucket or on the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclTarget {
    Bucket,
    Object,
}

/// The ACL permission that grants an action, where one does (AWS's "Mapping of
/// ACL permissions and access policy permissions").
pub fn required_permission(action: &str) -> Option<(AclTarget, AclPermission)> {
    use AclPermission::*;
    use AclTarget::*;
    Some(match action {
        "s3:ListBucket" | "s3:ListBucketVersions" | "s3:ListBucketMultipartUploads" => {
            (Bucket, Read)
        }
        "s3:PutObject"
        | "s3:DeleteObject"
        | "s3:DeleteObjectVersion"
        | "s3:AbortMultipartUpload"
        | "s3:ListMultipartUploadParts" => (Bucket, Write),
        "s3:GetBucketAcl" => (Bucket, ReadAcp),
        "s3:PutBucketAcl" => (Bucket, WriteAcp),
        "s3:GetObject" | "s3:GetObjectVersion" => (Object, Read),
        "s3:GetObjectAcl" | "s3:GetObjectVersionAcl" => (Object, ReadAcp),
        "s3:PutObjectAcl" | "s3:PutObjectVersionAcl" => (Object, WriteAcp),
        _ => return None,
    })
}

/// Whether `acl` (on a resource owned by `owner`) gives `caller` (an access key
/// id; `None` when anonymous) the permission `wanted`. The owner may always
/// read and change the ACL, as on AWS. `ignore_public` drops grants to
/// AllUsers and AuthenticatedUsers (IgnorePublicAcls).
pub fn acl_allows(
    acl: &Acl,
    owner: &str,
    caller: Option<&str>,
    ignore_public: bool,
    wanted: AclPermission,
) -> bool {
    let is_owner = caller == Some(owner);
    if is_owner && matches!(wanted, AclPermission::ReadAcp | AclPermission::WriteAcp) {
        return true;
    }
    acl.grants.iter().any(|grant| {
        grant.permission.covers(wanted)
            && match &grant.grantee {
                Grantee::Owner => is_owner,
                Grantee::User(id) => caller == Some(id.as_str()),
                Grantee::Group(Group::AllUsers) => !ignore_public,
                Grantee::Group(Group::AuthenticatedUsers) => !ignore_public && caller.is_some(),
                Grantee::Group(Group::LogDelivery) => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{AclGrant, CannedAcl};

    #[test]
    fn grants_cover_what_their_permission_maps_to() {
        let acl = Acl {
            owner: Some("writer".into()),
            grants: vec![
                AclGrant {
                    grantee: Grantee::Owner,
                    permission: AclPermission::FullControl,
                },
                AclGrant {
                    grantee: Grantee::User("reader".into()),
                    permission: AclPermission::Read,
                },
            ],
        };
        assert!(acl_allows(
            &acl,
            "writer",
            Some("writer"),
            false,
            AclPermission::Read
        ));
        assert!(acl_allows(
            &acl,
            "writer",
            Some("reader"),
            false,
            AclPermission::Read
        ));
        assert!(!acl_allows(
            &acl,
            "writer",
            Some("reader"),
            false,
            AclPermission::ReadAcp
        ));
        assert!(!acl_allows(
            &acl,
            "writer",
            None,
            false,
            AclPermission::Read
        ));
        let public = Acl::canned(CannedAcl::PublicRead);
        assert!(acl_allows(&public, "o", None, false, AclPermission::Read));
        assert!(!acl_allows(&public, "o", None, true, AclPermission::Read));
        let authenticated = Acl::canned(CannedAcl::AuthenticatedRead);
        assert!(!acl_allows(
            &authenticated,
            "o",
            None,
            false,
            AclPermission::Read
        ));
        assert!(acl_allows(
            &authenticated,
            "o",
            Some("k"),
            false,
            AclPermission::Read
        ));
        // The owner keeps READ_ACP and WRITE_ACP even with an empty list.
        let empty = Acl {
            owner: None,
            grants: vec![],
        };
        assert!(acl_allows(
            &empty,
            "o",
            Some("o"),
            false,
            AclPermission::WriteAcp
        ));
        assert!(!acl_allows(
            &empty,
            "o",
            Some("o"),
            false,
            AclPermission::Read
        ));
    }
}
