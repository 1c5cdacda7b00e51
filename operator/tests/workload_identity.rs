//! `AccessKey.spec.workloadIdentity` against the in-process API server, the
//! metadata store and a real coffer-server trusting a test ServiceAccount
//! issuer: the operator writes a role and a ConfigMap; a token of a listed
//! ServiceAccount buys credentials that work within the grants, another
//! ServiceAccount's token buys nothing; removing the field removes both.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_operator::crd::{AccessKey, Bucket};
use coffer_operator::workload_identity;
use coffer_server::sts::{IssuerConfig, JwksSource};
use common::{Harness, NS};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::json;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The cluster's ServiceAccount token signer, with its JWKS in a file.
struct Issuer {
    key: EcdsaKeyPair,
    jwks_file: std::path::PathBuf,
}

impl Issuer {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key");
        let point = key.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "sa", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]});
        let jwks_file = coffer_testkit::temp_dir("issuer").join("jwks.json");
        std::fs::write(&jwks_file, jwks.to_string()).expect("jwks");
        Self { key, jwks_file }
    }

    /// A projected token of ServiceAccount `account` in `NS`, for `audience`.
    fn token(&self, account: &str, audience: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({"iss": ISSUER, "aud": [audience],
            "sub": format!("system:serviceaccount:{NS}:{account}"),
            "iat": now, "nbf": now, "exp": now + 600});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "sa"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn between<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&close)? + start;
    Some(&text[start..end])
}

/// AssumeRoleWithWebIdentity as a pod's SDK sends it (form POST, unsigned),
/// with what the ConfigMap gives; the temporary credentials or the error code.
async fn exchange(
    env: &BTreeMap<String, String>,
    token: &str,
) -> Result<aws_credential_types::Credentials, String> {
    let body = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=pod&RoleArn={}&WebIdentityToken={}",
        urlencoding::encode(&env["AWS_ROLE_ARN"]),
        urlencoding::encode(token)
    );
    let response = reqwest::Client::new()
        .post(format!("{}/", env["AWS_ENDPOINT_URL"]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("STS request");
    let text = response.text().await.expect("body");
    let field = |tag| between(&text, tag).map(str::to_owned);
    match (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("SessionToken"),
    ) {
        (Some(id), Some(secret), Some(token)) => Ok(aws_credential_types::Credentials::new(
            id,
            secret,
            Some(token),
            None,
            "web-identity",
        )),
        _ => Err(field("Code").unwrap_or(text)),
    }
}

fn s3_with(
    env: &BTreeMap<String, String>,
    credentials: aws_credential_types::Credentials,
) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new(env["AWS_REGION"].clone()))
        .endpoint_url(env["AWS_ENDPOINT_URL"].clone())
        .credentials_provider(credentials)
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn config_map(h: &Harness, name: &str) -> Option<BTreeMap<String, String>> {
    Api::<ConfigMap>::namespaced(h.client.clone(), NS)
        .get_opt(name)
        .await
        .expect("get configmap")
        .map(|c| c.data.unwrap_or_default())
}

#[tokio::test]
async fn workload_identity_gives_listed_service_accounts_the_grants_and_no_one_else() {
    let issuer = Issuer::new();
    let jwks = issuer.jwks_file.clone();
    let mut h = Harness::start_with(|config| {
        config.sts.issuers = vec![IssuerConfig {
            issuer: ISSUER.to_owned(),
            jwks: JwksSource::File(jwks),
        }];
    })
    .await;
    h.set_oidc_issuer(ISSUER);
    for name in ["photos", "other"] {
        h.create::<Bucket>(&format!(
            "apiVersion: coffer.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec: {{}}\n"
        ))
        .await;
        h.reconcile_bucket(NS, name)
            .await
            .expect("bucket reconciles");
    }
    h.create::<AccessKey>(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: AccessKey\nmetadata:\n  name: app\n  namespace: {NS}\n\
         spec:\n  buckets:\n  - name: photos\n    access: ReadWrite\n  workloadIdentity:\n    serviceAccounts: [app, worker]\n"
    ))
    .await;
    h.reconcile_key(NS, "app").await.expect("key reconciles");
    assert_eq!(
        h.key_condition(NS, "app", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    assert_eq!(
        h.key_condition(NS, "app", workload_identity::CONDITION)
            .await,
        Some(("True".into(), "Provisioned".into()))
    );
    let key = h.keys().get("app").await.expect("key");
    let role_arn = key.status.and_then(|s| s.role_arn).expect("status.roleArn");
    assert_eq!(role_arn, "arn:aws:iam::coffer:role/k8s.team-a.app");
    let role = h
        .store
        .get_role("k8s.team-a.app")
        .await
        .expect("store")
        .expect("role");
    assert_eq!(role.owner, "k8s:team-a/app");

    // The ConfigMap: what a pod needs, and no secret.
    let env = config_map(&h, "app-workload-identity")
        .await
        .expect("ConfigMap written");
    assert_eq!(env["AWS_ROLE_ARN"], role_arn);
    assert_eq!(
        env["AWS_WEB_IDENTITY_TOKEN_FILE"],
        workload_identity::TOKEN_FILE
    );
    assert_eq!(env["BUCKET_NAME"], "team-a.photos");
    assert!(env.contains_key("AWS_ENDPOINT_URL") && env.contains_key("AWS_REGION"));
    assert!(!env.contains_key("AWS_SECRET_ACCESS_KEY"));
    // Static keys are still provisioned alongside.
    assert!(
        h.secret_env(NS, "app")
            .await
            .contains_key("AWS_SECRET_ACCESS_KEY")
    );

    // A pod running as `worker` (listed) reads and writes within the grants.
    let creds = exchange(&env, &issuer.token("worker", "sts.coffer.dev"))
        .await
        .expect("a listed ServiceAccount gets credentials");
    let s3 = s3_with(&env, creds);
    s3.put_object()
        .bucket("team-a.photos")
        .key("cat.jpg")
        .body(b"meow".to_vec().into())
        .send()
        .await
        .expect("write within the grant");
    let refused = s3.list_objects_v2().bucket("team-a.other").send().await;
    assert!(refused.is_err(), "outside the grants");

    // Another ServiceAccount, or the right one with another audience: nothing.
    assert_eq!(
        exchange(&env, &issuer.token("intruder", "sts.coffer.dev"))
            .await
            .err()
            .as_deref(),
        Some("AccessDenied")
    );
    assert_eq!(
        exchange(&env, &issuer.token("app", "https://kubernetes.default.svc"))
            .await
            .err()
            .as_deref(),
        Some("AccessDenied")
    );

    // A grant narrowed in the spec narrows the role, and so live sessions.
    h.keys()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"buckets": [{"name": "photos", "access": "ReadOnly"}]}})),
        )
        .await
        .expect("patch");
    h.reconcile_key(NS, "app").await.expect("key reconciles");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let denied = s3
        .put_object()
        .bucket("team-a.photos")
        .key("dog.jpg")
        .body(b"woof".to_vec().into())
        .send()
        .await;
    assert!(denied.is_err(), "the session lost the write grant");
    s3.get_object()
        .bucket("team-a.photos")
        .key("cat.jpg")
        .send()
        .await
        .expect("reads still granted");

    // Dropping workloadIdentity removes the role (and its sessions) and the ConfigMap.
    h.keys()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workloadIdentity": null}})),
        )
        .await
        .expect("patch");
    h.reconcile_key(NS, "app").await.expect("key reconciles");
    assert_eq!(
        h.key_condition(NS, "app", workload_identity::CONDITION)
            .await,
        Some(("False".into(), "NotRequested".into()))
    );
    assert!(
        h.store
            .get_role("k8s.team-a.app")
            .await
            .expect("store")
            .is_none()
    );
    assert!(config_map(&h, "app-workload-identity").await.is_none());
    assert_eq!(
        exchange(&env, &issuer.token("app", "sts.coffer.dev"))
            .await
            .err()
            .as_deref(),
        Some("AccessDenied")
    );
}

#[tokio::test]
async fn workload_identity_without_an_issuer_is_reported_not_half_done() {
    let h = Harness::start().await;
    h.create::<AccessKey>(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: AccessKey\nmetadata:\n  name: app\n  namespace: {NS}\n\
         spec:\n  workloadIdentity:\n    serviceAccounts: [app]\n"
    ))
    .await;
    let _ = h.reconcile_key(NS, "app").await;
    assert_eq!(
        h.key_condition(NS, "app", workload_identity::CONDITION)
            .await,
        Some(("False".into(), "WorkloadIdentityUnavailable".into()))
    );
    assert_eq!(
        h.key_condition(NS, "app", "Ready").await.map(|c| c.1),
        Some("WorkloadIdentityUnavailable".into())
    );
    assert!(config_map(&h, "app-workload-identity").await.is_none());
}

#[tokio::test]
async fn workload_identity_only_revokes_the_static_key_and_deletes_its_secret() {
    let issuer = Issuer::new();
    let jwks = issuer.jwks_file.clone();
    let mut h = Harness::start_with(|config| {
        config.sts.issuers = vec![IssuerConfig {
            issuer: ISSUER.to_owned(),
            jwks: JwksSource::File(jwks),
        }];
    })
    .await;
    h.set_oidc_issuer(ISSUER);
    h.create::<Bucket>(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: photos\n  namespace: {NS}\nspec: {{}}\n"
    ))
    .await;
    h.reconcile_bucket(NS, "photos")
        .await
        .expect("bucket reconciles");
    // First both, then workload identity only.
    h.create::<AccessKey>(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: AccessKey\nmetadata:\n  name: app\n  namespace: {NS}\n\
         spec:\n  buckets:\n  - name: photos\n    access: ReadWrite\n  workloadIdentity:\n    serviceAccounts: [app]\n"
    ))
    .await;
    h.reconcile_key(NS, "app").await.expect("key reconciles");
    let static_env = h.secret_env(NS, "app").await;
    h.keys()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workloadIdentity": {"staticKey": false}}})),
        )
        .await
        .expect("patch");
    h.reconcile_key(NS, "app").await.expect("key reconciles");

    assert_eq!(
        h.key_condition(NS, "app", "Ready").await,
        Some(("True".into(), "Provisioned".into()))
    );
    let key = h.keys().get("app").await.expect("key");
    let status = key.status.expect("status");
    assert_eq!(status.access_key_id, None);
    assert!(status.role_arn.is_some());
    assert!(
        h.secrets().get_opt("app").await.expect("get").is_none(),
        "the static key Secret is deleted"
    );
    assert!(
        h.store
            .list_access_keys_by_owner("k8s:team-a/app")
            .await
            .expect("store")
            .is_empty(),
        "the static key is revoked"
    );
    let old_key = common::s3_client(&static_env)
        .list_objects_v2()
        .bucket("team-a.photos")
        .send()
        .await;
    assert!(old_key.is_err(), "the revoked key no longer works");

    let env = config_map(&h, "app-workload-identity")
        .await
        .expect("ConfigMap written");
    let creds = exchange(&env, &issuer.token("app", "sts.coffer.dev"))
        .await
        .expect("credentials from the token");
    s3_with(&env, creds)
        .list_objects_v2()
        .bucket("team-a.photos")
        .send()
        .await
        .expect("workload identity works on its own");
}
