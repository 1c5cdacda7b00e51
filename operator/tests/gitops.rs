//! The Argo CD health checks in docs/gitops.md, run in Lua 5.1 (the dialect of
//! Argo CD's gopher-lua) against Bucket and AccessKey objects in each state.

use mlua::{Lua, LuaSerdeExt, Table};
use serde_json::{Value, json};

/// The Lua script under `resource.customizations.health.coffer.dev_<kind>: |`.
fn health_script(kind: &str) -> String {
    let doc = include_str!("../../docs/gitops.md");
    let marker = format!("resource.customizations.health.coffer.dev_{kind}: |");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no health check for {kind}"));
    let mut lines = doc[start..].lines().skip(1);
    let first = lines.next().expect("script body");
    let indent = first.len() - first.trim_start().len();
    let mut script = vec![first[indent..].to_owned()];
    for line in lines {
        if line.trim().is_empty() {
            script.push(String::new());
            continue;
        }
        if line.len() - line.trim_start().len() < indent || line.starts_with("```") {
            break;
        }
        script.push(line[indent..].to_owned());
    }
    script.join("\n")
}

fn health(kind: &str, object: Value) -> (String, String) {
    let lua = Lua::new();
    let obj = lua.to_value(&object).expect("object to Lua");
    lua.globals().set("obj", obj).expect("set obj");
    let hs: Table = lua
        .load(health_script(kind))
        .eval()
        .unwrap_or_else(|e| panic!("{kind} health script failed: {e}"));
    (
        hs.get::<String>("status").expect("status"),
        hs.get::<Option<String>>("message")
            .expect("message")
            .unwrap_or_default(),
    )
}

fn object(generation: i64, observed: i64, conditions: Value) -> Value {
    json!({
        "metadata": {"name": "x", "generation": generation},
        "status": {"observedGeneration": observed, "conditions": conditions},
    })
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message})
}

#[test]
fn bucket_health_follows_ready_reconciling_and_deletion_blocked() {
    let fresh = json!({"metadata": {"name": "x", "generation": 1}});
    assert_eq!(health("Bucket", fresh).0, "Progressing");

    let ready = vec![
        condition("Ready", "True", "Provisioned", "Bucket team-a-x is ready"),
        condition("Reconciling", "False", "Provisioned", ""),
    ];
    assert_eq!(
        health("Bucket", object(2, 2, json!(ready))),
        ("Healthy".into(), "Bucket team-a-x is ready".into())
    );
    assert_eq!(
        health("Bucket", object(3, 2, json!(ready))).0,
        "Progressing",
        "stale status"
    );

    let taken = vec![
        condition("Ready", "False", "BucketNameTaken", "owned by someone else"),
        condition("Reconciling", "False", "BucketNameTaken", ""),
    ];
    let (status, message) = health("Bucket", object(1, 1, json!(taken)));
    assert_eq!(status, "Degraded");
    assert!(message.contains("BucketNameTaken"));

    let blocked = vec![
        condition("Ready", "True", "Provisioned", "ok"),
        condition(
            "DeletionBlocked",
            "True",
            "BucketNotEmpty",
            "bucket is not empty",
        ),
    ];
    assert_eq!(health("Bucket", object(1, 1, json!(blocked))).0, "Degraded");
}

#[test]
fn access_key_health_is_progressing_while_waiting_and_healthy_while_rotating() {
    let waiting = vec![
        condition(
            "Ready",
            "False",
            "BucketNotReady",
            "Bucket team-a/x is not ready",
        ),
        condition(
            "Reconciling",
            "True",
            "BucketNotReady",
            "Bucket team-a/x is not ready",
        ),
    ];
    assert_eq!(
        health("AccessKey", object(1, 1, json!(waiting))).0,
        "Progressing"
    );

    let rotating = vec![
        condition(
            "Ready",
            "True",
            "Provisioned",
            "Credentials are in Secret x",
        ),
        condition(
            "Rotating",
            "True",
            "PreviousKeyValid",
            "The previous key stays valid until T",
        ),
    ];
    assert_eq!(
        health("AccessKey", object(1, 1, json!(rotating))),
        (
            "Healthy".into(),
            "The previous key stays valid until T".into()
        )
    );

    let conflict = vec![
        condition("Ready", "False", "SecretConflict", "Secret x exists"),
        condition("Reconciling", "False", "SecretConflict", "Secret x exists"),
    ];
    assert_eq!(
        health("AccessKey", object(1, 1, json!(conflict))).0,
        "Degraded"
    );
}
