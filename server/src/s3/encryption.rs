//! Server-side encryption: Put/Get/DeleteBucketEncryption (the bucket default),
//! and the request side of SSE-S3, SSE-KMS and SSE-C — which encryption a write
//! asks for, which data key a read may use, and the headers responses carry. The
//! bytes are sealed and opened by `ingest` and `get::object_stream` with the data
//! key chosen here; the format itself is `crate::crypto`, KMS keys `crate::kms`.

use std::sync::Arc;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::{Coffer, meta_error};
use crate::crypto::Key;
use crate::kms::{EncryptionContext, KmsError};
use crate::meta::{CustomerKeyCheck, Encryption, ObjectHeaders};

pub use crate::meta::ENCRYPTION;

const AES256: &str = ServerSideEncryption::AES256;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// An SSE-C key as a request sent it, checked against its MD5.
pub(super) struct CustomerKey {
    key: Key,
    /// Base64 MD5 of the key, echoed in responses as S3 does.
    pub md5: String,
}

/// Parses `x-amz-[copy-source-]server-side-encryption-customer-{algorithm,key,key-MD5}`.
pub(super) fn customer_key(
    algorithm: Option<&str>,
    key: Option<&str>,
    key_md5: Option<&str>,
) -> S3Result<Option<CustomerKey>> {
    let (algorithm, key) = match (algorithm, key) {
        (None, None) if key_md5.is_none() => return Ok(None),
        (Some(a), Some(k)) => (a, k),
        (None, _) => {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
            ));
        }
        (Some(_), None) => {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
            ));
        }
    };
    if algorithm != AES256 {
        return Err(s3_error!(
            InvalidEncryptionAlgorithmError,
            "The encryption request you specified is not valid. The valid value is AES256."
        ));
    }
    let key = b64()
        .decode(key.trim())
        .ok()
        .and_then(|bytes| Key::from_bytes(&bytes))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The secret key was invalid for the specified algorithm."
            )
        })?;
    let md5 = b64().encode(Md5::digest(key.as_bytes()));
    match key_md5 {
        Some(sent) if sent.trim() == md5 => Ok(Some(CustomerKey { key, md5 })),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        )),
        None => Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
        )),
    }
}

/// The SSE-C key fields of an input, for the object the request addresses.
macro_rules! customer_key_of {
    ($input:expr) => {
        $crate::s3::encryption::customer_key(
            $input.sse_customer_algorithm.as_deref(),
            $input.sse_customer_key.as_deref(),
            $input.sse_customer_key_md5.as_deref(),
        )
    };
}
pub(super) use customer_key_of;

/// The `x-amz-copy-source-server-side-encryption-customer-*` fields of a copy.
macro_rules! copy_source_customer_key_of {
    ($input:expr) => {
        $crate::s3::encryption::customer_key(
            $input.copy_source_sse_customer_algorithm.as_deref(),
            $input.copy_source_sse_customer_key.as_deref(),
            $input.copy_source_sse_customer_key_md5.as_deref(),
        )
    };
}
pub(super) use copy_source_customer_key_of;

/// What a write asked for.
pub(super) enum Requested {
    /// Nothing: the bucket default applies.
    Default,
    /// `x-amz-server-side-encryption: AES256`.
    S3,
    /// `x-amz-server-side-encryption: aws:kms`, with the key named (or the
    /// default `aws/s3` key) and an encryption context.
    Kms {
        key: Option<String>,
        context: EncryptionContext,
        bucket_key: bool,
    },
    Customer(CustomerKey),
}

/// The SSE-KMS fields of a write: `x-amz-server-side-encryption-aws-kms-key-id`,
/// `-context` and `-bucket-key-enabled`.
pub(super) struct KmsFields<'a> {
    pub key_id: Option<&'a str>,
    pub context: Option<&'a str>,
    pub bucket_key: Option<bool>,
}

/// The SSE-KMS fields of an input that has them.
macro_rules! kms_fields_of {
    ($input:expr) => {
        $crate::s3::encryption::KmsFields {
            key_id: $input.ssekms_key_id.as_deref(),
            context: $input.ssekms_encryption_context.as_deref(),
            bucket_key: $input.bucket_key_enabled,
        }
    };
}
pub(super) use kms_fields_of;

/// Reads `x-amz-server-side-encryption`, its SSE-KMS fields and an SSE-C key.
pub(super) fn requested(
    sse: Option<&ServerSideEncryption>,
    customer: Option<CustomerKey>,
    kms: KmsFields<'_>,
) -> S3Result<Requested> {
    let kms_named = kms.key_id.is_some() || kms.context.is_some();
    match (sse.map(ServerSideEncryption::as_str), customer) {
        (Some(ServerSideEncryption::AWS_KMS), None) => {
            let context = match kms.context {
                None => EncryptionContext::default(),
                Some(text) => EncryptionContext::from_header(text).ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string holding JSON which represents a string-string map"
                    )
                })?,
            };
            Ok(Requested::Kms {
                key: kms.key_id.filter(|k| !k.is_empty()).map(str::to_owned),
                context,
                bucket_key: kms.bucket_key == Some(true),
            })
        }
        _ if kms_named => Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
        )),
        (None, None) => Ok(Requested::Default),
        (None, Some(c)) => Ok(Requested::Customer(c)),
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        )),
        (Some(AES256), None) => Ok(Requested::S3),
        (Some(ServerSideEncryption::AWS_KMS_DSSE), None) => Err(s3_error!(
            NotImplemented,
            "Dual-layer SSE-KMS (aws:kms:dsse) is not supported; use aws:kms or AES256"
        )),
        (Some(other), None) => Err(s3_error!(
            InvalidArgument,
            "The encryption method specified ({other}) is not supported"
        )),
    }
}

/// The S3 error for a KMS key that cannot be used, as S3 relays KMS's own
/// exceptions (`KMS.NotFoundException`, `KMS.DisabledException`,
/// `KMS.KMSInvalidStateException`, all `400`).
pub(super) fn kms_error(err: KmsError) -> S3Error {
    let kms = |code: &str, message: String| {
        let mut e = S3Error::with_message(S3ErrorCode::Custom(code.to_owned().into()), message);
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        e
    };
    match err {
        KmsError::NotFound(key) => kms("KMS.NotFoundException", format!("Invalid keyId '{key}'")),
        KmsError::Disabled(arn) => kms("KMS.DisabledException", format!("{arn} is disabled.")),
        KmsError::PendingDeletion(arn) => kms(
            "KMS.KMSInvalidStateException",
            format!("{arn} is pending deletion."),
        ),
        KmsError::NoMasterKey => s3_error!(
            NotImplemented,
            "Server-side encryption needs a master key, and this server has none"
        ),
        KmsError::Store(e) => meta_error(e),
        KmsError::Unauthentic => {
            tracing::error!("a KMS-wrapped data key does not open");
            S3Error::with_message(
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.",
            )
        }
    }
}

/// A bucket's default encryption document: `AES256`, or JSON for SSE-KMS
/// (`{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":..,"BucketKeyEnabled":..}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct BucketDefault {
    #[serde(rename = "SSEAlgorithm")]
    algorithm: String,
    #[serde(
        rename = "KMSMasterKeyID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    kms_key: Option<String>,
    #[serde(rename = "BucketKeyEnabled", default)]
    bucket_key: bool,
}

impl BucketDefault {
    fn parse(stored: &str) -> Self {
        if stored.trim_start().starts_with('{') {
            serde_json::from_str(stored).unwrap_or_else(|_| {
                tracing::error!("a bucket's default encryption document is corrupt");
                BucketDefault {
                    algorithm: AES256.to_owned(),
                    ..Default::default()
                }
            })
        } else {
            BucketDefault {
                algorithm: stored.trim().to_owned(),
                ..Default::default()
            }
        }
    }

    fn to_stored(&self) -> String {
        if self.algorithm == AES256 && self.kms_key.is_none() && !self.bucket_key {
            return AES256.to_owned();
        }
        serde_json::to_string(self).unwrap_or_default()
    }

    fn requested(&self) -> Requested {
        if self.algorithm == ServerSideEncryption::AWS_KMS {
            Requested::Kms {
                key: self.kms_key.clone(),
                context: EncryptionContext::default(),
                bucket_key: self.bucket_key,
            }
        } else {
            Requested::S3
        }
    }
}

/// The encryption a new object (or upload) gets: what is stored with it, and
/// its data key for sealing the bytes.
pub(super) struct WriteEncryption {
    pub stored: Encryption,
    pub data_key: Arc<Key>,
    /// SSE-C: the key's MD5, echoed in the response.
    pub customer_md5: Option<String>,
}

impl WriteEncryption {
    /// Sets the encryption of the headers a write stores.
    pub fn apply(target: Option<&Self>, headers: &mut ObjectHeaders) {
        headers.encryption = target.map(|t| t.stored.clone());
    }
}

fn master_key(s3: &Coffer) -> S3Result<&Key> {
    s3.meta.master_key().ok_or_else(|| {
        s3_error!(
            NotImplemented,
            "Server-side encryption needs a master key, and this server has none"
        )
    })
}

/// Chooses the encryption of a write: what it asked for, else the bucket's
/// default, else none.
impl WriteEncryption {
    pub async fn choose(
        s3: &Coffer,
        bucket: &str,
        requested: Requested,
    ) -> S3Result<Option<WriteEncryption>> {
        let default = match requested {
            Requested::Default => bucket_default(s3, bucket).await?,
            _ => None,
        };
        Self::choose_given(s3, default.as_deref(), requested).await
    }

    /// [`choose`](Self::choose) for a caller that already read the bucket's
    /// default encryption document.
    pub async fn choose_given(
        s3: &Coffer,
        bucket_default: Option<&str>,
        requested: Requested,
    ) -> S3Result<Option<WriteEncryption>> {
        let requested = match requested {
            Requested::Default => match bucket_default {
                Some(stored) => BucketDefault::parse(stored).requested(),
                None => return Ok(None),
            },
            other => other,
        };
        if let Requested::Kms {
            key,
            context,
            bucket_key,
        } = requested
        {
            let key = s3
                .kms
                .key_for_encryption(key.as_deref())
                .await
                .map_err(kms_error)?;
            let (data_key, wrapped) = s3
                .kms
                .generate_data_key(&key, &context)
                .await
                .map_err(kms_error)?;
            return Ok(Some(WriteEncryption {
                stored: Encryption {
                    wrapped_key: wrapped,
                    customer_key: None,
                    kms_key_id: Some(key.arn),
                    kms_context: (context != EncryptionContext::default())
                        .then(|| context.to_header()),
                    bucket_key,
                },
                data_key: Arc::new(data_key),
                customer_md5: None,
            }));
        }
        let data_key = Key::random();
        Ok(Some(match requested {
            Requested::Customer(customer) => {
                let salt: [u8; 16] = rand::random();
                WriteEncryption {
                    stored: Encryption {
                        wrapped_key: customer.key.wrap(&data_key),
                        customer_key: Some(CustomerKeyCheck {
                            salt: b64().encode(salt),
                            fingerprint: customer.key.fingerprint(&salt),
                        }),
                        kms_key_id: None,
                        kms_context: None,
                        bucket_key: false,
                    },
                    data_key: Arc::new(data_key),
                    customer_md5: Some(customer.md5),
                }
            }
            _ => WriteEncryption {
                stored: Encryption {
                    wrapped_key: master_key(s3)?.wrap(&data_key),
                    customer_key: None,
                    kms_key_id: None,
                    kms_context: None,
                    bucket_key: false,
                },
                data_key: Arc::new(data_key),
                customer_md5: None,
            },
        }))
    }
}

/// Checks that a read of an object carries the SSE-C key it needs (and only
/// then): missing is 400 InvalidRequest, wrong is 403 AccessDenied, as in S3.
pub(super) fn check_read(
    encryption: Option<&Encryption>,
    customer: Option<&CustomerKey>,
) -> S3Result<()> {
    let not_applicable = || {
        s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        )
    };
    match (encryption.map(|e| &e.customer_key), customer) {
        (None, None) | (Some(None), None) => Ok(()),
        (None | Some(None), Some(_)) => Err(not_applicable()),
        (Some(Some(_)), None) => Err(s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        )),
        (Some(Some(check)), Some(customer)) => {
            let salt = b64()
                .decode(&check.salt)
                .map_err(|_| s3_error!(InternalError, "stored key check is corrupt"))?;
            if customer.key.fingerprint(&salt) == check.fingerprint {
                Ok(())
            } else {
                Err(s3_error!(
                    AccessDenied,
                    "The provided customer key does not match the key the object was encrypted with."
                ))
            }
        }
    }
}

/// The data key a read of an object (or a write into an upload) uses, after
/// [`check_read`]. Unencrypted objects have none.
pub(super) async fn for_read(
    s3: &Coffer,
    encryption: Option<&Encryption>,
    customer: Option<&CustomerKey>,
) -> S3Result<Option<Arc<Key>>> {
    check_read(encryption, customer)?;
    let Some(encryption) = encryption else {
        return Ok(None);
    };
    if let Some(kms_key) = &encryption.kms_key_id {
        // A disabled (or deleted) KMS key makes the object unreadable.
        let context = match &encryption.kms_context {
            Some(text) => EncryptionContext::from_header(text).unwrap_or_default(),
            None => EncryptionContext::default(),
        };
        let data_key = s3
            .kms
            .decrypt_data_key(kms_key, &encryption.wrapped_key, &context)
            .await
            .map_err(kms_error)?;
        return Ok(Some(Arc::new(data_key)));
    }
    let wrapping = match customer {
        Some(c) => &c.key,
        None => master_key(s3)?,
    };
    let data_key = wrapping.unwrap_key(&encryption.wrapped_key).map_err(|_| {
        tracing::error!("a stored data key does not unwrap");
        S3Error::with_message(
            S3ErrorCode::InternalError,
            "We encountered an internal error. Please try again.",
        )
    })?;
    Ok(Some(Arc::new(data_key)))
}

/// The `x-amz-server-side-encryption*` response headers of an object:
/// (`server_side_encryption`, customer algorithm, customer key MD5).
pub(super) fn response_headers(
    encryption: Option<&Encryption>,
    customer_md5: Option<&str>,
) -> (Option<ServerSideEncryption>, Option<String>, Option<String>) {
    match encryption {
        None => (None, None, None),
        Some(e) if e.customer_key.is_some() => (
            None,
            Some(AES256.to_owned()),
            customer_md5.map(str::to_owned),
        ),
        Some(e) if e.kms_key_id.is_some() => (
            Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AWS_KMS,
            )),
            None,
            None,
        ),
        Some(_) => (Some(ServerSideEncryption::from_static(AES256)), None, None),
    }
}

/// The SSE-KMS response fields of an object: the key's ARN, and whether a
/// bucket key was asked for.
pub(super) fn kms_headers(encryption: Option<&Encryption>) -> (Option<String>, Option<bool>) {
    match encryption {
        Some(e) if e.kms_key_id.is_some() => (e.kms_key_id.clone(), e.bucket_key.then_some(true)),
        _ => (None, None),
    }
}

/// Fills the SSE fields of an output from `response_headers` and `kms_headers`.
macro_rules! set_sse {
    ($out:expr, $encryption:expr, $customer_md5:expr) => {{
        let (sse, algorithm, md5) =
            $crate::s3::encryption::response_headers($encryption, $customer_md5);
        $out.server_side_encryption = sse;
        $out.sse_customer_algorithm = algorithm;
        $out.sse_customer_key_md5 = md5;
        let (kms_key, bucket_key) = $crate::s3::encryption::kms_headers($encryption);
        $out.ssekms_key_id = kms_key;
        $out.bucket_key_enabled = bucket_key;
    }};
}
pub(super) use set_sse;

async fn bucket_default(s3: &Coffer, bucket: &str) -> S3Result<Option<String>> {
    s3.meta
        .get_bucket_config(bucket, ENCRYPTION)
        .await
        .map_err(meta_error)
}

pub async fn put_bucket_encryption(
    s3: &Coffer,
    req: S3Request<PutBucketEncryptionInput>,
) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
    let input = req.input;
    s3.meta
        .require_bucket(&input.bucket)
        .await
        .map_err(meta_error)?;
    let rules = &input.server_side_encryption_configuration.rules;
    let [rule] = rules.as_slice() else {
        return Err(s3_error!(
            MalformedXML,
            "The server-side encryption configuration must have exactly one rule"
        ));
    };
    let Some(default) = &rule.apply_server_side_encryption_by_default else {
        return Err(s3_error!(
            MalformedXML,
            "The rule must have ApplyServerSideEncryptionByDefault"
        ));
    };
    match default.sse_algorithm.as_str() {
        AES256 if default.kms_master_key_id.is_none() => {}
        AES256 => {
            return Err(s3_error!(
                InvalidArgument,
                "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse"
            ));
        }
        ServerSideEncryption::AWS_KMS => {}
        ServerSideEncryption::AWS_KMS_DSSE => {
            return Err(s3_error!(
                NotImplemented,
                "Dual-layer SSE-KMS (aws:kms:dsse) is not supported; use aws:kms or AES256"
            ));
        }
        other => {
            return Err(s3_error!(MalformedXML, "Unknown SSEAlgorithm {other}"));
        }
    }
    master_key(s3)?;
    let stored = BucketDefault {
        algorithm: default.sse_algorithm.as_str().to_owned(),
        kms_key: default.kms_master_key_id.clone().filter(|k| !k.is_empty()),
        // Accepted as on AWS; with SSE-S3 it means nothing, and SSE-KMS objects
        // still get a data key each (the built-in key service is local).
        bucket_key: rule.bucket_key_enabled == Some(true)
            && default.sse_algorithm.as_str() == ServerSideEncryption::AWS_KMS,
    };
    s3.meta
        .set_bucket_config(&input.bucket, ENCRYPTION, Some(&stored.to_stored()))
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_write_settings(&input.bucket);
    Ok(S3Response::new(PutBucketEncryptionOutput::default()))
}

pub async fn get_bucket_encryption(
    s3: &Coffer,
    req: S3Request<GetBucketEncryptionInput>,
) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
    let bucket = &req.input.bucket;
    s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    let Some(stored) = bucket_default(s3, bucket).await? else {
        // 404 as AWS answers (s3s's default status for this code is 400).
        let mut err = s3_error!(
            ServerSideEncryptionConfigurationNotFoundError,
            "The server side encryption configuration was not found"
        );
        err.set_status_code(http::StatusCode::NOT_FOUND);
        return Err(err);
    };
    let default = BucketDefault::parse(&stored);
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
            rules: vec![ServerSideEncryptionRule {
                apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                    sse_algorithm: ServerSideEncryption::from(default.algorithm),
                    kms_master_key_id: default.kms_key,
                }),
                bucket_key_enabled: Some(default.bucket_key),
            }],
        }),
    }))
}

pub async fn delete_bucket_encryption(
    s3: &Coffer,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
    let bucket = &req.input.bucket;
    s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    s3.meta
        .set_bucket_config(bucket, ENCRYPTION, None)
        .await
        .map_err(meta_error)?;
    s3.keyring.forget_bucket_write_settings(bucket);
    Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
}
