//! Whether a bucket policy is "public" as S3 defines it (GetBucketPolicyStatus,
//! BlockPublicPolicy, RestrictPublicBuckets): some Allow statement grants to
//! everyone without pinning the caller down to fixed values.

use super::document::{Effect, PolicyDocument, Principal, Statement};

/// Condition keys that, held to fixed values, make a statement non-public.
const PINNING_KEYS: &[&str] = &[
    "aws:sourceip",
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:sourceaccount",
    "aws:principalaccount",
    "aws:principalorgid",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "aws:userid",
];

/// Operators that hold a key to the values they list (not negations, not
/// `...IfExists`, which lets a request without the key through).
const PINNING_OPERATORS: &[&str] = &[
    "stringequals",
    "stringequalsignorecase",
    "stringlike",
    "arnequals",
    "arnlike",
    "ipaddress",
];

impl PolicyDocument {
    pub fn is_public(&self) -> bool {
        self.statements().any(Statement::is_public)
    }
}

impl Statement {
    fn is_public(&self) -> bool {
        if self.effect != Effect::Allow {
            return false;
        }
        let everyone = match (&self.principal, &self.not_principal) {
            (Some(p), _) => names_everyone(p),
            // "Everyone but these" is as public as "everyone".
            (None, Some(_)) => true,
            (None, None) => false,
        };
        everyone && !self.pinned_by_condition()
    }

    fn pinned_by_condition(&self) -> bool {
        let Some(block) = &self.condition else {
            return false;
        };
        block.iter().any(|(operator, keys)| {
            PINNING_OPERATORS.contains(&operator.to_ascii_lowercase().as_str())
                && keys.iter().any(|(key, values)| {
                    let key = key.to_ascii_lowercase();
                    PINNING_KEYS.contains(&key.as_str())
                        && values.iter().all(|v| fixed_value(&key, v))
                })
        })
    }
}

fn names_everyone(principal: &Principal) -> bool {
    match principal {
        Principal::Wildcard(w) => w == "*",
        Principal::Map(map) => map
            .values()
            .any(|ids| ids.iter().any(|id| id.contains('*'))),
    }
}

/// A value without wildcards or policy variables; for `aws:SourceIp` a CIDR
/// narrower than everything (AWS counts /0 as public); for `aws:userid` not
/// the `AROLEID:*` pattern.
fn fixed_value(key: &str, value: &serde_json::Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    if text.contains('*') || text.contains('?') || text.contains("${") || text.is_empty() {
        return false;
    }
    if key == "aws:sourceip" {
        let prefix = text
            .split_once('/')
            .and_then(|(_, bits)| bits.parse::<u8>().ok());
        return prefix != Some(0);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(json: &str) -> bool {
        PolicyDocument::parse(json).unwrap().is_public()
    }

    #[test]
    fn wildcard_principals_are_public_unless_pinned() {
        assert!(public(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#
        ));
        assert!(public(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":"s3:GetObject","Resource":"*"}]}"#
        ));
        assert!(!public(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["AKID1"]},"Action":"s3:GetObject","Resource":"*"}]}"#
        ));
        assert!(!public(
            r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}]}"#
        ));
        assert!(!public(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*",
                "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#
        ));
        assert!(public(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*",
                "Condition":{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}}]}"#
        ));
        assert!(public(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*",
                "Condition":{"StringLike":{"aws:SourceArn":"arn:aws:*"}}}]}"#
        ));
        assert!(public(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*",
                "Condition":{"StringEquals":{"aws:UserAgent":"curl"}}}]}"#
        ));
    }
}
