//! The rules Signature Version 2 leaves open, enforced after s3s has checked the
//! signature itself: a header-signed request must be recent, a presigned URL may
//! live at most 7 days, and nothing that picks the operation may sit outside what
//! the signature covers. SigV2 can also be refused outright (`--disable-sigv2`).

use http::{HeaderMap, StatusCode, Uri, header};
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// How far a signed request's date may be from the server's clock, as for SigV4.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// The longest a presigned URL may live, as for SigV4's `X-Amz-Expires`.
pub const MAX_PRESIGNED_SECS: i64 = 7 * 24 * 3600;

/// Sub-resources that choose an operation (s3s routes on them) but that the
/// SigV2 string-to-sign leaves out (it covers `acl`, `tagging`, `versions`,
/// `uploads`, `versionId`, `policy`, `cors`, `lifecycle`, `delete`, ... once each): AWS accepts only SigV4 for them, and so
/// does Coffer. Other parameters the string-to-sign leaves out only shape a
/// response or carry a signed header's value (`prefix`, `max-keys`,
/// `list-type`, botocore's `content-type`, the SDKs' `x-id` hint), as on AWS.
const UNSIGNED_SUB_RESOURCES: &[&str] = &[
    "attributes",
    "encryption",
    "events",
    "id",
    "intelligent-tiering",
    "legal-hold",
    "metadataConfiguration",
    "metadataTable",
    "ownershipControls",
    "policyStatus",
    "publicAccessBlock",
    "renameObject",
    "retention",
    "session",
];

/// Headers the SigV2 string-to-sign reads as single values; s3s signs an empty
/// value when one is repeated, so a repeat would go unsigned.
const SINGLE_VALUED: &[&str] = &["content-md5", "content-type", "date", "x-amz-date"];

/// How a request is signed with SigV2, as s3s recognises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: AWS id:signature`.
    Header,
    /// `?AWSAccessKeyId=...&Expires=...&Signature=...`.
    Presigned,
}

/// The query's parameters, decoded as s3s decodes them.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default()
}

/// The SigV2 scheme of a request, if it uses one (s3s tries SigV2 before SigV4).
pub fn scheme(uri: &Uri, headers: &HeaderMap) -> Option<Scheme> {
    if query_pairs(uri).iter().any(|(name, _)| name == "Signature") {
        return Some(Scheme::Presigned);
    }
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    match (authorization.next(), authorization.next()) {
        (Some(value), None) if value.as_bytes().starts_with(b"AWS ") => Some(Scheme::Header),
        _ => None,
    }
}

/// Checks a SigV2-signed request (whose signature s3s has verified) against the
/// rules SigV2 itself does not enforce.
pub fn check(scheme: Scheme, uri: &Uri, headers: &HeaderMap, now: OffsetDateTime) -> S3Result<()> {
    check_query(uri)?;
    check_single_valued_headers(headers)?;
    match scheme {
        Scheme::Header => check_request_time(headers, now),
        Scheme::Presigned => check_expires(uri, now),
    }
}

/// The refusal of a SigV2 request on a server that accepts only SigV4 (AWS's
/// answer for buckets created since June 2020).
pub fn refused() -> S3Error {
    invalid_request(
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
    )
}

fn invalid_request(message: &str) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::InvalidRequest, message.to_owned());
    err.set_status_code(StatusCode::BAD_REQUEST);
    err
}

/// No sub-resource outside the signature may choose the operation, and no
/// parameter may appear twice (s3s leaves a repeated sub-resource out of the
/// string-to-sign, while its router still sees it).
fn check_query(uri: &Uri) -> S3Result<()> {
    let pairs = query_pairs(uri);
    for (i, (name, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(invalid_request(&format!(
                "The query parameter '{name}' appears more than once."
            )));
        }
        if UNSIGNED_SUB_RESOURCES.contains(&name.as_str()) {
            return Err(invalid_request(&format!(
                "Signature Version 2 does not cover the sub-resource '{name}'; sign this request with AWS4-HMAC-SHA256."
            )));
        }
    }
    Ok(())
}

fn check_single_valued_headers(headers: &HeaderMap) -> S3Result<()> {
    for name in SINGLE_VALUED {
        if headers.get_all(*name).iter().nth(1).is_some() {
            return Err(invalid_request(&format!(
                "The header '{name}' appears more than once."
            )));
        }
    }
    Ok(())
}

/// The time of a header-signed SigV2 request, checked before s3s compares its
/// signature: AWS answers a missing or unparseable date (`AccessDenied`) and a
/// skewed one (`RequestTimeTooSkewed`) whatever the signature says.
pub fn check_time_first(uri: &Uri, headers: &HeaderMap) -> S3Result<()> {
    match scheme(uri, headers) {
        Some(Scheme::Header) => check_request_time(headers, OffsetDateTime::now_utc()),
        _ => Ok(()),
    }
}

/// `x-amz-date` wins over `Date`, as on AWS; the time must be within
/// [`MAX_SKEW_SECS`] of ours.
fn check_request_time(headers: &HeaderMap, now: OffsetDateTime) -> S3Result<()> {
    let value = headers
        .get("x-amz-date")
        .or_else(|| headers.get(header::DATE))
        .and_then(|v| v.to_str().ok());
    let Some(signed_at) = value.and_then(parse_date) else {
        return Err(s3_error!(
            AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header"
        ));
    };
    if (now - signed_at).whole_seconds().abs() > MAX_SKEW_SECS {
        return Err(s3_error!(
            RequestTimeTooSkewed,
            "The difference between the request time and the current time is too large."
        ));
    }
    Ok(())
}

/// The dates SigV2 clients send: RFC 1123 with `GMT` or a numeric zone, the
/// other two HTTP date forms, or SigV4's ISO 8601 basic form.
fn parse_date(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc2822) {
        return Some(t);
    }
    if let Ok(t) = httpdate::parse_http_date(text) {
        return Some(OffsetDateTime::from(t));
    }
    let iso = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(text, iso)
        .ok()
        .map(|t| t.assume_utc())
}

/// A presigned URL's `Expires` may lie at most [`MAX_PRESIGNED_SECS`] ahead
/// (s3s refuses one that has passed).
fn check_expires(uri: &Uri, now: OffsetDateTime) -> S3Result<()> {
    let expires = query_pairs(uri)
        .into_iter()
        .find(|(name, _)| name == "Expires")
        .and_then(|(_, value)| value.parse::<i64>().ok());
    let Some(expires) = expires else {
        return Err(query_parameters_error(
            "Expires must be a number of seconds since the epoch",
        ));
    };
    if expires - now.unix_timestamp() > MAX_PRESIGNED_SECS {
        return Err(query_parameters_error(
            "Expires must be within 604800 seconds (7 days) of the current time",
        ));
    }
    Ok(())
}

fn query_parameters_error(message: &str) -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("AuthorizationQueryParametersError".into()),
        message.to_owned(),
    );
    err.set_status_code(StatusCode::BAD_REQUEST);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    #[test]
    fn dates_in_every_form_clients_send_are_read() {
        let expected = time::macros::datetime!(2007-03-27 19:36:42 UTC);
        for text in [
            "Tue, 27 Mar 2007 19:36:42 +0000",
            "Tue, 27 Mar 2007 19:36:42 GMT",
            "Tuesday, 27-Mar-07 19:36:42 GMT",
            "Tue Mar 27 19:36:42 2007",
            "20070327T193642Z",
        ] {
            assert_eq!(parse_date(text), Some(expected), "{text}");
        }
        assert_eq!(parse_date("whenever"), None);
    }

    #[test]
    fn a_repeated_or_unsigned_sub_resource_is_refused() {
        assert!(check_query(&uri("/b/k?acl")).is_ok());
        assert!(check_query(&uri("/b?prefix=a&max-keys=3&list-type=2")).is_ok());
        // botocore hoists a presigned PUT's Content-Type into the query.
        assert!(check_query(&uri("/b/k?content-type=text%2Fplain&x-id=PutObject")).is_ok());
        assert!(check_query(&uri("/b/k?acl&acl")).is_err());
        assert!(check_query(&uri("/b/k?acl=&acl")).is_err());
        assert!(check_query(&uri("/b/k?retention")).is_err());
        assert!(check_query(&uri("/b/k?legal-hold")).is_err());
        assert!(check_query(&uri("/b/k?attributes")).is_err());
        // Encoded names are decoded before they are compared, as s3s does.
        assert!(check_query(&uri("/b/k?t%61gging&tagging")).is_err());
    }

    #[test]
    fn the_scheme_is_the_one_s3s_verifies() {
        let mut headers = HeaderMap::new();
        assert_eq!(scheme(&uri("/b/k"), &headers), None);
        headers.insert(header::AUTHORIZATION, "AWS id:sig".parse().unwrap());
        assert_eq!(scheme(&uri("/b/k"), &headers), Some(Scheme::Header));
        assert_eq!(
            scheme(&uri("/b/k?Signature=x&Expires=1"), &headers),
            Some(Scheme::Presigned)
        );
    }
}
