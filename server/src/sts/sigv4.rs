//! SigV4 verification of signed STS requests (`Authorization` header form, as
//! every SDK sends them). S3 requests are verified by s3s; STS requests never
//! reach it, and s3s keeps its verifier private.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How far a request's `x-amz-date` may be from now, as on AWS.
const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
pub struct Authorization {
    pub access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("The request signature is malformed.")]
    Malformed,
    #[error("The request signature we calculated does not match the signature you provided.")]
    DoesNotMatch,
    #[error("Signature expired: the request time is too far from the server's time.")]
    Expired,
}

impl Authorization {
    pub fn parse(header: &str) -> Result<Self, SignatureError> {
        let rest = header
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or(SignatureError::Malformed)?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or(SignatureError::Malformed)?;
            match name {
                "Credential" => credential = Some(value),
                "SignedHeaders" => signed = Some(value),
                "Signature" => signature = Some(value),
                _ => {}
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            return Err(SignatureError::Malformed);
        };
        let scope: Vec<&str> = credential.split('/').collect();
        let [id, date, region, service, "aws4_request"] = scope.as_slice() else {
            return Err(SignatureError::Malformed);
        };
        Ok(Self {
            access_key_id: (*id).to_owned(),
            date: (*date).to_owned(),
            region: (*region).to_owned(),
            service: (*service).to_owned(),
            signed_headers: signed.split(';').map(str::to_owned).collect(),
            signature: signature.to_owned(),
        })
    }

    /// Checks the signature of a request with `secret`: method, path, query,
    /// signed headers and the SHA-256 of `body`.
    pub fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        secret: &str,
        now: time::OffsetDateTime,
    ) -> Result<(), SignatureError> {
        let amz_date = header(parts, "x-amz-date").ok_or(SignatureError::Malformed)?;
        let format =
            time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let when = time::PrimitiveDateTime::parse(amz_date, &format)
            .map_err(|_| SignatureError::Malformed)?
            .assume_utc();
        if (when - now).whole_seconds().abs() > MAX_CLOCK_SKEW_SECS {
            return Err(SignatureError::Expired);
        }
        if !amz_date.starts_with(&self.date) || !self.signed_headers.iter().any(|h| h == "host") {
            return Err(SignatureError::Malformed);
        }
        let payload_hash = match header(parts, "x-amz-content-sha256") {
            Some(hash) if hash != "UNSIGNED-PAYLOAD" => hash.to_owned(),
            _ => hex::encode(Sha256::digest(body)),
        };
        let mut canonical_headers = String::new();
        for name in &self.signed_headers {
            let values: Vec<String> = parts
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|v| collapse_spaces(&String::from_utf8_lossy(v.as_bytes())))
                .collect();
            if values.is_empty() {
                return Err(SignatureError::Malformed);
            }
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            parts.method.as_str(),
            canonical_path(parts.uri.path()),
            canonical_query(parts.uri.query().unwrap_or("")),
            canonical_headers,
            self.signed_headers.join(";"),
            payload_hash
        );
        let scope = format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), self.date.as_bytes());
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let given = hex::decode(&self.signature).map_err(|_| SignatureError::DoesNotMatch)?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SignatureError::Malformed)?;
        mac.update(string_to_sign.as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given)
            .map_err(|_| SignatureError::DoesNotMatch)
    }
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// URI-encodes as SigV4 does: unreserved characters stay, the rest is `%XX`.
fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(text: &str) -> String {
    urlencoding::decode(text)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| text.to_owned())
}

fn canonical_path(path: &str) -> String {
    uri_encode(&decode(path), true)
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&decode(k), false), uri_encode(&decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}
