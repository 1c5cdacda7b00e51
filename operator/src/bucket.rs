//! Reconciler for `Bucket`: a bucket in the metadata store owned by
//! `k8s:<namespace>/<name>`, its settings, its usage, and its deletion policy.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use coffer_server::iam::PolicyDocument;
use coffer_server::kms::{BuiltinKms, KeyProvider, KmsError};
use coffer_server::meta::{
    CannedAcl, DATA_PROTECTION, ENCRYPTION, ListQuery, MetaError, NewBucket, ObjectOwnership,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::conditions::{self, Conditions};
use crate::crd::{
    Bucket, BucketEncryption, BucketSpec, BucketStatus, BucketUsage, DataProtection,
    DataProtectionScheme, DeletionPolicy, EncryptionType, ObjectOwnershipSetting, RuleStatus,
    VersioningState,
};
use crate::names::validate_bucket_name;
use crate::tenancy::{BucketOrigin, default_bucket_name, legacy_bucket_name};
use crate::{Context, Error, MANAGER, Result};

pub const FINALIZER: &str = "coffer.dev/bucket";
const KIND: &str = "Bucket";

/// Condition types specific to buckets.
pub const SETTINGS_ENFORCED: &str = "SettingsEnforced";
pub const DELETION_BLOCKED: &str = "DeletionBlocked";

/// Setting kinds the server gives effect to today; the others are stored for the
/// features that will read them, and reported in `SettingsEnforced`.
const ENFORCED_BY_SERVER: &[&str] = &[
    "policy",
    "versioning",
    "object-lock",
    "quota",
    "cors",
    "lifecycle",
    ENCRYPTION,
    DATA_PROTECTION,
];

/// The owner recorded in the store for a resource: `k8s:<namespace>/<name>`.
pub fn owner_of(namespace: &str, name: &str) -> String {
    format!("k8s:{namespace}/{name}")
}

/// Owner a retained bucket is handed to when its resource is deleted, so the same
/// resource re-created reclaims it and `adopt` may take it over where the tenancy
/// rules allow (its own namespace, or another with an administrator's consent).
fn retained_owner(owner: &str) -> String {
    format!("retained:{owner}")
}

/// The S3 name of a bucket resource: `spec.bucketName`; else `<namespace>.<name>`
/// — unless the resource already owns the bucket earlier versions named
/// `<namespace>-<name>`, which it keeps (upgrades orphan nothing).
pub async fn bucket_name(bucket: &Bucket, ctx: &Context) -> Result<String> {
    if let Some(name) = &bucket.spec.bucket_name {
        return Ok(name.clone());
    }
    let namespace = bucket.namespace().unwrap_or_default();
    let default = default_bucket_name(&namespace, &bucket.name_any());
    let recorded = bucket
        .status
        .as_ref()
        .and_then(|s| s.bucket_name.as_deref());
    if recorded == Some(default.as_str()) {
        return Ok(default);
    }
    let legacy = legacy_bucket_name(&namespace, &bucket.name_any());
    let owner = owner_of(&namespace, &bucket.name_any());
    let owns_legacy = match ctx.store.get_bucket(&legacy).await? {
        Some(existing) => existing.owner == owner || existing.owner == retained_owner(&owner),
        None => false,
    };
    Ok(if owns_legacy { legacy } else { default })
}

/// Boxed so the future is checked `Send` here, with concrete lifetimes (the
/// controller's generic bounds otherwise trip over higher-ranked lifetimes).
pub fn reconcile(bucket: Arc<Bucket>, ctx: Arc<Context>) -> BoxFuture<'static, Result<Action>> {
    reconcile_inner(bucket, ctx).boxed()
}

async fn reconcile_inner(bucket: Arc<Bucket>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(KIND);
    let namespace = bucket
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Bucket> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = format!("{KIND}/{namespace}/{}", bucket.name_any());
    let action = finalizer(&api, FINALIZER, bucket, |event| async {
        match event {
            Event::Apply(bucket) => apply(&bucket, &api, &ctx).await,
            Event::Cleanup(bucket) => cleanup(&bucket, &api, &ctx).await,
        }
    })
    .await?;
    ctx.succeeded(&key);
    Ok(action)
}

pub fn error_policy(bucket: Arc<Bucket>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(KIND, error.reason());
    let key = format!(
        "{KIND}/{}/{}",
        bucket.namespace().unwrap_or_default(),
        bucket.name_any()
    );
    let delay = ctx.backoff(&key);
    tracing::warn!(bucket = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// What applying the spec did to the store.
enum Provisioned {
    Created,
    Adopted,
    Existing,
}

impl Provisioned {
    /// The Event announcing it, if it is news.
    fn event(&self, name: &str) -> Option<(&'static str, String)> {
        match self {
            Provisioned::Created => Some(("Created", format!("Created bucket {name}"))),
            Provisioned::Adopted => Some(("Adopted", format!("Adopted existing bucket {name}"))),
            Provisioned::Existing => None,
        }
    }
}

/// `SettingsEnforced`: false, naming them, while some configured settings are only
/// stored because this server version does not enforce them yet.
fn set_settings_enforced(conditions: &mut Conditions<'_>, not_enforced: &[&str]) {
    if not_enforced.is_empty() {
        conditions.set(
            SETTINGS_ENFORCED,
            true,
            "Enforced",
            "All configured settings are enforced",
        );
    } else {
        let message = format!(
            "Stored, but not enforced by this server version yet: {}",
            not_enforced.join(", ")
        );
        conditions.set(SETTINGS_ENFORCED, false, "NotEnforcedByServer", message);
    }
}

async fn apply(bucket: &Bucket, api: &Api<Bucket>, ctx: &Context) -> Result<Action> {
    let previous = bucket.status.clone().unwrap_or_default();
    let generation = bucket.meta().generation;
    let mut conditions = Conditions::new(&previous.conditions, generation);
    let name = bucket_name(bucket, ctx).await?;
    let mut status = BucketStatus {
        bucket_name: Some(name.clone()),
        endpoint: Some(ctx.settings.s3_endpoint.clone()),
        observed_generation: generation,
        usage: previous.usage,
        conditions: Vec::new(),
    };

    let outcome = provision(bucket, &name, ctx).await;
    let action = match outcome {
        Ok((provisioned, not_enforced)) => {
            if let Some((reason, note)) = provisioned.event(&name) {
                ctx.publish(&bucket.object_ref(&()), EventType::Normal, reason, note)
                    .await;
            }
            let usage = ctx.store.bucket_usage(&name).await?;
            status.usage = Some(BucketUsage {
                objects: usage.objects,
                bytes: usage.bytes,
            });
            conditions.ready(true, "Provisioned", format!("Bucket {name} is ready"));
            set_settings_enforced(&mut conditions, &not_enforced);
            Ok(Action::requeue(ctx.settings.resync))
        }
        Err(Error::Invalid { reason, message }) => {
            if conditions::find(&previous.conditions, conditions::READY)
                .is_none_or(|c| c.reason != reason)
            {
                ctx.publish(
                    &bucket.object_ref(&()),
                    EventType::Warning,
                    reason,
                    message.clone(),
                )
                .await;
            }
            conditions.ready(false, reason, message);
            conditions.keep(SETTINGS_ENFORCED);
            Ok(Action::requeue(ctx.settings.resync))
        }
        Err(other) => {
            conditions.ready(false, other.reason(), other.to_string());
            conditions.keep(SETTINGS_ENFORCED);
            Err(other)
        }
    };
    status.conditions = conditions.finish();
    write_status(api, bucket, &previous, status).await?;
    action
}

/// Makes the store match the spec; returns what happened to the bucket and the
/// configured settings the server does not enforce yet.
async fn provision(
    bucket: &Bucket,
    name: &str,
    ctx: &Context,
) -> Result<(Provisioned, Vec<&'static str>)> {
    validate_bucket_name(name).map_err(|m| Error::invalid("InvalidBucketName", m))?;
    let mut documents = setting_documents(&bucket.spec)?;
    let namespace = bucket.namespace().unwrap_or_default();
    let owner = owner_of(&namespace, &bucket.name_any());
    let provisioned = ensure_bucket(bucket, name, &owner, ctx).await?;
    enforce_object_ownership(name, bucket.spec.object_ownership, ctx).await?;
    // After the bucket is ours: a refused name never gets a KMS key.
    documents.push((
        ENCRYPTION,
        encryption_document(bucket.spec.encryption.as_ref(), name, ctx).await?,
    ));
    let mut not_enforced = Vec::new();
    for (kind, desired) in documents {
        let current = ctx.store.get_bucket_config(name, kind).await?;
        // Versioning cannot be undone once a bucket may hold versions: dropping
        // the field suspends it, as the S3 API would.
        let desired = match (kind, desired, &current) {
            ("versioning", None, Some(_)) => Some(json!({ "Status": "Suspended" }).to_string()),
            (_, desired, _) => desired,
        };
        if current != desired {
            ctx.store
                .set_bucket_config(name, kind, desired.as_deref())
                .await
                .map_err(|e| match e {
                    // The store keeps Object Lock's rules (versioning stays
                    // enabled, lock stays on): a spec that breaks them is invalid.
                    MetaError::InvalidBucketState(message) => {
                        Error::invalid("InvalidObjectLock", message)
                    }
                    other => other.into(),
                })?;
            tracing::info!(bucket = name, setting = kind, "bucket setting updated");
        }
        if desired.is_some() && !ENFORCED_BY_SERVER.contains(&kind) {
            not_enforced.push(kind);
        }
    }
    Ok((provisioned, not_enforced))
}

/// Creates the bucket, or confirms this resource owns it, or adopts it when asked
/// and the tenancy rules allow. What is refused never says who owns a name.
async fn ensure_bucket(
    bucket: &Bucket,
    name: &str,
    owner: &str,
    ctx: &Context,
) -> Result<Provisioned> {
    let namespace = bucket.namespace().unwrap_or_default();
    let tenancy = &ctx.settings.tenancy;
    let existing = ctx.store.get_bucket(name).await?;
    if let Some(existing) = &existing {
        if existing.owner == owner {
            return Ok(Provisioned::Existing);
        }
        // The same resource re-created reclaims what it retained.
        if existing.owner == retained_owner(owner) {
            ctx.store.set_bucket_owner(name, owner).await?;
            return Ok(Provisioned::Existing);
        }
        if bucket.spec.adopt == Some(true)
            && tenancy.may_adopt(&namespace, &BucketOrigin::of(&existing.owner))
        {
            ctx.store.set_bucket_owner(name, owner).await?;
            return Ok(Provisioned::Adopted);
        }
    }
    // Outside its own names a namespace learns nothing, not even whether the
    // name exists.
    if !tenancy.may_claim_name(&namespace, name) {
        return Err(Error::invalid(
            "BucketNameNotAllowed",
            format!(
                "bucket name {name} is not one namespace {namespace} may use: its own are \
                 `{namespace}` and `{namespace}.<anything>`; others need an administrator's rule \
                 (see Tenancy in docs/operator.md)"
            ),
        ));
    }
    if let Some(existing) = existing {
        return Err(name_taken(
            name,
            &namespace,
            &existing.owner,
            bucket.spec.adopt,
        ));
    }
    let new = NewBucket {
        name: name.to_owned(),
        owner: owner.to_owned(),
        region: ctx.settings.region.clone(),
    };
    // Created locked from its first moment, as S3's CreateBucket with
    // `x-amz-bucket-object-lock-enabled` does.
    let created = if object_lock_enabled(&bucket.spec) {
        ctx.store.create_bucket_with_object_lock(&new).await
    } else {
        ctx.store.create_bucket(&new).await
    };
    match created {
        Ok(_) => Ok(Provisioned::Created),
        // Lost a race with another creator: look again next time.
        Err(MetaError::BucketAlreadyExists(_)) => Err(Error::invalid(
            "BucketNameTaken",
            format!("bucket name {name} is already in use"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `BucketNameTaken`, saying more only about this namespace's own buckets.
fn name_taken(name: &str, namespace: &str, owner: &str, adopt: Option<bool>) -> Error {
    let message = match BucketOrigin::of(owner) {
        BucketOrigin::Managed { namespace: ns, .. } if ns == namespace => {
            format!("bucket name {name} is already used by another Bucket in this namespace")
        }
        BucketOrigin::Retained { namespace: ns, .. } if ns == namespace => format!(
            "bucket {name} was retained from a deleted Bucket of this namespace; set spec.adopt: true to take it over"
        ),
        _ if adopt == Some(true) => format!(
            "bucket name {name} is already in use, and adopting it needs an administrator's consent (see Tenancy in docs/operator.md)"
        ),
        _ => format!("bucket name {name} is already in use"),
    };
    Error::invalid("BucketNameTaken", message)
}

/// Object Ownership as `spec.objectOwnership` says; unset, ACLs stay off
/// (`BucketOwnerEnforced`, bucket ACL `private`) so no ACL a Bucket does not
/// declare can make its data public. With ACLs on, the bucket's own ACL is the
/// application's to set.
async fn enforce_object_ownership(
    name: &str,
    wanted: Option<ObjectOwnershipSetting>,
    ctx: &Context,
) -> Result<()> {
    let wanted = match wanted {
        None | Some(ObjectOwnershipSetting::BucketOwnerEnforced) => {
            ObjectOwnership::BucketOwnerEnforced
        }
        Some(ObjectOwnershipSetting::BucketOwnerPreferred) => ObjectOwnership::BucketOwnerPreferred,
        Some(ObjectOwnershipSetting::ObjectWriter) => ObjectOwnership::ObjectWriter,
    };
    let current = ctx.store.bucket_acl(name).await?;
    if !wanted.acls_enabled() && current.acl.shares(&current.owner) {
        ctx.store
            .set_bucket_canned_acl(name, CannedAcl::Private)
            .await?;
        tracing::warn!(bucket = name, "bucket ACL reset to private");
    }
    if current.ownership != wanted {
        ctx.store.set_object_ownership(name, wanted).await?;
        tracing::info!(bucket = name, was = ?current.ownership, now = ?wanted, "object ownership set");
    }
    Ok(())
}

/// The name of the KMS key the operator makes for a bucket with `SSE-KMS`
/// (what `coffer-server kms list` shows; administrators disable it to make
/// the bucket's objects unreadable).
pub fn bucket_kms_key_name(bucket: &str) -> String {
    format!("bucket/{bucket}")
}

/// The bucket's default encryption document, as PutBucketEncryption stores
/// it: `AES256` for SSE-S3; for SSE-KMS the ARN of the bucket's own key,
/// created on first use. An existing key is used in whatever state an
/// administrator left it: the operator never re-enables a disabled key.
async fn encryption_document(
    wanted: Option<&BucketEncryption>,
    bucket: &str,
    ctx: &Context,
) -> Result<Option<String>> {
    let kms_key = match wanted.map(|e| e.type_) {
        None => return Ok(None),
        Some(EncryptionType::SseS3) => return Ok(Some("AES256".to_owned())),
        Some(EncryptionType::SseKms) => bucket_kms_key_name(bucket),
    };
    let kms = BuiltinKms::new(ctx.store.clone(), ctx.settings.region.clone());
    let key = match ctx.store.get_kms_key(&kms_key).await? {
        Some(key) => key,
        None => {
            let key = kms.create_key(&kms_key).await.map_err(|e| match e {
                KmsError::Store(e) => Error::Meta(e),
                KmsError::NoMasterKey => Error::invalid(
                    "EncryptionNeedsMasterKey",
                    "encryption: SSE-KMS needs the servers' master key, and the operator has \
                     none (COFFER_MASTER_KEY / --master-key-file)",
                ),
                other => Error::invalid("KmsKeyNotCreated", other.to_string()),
            })?;
            tracing::info!(bucket, kms_key = %key.id, "KMS key created");
            key
        }
    };
    let document = json!({
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": kms.arn(&key.id),
        "BucketKeyEnabled": false,
    });
    Ok(Some(document.to_string()))
}

/// The per-bucket configuration documents the spec asks for, in the JSON shape of
/// the S3 API (as the AWS CLI prints them); `None` removes a document.
fn setting_documents(spec: &BucketSpec) -> Result<Vec<(&'static str, Option<String>)>> {
    let policy = match &spec.policy {
        Some(text) => {
            let doc = PolicyDocument::parse_bucket_policy(text)
                .map_err(|e| Error::invalid("InvalidPolicy", format!("spec.policy: {e}")))?;
            Some(doc.to_json())
        }
        None => None,
    };
    let locked = object_lock_enabled(spec);
    if locked && spec.versioning == Some(VersioningState::Suspended) {
        return Err(Error::invalid(
            "InvalidObjectLock",
            "objectLock.enabled needs versioning Enabled; it cannot be Suspended",
        ));
    }
    if !locked
        && spec
            .object_lock
            .as_ref()
            .is_some_and(|l| l.default_retention.is_some())
    {
        return Err(Error::invalid(
            "InvalidObjectLock",
            "objectLock.defaultRetention needs objectLock.enabled: true",
        ));
    }
    // Object Lock keeps versioning enabled for good, whatever the spec omits.
    let versioning = match spec.versioning {
        _ if locked => Some(json!({ "Status": VersioningState::Enabled })),
        v => v.map(|v| json!({ "Status": v })),
    };
    let object_lock = spec.object_lock.as_ref().filter(|_| locked).map(|lock| {
        let mut doc = json!({ "ObjectLockEnabled": "Enabled" });
        if let Some(retention) = &lock.default_retention {
            let mut default_retention = json!({ "Mode": retention.mode });
            if let Some(days) = retention.days {
                default_retention["Days"] = json!(days);
            }
            if let Some(years) = retention.years {
                default_retention["Years"] = json!(years);
            }
            doc["Rule"] = json!({ "DefaultRetention": default_retention });
        }
        doc
    });
    let quota = match &spec.quota {
        Some(quota) => {
            let mut doc = json!({});
            if let Some(size) = &quota.max_size {
                let bytes = size.to_bytes().ok_or_else(|| {
                    Error::invalid(
                        "InvalidQuota",
                        format!("quota.maxSize {size:?} is not a byte quantity"),
                    )
                })?;
                doc["MaxSizeBytes"] = json!(bytes);
            }
            if let Some(objects) = quota.max_objects {
                doc["MaxObjects"] = json!(objects);
            }
            Some(doc)
        }
        None => None,
    };
    let lifecycle = spec.lifecycle.as_ref().map(|rules| {
        let rules: Vec<Value> = rules
            .iter()
            .map(|rule| {
                let mut doc = json!({
                    "ID": rule.id,
                    "Status": rule.status.unwrap_or(RuleStatus::Enabled),
                    "Filter": { "Prefix": rule.prefix.clone().unwrap_or_default() },
                });
                if let Some(days) = rule.expiration_days {
                    doc["Expiration"] = json!({ "Days": days });
                }
                if let Some(days) = rule.noncurrent_version_expiration_days {
                    doc["NoncurrentVersionExpiration"] = json!({ "NoncurrentDays": days });
                }
                if let Some(days) = rule.abort_incomplete_multipart_upload_days {
                    doc["AbortIncompleteMultipartUpload"] = json!({ "DaysAfterInitiation": days });
                }
                doc
            })
            .collect();
        json!({ "Rules": rules })
    });
    let cors = spec.cors.as_ref().map(|rules| {
        let rules: Vec<Value> = rules
            .iter()
            .map(|rule| {
                let mut doc = json!({
                    "AllowedOrigins": rule.allowed_origins,
                    "AllowedMethods": rule.allowed_methods,
                });
                if let Some(id) = &rule.id {
                    doc["ID"] = json!(id);
                }
                if let Some(headers) = &rule.allowed_headers {
                    doc["AllowedHeaders"] = json!(headers);
                }
                if let Some(headers) = &rule.expose_headers {
                    doc["ExposeHeaders"] = json!(headers);
                }
                if let Some(age) = rule.max_age_seconds {
                    doc["MaxAgeSeconds"] = json!(age);
                }
                doc
            })
            .collect();
        json!({ "CORSRules": rules })
    });
    let data_protection = spec
        .data_protection
        .map(data_protection_document)
        .transpose()?;
    let text = |v: Option<Value>| v.map(|v| v.to_string());
    Ok(vec![
        (DATA_PROTECTION, data_protection),
        ("policy", policy),
        ("versioning", text(versioning)),
        ("object-lock", text(object_lock)),
        ("quota", text(quota)),
        ("lifecycle", text(lifecycle)),
        ("cors", text(cors)),
    ])
}

/// The store's data-protection document for `spec.dataProtection` (the one
/// the `?coffer-data-protection` sub-resource writes), checked as the server
/// checks it.
fn data_protection_document(spec: DataProtection) -> Result<String> {
    let invalid = |message: &str| Error::invalid("InvalidDataProtection", message);
    let setting = match (spec.scheme, spec.data_shards, spec.parity_shards) {
        (DataProtectionScheme::Replicas, None, None) => {
            coffer_server::meta::DataProtection::Replicas
        }
        (DataProtectionScheme::Replicas, _, _) => {
            return Err(invalid(
                "dataProtection: Replicas takes no dataShards or parityShards",
            ));
        }
        (DataProtectionScheme::Erasure, Some(k), Some(m)) => {
            coffer_server::meta::DataProtection::Erasure {
                data_shards: k as usize,
                parity_shards: m as usize,
            }
        }
        (DataProtectionScheme::Erasure, _, _) => {
            return Err(invalid(
                "dataProtection: Erasure needs dataShards and parityShards",
            ));
        }
    };
    let setting = setting
        .validate()
        .map_err(|m| invalid(&format!("dataProtection: {m}")))?;
    Ok(setting.to_document())
}

fn object_lock_enabled(spec: &BucketSpec) -> bool {
    spec.object_lock
        .as_ref()
        .is_some_and(|l| l.enabled == Some(true))
}

/// Deletion: honour `deletionPolicy`. A bucket that is already gone, or that this
/// resource never owned, counts as deleted.
async fn cleanup(bucket: &Bucket, api: &Api<Bucket>, ctx: &Context) -> Result<Action> {
    let name = bucket.status.as_ref().and_then(|s| s.bucket_name.clone());
    let name = match name {
        Some(name) => name,
        None => bucket_name(bucket, ctx).await?,
    };
    let owner = owner_of(&bucket.namespace().unwrap_or_default(), &bucket.name_any());
    let Some(existing) = ctx.store.get_bucket(&name).await? else {
        return Ok(Action::await_change());
    };
    if existing.owner != owner {
        return Ok(Action::await_change());
    }
    match bucket
        .spec
        .deletion_policy
        .unwrap_or(DeletionPolicy::Retain)
    {
        DeletionPolicy::Retain => {
            ctx.store
                .set_bucket_owner(&name, &retained_owner(&owner))
                .await?;
            ctx.publish(
                &bucket.object_ref(&()),
                EventType::Normal,
                "Retained",
                format!("Bucket {name} retained (deletionPolicy: Retain)"),
            )
            .await;
            Ok(Action::await_change())
        }
        DeletionPolicy::Delete => {
            if bucket.spec.force_delete == Some(true) {
                delete_all_objects(&name, ctx).await?;
            }
            match ctx.store.delete_bucket(&name).await {
                Ok(()) | Err(MetaError::NoSuchBucket(_)) => {
                    ctx.publish(
                        &bucket.object_ref(&()),
                        EventType::Normal,
                        "Deleted",
                        format!("Deleted bucket {name}"),
                    )
                    .await;
                    Ok(Action::await_change())
                }
                Err(MetaError::BucketNotEmpty(_)) => {
                    let message = format!(
                        "bucket {name} is not empty; empty it or set spec.forceDelete: true to delete its objects (versions under Object Lock are never deleted)"
                    );
                    report_deletion_blocked(bucket, api, ctx, &message).await?;
                    Err(Error::invalid("DeletionBlocked", message))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// `DeletionBlocked=True` (and a Warning Event the first time), other conditions
/// unchanged.
async fn report_deletion_blocked(
    bucket: &Bucket,
    api: &Api<Bucket>,
    ctx: &Context,
    message: &str,
) -> Result<()> {
    let previous = bucket.status.clone().unwrap_or_default();
    if conditions::find(&previous.conditions, DELETION_BLOCKED).is_none_or(|c| c.status != "True") {
        ctx.publish(
            &bucket.object_ref(&()),
            EventType::Warning,
            "DeletionBlocked",
            message.to_owned(),
        )
        .await;
    }
    let mut conditions = Conditions::new(&previous.conditions, bucket.meta().generation);
    for c in &previous.conditions {
        conditions.keep(&c.type_);
    }
    conditions.set(DELETION_BLOCKED, true, "BucketNotEmpty", message);
    let status = BucketStatus {
        conditions: conditions.finish(),
        ..previous.clone()
    };
    write_status(api, bucket, &previous, status).await
}

async fn delete_all_objects(bucket: &str, ctx: &Context) -> Result<()> {
    // Every version and delete marker, so that versioned buckets empty too.
    // Versions under Object Lock are never deleted (forceDelete does not bypass
    // it): the walk continues after the last one it had to leave.
    let mut after: Option<(String, String)> = None;
    loop {
        let page = ctx
            .store
            .list_object_versions(
                bucket,
                &ListQuery {
                    max_keys: 1000,
                    start_after: after.as_ref().map(|(key, _)| key.clone().into_bytes()),
                    ..ListQuery::default()
                },
                after.as_ref().map(|(_, version)| version.as_str()),
            )
            .await?;
        for version in &page.items {
            let object = &version.object;
            match ctx
                .store
                .delete_object_version(bucket, &object.key, &object.version_id)
                .await
            {
                Ok(_) => {}
                Err(MetaError::ObjectLocked) => {
                    after = Some((object.key.clone(), object.version_id.clone()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !page.is_truncated {
            return Ok(());
        }
    }
}

/// Writes the status with server-side apply, only when it changed.
async fn write_status(
    api: &Api<Bucket>,
    bucket: &Bucket,
    previous: &BucketStatus,
    status: BucketStatus,
) -> Result<()> {
    if &status == previous {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "coffer.dev/v1alpha1",
        "kind": "Bucket",
        "status": status,
    });
    api.patch_status(
        &bucket.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::data_protection_document;
    use crate::crd::{DataProtection, DataProtectionScheme};

    fn spec(scheme: DataProtectionScheme, k: Option<u32>, m: Option<u32>) -> DataProtection {
        DataProtection {
            scheme,
            data_shards: k,
            parity_shards: m,
        }
    }

    #[test]
    fn data_protection_specs_become_the_servers_documents_or_are_refused() {
        use DataProtectionScheme::{Erasure, Replicas};
        assert_eq!(
            data_protection_document(spec(Erasure, Some(4), Some(2))).ok(),
            Some(r#"{"Scheme":"erasure","DataShards":4,"ParityShards":2}"#.to_owned())
        );
        assert_eq!(
            data_protection_document(spec(Replicas, None, None)).ok(),
            Some(r#"{"Scheme":"replicas"}"#.to_owned())
        );
        // What the CEL rule refuses, for API servers that do not run it.
        for bad in [
            spec(Erasure, Some(4), None),
            spec(Erasure, None, Some(2)),
            spec(Erasure, Some(40), Some(30)),
            spec(Erasure, Some(0), Some(2)),
            spec(Replicas, Some(4), Some(2)),
        ] {
            assert!(data_protection_document(bad).is_err(), "{bad:?}");
        }
    }
}
