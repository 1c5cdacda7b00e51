//! Lifecycle configuration: Put/Get/DeleteBucketLifecycleConfiguration. Rules are
//! stored as the bucket's `lifecycle` document in the JSON shape the operator
//! writes (`{"Rules": [...]}`); the background worker in `crate::lifecycle`
//! applies them. Transitions are validated, stored and returned as AWS does, but
//! change nothing: Coffer has a single storage tier.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use super::{Coffer, meta_error};
use crate::meta::{MetaResult, MetaStore, ObjectMeta};

/// The configuration kind under which lifecycle rules are stored.
pub const LIFECYCLE: &str = "lifecycle";

const MAX_RULES: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleConfiguration {
    #[serde(rename = "Rules", default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `Enabled` or `Disabled`.
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Filter", default)]
    pub filter: Filter,
    #[serde(
        rename = "Expiration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration: Option<Expiration>,
    #[serde(
        rename = "NoncurrentVersionExpiration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub noncurrent_expiration: Option<NoncurrentExpiration>,
    #[serde(
        rename = "AbortIncompleteMultipartUpload",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub abort_incomplete: Option<AbortIncomplete>,
    #[serde(rename = "Transitions", default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    #[serde(
        rename = "NoncurrentVersionTransitions",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub noncurrent_transitions: Vec<NoncurrentTransition>,
    /// How the rule's filter was written, so Get returns it as it was put:
    /// `RulePrefix` (the legacy rule-level `Prefix`), `Empty` (`<Filter/>`),
    /// `And`; absent: one condition (or the operator's JSON).
    #[serde(rename = "Form", default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
}

/// A transition to another storage class (stored, never applied: one tier).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    #[serde(rename = "Days", default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i32>,
    #[serde(
        rename = "DateSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub date: Option<i64>,
    #[serde(rename = "StorageClass")]
    pub storage_class: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentTransition {
    #[serde(rename = "NoncurrentDays", default)]
    pub days: i32,
    #[serde(
        rename = "NewerNoncurrentVersions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub newer_versions: Option<i32>,
    #[serde(rename = "StorageClass")]
    pub storage_class: String,
}

/// Which objects a rule applies to: all of the given conditions must hold
/// (S3's `Prefix`, `Tag`, `ObjectSize*` and `And` flattened into one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(rename = "Prefix", default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(rename = "Tags", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(
        rename = "ObjectSizeGreaterThan",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub size_greater_than: Option<i64>,
    #[serde(
        rename = "ObjectSizeLessThan",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub size_less_than: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiration {
    #[serde(rename = "Days", default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i32>,
    /// Unix seconds (S3 dates are midnight UTC).
    #[serde(
        rename = "DateSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub date: Option<i64>,
    #[serde(
        rename = "ExpiredObjectDeleteMarker",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expired_object_delete_marker: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentExpiration {
    #[serde(
        rename = "NoncurrentDays",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub days: Option<i32>,
    #[serde(
        rename = "NewerNoncurrentVersions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub newer_versions: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortIncomplete {
    #[serde(rename = "DaysAfterInitiation", default)]
    pub days: i32,
}

impl Rule {
    pub fn enabled(&self) -> bool {
        self.status == "Enabled"
    }
}

impl Filter {
    /// Whether a version (or delete marker, which has no tags or size) matches.
    pub fn matches(&self, object: &ObjectMeta) -> bool {
        let size = object.size as i64;
        object.key.starts_with(&self.prefix)
            && self.tags.iter().all(|(k, v)| object.tags.get(k) == Some(v))
            && self.size_greater_than.is_none_or(|min| size > min)
            && self.size_less_than.is_none_or(|max| size < max)
    }
}

/// The bucket's lifecycle rules, when it has any. A stored document that no longer
/// parses applies nothing.
pub async fn bucket_lifecycle(
    meta: &MetaStore,
    bucket: &str,
) -> MetaResult<Option<LifecycleConfiguration>> {
    let Some(text) = meta.get_bucket_config(bucket, LIFECYCLE).await? else {
        return Ok(None);
    };
    match serde_json::from_str(&text) {
        Ok(config) => Ok(Some(config)),
        Err(e) => {
            tracing::warn!(bucket, error = %e, "ignoring invalid stored lifecycle configuration");
            Ok(None)
        }
    }
}

fn positive(days: Option<i32>, what: &str) -> S3Result<()> {
    match days {
        Some(d) if d <= 0 => Err(s3_error!(
            InvalidArgument,
            "'{what}' for a lifecycle rule must be a positive integer"
        )),
        _ => Ok(()),
    }
}

fn tags_of(set: Option<TagSet>) -> BTreeMap<String, String> {
    set.unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect()
}

fn filter_from_dto(rule: &LifecycleRule) -> Filter {
    let mut filter = Filter {
        prefix: rule.prefix.clone().unwrap_or_default(),
        ..Filter::default()
    };
    let Some(f) = &rule.filter else {
        return filter;
    };
    if let Some(p) = &f.prefix {
        filter.prefix = p.clone();
    }
    if let Some(tag) = &f.tag {
        filter.tags = tags_of(Some(vec![tag.clone()]));
    }
    filter.size_greater_than = f.object_size_greater_than;
    filter.size_less_than = f.object_size_less_than;
    if let Some(and) = &f.and {
        filter.prefix = and.prefix.clone().unwrap_or_default();
        filter.tags = tags_of(and.tags.clone());
        filter.size_greater_than = and.object_size_greater_than;
        filter.size_less_than = and.object_size_less_than;
    }
    filter
}

/// Longest rule ID AWS accepts.
const MAX_ID_LEN: usize = 255;

/// A lifecycle date in seconds; AWS wants midnight UTC.
fn midnight(date: &Timestamp) -> S3Result<i64> {
    let seconds = time::OffsetDateTime::from(date.clone()).unix_timestamp();
    if seconds.rem_euclid(86_400) != 0 {
        return Err(s3_error!(InvalidArgument, "'Date' must be at midnight GMT"));
    }
    Ok(seconds)
}

/// Storage classes a transition may name.
const TRANSITION_CLASSES: &[&str] = &[
    "GLACIER",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
];

/// AWS's minimum age in days before an object may move to `class`.
fn transition_minimum_days(class: &str) -> i32 {
    match class {
        "STANDARD_IA" | "ONEZONE_IA" => 30,
        _ => 0,
    }
}

fn transition_class(class: Option<&TransitionStorageClass>) -> S3Result<String> {
    let class = class
        .map(|c| c.as_str().to_owned())
        .ok_or_else(|| s3_error!(MalformedXML, "A Transition must name a StorageClass"))?;
    if !TRANSITION_CLASSES.contains(&class.as_str()) {
        return Err(s3_error!(
            InvalidStorageClass,
            "The storage class you specified is not valid"
        ));
    }
    Ok(class)
}

fn transitions_from_dto(list: Option<TransitionList>) -> S3Result<Vec<Transition>> {
    let mut out = Vec::new();
    for t in list.unwrap_or_default() {
        let storage_class = transition_class(t.storage_class.as_ref())?;
        let date = t.date.as_ref().map(midnight).transpose()?;
        match (t.days, date) {
            (Some(d), None) if d < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "'Days' in Transition action must be nonnegative"
                ));
            }
            (Some(d), None) if d < transition_minimum_days(&storage_class) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "'Days' in Transition action must be greater than or equal to {} for storageClass '{storage_class}'",
                    transition_minimum_days(&storage_class)
                ));
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "A Transition needs exactly one of Days or Date"
                ));
            }
        }
        if out
            .iter()
            .any(|o: &Transition| o.storage_class == storage_class)
        {
            return Err(s3_error!(
                InvalidRequest,
                "'StorageClass' must be different for 'Transition' actions in the same rule"
            ));
        }
        out.push(Transition {
            days: t.days,
            date,
            storage_class,
        });
    }
    Ok(out)
}

fn noncurrent_transitions_from_dto(
    list: Option<NoncurrentVersionTransitionList>,
) -> S3Result<Vec<NoncurrentTransition>> {
    let mut out = Vec::new();
    for t in list.unwrap_or_default() {
        let storage_class = transition_class(t.storage_class.as_ref())?;
        let Some(days) = t.noncurrent_days else {
            return Err(s3_error!(
                MalformedXML,
                "A NoncurrentVersionTransition needs NoncurrentDays"
            ));
        };
        if days < transition_minimum_days(&storage_class).max(0) || days < 0 {
            return Err(s3_error!(
                InvalidArgument,
                "'NoncurrentDays' in NoncurrentVersionTransition action must be greater than or equal to {} for storageClass '{storage_class}'",
                transition_minimum_days(&storage_class)
            ));
        }
        positive(t.newer_noncurrent_versions, "NewerNoncurrentVersions")?;
        out.push(NoncurrentTransition {
            days,
            newer_versions: t.newer_noncurrent_versions,
            storage_class,
        });
    }
    Ok(out)
}

/// How the filter of a rule was written (see [`Rule::form`]).
fn filter_form(rule: &LifecycleRule) -> Option<String> {
    match &rule.filter {
        None if rule.prefix.is_some() => Some("RulePrefix".to_owned()),
        Some(f) if f.and.is_some() => Some("And".to_owned()),
        Some(f)
            if f.prefix.is_none()
                && f.tag.is_none()
                && f.object_size_greater_than.is_none()
                && f.object_size_less_than.is_none() =>
        {
            Some("Empty".to_owned())
        }
        _ => None,
    }
}

fn rule_from_dto(rule: LifecycleRule) -> S3Result<Rule> {
    if rule
        .id
        .as_ref()
        .is_some_and(|id| id.chars().count() > MAX_ID_LEN)
    {
        return Err(s3_error!(
            InvalidArgument,
            "ID length should not exceed allowed limit of {MAX_ID_LEN}"
        ));
    }
    let transitions = transitions_from_dto(rule.transitions.clone())?;
    let noncurrent_transitions =
        noncurrent_transitions_from_dto(rule.noncurrent_version_transitions.clone())?;
    let form = filter_form(&rule);
    let status = rule.status.as_str().to_owned();
    if status != "Enabled" && status != "Disabled" {
        return Err(s3_error!(
            MalformedXML,
            "Status must be Enabled or Disabled"
        ));
    }
    let filter = filter_from_dto(&rule);
    let expiration = match rule.expiration {
        Some(e) => {
            positive(e.days, "Days")?;
            let date = e.date.as_ref().map(midnight).transpose()?;
            let set = [
                e.days.is_some(),
                date.is_some(),
                e.expired_object_delete_marker.is_some(),
            ]
            .iter()
            .filter(|s| **s)
            .count();
            if set != 1 {
                return Err(s3_error!(
                    MalformedXML,
                    "Expiration needs exactly one of Days, Date or ExpiredObjectDeleteMarker"
                ));
            }
            Some(Expiration {
                days: e.days,
                date,
                expired_object_delete_marker: e.expired_object_delete_marker,
            })
        }
        None => None,
    };
    let noncurrent_expiration = match rule.noncurrent_version_expiration {
        Some(n) => {
            positive(n.noncurrent_days, "NoncurrentDays")?;
            positive(n.newer_noncurrent_versions, "NewerNoncurrentVersions")?;
            if n.noncurrent_days.is_none() {
                return Err(s3_error!(
                    MalformedXML,
                    "NoncurrentVersionExpiration needs NoncurrentDays"
                ));
            }
            Some(NoncurrentExpiration {
                days: n.noncurrent_days,
                newer_versions: n.newer_noncurrent_versions,
            })
        }
        None => None,
    };
    let abort_incomplete = match rule.abort_incomplete_multipart_upload {
        Some(a) => {
            let days = a.days_after_initiation.unwrap_or(0);
            positive(Some(days), "DaysAfterInitiation")?;
            if !filter.tags.is_empty() {
                return Err(s3_error!(
                    InvalidArgument,
                    "AbortIncompleteMultipartUpload cannot be specified with Tags"
                ));
            }
            Some(AbortIncomplete { days })
        }
        None => None,
    };
    if let (Some(days), Some(t)) = (
        expiration.as_ref().and_then(|e| e.days),
        transitions.iter().filter_map(|t| t.days).max(),
    ) && days <= t
    {
        return Err(s3_error!(
            InvalidArgument,
            "'Days' in the Expiration action must be greater than 'Days' in the Transition action"
        ));
    }
    if expiration.is_none()
        && noncurrent_expiration.is_none()
        && abort_incomplete.is_none()
        && transitions.is_empty()
        && noncurrent_transitions.is_empty()
    {
        return Err(s3_error!(
            InvalidRequest,
            "At least one action needs to be specified in a rule"
        ));
    }
    Ok(Rule {
        id: rule.id,
        status,
        filter,
        expiration,
        noncurrent_expiration,
        abort_incomplete,
        transitions,
        noncurrent_transitions,
        form,
    })
}

fn tag_set(tags: &BTreeMap<String, String>) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

fn date_of(seconds: i64) -> Option<Timestamp> {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .map(Timestamp::from)
}

fn rule_to_dto(rule: Rule) -> LifecycleRule {
    let f = rule.filter;
    let conditions = usize::from(!f.prefix.is_empty())
        + f.tags.len()
        + usize::from(f.size_greater_than.is_some())
        + usize::from(f.size_less_than.is_some());
    let form = rule.form.as_deref();
    let rule_prefix = (form == Some("RulePrefix")).then(|| f.prefix.clone());
    let filter = if form == Some("RulePrefix") {
        None
    } else if form == Some("Empty") && conditions == 0 {
        Some(LifecycleRuleFilter::default())
    } else if conditions > 1 || form == Some("And") {
        Some(LifecycleRuleFilter {
            and: Some(LifecycleRuleAndOperator {
                prefix: (!f.prefix.is_empty()).then_some(f.prefix),
                tags: (!f.tags.is_empty()).then(|| tag_set(&f.tags)),
                object_size_greater_than: f.size_greater_than,
                object_size_less_than: f.size_less_than,
            }),
            ..LifecycleRuleFilter::default()
        })
    } else {
        Some(LifecycleRuleFilter {
            prefix: (!f.prefix.is_empty() || conditions == 0).then_some(f.prefix),
            tag: tag_set(&f.tags).into_iter().next(),
            object_size_greater_than: f.size_greater_than,
            object_size_less_than: f.size_less_than,
            and: None,
        })
    };
    let transitions = (!rule.transitions.is_empty()).then(|| {
        rule.transitions
            .into_iter()
            .map(|t| s3s::dto::Transition {
                days: t.days,
                date: t.date.and_then(date_of),
                storage_class: Some(TransitionStorageClass::from(t.storage_class)),
            })
            .collect()
    });
    let noncurrent_transitions = (!rule.noncurrent_transitions.is_empty()).then(|| {
        rule.noncurrent_transitions
            .into_iter()
            .map(|t| NoncurrentVersionTransition {
                noncurrent_days: Some(t.days),
                newer_noncurrent_versions: t.newer_versions,
                storage_class: Some(TransitionStorageClass::from(t.storage_class)),
            })
            .collect()
    });
    LifecycleRule {
        id: rule.id,
        status: ExpirationStatus::from(rule.status),
        filter,
        expiration: rule.expiration.map(|e| LifecycleExpiration {
            days: e.days,
            date: e.date.and_then(date_of),
            expired_object_delete_marker: e.expired_object_delete_marker,
        }),
        noncurrent_version_expiration: rule.noncurrent_expiration.map(|n| {
            NoncurrentVersionExpiration {
                noncurrent_days: n.days,
                newer_noncurrent_versions: n.newer_versions,
            }
        }),
        abort_incomplete_multipart_upload: rule.abort_incomplete.map(|a| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: Some(a.days),
            }
        }),
        prefix: rule_prefix,
        noncurrent_version_transitions: noncurrent_transitions,
        transitions,
    }
}

pub async fn put_bucket_lifecycle_configuration(
    s3: &Coffer,
    req: S3Request<PutBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
    let input = req.input;
    let rules = input
        .lifecycle_configuration
        .map(|c| c.rules)
        .unwrap_or_default();
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(s3_error!(
            MalformedXML,
            "A lifecycle configuration has 1 to {MAX_RULES} rules"
        ));
    }
    let rules = rules
        .into_iter()
        .map(rule_from_dto)
        .collect::<S3Result<Vec<_>>>()?;
    let mut ids = std::collections::HashSet::new();
    if rules
        .iter()
        .filter_map(|r| r.id.as_deref())
        .any(|id| !ids.insert(id))
    {
        return Err(s3_error!(
            InvalidArgument,
            "Rule ID must be unique. Found same ID for more than one rule"
        ));
    }
    let text = serde_json::to_string(&LifecycleConfiguration { rules })
        .map_err(|_| s3_error!(InternalError))?;
    s3.meta
        .set_bucket_config(&input.bucket, LIFECYCLE, Some(&text))
        .await
        .map_err(meta_error)?;
    Ok(S3Response::new(
        PutBucketLifecycleConfigurationOutput::default(),
    ))
}

pub async fn get_bucket_lifecycle_configuration(
    s3: &Coffer,
    req: S3Request<GetBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
    let bucket = &req.input.bucket;
    s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    match bucket_lifecycle(&s3.meta, bucket)
        .await
        .map_err(meta_error)?
    {
        Some(config) => Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(config.rules.into_iter().map(rule_to_dto).collect()),
            transition_default_minimum_object_size: None,
        })),
        None => Err(s3_error!(
            NoSuchLifecycleConfiguration,
            "The lifecycle configuration does not exist"
        )),
    }
}

pub async fn delete_bucket_lifecycle(
    s3: &Coffer,
    req: S3Request<DeleteBucketLifecycleInput>,
) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
    s3.meta
        .set_bucket_config(&req.input.bucket, LIFECYCLE, None)
        .await
        .map_err(meta_error)?;
    let mut response = S3Response::new(DeleteBucketLifecycleOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}
