//! coffer-bench: a benchmark for any S3 endpoint (Coffer, MinIO, Garage, AWS),
//! signed with SigV4 by the official Rust SDK, with baselines of what the machine
//! allows measured in the same run.

pub mod baseline;
pub mod stats;
pub mod workload;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};

/// An S3 client for `endpoint` (path-style, plain HTTP or HTTPS per the URL
/// scheme; HTTPS trusts the system's roots).
pub fn client(endpoint: &str, access_key: &str, secret_key: &str, region: &str) -> Client {
    let http = if is_https(endpoint) {
        https_client(None)
    } else {
        aws_smithy_http_client::Builder::new().build_http()
    };
    client_over(http, endpoint, access_key, secret_key, region)
}

/// As [`client`], with HTTPS trusting only the CA certificates in `ca_pem`
/// (a private CA, as `AWS_CA_BUNDLE` names for the AWS CLI).
pub fn client_with_ca(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
    ca_pem: &[u8],
) -> anyhow::Result<Client> {
    use aws_smithy_http_client::tls;
    let trust = tls::TrustStore::empty().with_pem_certificate(ca_pem.to_vec());
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| anyhow::anyhow!("unusable CA bundle: {e}"))?;
    let http = https_client(Some(context));
    Ok(client_over(http, endpoint, access_key, secret_key, region))
}

fn is_https(endpoint: &str) -> bool {
    endpoint
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// rustls with ring, the same TLS stack as the server; the system's roots
/// unless a context with its own trust store is given.
fn https_client(
    context: Option<aws_smithy_http_client::tls::TlsContext>,
) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    match context {
        Some(context) => builder.tls_context(context).build_https(),
        None => builder.build_https(),
    }
}

fn client_over(
    http: aws_smithy_runtime_api::client::http::SharedHttpClient,
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
) -> Client {
    let credentials = Credentials::new(access_key, secret_key, None, None, "coffer-bench");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .force_path_style(true)
        .http_client(http)
        .build();
    Client::from_conf(config)
}

/// Parses sizes like `4096`, `4KiB`, `64MiB`, `1GiB`, `10MB`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    Ok(number * factor)
}

/// Parses durations like `30s`, `2m`, `500ms`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(number),
        "" | "s" => std::time::Duration::from_secs(number),
        "m" => std::time::Duration::from_secs(number * 60),
        other => return Err(format!("unknown duration unit {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("4XB").is_err());
        assert_eq!(
            parse_duration("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("2m"),
            Ok(std::time::Duration::from_secs(120))
        );
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
    }
}
