//! Coffer's own bucket sub-resource `?coffer-data-protection`: how a bucket's
//! new objects are stored (whole copies or erasure-coded shards). S3 has no
//! such operation, so s3s cannot route it; it is a custom route s3s calls after
//! verifying the request's signature, authorized here like any bucket setting.

use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode, Uri};
use s3s::route::S3Route;
use s3s::{Body, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use super::meta_error;
use crate::auth::{Authorizer, KeyRing};
use crate::meta::{DATA_PROTECTION, DataProtection, MetaStore};

/// The query parameter naming the sub-resource.
pub const SUBRESOURCE: &str = "coffer-data-protection";
/// Configuration documents are a few hundred bytes.
const MAX_BODY: usize = 64 << 10;

/// The XML document: `<DataProtection><Scheme>erasure</Scheme><DataShards>4
/// </DataShards><ParityShards>2</ParityShards></DataProtection>`, or
/// `<Scheme>replicas</Scheme>`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename = "DataProtection")]
struct Document {
    #[serde(rename = "Scheme")]
    scheme: String,
    #[serde(rename = "DataShards", skip_serializing_if = "Option::is_none")]
    data_shards: Option<usize>,
    #[serde(rename = "ParityShards", skip_serializing_if = "Option::is_none")]
    parity_shards: Option<usize>,
}

impl Document {
    fn of(setting: DataProtection) -> Self {
        match setting {
            DataProtection::Replicas => Self {
                scheme: "replicas".to_owned(),
                data_shards: None,
                parity_shards: None,
            },
            DataProtection::Erasure {
                data_shards,
                parity_shards,
            } => Self {
                scheme: "erasure".to_owned(),
                data_shards: Some(data_shards),
                parity_shards: Some(parity_shards),
            },
        }
    }

    fn setting(&self) -> S3Result<DataProtection> {
        let setting = match self.scheme.trim().to_ascii_lowercase().as_str() {
            "replicas" => DataProtection::Replicas,
            "erasure" => match (self.data_shards, self.parity_shards) {
                (Some(data_shards), Some(parity_shards)) => DataProtection::Erasure {
                    data_shards,
                    parity_shards,
                },
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Scheme erasure needs DataShards and ParityShards"
                    ));
                }
            },
            other => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Scheme must be replicas or erasure, not {other:?}"
                ));
            }
        };
        setting
            .validate()
            .map_err(|message| s3_error!(InvalidArgument, "{message}"))
    }
}

/// The custom route for `PUT`, `GET` and `DELETE /<bucket>?coffer-data-protection`.
pub struct DataProtectionRoute {
    meta: MetaStore,
    keyring: Arc<KeyRing>,
    authorizer: Authorizer,
    /// `--domain`: buckets may be named by the host (virtual-hosted style).
    domain: Option<Arc<s3s::host::SingleDomain>>,
}

impl DataProtectionRoute {
    pub fn new(
        meta: MetaStore,
        keyring: Arc<KeyRing>,
        allow_sigv2: bool,
        domain: Option<Arc<s3s::host::SingleDomain>>,
    ) -> Self {
        Self {
            meta,
            authorizer: Authorizer::new(keyring.clone(), allow_sigv2),
            keyring,
            domain,
        }
    }

    /// The bucket a request addresses, as s3s would decide it.
    fn bucket_of(&self, uri: &Uri, headers: &HeaderMap) -> Option<String> {
        use s3s::host::S3Host as _;
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.host());
        if let (Some(parser), Some(host)) = (&self.domain, host)
            && host.parse::<std::net::SocketAddr>().is_err()
            && host.parse::<std::net::IpAddr>().is_err()
            && let Ok(virtual_host) = parser.parse_host_header(host)
            && let Some(bucket) = virtual_host.bucket()
        {
            return Some(bucket.to_owned());
        }
        let path = uri.path().trim_start_matches('/');
        let bucket = path.strip_suffix('/').unwrap_or(path);
        (!bucket.is_empty() && !bucket.contains('/')).then(|| bucket.to_owned())
    }
}

/// Whether the query names the sub-resource (`?coffer-data-protection`, with or
/// without a value).
fn names_subresource(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some(SUBRESOURCE))
    })
}

/// The operation (for the audit log) and IAM action of a method.
fn operation_of(method: &Method) -> Option<(&'static str, &'static str)> {
    let operation = match *method {
        Method::GET | Method::HEAD => "GetBucketDataProtection",
        Method::PUT => "PutBucketDataProtection",
        Method::DELETE => "DeleteBucketDataProtection",
        _ => return None,
    };
    Some((operation, crate::auth::action_for(operation)))
}

#[async_trait::async_trait]
impl S3Route for DataProtectionRoute {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        _extensions: &mut http::Extensions,
    ) -> bool {
        names_subresource(uri)
            && operation_of(method).is_some()
            && self.bucket_of(uri, headers).is_some()
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let bucket = self
            .bucket_of(&req.uri, &req.headers)
            .ok_or_else(|| s3_error!(InvalidRequest, "No bucket named"))?;
        let operation = operation_of(&req.method)
            .ok_or_else(|| s3_error!(MethodNotAllowed, "Method not allowed"))?;
        self.authorizer
            .authorize_route(req, operation, &bucket)
            .await
    }

    async fn call(&self, mut req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let bucket = self
            .bucket_of(&req.uri, &req.headers)
            .ok_or_else(|| s3_error!(InvalidRequest, "No bucket named"))?;
        match req.method {
            Method::GET | Method::HEAD => self.get(&bucket).await,
            Method::PUT => {
                let body = req
                    .input
                    .store_all_limited(MAX_BODY)
                    .await
                    .map_err(|_| malformed())?;
                self.put(&bucket, &body).await
            }
            Method::DELETE => self.delete(&bucket).await,
            _ => Err(s3_error!(MethodNotAllowed, "Method not allowed")),
        }
    }
}

fn malformed() -> S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

/// GET of a bucket without the setting (it uses the cluster default).
fn not_configured() -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("NoSuchDataProtectionConfiguration".into()),
        "The bucket has no data protection configuration; it uses the cluster default",
    );
    err.set_status_code(StatusCode::NOT_FOUND);
    err
}

impl DataProtectionRoute {
    async fn get(&self, bucket: &str) -> S3Result<S3Response<Body>> {
        let settings = self
            .meta
            .bucket_with_configs(bucket, &[DATA_PROTECTION])
            .await
            .map_err(meta_error)?;
        let setting = settings.data_protection().ok_or_else(not_configured)?;
        let xml = quick_xml::se::to_string(&Document::of(setting))
            .map_err(|e| s3_error!(InternalError, "{e}"))?;
        let mut response = S3Response::new(Body::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}"
        )));
        response.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/xml"),
        );
        Ok(response)
    }

    async fn put(&self, bucket: &str, body: &[u8]) -> S3Result<S3Response<Body>> {
        let text = std::str::from_utf8(body).map_err(|_| malformed())?;
        let document: Document = quick_xml::de::from_str(text).map_err(|_| malformed())?;
        let setting = document.setting()?;
        self.meta
            .set_bucket_config(bucket, DATA_PROTECTION, Some(&setting.to_document()))
            .await
            .map_err(meta_error)?;
        self.keyring.forget_bucket_write_settings(bucket);
        tracing::info!(bucket, %setting, "bucket data protection set");
        Ok(S3Response::new(Body::empty()))
    }

    async fn delete(&self, bucket: &str) -> S3Result<S3Response<Body>> {
        self.meta
            .set_bucket_config(bucket, DATA_PROTECTION, None)
            .await
            .map_err(meta_error)?;
        self.keyring.forget_bucket_write_settings(bucket);
        tracing::info!(
            bucket,
            "bucket data protection reset to the cluster default"
        );
        let mut response = S3Response::new(Body::empty());
        response.status = Some(StatusCode::NO_CONTENT);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_parse_into_settings() {
        let ec: Document = quick_xml::de::from_str(
            "<DataProtection xmlns=\"x\"><Scheme>erasure</Scheme><DataShards>4</DataShards><ParityShards>2</ParityShards></DataProtection>",
        )
        .expect("parses");
        assert_eq!(
            ec.setting().ok(),
            Some(DataProtection::Erasure {
                data_shards: 4,
                parity_shards: 2
            })
        );
        let replicas: Document =
            quick_xml::de::from_str("<DataProtection><Scheme>Replicas</Scheme></DataProtection>")
                .expect("parses");
        assert_eq!(replicas.setting().ok(), Some(DataProtection::Replicas));
        let missing: Document =
            quick_xml::de::from_str("<DataProtection><Scheme>erasure</Scheme></DataProtection>")
                .expect("parses");
        assert!(missing.setting().is_err());
        assert!(quick_xml::de::from_str::<Document>("<DataProtection>").is_err());
        let xml = quick_xml::se::to_string(&Document::of(DataProtection::Erasure {
            data_shards: 4,
            parity_shards: 2,
        }))
        .expect("serializes");
        assert_eq!(
            xml,
            "<DataProtection><Scheme>erasure</Scheme><DataShards>4</DataShards><ParityShards>2</ParityShards></DataProtection>"
        );
    }

    #[test]
    fn only_the_subresource_query_matches() {
        let yes: Uri = "/b?coffer-data-protection".parse().expect("uri");
        let also: Uri = "/b?x=1&coffer-data-protection=".parse().expect("uri");
        let no: Uri = "/b?versioning".parse().expect("uri");
        assert!(names_subresource(&yes));
        assert!(names_subresource(&also));
        assert!(!names_subresource(&no));
    }
}
