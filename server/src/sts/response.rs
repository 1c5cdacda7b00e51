//! STS responses and errors in the XML shapes the AWS SDKs parse
//! (`<ActionResponse><ActionResult>...</ActionResult><ResponseMetadata>`,
//! `<ErrorResponse><Error><Type><Code><Message></Error><RequestId>`).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// An STS error: HTTP status, STS error code, message.
#[derive(Debug)]
pub struct StsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl StsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid_identity_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidIdentityToken", message)
    }

    pub fn expired_identity_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ExpiredTokenException", message)
    }

    pub fn idp_rejected_claim(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "IDPRejectedClaim", message)
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    pub fn malformed_policy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MalformedPolicyDocument", message)
    }

    pub fn packed_policy_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "PackedPolicyTooLarge", message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }

    pub fn invalid_action(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidAction", message)
    }

    pub fn missing_authentication() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
    }

    pub fn invalid_client_token_id() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    }

    pub fn signature(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", message)
    }

    pub fn expired_credentials() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ExpiredToken",
            "The security token included in the request is expired",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "We encountered an internal error. Please try again.",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The metadata store is unavailable; please retry.",
        )
    }
}

impl From<crate::meta::MetaError> for StsError {
    fn from(err: crate::meta::MetaError) -> Self {
        if err.is_unavailable() {
            tracing::error!(error = %err, "metadata store unavailable");
            StsError::unavailable()
        } else {
            tracing::error!(error = %err, "metadata store error");
            StsError::internal()
        }
    }
}

impl From<s3s::S3Error> for StsError {
    fn from(err: s3s::S3Error) -> Self {
        match err.status_code() {
            Some(StatusCode::SERVICE_UNAVAILABLE) => StsError::unavailable(),
            _ => StsError::internal(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody<'a> {
    r#type: &'a str,
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'a str,
    #[serde(rename = "Error")]
    error: ErrorBody<'a>,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// ISO 8601, UTC.
    pub expiration: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssumedRoleUser {
    pub arn: String,
    pub assumed_role_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssumeRoleWithWebIdentityResult {
    pub credentials: Credentials,
    pub subject_from_web_identity_token: String,
    pub assumed_role_user: AssumedRoleUser,
    pub provider: String,
    pub audience: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssumeRoleResult {
    pub credentials: Credentials,
    pub assumed_role_user: AssumedRoleUser,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCallerIdentityResult {
    pub arn: String,
    pub user_id: String,
    pub account: String,
}

/// `<{action}Response xmlns=...><{action}Result>...</...><ResponseMetadata>`.
pub fn success<T: Serialize>(action: &str, result: &T, request_id: &str) -> Response {
    match quick_xml::se::to_string_with_root(&format!("{action}Result"), result) {
        // `action` is one of ours and the request id is hex: nothing to escape.
        Ok(result) => xml_response(
            StatusCode::OK,
            format!(
                "<{action}Response xmlns=\"{XMLNS}\">{result}<ResponseMetadata>\
                 <RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, action, "cannot serialize an STS response");
            error(&StsError::internal(), request_id)
        }
    }
}

pub fn error(err: &StsError, request_id: &str) -> Response {
    let body = ErrorResponse {
        xmlns: XMLNS,
        error: ErrorBody {
            r#type: if err.status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            },
            code: err.code,
            message: &err.message,
        },
        request_id,
    };
    let xml = quick_xml::se::to_string_with_root("ErrorResponse", &body).unwrap_or_default();
    xml_response(err.status, xml)
}

fn xml_response(status: StatusCode, xml: String) -> Response {
    let mut response = Response::new(Body::from(xml));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}
