//! Who may name, adopt and share which buckets: the tenancy rules a platform
//! administrator sets with operator flags, and the bucket-name space each
//! namespace owns (see "Tenancy" in docs/operator.md).

use std::fmt;

use coffer_server::iam::glob_match;

use crate::crd::AccessMode;

/// What an administrator allows beyond the defaults. The default (`Tenancy::default()`)
/// is strict: a namespace names buckets only inside its own name space, adopts
/// only buckets retained from itself, and nothing of unknown origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenancy {
    /// Namespaces whose Buckets may adopt a bucket of unknown origin (one no
    /// Kubernetes resource ever owned: made with the CLI, or through the S3 API).
    pub adopt_unowned: Vec<NamespacePattern>,
    /// Namespaces whose Buckets may adopt buckets retained from another namespace.
    pub adopt_retained: Vec<RetainedAdoption>,
    /// Bucket names a namespace may claim with `spec.bucketName` beyond its own
    /// name space.
    pub bucket_names: Vec<NameClaim>,
}

/// A namespace, or `*` for every namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePattern(String);

impl NamespacePattern {
    pub fn matches(&self, namespace: &str) -> bool {
        self.0 == "*" || self.0 == namespace
    }
}

/// `TO=FROM`: Buckets in namespace `TO` may adopt buckets retained from `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedAdoption {
    pub to: NamespacePattern,
    pub from: NamespacePattern,
}

/// `NAMESPACE=GLOB`: Buckets in `NAMESPACE` may claim names matching `GLOB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameClaim {
    pub namespace: NamespacePattern,
    pub glob: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(String);

fn is_namespace_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| edge(*b) || *b == b'-')
        && bytes.first().copied().is_some_and(edge)
        && bytes.last().copied().is_some_and(edge)
}

impl std::str::FromStr for NamespacePattern {
    type Err = RuleError;
    fn from_str(text: &str) -> Result<Self, RuleError> {
        let text = text.trim();
        if text == "*" || is_namespace_name(text) {
            Ok(NamespacePattern(text.to_owned()))
        } else {
            Err(RuleError(format!(
                "{text:?} is neither a namespace name nor `*`"
            )))
        }
    }
}

impl std::str::FromStr for RetainedAdoption {
    type Err = RuleError;
    fn from_str(text: &str) -> Result<Self, RuleError> {
        let (to, from) = text
            .split_once('=')
            .ok_or_else(|| RuleError(format!("{text:?} is not TO_NAMESPACE=FROM_NAMESPACE")))?;
        Ok(RetainedAdoption {
            to: to.parse()?,
            from: from.parse()?,
        })
    }
}

impl std::str::FromStr for NameClaim {
    type Err = RuleError;
    fn from_str(text: &str) -> Result<Self, RuleError> {
        let (namespace, glob) = text
            .split_once('=')
            .ok_or_else(|| RuleError(format!("{text:?} is not NAMESPACE=GLOB")))?;
        let glob = glob.trim();
        let glob_chars = |b: u8| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'*' | b'?')
        };
        if glob.is_empty() || !glob.bytes().all(glob_chars) {
            return Err(RuleError(format!(
                "{glob:?} is not a bucket-name glob (lower-case letters, digits, '.', '-', '*', '?')"
            )));
        }
        Ok(NameClaim {
            namespace: namespace.parse()?,
            glob: glob.to_owned(),
        })
    }
}

impl fmt::Display for NamespacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a bucket in the store belongs to, read from its recorded owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketOrigin<'a> {
    /// `k8s:<namespace>/<name>`: a live Bucket resource.
    Managed { namespace: &'a str, name: &'a str },
    /// `retained:k8s:<namespace>/<name>`: its resource was deleted with `Retain`.
    Retained { namespace: &'a str, name: &'a str },
    /// Anything else: the CLI, the S3 API (the creating key's id), an operator
    /// of another cluster.
    Unknown,
}

impl<'a> BucketOrigin<'a> {
    pub fn of(owner: &'a str) -> Self {
        let resource = |rest: &'a str| rest.split_once('/');
        if let Some(rest) = owner.strip_prefix("retained:k8s:")
            && let Some((namespace, name)) = resource(rest)
        {
            return BucketOrigin::Retained { namespace, name };
        }
        if let Some(rest) = owner.strip_prefix("k8s:")
            && let Some((namespace, name)) = resource(rest)
        {
            return BucketOrigin::Managed { namespace, name };
        }
        BucketOrigin::Unknown
    }

    /// The namespace the bucket belongs (or belonged) to, if a Kubernetes one.
    pub fn namespace(&self) -> Option<&'a str> {
        match self {
            BucketOrigin::Managed { namespace, .. } | BucketOrigin::Retained { namespace, .. } => {
                Some(namespace)
            }
            BucketOrigin::Unknown => None,
        }
    }
}

/// The default S3 name of Bucket `namespace/name`: `<namespace>.<name>`. Namespace
/// names cannot contain a dot, so the first dot tells where the namespace ends and
/// two resources never map to one name.
pub fn default_bucket_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// The name `<namespace>-<name>` earlier versions chose; Buckets that own a
/// bucket of that name keep it.
pub fn legacy_bucket_name(namespace: &str, name: &str) -> String {
    format!("{namespace}-{name}")
}

impl Tenancy {
    /// Whether a Bucket in `namespace` may create a bucket called `bucket`: its own
    /// name space (`<namespace>` and `<namespace>.*`), or what an administrator
    /// allows it.
    pub fn may_claim_name(&self, namespace: &str, bucket: &str) -> bool {
        let own = bucket == namespace
            || bucket
                .strip_prefix(namespace)
                .is_some_and(|rest| rest.starts_with('.'));
        own || self
            .bucket_names
            .iter()
            .any(|c| c.namespace.matches(namespace) && glob_match(&c.glob, bucket))
    }

    /// Whether a Bucket in `namespace` may adopt (with `adopt: true`) a bucket of
    /// this origin. A bucket managed by a live resource is never adoptable.
    pub fn may_adopt(&self, namespace: &str, origin: &BucketOrigin<'_>) -> bool {
        match origin {
            BucketOrigin::Managed { .. } => false,
            BucketOrigin::Retained {
                namespace: from, ..
            } => {
                *from == namespace
                    || self
                        .adopt_retained
                        .iter()
                        .any(|r| r.to.matches(namespace) && r.from.matches(from))
            }
            BucketOrigin::Unknown => self.adopt_unowned.iter().any(|p| p.matches(namespace)),
        }
    }
}

impl AccessMode {
    /// Whether a share of `self` at most allows a grant of `requested`:
    /// `ReadWrite` covers `ReadOnly` and `WriteOnly`, `Admin` covers all.
    pub fn covers(self, requested: AccessMode) -> bool {
        use AccessMode::*;
        self == requested
            || self == Admin
            || (self == ReadWrite && matches!(requested, ReadOnly | WriteOnly))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenancy(unowned: &[&str], retained: &[&str], names: &[&str]) -> Tenancy {
        Tenancy {
            adopt_unowned: unowned.iter().map(|s| s.parse().unwrap()).collect(),
            adopt_retained: retained.iter().map(|s| s.parse().unwrap()).collect(),
            bucket_names: names.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn default_names_of_different_resources_never_collide() {
        assert_ne!(
            default_bucket_name("team", "a-docs"),
            default_bucket_name("team-a", "docs")
        );
        assert_eq!(legacy_bucket_name("team", "a-docs"), "team-a-docs");
    }

    #[test]
    fn a_namespace_claims_only_its_own_name_space_unless_allowed() {
        let strict = Tenancy::default();
        assert!(strict.may_claim_name("team-a", "team-a"));
        assert!(strict.may_claim_name("team-a", "team-a.docs"));
        assert!(!strict.may_claim_name("team", "team-a.docs"));
        assert!(!strict.may_claim_name("team", "team-a-docs"));
        assert!(!strict.may_claim_name("team-a", "team-ab.docs"));
        let allowed = tenancy(&[], &[], &["legacy=legacy-*", "*=shared-?"]);
        assert!(allowed.may_claim_name("legacy", "legacy-data"));
        assert!(!allowed.may_claim_name("other", "legacy-data"));
        assert!(allowed.may_claim_name("other", "shared-1"));
    }

    #[test]
    fn adoption_follows_origin_and_administrator_consent() {
        let strict = Tenancy::default();
        let retained = BucketOrigin::of("retained:k8s:team-a/photos");
        assert_eq!(retained.namespace(), Some("team-a"));
        assert!(strict.may_adopt("team-a", &retained));
        assert!(!strict.may_adopt("team-b", &retained));
        assert!(!strict.may_adopt("team-a", &BucketOrigin::of("CFKAKEYID")));
        assert!(!strict.may_adopt("team-a", &BucketOrigin::of("k8s:team-a/other")));
        assert_eq!(BucketOrigin::of("retained:cli"), BucketOrigin::Unknown);
        let consent = tenancy(&["legacy"], &["team-b=team-a"], &[]);
        assert!(consent.may_adopt("team-b", &retained));
        assert!(!consent.may_adopt("team-c", &retained));
        assert!(consent.may_adopt("legacy", &BucketOrigin::of("cli")));
        assert!(!consent.may_adopt("team-b", &BucketOrigin::of("cli")));
        assert!("team-b".parse::<RetainedAdoption>().is_err());
        assert!("Team=x".parse::<NameClaim>().is_err());
        assert!("a=B*".parse::<NameClaim>().is_err());
    }

    #[test]
    fn share_modes_cover_weaker_modes_only() {
        use AccessMode::*;
        assert!(ReadWrite.covers(ReadOnly) && ReadWrite.covers(WriteOnly));
        assert!(!ReadOnly.covers(WriteOnly) && !WriteOnly.covers(ReadOnly));
        assert!(!ReadWrite.covers(Admin) && Admin.covers(ReadWrite));
    }
}
