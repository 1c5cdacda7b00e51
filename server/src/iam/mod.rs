//! IAM policy documents and their evaluation: identity policies of access keys and
//! bucket policies, with the AWS rules — an explicit Deny wins, otherwise some
//! statement must Allow. Free of HTTP so the operator can build policies with it.

mod condition;
mod document;
mod public;

pub use self::condition::RequestContext;
pub use self::document::{Effect, OneOrMany, PolicyDocument, PolicyError, Principal, Statement};

/// Outcome of evaluating one or more policies for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No statement applied.
    NotApplicable,
    Allow,
    /// An explicit Deny: nothing overrides it.
    Deny,
}

impl Decision {
    /// Combines two decisions: Deny wins over Allow, Allow over not-applicable.
    pub fn and(self, other: Decision) -> Decision {
        match (self, other) {
            (Decision::Deny, _) | (_, Decision::Deny) => Decision::Deny,
            (Decision::Allow, _) | (_, Decision::Allow) => Decision::Allow,
            _ => Decision::NotApplicable,
        }
    }
}

/// What is being attempted: `s3:GetObject` on `arn:aws:s3:::bucket/key`, by whom.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub action: &'a str,
    pub resource: &'a str,
    /// Access key id of the caller; `None` for anonymous requests.
    pub principal: Option<&'a str>,
    pub context: &'a RequestContext,
}

/// The ARN of a bucket, or of an object when `key` is given.
pub fn resource_arn(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("arn:aws:s3:::{bucket}/{key}"),
        None => format!("arn:aws:s3:::{bucket}"),
    }
}

/// Glob match with `*` (any run) and `?` (one character), as IAM uses for
/// actions and resources.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, vi));
            pi += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            vi = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl PolicyDocument {
    /// Evaluates this policy alone. `check_principal` is true for bucket policies
    /// (whose statements name principals) and false for identity policies.
    pub fn evaluate(&self, request: &Request<'_>, check_principal: bool) -> Decision {
        let mut decision = Decision::NotApplicable;
        for statement in self.statements() {
            if !statement.applies(request, check_principal) {
                continue;
            }
            match statement.effect {
                Effect::Deny => return Decision::Deny,
                Effect::Allow => decision = Decision::Allow,
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(action: &'a str, resource: &'a str, ctx: &'a RequestContext) -> Request<'a> {
        Request {
            action,
            resource,
            principal: Some("AKID"),
            context: ctx,
        }
    }

    #[test]
    fn glob_matches_stars_and_question_marks() {
        assert!(glob_match("s3:*", "s3:GetObject"));
        assert!(glob_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b/c"));
        assert!(glob_match("arn:aws:s3:::b/?", "arn:aws:s3:::b/x"));
        assert!(!glob_match("arn:aws:s3:::b/?", "arn:aws:s3:::b/xy"));
        assert!(!glob_match("arn:aws:s3:::b", "arn:aws:s3:::bb"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
    }

    #[test]
    fn explicit_deny_overrides_allow() {
        let policy = PolicyDocument::parse(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Action":"s3:*","Resource":"*"},
                {"Effect":"Deny","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::b/keep/*"}]}"#,
        )
        .unwrap();
        let ctx = RequestContext::default();
        assert_eq!(
            policy.evaluate(
                &request("s3:DeleteObject", "arn:aws:s3:::b/keep/x", &ctx),
                false
            ),
            Decision::Deny
        );
        assert_eq!(
            policy.evaluate(
                &request("s3:DeleteObject", "arn:aws:s3:::b/other", &ctx),
                false
            ),
            Decision::Allow
        );
    }

    #[test]
    fn not_action_and_not_resource_invert_the_match() {
        let policy = PolicyDocument::parse(
            r#"{"Statement":{"Effect":"Allow","NotAction":"s3:Delete*","NotResource":"arn:aws:s3:::secret/*"}}"#,
        )
        .unwrap();
        let ctx = RequestContext::default();
        assert_eq!(
            policy.evaluate(&request("s3:GetObject", "arn:aws:s3:::b/x", &ctx), false),
            Decision::Allow
        );
        assert_eq!(
            policy.evaluate(&request("s3:DeleteObject", "arn:aws:s3:::b/x", &ctx), false),
            Decision::NotApplicable
        );
        assert_eq!(
            policy.evaluate(
                &request("s3:GetObject", "arn:aws:s3:::secret/x", &ctx),
                false
            ),
            Decision::NotApplicable
        );
    }

    #[test]
    fn actions_match_case_insensitively() {
        let policy = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"S3:getobject","Resource":"*"}]}"#,
        )
        .unwrap();
        let ctx = RequestContext::default();
        assert_eq!(
            policy.evaluate(&request("s3:GetObject", "arn:aws:s3:::b/x", &ctx), false),
            Decision::Allow
        );
    }

    #[test]
    fn only_policies_that_mention_a_condition_key_say_so() {
        let tagged = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*",
                "Condition":{"StringEquals":{"S3:existingObjectTag/class":"public"}}}]}"#,
        )
        .unwrap();
        assert!(tagged.mentions_condition_key("s3:ExistingObjectTag/"));
        let plain = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*",
                "Condition":{"StringEquals":{"s3:RequestObjectTag/class":"public"}}}]}"#,
        )
        .unwrap();
        assert!(!plain.mentions_condition_key("s3:ExistingObjectTag/"));
    }

    #[test]
    fn bucket_policy_principal_must_match() {
        let policy = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["OTHER"]},"Action":"s3:GetObject","Resource":"*"}]}"#,
        )
        .unwrap();
        let ctx = RequestContext::default();
        let req = request("s3:GetObject", "arn:aws:s3:::b/x", &ctx);
        assert_eq!(policy.evaluate(&req, true), Decision::NotApplicable);
        let anonymous = Request {
            principal: None,
            ..req
        };
        assert_eq!(policy.evaluate(&anonymous, true), Decision::NotApplicable);
        let public = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}]}"#,
        )
        .unwrap();
        assert_eq!(public.evaluate(&anonymous, true), Decision::Allow);
    }
}
