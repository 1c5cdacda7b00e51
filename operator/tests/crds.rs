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
