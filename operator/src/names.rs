//! Naming rules checked before anything is written: S3 bucket names, and
//! Kubernetes object names the operator puts into API paths.

/// Why a bucket name is not valid, or `Ok` when it is.
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Err(format!(
            "bucket name {name:?} must be 3 to 63 characters long (it is {len})"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(format!(
            "bucket name {name:?} may contain only lower-case letters, digits, dots and hyphens"
        ));
    }
    let first_last_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !first_last_ok(name.as_bytes()[0]) || !first_last_ok(name.as_bytes()[len - 1]) {
        return Err(format!(
            "bucket name {name:?} must start and end with a letter or digit"
        ));
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(format!(
            "bucket name {name:?} must not contain '..', '.-' or '-.'"
        ));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!(
            "bucket name {name:?} must not look like an IP address"
        ));
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") {
        return Err(format!(
            "bucket name {name:?} must not start with 'xn--' or 'sthree-'"
        ));
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return Err(format!(
            "bucket name {name:?} must not end with '-s3alias' or '--ol-s3'"
        ));
    }
    Ok(())
}

/// Why `name` is not a Kubernetes object name (a DNS-1123 subdomain: at most 253
/// characters, dot-separated labels of lower-case letters, digits and `-` that
/// start and end with a letter or digit), or `Ok` when it is.
pub fn validate_object_name(name: &str) -> Result<(), String> {
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        bytes.first().is_some_and(edge)
            && bytes.last().is_some_and(edge)
            && bytes.iter().all(|b| edge(b) || *b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} is not a Kubernetes object name (lower-case letters, digits, '-' and '.', \
             starting and ending with a letter or digit, at most 253 characters)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{validate_bucket_name, validate_object_name};

    #[test]
    fn accepts_only_kubernetes_object_names() {
        for ok in ["app", "app-creds", "a.b-c", "x1"] {
            assert!(validate_object_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "..", "A", "-a", "a.", "a..b", "a_b"] {
            assert!(validate_object_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accepts_valid_and_rejects_invalid_bucket_names() {
        for ok in ["abc", "team-a-photos", "logs.2026", "a1b"] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        let too_long = "a".repeat(64);
        for bad in [
            "ab",
            too_long.as_str(),
            "Upper",
            "-start",
            "end-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "a_b",
            "x-s3alias",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
