//! Key material no rendered manifest may hold. `coffer-operator ensure-secrets`
//! (the chart's pre-install/pre-upgrade hook Job) creates each missing key Secret
//! once, with fresh random bytes, and never changes one that exists: a GitOps tool
//! that renders the chart with `helm template` then has nothing to regenerate, and
//! a master key, once made, is never replaced.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

/// A Secret holding one generated value under `key`.
#[derive(Debug, Clone)]
pub struct GeneratedSecret {
    pub name: String,
    pub key: String,
}

/// What [`ensure`] did with one Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// It existed with the key set: left exactly as it was.
    Kept,
}

#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Never repaired here: filling in a key of someone's Secret could pair new
    /// key material with data sealed under another.
    #[error(
        "Secret {name} exists without the key {key}: set it yourself (or point the chart's existingSecret at a complete Secret); it is never modified"
    )]
    Incomplete { name: String, key: String },
}

/// A fresh random value: base64 of 32 random bytes (the form `COFFER_MASTER_KEY`
/// takes, and a strong cluster secret).
fn random_value() -> String {
    coffer_server::crypto::Key::random().to_base64()
}

/// Creates each Secret of `wanted` that does not exist in `namespace`; keeps
/// every one that does. Safe to run concurrently and repeatedly.
pub async fn ensure(
    client: kube::Client,
    namespace: &str,
    wanted: &[GeneratedSecret],
) -> Result<Vec<(String, Outcome)>, EnsureError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let mut outcomes = Vec::new();
    for secret in wanted {
        let outcome = ensure_one(&api, secret).await?;
        outcomes.push((secret.name.clone(), outcome));
    }
    Ok(outcomes)
}

async fn ensure_one(api: &Api<Secret>, wanted: &GeneratedSecret) -> Result<Outcome, EnsureError> {
    if let Some(existing) = api.get_opt(&wanted.name).await? {
        return check_complete(&existing, wanted);
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(wanted.name.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                crate::MANAGER.to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(
                "coffer.dev/generated".to_owned(),
                "Created once by coffer-operator ensure-secrets and never changed; back it up."
                    .to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            wanted.key.clone(),
            ByteString(random_value().into_bytes()),
        )])),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(Outcome::Created),
        // Another run created it first: that one stands.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get(&wanted.name).await?;
            check_complete(&existing, wanted)
        }
        Err(e) => Err(e.into()),
    }
}

fn check_complete(existing: &Secret, wanted: &GeneratedSecret) -> Result<Outcome, EnsureError> {
    let has_key = existing
        .data
        .as_ref()
        .and_then(|d| d.get(&wanted.key))
        .is_some_and(|v| !v.0.is_empty())
        || existing
            .string_data
            .as_ref()
            .and_then(|d| d.get(&wanted.key))
            .is_some_and(|v| !v.is_empty());
    if has_key {
        Ok(Outcome::Kept)
    } else {
        Err(EnsureError::Incomplete {
            name: wanted.name.clone(),
            key: wanted.key.clone(),
        })
    }
}
