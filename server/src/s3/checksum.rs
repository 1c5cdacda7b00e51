//! Additional checksums (`x-amz-checksum-*`): which one a request asks for, in a
//! header or as a trailer of an aws-chunked body, and checking it against what was
//! computed on the stream.

use base64::Engine as _;
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::dto::{Checksum, ChecksumAlgorithm};
use s3s::{S3Result, TrailingHeaders, s3_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Sha1,
    Sha256,
    Crc64Nvme,
}

pub const ALL: [Algorithm; 5] = [
    Algorithm::Crc32,
    Algorithm::Crc32c,
    Algorithm::Sha1,
    Algorithm::Sha256,
    Algorithm::Crc64Nvme,
];

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Crc64Nvme => "CRC64NVME",
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
        }
    }

    pub fn parse(name: &str) -> S3Result<Algorithm> {
        ALL.into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm {name} is not supported"))
    }

    pub fn from_dto(algorithm: &ChecksumAlgorithm) -> S3Result<Algorithm> {
        Self::parse(algorithm.as_str())
    }

    pub fn hasher(self) -> ChecksumHasher {
        let mut h = ChecksumHasher::default();
        match self {
            Algorithm::Crc32 => h.crc32 = Some(Default::default()),
            Algorithm::Crc32c => h.crc32c = Some(Default::default()),
            Algorithm::Sha1 => h.sha1 = Some(Default::default()),
            Algorithm::Sha256 => h.sha256 = Some(Default::default()),
            Algorithm::Crc64Nvme => h.crc64nvme = Some(Default::default()),
        }
        h
    }

    /// The base64 value for this algorithm out of a computed checksum.
    pub fn pick(self, computed: &Checksum) -> Option<String> {
        match self {
            Algorithm::Crc32 => computed.checksum_crc32.clone(),
            Algorithm::Crc32c => computed.checksum_crc32c.clone(),
            Algorithm::Sha1 => computed.checksum_sha1.clone(),
            Algorithm::Sha256 => computed.checksum_sha256.clone(),
            Algorithm::Crc64Nvme => computed.checksum_crc64nvme.clone(),
        }
    }

    /// Digest of raw bytes, base64 (for composite multipart checksums).
    pub fn digest_base64(self, data: &[u8]) -> Option<String> {
        let mut hasher = self.hasher();
        hasher.update(data);
        self.pick(&hasher.finalize())
    }
}

impl Algorithm {
    /// The CRC these checksums use, for algorithms whose values can be combined.
    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Algorithm::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }

    pub fn supports_full_object(self) -> bool {
        self.crc().is_some()
    }

    /// The checksum of a whole object from its parts' checksums and sizes, without
    /// reading a byte (CRCs combine arithmetically). `None` for SHA algorithms or
    /// when a part value is missing or malformed.
    pub fn combine(self, parts: &[(Option<&str>, u64)]) -> Option<String> {
        let crc = self.crc()?;
        let width = if self == Algorithm::Crc64Nvme { 8 } else { 4 };
        let mut combined: Option<u64> = None;
        for (value, len) in parts {
            let raw = base64::engine::general_purpose::STANDARD
                .decode((*value)?)
                .ok()?;
            if raw.len() != width {
                return None;
            }
            let part = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            combined = Some(match combined {
                None => part,
                Some(sum) => crc_fast::checksum_combine(crc, sum, part, *len),
            });
        }
        let bytes = combined?.to_be_bytes();
        Some(base64::engine::general_purpose::STANDARD.encode(&bytes[8 - width..]))
    }
}

/// What a request expects to be checked.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub algorithm: Option<Algorithm>,
    /// Value sent in a header, checked once the body is in.
    pub value: Option<String>,
    /// The checksum arrives as a trailer of the aws-chunked body.
    pub in_trailer: bool,
}

/// Reads the checksum a request declares: `x-amz-checksum-<alg>` headers,
/// `x-amz-trailer`, or `x-amz-checksum-algorithm` / `x-amz-sdk-checksum-algorithm`.
pub fn expected(headers: &HeaderMap, declared: Option<&ChecksumAlgorithm>) -> S3Result<Expected> {
    let mut found = ALL
        .into_iter()
        .filter_map(|a| headers.get(a.header()).map(|v| (a, v)))
        .collect::<Vec<_>>();
    if found.len() > 1 {
        return Err(s3_error!(
            InvalidRequest,
            "Expecting a single x-amz-checksum- header"
        ));
    }
    if let Some((algorithm, value)) = found.pop() {
        let value = value
            .to_str()
            .map_err(|_| s3_error!(InvalidRequest, "Invalid checksum header"))?
            .to_owned();
        return Ok(Expected {
            algorithm: Some(algorithm),
            value: Some(value),
            in_trailer: false,
        });
    }
    if let Some(trailer) = headers.get("x-amz-trailer") {
        let name = trailer.to_str().unwrap_or("").trim().to_ascii_lowercase();
        let algorithm = ALL
            .into_iter()
            .find(|a| a.header() == name)
            .ok_or_else(|| s3_error!(InvalidRequest, "Unsupported x-amz-trailer {name}"))?;
        return Ok(Expected {
            algorithm: Some(algorithm),
            value: None,
            in_trailer: true,
        });
    }
    let algorithm = match declared {
        Some(a) => Some(Algorithm::from_dto(a)?),
        None => match headers
            .get("x-amz-sdk-checksum-algorithm")
            .and_then(|v| v.to_str().ok())
        {
            Some(name) => Some(Algorithm::parse(name)?),
            None => None,
        },
    };
    Ok(Expected {
        algorithm,
        value: None,
        in_trailer: false,
    })
}

impl Expected {
    /// A browser form (POST Object) sends its checksum as a form field, which
    /// s3s reads into the input's `checksum_*` fields rather than headers.
    /// `fields` are those values in [`ALL`]'s order.
    pub fn or_form_fields(self, fields: [Option<&str>; 5]) -> S3Result<Expected> {
        if self.value.is_some() || self.in_trailer {
            return Ok(self);
        }
        let mut sent = ALL
            .into_iter()
            .zip(fields)
            .filter_map(|(a, v)| v.map(|v| (a, v)))
            .collect::<Vec<_>>();
        if sent.len() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header"
            ));
        }
        Ok(match sent.pop() {
            Some((algorithm, value)) => Expected {
                algorithm: Some(algorithm),
                value: Some(value.to_owned()),
                in_trailer: false,
            },
            None => self,
        })
    }

    /// Compares what was computed with what the client sent (header or trailer).
    pub fn verify(
        &self,
        computed: Option<&str>,
        trailers: Option<&TrailingHeaders>,
    ) -> S3Result<()> {
        let Some(algorithm) = self.algorithm else {
            return Ok(());
        };
        let sent = if self.in_trailer {
            let map = trailers.and_then(TrailingHeaders::take).ok_or_else(|| {
                s3_error!(InvalidRequest, "The trailing checksum was not received")
            })?;
            let value = map
                .get(algorithm.header())
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    s3_error!(InvalidRequest, "The trailing checksum was not received")
                })?;
            Some(value.to_owned())
        } else {
            self.value.clone()
        };
        let Some(sent) = sent else { return Ok(()) };
        let valid_encoding = base64::engine::general_purpose::STANDARD
            .decode(sent.as_bytes())
            .is_ok();
        if !valid_encoding {
            return Err(s3_error!(
                InvalidRequest,
                "Value for {} header is invalid.",
                algorithm.header()
            ));
        }
        if computed != Some(sent.as_str()) {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                algorithm.name()
            ));
        }
        Ok(())
    }
}

/// Sets the checksum field named by `algorithm` on an S3 output struct.
macro_rules! set_checksum {
    ($target:expr, $algorithm:expr, $value:expr) => {{
        let value: Option<String> = $value;
        match $algorithm {
            $crate::s3::checksum::Algorithm::Crc32 => $target.checksum_crc32 = value,
            $crate::s3::checksum::Algorithm::Crc32c => $target.checksum_crc32c = value,
            $crate::s3::checksum::Algorithm::Sha1 => $target.checksum_sha1 = value,
            $crate::s3::checksum::Algorithm::Sha256 => $target.checksum_sha256 = value,
            $crate::s3::checksum::Algorithm::Crc64Nvme => $target.checksum_crc64nvme = value,
        }
    }};
}
pub(crate) use set_checksum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_of_known_input_matches_aws_base64() {
        // CRC32("hello world") = 0x0D4A1185
        assert_eq!(
            Algorithm::Crc32.digest_base64(b"hello world").as_deref(),
            Some("DUoRhQ==")
        );
    }

    #[test]
    fn combined_crcs_equal_the_crc_of_the_whole() {
        let (a, b) = (b"hello ".as_slice(), b"world, and more".as_slice());
        for algorithm in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let parts = [
                (algorithm.digest_base64(a), a.len() as u64),
                (algorithm.digest_base64(b), b.len() as u64),
            ];
            let refs: Vec<(Option<&str>, u64)> =
                parts.iter().map(|(v, n)| (v.as_deref(), *n)).collect();
            let whole = algorithm.digest_base64(b"hello world, and more");
            assert_eq!(algorithm.combine(&refs), whole, "{}", algorithm.name());
        }
        assert_eq!(Algorithm::Sha256.combine(&[(Some("x"), 1)]), None);
    }

    #[test]
    fn two_checksum_headers_are_rejected() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-checksum-crc32", "DUoRhQ==".parse().unwrap());
        headers.insert("x-amz-checksum-sha1", "x".parse().unwrap());
        assert!(expected(&headers, None).is_err());
    }
}
