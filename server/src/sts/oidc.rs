//! Trusted OpenID Connect issuers: their signing keys (a JWKS read from a file
//! or URL, refreshed periodically and when a token names an unknown `kid`) and
//! the verification of the JWTs they sign (RS256, ES256) with ring.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use tokio::sync::Mutex;

/// Longest web identity token accepted (AWS: 20,000 characters).
pub const MAX_TOKEN_LEN: usize = 20_000;
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Tolerated clock difference for `exp`, `nbf` and `iat`.
const CLOCK_SKEW_SECS: i64 = 60;
/// A token with an unknown `kid` refreshes the keys at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

impl JwksSource {
    pub fn parse(text: &str) -> Self {
        if text.starts_with("https://") || text.starts_with("http://") {
            JwksSource::Url(text.to_owned())
        } else {
            JwksSource::File(PathBuf::from(text))
        }
    }
}

/// One `--oidc-issuer` with its `--oidc-jwks`.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub jwks: JwksSource,
}

/// How JWKS URLs are fetched: extra CA certificates (PEM files) and a file
/// holding a bearer token, read on every fetch (a pod's projected token rotates).
#[derive(Debug, Clone, Default)]
pub struct JwksFetch {
    pub ca_files: Vec<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
}

/// Why a token was refused, mapped to STS error codes by the caller.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, unsigned by a known key, from an unknown issuer.
    #[error("{0}")]
    Invalid(String),
    #[error("Token expired: current date/time {now} must be before the expiration date/time {exp}")]
    Expired { now: i64, exp: i64 },
    /// A claim STS needs is missing or unusable.
    #[error("{0}")]
    RejectedClaim(String),
}

/// The claims STS reads from a verified token.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub expires_at: i64,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// A JSON Web Key; fields of key types we do not use are ignored.
#[derive(Deserialize, Clone)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// A key ready to verify with.
#[derive(Clone)]
enum VerifyingKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { point: Vec<u8> },
}

#[derive(Clone)]
struct KeyEntry {
    kid: Option<String>,
    key: VerifyingKey,
}

impl KeyEntry {
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let decode = |field: &Option<String>| {
            field
                .as_deref()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok())
        };
        let key = match jwk.kty.as_str() {
            "RSA" if jwk.alg.as_deref().is_none_or(|a| a == "RS256") => VerifyingKey::Rsa {
                n: decode(&jwk.n)?,
                e: decode(&jwk.e)?,
            },
            "EC" if jwk.crv.as_deref() == Some("P-256")
                && jwk.alg.as_deref().is_none_or(|a| a == "ES256") =>
            {
                let (x, y) = (decode(&jwk.x)?, decode(&jwk.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                VerifyingKey::P256 { point }
            }
            _ => return None,
        };
        Some(KeyEntry {
            kid: jwk.kid.clone(),
            key,
        })
    }

    fn verify(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        match (&self.key, alg) {
            (VerifyingKey::Rsa { n, e }, "RS256") => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (VerifyingKey::P256 { point }, "ES256") => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

struct KeySet {
    keys: Vec<KeyEntry>,
    fetched: Option<Instant>,
}

/// One trusted issuer and its current keys.
pub struct Issuer {
    config: IssuerConfig,
    fetch: JwksFetch,
    refresh_every: Duration,
    keys: Mutex<KeySet>,
}

impl Issuer {
    pub fn new(config: IssuerConfig, fetch: JwksFetch, refresh_every: Duration) -> Self {
        Self {
            config,
            fetch,
            refresh_every,
            keys: Mutex::new(KeySet {
                keys: Vec::new(),
                fetched: None,
            }),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Reads the JWKS now; keeps the previous keys when that fails.
    async fn refresh(&self, set: &mut KeySet) {
        set.fetched = Some(Instant::now());
        match self.load().await {
            Ok(keys) => {
                tracing::info!(issuer = %self.config.issuer, keys = keys.len(), "loaded OIDC signing keys");
                set.keys = keys;
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "cannot load the OIDC signing keys (JWKS)");
            }
        }
    }

    async fn load(&self) -> anyhow::Result<Vec<KeyEntry>> {
        let bytes = match &self.config.jwks {
            JwksSource::File(path) => tokio::fs::read(path).await?,
            JwksSource::Url(url) => self.fetch_url(url).await?,
        };
        if bytes.len() > MAX_JWKS_BYTES {
            anyhow::bail!("JWKS larger than {MAX_JWKS_BYTES} bytes");
        }
        let jwks: Jwks = serde_json::from_slice(&bytes)?;
        Ok(jwks.keys.iter().filter_map(KeyEntry::from_jwk).collect())
    }

    async fn fetch_url(&self, url: &str) -> anyhow::Result<Vec<u8>> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        for path in &self.fetch.ca_files {
            if let Ok(pem) = tokio::fs::read(path).await {
                for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                    builder = builder.add_root_certificate(cert);
                }
            }
        }
        let client = builder.build()?;
        let mut request = client.get(url);
        if let Some(path) = &self.fetch.bearer_token_file
            && let Ok(token) = tokio::fs::read_to_string(path).await
        {
            request = request.bearer_auth(token.trim());
        }
        let mut response = request.send().await?.error_for_status()?;
        // Read in chunks: a chunked answer has no length to check up front.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                anyhow::bail!("JWKS larger than {MAX_JWKS_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The keys a token with `kid` may be signed with: refreshed when stale,
    /// and once more (rate-limited) when none has that `kid`.
    async fn candidates(&self, kid: Option<&str>) -> Vec<KeyEntry> {
        let mut set = self.keys.lock().await;
        let stale = set
            .fetched
            .is_none_or(|at| at.elapsed() >= self.refresh_every);
        if stale {
            self.refresh(&mut set).await;
        }
        let matching = |set: &KeySet| -> Vec<KeyEntry> {
            set.keys
                .iter()
                .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
                .cloned()
                .collect()
        };
        let found = matching(&set);
        if found.is_empty()
            && set
                .fetched
                .is_none_or(|at| at.elapsed() >= MIN_REFRESH_INTERVAL)
        {
            self.refresh(&mut set).await;
            return matching(&set);
        }
        found
    }
}

/// The issuers this server trusts.
#[derive(Default)]
pub struct Issuers {
    issuers: Vec<Arc<Issuer>>,
}

impl Issuers {
    pub fn new(configs: Vec<IssuerConfig>, fetch: JwksFetch, refresh_every: Duration) -> Arc<Self> {
        Arc::new(Self {
            issuers: configs
                .into_iter()
                .map(|c| Arc::new(Issuer::new(c, fetch.clone(), refresh_every)))
                .collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Verifies a JWT: the signature against its issuer's keys, then the time
    /// claims; returns the claims STS needs.
    pub async fn verify(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenError> {
        let invalid = |m: &str| TokenError::Invalid(m.to_owned());
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("The web identity token is too long."));
        }
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("The web identity token is not a signed JWT."));
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
        let header: Header = decode(head)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("The JWT header is malformed."))?;
        let claims: Claims = decode(body)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("The JWT claims are malformed."))?;
        let signature = decode(sig).ok_or_else(|| invalid("The JWT signature is malformed."))?;
        if header.alg != "RS256" && header.alg != "ES256" {
            return Err(invalid(
                "The JWT algorithm is not supported (RS256, ES256).",
            ));
        }
        let iss = claims
            .iss
            .as_deref()
            .ok_or_else(|| invalid("The JWT has no issuer."))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer() == iss)
            .ok_or_else(|| {
                TokenError::Invalid(format!("No OpenIDConnect provider is trusted for {iss}."))
            })?;
        let message = &token.as_bytes()[..head.len() + 1 + body.len()];
        let keys = issuer.candidates(header.kid.as_deref()).await;
        if !keys
            .iter()
            .any(|k| k.verify(&header.alg, message, &signature))
        {
            return Err(invalid(
                "The JWT signature does not verify with the issuer's keys.",
            ));
        }
        let exp = claims
            .exp
            .ok_or_else(|| TokenError::RejectedClaim("The JWT has no exp claim.".into()))?;
        if exp + CLOCK_SKEW_SECS <= now {
            return Err(TokenError::Expired { now, exp });
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS)
            || claims.iat.is_some_and(|iat| iat > now + CLOCK_SKEW_SECS)
        {
            return Err(invalid("The JWT is not valid yet (nbf/iat)."));
        }
        let subject = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TokenError::RejectedClaim("The JWT has no sub claim.".into()))?;
        let audiences: BTreeSet<String> = match claims.aud {
            Some(Audience::One(a)) => [a].into(),
            Some(Audience::Many(many)) => many.into_iter().collect(),
            None => BTreeSet::new(),
        };
        if audiences.is_empty() {
            return Err(TokenError::RejectedClaim(
                "The JWT has no aud claim.".into(),
            ));
        }
        Ok(VerifiedToken {
            issuer: iss.to_owned(),
            subject,
            audiences: audiences.into_iter().collect(),
            expires_at: exp,
        })
    }
}

/// The issuer as IAM condition keys and provider ARNs name it: without the
/// scheme and trailing slash (`kubernetes.default.svc`, `example.com/oidc`).
pub fn issuer_host_path(issuer: &str) -> &str {
    issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"))
        .unwrap_or(issuer)
        .trim_end_matches('/')
}
