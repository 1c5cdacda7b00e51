//! Object tagging (per version) and bucket tagging: Put/Get/DeleteObjectTagging,
//! Put/Get/DeleteBucketTagging, and the `x-amz-tagging` header of PUT, copy and
//! CreateMultipartUpload, all held to S3's limits.

use std::collections::BTreeMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::get::find_object;
use super::{Coffer, meta_error, version_header};

/// Tags per object (S3: 10) and per bucket (S3: 50).
const MAX_OBJECT_TAGS: usize = 10;
const MAX_BUCKET_TAGS: usize = 50;
/// Key and value lengths in Unicode characters (S3: 128 and 256).
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// The configuration kind under which bucket tags are stored (a JSON object).
const BUCKET_TAGGING: &str = "tagging";

/// A validated tag set.
pub(super) type Tags = BTreeMap<String, String>;

fn validate(pairs: Vec<(String, String)>, max: usize) -> S3Result<Tags> {
    if pairs.len() > max {
        return Err(s3_error!(
            InvalidTag,
            "Object tags cannot be greater than {max}"
        ));
    }
    let mut tags = Tags::new();
    for (key, value) in pairs {
        let key_chars = key.chars().count();
        if key_chars == 0 || key_chars > MAX_KEY_CHARS {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey you have provided is invalid (1 to {MAX_KEY_CHARS} characters)"
            ));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(s3_error!(
                InvalidTag,
                "The TagValue you have provided is invalid (at most {MAX_VALUE_CHARS} characters)"
            ));
        }
        if key.starts_with("aws:") {
            return Err(s3_error!(
                InvalidTag,
                "Your TagKey cannot be prefixed with aws:"
            ));
        }
        if tags.insert(key, value).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(tags)
}

fn from_tag_set(tagging: Tagging, max: usize) -> S3Result<Tags> {
    let pairs = tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    validate(pairs, max)
}

fn to_tag_set(tags: &Tags) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// Parses the `x-amz-tagging` header: URL-query encoded `k1=v1&k2=v2`.
pub(super) fn parse_header(header: Option<&str>) -> S3Result<Tags> {
    let Some(text) = header.filter(|t| !t.is_empty()) else {
        return Ok(Tags::new());
    };
    let decode = |s: &str| {
        urlencoding::decode(&s.replace('+', " "))
            .map(|c| c.into_owned())
            .map_err(|_| s3_error!(InvalidArgument, "The x-amz-tagging header is not valid"))
    };
    let mut pairs = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((decode(k)?, decode(v)?));
    }
    validate(pairs, MAX_OBJECT_TAGS)
}

/// The tags a CopyObject gives its destination: the source's (`COPY`, the
/// default) or the request's `x-amz-tagging` (`REPLACE`).
pub(super) fn copy_tags(
    directive: Option<&TaggingDirective>,
    header: Option<&str>,
    source: &Tags,
) -> S3Result<Tags> {
    match directive.map(TaggingDirective::as_str) {
        None | Some("COPY") => Ok(source.clone()),
        Some("REPLACE") => parse_header(header),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "Unknown tagging directive {other}"
        )),
    }
}

pub async fn get_object_tagging(
    s3: &Coffer,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    let object = find_object(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: to_tag_set(&object.tags),
        version_id: version_header(&object.version_id),
    }))
}

pub async fn put_object_tagging(
    s3: &Coffer,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    let tags = from_tag_set(input.tagging, MAX_OBJECT_TAGS)?;
    let version_id = set_tags(s3, &input.bucket, &input.key, input.version_id, &tags).await?;
    Ok(S3Response::new(PutObjectTaggingOutput {
        version_id: version_header(&version_id),
    }))
}

pub async fn delete_object_tagging(
    s3: &Coffer,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    let version_id = set_tags(
        s3,
        &input.bucket,
        &input.key,
        input.version_id,
        &Tags::new(),
    )
    .await?;
    let mut response = S3Response::new(DeleteObjectTaggingOutput {
        version_id: version_header(&version_id),
    });
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}

/// Replaces a version's tags, with the read path's errors for missing keys,
/// versions and delete markers.
async fn set_tags(
    s3: &Coffer,
    bucket: &str,
    key: &str,
    version_id: Option<String>,
    tags: &Tags,
) -> S3Result<String> {
    let object = find_object(s3, bucket, key, version_id.as_deref()).await?;
    s3.meta
        .set_object_tags(bucket, key, Some(&object.version_id), tags)
        .await
        .map_err(meta_error)
}

pub async fn get_bucket_tagging(
    s3: &Coffer,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    let bucket = &req.input.bucket;
    s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    let stored = s3
        .meta
        .get_bucket_config(bucket, BUCKET_TAGGING)
        .await
        .map_err(meta_error)?;
    let Some(text) = stored else {
        return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
    };
    let tags: Tags = serde_json::from_str(&text).map_err(|e| {
        tracing::error!(bucket = %bucket, error = %e, "stored bucket tags are corrupt");
        s3_error!(InternalError)
    })?;
    Ok(S3Response::new(GetBucketTaggingOutput {
        tag_set: to_tag_set(&tags),
    }))
}

pub async fn put_bucket_tagging(
    s3: &Coffer,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let input = req.input;
    let tags = from_tag_set(input.tagging, MAX_BUCKET_TAGS)?;
    let text = serde_json::to_string(&tags).map_err(|_| s3_error!(InternalError))?;
    s3.meta
        .set_bucket_config(&input.bucket, BUCKET_TAGGING, Some(&text))
        .await
        .map_err(meta_error)?;
    let mut response = S3Response::new(PutBucketTaggingOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}

pub async fn delete_bucket_tagging(
    s3: &Coffer,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    s3.meta
        .set_bucket_config(&req.input.bucket, BUCKET_TAGGING, None)
        .await
        .map_err(meta_error)?;
    let mut response = S3Response::new(DeleteBucketTaggingOutput::default());
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_header_is_url_decoded() {
        let tags = parse_header(Some("team=a%20b&env=prod+x&empty=")).unwrap();
        assert_eq!(tags.get("team").map(String::as_str), Some("a b"));
        assert_eq!(tags.get("env").map(String::as_str), Some("prod x"));
        assert_eq!(tags.get("empty").map(String::as_str), Some(""));
    }

    #[test]
    fn tag_limits_follow_s3() {
        let eleven: String = (0..11).map(|i| format!("k{i}=v&")).collect();
        assert!(parse_header(Some(&eleven)).is_err());
        assert!(parse_header(Some("a=1&a=2")).is_err());
        assert!(parse_header(Some(&format!("{}=v", "k".repeat(129)))).is_err());
        assert!(parse_header(Some(&format!("k={}", "v".repeat(257)))).is_err());
        assert!(parse_header(Some("aws:reserved=1")).is_err());
        assert!(parse_header(Some(&format!("{}=v", "é".repeat(128)))).is_ok());
    }
}
