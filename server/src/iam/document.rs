//! The IAM policy document format (JSON), parsed and validated at the edge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::condition::{self, ConditionBlock};
use super::{Request, glob_match};

/// A JSON value that may be one item or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    // Many first: an untagged `One(serde_json::Value)` would swallow arrays.
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            OneOrMany::One(item) => std::slice::from_ref(item).iter(),
            OneOrMany::Many(items) => items.iter(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// `"*"` or `{"AWS": ...}` (also accepted: `CanonicalUser`, `Service`, never matching).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Principal {
    Wildcard(String),
    Map(BTreeMap<String, OneOrMany<String>>),
}

impl Principal {
    pub fn everyone() -> Self {
        Principal::Wildcard("*".to_owned())
    }

    /// Whether the caller (access key id, or `None` when anonymous) is named.
    fn matches(&self, caller: Option<&str>) -> bool {
        match self {
            Principal::Wildcard(w) => w == "*",
            Principal::Map(map) => map.get("AWS").is_some_and(|ids| {
                ids.iter().any(|id| {
                    id == "*"
                        || caller.is_some_and(|c| {
                            // Accept a bare key id or an ARN ending in `/<key id>`.
                            id == c || id.rsplit_once('/').is_some_and(|(_, tail)| tail == c)
                        })
                })
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "Sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(rename = "Effect")]
    pub effect: Effect,
    #[serde(rename = "Principal", default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    #[serde(
        rename = "NotPrincipal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_principal: Option<Principal>,
    #[serde(rename = "Action", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<OneOrMany<String>>,
    #[serde(rename = "NotAction", default, skip_serializing_if = "Option::is_none")]
    pub not_action: Option<OneOrMany<String>>,
    #[serde(rename = "Resource", default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<OneOrMany<String>>,
    #[serde(
        rename = "NotResource",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_resource: Option<OneOrMany<String>>,
    #[serde(rename = "Condition", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionBlock>,
}

impl Statement {
    /// An Allow (or Deny) of `actions` on `resources`, without conditions.
    pub fn new(effect: Effect, actions: &[&str], resources: Vec<String>) -> Self {
        Statement {
            sid: None,
            effect,
            principal: None,
            not_principal: None,
            action: Some(OneOrMany::Many(
                actions.iter().map(|a| (*a).to_owned()).collect(),
            )),
            not_action: None,
            resource: Some(OneOrMany::Many(resources)),
            not_resource: None,
            condition: None,
        }
    }

    pub(super) fn applies(&self, request: &Request<'_>, check_principal: bool) -> bool {
        if check_principal {
            let named = match (&self.principal, &self.not_principal) {
                (Some(p), _) => p.matches(request.principal),
                (None, Some(np)) => !np.matches(request.principal),
                (None, None) => false,
            };
            if !named {
                return false;
            }
        }
        let action = request.action.to_ascii_lowercase();
        let action_matches = |patterns: &OneOrMany<String>| {
            patterns
                .iter()
                .any(|p| glob_match(&p.to_ascii_lowercase(), &action))
        };
        let action_ok = match (&self.action, &self.not_action) {
            (Some(a), _) => action_matches(a),
            (None, Some(na)) => !action_matches(na),
            (None, None) => false,
        };
        if !action_ok {
            return false;
        }
        let resource_matches =
            |patterns: &OneOrMany<String>| patterns.iter().any(|p| glob_match(p, request.resource));
        let resource_ok = match (&self.resource, &self.not_resource) {
            (Some(r), _) => resource_matches(r),
            (None, Some(nr)) => !resource_matches(nr),
            (None, None) => false,
        };
        resource_ok
            && self
                .condition
                .as_ref()
                .is_none_or(|block| condition::evaluate(block, request.context))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    #[serde(rename = "Version", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(rename = "Id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "Statement")]
    pub statement: OneOrMany<Statement>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is not valid JSON of the IAM policy grammar: {0}")]
    Malformed(String),
    #[error("policy version {0:?} is not supported (use 2012-10-17)")]
    UnsupportedVersion(String),
    #[error("statement {0} has neither Action nor NotAction")]
    MissingAction(usize),
    #[error("statement {0} has neither Resource nor NotResource")]
    MissingResource(usize),
    #[error("statement {0} has no Principal, which a bucket policy requires")]
    MissingPrincipal(usize),
    #[error("statement {0}: {1}")]
    InvalidCondition(usize, String),
}

impl PolicyDocument {
    pub fn new(statements: Vec<Statement>) -> Self {
        PolicyDocument {
            version: Some("2012-10-17".to_owned()),
            id: None,
            statement: OneOrMany::Many(statements),
        }
    }

    /// Parses and validates an identity policy.
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        let doc: PolicyDocument =
            serde_json::from_str(json).map_err(|e| PolicyError::Malformed(e.to_string()))?;
        if let Some(v) = &doc.version
            && v != "2012-10-17"
            && v != "2008-10-17"
        {
            return Err(PolicyError::UnsupportedVersion(v.clone()));
        }
        for (i, s) in doc.statements().enumerate() {
            if s.action.is_none() && s.not_action.is_none() {
                return Err(PolicyError::MissingAction(i));
            }
            if s.resource.is_none() && s.not_resource.is_none() {
                return Err(PolicyError::MissingResource(i));
            }
            if let Some(block) = &s.condition {
                condition::validate(block).map_err(|e| PolicyError::InvalidCondition(i, e))?;
            }
        }
        Ok(doc)
    }

    /// Parses and validates a bucket policy: every statement names a principal.
    pub fn parse_bucket_policy(json: &str) -> Result<Self, PolicyError> {
        let doc = Self::parse(json)?;
        for (i, s) in doc.statements().enumerate() {
            if s.principal.is_none() && s.not_principal.is_none() {
                return Err(PolicyError::MissingPrincipal(i));
            }
        }
        Ok(doc)
    }

    /// Whether some statement conditions on a key starting with `prefix`
    /// (case-insensitive), so callers fetch costly condition values only when
    /// a policy can look at them.
    pub fn mentions_condition_key(&self, prefix: &str) -> bool {
        let prefix = prefix.to_ascii_lowercase();
        self.statements().any(|s| {
            s.condition.as_ref().is_some_and(|block| {
                block
                    .values()
                    .flat_map(|keys| keys.keys())
                    .any(|key| key.to_ascii_lowercase().starts_with(&prefix))
            })
        })
    }

    pub fn statements(&self) -> std::slice::Iter<'_, Statement> {
        self.statement.iter()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
