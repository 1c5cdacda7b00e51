//! IAM identity policies generated from an AccessKey's bucket grants: scoped to
//! exactly the granted buckets (and prefixes) and the actions of each access mode.

use std::collections::BTreeMap;

use coffer_server::iam::{Effect, OneOrMany, PolicyDocument, PolicyError, Statement};

use crate::crd::AccessMode;

/// One resolved grant: an S3 bucket name, a mode, an optional key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub bucket: String,
    pub access: AccessMode,
    pub prefix: Option<String>,
}

const READ_OBJECT: &[&str] = &["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"];
const WRITE_OBJECT: &[&str] = &[
    "s3:PutObject",
    "s3:PutObjectTagging",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
];
const DELETE_OBJECT: &[&str] = &[
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
];
const LIST_BUCKET: &[&str] = &["s3:ListBucket", "s3:ListBucketVersions"];
const BUCKET_INFO: &[&str] = &["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"];
/// What the Bucket resource declares: even an Admin key may not change it, or the
/// operator would revert the change at its next reconcile.
const DECLARED_BY_BUCKET: &[&str] = &[
    "s3:DeleteBucket",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketVersioning",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketCORS",
];

fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

fn objects_arn(bucket: &str, prefix: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{prefix}*")
}

/// The statements granting one bucket.
fn grant_statements(grant: &Grant) -> Vec<Statement> {
    let bucket = bucket_arn(&grant.bucket);
    let prefix = grant.prefix.as_deref().unwrap_or("");
    let objects = objects_arn(&grant.bucket, prefix);
    let list = || {
        let mut statement = Statement::new(Effect::Allow, LIST_BUCKET, vec![bucket.clone()]);
        if !prefix.is_empty() {
            let mut like = BTreeMap::new();
            like.insert(
                "s3:prefix".to_owned(),
                OneOrMany::One(serde_json::Value::String(format!("{prefix}*"))),
            );
            statement.condition = Some(BTreeMap::from([("StringLike".to_owned(), like)]));
        }
        statement
    };
    let info = || Statement::new(Effect::Allow, BUCKET_INFO, vec![bucket.clone()]);
    let on_objects = |actions: &[&[&str]]| {
        let actions: Vec<&str> = actions.iter().flat_map(|a| a.iter().copied()).collect();
        Statement::new(Effect::Allow, &actions, vec![objects.clone()])
    };
    match grant.access {
        AccessMode::ReadOnly => vec![list(), info(), on_objects(&[READ_OBJECT])],
        AccessMode::WriteOnly => vec![info(), on_objects(&[WRITE_OBJECT])],
        AccessMode::ReadWrite => vec![
            list(),
            info(),
            on_objects(&[READ_OBJECT, WRITE_OBJECT, DELETE_OBJECT]),
        ],
        AccessMode::Admin => {
            let declared = Statement::new(Effect::Deny, DECLARED_BY_BUCKET, vec![bucket.clone()]);
            let all_objects = Statement::new(Effect::Allow, &["s3:*"], vec![objects.clone()]);
            if prefix.is_empty() {
                let bucket_wide = Statement::new(Effect::Allow, &["s3:*"], vec![bucket.clone()]);
                vec![bucket_wide, all_objects, declared]
            } else {
                // A prefix narrows object access and listing; the bucket's other
                // configuration stays whole.
                let bucket_wide = Statement::new(
                    Effect::Allow,
                    &[
                        "s3:Get*",
                        "s3:Put*",
                        "s3:Delete*",
                        "s3:ListBucketMultipartUploads",
                    ],
                    vec![bucket.clone()],
                );
                vec![bucket_wide, list(), all_objects, declared]
            }
        }
    }
}

/// The identity policy of a key: the grants' statements followed by the statements
/// of the user's inline policy (validated first).
pub fn identity_policy(
    grants: &[Grant],
    inline: Option<&str>,
) -> Result<PolicyDocument, PolicyError> {
    let mut statements: Vec<Statement> = grants.iter().flat_map(grant_statements).collect();
    if let Some(json) = inline {
        let extra = PolicyDocument::parse(json)?;
        statements.extend(extra.statements().cloned());
    }
    Ok(PolicyDocument::new(statements))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_server::iam::{Decision, Request, RequestContext};

    fn decide(
        policy: &PolicyDocument,
        action: &str,
        resource: &str,
        prefix: Option<&str>,
    ) -> Decision {
        let mut ctx = RequestContext::default();
        if let Some(p) = prefix {
            ctx.insert("s3:prefix", p);
        }
        policy.evaluate(
            &Request {
                action,
                resource,
                principal: Some("AKID"),
                context: &ctx,
            },
            false,
        )
    }

    fn grant(access: AccessMode, prefix: Option<&str>) -> Grant {
        Grant {
            bucket: "photos".into(),
            access,
            prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn read_only_grant_allows_reads_and_nothing_else() {
        let policy = identity_policy(&[grant(AccessMode::ReadOnly, None)], None).unwrap();
        assert_eq!(
            decide(&policy, "s3:GetObject", "arn:aws:s3:::photos/a", None),
            Decision::Allow
        );
        assert_eq!(
            decide(&policy, "s3:ListBucket", "arn:aws:s3:::photos", Some("")),
            Decision::Allow
        );
        assert_eq!(
            decide(&policy, "s3:PutObject", "arn:aws:s3:::photos/a", None),
            Decision::NotApplicable
        );
        assert_eq!(
            decide(&policy, "s3:GetObject", "arn:aws:s3:::other/a", None),
            Decision::NotApplicable
        );
        assert_eq!(
            decide(&policy, "s3:GetObject", "arn:aws:s3:::photosx/a", None),
            Decision::NotApplicable
        );
    }

    #[test]
    fn write_only_grant_cannot_read_or_list() {
        let policy = identity_policy(&[grant(AccessMode::WriteOnly, None)], None).unwrap();
        assert_eq!(
            decide(&policy, "s3:PutObject", "arn:aws:s3:::photos/a", None),
            Decision::Allow
        );
        assert_eq!(
            decide(&policy, "s3:GetObject", "arn:aws:s3:::photos/a", None),
            Decision::NotApplicable
        );
        assert_eq!(
            decide(&policy, "s3:ListBucket", "arn:aws:s3:::photos", Some("")),
            Decision::NotApplicable
        );
        assert_eq!(
            decide(&policy, "s3:DeleteObject", "arn:aws:s3:::photos/a", None),
            Decision::NotApplicable
        );
    }

    #[test]
    fn prefix_grant_limits_objects_and_listing() {
        let policy =
            identity_policy(&[grant(AccessMode::ReadWrite, Some("team-a/"))], None).unwrap();
        assert_eq!(
            decide(
                &policy,
                "s3:PutObject",
                "arn:aws:s3:::photos/team-a/x",
                None
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &policy,
                "s3:PutObject",
                "arn:aws:s3:::photos/team-b/x",
                None
            ),
            Decision::NotApplicable
        );
        assert_eq!(
            decide(
                &policy,
                "s3:ListBucket",
                "arn:aws:s3:::photos",
                Some("team-a/")
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(&policy, "s3:ListBucket", "arn:aws:s3:::photos", Some("")),
            Decision::NotApplicable
        );
    }

    #[test]
    fn admin_grant_covers_bucket_configuration() {
        let policy = identity_policy(&[grant(AccessMode::Admin, None)], None).unwrap();
        assert_eq!(
            decide(&policy, "s3:PutBucketTagging", "arn:aws:s3:::photos", None),
            Decision::Allow
        );
        assert_eq!(
            decide(&policy, "s3:GetBucketPolicy", "arn:aws:s3:::photos", None),
            Decision::Allow
        );
        // What the Bucket resource declares stays the resource's to change.
        assert_eq!(
            decide(&policy, "s3:PutBucketPolicy", "arn:aws:s3:::photos", None),
            Decision::Deny
        );
        assert_eq!(
            decide(&policy, "s3:DeleteBucket", "arn:aws:s3:::photos", None),
            Decision::Deny
        );
        assert_eq!(
            decide(&policy, "s3:DeleteObject", "arn:aws:s3:::photos/a", None),
            Decision::Allow
        );
        assert_eq!(
            decide(&policy, "s3:DeleteObject", "arn:aws:s3:::other/a", None),
            Decision::NotApplicable
        );
    }

    #[test]
    fn inline_policy_is_validated_and_appended() {
        assert!(identity_policy(&[], Some("{not json")).is_err());
        let policy = identity_policy(
            &[grant(AccessMode::ReadOnly, None)],
            Some(r#"{"Statement":[{"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/private/*"}]}"#),
        )
        .unwrap();
        assert_eq!(
            decide(
                &policy,
                "s3:GetObject",
                "arn:aws:s3:::photos/private/x",
                None
            ),
            Decision::Deny
        );
    }
}
