//! Workload identity for an AccessKey (`spec.workloadIdentity`): a role in
//! Coffer whose trust admits exactly the listed ServiceAccounts of the
//! AccessKey's namespace and whose policy is the one its grants generate, and
//! a ConfigMap with what the AWS SDKs need to exchange the pod's projected
//! ServiceAccount token for short-lived credentials (docs/sts.md).

use std::collections::BTreeMap;

use coffer_server::meta::{MetaError, NewRole, token_hash};
use coffer_server::sts::trust::{role_arn, service_account_trust, valid_role_name};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};

use crate::bucket::owner_of;
use crate::crd::AccessKey;
use crate::names::validate_object_name;
use crate::{Context, Error, MANAGER, Result};

/// The status condition saying whether workload identity is provisioned.
pub const CONDITION: &str = "WorkloadIdentity";
/// Where the pod stanza in docs/sts.md mounts the projected token.
pub const TOKEN_FILE: &str = "/var/run/secrets/coffer.dev/serviceaccount/token";
/// Longest session of an operator-made role (the SDKs refresh before expiry).
const MAX_SESSION_SECONDS: i64 = 3600;
const KIND: &str = "AccessKey";
/// Label on generated ConfigMaps naming the AccessKey they belong to.
const ACCESS_KEY_LABEL: &str = "coffer.dev/access-key";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", MANAGER);

/// What was provisioned: the role's ARN and the ConfigMap's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    pub role_arn: String,
    pub config_map: String,
}

/// `k8s.<namespace>.<name>` (namespaces have no dots, so it is unambiguous),
/// or `k8s.<hash>` when that is longer than IAM's 64 characters.
pub fn role_name(namespace: &str, name: &str) -> String {
    let plain = format!("k8s.{namespace}.{name}");
    if valid_role_name(&plain) {
        plain
    } else {
        format!("k8s.{}", &token_hash(&format!("{namespace}/{name}"))[..40])
    }
}

/// Whether the AccessKey wants a static key as well (the default).
pub fn static_key_wanted(key: &AccessKey) -> bool {
    key.spec
        .workload_identity
        .as_ref()
        .and_then(|w| w.static_key)
        .unwrap_or(true)
}

/// Gives an existing role of this AccessKey `policy` at once, before anything
/// else in the spec can stop the reconcile (as the keys get theirs): a grant
/// taken away must not live on in the role.
pub async fn narrow(key: &AccessKey, ctx: &Context, policy: &str) -> Result<()> {
    let namespace = key.namespace().unwrap_or_default();
    let name = role_name(&namespace, &key.name_any());
    let owner = owner_of(&namespace, &key.name_any());
    let Some(role) = ctx.store.get_role(&name).await? else {
        return Ok(());
    };
    if role.owner != owner || role.policy == policy {
        return Ok(());
    }
    let updated = NewRole {
        name: role.name,
        policy: policy.to_owned(),
        trust: role.trust,
        max_session_seconds: role.max_session_seconds,
        owner,
    };
    ctx.store.put_role(&updated, true).await?;
    tracing::info!(role = %name, "workload identity role policy updated");
    Ok(())
}

pub fn config_map_name(key: &AccessKey) -> String {
    format!("{}-workload-identity", key.name_any())
}

/// Creates or updates the role and the ConfigMap when the spec asks for
/// workload identity, and removes both when it no longer does.
pub async fn reconcile(
    key: &AccessKey,
    ctx: &Context,
    policy: &str,
    single_bucket: Option<&str>,
) -> Result<Option<Provisioned>> {
    let Some(wanted) = key.spec.workload_identity.as_ref() else {
        remove(key, ctx).await?;
        return Ok(None);
    };
    let namespace = key.namespace().unwrap_or_default();
    let Some(issuer) = ctx.settings.oidc_issuer.as_deref() else {
        return Err(Error::invalid(
            "WorkloadIdentityUnavailable",
            "spec.workloadIdentity: the operator has no --oidc-issuer (chart value workloadIdentity.enabled)",
        ));
    };
    if wanted.service_accounts.is_empty() {
        return Err(Error::invalid(
            "InvalidWorkloadIdentity",
            "spec.workloadIdentity.serviceAccounts: name at least one ServiceAccount",
        ));
    }
    let mut subjects = Vec::new();
    for account in &wanted.service_accounts {
        validate_object_name(account).map_err(|m| {
            Error::invalid(
                "InvalidWorkloadIdentity",
                format!("spec.workloadIdentity.serviceAccounts: {account:?}: {m}"),
            )
        })?;
        subjects.push(format!("system:serviceaccount:{namespace}:{account}"));
    }
    subjects.sort();
    subjects.dedup();
    let name = role_name(&namespace, &key.name_any());
    let role = NewRole {
        name: name.clone(),
        policy: policy.to_owned(),
        trust: service_account_trust(issuer, &subjects, &ctx.settings.sts_audience),
        max_session_seconds: MAX_SESSION_SECONDS,
        owner: owner_of(&namespace, &key.name_any()),
    };
    let current = ctx.store.get_role(&name).await?;
    let unchanged = current.as_ref().is_some_and(|r| {
        r.owner == role.owner
            && r.policy == role.policy
            && r.trust == role.trust
            && r.max_session_seconds == role.max_session_seconds
    });
    if !unchanged {
        match ctx.store.put_role(&role, true).await {
            Ok(_) => tracing::info!(role = %name, "workload identity role written"),
            Err(MetaError::RoleAlreadyExists(_)) => {
                return Err(Error::invalid(
                    "RoleConflict",
                    format!("role {name} exists and belongs to someone else"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let arn = role_arn(&name);
    let config_map = config_map_name(key);
    validate_object_name(&config_map).map_err(|m| {
        Error::invalid(
            "InvalidWorkloadIdentity",
            format!("ConfigMap name {config_map}: {m}"),
        )
    })?;
    let data = environment(ctx, &arn, single_bucket);
    write_config_map(key, ctx, &config_map, data).await?;
    Ok(Some(Provisioned {
        role_arn: arn,
        config_map,
    }))
}

/// What a pod gets from `envFrom: [{configMapRef: ...}]`: no secret in it.
pub fn environment(
    ctx: &Context,
    role_arn: &str,
    single_bucket: Option<&str>,
) -> BTreeMap<String, String> {
    let endpoint = ctx.settings.s3_endpoint.trim_end_matches('/');
    let mut env = BTreeMap::from([
        ("AWS_ROLE_ARN".to_owned(), role_arn.to_owned()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".to_owned(),
            TOKEN_FILE.to_owned(),
        ),
        // STS is on the S3 listener: the SDK's STS client follows AWS_ENDPOINT_URL.
        ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
        ("AWS_REGION".to_owned(), ctx.settings.region.clone()),
        ("AWS_DEFAULT_REGION".to_owned(), ctx.settings.region.clone()),
        (
            "COFFER_STS_AUDIENCE".to_owned(),
            ctx.settings.sts_audience.clone(),
        ),
    ]);
    if let Some(bucket) = single_bucket {
        env.insert("BUCKET_NAME".to_owned(), bucket.to_owned());
    }
    env
}

fn is_ours(config_map: &ConfigMap, key: &AccessKey) -> bool {
    let uid = key.uid();
    let owned = config_map
        .owner_references()
        .iter()
        .any(|r| Some(&r.uid) == uid.as_ref() && r.kind == KIND);
    let labels = config_map.labels();
    let labelled = labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
        && labels.get(ACCESS_KEY_LABEL) == Some(&key.name_any());
    owned || labelled
}

async fn write_config_map(
    key: &AccessKey,
    ctx: &Context,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<()> {
    let api: Api<ConfigMap> =
        Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    let owner = OwnerReference {
        api_version: "coffer.dev/v1alpha1".to_owned(),
        kind: KIND.to_owned(),
        name: key.name_any(),
        uid: key.uid().ok_or(Error::MissingField("metadata.uid"))?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut desired = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: key.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
                (ACCESS_KEY_LABEL.to_owned(), key.name_any()),
            ])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    };
    match api.get_opt(name).await? {
        None => {
            api.create(&PostParams::default(), &desired).await?;
        }
        Some(existing) if !is_ours(&existing, key) => {
            return Err(Error::invalid(
                "ConfigMapConflict",
                format!(
                    "ConfigMap {name} exists and was not created for this AccessKey; refusing to overwrite it"
                ),
            ));
        }
        Some(existing) => {
            let same = existing.data == desired.data
                && existing.metadata.owner_references == desired.metadata.owner_references;
            if !same {
                desired.metadata.resource_version = existing.metadata.resource_version;
                api.replace(name, &PostParams::default(), &desired).await?;
            }
        }
    }
    Ok(())
}

/// Deletes this AccessKey's role (sessions go with it) and ConfigMap, if any.
pub async fn remove(key: &AccessKey, ctx: &Context) -> Result<()> {
    let namespace = key.namespace().unwrap_or_default();
    let name = role_name(&namespace, &key.name_any());
    if let Some(role) = ctx.store.get_role(&name).await?
        && role.owner == owner_of(&namespace, &key.name_any())
    {
        match ctx.store.delete_role(&name).await {
            Ok(()) | Err(MetaError::NoSuchRole(_)) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(role = %name, "workload identity role deleted");
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let config_map = config_map_name(key);
    if validate_object_name(&config_map).is_ok()
        && let Some(existing) = api.get_opt(&config_map).await?
        && is_ours(&existing, key)
    {
        match api.delete(&config_map, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_valid_and_distinct() {
        assert_eq!(role_name("team-a", "app"), "k8s.team-a.app");
        let long = "x".repeat(200);
        let hashed = role_name("team-a", &long);
        assert!(valid_role_name(&hashed), "{hashed}");
        assert_ne!(hashed, role_name("team-b", &long));
    }
}
