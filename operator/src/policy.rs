//! IAM identity policies generated from an AccessKey's bucket grants: scoped to
//! exactly the granted buckets (and prefixes) and the actions of each access mode.
//! A user's own statements may only narrow them, and no key ever administers a
//! bucket: that belongs to the Bucket resource (see "Tenancy" in docs/operator.md).

use std::collections::BTreeMap;

use coffer_server::iam::{Effect, OneOrMany, PolicyDocument, PolicyError, Statement, glob_match};

use crate::crd::AccessMode;

/// One resolved grant: an S3 bucket name, a mode, an optional key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub bucket: String,
    pub access: AccessMode,
    pub prefix: Option<String>,
}

const READ_OBJECT: &[&str] = &[
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:GetObjectAcl",
    "s3:GetObjectVersionAcl",
];
const WRITE_OBJECT: &[&str] = &[
    "s3:PutObject",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
];
const DELETE_OBJECT: &[&str] = &[
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
];
/// Object actions only `Admin` has: setting retention and legal holds.
const MANAGE_OBJECT: &[&str] = &[
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
];
/// Bucket actions that reveal keys: limited by `s3:prefix` on a prefix grant.
const LIST_BUCKET: &[&str] = &[
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads",
];
const BUCKET_LOCATION: &[&str] = &["s3:GetBucketLocation"];
/// Bucket configuration `Admin` may read (never write).
const READ_BUCKET_SETTINGS: &[&str] = &[
    "s3:GetBucketPolicy",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketVersioning",
    "s3:GetBucketCORS",
    "s3:GetLifecycleConfiguration",
    "s3:GetBucketTagging",
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketAcl",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketDataProtection",
];
/// Bucket administration, and what could make data public: no key gets these,
/// whatever a policy says (an explicit Deny in every key's policy). Creating,
/// configuring and deleting buckets is what `Bucket` resources are for.
pub const BUCKET_ADMINISTRATION: &[&str] = &[
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketAcl",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketVersioning",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketCORS",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketTagging",
    "s3:PutBucketWebsite",
    "s3:DeleteBucketWebsite",
    "s3:PutBucketNotification",
    "s3:PutBucketLogging",
    "s3:PutReplicationConfiguration",
    "s3:PutBucketDataProtection",
];
/// Every action evaluated against an object ARN (`arn:aws:s3:::bucket/key`).
const OBJECT_ACTIONS: &[&[&str]] = &[
    READ_OBJECT,
    WRITE_OBJECT,
    DELETE_OBJECT,
    MANAGE_OBJECT,
    &["s3:PutObjectAcl", "s3:PutObjectVersionAcl"],
];
/// Every action evaluated against a bucket ARN (`arn:aws:s3:::bucket`).
const BUCKET_ACTIONS: &[&[&str]] = &[
    LIST_BUCKET,
    BUCKET_LOCATION,
    READ_BUCKET_SETTINGS,
    BUCKET_ADMINISTRATION,
];

/// What one mode allows, on the bucket and on its objects.
struct ModeActions {
    listing: &'static [&'static [&'static str]],
    bucket: &'static [&'static [&'static str]],
    objects: &'static [&'static [&'static str]],
}

fn mode_actions(access: AccessMode) -> ModeActions {
    match access {
        AccessMode::ReadOnly => ModeActions {
            listing: &[LIST_BUCKET],
            bucket: &[BUCKET_LOCATION],
            objects: &[READ_OBJECT],
        },
        AccessMode::WriteOnly => ModeActions {
            listing: &[&["s3:ListBucketMultipartUploads"]],
            bucket: &[BUCKET_LOCATION],
            objects: &[WRITE_OBJECT],
        },
        AccessMode::ReadWrite => ModeActions {
            listing: &[LIST_BUCKET],
            bucket: &[BUCKET_LOCATION],
            objects: &[READ_OBJECT, WRITE_OBJECT, DELETE_OBJECT],
        },
        AccessMode::Admin => ModeActions {
            listing: &[LIST_BUCKET],
            bucket: &[BUCKET_LOCATION, READ_BUCKET_SETTINGS],
            objects: &[READ_OBJECT, WRITE_OBJECT, DELETE_OBJECT, MANAGE_OBJECT],
        },
    }
}

fn flatten(groups: &[&[&'static str]]) -> Vec<&'static str> {
    groups.iter().flat_map(|g| g.iter().copied()).collect()
}

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
    let actions = mode_actions(grant.access);
    let mut list = Statement::new(
        Effect::Allow,
        &flatten(actions.listing),
        vec![bucket.clone()],
    );
    if !prefix.is_empty() {
        let like = BTreeMap::from([(
            "s3:prefix".to_owned(),
            OneOrMany::One(serde_json::Value::String(format!("{prefix}*"))),
        )]);
        list.condition = Some(BTreeMap::from([("StringLike".to_owned(), like)]));
    }
    vec![
        list,
        Statement::new(Effect::Allow, &flatten(actions.bucket), vec![bucket]),
        Statement::new(
            Effect::Allow,
            &flatten(actions.objects),
            vec![objects_arn(&grant.bucket, prefix)],
        ),
    ]
}

/// The Deny every key's policy carries: no bucket administration, anywhere.
fn administration_denied() -> Statement {
    Statement::new(Effect::Deny, BUCKET_ADMINISTRATION, vec!["*".to_owned()])
}

/// The grants' statements, and the Deny of bucket administration.
fn generated_statements(grants: &[Grant]) -> Vec<Statement> {
    let mut statements: Vec<Statement> = grants.iter().flat_map(grant_statements).collect();
    statements.push(administration_denied());
    statements
}

/// Why a user's `spec.policy` is not used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyRefusal {
    #[error("{0}")]
    Invalid(#[from] PolicyError),
    /// It would give the key more than its grants do.
    #[error("statement {statement}: {why}")]
    ExceedsGrants { statement: usize, why: String },
}

impl PolicyRefusal {
    /// The condition reason it is reported under.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyRefusal::Invalid(_) => "InvalidPolicy",
            PolicyRefusal::ExceedsGrants { .. } => "PolicyExceedsGrants",
        }
    }
}

/// The identity policy of a key: the grants' statements, the Deny of bucket
/// administration, and the statements of the user's inline policy — which must
/// only narrow: Deny statements, or Allow statements that stay within what the
/// grants give.
pub fn identity_policy(
    grants: &[Grant],
    inline: Option<&str>,
) -> Result<PolicyDocument, PolicyRefusal> {
    let mut statements = generated_statements(grants);
    if let Some(json) = inline {
        let extra = PolicyDocument::parse(json)?;
        for (i, statement) in extra.statements().enumerate() {
            if statement.effect == Effect::Allow {
                check_allow_within_grants(statement, grants)
                    .map_err(|why| PolicyRefusal::ExceedsGrants { statement: i, why })?;
            }
        }
        statements.extend(extra.statements().cloned());
    }
    Ok(PolicyDocument::new(statements))
}

/// The policy a key gets while the user's inline policy cannot be used: what the
/// grants give now, narrowed by the Deny statements the key's `previous` policy
/// had (a broken edit never lifts a restriction, nor keeps a revoked grant).
pub fn fail_closed_policy(grants: &[Grant], previous: Option<&str>) -> PolicyDocument {
    let mut statements = generated_statements(grants);
    let kept_denies: Vec<Statement> = previous
        .and_then(|text| PolicyDocument::parse(text).ok())
        .map(|doc| {
            doc.statements()
                .filter(|s| s.effect == Effect::Deny && !statements.contains(s))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    statements.extend(kept_denies);
    PolicyDocument::new(statements)
}

/// Where an ARN (possibly with wildcards) lies relative to one grant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Exactly the granted bucket.
    Bucket,
    /// Only objects inside the granted bucket and prefix.
    Objects,
}

/// The grants a resource pattern lies entirely inside, and how.
fn scopes_of<'g>(resource: &str, grants: &'g [Grant]) -> Vec<(&'g Grant, Scope)> {
    // What a pattern can match is bounded by its text before the first wildcard.
    let literal = resource
        .find(['*', '?'])
        .map_or(resource, |i| &resource[..i]);
    grants
        .iter()
        .filter_map(|grant| {
            let prefix = grant.prefix.as_deref().unwrap_or("");
            let objects = format!("arn:aws:s3:::{}/{prefix}", grant.bucket);
            if resource == bucket_arn(&grant.bucket) {
                Some((grant, Scope::Bucket))
            } else if literal.starts_with(&objects) {
                Some((grant, Scope::Objects))
            } else {
                None
            }
        })
        .collect()
}

/// Actions a grant allows on a resource of this scope, without conditions.
fn allowed_in(grant: &Grant, scope: Scope) -> Vec<&'static str> {
    let actions = mode_actions(grant.access);
    match scope {
        Scope::Objects => flatten(actions.objects),
        // A prefix grant lists only with its `s3:prefix` condition; an Allow
        // without it would list the whole bucket.
        Scope::Bucket if grant.prefix.as_deref().is_some_and(|p| !p.is_empty()) => {
            flatten(actions.bucket)
        }
        Scope::Bucket => {
            let mut all = flatten(actions.listing);
            all.extend(flatten(actions.bucket));
            all
        }
    }
}

/// An Allow statement is kept only when every action it can allow, on every
/// resource it names, is one the grants already allow there.
fn check_allow_within_grants(statement: &Statement, grants: &[Grant]) -> Result<(), String> {
    if statement.not_action.is_some() {
        return Err("an Allow with NotAction allows every action it does not name".to_owned());
    }
    if statement.not_resource.is_some() {
        return Err("an Allow with NotResource allows every resource it does not name".to_owned());
    }
    if statement.principal.is_some() || statement.not_principal.is_some() {
        return Err("an identity policy names no Principal".to_owned());
    }
    let actions: Vec<String> = statement
        .action
        .iter()
        .flat_map(|a| a.iter())
        .map(|a| a.to_ascii_lowercase())
        .collect();
    // An action outside the catalogue (another service's, a misspelt one, one
    // the server added later) cannot be checked against the grants: refused,
    // as the grants never give it.
    let known: Vec<String> = flatten(BUCKET_ACTIONS)
        .into_iter()
        .chain(flatten(OBJECT_ACTIONS))
        .map(str::to_ascii_lowercase)
        .collect();
    if let Some(unknown) = actions
        .iter()
        .find(|pattern| !known.iter().any(|action| glob_match(pattern, action)))
    {
        return Err(format!(
            "{unknown} names no S3 action the grants can give; extra statements may only narrow the grants"
        ));
    }
    for resource in statement.resource.iter().flat_map(|r| r.iter()) {
        let scopes = scopes_of(resource, grants);
        if scopes.is_empty() {
            return Err(format!(
                "resource {resource} is not inside a granted bucket and prefix; extra statements may only narrow the grants"
            ));
        }
        for kind in [Scope::Bucket, Scope::Objects] {
            let allowed: Vec<&str> = scopes
                .iter()
                .filter(|(_, scope)| *scope == kind)
                .flat_map(|(grant, scope)| allowed_in(grant, *scope))
                .collect();
            let catalogue = match kind {
                Scope::Bucket => flatten(BUCKET_ACTIONS),
                Scope::Objects => flatten(OBJECT_ACTIONS),
            };
            let applies = scopes.iter().any(|(_, scope)| *scope == kind);
            if !applies {
                continue;
            }
            for pattern in &actions {
                if let Some(beyond) = catalogue.iter().find(|action| {
                    glob_match(pattern, &action.to_ascii_lowercase()) && !allowed.contains(action)
                }) {
                    return Err(format!(
                        "{pattern} on {resource} would allow {beyond}, which the grants do not give there; extra statements may only narrow the grants"
                    ));
                }
            }
        }
    }
    Ok(())
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
    fn admin_grant_reads_settings_but_never_administers() {
        let policy = identity_policy(&[grant(AccessMode::Admin, None)], None).unwrap();
        assert_eq!(
            decide(&policy, "s3:GetBucketPolicy", "arn:aws:s3:::photos", None),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &policy,
                "s3:PutObjectRetention",
                "arn:aws:s3:::photos/a",
                None
            ),
            Decision::Allow
        );
        for action in BUCKET_ADMINISTRATION {
            assert_eq!(
                decide(&policy, action, "arn:aws:s3:::photos", None),
                Decision::Deny,
                "{action}"
            );
        }
        assert_eq!(
            decide(&policy, "s3:PutObjectAcl", "arn:aws:s3:::photos/a", None),
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
    fn inline_deny_narrows() {
        assert!(matches!(
            identity_policy(&[], Some("{not json")),
            Err(PolicyRefusal::Invalid(_))
        ));
        let policy = identity_policy(
            &[grant(AccessMode::ReadOnly, None)],
            Some(r#"{"Statement":[{"Effect":"Deny","NotAction":"s3:ListBucket","NotResource":"arn:aws:s3:::photos/public/*"}]}"#),
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
        assert_eq!(
            decide(
                &policy,
                "s3:GetObject",
                "arn:aws:s3:::photos/public/x",
                None
            ),
            Decision::Allow
        );
    }

    fn refused(grants: &[Grant], statement: &str) -> bool {
        let json = format!(r#"{{"Statement":[{statement}]}}"#);
        matches!(
            identity_policy(grants, Some(&json)),
            Err(PolicyRefusal::ExceedsGrants { .. })
        )
    }

    #[test]
    fn inline_allow_must_stay_within_the_grants() {
        let read = [grant(AccessMode::ReadOnly, None)];
        let prefixed = [grant(AccessMode::ReadWrite, Some("team/"))];
        // Restating what the grant gives, as AWS policies often do, is fine.
        assert!(!refused(
            &read,
            r#"{"Effect":"Allow","Action":["s3:ListBucket","s3:GetObject*"],"Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/*"]}"#
        ));
        assert!(!refused(
            &prefixed,
            r#"{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::photos/team/sub/*"}"#
        ));
        for widening in [
            r#"{"Effect":"Allow","Action":"s3:*","Resource":"*"}"#,
            r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}"#,
            r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos*"}"#,
            r#"{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::photos/*"}"#,
            r#"{"Effect":"Allow","Action":"s3:Put*","Resource":"arn:aws:s3:::photos"}"#,
            r#"{"Effect":"Allow","NotAction":"s3:DeleteObject","Resource":"arn:aws:s3:::photos/*"}"#,
            r#"{"Effect":"Allow","Action":"s3:GetObject","NotResource":"arn:aws:s3:::photos/*"}"#,
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}"#,
            // Found by the operator_policy fuzz target: actions the catalogue
            // did not know passed unchecked.
            r#"{"Effect":"Allow","Action":"s2:GetObject","Resource":"arn:aws:s3:::photos/*"}"#,
            r#"{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:s3:::photos/*"}"#,
            r#"{"Effect":"Allow","Action":"s3:GetBucketPublicAccessBlock","Resource":"arn:aws:s3:::photos"}"#,
            r#"{"Effect":"Allow","Action":"s3:Unsupported","Resource":"arn:aws:s3:::photos"}"#,
        ] {
            assert!(refused(&read, widening), "{widening}");
        }
        for widening in [
            r#"{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::photos/other/*"}"#,
            r#"{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::photos/te*"}"#,
            r#"{"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::photos"}"#,
            r#"{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::photos/team/*"}"#,
        ] {
            assert!(refused(&prefixed, widening), "{widening}");
        }
    }

    #[test]
    fn fail_closed_policy_keeps_previous_denies_and_drops_revoked_grants() {
        let previous = identity_policy(
            &[grant(AccessMode::ReadWrite, None), Grant {
                bucket: "shared".into(),
                access: AccessMode::ReadOnly,
                prefix: None,
            }],
            Some(r#"{"Statement":[{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::photos/keep/*"}]}"#),
        )
        .unwrap()
        .to_json();
        let now = fail_closed_policy(&[grant(AccessMode::ReadWrite, None)], Some(&previous));
        assert_eq!(
            decide(&now, "s3:DeleteObject", "arn:aws:s3:::photos/keep/x", None),
            Decision::Deny
        );
        assert_eq!(
            decide(&now, "s3:DeleteObject", "arn:aws:s3:::photos/x", None),
            Decision::Allow
        );
        assert_eq!(
            decide(&now, "s3:GetObject", "arn:aws:s3:::shared/x", None),
            Decision::NotApplicable
        );
        let denies = now
            .statements()
            .filter(|s| s.effect == Effect::Deny)
            .count();
        assert_eq!(denies, 2, "the generated Deny is not duplicated");
    }
}
