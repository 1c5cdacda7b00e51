//! Every example manifest (e2e/manifests and the YAML blocks in docs/) is valid
//! against the CRD schemas (structure and CEL rules) and readable by the operator's types.

mod common;

use coffer_operator::crd::{AccessKey, Bucket};
use serde_json::Value;

fn schema_for(kind: &str) -> Value {
    common::crds()
        .into_iter()
        .find(|c| c["spec"]["names"]["kind"] == kind)
        .map(|c| c["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone())
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn validate(doc: &Value) -> Result<(), Vec<String>> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let mut body = doc.clone();
    if let Some(obj) = body.as_object_mut() {
        for field in ["apiVersion", "kind", "metadata"] {
            obj.remove(field);
        }
    }
    let schema = schema_for(kind);
    common::schema::validate(&schema, &body)?;
    kube_cel::validate(&schema, &body, None)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
}

/// Coffer resources in a file: YAML documents, or ```yaml blocks of a Markdown file.
fn coffer_documents(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yaml = if path.extension().is_some_and(|e| e == "md") {
        let mut blocks = Vec::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```yaml\n") {
            let after = &rest[start + 8..];
            let end = after.find("```").unwrap_or(after.len());
            blocks.push(after[..end].to_owned());
            rest = &after[end..];
        }
        blocks.join("\n---\n")
    } else {
        text
    };
    yaml.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|doc| {
            doc["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("coffer.dev/"))
        })
        .collect()
}

#[test]
fn example_manifests_validate_against_the_crd_schemas() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut files = Vec::new();
    for dir in ["e2e/manifests", "docs"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "md") {
                files.push(path);
            }
        }
    }
    let mut checked = 0;
    for path in files {
        for doc in coffer_documents(&path) {
            let name = format!(
                "{} {}/{}",
                path.display(),
                doc["kind"],
                doc["metadata"]["name"]
            );
            if let Err(errors) = validate(&doc) {
                panic!("{name} is invalid: {errors:?}");
            }
            match doc["kind"].as_str() {
                Some("Bucket") => drop(serde_json::from_value::<Bucket>(doc.clone()).expect(&name)),
                Some("AccessKey") => {
                    drop(serde_json::from_value::<AccessKey>(doc.clone()).expect(&name))
                }
                other => panic!("{name}: unexpected kind {other:?}"),
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "expected the e2e and docs examples, validated only {checked}"
    );
}

#[test]
fn schema_validation_rejects_bad_manifests() {
    let bad = [
        ("Bucket", r#"{"spec": {"versioning": "On"}}"#, "not one of"),
        (
            "Bucket",
            r#"{"spec": {"bucketName": "Has_Upper"}}"#,
            "does not match",
        ),
        (
            "Bucket",
            r#"{"spec": {"deletionPolicy": "Delete", "surprise": 1}}"#,
            "unknown field",
        ),
        (
            "Bucket",
            r#"{"spec": {"quota": {"maxSize": "ten gigs"}}}"#,
            "does not match",
        ),
        (
            "AccessKey",
            r#"{"spec": {"buckets": [{"name": "x"}]}}"#,
            "missing required field access",
        ),
        (
            "AccessKey",
            r#"{"spec": {"rotation": {"every": "30d"}}}"#,
            "does not match",
        ),
        (
            "Bucket",
            r#"{"spec": {"objectLock": {"defaultRetention": {"mode": "GOVERNANCE"}}}}"#,
            "exactly one of days or years",
        ),
    ];
    for (kind, body, expected) in bad {
        let mut doc: Value = serde_json::from_str(body).expect("json");
        doc["kind"] = Value::String(kind.to_owned());
        let errors = validate(&doc).expect_err(body);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{body}: {errors:?}"
        );
    }
    let good: Value =
        serde_json::from_str(r#"{"kind": "Bucket", "spec": {"quota": {"maxSize": 1000}}}"#)
            .expect("json");
    validate(&good).expect("integer quantity is valid");
}
