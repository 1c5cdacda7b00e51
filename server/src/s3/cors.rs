//! CORS: Put/Get/DeleteBucketCors, and the rule matching the front door uses to
//! answer browser preflights (`OPTIONS`) and to add `Access-Control-*` headers to
//! actual requests. Rules are stored as the bucket's `cors` document in the JSON
//! shape the operator writes (`{"CORSRules": [...]}`).

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use super::{Coffer, meta_error};
use crate::meta::{MetaResult, MetaStore};

/// The configuration kind under which CORS rules are stored.
pub const CORS: &str = "cors";

/// S3 accepts at most 100 rules per bucket.
const MAX_RULES: usize = 100;
const METHODS: &[&str] = &["GET", "PUT", "HEAD", "POST", "DELETE"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsConfiguration {
    #[serde(rename = "CORSRules", default)]
    pub rules: Vec<CorsRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "AllowedOrigins", default)]
    pub allowed_origins: Vec<String>,
    #[serde(rename = "AllowedMethods", default)]
    pub allowed_methods: Vec<String>,
    #[serde(
        rename = "AllowedHeaders",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allowed_headers: Vec<String>,
    #[serde(
        rename = "ExposeHeaders",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expose_headers: Vec<String>,
    #[serde(
        rename = "MaxAgeSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age_seconds: Option<i32>,
}

/// `pattern` with at most one `*` matching any run of characters.
fn wildcard_match(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (pattern, value) = if ignore_case {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), value.to_owned())
    };
    match pattern.split_once('*') {
        None => pattern == value,
        Some((prefix, suffix)) => {
            value.len() >= prefix.len() + suffix.len()
                && value.starts_with(prefix)
                && value.ends_with(suffix)
        }
    }
}

impl CorsRule {
    fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| wildcard_match(o, origin, false))
    }

    fn allows_method(&self, method: &str) -> bool {
        self.allowed_methods.iter().any(|m| m == method)
    }

    fn allows_header(&self, header: &str) -> bool {
        self.allowed_headers
            .iter()
            .any(|h| wildcard_match(h, header, true))
    }

    /// The `Access-Control-Allow-Origin` value: `*` for a rule open to every
    /// origin, otherwise the requesting origin.
    fn allow_origin<'a>(&self, origin: &'a str) -> &'a str {
        if self.allowed_origins.iter().any(|o| o == "*") {
            "*"
        } else {
            origin
        }
    }

    fn validate(&self) -> S3Result<()> {
        if self.allowed_origins.is_empty() || self.allowed_methods.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "Each CORSRule needs at least one AllowedOrigin and one AllowedMethod"
            ));
        }
        if let Some(method) = self
            .allowed_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(s3_error!(
                InvalidRequest,
                "Found unsupported HTTP method in CORS config. Unsupported method is {method}"
            ));
        }
        let many_wildcards = |list: &[String]| list.iter().any(|p| p.matches('*').count() > 1);
        if many_wildcards(&self.allowed_origins) || many_wildcards(&self.allowed_headers) {
            return Err(s3_error!(
                InvalidRequest,
                "AllowedOrigin and AllowedHeader can have at most one * wildcard"
            ));
        }
        Ok(())
    }
}

impl CorsConfiguration {
    /// The first rule that allows `origin`, `method` and every requested header.
    pub fn find(&self, origin: &str, method: &str, headers: &[String]) -> Option<&CorsRule> {
        self.rules.iter().find(|r| {
            r.allows_origin(origin)
                && r.allows_method(method)
                && headers.iter().all(|h| r.allows_header(h))
        })
    }
}

/// The bucket's CORS rules, when it has any. A stored document that no longer
/// parses allows nothing.
pub async fn bucket_cors(meta: &MetaStore, bucket: &str) -> MetaResult<Option<CorsConfiguration>> {
    let Some(text) = meta.get_bucket_config(bucket, CORS).await? else {
        return Ok(None);
    };
    match serde_json::from_str(&text) {
        Ok(config) => Ok(Some(config)),
        Err(e) => {
            tracing::warn!(bucket, error = %e, "ignoring invalid stored CORS configuration");
            Ok(None)
        }
    }
}

/// A response to a preflight: status and headers (no body beyond an error).
pub struct Preflight {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// S3 error code and message when refused.
    pub error: Option<(&'static str, &'static str)>,
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Answers `OPTIONS` for a bucket from its rules: 200 with the allowed origin,
/// methods and headers, or 403 when no rule matches (or the bucket has none).
pub async fn preflight(meta: &MetaStore, bucket: &str, request: &HeaderMap) -> Preflight {
    let refuse = |code, message| Preflight {
        status: StatusCode::FORBIDDEN,
        headers: HeaderMap::new(),
        error: Some((code, message)),
    };
    let text = |name| {
        request
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let (Some(origin), Some(method)) = (
        text(http::header::ORIGIN),
        text(http::header::ACCESS_CONTROL_REQUEST_METHOD),
    ) else {
        return Preflight {
            status: StatusCode::BAD_REQUEST,
            headers: HeaderMap::new(),
            error: Some((
                "BadRequest",
                "Insufficient information. Origin and Access-Control-Request-Method are required.",
            )),
        };
    };
    let requested: Vec<String> = text(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        .map(|h| {
            h.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let config = match bucket_cors(meta, bucket).await {
        Ok(Some(config)) => config,
        Ok(None) => {
            return refuse(
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
            );
        }
        Err(e) => {
            tracing::error!(bucket, error = %e, "reading CORS configuration failed");
            return Preflight {
                status: StatusCode::SERVICE_UNAVAILABLE,
                headers: HeaderMap::new(),
                error: Some(("ServiceUnavailable", "Please retry.")),
            };
        }
    };
    let Some(rule) = config.find(origin, method, &requested) else {
        return refuse(
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        );
    };
    let mut headers = HeaderMap::new();
    add_rule_headers(&mut headers, rule, origin);
    if !requested.is_empty() {
        insert(
            &mut headers,
            "access-control-allow-headers",
            &requested.join(", "),
        );
    }
    Preflight {
        status: StatusCode::OK,
        headers,
        error: None,
    }
}

fn add_rule_headers(headers: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    let allow_origin = rule.allow_origin(origin);
    insert(headers, "access-control-allow-origin", allow_origin);
    insert(
        headers,
        "access-control-allow-methods",
        &rule.allowed_methods.join(", "),
    );
    if allow_origin != "*" {
        insert(headers, "access-control-allow-credentials", "true");
    }
    if !rule.expose_headers.is_empty() {
        insert(
            headers,
            "access-control-expose-headers",
            &rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        insert(headers, "access-control-max-age", &age.to_string());
    }
    insert(
        headers,
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
}

/// The `Access-Control-*` headers for an actual request from `origin` with
/// `method`, when a rule of the bucket allows it.
pub async fn actual_request_headers(
    meta: &MetaStore,
    bucket: &str,
    origin: &str,
    method: &Method,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(Some(config)) = bucket_cors(meta, bucket).await
        && let Some(rule) = config.find(origin, method.as_str(), &[])
    {
        add_rule_headers(&mut headers, rule, origin);
    }
    headers
}

fn from_dto(config: CORSConfiguration) -> S3Result<CorsConfiguration> {
    if config.cors_rules.is_empty() || config.cors_rules.len() > MAX_RULES {
        return Err(s3_error!(
            MalformedXML,
            "A CORS configuration has 1 to {MAX_RULES} rules"
        ));
    }
    let rules = config
        .cors_rules
        .into_iter()
        .map(|r| CorsRule {
            id: r.id,
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: r.allowed_headers.unwrap_or_default(),
            expose_headers: r.expose_headers.unwrap_or_default(),
            max_age_seconds: r.max_age_seconds,
        })
        .collect::<Vec<_>>();
    for rule in &rules {
        rule.validate()?;
    }
    Ok(CorsConfiguration { rules })
}

fn to_dto(config: CorsConfiguration) -> Vec<CORSRule> {
    config
        .rules
        .into_iter()
        .map(|r| CORSRule {
            id: r.id,
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: (!r.allowed_headers.is_empty()).then_some(r.allowed_headers),
            expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
            max_age_seconds: r.max_age_seconds,
        })
        .collect()
}

pub async fn put_bucket_cors(
    s3: &Coffer,
    req: S3Request<PutBucketCorsInput>,
) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let input = req.input;
    let config = from_dto(input.cors_configuration)?;
    let text = serde_json::to_string(&config).map_err(|_| s3_error!(InternalError))?;
    s3.meta
        .set_bucket_config(&input.bucket, CORS, Some(&text))
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(PutBucketCorsOutput::default()))
}

pub async fn get_bucket_cors(
    s3: &Coffer,
    req: S3Request<GetBucketCorsInput>,
) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let bucket = &req.input.bucket;
    s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    match bucket_cors(&s3.meta, bucket).await.map_err(meta_error)? {
        Some(config) => Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(to_dto(config)),
        })),
        None => Err(s3_error!(
            NoSuchCORSConfiguration,
            "The CORS configuration does not exist"
        )),
    }
}

pub async fn delete_bucket_cors(
    s3: &Coffer,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    s3.meta
        .set_bucket_config(&req.input.bucket, CORS, None)
        .await
        .map_err(meta_error)?;
    let mut response = S3Response::new(DeleteBucketCorsOutput::default());
    response.status = Some(StatusCode::NO_CONTENT);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            allowed_headers: headers.iter().map(|s| (*s).to_owned()).collect(),
            ..CorsRule::default()
        }
    }

    #[test]
    fn rules_match_origin_wildcards_methods_and_headers() {
        let config = CorsConfiguration {
            rules: vec![
                rule(&["https://*.example.com"], &["GET"], &["x-amz-*"]),
                rule(&["*"], &["HEAD"], &[]),
            ],
        };
        let headers = vec!["X-Amz-Date".to_owned()];
        assert!(
            config
                .find("https://app.example.com", "GET", &headers)
                .is_some()
        );
        assert!(config.find("https://app.example.org", "GET", &[]).is_none());
        assert!(config.find("https://app.example.com", "PUT", &[]).is_none());
        let other = vec!["content-type".to_owned()];
        assert!(
            config
                .find("https://app.example.com", "GET", &other)
                .is_none()
        );
        let any = config.find("http://anywhere", "HEAD", &[]).unwrap();
        assert_eq!(any.allow_origin("http://anywhere"), "*");
    }
}
