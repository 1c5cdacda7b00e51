//! The server's log filter: `COFFER_LOG` (tracing's env-filter syntax), with
//! the directives no setting may lift because their lines carry credentials.

use tracing_subscriber::EnvFilter;

/// Used when `COFFER_LOG` is unset or unreadable.
pub const DEFAULT_FILTER: &str = "info,s3s=warn,s3s::ops=off";

/// s3s's request dump (`s3s::service` at debug) prints every header, session
/// tokens (`x-amz-security-token`) included, and the full URI of presigned
/// requests: it stays at info whatever the operator asks for.
const CAPPED: &str = "s3s::service=info";

/// The filter for `directives` (as `COFFER_LOG` gives them), credentials capped.
pub fn filter(directives: Option<&str>) -> EnvFilter {
    let base = directives
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    match CAPPED.parse() {
        Ok(cap) => base.add_directive(cap),
        Err(_) => base,
    }
}
