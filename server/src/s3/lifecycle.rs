//! Lifecycle configuration: Put/Get/DeleteBucketLifecycleConfiguration. Rules are
//! stored as the bucket's `lifecycle` document in the JSON shape the operator
//! writes (`{"Rules": [...]}`); the background worker in `crate::lifecycle`
//! applies them. Transitions (storage tiers) are refused: Coffer has one tier.

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

fn rule_from_dto(rule: LifecycleRule) -> S3Result<Rule> {
    if rule.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || rule
            .noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(
            NotImplemented,
            "Lifecycle transitions are not supported: Coffer has a single storage tier"
        ));
    }
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
            let date = e
                .date
                .map(|d| time::OffsetDateTime::from(d).unix_timestamp());
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
    if expiration.is_none() && noncurrent_expiration.is_none() && abort_incomplete.is_none() {
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

fn rule_to_dto(rule: Rule) -> LifecycleRule {
    let f = rule.filter;
    let conditions = usize::from(!f.prefix.is_empty())
        + f.tags.len()
        + usize::from(f.size_greater_than.is_some())
        + usize::from(f.size_less_than.is_some());
    let filter = if conditions > 1 {
        LifecycleRuleFilter {
            and: Some(LifecycleRuleAndOperator {
                prefix: (!f.prefix.is_empty()).then_some(f.prefix),
                tags: (!f.tags.is_empty()).then(|| tag_set(&f.tags)),
                object_size_greater_than: f.size_greater_than,
                object_size_less_than: f.size_less_than,
            }),
            ..LifecycleRuleFilter::default()
        }
    } else {
        LifecycleRuleFilter {
            prefix: (!f.prefix.is_empty() || conditions == 0).then_some(f.prefix),
            tag: tag_set(&f.tags).into_iter().next(),
            object_size_greater_than: f.size_greater_than,
            object_size_less_than: f.size_less_than,
            and: None,
        }
    };
    LifecycleRule {
        id: rule.id,
        status: ExpirationStatus::from(rule.status),
        filter: Some(filter),
        expiration: rule.expiration.map(|e| LifecycleExpiration {
            days: e.days,
            date: e.date.and_then(|s| {
                time::OffsetDateTime::from_unix_timestamp(s)
                    .ok()
                    .map(Timestamp::from)
            }),
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
        prefix: None,
        noncurrent_version_transitions: None,
        transitions: None,
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
