//! The CRD YAML checked in under `crds/` (and copied into the Helm chart) is what
//! the Rust types generate, and follows the GitOps rules.

mod common;

use coffer_operator::crd::crd_yaml;
use serde_json::Value;

const REGENERATE: &str = "regenerate with: cargo run -p coffer-operator -- crdgen > crds/coffer.yaml && cp crds/coffer.yaml charts/coffer/files/crds.yaml";

#[test]
fn checked_in_crds_match_the_rust_types() {
    let generated = crd_yaml().expect("CRDs serialize");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for path in ["crds/coffer.yaml", "charts/coffer/files/crds.yaml"] {
        let on_disk = std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_default();
        assert!(on_disk == generated, "{path} is out of date; {REGENERATE}");
    }
}

fn walk<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), value));
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| walk(v, format!("{path}.{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| walk(v, format!("{path}[{i}]"), out)),
        _ => {}
    }
}

#[test]
fn schemas_have_no_defaults_and_every_field_is_described() {
    for crd in common::crds() {
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut nodes = Vec::new();
        walk(schema, String::new(), &mut nodes);
        for (path, node) in &nodes {
            assert!(
                node.get("default").is_none(),
                "schema default at {path}: GitOps tools would see drift"
            );
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    if ["apiVersion", "kind", "metadata"].contains(&name.as_str())
                        && path.is_empty()
                    {
                        continue;
                    }
                    assert!(
                        prop.get("description")
                            .and_then(Value::as_str)
                            .is_some_and(|d| !d.is_empty()),
                        "{path}.{name} has no description for kubectl explain"
                    );
                }
            }
        }
    }
}

#[test]
fn crds_have_short_names_category_printer_columns_and_immutability_rules() {
    let crds = common::crds();
    let by_kind = |kind: &str| {
        crds.iter()
            .find(|c| c["spec"]["names"]["kind"] == kind)
            .unwrap_or_else(|| panic!("CRD for {kind}"))
            .clone()
    };
    let bucket = by_kind("Bucket");
    let key = by_kind("AccessKey");
    for (crd, short) in [(&bucket, "cbkt"), (&key, "ckey")] {
        assert_eq!(crd["spec"]["group"], "coffer.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], short);
        assert_eq!(crd["spec"]["names"]["categories"][0], "coffer");
        assert_eq!(
            crd["spec"]["versions"][0]["subresources"]["status"],
            serde_json::json!({})
        );
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    let columns = |crd: &Value| -> Vec<String> {
        crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    for name in ["Bucket", "Ready", "Age"] {
        assert!(
            columns(&bucket).contains(&name.to_owned()),
            "Bucket column {name}"
        );
    }
    for name in ["Secret", "Key ID", "Ready", "Age"] {
        assert!(
            columns(&key).contains(&name.to_owned()),
            "AccessKey column {name}"
        );
    }
    let rules = bucket["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["x-kubernetes-validations"]
        .to_string();
    assert!(rules.contains("bucketName is immutable") && rules.contains("oldSelf.bucketName"));
    assert!(rules.contains("objectLock.enabled is immutable"));
}

/// The CEL rules, evaluated (with `oldSelf`) by the in-process API server.
#[tokio::test]
async fn cel_rules_make_bucket_name_and_object_lock_immutable() {
    use coffer_operator::crd::Bucket;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use serde_json::json;

    let api = common::apiserver::ApiServer::start(&common::crds()).await;
    let buckets: Api<Bucket> = Api::namespaced(api.client(), "team-a");
    let create = |name: &str, spec: Value| {
        let bucket: Bucket = serde_json::from_value(json!({
            "apiVersion": "coffer.dev/v1alpha1", "kind": "Bucket",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("bucket");
        let buckets = buckets.clone();
        async move { buckets.create(&PostParams::default(), &bucket).await }
    };
    let patch = |name: &'static str, spec: Value| {
        let buckets = buckets.clone();
        async move {
            buckets
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({ "spec": spec })),
                )
                .await
        }
    };
    let refused = |result: Result<Bucket, kube::Error>, message: &str| match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(status.message.contains(message), "{}", status.message);
        }
        other => panic!("expected a 422 mentioning {message:?}, got {other:?}"),
    };

    create(
        "named",
        json!({"bucketName": "fixed-name", "objectLock": {"enabled": true}}),
    )
    .await
    .expect("create");
    refused(
        patch("named", json!({"bucketName": "other-name"})).await,
        "bucketName is immutable",
    );
    refused(
        patch("named", json!({"bucketName": null})).await,
        "bucketName is immutable",
    );
    refused(
        patch("named", json!({"objectLock": {"enabled": false}})).await,
        "objectLock.enabled is immutable",
    );
    patch("named", json!({"versioning": "Enabled", "objectLock": {"enabled": true, "defaultRetention": {"mode": "COMPLIANCE", "days": 1}}}))
        .await
        .expect("other fields stay editable");

    create("defaulted", json!({})).await.expect("create");
    refused(
        patch("defaulted", json!({"bucketName": "late-name"})).await,
        "bucketName is immutable",
    );
    refused(
        patch("defaulted", json!({"objectLock": {"enabled": true}})).await,
        "objectLock.enabled is immutable",
    );

    refused(
        create("both", json!({"objectLock": {"defaultRetention": {"mode": "GOVERNANCE", "days": 1, "years": 1}}})).await,
        "exactly one of days or years",
    );
}

#[test]
fn crdgen_prints_the_checked_in_crds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer-operator"))
        .arg("crdgen")
        .output()
        .expect("run coffer-operator crdgen");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        crd_yaml().expect("yaml")
    );
}
