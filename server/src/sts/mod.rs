//! STS on the S3 listener: form-encoded `POST /` with `Action=...` (as AWS STS
//! and MinIO accept) for AssumeRoleWithWebIdentity, AssumeRole and
//! GetCallerIdentity. Issued credentials are sessions in the metadata store
//! (`meta/roles.rs`), so they survive restarts and work on every node.

pub mod oidc;
mod response;
pub mod sigv4;
pub mod trust;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use http::header;
use http_body_util::BodyExt;

use self::oidc::{Issuers, TokenError};
use self::response::{
    AssumeRoleResult, AssumeRoleWithWebIdentityResult, AssumedRoleUser, Credentials,
    GetCallerIdentityResult, StsError,
};
use self::trust::{ACCOUNT, Assumer};
use crate::auth::KeyRing;
use crate::auth::session::is_session_key;
use crate::iam::{PolicyDocument, RequestContext};
use crate::meta::{AccessKey, MetaStore, NewSession, Role, StsSession, now_millis};

pub use self::oidc::{IssuerConfig, JwksFetch, JwksSource};

/// Largest STS request body (a 20,000-character token and a session policy fit).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest session policy, as on AWS.
const MAX_SESSION_POLICY_LEN: usize = 2048;
/// Default `DurationSeconds`.
const DEFAULT_DURATION_SECS: i64 = 3600;
/// A role's `max_session_seconds` when none is given, and the largest allowed.
pub const DEFAULT_MAX_SESSION_SECS: i64 = 3600;
pub const MAX_MAX_SESSION_SECS: i64 = 43_200;

/// STS settings of a server.
#[derive(Debug, Clone)]
pub struct StsConfig {
    /// Trusted OIDC issuers (`--oidc-issuer` with `--oidc-jwks`).
    pub issuers: Vec<IssuerConfig>,
    pub jwks_fetch: JwksFetch,
    /// How often the issuers' keys are re-read.
    pub jwks_refresh: Duration,
    /// Shortest `DurationSeconds` (AWS: 900; a test knob).
    pub min_session_seconds: i64,
}

impl Default for StsConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            jwks_fetch: JwksFetch::default(),
            jwks_refresh: Duration::from_secs(300),
            min_session_seconds: 900,
        }
    }
}

/// The STS endpoint.
pub struct Sts {
    meta: MetaStore,
    keyring: Arc<KeyRing>,
    issuers: Arc<Issuers>,
    min_session_seconds: i64,
}

/// Whether a request is for STS: `POST /` with a form body. S3 has no
/// operation of that shape (browser uploads are `multipart/form-data`).
pub fn is_sts_request(request: &Request) -> bool {
    request.method() == http::Method::POST
        && request.uri().path() == "/"
        && request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            })
}

/// Who signed an STS request.
enum Signer {
    Key(Arc<AccessKey>),
    Session(Arc<crate::auth::session::ActiveSession>),
}

impl Sts {
    pub fn new(meta: MetaStore, keyring: Arc<KeyRing>, config: &StsConfig) -> Arc<Self> {
        Arc::new(Self {
            meta,
            keyring,
            issuers: Issuers::new(
                config.issuers.clone(),
                config.jwks_fetch.clone(),
                config.jwks_refresh,
            ),
            min_session_seconds: config.min_session_seconds.max(1),
        })
    }

    /// Serves one STS request.
    pub async fn serve(&self, request: Request) -> Response {
        let request_id = format!("{:016X}", rand::random::<u64>());
        match self.dispatch(request, &request_id).await {
            Ok((action, response)) => {
                tracing::debug!(action, "sts request served");
                response
            }
            Err(err) => {
                tracing::info!(code = err.code, status = %err.status, "sts request refused");
                response::error(&err, &request_id)
            }
        }
    }

    async fn dispatch(
        &self,
        request: Request,
        request_id: &str,
    ) -> Result<(&'static str, Response), StsError> {
        let (parts, body) = request.into_parts();
        let body = http_body_util::Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|_| {
                StsError::validation(format!("The request body exceeds {MAX_BODY_BYTES} bytes."))
            })?
            .to_bytes();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|_| StsError::validation("The request body is not a valid form."))?;
        let form: HashMap<String, String> = pairs.into_iter().collect();
        if form.get("Version").is_some_and(|v| v != "2011-06-15") {
            return Err(StsError::validation("Version must be 2011-06-15."));
        }
        let action = form.get("Action").map(String::as_str).unwrap_or("");
        let (name, xml) = match action {
            "AssumeRoleWithWebIdentity" => (
                "AssumeRoleWithWebIdentity",
                self.assume_role_with_web_identity(&form, request_id)
                    .await?,
            ),
            "AssumeRole" => {
                let signer = self.authenticate(&parts, &body).await?;
                (
                    "AssumeRole",
                    self.assume_role(&form, signer, request_id).await?,
                )
            }
            "GetCallerIdentity" => {
                let signer = self.authenticate(&parts, &body).await?;
                ("GetCallerIdentity", caller_identity(&signer, request_id))
            }
            other => {
                return Err(StsError::invalid_action(format!(
                    "Could not find operation {other:?} for version 2011-06-15"
                )));
            }
        };
        Ok((name, xml))
    }

    /// Checks a SigV4 signature made with an access key or temporary credentials.
    async fn authenticate(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<Signer, StsError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(StsError::missing_authentication)?;
        let authorization =
            sigv4::Authorization::parse(header).map_err(|e| StsError::signature(e.to_string()))?;
        let id = authorization.access_key_id.as_str();
        let (signer, secret) = if is_session_key(id) {
            let active = self
                .keyring
                .session(id)
                .await?
                .ok_or_else(StsError::invalid_client_token_id)?;
            if active.session.is_expired_at(now_millis()) {
                return Err(StsError::expired_credentials());
            }
            let token = parts
                .headers
                .get("x-amz-security-token")
                .and_then(|v| v.to_str().ok());
            if !token.is_some_and(|t| active.session.token_matches(t)) {
                return Err(StsError::invalid_client_token_id());
            }
            let secret = active.key.secret.clone();
            (Signer::Session(active), secret)
        } else {
            let key = self
                .keyring
                .access_key(id)
                .await?
                .ok_or_else(StsError::invalid_client_token_id)?;
            let secret = key.secret.clone();
            (Signer::Key(key), secret)
        };
        authorization
            .verify(parts, body, &secret, time::OffsetDateTime::now_utc())
            .map_err(|e| StsError::signature(e.to_string()))?;
        Ok(signer)
    }

    async fn assume_role_with_web_identity(
        &self,
        form: &HashMap<String, String>,
        request_id: &str,
    ) -> Result<Response, StsError> {
        let request = AssumeRequest::parse(form)?;
        let token = required(form, "WebIdentityToken")?;
        if token.len() > oidc::MAX_TOKEN_LEN {
            return Err(StsError::validation(
                "WebIdentityToken must be at most 20000 characters.",
            ));
        }
        let now = now_millis() / 1000;
        let verified = self.issuers.verify(token, now).await.map_err(|e| match e {
            TokenError::Invalid(m) => StsError::invalid_identity_token(m),
            TokenError::Expired { .. } => StsError::expired_identity_token(e.to_string()),
            TokenError::RejectedClaim(m) => StsError::idp_rejected_claim(m),
        })?;
        let denied =
            || StsError::access_denied("Not authorized to perform sts:AssumeRoleWithWebIdentity");
        let role = self.role(&request.role_name).await?.ok_or_else(denied)?;
        let trust_policy = trust::parse(&role.trust).map_err(|_| denied())?;
        let host_path = oidc::issuer_host_path(&verified.issuer);
        let mut context = RequestContext::default();
        context.insert(&format!("{host_path}:sub"), verified.subject.clone());
        for aud in &verified.audiences {
            context.insert(&format!("{host_path}:aud"), aud.clone());
        }
        context.insert(&format!("{host_path}:iss"), verified.issuer.clone());
        context.insert("aws:FederatedProvider", verified.issuer.clone());
        let assumer = Assumer::WebIdentity {
            issuer: &verified.issuer,
        };
        let arn = trust::role_arn(&role.name);
        if !trust::allows(
            &trust_policy,
            &assumer,
            "sts:AssumeRoleWithWebIdentity",
            &arn,
            &context,
        ) {
            tracing::info!(
                role = %role.name,
                subject = %verified.subject,
                issuer = %verified.issuer,
                "web identity refused by the role's trust policy"
            );
            return Err(denied());
        }
        let (session, token) = self
            .issue(&role, &request, &verified.subject, &verified.issuer)
            .await?;
        tracing::info!(role = %role.name, subject = %verified.subject, session = %session.id, "issued temporary credentials for a web identity");
        let result = AssumeRoleWithWebIdentityResult {
            assumed_role_user: assumed_role_user(&session),
            credentials: credentials(&session, token),
            subject_from_web_identity_token: verified.subject,
            provider: verified.issuer,
            audience: verified.audiences.join(","),
        };
        Ok(response::success(
            "AssumeRoleWithWebIdentity",
            &result,
            request_id,
        ))
    }

    async fn assume_role(
        &self,
        form: &HashMap<String, String>,
        signer: Signer,
        request_id: &str,
    ) -> Result<Response, StsError> {
        let request = AssumeRequest::parse(form)?;
        let denied = || StsError::access_denied("Not authorized to perform sts:AssumeRole");
        let Signer::Key(key) = signer else {
            // Role chaining is not offered: temporary credentials cannot assume roles.
            return Err(StsError::access_denied(
                "Temporary credentials cannot assume a role",
            ));
        };
        let role = self.role(&request.role_name).await?.ok_or_else(denied)?;
        let arn = trust::role_arn(&role.name);
        let context = RequestContext::default();
        // The key's own policy must allow sts:AssumeRole on the role (root may)...
        let identity_allows = key.is_root
            || key
                .policy
                .as_deref()
                .and_then(|p| PolicyDocument::parse(p).ok())
                .is_some_and(|p| {
                    let request = crate::iam::Request {
                        action: "sts:AssumeRole",
                        resource: &arn,
                        principal: Some(&key.id),
                        context: &context,
                    };
                    p.evaluate(&request, false) == crate::iam::Decision::Allow
                });
        // ...and the role's trust must name it (or the account).
        let trusted = trust::parse(&role.trust).is_ok_and(|t| {
            trust::allows(
                &t,
                &Assumer::AccessKey { id: &key.id },
                "sts:AssumeRole",
                &arn,
                &context,
            )
        });
        if !identity_allows || !trusted {
            return Err(denied());
        }
        let (session, token) = self.issue(&role, &request, &key.id, "access-key").await?;
        tracing::info!(role = %role.name, subject = %key.id, session = %session.id, "issued temporary credentials for an access key");
        let result = AssumeRoleResult {
            assumed_role_user: assumed_role_user(&session),
            credentials: credentials(&session, token),
        };
        Ok(response::success("AssumeRole", &result, request_id))
    }

    async fn role(&self, name: &str) -> Result<Option<Role>, StsError> {
        Ok(self.meta.get_role(name).await?)
    }

    /// Records a session of `role` for `subject`, lasting the duration asked for.
    async fn issue(
        &self,
        role: &Role,
        request: &AssumeRequest,
        subject: &str,
        source: &str,
    ) -> Result<(StsSession, String), StsError> {
        let max = role.max_session_seconds.max(self.min_session_seconds);
        let duration = request
            .duration_seconds
            .unwrap_or(DEFAULT_DURATION_SECS.min(max));
        if duration < self.min_session_seconds || duration > max {
            return Err(StsError::validation(format!(
                "DurationSeconds must be between {} and {max} for this role.",
                self.min_session_seconds
            )));
        }
        let new = NewSession {
            role: role.name.clone(),
            subject: subject.to_owned(),
            source: source.to_owned(),
            session_name: request.session_name.clone(),
            session_policy: request.policy.clone(),
            expires_at: now_millis() + duration * 1000,
        };
        Ok(self.meta.create_session(&new).await?)
    }
}

/// The parameters AssumeRole and AssumeRoleWithWebIdentity share.
struct AssumeRequest {
    role_name: String,
    session_name: String,
    duration_seconds: Option<i64>,
    policy: Option<String>,
}

impl AssumeRequest {
    fn parse(form: &HashMap<String, String>) -> Result<Self, StsError> {
        let arn = required(form, "RoleArn")?;
        let role_name = trust::role_name_of(arn)
            .ok_or_else(|| StsError::validation(format!("{arn:?} is not a role ARN.")))?
            .to_owned();
        let session_name = required(form, "RoleSessionName")?;
        let valid_name = (2..=64).contains(&session_name.len())
            && session_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        if !valid_name {
            return Err(StsError::validation(
                "RoleSessionName must be 2 to 64 characters of [\\w+=,.@-].",
            ));
        }
        let duration_seconds = form
            .get("DurationSeconds")
            .map(|d| {
                d.parse::<i64>()
                    .map_err(|_| StsError::validation("DurationSeconds must be a number."))
            })
            .transpose()?;
        let policy = match form.get("Policy").filter(|p| !p.is_empty()) {
            Some(policy) if policy.len() > MAX_SESSION_POLICY_LEN => {
                return Err(StsError::packed_policy_too_large(format!(
                    "The session policy exceeds {MAX_SESSION_POLICY_LEN} characters."
                )));
            }
            Some(policy) => {
                PolicyDocument::parse(policy)
                    .map_err(|e| StsError::malformed_policy(e.to_string()))?;
                Some(policy.clone())
            }
            None => None,
        };
        Ok(Self {
            role_name,
            session_name: session_name.to_owned(),
            duration_seconds,
            policy,
        })
    }
}

fn required<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, StsError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| StsError::validation(format!("{name} is required.")))
}

fn iso8601(ms: i64) -> String {
    let at = crate::meta::millis_to_datetime(ms - ms.rem_euclid(1000));
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn credentials(session: &StsSession, token: String) -> Credentials {
    Credentials {
        access_key_id: session.id.clone(),
        secret_access_key: session.secret.clone(),
        session_token: token,
        expiration: iso8601(session.expires_at),
    }
}

fn assumed_role_arn(session: &StsSession) -> String {
    format!(
        "arn:aws:sts::{ACCOUNT}:assumed-role/{}/{}",
        session.role, session.session_name
    )
}

fn assumed_role_user(session: &StsSession) -> AssumedRoleUser {
    AssumedRoleUser {
        arn: assumed_role_arn(session),
        assumed_role_id: format!("{}:{}", session.role, session.session_name),
    }
}

/// GetCallerIdentity: for a session, its role and its subject (the audit
/// answer to "who is this?"); for an access key, the key.
fn caller_identity(signer: &Signer, request_id: &str) -> Response {
    let result = match signer {
        Signer::Session(active) => GetCallerIdentityResult {
            arn: assumed_role_arn(&active.session),
            user_id: format!("{}:{}", active.session.role, active.session.subject),
            account: ACCOUNT.to_owned(),
        },
        Signer::Key(key) => GetCallerIdentityResult {
            arn: if key.is_root {
                format!("arn:aws:iam::{ACCOUNT}:root")
            } else {
                format!("arn:aws:iam::{ACCOUNT}:user/{}", key.id)
            },
            user_id: key.id.clone(),
            account: ACCOUNT.to_owned(),
        },
    };
    response::success("GetCallerIdentity", &result, request_id)
}
