//! Temporary credentials (STS sessions) on the request path: the session
//! behind an `ASIA...` key id, read through the key ring's TTL cache (so a
//! deleted role stops its sessions within `CACHE_TTL`), the session token the
//! request must carry, and the session policy that narrows the role's.

use std::sync::Arc;

use s3s::{S3Error, S3ErrorCode, S3Result};

use super::KeyRing;
use crate::iam::{Decision, PolicyDocument};
use crate::meta::{AccessKey, SESSION_KEY_PREFIX, StsSession, now_millis};

/// A session whose role still exists, as the request path uses it.
pub struct ActiveSession {
    pub session: StsSession,
    /// The session as an access key: its secret, and the role's policy.
    pub key: Arc<AccessKey>,
    /// What the session policy allows, when AssumeRole was given one.
    pub session_policy: Option<PolicyDocument>,
}

impl ActiveSession {
    /// `role` and `subject`, for log lines and GetCallerIdentity.
    pub fn role(&self) -> &str {
        &self.session.role
    }
}

/// Whether an access key id names temporary credentials.
pub fn is_session_key(id: &str) -> bool {
    id.starts_with(SESSION_KEY_PREFIX)
}

/// `ExpiredToken`, as S3 answers requests signed with expired credentials.
pub fn expired_token() -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("ExpiredToken".into()),
        "The provided token has expired.",
    );
    err.set_status_code(http::StatusCode::BAD_REQUEST);
    err
}

/// `InvalidToken`: the session token is missing or not the session's.
pub fn invalid_token() -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("InvalidToken".into()),
        "The provided token is malformed or otherwise invalid.",
    );
    err.set_status_code(http::StatusCode::BAD_REQUEST);
    err
}

/// The session token of a request: `x-amz-security-token`, or the presigned
/// `X-Amz-Security-Token` query parameter.
pub fn request_token(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    if let Some(token) = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
    {
        return Some(token.to_owned());
    }
    super::form_urlencoded_pairs(uri.query().unwrap_or(""))
        .find(|(name, _)| name == "X-Amz-Security-Token")
        .map(|(_, value)| value)
}

/// The role policy (as the key's identity policy) narrowed by the session
/// policy: both must allow, and a Deny in either wins.
pub fn narrow(identity: Decision, session: Option<Decision>) -> Decision {
    match (identity, session) {
        (decision, None) => decision,
        (Decision::Deny, _) | (_, Some(Decision::Deny)) => Decision::Deny,
        (Decision::Allow, Some(Decision::Allow)) => Decision::Allow,
        _ => Decision::NotApplicable,
    }
}

impl KeyRing {
    /// The session with this key id, expired or not; `None` when there is
    /// none or its role was deleted.
    pub async fn session(&self, id: &str) -> S3Result<Option<Arc<ActiveSession>>> {
        let load = async {
            let Some(session) = self
                .meta
                .get_session(id)
                .await
                .map_err(crate::s3::meta_error)?
            else {
                return Ok(None);
            };
            let Some(role) = self
                .meta
                .get_role(&session.role)
                .await
                .map_err(crate::s3::meta_error)?
            else {
                return Ok(None);
            };
            // Fail closed: a session policy that no longer parses must not
            // leave the session with the role's whole policy.
            let session_policy = match session.session_policy.as_deref() {
                None => None,
                Some(text) => match PolicyDocument::parse(text) {
                    Ok(policy) => Some(policy),
                    Err(e) => {
                        tracing::warn!(session = %session.id, error = %e, "session policy unreadable: session refused");
                        return Ok(None);
                    }
                },
            };
            let key = AccessKey {
                id: session.id.clone(),
                secret: session.secret.clone(),
                name: session.subject.clone(),
                owner: format!("sts:{}", session.role),
                policy: Some(role.policy),
                is_root: false,
                created_at: session.created_at,
                expires_at: Some(session.expires_at),
            };
            Ok(Some(Arc::new(ActiveSession {
                session,
                key: Arc::new(key),
                session_policy,
            })))
        };
        self.sessions.get_or_load(id, load).await
    }

    /// The key a session signs with, while it has not expired.
    pub(super) async fn session_key(&self, id: &str) -> S3Result<Option<Arc<AccessKey>>> {
        let session = self.session(id).await?;
        Ok(session
            .filter(|s| !s.session.is_expired_at(now_millis()))
            .map(|s| s.key.clone()))
    }
}
