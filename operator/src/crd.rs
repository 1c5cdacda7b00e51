//! The custom resources: `Bucket` and `AccessKey` (group `coffer.dev`, version
//! `v1alpha1`). The CRD YAML in `crds/` is generated from these types.
//!
//! GitOps rule: no field has a schema `default` (no `#[serde(default)]`); every
//! default is applied in Rust, so what the user applied is what the API stores.

use std::borrow::Cow;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "coffer.dev";
/// Annotation that rotates an AccessKey's credentials whenever its value changes.
pub const ROTATE_ANNOTATION: &str = "coffer.dev/rotate";
/// Annotation on a generated Secret naming the access key id it holds, so a
/// reloader can restart pods when it changes.
pub const KEY_ID_ANNOTATION: &str = "coffer.dev/access-key-id";

// ---------------------------------------------------------------------------
// Bucket
// ---------------------------------------------------------------------------

/// A bucket in Coffer's object store, owned by this resource.
// The printer columns repeat `type_`/`priority` values, which this lint misreads.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "coffer.dev",
    version = "v1alpha1",
    kind = "Bucket",
    namespaced,
    status = "BucketStatus",
    derive = "PartialEq",
    shortname = "cbkt",
    category = "coffer",
    annotation("helm.sh/resource-policy", "keep"),
    doc = "A bucket in Coffer's S3-compatible object store. The operator creates it, applies its settings and reports usage.",
    printcolumn(
        name = "Bucket",
        type_ = "string",
        json_path = ".status.bucketName",
        description = "Name of the bucket in the S3 API"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the bucket is provisioned"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the bucket is (not) ready",
        priority = "1"
    ),
    printcolumn(
        name = "Objects",
        type_ = "integer",
        json_path = ".status.usage.objects",
        description = "Number of objects",
        priority = "1"
    ),
    printcolumn(
        name = "Bytes",
        type_ = "integer",
        json_path = ".status.usage.bytes",
        description = "Bytes stored",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "has(self.bucketName) == has(oldSelf.bucketName) && (!has(self.bucketName) || self.bucketName == oldSelf.bucketName)"
).message("bucketName is immutable"))]
#[x_kube(validation = Rule::new(
    "(has(self.objectLock) && has(self.objectLock.enabled) && self.objectLock.enabled) == (has(oldSelf.objectLock) && has(oldSelf.objectLock.enabled) && oldSelf.objectLock.enabled)"
).message("objectLock.enabled is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct BucketSpec {
    /// Name of the bucket in the S3 API. Defaults to `<namespace>.<name>`. Must follow
    /// the S3 naming rules (3-63 characters: lower-case letters, digits, dots and
    /// hyphens, starting and ending with a letter or digit) and, for a new bucket,
    /// be `<namespace>` or start with `<namespace>.` unless an administrator allows
    /// other names. Immutable.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub bucket_name: Option<String>,

    /// Object versioning: `Enabled` keeps every version of an object, `Suspended`
    /// stops creating new versions. Unset: never enabled; once set, removing it
    /// suspends versioning (it cannot be undone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versioning: Option<VersioningState>,

    /// Object Lock (WORM): whether it is enabled (immutable) and the default
    /// retention applied to new objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,

    /// Limits on what the bucket may hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,

    /// An additional bucket policy (IAM policy JSON, as in S3 PutBucketPolicy).
    /// Every statement must name a Principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,

    /// Object Ownership: `BucketOwnerEnforced` turns ACLs off (every object
    /// belongs to the bucket owner); `BucketOwnerPreferred` and `ObjectWriter`
    /// turn them on for applications that send `x-amz-acl`. Unset: ACLs off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ownership: Option<ObjectOwnershipSetting>,

    /// Default server-side encryption of new objects: `SSE-S3` (each object's
    /// data key wrapped by the servers' master key) or `SSE-KMS` (data keys
    /// under a KMS key of the bucket's own, `bucket/<bucket name>`, which the
    /// operator creates; disabling it makes the bucket's objects unreadable).
    /// Unset: objects are encrypted only when their writers ask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<BucketEncryption>,

    /// Lifecycle rules in the S3 shape (expiration, noncurrent version expiration,
    /// aborting incomplete multipart uploads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Vec<LifecycleRule>>,

    /// CORS rules in the S3 shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Vec<CorsRule>>,

    /// How the bucket's new objects are stored: `Replicas` (whole copies on the
    /// cluster's `--replicas` nodes) or `Erasure` (`dataShards` + `parityShards`
    /// Reed–Solomon shards on distinct nodes; 4+2 survives two lost nodes at
    /// 1.5 bytes per byte). Objects smaller than the servers'
    /// `--erasure-min-size` stay replicated; existing objects keep how they were
    /// stored. Unset (or removed): the cluster default (`--erasure`, else replicas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_protection: Option<DataProtection>,
    /// What happens to the bucket when this resource is deleted: `Retain` (the
    /// default) keeps it and its objects; `Delete` deletes it, refusing while it
    /// holds objects unless `forceDelete` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// With `deletionPolicy: Delete`, delete the bucket's objects too. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_delete: Option<bool>,

    /// Take over an existing bucket of this name retained from a deleted Bucket of
    /// this namespace; one retained from another namespace, or one of unknown
    /// origin (the CLI, the S3 API), only where an administrator allows it. A
    /// bucket of a live Bucket resource is never taken. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,

    /// Who else may use this bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<BucketAccess>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ObjectOwnershipSetting {
    BucketOwnerEnforced,
    BucketOwnerPreferred,
    ObjectWriter,
}

/// Default encryption of a bucket's new objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct BucketEncryption {
    /// `SSE-S3` or `SSE-KMS`.
    #[serde(rename = "type")]
    pub type_: EncryptionType,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EncryptionType {
    #[serde(rename = "SSE-S3")]
    SseS3,
    #[serde(rename = "SSE-KMS")]
    SseKms,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VersioningState {
    Enabled,
    Suspended,
}

/// A bucket's data protection: `Replicas`, or `Erasure` with its shard counts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new(
    "self.scheme == 'Erasure' ? (has(self.dataShards) && has(self.parityShards) && self.dataShards + self.parityShards <= 64) : (!has(self.dataShards) && !has(self.parityShards))"
).message("Erasure needs dataShards and parityShards (at most 64 together); Replicas takes neither"))]
#[serde(rename_all = "camelCase")]
pub struct DataProtection {
    /// `Replicas` or `Erasure`.
    pub scheme: DataProtectionScheme,
    /// Data shards (K) of an `Erasure` scheme.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 63))]
    pub data_shards: Option<u32>,
    /// Parity shards (M) of an `Erasure` scheme: how many nodes may be lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 63))]
    pub parity_shards: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DataProtectionScheme {
    Replicas,
    Erasure,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    Retain,
    Delete,
}

/// Object Lock configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectLock {
    /// Whether Object Lock is enabled on the bucket. Immutable. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Retention applied to new objects that do not set their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_retention: Option<DefaultRetention>,
}

/// A default retention period: a mode and exactly one of `days` or `years`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.days) != has(self.years)").message("set exactly one of days or years"))]
#[serde(rename_all = "camelCase")]
pub struct DefaultRetention {
    /// `GOVERNANCE` (privileged users may shorten it) or `COMPLIANCE` (nobody can).
    pub mode: RetentionMode,
    /// Retention period in days.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub days: Option<u32>,
    /// Retention period in years.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub years: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum RetentionMode {
    Governance,
    Compliance,
}

/// Bucket quota.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Maximum bytes stored, as a Kubernetes quantity (`10Gi`, `500M`, `1000000`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Quantity>,
    /// Maximum number of objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_objects: Option<u64>,
}

/// A Kubernetes quantity written as a string (`10Gi`) or a plain integer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum Quantity {
    Int(u64),
    String(String),
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
        })
    }
}

const QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

impl Quantity {
    /// The quantity in bytes; `None` when it is not a well-formed byte quantity.
    pub fn to_bytes(&self) -> Option<u64> {
        match self {
            Quantity::Int(n) => Some(*n),
            Quantity::String(s) => parse_quantity(s),
        }
    }
}

fn parse_quantity(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut bytes = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let digits: u32 = fraction.len().try_into().ok()?;
        let scale = 10u128.checked_pow(digits)?;
        let fraction: u128 = fraction.parse().ok()?;
        // Round up: a quota of 1.5k bytes is 1500, 0.0001k is 1.
        bytes = bytes.checked_add((fraction.checked_mul(multiplier)?).div_ceil(scale))?;
    }
    u64::try_from(bytes).ok()
}

/// A lifecycle rule (S3 `LifecycleRule`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleRule {
    /// Rule identifier, unique within the bucket.
    #[schemars(length(min = 1, max = 255))]
    pub id: String,
    /// `Enabled` or `Disabled`. Default `Enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RuleStatus>,
    /// Only objects whose key starts with this prefix. Default: every object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Expire current object versions this many days after creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub expiration_days: Option<u32>,
    /// Remove noncurrent versions this many days after they became noncurrent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub noncurrent_version_expiration_days: Option<u32>,
    /// Abort multipart uploads still incomplete this many days after they started.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub abort_incomplete_multipart_upload_days: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RuleStatus {
    Enabled,
    Disabled,
}

/// A CORS rule (S3 `CORSRule`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsRule {
    /// Rule identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Origins allowed to make cross-origin requests (`*` for any, or one `*` wildcard).
    #[schemars(length(min = 1))]
    pub allowed_origins: Vec<String>,
    /// HTTP methods allowed: GET, PUT, POST, DELETE, HEAD.
    #[schemars(length(min = 1))]
    pub allowed_methods: Vec<CorsMethod>,
    /// Request headers allowed in a preflight request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_headers: Option<Vec<String>>,
    /// Response headers browsers may expose to scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    /// How long browsers may cache the preflight response, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum CorsMethod {
    Get,
    Put,
    Post,
    Delete,
    Head,
}

/// Access to the bucket from outside its namespace. The bucket's own namespace
/// always has every access mode; another namespace gets at most what a share
/// names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketAccess {
    /// Namespaces whose AccessKeys may be granted this bucket `ReadOnly`, the
    /// whole bucket (`*` for all namespaces). For another mode or a prefix, use
    /// `shares`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<Vec<String>>,
    /// Namespaces whose AccessKeys may be granted this bucket, each with the most
    /// access they may get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<Vec<NamespaceShare>>,
}

/// What one namespace (or every namespace) may get of a shared bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceShare {
    /// A namespace, or `*` for every namespace.
    #[schemars(
        regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"),
        length(max = 63)
    )]
    pub namespace: String,
    /// The most an AccessKey there may be granted: `ReadOnly` (the default),
    /// `WriteOnly`, `ReadWrite` (covers ReadOnly and WriteOnly) or `Admin`
    /// (covers all). A grant asking for more is refused (`AccessNotShared`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_access: Option<AccessMode>,
    /// Only object keys under this prefix: a grant must name this prefix (or a
    /// longer one starting with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Observed state of a Bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketStatus {
    /// Current state: `Ready`, `Reconciling`, `Degraded`, `SettingsEnforced`,
    /// `DeletionBlocked`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]),
        transform = no_default
    )]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the bucket in the S3 API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// S3 endpoint URL serving the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Objects and bytes stored, refreshed periodically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<BucketUsage>,
}

/// Storage used by a bucket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct BucketUsage {
    /// Number of objects.
    pub objects: u64,
    /// Bytes stored (sum of object sizes).
    pub bytes: u64,
}

// ---------------------------------------------------------------------------
// AccessKey
// ---------------------------------------------------------------------------

/// S3 credentials scoped to some buckets, delivered as a Secret.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "coffer.dev",
    version = "v1alpha1",
    kind = "AccessKey",
    namespaced,
    status = "AccessKeyStatus",
    derive = "PartialEq",
    shortname = "ckey",
    category = "coffer",
    annotation("helm.sh/resource-policy", "keep"),
    doc = "S3 credentials for Coffer, scoped by an IAM policy generated from bucket grants, written to a Secret that pods load with envFrom.",
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.secretName",
        description = "Secret holding the credentials"
    ),
    printcolumn(
        name = "Key ID",
        type_ = "string",
        json_path = ".status.accessKeyId",
        description = "Current access key id"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the credentials are usable"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the key is (not) ready",
        priority = "1"
    ),
    printcolumn(
        name = "Last Rotated",
        type_ = "date",
        json_path = ".status.lastRotated",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeySpec {
    /// Name of the Secret to write the credentials to (a Kubernetes object name:
    /// lower-case letters, digits, `-` and `.`). Defaults to the AccessKey's
    /// name. The operator never overwrites a Secret it did not create.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,
    /// Buckets this key may use, each with its own access mode and optional key prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<BucketGrant>>,
    /// An additional identity policy (IAM policy JSON) that narrows the grants: Deny
    /// statements, or Allow statements within the granted buckets, prefixes and
    /// modes. Anything wider is refused (`PolicyExceedsGrants`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Automatic rotation of the credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    /// Workload identity: pods running as these ServiceAccounts (of this
    /// namespace) exchange their projected ServiceAccount token for
    /// short-lived credentials with the same grants. The operator writes a
    /// role and a ConfigMap `<name>-workload-identity` (`AWS_ROLE_ARN`,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`, ...; no secret in it). The static key
    /// Secret is written as well.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentity>,
}

/// Who may use an AccessKey's grants through workload identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentity {
    /// ServiceAccount names in the AccessKey's namespace.
    #[schemars(length(min = 1))]
    pub service_accounts: Vec<String>,
    /// Whether the static key Secret is written too (unset: yes). `false`:
    /// workload identity only; any key this AccessKey had is revoked and its
    /// Secret deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_key: Option<bool>,
}

/// Access to one Bucket resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketGrant {
    /// Name of the Bucket resource.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Namespace of the Bucket resource. Defaults to the AccessKey's namespace; another
    /// namespace works only when that Bucket lists this one in `access.allowedNamespaces`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `ReadOnly` (list, get), `ReadWrite` (also put, delete, multipart),
    /// `WriteOnly` (put and multipart, no reads or listing), or `Admin` (also object
    /// retention and legal holds, and reading the bucket's settings). No mode
    /// administers the bucket: its configuration belongs to its Bucket resource.
    /// In another namespace, at most what the Bucket shares with this one.
    pub access: AccessMode,
    /// Limit the grant to object keys starting with this prefix (e.g. `team-a/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    ReadOnly,
    ReadWrite,
    WriteOnly,
    Admin,
}

/// Rotation settings. Rotation on demand: set the annotation `coffer.dev/rotate`
/// to any new value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.overlap) || duration(self.overlap) <= duration('24h')").message("rotation.overlap must be at most 24h"))]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Rotate automatically this long after the last rotation (Go duration such as
    /// `720h`). Unset: only on demand.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"))]
    pub every: Option<String>,
    /// How long the previous key keeps working after a rotation (Go duration).
    /// Default `10m`, at most `24h`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(h|m|s))+$"), length(max = 32))]
    pub overlap: Option<String>,
}

/// Observed state of an AccessKey.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyStatus {
    /// Current state: `Ready`, `Reconciling`, `Degraded`, `Rotating`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]),
        transform = no_default
    )]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The access key id currently in the Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The Secret holding the credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// When the current key was issued (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<String>,
    /// The value of the `coffer.dev/rotate` annotation last acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_token: Option<String>,
    /// The role pods assume with workload identity (`AWS_ROLE_ARN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// A status condition, as in `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason for the last transition.
    pub reason: String,
    /// Human-readable details.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation of the spec the condition was computed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Keeps `#[serde(default)]` (tolerant reading of status) out of the schema: the
/// CRDs carry no `default:` values.
fn no_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

/// The CRDs as multi-document YAML, as `coffer-operator crdgen` prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in [Bucket::crd(), AccessKey::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_bytes() {
        assert_eq!(parse_quantity("10Gi"), Some(10 << 30));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("1.5k"), Some(1500));
        assert_eq!(parse_quantity("1000"), Some(1000));
        assert_eq!(parse_quantity("10Xi"), None);
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("100Ei"), None);
    }
}
