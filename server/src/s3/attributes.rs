//! GetObjectAttributes: an object's ETag, checksum, parts, storage class and
//! size in one request, without its body. Reads the same metadata row as
//! HEAD; an SSE-C object needs its key here too, as on AWS.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksum::{Algorithm, set_checksum};
use super::encryption::{self, customer_key_of};
use super::get::find_object;
use super::{Coffer, quoted_etag, timestamp, version_header};
use crate::meta::ObjectMeta;

/// S3 returns at most this many parts per page.
const MAX_PARTS: i32 = 1000;

/// Which attributes the request asked for (`x-amz-object-attributes`).
#[derive(Default)]
struct Wanted {
    etag: bool,
    checksum: bool,
    parts: bool,
    storage_class: bool,
    size: bool,
}

impl Wanted {
    fn parse(list: &ObjectAttributesList) -> S3Result<Self> {
        let mut wanted = Wanted::default();
        for attribute in list {
            match attribute.as_str() {
                ObjectAttributes::ETAG => wanted.etag = true,
                ObjectAttributes::CHECKSUM => wanted.checksum = true,
                ObjectAttributes::OBJECT_PARTS => wanted.parts = true,
                ObjectAttributes::STORAGE_CLASS => wanted.storage_class = true,
                ObjectAttributes::OBJECT_SIZE => wanted.size = true,
                other => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Invalid attribute name specified: {other}"
                    ));
                }
            }
        }
        if list.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty"
            ));
        }
        Ok(wanted)
    }
}

fn algorithm_of(object: &ObjectMeta) -> Option<Algorithm> {
    object
        .checksum
        .algorithm
        .as_deref()
        .and_then(|a| Algorithm::parse(a).ok())
}

/// The object's checksum as GetObjectAttributes reports it: a composite
/// checksum without the `-N` part count that GET's header carries.
fn checksum(object: &ObjectMeta) -> Option<Checksum> {
    let algorithm = algorithm_of(object)?;
    let value = object.checksum.value.as_deref()?;
    let value = match object.checksum.kind.as_deref() {
        Some(ChecksumType::COMPOSITE) => value.rsplit_once('-').map_or(value, |(v, _)| v),
        _ => value,
    };
    let mut out = Checksum {
        checksum_type: object.checksum.kind.clone().map(ChecksumType::from),
        ..Default::default()
    };
    set_checksum!(out, algorithm, Some(value.to_owned()));
    Some(out)
}

/// One page of the parts of a multipart object (`None` for a single PUT).
/// Parts are numbered by their place in the object, as `partNumber` reads are.
fn parts(
    object: &ObjectMeta,
    max_parts: Option<i32>,
    marker: Option<i32>,
) -> S3Result<Option<GetObjectAttributesParts>> {
    let Some(count) = object.parts_count() else {
        return Ok(None);
    };
    let max = match max_parts {
        None => MAX_PARTS,
        Some(n) if n >= 0 => n.min(MAX_PARTS),
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "max-parts must be a non-negative integer"
            ));
        }
    };
    let marker = match marker {
        None => 0,
        Some(n) if n >= 0 => n,
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "part-number-marker must be a non-negative integer"
            ));
        }
    };
    let algorithm = algorithm_of(object);
    let page: Vec<ObjectPart> = object
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| (i as i32 + 1, s))
        .filter(|(n, _)| *n > marker)
        .take(max as usize)
        .map(|(n, segment)| {
            let mut part = ObjectPart {
                part_number: Some(n),
                size: Some(segment.size as i64),
                ..Default::default()
            };
            if let Some(a) = algorithm {
                set_checksum!(part, a, segment.checksum.clone());
            }
            part
        })
        .collect();
    let last = page.last().and_then(|p| p.part_number);
    let truncated = last.is_some_and(|n| (n as usize) < count);
    Ok(Some(GetObjectAttributesParts {
        is_truncated: Some(truncated),
        max_parts: Some(max),
        next_part_number_marker: truncated.then_some(last).flatten(),
        part_number_marker: Some(marker),
        parts: Some(page),
        total_parts_count: Some(count as i32),
    }))
}

pub async fn get_object_attributes(
    s3: &Coffer,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = &req.input;
    let wanted = Wanted::parse(&input.object_attributes)?;
    let object = find_object(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let customer = customer_key_of!(input)?;
    encryption::check_read(object.headers.encryption.as_ref(), customer.as_ref())?;
    let output = GetObjectAttributesOutput {
        e_tag: wanted.etag.then(|| quoted_etag(&object.etag)),
        checksum: if wanted.checksum {
            checksum(&object)
        } else {
            None
        },
        object_parts: if wanted.parts {
            parts(&object, input.max_parts, input.part_number_marker)?
        } else {
            None
        },
        storage_class: wanted.storage_class.then(|| {
            StorageClass::from(
                object
                    .headers
                    .storage_class
                    .clone()
                    .unwrap_or_else(|| StorageClass::STANDARD.to_owned()),
            )
        }),
        object_size: wanted.size.then_some(object.size as i64),
        last_modified: Some(timestamp(object.last_modified)),
        version_id: match input.version_id.as_deref() {
            Some(requested) => Some(requested.to_owned()),
            None => version_header(&object.version_id),
        },
        ..Default::default()
    };
    Ok(S3Response::new(output))
}
