//! Authentication and authorization of S3 requests.
//!
//! s3s verifies SigV4 (header, presigned, chunked, trailers) with the secret that
//! [`KeyRing`] returns for an access key id; [`Authorizer`] then maps the operation
//! to an IAM action and resource and evaluates the key's identity policy together
//! with the bucket policy. The verdict's inputs travel to handlers as a [`Caller`]
//! for the checks only they can make (copy sources, each key of a batch delete).
//! SigV2 requests also meet the rules of [`sigv2`].

pub mod grants;
pub mod session;
pub mod sigv2;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, CopySource, PutObjectTaggingInput, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

use self::grants::{AccessDefaults, AclTarget};
use crate::iam::{self, Decision, PolicyDocument, RequestContext};
use crate::meta::{
    AccessKey, BucketAcl, BucketWithConfigs, DATA_PROTECTION, ENCRYPTION, MetaStore, ObjectMeta,
    ObjectOwnership, PublicAccessBlock, QUOTA, now_millis,
};

/// How long a key or bucket policy read from the store is trusted. Changes made by
/// other processes (the operator, `key delete`) take effect within this time.
const CACHE_TTL: Duration = Duration::from_secs(2);

/// A small read-through cache with a time-to-live.
struct TtlCache<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: &str, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 10_000 {
            entries.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        entries.insert(key.to_owned(), (Instant::now(), value));
    }

    /// The cached value, or what `load` gives (cached unless it fails).
    async fn get_or_load<F, E>(&self, key: &str, load: F) -> Result<V, E>
    where
        F: std::future::Future<Output = Result<V, E>>,
    {
        if let Some(cached) = self.get(key) {
            return Ok(cached);
        }
        let value = load.await?;
        self.put(key, value.clone());
        Ok(value)
    }

    fn forget(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Access keys, bucket policies, bucket ACL settings and the bucket settings a
/// PUT reads, as the request path sees them.
pub struct KeyRing {
    meta: MetaStore,
    keys: TtlCache<Option<Arc<AccessKey>>>,
    policies: TtlCache<Option<Arc<PolicyDocument>>>,
    acls: TtlCache<BucketAcl>,
    write_settings: TtlCache<Arc<BucketWithConfigs>>,
    /// STS sessions (`session.rs`); a deleted role's vanish within `CACHE_TTL`.
    sessions: TtlCache<Option<Arc<session::ActiveSession>>>,
    defaults: AccessDefaults,
}

impl KeyRing {
    pub fn new(meta: MetaStore) -> Arc<Self> {
        Self::with_defaults(meta, AccessDefaults::default())
    }

    /// A key ring that applies server-wide access settings.
    pub fn with_defaults(meta: MetaStore, defaults: AccessDefaults) -> Arc<Self> {
        Arc::new(Self {
            meta,
            keys: TtlCache::new(),
            policies: TtlCache::new(),
            acls: TtlCache::new(),
            write_settings: TtlCache::new(),
            sessions: TtlCache::new(),
            defaults,
        })
    }

    /// Object Ownership for buckets created without saying.
    pub fn default_object_ownership(&self) -> ObjectOwnership {
        self.defaults.object_ownership
    }

    /// The Block Public Access settings in force for a bucket: its own, made
    /// stricter by the server-wide flag.
    pub fn public_access_block(&self, settings: &BucketAcl) -> PublicAccessBlock {
        let server = match self.defaults.block_public_access {
            true => PublicAccessBlock::ALL,
            false => PublicAccessBlock::default(),
        };
        settings.public_access_block.unwrap_or_default().or(server)
    }

    /// A bucket's owner, Object Ownership, ACL and Block Public Access
    /// settings (defaults for a missing bucket).
    pub async fn bucket_acl(&self, bucket: &str) -> S3Result<BucketAcl> {
        let load = async {
            self.meta
                .bucket_acl(bucket)
                .await
                .map_err(crate::s3::meta_error)
        };
        self.acls.get_or_load(bucket, load).await
    }

    /// The bucket with the settings a PUT needs before it reads the body: its
    /// quota and default encryption, or `NoSuchBucket` (never cached, so a
    /// bucket is writable as soon as it is created). The write's transaction
    /// checks bucket and quota again; like every bucket configuration in S3, a
    /// change made elsewhere takes effect within moments (here `CACHE_TTL`).
    pub async fn bucket_for_write(&self, bucket: &str) -> S3Result<Arc<BucketWithConfigs>> {
        let load = async {
            let settings = self
                .meta
                .bucket_with_configs(bucket, &[QUOTA, ENCRYPTION, DATA_PROTECTION])
                .await;
            settings.map(Arc::new).map_err(crate::s3::meta_error)
        };
        self.write_settings.get_or_load(bucket, load).await
    }

    /// Drops cached write settings after this server changed them.
    pub fn forget_bucket_write_settings(&self, bucket: &str) {
        self.write_settings.forget(bucket);
    }

    /// Drops everything cached of a bucket this server deleted.
    pub fn forget_bucket(&self, bucket: &str) {
        self.policies.forget(bucket);
        self.acls.forget(bucket);
        self.write_settings.forget(bucket);
    }

    /// Drops cached ACL settings after this server changed them.
    pub fn forget_bucket_acl(&self, bucket: &str) {
        self.acls.forget(bucket);
    }

    /// The version a request names (the current one without `versionId`), for
    /// the checks that look at an object: its ACL, its tags. Not cached.
    pub(crate) async fn object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<Option<ObjectMeta>> {
        let found = match version_id {
            Some(v) => self.meta.get_object_version(bucket, key, v).await,
            None => self.meta.get_object(bucket, key).await,
        };
        let found = found.map_err(crate::s3::meta_error)?;
        Ok(found.filter(|o| !o.delete_marker))
    }

    /// A key that exists and has not expired.
    pub async fn access_key(&self, id: &str) -> S3Result<Option<Arc<AccessKey>>> {
        if session::is_session_key(id) {
            return self.session_key(id).await;
        }
        let load = async {
            let key = self.meta.get_access_key(id).await;
            key.map(|k| k.map(Arc::new)).map_err(crate::s3::meta_error)
        };
        let key = self.keys.get_or_load(id, load).await?;
        Ok(key.filter(|k| !k.is_expired_at(now_millis())))
    }

    /// The key whose signature s3s has just verified, with its use noted for
    /// the console's "last used" (access keys, not temporary credentials).
    pub async fn signed_by(&self, id: &str) -> S3Result<Option<Arc<AccessKey>>> {
        let key = self.access_key(id).await?;
        if key.is_some() && !session::is_session_key(id) {
            self.meta.note_key_used(id);
        }
        Ok(key)
    }

    pub async fn bucket_policy(&self, bucket: &str) -> S3Result<Option<Arc<PolicyDocument>>> {
        let load = async {
            let text = self
                .meta
                .get_bucket_policy(bucket)
                .await
                .map_err(crate::s3::meta_error)?;
            // A stored policy was validated on the way in; one that no longer
            // parses (hand-edited) grants nothing rather than failing every request.
            Ok(text
                .and_then(|t| PolicyDocument::parse(&t).map_err(|e| tracing::warn!(bucket, error = %e, "ignoring invalid stored bucket policy")).ok())
                .map(Arc::new))
        };
        self.policies.get_or_load(bucket, load).await
    }

    /// Drops a cached bucket policy after this server changed it.
    pub fn forget_bucket_policy(&self, bucket: &str) {
        self.policies.forget(bucket);
    }
}

/// The secret-key lookup s3s calls while verifying a signature.
pub struct SignatureKeys(pub Arc<KeyRing>);

#[async_trait::async_trait]
impl S3Auth for SignatureKeys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if session::is_session_key(access_key)
            && let Some(active) = self.0.session(access_key).await?
            && active.session.is_expired_at(now_millis())
        {
            return Err(session::expired_token());
        }
        match self.0.access_key(access_key).await? {
            Some(key) => Ok(SecretKey::from(key.secret.as_str())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// Who is calling, and the condition keys of the request: kept in the request's
/// extensions for handlers that authorize more than the request line shows.
#[derive(Clone)]
pub struct Caller {
    pub key: Option<Arc<AccessKey>>,
    pub context: Arc<RequestContext>,
}

impl Caller {
    pub fn is_root(&self) -> bool {
        self.key.as_ref().is_some_and(|k| k.is_root)
    }

    /// Owner id recorded for buckets and uploads this caller creates.
    pub fn owner_id(&self) -> String {
        self.key
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |k| k.id.clone())
    }
}

/// The IAM action and resource an operation needs.
pub fn action_for(operation: &str) -> &'static str {
    match operation {
        "HeadObject" | "GetObject" | "GetObjectAttributes" => "s3:GetObject",
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => "s3:ListBucket",
        "ListObjectVersions" => "s3:ListBucketVersions",
        "ListBuckets" => "s3:ListAllMyBuckets",
        "PutObject"
        | "PostObject"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload" => "s3:PutObject",
        "DeleteObject" | "DeleteObjects" => "s3:DeleteObject",
        "AbortMultipartUpload" => "s3:AbortMultipartUpload",
        "ListParts" => "s3:ListMultipartUploadParts",
        "ListMultipartUploads" => "s3:ListBucketMultipartUploads",
        "CreateBucket" => "s3:CreateBucket",
        "DeleteBucket" => "s3:DeleteBucket",
        "GetBucketLocation" => "s3:GetBucketLocation",
        "GetBucketPolicy" => "s3:GetBucketPolicy",
        "PutBucketPolicy" => "s3:PutBucketPolicy",
        "DeleteBucketPolicy" => "s3:DeleteBucketPolicy",
        "GetBucketPolicyStatus" => "s3:GetBucketPolicyStatus",
        "GetBucketVersioning" => "s3:GetBucketVersioning",
        "PutBucketVersioning" => "s3:PutBucketVersioning",
        "GetBucketCors" => "s3:GetBucketCORS",
        "PutBucketCors" | "DeleteBucketCors" => "s3:PutBucketCORS",
        "GetBucketLifecycleConfiguration" => "s3:GetLifecycleConfiguration",
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => {
            "s3:PutLifecycleConfiguration"
        }
        "GetBucketTagging" => "s3:GetBucketTagging",
        "PutBucketTagging" | "DeleteBucketTagging" => "s3:PutBucketTagging",
        "GetBucketEncryption" => "s3:GetEncryptionConfiguration",
        "PutBucketEncryption" | "DeleteBucketEncryption" => "s3:PutEncryptionConfiguration",
        "GetBucketAcl" => "s3:GetBucketAcl",
        "PutBucketAcl" => "s3:PutBucketAcl",
        "GetObjectAcl" => "s3:GetObjectAcl",
        "PutObjectAcl" => "s3:PutObjectAcl",
        "GetObjectTagging" => "s3:GetObjectTagging",
        "PutObjectTagging" => "s3:PutObjectTagging",
        "DeleteObjectTagging" => "s3:DeleteObjectTagging",
        "GetObjectLockConfiguration" => "s3:GetBucketObjectLockConfiguration",
        "PutObjectLockConfiguration" => "s3:PutBucketObjectLockConfiguration",
        "GetObjectRetention" => "s3:GetObjectRetention",
        "PutObjectRetention" => "s3:PutObjectRetention",
        "GetObjectLegalHold" => "s3:GetObjectLegalHold",
        "PutObjectLegalHold" => "s3:PutObjectLegalHold",
        "GetBucketOwnershipControls" => "s3:GetBucketOwnershipControls",
        "PutBucketOwnershipControls" | "DeleteBucketOwnershipControls" => {
            "s3:PutBucketOwnershipControls"
        }
        "GetPublicAccessBlock" => "s3:GetBucketPublicAccessBlock",
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => "s3:PutBucketPublicAccessBlock",
        // Coffer's own sub-resource (`?coffer-data-protection`, `s3::data_protection`).
        "GetBucketDataProtection" => "s3:GetBucketDataProtection",
        "PutBucketDataProtection" | "DeleteBucketDataProtection" => "s3:PutBucketDataProtection",
        _ => "s3:Unsupported",
    }
}

/// The condition key prefix of an object's current tags.
const EXISTING_TAG: &str = "s3:ExistingObjectTag/";

/// Actions on an existing object for which AWS evaluates `s3:ExistingObjectTag`.
const EXISTING_TAG_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectAcl",
    "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
];

/// Requests naming a `versionId` need the version variant of their action, as
/// on AWS (`s3:GetObjectVersion`, `s3:DeleteObjectVersion`, ...).
pub fn version_action(action: &'static str, versioned: bool) -> &'static str {
    if !versioned {
        return action;
    }
    match action {
        "s3:GetObject" => "s3:GetObjectVersion",
        "s3:DeleteObject" => "s3:DeleteObjectVersion",
        "s3:GetObjectTagging" => "s3:GetObjectVersionTagging",
        "s3:PutObjectTagging" => "s3:PutObjectVersionTagging",
        "s3:DeleteObjectTagging" => "s3:DeleteObjectVersionTagging",
        "s3:GetObjectAcl" => "s3:GetObjectVersionAcl",
        "s3:PutObjectAcl" => "s3:PutObjectVersionAcl",
        other => other,
    }
}

/// Condition keys taken from the request line and headers.
fn request_context(cx: &mut S3AccessContext<'_>) -> RequestContext {
    let secure = crate::serve::secure_transport(cx.extensions_mut());
    let source = cx.extensions_mut().get::<SocketAddr>().copied();
    request_context_of(cx.uri(), cx.headers(), secure, source)
}

/// Condition keys of a request: its line and headers, whether Coffer itself
/// terminated TLS (`secure`), and the client's address.
pub(crate) fn request_context_of(
    uri: &http::Uri,
    headers: &http::HeaderMap,
    secure: &'static str,
    source: Option<SocketAddr>,
) -> RequestContext {
    let mut ctx = RequestContext::default();
    let now = time::OffsetDateTime::now_utc();
    if let Ok(text) = now.format(&time::format_description::well_known::Rfc3339) {
        ctx.insert("aws:CurrentTime", text);
    }
    ctx.insert("aws:EpochTime", now.unix_timestamp().to_string());
    // True only for TLS that Coffer terminated itself (the accept loop says so);
    // TLS ended at a proxy in front is not something we can vouch for.
    ctx.insert("aws:SecureTransport", secure);
    if let Some(addr) = source {
        ctx.insert("aws:SourceIp", addr.ip().to_string());
    }
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        let name = name.as_str();
        if name.starts_with("x-amz-") && !name.starts_with("x-amz-meta-") {
            ctx.insert(&format!("s3:{name}"), value);
        }
        match name {
            "user-agent" => ctx.insert("aws:UserAgent", value),
            "referer" => ctx.insert("aws:Referer", value),
            _ => {}
        }
    }
    // Tags a write asks for (`x-amz-tagging`); PutObjectTagging's come from its
    // body, added in `Authorizer::put_object_tagging`.
    if let Some(tagging) = headers.get("x-amz-tagging").and_then(|v| v.to_str().ok()) {
        insert_request_tags(&mut ctx, form_urlencoded_pairs(tagging).collect::<Vec<_>>());
    }
    let query = uri.query().unwrap_or("");
    let presigned = query.contains("Signature=");
    let sigv2 = (presigned && !query.contains("X-Amz-Signature="))
        || headers
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes().starts_with(b"AWS "));
    let auth_type = if presigned {
        "REST-QUERY-STRING"
    } else {
        "REST-HEADER"
    };
    ctx.insert("s3:authType", auth_type);
    ctx.insert(
        "s3:signatureversion",
        if sigv2 { "AWS" } else { "AWS4-HMAC-SHA256" },
    );
    for (name, value) in form_urlencoded_pairs(query) {
        match name.as_str() {
            "prefix" => ctx.insert("s3:prefix", value),
            "delimiter" => ctx.insert("s3:delimiter", value),
            "max-keys" => ctx.insert("s3:max-keys", value),
            "versionId" => ctx.insert("s3:VersionId", value),
            _ => {}
        }
    }
    // ListObjects without a prefix is a listing of prefix "": policies that
    // restrict s3:prefix must see that value.
    if ctx.get("s3:prefix").is_none() {
        ctx.insert("s3:prefix", "");
    }
    ctx
}

/// `s3:RequestObjectTag/<key>` and `s3:RequestObjectTagKeys` for the tags a request sets.
fn insert_request_tags(ctx: &mut RequestContext, tags: Vec<(String, String)>) {
    for (key, value) in tags {
        ctx.insert(&format!("s3:RequestObjectTag/{key}"), value);
        ctx.insert("s3:RequestObjectTagKeys", key);
    }
}

fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            urlencoding::decode(&s.replace('+', " "))
                .map(|c| c.into_owned())
                .unwrap_or_else(|_| s.to_owned())
        };
        (decode(k), decode(v))
    })
}

/// Presigned URLs may live at most 7 days, as on S3 (s3s does not cap it).
fn check_presigned_expiry(query: &str) -> S3Result<()> {
    const MAX_EXPIRES: u64 = 7 * 24 * 3600;
    for (name, value) in form_urlencoded_pairs(query) {
        if name == "X-Amz-Expires" {
            let valid = value
                .parse::<u64>()
                .is_ok_and(|secs| (1..=MAX_EXPIRES).contains(&secs));
            if !valid {
                let mut err = s3s::S3Error::with_message(
                    s3s::S3ErrorCode::Custom("AuthorizationQueryParametersError".into()),
                    "X-Amz-Expires must be between 1 and 604800 seconds (7 days)",
                );
                err.set_status_code(http::StatusCode::BAD_REQUEST);
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Evaluates IAM policies for every S3 request.
pub struct Authorizer {
    keyring: Arc<KeyRing>,
    /// Whether SigV2-signed requests and forms are accepted (`--disable-sigv2`).
    allow_sigv2: bool,
}

impl Authorizer {
    pub fn new(keyring: Arc<KeyRing>, allow_sigv2: bool) -> Self {
        Self {
            keyring,
            allow_sigv2,
        }
    }

    /// Whether a SigV2-signed POST form may be accepted (its signature is in the
    /// form, which only the PostObject handler sees).
    pub fn sigv2_allowed(&self) -> bool {
        self.allow_sigv2
    }

    /// SigV2's own gaps, closed for a request s3s has verified (see [`sigv2`]).
    fn check_sigv2(&self, uri: &http::Uri, headers: &http::HeaderMap) -> S3Result<()> {
        let Some(scheme) = sigv2::scheme(uri, headers) else {
            return Ok(());
        };
        if !self.allow_sigv2 {
            return Err(sigv2::refused());
        }
        sigv2::check(scheme, uri, headers, time::OffsetDateTime::now_utc())
    }

    /// Whether `caller` may do `action` on `bucket` (and `key`); errors with
    /// AccessDenied otherwise. Policies decide first (an explicit Deny wins over
    /// everything); ACLs are read only when no policy allows.
    pub async fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        bucket: Option<&str>,
        key: Option<&str>,
    ) -> S3Result<()> {
        let allowed = match self.decide(caller, action, bucket, key).await? {
            Decision::Allow => true,
            Decision::Deny => false,
            Decision::NotApplicable => self.acl_allows(caller, action, bucket, key).await?,
        };
        if allowed {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "Access Denied"))
        }
    }

    /// Whether ACL grants give the action (see [`grants`]): only in buckets
    /// whose Object Ownership enables ACLs.
    async fn acl_allows(
        &self,
        caller: &Caller,
        action: &str,
        bucket: Option<&str>,
        key: Option<&str>,
    ) -> S3Result<bool> {
        let Some(bucket) = bucket else {
            return Ok(false);
        };
        let Some((target, wanted)) = grants::required_permission(action) else {
            return Ok(false);
        };
        let settings = self.keyring.bucket_acl(bucket).await?;
        if !settings.ownership.acls_enabled() {
            return Ok(false);
        }
        let ignore_public = self
            .keyring
            .public_access_block(&settings)
            .ignore_public_acls;
        let caller_id = caller.key.as_ref().map(|k| k.id.as_str());
        if target == AclTarget::Bucket {
            return Ok(grants::acl_allows(
                &settings.acl,
                &settings.owner,
                caller_id,
                ignore_public,
                wanted,
            ));
        }
        let Some(key) = key else {
            return Ok(false);
        };
        let version = caller
            .context
            .get("s3:VersionId")
            .and_then(<[String]>::first);
        let object = self
            .keyring
            .object_version(bucket, key, version.map(String::as_str))
            .await?;
        let Some(object) = object else {
            return Ok(false);
        };
        let acl = object.headers.acl.unwrap_or_default();
        let owner = acl.owner.as_deref().unwrap_or(&settings.owner);
        Ok(grants::acl_allows(
            &acl,
            owner,
            caller_id,
            ignore_public,
            wanted,
        ))
    }

    pub async fn decide(
        &self,
        caller: &Caller,
        action: &str,
        bucket: Option<&str>,
        key: Option<&str>,
    ) -> S3Result<Decision> {
        if caller.is_root() {
            return Ok(Decision::Allow);
        }
        let resource = match bucket {
            Some(b) => iam::resource_arn(b, key),
            None => "arn:aws:s3:::*".to_owned(),
        };
        let identity_policy = match caller.key.as_ref().and_then(|k| k.policy.as_deref()) {
            Some(text) => match PolicyDocument::parse(text) {
                Ok(policy) => Some(Arc::new(policy)),
                Err(e) => {
                    tracing::warn!(key = ?caller.key.as_ref().map(|k| &k.id), error = %e, "ignoring invalid key policy");
                    None
                }
            },
            None => None,
        };
        let bucket_policy = match bucket {
            Some(b) => self.keyring.bucket_policy(b).await?,
            None => None,
        };
        let mut context = caller.context.clone();
        if let (Some(b), Some(k)) = (bucket, key)
            && EXISTING_TAG_ACTIONS.contains(&action)
            && [&identity_policy, &bucket_policy]
                .into_iter()
                .flatten()
                .any(|p| p.mentions_condition_key(EXISTING_TAG))
        {
            context = Arc::new(self.with_existing_tags(&caller.context, b, k).await?);
        }
        let request = iam::Request {
            action,
            resource: &resource,
            principal: caller.key.as_ref().map(|k| k.id.as_str()),
            context: &context,
        };
        let mut identity =
            identity_policy.map_or(Decision::NotApplicable, |p| p.evaluate(&request, false));
        if let Some(key) = caller
            .key
            .as_ref()
            .filter(|k| session::is_session_key(&k.id))
        {
            let active = self.keyring.session(&key.id).await?;
            let narrowing = active
                .as_ref()
                .and_then(|a| a.session_policy.as_ref())
                .map(|p| p.evaluate(&request, false));
            identity = session::narrow(identity, narrowing);
        }
        let mut bucket_decision = bucket_policy
            .as_ref()
            .map_or(Decision::NotApplicable, |p| p.evaluate(&request, true));
        // RestrictPublicBuckets: a public policy lets in only this server's
        // own keys (AWS: principals of the bucket owner's account).
        if let (Decision::Allow, None, Some(b), Some(policy)) =
            (bucket_decision, &caller.key, bucket, &bucket_policy)
            && policy.is_public()
        {
            let settings = self.keyring.bucket_acl(b).await?;
            if self
                .keyring
                .public_access_block(&settings)
                .restrict_public_buckets
            {
                bucket_decision = Decision::NotApplicable;
            }
        }
        Ok(identity.and(bucket_decision))
    }

    /// The request's condition keys plus `s3:ExistingObjectTag/<key>` for each
    /// tag of the version it names; none when that version does not exist.
    async fn with_existing_tags(
        &self,
        context: &RequestContext,
        bucket: &str,
        key: &str,
    ) -> S3Result<RequestContext> {
        let mut context = context.clone();
        let version = context
            .get("s3:VersionId")
            .and_then(<[String]>::first)
            .cloned();
        let object = self
            .keyring
            .object_version(bucket, key, version.as_deref())
            .await?;
        for (name, value) in object.map(|o| o.tags).unwrap_or_default() {
            context.insert(&format!("{EXISTING_TAG}{name}"), value);
        }
        Ok(context)
    }

    pub fn caller_of(extensions: &http::Extensions) -> Caller {
        extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller {
                key: None,
                context: Arc::new(RequestContext::default()),
            })
    }
}

#[async_trait::async_trait]
impl S3Access for Authorizer {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let key = match cx.credentials() {
            Some(creds) => {
                self.check_sigv2(cx.uri(), cx.headers())?;
                self.keyring.signed_by(&creds.access_key).await?
            }
            None => None,
        };
        if let Some(key) = key.as_ref().filter(|k| session::is_session_key(&k.id)) {
            let operation = cx.s3_op().name();
            let method = cx.method().clone();
            self.check_session(&key.id, cx.uri(), cx.headers(), (operation, &method))
                .await?;
        }
        check_presigned_expiry(cx.uri().query().unwrap_or(""))?;
        let context = Arc::new(request_context(cx));
        let caller = Caller { key, context };
        let operation = cx.s3_op().name().to_owned();
        let (bucket, object) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
        };
        cx.extensions_mut().insert(caller.clone());
        match operation.as_str() {
            // Any signed caller may list; the handler shows only what it may see.
            "ListBuckets" if caller.key.is_some() => return Ok(()),
            // Each key is authorized on its own; refusals are per-key results.
            "DeleteObjects" => return Ok(()),
            // Authorized once its body (the tags) is parsed: `put_object_tagging`.
            "PutObjectTagging" => return Ok(()),
            _ => {}
        }
        let versioned = caller.context.get("s3:VersionId").is_some();
        self.authorize(
            &caller,
            version_action(action_for(&operation), versioned),
            bucket.as_deref(),
            object.as_deref(),
        )
        .await
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.authorize_copy_source(&req.extensions, &req.input.copy_source)
            .await
    }

    async fn put_object_tagging(&self, req: &mut S3Request<PutObjectTaggingInput>) -> S3Result<()> {
        let caller = Self::caller_of(&req.extensions);
        let mut context = (*caller.context).clone();
        let tags = req
            .input
            .tagging
            .tag_set
            .iter()
            .map(|t| {
                (
                    t.key.clone().unwrap_or_default(),
                    t.value.clone().unwrap_or_default(),
                )
            })
            .collect();
        insert_request_tags(&mut context, tags);
        let caller = Caller {
            key: caller.key,
            context: Arc::new(context),
        };
        let action = version_action("s3:PutObjectTagging", req.input.version_id.is_some());
        self.authorize(
            &caller,
            action,
            Some(&req.input.bucket),
            Some(&req.input.key),
        )
        .await
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.authorize_copy_source(&req.extensions, &req.input.copy_source)
            .await
    }
}

impl Authorizer {
    /// Authorizes a request to one of Coffer's own bucket sub-resources, which
    /// s3s hands to a custom route after verifying its signature: the same
    /// checks as [`S3Access::check`], for an action the caller names.
    pub async fn authorize_route(
        &self,
        req: &mut s3s::S3Request<s3s::Body>,
        (operation, action): (&str, &'static str),
        bucket: &str,
    ) -> S3Result<()> {
        let key = match &req.credentials {
            Some(creds) => {
                self.check_sigv2(&req.uri, &req.headers)?;
                self.keyring.signed_by(&creds.access_key).await?
            }
            None => None,
        };
        if let Some(key) = key.as_ref().filter(|k| session::is_session_key(&k.id)) {
            self.check_session(&key.id, &req.uri, &req.headers, (operation, &req.method))
                .await?;
        }
        check_presigned_expiry(req.uri.query().unwrap_or(""))?;
        let secure = crate::serve::secure_transport(&req.extensions);
        let source = req.extensions.get::<SocketAddr>().copied();
        let context = Arc::new(request_context_of(&req.uri, &req.headers, secure, source));
        let caller = Caller { key, context };
        req.extensions.insert(caller.clone());
        self.authorize(&caller, action, Some(bucket), None).await
    }

    /// Temporary credentials are valid only with their session token; every
    /// request they sign is logged with the session's subject (the audit trail).
    async fn check_session(
        &self,
        id: &str,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        (operation, method): (&str, &http::Method),
    ) -> S3Result<()> {
        let active = self
            .keyring
            .session(id)
            .await?
            .ok_or_else(session::invalid_token)?;
        let token = session::request_token(uri, headers);
        if !token.is_some_and(|t| active.session.token_matches(&t)) {
            return Err(session::invalid_token());
        }
        tracing::info!(
            subject = %active.session.subject,
            role = active.role(),
            session = id,
            operation,
            %method,
            path = uri.path(),
            "request with temporary credentials"
        );
        Ok(())
    }

    async fn authorize_copy_source(
        &self,
        extensions: &http::Extensions,
        source: &CopySource,
    ) -> S3Result<()> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(s3_error!(
                NotImplemented,
                "Access point copy sources are not supported"
            ));
        };
        let caller = Self::caller_of(extensions);
        // The source's tags and ACL are those of the version the copy source
        // names, not of the `versionId` the destination request may carry.
        let mut context = (*caller.context).clone();
        context.remove("s3:VersionId");
        if let Some(version) = version_id {
            context.insert("s3:VersionId", version.to_string());
        }
        let source_caller = Caller {
            key: caller.key,
            context: Arc::new(context),
        };
        let action = version_action("s3:GetObject", version_id.is_some());
        self.authorize(&source_caller, action, Some(bucket), Some(key))
            .await
    }
}
