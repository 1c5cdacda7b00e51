//! ListObjects (V1), ListObjectsV2 and ListObjectVersions. The metadata store walks its key index;
//! this file maps S3's markers, tokens and `encoding-type=url` onto that walk.

use base64::Engine as _;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksum::Algorithm;
use super::{Coffer, meta_error, quoted_etag, timestamp};
use crate::meta::{ListQuery, MetaError, ObjectMeta};

const MAX_KEYS: i32 = 1000;

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be non-negative")),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
        None => Ok(MAX_KEYS as usize),
    }
}

fn url_encoding(encoding: Option<&EncodingType>) -> S3Result<bool> {
    match encoding.map(EncodingType::as_str) {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request: {other}"
        )),
    }
}

/// Applies `encoding-type=url` to a value returned in a listing.
fn encode(value: &str, url: bool) -> String {
    if url {
        urlencoding::encode(value).replace("%2F", "/")
    } else {
        value.to_owned()
    }
}

fn to_entry(object: ObjectMeta, url: bool, owner: Option<&Owner>) -> Object {
    let algorithm = object
        .checksum
        .algorithm
        .as_deref()
        .and_then(|a| Algorithm::parse(a).ok())
        .map(|a| vec![ChecksumAlgorithm::from(a.name().to_owned())]);
    Object {
        key: Some(encode(&object.key, url)),
        e_tag: Some(quoted_etag(&object.etag)),
        last_modified: Some(timestamp(object.last_modified)),
        size: Some(object.size as i64),
        storage_class: Some(ObjectStorageClass::from(
            object
                .headers
                .storage_class
                .clone()
                .unwrap_or_else(|| "STANDARD".to_owned()),
        )),
        checksum_algorithm: algorithm,
        checksum_type: object.checksum.kind.clone().map(ChecksumType::from),
        owner: owner.cloned(),
        restore_status: None,
    }
}

fn prefixes(list: Vec<String>, url: bool) -> Vec<CommonPrefix> {
    list.into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(encode(&p, url)),
        })
        .collect()
}

async fn bucket_owner(s3: &Coffer, bucket: &str) -> S3Result<Owner> {
    let b = s3.meta.require_bucket(bucket).await.map_err(meta_error)?;
    Ok(Owner {
        display_name: Some(b.owner.clone()),
        id: Some(b.owner),
    })
}

pub async fn list_objects(
    s3: &Coffer,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let url = url_encoding(input.encoding_type.as_ref())?;
    let owner = bucket_owner(s3, &input.bucket).await?;
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
        start_after: input
            .marker
            .clone()
            .filter(|m| !m.is_empty())
            .map(String::into_bytes),
        max_keys: max_keys(input.max_keys)?,
    };
    let page = s3
        .meta
        .list_objects(&input.bucket, &query)
        .await
        .map_err(meta_error)?;
    // NextMarker is only returned with a delimiter; without one clients use the last key.
    let next_marker = (page.is_truncated && query.delimiter.is_some())
        .then(|| {
            page.last
                .as_deref()
                .map(|l| encode(&String::from_utf8_lossy(l), url))
        })
        .flatten();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(encode(&query.prefix, url)),
        marker: Some(encode(input.marker.as_deref().unwrap_or(""), url)),
        max_keys: Some(query.max_keys as i32),
        is_truncated: Some(page.is_truncated),
        contents: Some(
            page.items
                .into_iter()
                .map(|o| to_entry(o, url, Some(&owner)))
                .collect(),
        ),
        common_prefixes: Some(prefixes(page.common_prefixes, url)),
        delimiter: query.delimiter.map(|d| encode(&d, url)),
        next_marker,
        encoding_type: input.encoding_type,
        request_charged: None,
    }))
}

fn encode_token(last: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn decode_token(token: &str) -> S3Result<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

pub async fn list_objects_v2(
    s3: &Coffer,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let url = url_encoding(input.encoding_type.as_ref())?;
    let owner = bucket_owner(s3, &input.bucket).await?;
    let start_after = match input.continuation_token.as_deref() {
        Some(token) => Some(decode_token(token)?),
        None => input
            .start_after
            .clone()
            .filter(|s| !s.is_empty())
            .map(String::into_bytes),
    };
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
        start_after,
        max_keys: max_keys(input.max_keys)?,
    };
    let page = s3
        .meta
        .list_objects(&input.bucket, &query)
        .await
        .map_err(meta_error)?;
    let key_count = (page.items.len() + page.common_prefixes.len()) as i32;
    let next = page
        .is_truncated
        .then(|| page.last.as_deref().map(encode_token))
        .flatten();
    let show_owner = input.fetch_owner.unwrap_or(false).then_some(&owner);
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(encode(&query.prefix, url)),
        max_keys: Some(query.max_keys as i32),
        key_count: Some(key_count),
        continuation_token: input.continuation_token,
        is_truncated: Some(page.is_truncated),
        next_continuation_token: next,
        contents: Some(
            page.items
                .into_iter()
                .map(|o| to_entry(o, url, show_owner))
                .collect(),
        ),
        common_prefixes: Some(prefixes(page.common_prefixes, url)),
        delimiter: query.delimiter.map(|d| encode(&d, url)),
        encoding_type: input.encoding_type,
        start_after: input.start_after.map(|s| encode(&s, url)),
        request_charged: None,
    }))
}

/// ListObjectVersions: every version and delete marker, keys in S3 order and
/// each key's versions newest first; `key-marker` + `version-id-marker` resume.
pub async fn list_object_versions(
    s3: &Coffer,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    let url = url_encoding(input.encoding_type.as_ref())?;
    let owner = bucket_owner(s3, &input.bucket).await?;
    let key_marker = input.key_marker.clone().filter(|m| !m.is_empty());
    let version_marker = input.version_id_marker.clone().filter(|m| !m.is_empty());
    if version_marker.is_some() && key_marker.is_none() {
        return Err(s3_error!(
            InvalidArgument,
            "A version-id marker cannot be specified without a key marker."
        ));
    }
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
        start_after: key_marker.clone().map(String::into_bytes),
        max_keys: max_keys(input.max_keys)?,
    };
    let page = s3
        .meta
        .list_object_versions(&input.bucket, &query, version_marker.as_deref())
        .await
        .map_err(|e| match e {
            MetaError::NoSuchVersion => s3_error!(InvalidArgument, "Invalid version id specified"),
            other => meta_error(other),
        })?;
    // Resume after the last entry: a key and version, or a common prefix.
    let (next_key, next_version) = if page.is_truncated {
        match page.items.last() {
            Some(last) if page.last.as_deref() == Some(last.object.key.as_bytes()) => (
                Some(encode(&last.object.key, url)),
                Some(last.object.version_id.clone()),
            ),
            _ => (
                page.last
                    .as_deref()
                    .map(|l| encode(&String::from_utf8_lossy(l), url)),
                None,
            ),
        }
    } else {
        (None, None)
    };
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    for entry in page.items {
        let object = entry.object;
        if object.delete_marker {
            markers.push(DeleteMarkerEntry {
                is_latest: Some(entry.is_latest),
                key: Some(encode(&object.key, url)),
                last_modified: Some(timestamp(object.last_modified)),
                owner: Some(owner.clone()),
                version_id: Some(object.version_id),
            });
            continue;
        }
        let version_id = object.version_id.clone();
        let listed = to_entry(object, url, Some(&owner));
        versions.push(ObjectVersion {
            checksum_algorithm: listed.checksum_algorithm,
            checksum_type: listed.checksum_type,
            e_tag: listed.e_tag,
            is_latest: Some(entry.is_latest),
            key: listed.key,
            last_modified: listed.last_modified,
            owner: listed.owner,
            restore_status: None,
            size: listed.size,
            storage_class: listed
                .storage_class
                .map(|c| ObjectVersionStorageClass::from(c.as_str().to_owned())),
            version_id: Some(version_id),
        });
    }
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(encode(&query.prefix, url)),
        key_marker: Some(encode(key_marker.as_deref().unwrap_or(""), url)),
        version_id_marker: Some(version_marker.unwrap_or_default()),
        max_keys: Some(query.max_keys as i32),
        is_truncated: Some(page.is_truncated),
        next_key_marker: next_key,
        next_version_id_marker: next_version,
        versions: Some(versions),
        delete_markers: Some(markers),
        common_prefixes: Some(prefixes(page.common_prefixes, url)),
        delimiter: query.delimiter.map(|d| encode(&d, url)),
        encoding_type: input.encoding_type,
        request_charged: None,
    }))
}
