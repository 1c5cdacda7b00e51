//! Reconciler for `AccessKey`: a key in the metadata store with an IAM policy
//! generated from the bucket grants, a Secret pods load with `envFrom`, rotation
//! with an overlap, and repair of anything changed out of band.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use std::time::Duration;

use coffer_server::iam::PolicyDocument;
use coffer_server::meta::{AccessKey as StoredKey, MetaError, NewAccessKey, now_millis};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::bucket::owner_of;
use crate::conditions::{self, Conditions};
use crate::crd::{
    AccessKey, AccessKeyStatus, AccessMode, Bucket, BucketGrant, KEY_ID_ANNOTATION,
    ROTATE_ANNOTATION,
};
use crate::duration::parse_go_duration;
use crate::names::validate_object_name;
use crate::policy::{Grant, fail_closed_policy, identity_policy};
use crate::workload_identity;
use crate::{Context, Error, MANAGER, Result};

pub const FINALIZER: &str = "coffer.dev/access-key";
const KIND: &str = "AccessKey";
pub const ROTATING: &str = "Rotating";
/// Label on generated Secrets naming the AccessKey they belong to.
pub const ACCESS_KEY_LABEL: &str = "coffer.dev/access-key";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", MANAGER);
const DEFAULT_OVERLAP: Duration = Duration::from_secs(600);
/// The longest a previous key keeps working after a rotation (also a CEL rule in
/// the CRD): a revoked share must not live on in an old key for long.
pub const MAX_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Retry interval while a granted Bucket does not exist or is not ready yet.
const WAIT_FOR_BUCKET: Duration = Duration::from_secs(10);

/// Boxed so the future is checked `Send` here, with concrete lifetimes (the
/// controller's generic bounds otherwise trip over higher-ranked lifetimes).
pub fn reconcile(key: Arc<AccessKey>, ctx: Arc<Context>) -> BoxFuture<'static, Result<Action>> {
    reconcile_inner(key, ctx).boxed()
}

async fn reconcile_inner(key: Arc<AccessKey>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(KIND);
    let namespace = key
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<AccessKey> = Api::namespaced(ctx.client.clone(), &namespace);
    let backoff_key = format!("{KIND}/{namespace}/{}", key.name_any());
    let action = finalizer(&api, FINALIZER, key, |event| async {
        match event {
            Event::Apply(key) => apply(&key, &api, &ctx).await,
            Event::Cleanup(key) => cleanup(&key, &ctx).await,
        }
    })
    .await?;
    ctx.succeeded(&backoff_key);
    Ok(action)
}

pub fn error_policy(key: Arc<AccessKey>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(KIND, error.reason());
    let backoff_key = format!(
        "{KIND}/{}/{}",
        key.namespace().unwrap_or_default(),
        key.name_any()
    );
    let delay = ctx.backoff(&backoff_key);
    tracing::warn!(access_key = %backoff_key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Whether the AccessKey grants the Bucket resource `namespace/name`.
pub fn grants_bucket(key: &AccessKey, namespace: &str, name: &str) -> bool {
    let own = key.namespace().unwrap_or_default();
    key.spec
        .buckets
        .iter()
        .flatten()
        .any(|g| g.name == name && g.namespace.as_deref().unwrap_or(&own) == namespace)
}

fn secret_name(key: &AccessKey) -> String {
    key.spec
        .secret_name
        .clone()
        .unwrap_or_else(|| key.name_any())
}

/// A grant that could not be resolved, and why.
struct GrantProblem {
    reason: &'static str,
    message: String,
}

async fn apply(key: &AccessKey, api: &Api<AccessKey>, ctx: &Context) -> Result<Action> {
    let previous = key.status.clone().unwrap_or_default();
    let generation = key.meta().generation;
    let mut conditions = Conditions::new(&previous.conditions, generation);
    // Only a valid name is recorded: the status names the Secret to clean up.
    let name = secret_name(key);
    let mut status = AccessKeyStatus {
        observed_generation: generation,
        secret_name: match validate_object_name(&name) {
            Ok(()) => Some(name),
            Err(_) => previous.secret_name.clone(),
        },
        ..previous.clone()
    };
    let result = provision(key, ctx, &mut status).await;
    let action = match result {
        Ok(Provisioned {
            problems,
            workload_identity: workload,
            overlap_until,
        }) => {
            if let Some(old) = previous.secret_name.as_deref()
                && old != secret_name(key)
            {
                delete_secret_if_ours(ctx, key, old).await?;
            }
            match problems.first() {
                None => conditions.ready(
                    true,
                    "Provisioned",
                    match &workload {
                        Some(w) if !workload_identity::static_key_wanted(key) => format!(
                            "Workload identity only: role {} (ConfigMap {})",
                            w.role_arn, w.config_map
                        ),
                        Some(w) => format!(
                            "Credentials are in Secret {}; workload identity: role {} (ConfigMap {})",
                            secret_name(key),
                            w.role_arn,
                            w.config_map
                        ),
                        None => format!("Credentials are in Secret {}", secret_name(key)),
                    },
                ),
                Some(p) if matches!(p.reason, "BucketNotFound" | "BucketNotReady") => {
                    conditions.progressing(p.reason, join_messages(&problems))
                }
                Some(p) => conditions.ready(false, p.reason, join_messages(&problems)),
            };
            warn_new_problems(ctx, key, &previous, &problems).await;
            match &workload {
                Some(w) => conditions.set(
                    workload_identity::CONDITION,
                    true,
                    "Provisioned",
                    format!(
                        "Role {} for the listed ServiceAccounts; environment in ConfigMap {}",
                        w.role_arn, w.config_map
                    ),
                ),
                None => conditions.set(
                    workload_identity::CONDITION,
                    false,
                    "NotRequested",
                    "Static credentials only (spec.workloadIdentity is not set)",
                ),
            };
            set_rotating(&mut conditions, overlap_until);
            let next = next_reconcile(key, &status, ctx, overlap_until, !problems.is_empty());
            Ok(Action::requeue(next))
        }
        Err(Error::Invalid { reason, message }) => {
            if conditions::find(&previous.conditions, conditions::READY)
                .is_none_or(|c| c.reason != reason)
            {
                ctx.publish(
                    &key.object_ref(&()),
                    EventType::Warning,
                    reason,
                    message.clone(),
                )
                .await;
            }
            if reason.contains("WorkloadIdentity")
                || matches!(reason, "RoleConflict" | "ConfigMapConflict")
            {
                conditions.set(workload_identity::CONDITION, false, reason, message.clone());
            } else {
                conditions.keep(workload_identity::CONDITION);
            }
            conditions.ready(false, reason, message);
            conditions.keep(ROTATING);
            Ok(Action::requeue(ctx.settings.resync))
        }
        Err(other) => {
            conditions.ready(false, other.reason(), other.to_string());
            conditions.keep(ROTATING);
            conditions.keep(workload_identity::CONDITION);
            Err(other)
        }
    };
    status.conditions = conditions.finish();
    write_status(api, key, &previous, status).await?;
    action
}

/// Records a Warning Event for each problem not already reported in `Ready`.
async fn warn_new_problems(
    ctx: &Context,
    key: &AccessKey,
    previous: &AccessKeyStatus,
    problems: &[GrantProblem],
) {
    let reported =
        conditions::find(&previous.conditions, conditions::READY).map(|c| c.reason.as_str());
    for problem in problems.iter().filter(|p| Some(p.reason) != reported) {
        ctx.publish(
            &key.object_ref(&()),
            EventType::Warning,
            problem.reason,
            problem.message.clone(),
        )
        .await;
    }
}

/// `Rotating`: true while a previous key is still valid, with until when.
fn set_rotating(conditions: &mut Conditions<'_>, overlap_until: Option<i64>) {
    match overlap_until {
        Some(until) => conditions.set(
            ROTATING,
            true,
            "PreviousKeyValid",
            format!(
                "The previous key stays valid until {}",
                conditions::to_rfc3339(coffer_server::meta::millis_to_datetime(until))
            ),
        ),
        None => conditions.set(
            ROTATING,
            false,
            "RotationComplete",
            "Only the current key is valid",
        ),
    };
}

/// When to look again: at the resync, or sooner when a previous key expires, a
/// granted bucket may have become ready, or a scheduled rotation is due.
fn next_reconcile(
    key: &AccessKey,
    status: &AccessKeyStatus,
    ctx: &Context,
    overlap_until: Option<i64>,
    waiting_for_buckets: bool,
) -> Duration {
    let now = now_millis();
    let mut next = ctx.settings.resync;
    if let Some(until) = overlap_until {
        let wait =
            Duration::from_millis(u64::try_from(until - now).unwrap_or(0)) + Duration::from_secs(1);
        next = next.min(wait);
    }
    if waiting_for_buckets {
        next = next.min(WAIT_FOR_BUCKET);
    }
    if let Some(due) = rotation_due_in(key, status, now) {
        next = next.min(due);
    }
    next
}

fn join_messages(problems: &[GrantProblem]) -> String {
    problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

struct Provisioned {
    problems: Vec<GrantProblem>,
    /// The role and ConfigMap of `spec.workloadIdentity`, when asked for.
    workload_identity: Option<workload_identity::Provisioned>,
    /// Until when a previous key still authenticates (ms since epoch).
    overlap_until: Option<i64>,
}

async fn provision(
    key: &AccessKey,
    ctx: &Context,
    status: &mut AccessKeyStatus,
) -> Result<Provisioned> {
    let namespace = key.namespace().unwrap_or_default();
    let owner = owner_of(&namespace, &key.name_any());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret_name = secret_name(key);

    let (grants, problems) = resolve_grants(key, ctx).await?;
    let now = now_millis();
    let mut keys = ctx.store.list_access_keys_by_owner(&owner).await?;
    // Fail closed: every key this AccessKey owns, the current one and any still in
    // its rotation overlap, loses what is no longer granted before anything else
    // in the spec can stop this reconcile.
    let policy = identity_policy(&grants, key.spec.policy.as_deref());
    narrow_keys(&mut keys, &grants, policy.as_ref().ok(), now, ctx).await?;
    let role_policy = match &policy {
        Ok(policy) => policy.to_json(),
        Err(_) => {
            let role = workload_identity::role_name(&namespace, &key.name_any());
            let previous = ctx.store.get_role(&role).await?.map(|r| r.policy);
            fail_closed_policy(&grants, previous.as_deref()).to_json()
        }
    };
    workload_identity::narrow(key, ctx, &role_policy).await?;
    let policy = policy
        .map_err(|e| Error::invalid(e.reason(), format!("spec.policy: {e}")))?
        .to_json();
    let single_bucket = match grants.as_slice() {
        [only] => Some(only.bucket.as_str()),
        _ => None,
    };
    if !workload_identity::static_key_wanted(key) {
        // Workload identity only: no key, no Secret.
        for stored in &keys {
            match ctx.store.delete_access_key(&stored.id).await {
                Ok(()) | Err(MetaError::NoSuchAccessKey(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        delete_secret_if_ours(ctx, key, &secret_name).await?;
        status.access_key_id = None;
        status.secret_name = None;
        status.last_rotated = None;
        let workload = workload_identity::reconcile(key, ctx, &policy, single_bucket).await?;
        status.role_arn = workload.as_ref().map(|w| w.role_arn.clone());
        return Ok(Provisioned {
            problems,
            workload_identity: workload,
            overlap_until: None,
        });
    }
    validate_object_name(&secret_name)
        .map_err(|m| Error::invalid("InvalidSecretName", format!("spec.secretName: {m}")))?;
    let overlap = overlap_of(key)?;

    let existing_secret = secrets.get_opt(&secret_name).await?;
    if let Some(secret) = &existing_secret
        && !secret_is_ours(secret, key)
    {
        return Err(Error::invalid(
            "SecretConflict",
            format!(
                "Secret {secret_name} exists and was not created for this AccessKey; refusing to overwrite it"
            ),
        ));
    }

    // The current key: the one the status or the Secret names, if it still exists
    // and has not been retired; otherwise the newest unretired key.
    let secret_key_id = existing_secret
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get("AWS_ACCESS_KEY_ID"))
        .and_then(|v| String::from_utf8(v.0.clone()).ok());
    let named = [status.access_key_id.clone(), secret_key_id];
    let live: Vec<&StoredKey> = keys.iter().filter(|k| k.expires_at.is_none()).collect();
    let current = named
        .iter()
        .flatten()
        .find_map(|id| live.iter().find(|k| &k.id == id).copied())
        .or_else(|| live.last().copied())
        .cloned();

    let rotate_token = key.annotations().get(ROTATE_ANNOTATION).cloned();
    let reason = match &current {
        None if status.access_key_id.is_some() => Some("Recreated"),
        None => Some("Created"),
        Some(_) if rotate_token.is_some() && rotate_token != status.rotate_token => Some("Rotated"),
        Some(k)
            if rotation_period(key)
                .is_some_and(|every| now >= k.created_at.saturating_add(every)) =>
        {
            Some("Rotated")
        }
        Some(_) => None,
    };
    let current = match reason {
        Some(reason) => {
            let created = ctx
                .store
                .create_access_key(&NewAccessKey {
                    name: format!("{namespace}/{}", key.name_any()),
                    owner: owner.clone(),
                    policy: Some(policy.clone()),
                    is_root: false,
                    credentials: None,
                })
                .await?;
            let note = match (reason, &current) {
                ("Rotated", Some(old)) => format!(
                    "Rotated credentials: new key {}, previous key {} valid for {}s more",
                    created.id,
                    old.id,
                    overlap.as_secs()
                ),
                _ => format!("Issued access key {}", created.id),
            };
            ctx.publish(&key.object_ref(&()), EventType::Normal, reason, note)
                .await;
            status.rotate_token = rotate_token;
            created
        }
        None => current.ok_or(Error::MissingField("access key"))?,
    };
    status.access_key_id = Some(current.id.clone());
    status.last_rotated = Some(conditions::to_rfc3339(
        coffer_server::meta::millis_to_datetime(current.created_at),
    ));

    let desired = desired_secret(key, &secret_name, &current, single_bucket, ctx)?;
    write_secret(&secrets, existing_secret, desired).await?;

    // Retire every other key: give it the overlap, delete it once expired.
    let overlap_ms = i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX);
    let mut overlap_until: Option<i64> = None;
    for old in keys.iter().filter(|k| k.id != current.id) {
        match old.expires_at {
            None => {
                let until = now.saturating_add(overlap_ms);
                ctx.store
                    .set_access_key_expiry(&old.id, Some(until))
                    .await?;
                overlap_until = Some(overlap_until.map_or(until, |u| u.max(until)));
            }
            Some(until) if until <= now => {
                match ctx.store.delete_access_key(&old.id).await {
                    Ok(()) | Err(MetaError::NoSuchAccessKey(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                ctx.publish(
                    &key.object_ref(&()),
                    EventType::Normal,
                    "Revoked",
                    format!("Revoked previous access key {}", old.id),
                )
                .await;
            }
            Some(until) => overlap_until = Some(overlap_until.map_or(until, |u| u.max(until))),
        }
    }
    // Last: a workload-identity problem must not hold up retiring old keys.
    let workload = workload_identity::reconcile(key, ctx, &policy, single_bucket).await?;
    status.role_arn = workload.as_ref().map(|w| w.role_arn.clone());
    Ok(Provisioned {
        problems,
        workload_identity: workload,
        overlap_until,
    })
}

/// `rotation.overlap`, default 10 minutes, at most [`MAX_OVERLAP`].
fn overlap_of(key: &AccessKey) -> Result<Duration> {
    let Some(text) = key
        .spec
        .rotation
        .as_ref()
        .and_then(|r| r.overlap.as_deref())
    else {
        return Ok(DEFAULT_OVERLAP);
    };
    let overlap = parse_go_duration(text).ok_or_else(|| {
        Error::invalid(
            "InvalidRotation",
            format!("rotation.overlap {text:?} is not a duration"),
        )
    })?;
    if overlap > MAX_OVERLAP {
        return Err(Error::invalid(
            "InvalidRotation",
            format!(
                "rotation.overlap {text:?} is longer than the maximum of {}h",
                MAX_OVERLAP.as_secs() / 3600
            ),
        ));
    }
    Ok(overlap)
}

/// Gives every stored key of this AccessKey the policy of today's grants — the
/// user's policy when it is usable, otherwise the grants narrowed by the key's
/// previous Deny statements — and cuts any overlap beyond [`MAX_OVERLAP`].
async fn narrow_keys(
    keys: &mut [StoredKey],
    grants: &[Grant],
    policy: Option<&PolicyDocument>,
    now: i64,
    ctx: &Context,
) -> Result<()> {
    let max_overlap_ms = i64::try_from(MAX_OVERLAP.as_millis()).unwrap_or(i64::MAX);
    let latest_expiry = now.saturating_add(max_overlap_ms);
    for stored in keys.iter_mut() {
        let desired = match policy {
            Some(policy) => policy.to_json(),
            None => fail_closed_policy(grants, stored.policy.as_deref()).to_json(),
        };
        if stored.policy.as_deref() != Some(desired.as_str()) {
            ctx.store
                .set_access_key_policy(&stored.id, Some(&desired))
                .await?;
            tracing::info!(key = %stored.id, "access key policy updated");
            stored.policy = Some(desired);
        }
        if stored.expires_at.is_some_and(|until| until > latest_expiry) {
            ctx.store
                .set_access_key_expiry(&stored.id, Some(latest_expiry))
                .await?;
            tracing::info!(key = %stored.id, "overlap cut to the maximum");
            stored.expires_at = Some(latest_expiry);
        }
    }
    Ok(())
}

/// `rotation.every` in milliseconds, when set and valid.
fn rotation_period(key: &AccessKey) -> Option<i64> {
    let every = key.spec.rotation.as_ref()?.every.as_deref()?;
    let every = parse_go_duration(every)?;
    i64::try_from(every.as_millis()).ok().filter(|ms| *ms > 0)
}

/// How long until the next scheduled rotation.
fn rotation_due_in(key: &AccessKey, status: &AccessKeyStatus, now: i64) -> Option<Duration> {
    let every = rotation_period(key)?;
    let last = conditions::parse_rfc3339(status.last_rotated.as_deref()?)?;
    let last_ms = i64::try_from(last.unix_timestamp_nanos() / 1_000_000).ok()?;
    let due = last_ms.saturating_add(every);
    Some(Duration::from_millis(u64::try_from(due - now).unwrap_or(0)) + Duration::from_secs(1))
}

/// Resolves grants to S3 bucket names, checking each Bucket exists, is ready, and
/// (across namespaces) allows this AccessKey's namespace.
async fn resolve_grants(key: &AccessKey, ctx: &Context) -> Result<(Vec<Grant>, Vec<GrantProblem>)> {
    let own_namespace = key.namespace().unwrap_or_default();
    let mut grants = Vec::new();
    let mut problems = Vec::new();
    for grant in key.spec.buckets.iter().flatten() {
        let namespace = grant
            .namespace
            .clone()
            .unwrap_or_else(|| own_namespace.clone());
        let buckets: Api<Bucket> = Api::namespaced(ctx.client.clone(), &namespace);
        let Some(bucket) = buckets.get_opt(&grant.name).await? else {
            problems.push(GrantProblem {
                reason: "BucketNotFound",
                message: format!("Bucket {namespace}/{} does not exist", grant.name),
            });
            continue;
        };
        if namespace != own_namespace
            && let Err(problem) = check_share(&bucket, &own_namespace, grant)
        {
            problems.push(problem);
            continue;
        }
        let status = bucket.status.as_ref();
        let ready = status
            .and_then(|s| conditions::find(&s.conditions, conditions::READY))
            .is_some_and(|c| c.status == "True");
        match status.and_then(|s| s.bucket_name.clone()) {
            Some(bucket_name) if ready => grants.push(Grant {
                bucket: bucket_name,
                access: grant.access,
                prefix: grant.prefix.clone(),
            }),
            _ => problems.push(GrantProblem {
                reason: "BucketNotReady",
                message: format!("Bucket {namespace}/{} is not ready", grant.name),
            }),
        }
    }
    Ok((grants, problems))
}

/// Whether a Bucket of another namespace shares enough with `grantee` for this
/// grant: some `allowedNamespaces` entry (ReadOnly, whole bucket) or `shares`
/// entry must cover its mode and prefix.
fn check_share(
    bucket: &Bucket,
    grantee: &str,
    grant: &BucketGrant,
) -> std::result::Result<(), GrantProblem> {
    let access = bucket.spec.access.as_ref();
    let names = |n: &str| n == "*" || n == grantee;
    let legacy = access
        .and_then(|a| a.allowed_namespaces.as_ref())
        .into_iter()
        .flatten()
        .filter(|n| names(n))
        .map(|_| (AccessMode::ReadOnly, ""));
    let shares = access
        .and_then(|a| a.shares.as_ref())
        .into_iter()
        .flatten()
        .filter(|s| names(&s.namespace))
        .map(|s| {
            (
                s.max_access.unwrap_or(AccessMode::ReadOnly),
                s.prefix.as_deref().unwrap_or(""),
            )
        });
    let offered: Vec<(AccessMode, &str)> = legacy.chain(shares).collect();
    let bucket_ref = format!(
        "Bucket {}/{}",
        bucket.namespace().unwrap_or_default(),
        bucket.name_any()
    );
    if offered.is_empty() {
        return Err(GrantProblem {
            reason: "NamespaceNotAllowed",
            message: format!(
                "{bucket_ref} does not share with namespace {grantee} (access.allowedNamespaces, access.shares)"
            ),
        });
    }
    let prefix = grant.prefix.as_deref().unwrap_or("");
    if offered
        .iter()
        .any(|(max, within)| max.covers(grant.access) && prefix.starts_with(within))
    {
        return Ok(());
    }
    let offers: Vec<String> = offered
        .iter()
        .map(|(max, within)| match within {
            &"" => format!("{max:?}"),
            within => format!("{max:?} under prefix {within:?}"),
        })
        .collect();
    Err(GrantProblem {
        reason: "AccessNotShared",
        message: format!(
            "{bucket_ref} shares at most {} with namespace {grantee}; this grant asks for {:?}{}",
            offers.join(" or "),
            grant.access,
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" under prefix {prefix:?}")
            }
        ),
    })
}

/// A Secret is ours when it is owned by this AccessKey, or carries our labels for
/// an AccessKey of this name (re-created before garbage collection caught up).
fn secret_is_ours(secret: &Secret, key: &AccessKey) -> bool {
    let uid = key.uid();
    let owned = secret
        .owner_references()
        .iter()
        .any(|r| Some(&r.uid) == uid.as_ref() && r.kind == KIND);
    let labels = secret.labels();
    let labelled = labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
        && labels.get(ACCESS_KEY_LABEL) == Some(&key.name_any());
    owned || labelled
}

/// The environment a pod gets from `envFrom: [{secretRef: {name: ...}}]`.
pub fn secret_env(
    settings: &crate::Settings,
    key_id: &str,
    secret: &str,
    single_bucket: Option<&str>,
) -> BTreeMap<String, String> {
    let endpoint = settings.s3_endpoint.trim_end_matches('/');
    let mut env = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID".to_owned(), key_id.to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), secret.to_owned()),
        ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
        ("AWS_ENDPOINT_URL_S3".to_owned(), endpoint.to_owned()),
        ("AWS_REGION".to_owned(), settings.region.clone()),
        ("AWS_DEFAULT_REGION".to_owned(), settings.region.clone()),
        ("BUCKET_REGION".to_owned(), settings.region.clone()),
    ]);
    if let Ok(uri) = endpoint.parse::<http::Uri>() {
        let tls = uri.scheme_str() == Some("https");
        if let Some(host) = uri.host() {
            env.insert("BUCKET_HOST".to_owned(), host.to_owned());
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        env.insert("BUCKET_PORT".to_owned(), port.to_string());
    }
    if let Some(bucket) = single_bucket {
        env.insert("BUCKET_NAME".to_owned(), bucket.to_owned());
    }
    if let Some(ca) = &settings.ca_bundle {
        // A file to mount (AWS_CA_BUNDLE takes a path): `ca.crt` in the Secret.
        env.insert("ca.crt".to_owned(), ca.clone());
    }
    env
}

fn desired_secret(
    key: &AccessKey,
    name: &str,
    current: &StoredKey,
    single_bucket: Option<&str>,
    ctx: &Context,
) -> Result<Secret> {
    let owner = OwnerReference {
        api_version: "coffer.dev/v1alpha1".to_owned(),
        kind: KIND.to_owned(),
        name: key.name_any(),
        uid: key.uid().ok_or(Error::MissingField("metadata.uid"))?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let data = secret_env(&ctx.settings, &current.id, &current.secret, single_bucket)
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: key.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
                (ACCESS_KEY_LABEL.to_owned(), key.name_any()),
            ])),
            annotations: Some(BTreeMap::from([(
                KEY_ID_ANNOTATION.to_owned(),
                current.id.clone(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    })
}

/// Creates the Secret, or replaces it when its content drifted; writes nothing when
/// it already matches. Labels and annotations others added are kept.
async fn write_secret(
    secrets: &Api<Secret>,
    existing: Option<Secret>,
    mut desired: Secret,
) -> Result<()> {
    let Some(existing) = existing else {
        secrets.create(&PostParams::default(), &desired).await?;
        return Ok(());
    };
    let contains = |have: &Option<BTreeMap<String, String>>,
                    want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let same = existing.data == desired.data
        && existing.type_ == desired.type_
        && existing.metadata.owner_references == desired.metadata.owner_references
        && contains(&existing.metadata.labels, &desired.metadata.labels)
        && contains(
            &existing.metadata.annotations,
            &desired.metadata.annotations,
        );
    if same {
        return Ok(());
    }
    let merge = |have: Option<BTreeMap<String, String>>, want: Option<BTreeMap<String, String>>| {
        let mut merged = have.unwrap_or_default();
        merged.extend(want.unwrap_or_default());
        Some(merged)
    };
    desired.metadata.labels = merge(
        existing.metadata.labels.clone(),
        desired.metadata.labels.take(),
    );
    desired.metadata.annotations = merge(
        existing.metadata.annotations.clone(),
        desired.metadata.annotations.take(),
    );
    desired.metadata.resource_version = existing.metadata.resource_version.clone();
    let name = desired.metadata.name.clone().unwrap_or_default();
    secrets
        .replace(&name, &PostParams::default(), &desired)
        .await?;
    Ok(())
}

/// Deletion: revoke every key of this AccessKey and delete its Secret (also
/// garbage-collected through the owner reference).
async fn cleanup(key: &AccessKey, ctx: &Context) -> Result<Action> {
    let namespace = key.namespace().unwrap_or_default();
    let owner = owner_of(&namespace, &key.name_any());
    for stored in ctx.store.list_access_keys_by_owner(&owner).await? {
        match ctx.store.delete_access_key(&stored.id).await {
            Ok(()) | Err(MetaError::NoSuchAccessKey(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    delete_secret_if_ours(ctx, key, &secret_name(key)).await?;
    workload_identity::remove(key, ctx).await?;
    ctx.publish(
        &key.object_ref(&()),
        EventType::Normal,
        "Deleted",
        "Revoked the access keys and deleted the Secret".to_owned(),
    )
    .await;
    Ok(Action::await_change())
}

/// Deletes a Secret this AccessKey created (after a rename of `secretName`, or on
/// deletion); a missing Secret is fine, somebody else's is left alone.
async fn delete_secret_if_ours(ctx: &Context, key: &AccessKey, name: &str) -> Result<()> {
    if validate_object_name(name).is_err() {
        return Ok(());
    }
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    if let Some(secret) = secrets.get_opt(name).await?
        && secret_is_ours(&secret, key)
    {
        match secrets.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn write_status(
    api: &Api<AccessKey>,
    key: &AccessKey,
    previous: &AccessKeyStatus,
    status: AccessKeyStatus,
) -> Result<()> {
    if &status == previous {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "coffer.dev/v1alpha1",
        "kind": "AccessKey",
        "status": status,
    });
    api.patch_status(
        &key.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::secret_env;
    use crate::Settings;

    #[test]
    fn secret_env_derives_host_port_and_carries_the_ca_bundle() {
        let mut settings = Settings::new("https://s3.example.internal/", "eu-west-1");
        settings.ca_bundle = Some("-----BEGIN CERTIFICATE-----".into());
        let env = secret_env(&settings, "AKID", "SECRET", None);
        assert_eq!(env["AWS_ENDPOINT_URL"], "https://s3.example.internal");
        assert_eq!(env["AWS_ENDPOINT_URL_S3"], "https://s3.example.internal");
        assert_eq!(env["BUCKET_HOST"], "s3.example.internal");
        assert_eq!(env["BUCKET_PORT"], "443");
        assert_eq!(env["AWS_REGION"], "eu-west-1");
        assert_eq!(env["ca.crt"], "-----BEGIN CERTIFICATE-----");
        assert!(
            !env.contains_key("BUCKET_NAME"),
            "no single bucket, no BUCKET_NAME"
        );
        let plain = secret_env(
            &Settings::new("http://coffer.coffer.svc:9000", "us-east-1"),
            "A",
            "S",
            Some("b"),
        );
        assert_eq!(plain["BUCKET_PORT"], "9000");
        assert_eq!(plain["BUCKET_NAME"], "b");
        assert!(!plain.contains_key("ca.crt"));
    }
}
