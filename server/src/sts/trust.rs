//! A role's trust policy: an IAM policy whose statements name who may assume
//! the role (`Principal: {"Federated": issuer}` for web identities, `{"AWS":
//! key}` for access keys) and conditions on the token's claims. Statements are
//! matched on their principal here, then evaluated by the IAM engine.

use crate::iam::{self, Decision, OneOrMany, PolicyDocument, Principal, RequestContext};

use super::oidc::issuer_host_path;

/// The account part of every ARN Coffer writes: one Coffer installation is one
/// account, so it is the fixed word `coffer` rather than a 12-digit number.
pub const ACCOUNT: &str = "coffer";

pub fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// The role name of `arn:aws:iam::<any account>:role/NAME` (paths allowed).
pub fn role_name_of(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (_, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    valid_role_name(name).then_some(name)
}

/// IAM's role name rules: 1..64 of `[A-Za-z0-9+=,.@_-]`.
pub fn valid_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Who is asking to assume the role.
pub enum Assumer<'a> {
    /// A verified web identity token of `issuer`.
    WebIdentity { issuer: &'a str },
    /// An access key (id).
    AccessKey { id: &'a str },
}

#[derive(Debug, thiserror::Error)]
#[error("invalid trust policy: {0}")]
pub struct TrustError(pub String);

/// Parses and validates a trust policy: every statement has an Action and a
/// Principal, and its conditions are ones the IAM engine knows.
pub fn parse(json: &str) -> Result<PolicyDocument, TrustError> {
    let doc: PolicyDocument = serde_json::from_str(json).map_err(|e| TrustError(e.to_string()))?;
    for (i, statement) in doc.statements().enumerate() {
        if statement.action.is_none() && statement.not_action.is_none() {
            return Err(TrustError(format!("statement {i} has no Action")));
        }
        if statement.principal.is_none() {
            return Err(TrustError(format!("statement {i} has no Principal")));
        }
    }
    for (i, statement) in doc.statements().enumerate() {
        let federated = statement
            .principal
            .as_ref()
            .is_some_and(|p| !principal_values(p, "Federated").is_empty());
        if federated && statement.effect == iam::Effect::Allow && !constrains_audience(statement) {
            return Err(TrustError(format!(
                "statement {i} trusts a web identity provider without a condition on its \
                 audience (<issuer>:aud): any token of that issuer would be accepted"
            )));
        }
    }
    // The engine validates versions and condition operators of identity
    // policies; a trust policy has no Resource, so give it one for that check.
    iam::PolicyDocument::parse(&as_identity_policy(&doc, |_: &Principal| true).to_json())
        .map_err(|e| TrustError(e.to_string()))?;
    Ok(doc)
}

/// Whether an Allow statement pins the token's audience: a `StringEquals` or
/// `StringLike` (possibly `ForAnyValue:`) on `<issuer>:aud`. Without it every
/// token the issuer signs for anyone (a Kubernetes API token, say) would do.
fn constrains_audience(statement: &iam::Statement) -> bool {
    statement.condition.as_ref().is_some_and(|block| {
        block.iter().any(|(operator, keys)| {
            let operator = operator.to_ascii_lowercase();
            let operator = operator.strip_prefix("foranyvalue:").unwrap_or(&operator);
            matches!(operator, "stringequals" | "stringlike")
                && keys
                    .keys()
                    .any(|k| k.to_ascii_lowercase().ends_with(":aud"))
        })
    })
}

/// The statements whose principal matches, without principal and on every
/// resource: what the IAM engine evaluates as an identity policy.
fn as_identity_policy(
    trust: &PolicyDocument,
    names: impl Fn(&Principal) -> bool,
) -> PolicyDocument {
    let statements = trust
        .statements()
        .filter(|s| s.principal.as_ref().is_some_and(&names))
        .map(|s| {
            let mut s = s.clone();
            s.principal = None;
            s.not_principal = None;
            s.resource = Some(OneOrMany::One("*".to_owned()));
            s.not_resource = None;
            s
        })
        .collect();
    let mut doc = PolicyDocument::new(statements);
    doc.version = trust.version.clone().or(doc.version);
    doc
}

fn principal_values<'a>(principal: &'a Principal, kind: &str) -> Vec<&'a str> {
    match principal {
        Principal::Wildcard(w) => vec![w.as_str()],
        Principal::Map(map) => map
            .get(kind)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default(),
    }
}

fn names(principal: &Principal, assumer: &Assumer<'_>) -> bool {
    match assumer {
        Assumer::WebIdentity { issuer } => {
            let host_path = issuer_host_path(issuer);
            principal_values(principal, "Federated").iter().any(|p| {
                *p == *issuer
                    || *p == host_path
                    || p.strip_prefix("arn:aws:iam::")
                        .and_then(|r| r.split_once(":oidc-provider/"))
                        .is_some_and(|(_, provider)| provider == host_path)
            })
        }
        Assumer::AccessKey { id } => principal_values(principal, "AWS").iter().any(|p| {
            *p == "*"
                || *p == *id
                || *p == format!("arn:aws:iam::{ACCOUNT}:user/{id}")
                || *p == format!("arn:aws:iam::{ACCOUNT}:root")
        }),
    }
}

/// Whether the trust policy lets `assumer` do `action` (`sts:AssumeRole...`)
/// on the role, with the request's claims in `context`. An explicit Deny wins.
pub fn allows(
    trust: &PolicyDocument,
    assumer: &Assumer<'_>,
    action: &str,
    role_arn: &str,
    context: &RequestContext,
) -> bool {
    let policy = as_identity_policy(trust, |p| names(p, assumer));
    let request = iam::Request {
        action,
        resource: role_arn,
        principal: None,
        context,
    };
    policy.evaluate(&request, false) == Decision::Allow
}

/// The trust policy the operator (and docs) write for Kubernetes
/// ServiceAccounts: exactly these subjects of `issuer`, with `audience`.
pub fn service_account_trust(issuer: &str, subjects: &[String], audience: &str) -> String {
    let host_path = issuer_host_path(issuer);
    let mut claims = serde_json::Map::new();
    claims.insert(format!("{host_path}:sub"), serde_json::json!(subjects));
    claims.insert(format!("{host_path}:aud"), serde_json::json!(audience));
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": issuer},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": claims}
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://kubernetes.default.svc";

    fn context(sub: &str, aud: &str) -> RequestContext {
        let mut ctx = RequestContext::default();
        ctx.insert("kubernetes.default.svc:sub", sub);
        ctx.insert("kubernetes.default.svc:aud", aud);
        ctx
    }

    #[test]
    fn service_account_trust_admits_only_its_subjects_and_audience() {
        let text = service_account_trust(
            ISSUER,
            &["system:serviceaccount:team-a:app".to_owned()],
            "sts.coffer.dev",
        );
        let trust = parse(&text).unwrap();
        let web = Assumer::WebIdentity { issuer: ISSUER };
        let arn = role_arn("r");
        let action = "sts:AssumeRoleWithWebIdentity";
        let ok = context("system:serviceaccount:team-a:app", "sts.coffer.dev");
        assert!(allows(&trust, &web, action, &arn, &ok));
        let other_sa = context("system:serviceaccount:team-a:other", "sts.coffer.dev");
        assert!(!allows(&trust, &web, action, &arn, &other_sa));
        let other_aud = context("system:serviceaccount:team-a:app", "other");
        assert!(!allows(&trust, &web, action, &arn, &other_aud));
        let other_issuer = Assumer::WebIdentity {
            issuer: "https://evil.example",
        };
        assert!(!allows(&trust, &other_issuer, action, &arn, &ok));
        let key = Assumer::AccessKey { id: "CFKAX" };
        assert!(!allows(&trust, &key, "sts:AssumeRole", &arn, &ok));
    }

    #[test]
    fn access_key_principals_match_by_id_or_user_arn() {
        let trust = parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
                "Principal":{"AWS":"arn:aws:iam::coffer:user/CFKA1"},"Action":"sts:AssumeRole"}]}"#,
        )
        .unwrap();
        let ctx = RequestContext::default();
        let arn = role_arn("r");
        let one = Assumer::AccessKey { id: "CFKA1" };
        let two = Assumer::AccessKey { id: "CFKA2" };
        assert!(allows(&trust, &one, "sts:AssumeRole", &arn, &ctx));
        assert!(!allows(&trust, &two, "sts:AssumeRole", &arn, &ctx));
        assert!(!allows(
            &trust,
            &one,
            "sts:AssumeRoleWithWebIdentity",
            &arn,
            &ctx
        ));
    }

    #[test]
    fn trust_without_principal_or_with_unknown_condition_is_refused() {
        assert!(parse(r#"{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole"}]}"#).is_err());
        assert!(parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole",
                "Condition":{"StringEqualz":{"a":"b"}}}]}"#
        )
        .is_err());
        // A web identity trust must pin the audience.
        assert!(
            parse(
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Federated":"https://i"},
                "Action":"sts:AssumeRoleWithWebIdentity",
                "Condition":{"StringEquals":{"i:sub":"s"}}}]}"#
            )
            .is_err()
        );
        assert!(
            parse(
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Federated":"https://i"},
                "Action":"sts:AssumeRoleWithWebIdentity",
                "Condition":{"StringEquals":{"i:sub":"s","i:aud":"a"}}}]}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn role_arns_round_trip() {
        assert_eq!(role_name_of(&role_arn("app-1")), Some("app-1"));
        assert_eq!(role_name_of("arn:aws:iam::123:role/path/x"), Some("x"));
        assert_eq!(role_name_of("arn:aws:iam::coffer:user/x"), None);
        assert!(!valid_role_name("a/b"));
    }
}
