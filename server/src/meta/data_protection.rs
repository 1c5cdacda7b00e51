//! A bucket's data-protection setting: how the blobs of its new objects are
//! stored (whole copies, or erasure-coded shards). Kept as a `bucket_configs`
//! document; unset means the cluster's default (`--erasure`, else replicas).

use serde::{Deserialize, Serialize};

use super::{MetaError, MetaResult};

/// The configuration kind under which a bucket's data protection is stored.
pub const DATA_PROTECTION: &str = "data-protection";

/// Largest K+M a scheme may name (what the coder and the blob ids allow).
pub const MAX_SHARDS: usize = 64;

/// How a bucket's new objects are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Scheme")]
pub enum DataProtection {
    /// Whole copies on `--replicas` nodes.
    #[serde(rename = "replicas")]
    Replicas,
    /// `data_shards` + `parity_shards` Reed–Solomon shards on distinct nodes.
    #[serde(rename = "erasure")]
    Erasure {
        #[serde(rename = "DataShards")]
        data_shards: usize,
        #[serde(rename = "ParityShards")]
        parity_shards: usize,
    },
}

impl DataProtection {
    /// Refuses schemes no cluster could write (K or M of 0, K+M above 64).
    pub fn validate(self) -> Result<Self, String> {
        if let Self::Erasure {
            data_shards: k,
            parity_shards: m,
        } = self
            && (k == 0 || m == 0 || k + m > MAX_SHARDS)
        {
            return Err(format!(
                "erasure {k}+{m}: data and parity shards must be at least 1 and add up to at most {MAX_SHARDS}"
            ));
        }
        Ok(self)
    }

    /// The stored document.
    pub fn to_document(self) -> String {
        serde_json::to_string(&self).unwrap_or_default()
    }

    /// Reads a stored document.
    pub fn from_document(text: &str) -> MetaResult<Self> {
        let parsed: Self = super::from_json(text)?;
        parsed.validate().map_err(MetaError::Corrupt)
    }
}

impl std::fmt::Display for DataProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Replicas => f.write_str("replicas"),
            Self::Erasure {
                data_shards,
                parity_shards,
            } => write!(f, "erasure:{data_shards}+{parity_shards}"),
        }
    }
}

impl std::str::FromStr for DataProtection {
    type Err = String;

    /// `replicas` or `erasure:K+M` (the CLI's spelling).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("replicas") {
            return Ok(Self::Replicas);
        }
        let bad = || format!("{text:?} is not a data protection scheme (replicas or erasure:K+M)");
        let scheme = text
            .strip_prefix("erasure:")
            .or_else(|| text.strip_prefix("erasure="))
            .ok_or_else(bad)?;
        let (k, m) = scheme.split_once('+').ok_or_else(bad)?;
        let k = k.trim().parse().map_err(|_| bad())?;
        let m = m.trim().parse().map_err(|_| bad())?;
        Self::Erasure {
            data_shards: k,
            parity_shards: m,
        }
        .validate()
    }
}

/// Checks a document before it is stored (the S3 API and the operator both
/// write through [`super::MetaStore::set_bucket_config`]).
pub(super) fn check_document(value: Option<&str>) -> MetaResult<()> {
    if let Some(text) = value {
        let parsed: DataProtection = serde_json::from_str(text)
            .map_err(|e| MetaError::InvalidBucketState(format!("data protection document: {e}")))?;
        parsed.validate().map_err(MetaError::InvalidBucketState)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::DataProtection;

    #[test]
    fn schemes_round_trip_through_documents_and_text() {
        let ec = DataProtection::Erasure {
            data_shards: 4,
            parity_shards: 2,
        };
        assert_eq!(
            ec.to_document(),
            r#"{"Scheme":"erasure","DataShards":4,"ParityShards":2}"#
        );
        assert_eq!(
            DataProtection::from_document(&ec.to_document()).ok(),
            Some(ec)
        );
        assert_eq!("erasure:4+2".parse::<DataProtection>(), Ok(ec));
        assert_eq!(ec.to_string(), "erasure:4+2");
        assert_eq!(
            "replicas".parse::<DataProtection>(),
            Ok(DataProtection::Replicas)
        );
        assert!("erasure:0+2".parse::<DataProtection>().is_err());
        assert!("erasure:4+0".parse::<DataProtection>().is_err());
        assert!("erasure:40+30".parse::<DataProtection>().is_err());
        assert!("mirror".parse::<DataProtection>().is_err());
        assert!(
            super::check_document(Some(
                r#"{"Scheme":"erasure","DataShards":0,"ParityShards":2}"#
            ))
            .is_err()
        );
        assert!(super::check_document(Some(r#"{"Scheme":"bogus"}"#)).is_err());
    }
}
