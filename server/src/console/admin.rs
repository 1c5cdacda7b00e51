//! Who may administer from the console: the root key, or a key whose own
//! identity policy allows an administrative action. Delegation is explicit and
//! bounded: a delegated administrator creates keys only from the templates, and
//! only for buckets its policy names for `iam:CreateAccessKey` — so the keys it
//! makes reach no further than the root key (who wrote its policy) let it hand
//! out. Policy JSON for new keys, and the root key itself, stay root's.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Console;
use super::api::{ApiError, ApiResult};
use super::session::Session;
use crate::iam::{Decision, PolicyDocument, Request};

/// See the access keys (ids, names, owners, policies, last use; never secrets).
pub const LIST_KEYS: &str = "iam:ListAccessKeys";
/// Create a key from a template; the resource is each bucket the template names.
pub const CREATE_KEY: &str = "iam:CreateAccessKey";
/// Delete a key; the resource is the key's ARN ([`key_arn`]).
pub const DELETE_KEY: &str = "iam:DeleteAccessKey";
/// See the cluster view and the server's metrics.
pub const VIEW_CLUSTER: &str = "coffer:GetClusterStatus";
/// Set or remove a bucket's quota; the resource is the bucket's ARN.
pub const SET_QUOTA: &str = "coffer:PutBucketQuota";

/// The ARN naming an access key in administrative policies.
pub fn key_arn(id: &str) -> String {
    format!("arn:aws:iam::coffer:user/{id}")
}

/// Every key, for actions on keys in general.
const ALL_KEYS: &str = "arn:aws:iam::coffer:user/*";

/// The cluster, for the cluster view.
pub const CLUSTER_ARN: &str = "arn:coffer:::cluster";

/// What a session's key may administer: root everything; another key what its
/// identity policy allows (an explicit Deny wins; conditions see the current
/// time and the transport). Loaded once per request.
pub struct Permissions {
    root: bool,
    policy: Option<PolicyDocument>,
    key_id: String,
    context: crate::iam::RequestContext,
}

impl Permissions {
    pub async fn of(console: &Console, session: &Session) -> ApiResult<Self> {
        let policy = if session.is_root {
            None
        } else {
            console
                .meta
                .get_access_key(&session.key_id)
                .await
                .map_err(ApiError::internal)?
                .and_then(|k| k.policy)
                // A stored policy was validated when it was set; one that no
                // longer parses grants nothing.
                .and_then(|text| PolicyDocument::parse(&text).ok())
        };
        let secure = if console.secure_cookies {
            "true"
        } else {
            "false"
        };
        Ok(Self {
            root: session.is_root,
            policy,
            key_id: session.key_id.clone(),
            context: crate::auth::request_context_of(
                &http::Uri::default(),
                &http::HeaderMap::new(),
                secure,
                None,
            ),
        })
    }

    pub fn allows(&self, action: &str, resource: &str) -> bool {
        if self.root {
            return true;
        }
        let Some(policy) = &self.policy else {
            return false;
        };
        let request = Request {
            action,
            resource,
            principal: Some(&self.key_id),
            context: &self.context,
        };
        policy.evaluate(&request, false) == Decision::Allow
    }
}

/// Whether the session's key may do `action` on `resource` (see [`Permissions`]).
pub async fn allowed(
    console: &Console,
    session: &Session,
    action: &str,
    resource: &str,
) -> ApiResult<bool> {
    Ok(Permissions::of(console, session)
        .await?
        .allows(action, resource))
}

/// Refuses with `403 AccessDenied` unless [`allowed`].
pub async fn require(
    console: &Console,
    session: &Session,
    action: &str,
    resource: &str,
) -> ApiResult<()> {
    if allowed(console, session, action, resource).await? {
        return Ok(());
    }
    Err(denied(action, resource))
}

fn denied(action: &str, resource: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        format!("This needs the root key, or a key whose policy allows {action} on {resource}."),
    )
}

/// Requires listing keys (the keys page).
pub async fn require_list_keys(console: &Console, session: &Session) -> ApiResult<()> {
    require(console, session, LIST_KEYS, ALL_KEYS).await
}

/// Requires the cluster view.
pub async fn require_cluster(console: &Console, session: &Session) -> ApiResult<()> {
    require(console, session, VIEW_CLUSTER, CLUSTER_ARN).await
}

/// Requires creating keys for each of `buckets`; policy JSON is root's alone.
pub async fn require_create_key(
    console: &Console,
    session: &Session,
    from_json: bool,
    buckets: &[String],
) -> ApiResult<()> {
    if from_json && !session.is_root {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Only the root key creates a key from policy JSON; use a template.",
        ));
    }
    let permissions = Permissions::of(console, session).await?;
    for bucket in buckets {
        // A wildcard would be matched as a literal by the check below, and
        // could reach buckets an explicit Deny keeps from this administrator.
        let exact = bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !session.is_root && !exact {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidBucketName",
                format!("{bucket:?}: name buckets exactly, without wildcards."),
            ));
        }
        let arn = crate::iam::resource_arn(bucket, None);
        if !permissions.allows(CREATE_KEY, &arn) {
            return Err(denied(CREATE_KEY, &arn));
        }
    }
    Ok(())
}

/// What the session may administer, for the page to show or hide.
pub async fn capabilities(console: &Console, session: &Session) -> ApiResult<Value> {
    let permissions = Permissions::of(console, session).await?;
    Ok(json!({
        "keys": permissions.allows(LIST_KEYS, ALL_KEYS),
        "cluster": permissions.allows(VIEW_CLUSTER, CLUSTER_ARN),
    }))
}
